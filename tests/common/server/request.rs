//! A request as the fake registry read it: parsed once, then used both to pick
//! the answer (routes with a condition) and to record what a test may assert
//! about afterwards (which credential reached which host, with which query).

use std::io::{BufRead, Read};

/// The largest request body read (a token POST is a few hundred bytes).
const MAX_BODY: u64 = 1 << 20;

/// One request: method, path, decoded query, headers and body.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The target as sent, query included.
    pub target: String,
    /// The target without its query.
    pub path: String,
    /// The query's pairs, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// Names lower-cased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// Reads one request: its line, headers and `Content-Length` body. `None`
    /// when the client closed the connection before sending one.
    pub(super) fn read(reader: &mut impl BufRead) -> std::io::Result<Option<Request>> {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let mut request = Request {
            method,
            target: target.to_owned(),
            path: path.to_owned(),
            query: pairs(query),
            headers,
            body: Vec::new(),
        };
        let length = request
            .header("content-length")
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        reader
            .take(length.min(MAX_BODY))
            .read_to_end(&mut request.body)?;
        Ok(Some(request))
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of query parameter `name`, decoded.
    pub fn query(&self, name: &str) -> Option<&str> {
        find(&self.query, name)
    }

    /// Field `name` of an `application/x-www-form-urlencoded` body, decoded.
    pub fn form(&self, name: &str) -> Option<String> {
        let fields = pairs(&String::from_utf8_lossy(&self.body));
        find(&fields, name).map(str::to_owned)
    }

    /// The start of a `Range: bytes=N-` request.
    pub fn range(&self) -> Option<u64> {
        self.header("range")?
            .strip_prefix("bytes=")?
            .trim_end_matches('-')
            .parse()
            .ok()
    }
}

/// Requests carrying header `name` with exactly `value`.
pub fn header_is(
    name: &str,
    value: &str,
) -> impl Fn(&Request) -> bool + Clone + Send + Sync + use<> {
    let (name, value) = (name.to_owned(), value.to_owned());
    move |r| r.header(&name) == Some(value.as_str())
}

/// Requests without header `name`.
pub fn no_header(name: &str) -> impl Fn(&Request) -> bool + Clone + Send + Sync + use<> {
    let name = name.to_owned();
    move |r| r.header(&name).is_none()
}

/// Whether `pattern` names `path`: the same path, or a prefix of it when the
/// pattern ends in `*`.
pub(super) fn path_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => pattern == path,
    }
}

fn find<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `a=1&b=x%2Fy` as decoded pairs (`+` is a space, as in forms).
fn pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(n), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
