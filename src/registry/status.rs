//! Turning a registry's answer into a typed error: status codes, and error bodies
//! (`{"errors":[{"code","message"}]}` or plain text).

use std::io::Read;

use ureq::Body;
use ureq::http::Response;

use super::MAX_ERROR_BODY;
use super::token::AuthOutcome;
use crate::error::{Error, Result};
use crate::reference::Reference;

/// Passes 2xx through; turns anything else into the matching typed error.
pub(super) fn check_status(
    r: &Reference,
    url: &str,
    resp: Response<Body>,
    auth: &AuthOutcome,
) -> Result<Response<Body>> {
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(resp);
    }
    let (code, detail) = read_error_body(resp);
    let reference = r.to_string();
    let registry = r.registry().to_owned();
    Err(match status {
        401 => Error::Unauthorized {
            advice: auth.advice(&registry),
            reference,
            registry,
            detail,
        },
        403 => Error::Denied {
            advice: auth.advice(&registry),
            reference,
            registry,
            detail,
        },
        404 => Error::NotFound {
            reference,
            registry,
            detail,
        },
        _ => Error::Registry {
            registry,
            url: url.to_owned(),
            status,
            code,
            detail,
        },
    })
}

/// Reads a registry error body: `{"errors":[{"code":…,"message":…}]}` or plain
/// text. Returns the first code and a one-line summary.
fn read_error_body(resp: Response<Body>) -> (Option<String>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    let mut body = Vec::new();
    // The body only adds detail to an error we already have; a failed read leaves it out.
    let _ = resp
        .into_body()
        .into_reader()
        .take(MAX_ERROR_BODY)
        .read_to_end(&mut body);
    if let Ok(env) = serde_json::from_slice::<Envelope>(&body) {
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
        return (code, (!summary.is_empty()).then_some(summary));
    }
    let text = String::from_utf8_lossy(&body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        (None, None)
    } else if text.starts_with('<') {
        (None, Some("the registry sent an HTML page".to_owned()))
    } else {
        (None, Some(text.chars().take(200).collect()))
    }
}
