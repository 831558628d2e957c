//! URLs that come from outside (a token realm, a redirect's `Location`), parsed
//! once and strictly, so that what is judged (plain HTTP? which host? the same
//! origin?) is what ureq contacts, and printed without the parts that can hold a
//! secret: user name and password, query string (presigned URLs carry their
//! signature there) and fragment.
//!
//! Stricter than RFC 3986 on purpose: a URL is refused rather than read in a way
//! the HTTP library might read differently. No user information, no percent-encoded
//! or non-ASCII host, no IPv6 zone, a port of 1 to 5 digits, no whitespace or control
//! character anywhere. As a last check, the `http` crate ureq sends with must find
//! the same host and port.

use crate::untrusted::printable;
use std::fmt;

pub use crate::error::UrlRefusal;

/// A URL that failed [`Url::parse`]: why, and the host it names when one can be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlError {
    pub(crate) refusal: UrlRefusal,
    /// `host[:port]`, for [`UrlRefusal::UserInfo`] the one after the user information.
    pub(crate) host: Option<String>,
}

/// An absolute `http(s)` URL without user information.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Url {
    https: bool,
    /// Lowercase; an IPv6 address keeps its brackets.
    host: String,
    /// As written, if written.
    port: Option<u16>,
    /// From the first `/` on (`/` when none is written); never a query or fragment.
    path: String,
    /// Without the `?`.
    query: Option<String>,
}

impl fmt::Debug for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A query may hold a presigned URL's signature.
        write!(f, "Url({})", self.redacted())
    }
}

impl Url {
    /// Parses an absolute `http://` or `https://` URL; the fragment is dropped.
    pub(crate) fn parse(s: &str) -> Result<Url, UrlError> {
        let refuse = |refusal, host: Option<&str>| UrlError {
            refusal,
            host: host.map(str::to_ascii_lowercase),
        };
        let (scheme, rest) = match s.split_once("://") {
            Some((scheme, rest)) if !scheme.contains(['/', '?', '#']) => (scheme, rest),
            _ => return Err(refuse(UrlRefusal::NotHttp, None)),
        };
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err(refuse(UrlRefusal::NotHttp, None));
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        // Some parsers read `\` as `/`, others as part of the host: neither is safe.
        if authority.contains('\\') {
            return Err(refuse(UrlRefusal::Malformed, None));
        }
        if let Some(at) = authority.rfind('@') {
            let after = &authority[at + 1..];
            let named = split_authority(after).is_some().then_some(after);
            return Err(refuse(UrlRefusal::UserInfo, named));
        }
        if !tail.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(refuse(UrlRefusal::Malformed, Some(authority)));
        }
        let (host, port) =
            split_authority(authority).ok_or_else(|| refuse(UrlRefusal::Malformed, None))?;
        let tail = tail.split('#').next().unwrap_or_default();
        let (path, query) = match tail.split_once('?') {
            Some((path, query)) => (path, Some(query.to_owned())),
            None => (tail, None),
        };
        let url = Url {
            https,
            host: host.to_ascii_lowercase(),
            port,
            // `http://h` and `http://h/` ask for the same thing.
            path: if path.is_empty() { "/" } else { path }.to_owned(),
            query,
        };
        // What ureq will connect to must be what was judged.
        let uri: ureq::http::Uri = url
            .as_request()
            .parse()
            .map_err(|_| refuse(UrlRefusal::Malformed, Some(authority)))?;
        let agrees = uri
            .host()
            .is_some_and(|h| h.eq_ignore_ascii_case(&url.host))
            && uri.port_u16().unwrap_or(url.default_port()) == url.port();
        if !agrees {
            return Err(refuse(UrlRefusal::Malformed, Some(authority)));
        }
        Ok(url)
    }

    /// `location` (a redirect's `Location` header) read against this URL: an
    /// absolute URL, `//host/path` on this scheme, `/path` on this origin, `?query`
    /// on this path, or a path beside this one's last segment.
    pub(crate) fn join(&self, location: &str) -> Result<Url, UrlError> {
        let location = location.trim();
        if has_scheme(location) {
            return Url::parse(location);
        }
        let scheme = if self.https { "https" } else { "http" };
        let origin = format!("{scheme}://{}", self.authority());
        if location.starts_with("//") {
            Url::parse(&format!("{scheme}:{location}"))
        } else if location.starts_with('/') {
            Url::parse(&format!("{origin}{location}"))
        } else if location.starts_with('?') || location.is_empty() || location.starts_with('#') {
            Url::parse(&format!("{origin}{}{location}", self.path))
        } else {
            let dir = &self.path[..self.path.rfind('/').unwrap_or(0)];
            Url::parse(&format!("{origin}{dir}/{location}"))
        }
    }

    pub(crate) fn is_https(&self) -> bool {
        self.https
    }

    /// The host, lowercase, without port (`[::1]` for IPv6).
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The port connected to: as written, else the scheme's.
    pub(crate) fn port(&self) -> u16 {
        self.port.unwrap_or(self.default_port())
    }

    fn default_port(&self) -> u16 {
        if self.https { 443 } else { 80 }
    }

    /// The query string, without the `?`.
    pub(crate) fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// `host[:port]`, the port as written: what names this host in a message.
    pub(crate) fn authority(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }

    /// Scheme, host and port, as compared to tell whether two URLs share an origin.
    pub(crate) fn same_origin(&self, other: &Url) -> bool {
        (self.https, &self.host, self.port()) == (other.https, &other.host, other.port())
    }

    /// The whole URL as requested (path and query), never for a message.
    pub(crate) fn as_request(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        match &self.query {
            Some(q) => format!("{scheme}://{}{path}?{q}", self.authority()),
            None => format!("{scheme}://{}{path}", self.authority()),
        }
    }

    /// The URL for messages: scheme, host, port and path; no query string.
    pub(crate) fn redacted(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority(), self.path)
    }
}

/// Any text that may be a URL, for messages: without user information, query
/// string or fragment, and no more than 200 characters. A URL that is not
/// http(s) is named by its scheme alone.
pub(crate) fn redact(s: &str) -> String {
    let s = s.trim();
    let s = s.split(['?', '#']).next().unwrap_or_default();
    if has_scheme(s) {
        let scheme = s.split(':').next().unwrap_or_default();
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return format!("a `{}:` URL", printable(scheme, 40));
        }
    }
    // User information runs from the `//` before an `@` (or the start) to the `@`,
    // with no `/` between; an `@` further on is part of a path.
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find('@') {
        let start = rest[..at].rfind("//").map_or(0, |i| i + 2);
        if rest[start..at].contains('/') {
            out.push_str(&rest[..=at]);
        } else {
            out.push_str(&rest[..start]);
        }
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    printable(&out, 200)
}

/// Whether `s` starts with an RFC 3986 scheme and a colon (`https:`, `file:`).
fn has_scheme(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, _)) => {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        }
        None => false,
    }
}

/// `host[:port]` -> (host, port), strictly: a DNS name or IPv4 address of letters,
/// digits, `.`, `-` and `_`, or an IPv6 address in brackets; a port of 1 to 5 digits
/// up to 65535, or none (an empty port means the scheme's).
fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']')?;
        let (host, after) = authority.split_at(close + 1);
        let inner = &host[1..host.len() - 1];
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if !host.starts_with('[')
        && (host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')))
    {
        return None;
    }
    let port = match port {
        None | Some("") => None,
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok().filter(|&p| p != 0)?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(s: &str) -> (UrlRefusal, Option<String>) {
        let e = Url::parse(s).unwrap_err();
        (e.refusal, e.host)
    }

    #[test]
    fn http_urls_parse_into_their_parts() {
        let u = Url::parse("HTTPS://Auth.Example:8443/token?service=x&scope=y#frag").unwrap();
        assert!(u.is_https());
        assert_eq!((u.host(), u.port()), ("auth.example", 8443));
        assert_eq!(u.authority(), "auth.example:8443");
        assert_eq!(
            u.as_request(),
            "https://auth.example:8443/token?service=x&scope=y"
        );
        assert_eq!(u.redacted(), "https://auth.example:8443/token");
        let u = Url::parse("http://[::1]/").unwrap();
        assert_eq!((u.host(), u.port()), ("[::1]", 80));
        let u = Url::parse("http://h:/x").unwrap();
        assert_eq!((u.authority(), u.port()), ("h".to_owned(), 80));
        assert_eq!(Url::parse("https://h").unwrap().as_request(), "https://h/");
    }

    #[test]
    fn userinfo_is_refused_naming_the_host_that_would_be_contacted() {
        assert_eq!(
            refusal("http://127.0.0.1:x@localhost:5000/token"),
            (UrlRefusal::UserInfo, Some("localhost:5000".to_owned()))
        );
        assert_eq!(
            refusal("https://a@b@Evil.example/"),
            (UrlRefusal::UserInfo, Some("evil.example".to_owned()))
        );
        assert_eq!(refusal("https://user:pw@/x").0, UrlRefusal::UserInfo);
    }

    #[test]
    fn anything_ambiguous_is_refused() {
        for bad in [
            "http://h:99999/",
            "http://h:+80/",
            "http://h:0/",
            "http://h:80:80/",
            "http://%61/",
            "http://h\\@evil/",
            "http://[::1%25eth0]/",
            "http://[::1]x/",
            "http:///path",
            "http://h/a b",
            "http://h/\u{7f}",
            "http://hé/",
        ] {
            assert_eq!(refusal(bad).0, UrlRefusal::Malformed, "{bad}");
        }
        for bad in ["file:///etc/passwd", "ftp://h/", "/relative", "", "h:80/x"] {
            assert_eq!(refusal(bad).0, UrlRefusal::NotHttp, "{bad}");
        }
    }

    #[test]
    fn locations_resolve_against_their_base() {
        let base = Url::parse("https://reg.io:5000/v2/a/blobs/sha256:1?x=y").unwrap();
        let join = |l: &str| base.join(l).unwrap().as_request();
        assert_eq!(join("https://cdn.io/b?sig=1"), "https://cdn.io/b?sig=1");
        assert_eq!(join("/elsewhere"), "https://reg.io:5000/elsewhere");
        assert_eq!(join("//cdn.io/c"), "https://cdn.io/c");
        assert_eq!(join("sibling"), "https://reg.io:5000/v2/a/blobs/sibling");
        assert_eq!(join("?z=1"), "https://reg.io:5000/v2/a/blobs/sha256:1?z=1");
        assert_eq!(
            base.join("file:///etc/passwd").unwrap_err().refusal,
            UrlRefusal::NotHttp
        );
        assert_eq!(
            base.join("//u:p@cdn.io/").unwrap_err().refusal,
            UrlRefusal::UserInfo
        );
    }

    #[test]
    fn origins_compare_scheme_host_and_effective_port() {
        let a = Url::parse("https://reg.io/v2/").unwrap();
        assert!(a.same_origin(&Url::parse("https://REG.io:443/x").unwrap()));
        assert!(!a.same_origin(&Url::parse("http://reg.io:443/x").unwrap()));
        assert!(!a.same_origin(&Url::parse("https://reg.io:8443/x").unwrap()));
    }

    #[test]
    fn redaction_drops_userinfo_query_and_fragment() {
        assert_eq!(
            redact("https://u:pw@cdn.io/b?X-Amz-Signature=abc#f"),
            "https://cdn.io/b"
        );
        assert_eq!(redact("file:///etc/passwd?x"), "a `file:` URL");
        assert_eq!(redact("/path?token=1"), "/path");
        assert_eq!(redact("javascript:alert(1)"), "a `javascript:` URL");
        assert_eq!(redact("1http://u:p@h/x"), "1http://h/x");
        assert_eq!(redact("https://a@b@c/p@q"), "https://c/p@q");
        assert_eq!(redact("user@host/path"), "host/path");
        assert_eq!(
            format!(
                "{:?}",
                Url::parse("https://cdn.io/b?X-Amz-Signature=abc").unwrap()
            ),
            "Url(https://cdn.io/b)"
        );
    }
}
