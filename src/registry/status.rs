//! Turning a registry's answer into a typed error: status codes, and error bodies
//! (`{"errors":[{"code","message"}]}` or plain text).

use std::io::Read;

use ureq::Body;
use ureq::http::Response;

use super::call::MAX_ERROR_BODY;
use super::url::Url;
use crate::auth::AuthOutcome;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::untrusted::printable;

/// A response, and who sent it: the registry, or a host it redirected to.
pub(super) struct Answer {
    pub(super) resp: Response<Body>,
    /// The URL that answered.
    pub(super) url: Url,
    /// Whether that URL is on another origin than the registry's (a CDN, a bucket).
    pub(super) foreign: bool,
}

impl Answer {
    /// The host connected to, as [`Error::Transport`] names it.
    pub(super) fn connected_to(&self, r: &Reference) -> String {
        if self.foreign {
            self.url.authority()
        } else {
            r.api_host().to_owned()
        }
    }

    /// [`Error::Registry`] for this answer's status.
    pub(super) fn error(
        &self,
        r: &Reference,
        code: Option<String>,
        detail: Option<String>,
    ) -> Error {
        registry_error(
            r,
            &self.url,
            self.foreign,
            self.resp.status().as_u16(),
            code,
            detail,
        )
    }
}

/// [`Error::Registry`], or [`Error::RedirectTarget`] naming the host that answered
/// when it is not the registry's; the URL without its query string.
fn registry_error(
    r: &Reference,
    url: &Url,
    foreign: bool,
    status: u16,
    code: Option<String>,
    detail: Option<String>,
) -> Error {
    if foreign {
        Error::RedirectTarget {
            registry: r.registry().to_owned(),
            host: url.authority(),
            url: url.redacted(),
            status,
            detail,
        }
    } else {
        Error::Registry {
            registry: r.registry().to_owned(),
            url: url.redacted(),
            status,
            code,
            detail,
        }
    }
}

/// Whether `text` holds any value of `url`'s query string (a signature, a token),
/// as sent or percent-decoded, in any case, or a good part of one.
fn quotes_query(text: &str, url: &Url) -> bool {
    let text = text.to_ascii_lowercase();
    url.query().is_some_and(|q| {
        q.split('&')
            .map(|pair| pair.split_once('=').map_or(pair, |(_, v)| v))
            .flat_map(|v| [v.to_owned(), percent_decoded(v)])
            .map(|v| v.to_ascii_lowercase())
            .any(|v| {
                let chars: Vec<char> = v.chars().collect();
                // Any run of 8 characters of it (the whole of a shorter one).
                let n = chars.len().min(8);
                n >= 4
                    && chars
                        .windows(n)
                        .any(|w| text.contains(&w.iter().collect::<String>()))
            })
    })
}

/// `%XX` escapes (and `+` for a space) decoded; anything malformed left as it is.
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Passes 2xx through; turns anything else into the matching typed error. A host
/// the registry redirected to gets [`Error::RedirectTarget`] naming it whatever
/// its status.
pub(super) fn check_status(r: &Reference, answer: Answer, auth: &AuthOutcome) -> Result<Answer> {
    let status = answer.resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(answer);
    }
    let Answer { resp, url, foreign } = answer;
    let (code, detail) = read_error_body(resp);
    // A presigned URL's signature (or any other query value) must not come back
    // through a body that echoes the request, whoever answered.
    let detail = detail.filter(|d| !quotes_query(d, &url));
    let reference = r.to_string();
    let registry = r.registry().to_owned();
    Err(match status {
        401 if !foreign => Error::Unauthorized {
            advice: auth.advice(&registry),
            reference,
            registry,
            detail,
        },
        403 if !foreign => Error::Denied {
            advice: auth.advice(&registry),
            reference,
            registry,
            detail,
        },
        404 if !foreign => Error::NotFound {
            reference,
            registry,
            detail,
        },
        _ => registry_error(r, &url, foreign, status, code, detail),
    })
}

/// Reads a registry error body: `{"errors":[{"code":…,"message":…}]}` or plain
/// text. Returns the first code and a one-line summary.
fn read_error_body(resp: Response<Body>) -> (Option<String>, Option<String>) {
    let mut body = Vec::new();
    // The body only adds detail to an error we already have; a failed read leaves it out.
    let _ = resp
        .into_body()
        .into_reader()
        .take(MAX_ERROR_BODY)
        .read_to_end(&mut body);
    summarise_error_body(&body)
}

/// The first code and a one-line, printable summary of an error body.
pub(crate) fn summarise_error_body(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(env) = serde_json::from_slice::<Envelope>(body) {
        let code = env.errors.iter().find_map(|e| e.code.clone());
        let summary = env
            .errors
            .iter()
            .map(|e| match (&e.code, &e.message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.clone(),
                (None, Some(m)) => m.clone(),
                (None, None) => "unspecified error".to_owned(),
            })
            .collect::<Vec<_>>()
            .join("; ");
        let code = code.map(|c| printable(&c, 100));
        return (
            code,
            (!summary.is_empty()).then(|| printable(&summary, 400)),
        );
    }
    let text = String::from_utf8_lossy(body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        (None, None)
    } else if let Some(summary) = xml_error(&text) {
        (None, Some(printable(&summary, 400)))
    } else if text.starts_with('<') {
        (None, Some("an HTML page".to_owned()))
    } else {
        (None, Some(printable(&text, 200)))
    }
}

/// `Code: Message` of an S3-style XML error (`<Error><Code>AccessDenied</Code>
/// <Message>Request has expired</Message>…`), which storage behind a redirect sends.
fn xml_error(text: &str) -> Option<String> {
    let element = |name: &str| {
        let start = text.find(&format!("<{name}>"))? + name.len() + 2;
        let len = text[start..].find(&format!("</{name}>"))?;
        Some(
            text[start..start + len]
                .trim()
                .chars()
                .take(200)
                .collect::<String>(),
        )
    };
    if !text.starts_with('<') || !text.contains("<Error>") {
        return None;
    }
    match (element("Code")?, element("Message")) {
        (code, Some(message)) if !message.is_empty() => Some(format!("{code}: {message}")),
        (code, _) => Some(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_errors_are_summarised_and_never_echo_the_query() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message><X-Amz-Expires>300</X-Amz-Expires></Error>"#;
        assert_eq!(
            xml_error(body).as_deref(),
            Some("AccessDenied: Request has expired")
        );
        assert_eq!(xml_error("<html><body>hi</body></html>"), None);
        assert_eq!(xml_error("<Error><Code>"), None);
        let url = Url::parse("https://cdn.example/b?X-Amz-Signature=abcdef12&x=1").unwrap();
        assert!(quotes_query("SignatureProvided abcdef12", &url));
        assert!(!quotes_query("AccessDenied: Request has expired", &url));
    }
}
