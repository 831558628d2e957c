//! Proxy settings, read as curl reads them rather than as ureq would (ureq takes
//! the first of `ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY` for every scheme):
//! - `https://` requests: `https_proxy`, else `HTTPS_PROXY`, else `all_proxy`, else
//!   `ALL_PROXY`;
//! - `http://` requests: `http_proxy`, else `all_proxy`, else `ALL_PROXY`. Never
//!   `HTTP_PROXY`: a CGI program finds a request's `Proxy:` header there ("httpoxy");
//! - `no_proxy`, else `NO_PROXY`, matched as [`NoProxy`] says.
//!
//! A variable set to the empty string counts as unset; one that is not UTF-8 is
//! refused by `ClientBuilder::build`. A proxy URL is `[scheme://][user:password@]host[:port]`
//! with the scheme `http` (the default), `https`, `socks4`, `socks4a`, `socks5` or
//! `socks5h`, in any case; `socks` means `socks4`, as in curl.

use std::ffi::OsString;
use std::net::{Ipv4Addr, Ipv6Addr};

use ureq::Proxy;

use crate::error::SettingProblem;
use crate::untrusted::printable;

/// The variables for an `https://` request's proxy, in the order curl reads them.
const HTTPS_PROXY_VARS: [&str; 4] = ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"];
/// The variables for an `http://` request's proxy, in curl's order: never
/// `HTTP_PROXY`, which CGI servers fill from a request's `Proxy:` header.
const HTTP_PROXY_VARS: [&str; 3] = ["http_proxy", "all_proxy", "ALL_PROXY"];
/// Every variable a proxy URL is read from.
pub(crate) const PROXY_VARS: [&str; 5] = [
    "https_proxy",
    "HTTPS_PROXY",
    "http_proxy",
    "all_proxy",
    "ALL_PROXY",
];
/// The variables the hosts that bypass proxies are read from, in curl's order.
pub(crate) const NO_PROXY_VARS: [&str; 2] = ["no_proxy", "NO_PROXY"];

/// A proxy URL and the setting it came from, which messages name.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ProxySetting {
    /// The variable (`https_proxy`, `ALL_PROXY`, …) or `ClientBuilder::proxy`.
    pub(crate) setting: &'static str,
    pub(crate) url: String,
}

impl std::fmt::Debug for ProxySetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Where it came from, not what it is: the URL may carry a password.
        write!(f, "ProxySetting({})", self.setting)
    }
}

/// Proxy settings: one per scheme, and the hosts that bypass them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Proxies {
    pub(crate) http: Option<ProxySetting>,
    pub(crate) https: Option<ProxySetting>,
    pub(crate) no_proxy: NoProxy,
}

/// A variable whose value is not UTF-8: its name and its value as it may be shown.
pub(crate) type NotUtf8 = (&'static str, String);

impl Proxies {
    /// From the environment, as curl reads it (see the [module docs](self)), with
    /// the variables that would be used but are not UTF-8.
    pub(crate) fn from_env() -> (Proxies, Vec<NotUtf8>) {
        Proxies::from_vars(crate::env::var)
    }

    /// [`from_env`](Self::from_env) with `var` in place of the environment.
    fn from_vars(var: impl Fn(&'static str) -> Option<OsString>) -> (Proxies, Vec<NotUtf8>) {
        let mut not_utf8: Vec<NotUtf8> = Vec::new();
        // The first variable set to something not empty, as curl's getenv does.
        let mut first = |names: &[&'static str]| {
            let (name, value) = names
                .iter()
                .find_map(|&n| var(n).filter(|v| !v.is_empty()).map(|v| (n, v)))?;
            match value.into_string() {
                Ok(value) => Some((name, value)),
                Err(value) => {
                    if !not_utf8.iter().any(|(n, _)| *n == name) {
                        not_utf8.push((name, redact(&value.to_string_lossy())));
                    }
                    None
                }
            }
        };
        let setting = |found: Option<(&'static str, String)>| {
            found.map(|(setting, url)| ProxySetting { setting, url })
        };
        let https = setting(first(&HTTPS_PROXY_VARS));
        let http = setting(first(&HTTP_PROXY_VARS));
        let no_proxy = first(&NO_PROXY_VARS)
            .map(|(_, v)| NoProxy::parse(&v))
            .unwrap_or_default();
        let proxies = Proxies {
            http,
            https,
            no_proxy,
        };
        (proxies, not_utf8)
    }
}

/// The hosts reached without a proxy, read as curl (7.86 and later) reads `NO_PROXY`:
/// - the whole value `*` means every host (`*` inside a list means nothing);
/// - entries are separated by commas (and blanks, which curl accepted until 8.9);
/// - a host name matches an entry equal to it or to one of its parent domains,
///   ignoring case, a leading `.` of the entry and a trailing `.` of either:
///   `example.com` and `.example.com` both match `example.com` and
///   `registry.example.com`, never `notexample.com`; there are no wildcards
///   (`*.example.com` matches nothing);
/// - an IP address matches an entry that is the same address or a CIDR range
///   holding it (`10.0.0.0/8`, `fd00::/8`); IPv6 entries are written without
///   brackets; names never match addresses;
/// - ports play no part: an entry with one (`localhost:5000`) matches nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NoProxy {
    /// The value was exactly `*`.
    all: bool,
    entries: Vec<String>,
}

impl NoProxy {
    /// Reads a `NO_PROXY` value.
    pub(crate) fn parse(value: &str) -> NoProxy {
        NoProxy {
            all: value == "*",
            entries: value
                .split([',', ' ', '\t'])
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }

    /// Whether `host` (a name, an IPv4 address, or an IPv6 address with or
    /// without brackets) is reached directly.
    pub(crate) fn matches(&self, host: &str) -> bool {
        if self.all {
            return true;
        }
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        if let Some(ip) = bare.or(Some(host)).and_then(|h| h.parse::<Ipv6Addr>().ok()) {
            return self.entries.iter().any(|e| in_range_v6(ip, e));
        }
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            return self.entries.iter().any(|e| in_range_v4(ip, e));
        }
        let name = host.strip_suffix('.').unwrap_or(host).as_bytes();
        self.entries.iter().any(|entry| {
            let entry = entry.strip_suffix('.').unwrap_or(entry);
            let entry = entry.strip_prefix('.').unwrap_or(entry).as_bytes();
            match name.len().checked_sub(entry.len()) {
                Some(0) => name.eq_ignore_ascii_case(entry),
                Some(n) => name[n - 1] == b'.' && name[n..].eq_ignore_ascii_case(entry),
                None => false,
            }
        })
    }
}

/// `addr[/bits]` -> (addr, bits), bits read as C's `atoi` reads them (what curl
/// does): leading digits, none meaning 0. `None` for a negative or huge count,
/// which curl's range check refuses.
fn cidr(entry: &str) -> (&str, Option<u32>) {
    let Some((addr, bits)) = entry.split_once('/') else {
        return (entry, Some(0));
    };
    let (negative, digits) = match bits.as_bytes().first() {
        Some(b'-') => (true, &bits[1..]),
        Some(b'+') => (false, &bits[1..]),
        _ => (false, bits),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    let n = if end == 0 {
        Some(0)
    } else {
        digits[..end].parse::<u32>().ok()
    };
    (addr, n.filter(|&n| !negative || n == 0))
}

/// Whether `ip` is the address, or in the range, `entry` names. `/0` compares
/// the whole address, as curl does.
fn in_range_v4(ip: Ipv4Addr, entry: &str) -> bool {
    let (addr, bits) = cidr(entry);
    let (Ok(net), Some(bits)) = (addr.parse::<Ipv4Addr>(), bits) else {
        return false;
    };
    match bits {
        0 | 32 => ip == net,
        1..=31 => (u32::from(ip) ^ u32::from(net)) >> (32 - bits) == 0,
        _ => false,
    }
}

/// [`in_range_v4`] for IPv6 (`/0` is `/128`).
fn in_range_v6(ip: Ipv6Addr, entry: &str) -> bool {
    let (addr, bits) = cidr(entry);
    let (Ok(net), Some(bits)) = (addr.parse::<Ipv6Addr>(), bits) else {
        return false;
    };
    match bits {
        0 | 128 => ip == net,
        1..=127 => (u128::from(ip) ^ u128::from(net)) >> (128 - bits) == 0,
        _ => false,
    }
}

/// The proxy schemes ureq and curl both know (`socks` is read as `socks4` first).
const PROXY_SCHEMES: [&str; 6] = ["http", "https", "socks4", "socks4a", "socks5", "socks5h"];

/// A proxy URL as ureq takes it, or why it cannot be used. The scheme is read as
/// curl reads it: in any case, `http` when there is none, and `socks` meaning
/// `socks4` (ureq would take SOCKS5).
pub(super) fn ureq_proxy(url: &str) -> Result<Proxy, SettingProblem> {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) if is_scheme(scheme) => (scheme.to_ascii_lowercase(), rest),
        _ => ("http".to_owned(), url),
    };
    let scheme = match scheme.as_str() {
        "socks" => "socks4",
        s if PROXY_SCHEMES.contains(&s) => s,
        s => {
            return Err(SettingProblem::ProxyScheme {
                scheme: printable(s, 20),
            });
        }
    };
    let not_a_url = || SettingProblem::NotAProxyUrl;
    let proxy = Proxy::new(&format!("{scheme}://{rest}")).map_err(|_| not_a_url())?;
    // ureq takes a port that is not a number for none, so a password holding a
    // `/` read as host `user` and port `pass`, then a path; curl refuses it.
    let authority = proxy.uri().authority().map(|a| a.as_str());
    let host_port = authority.unwrap_or_default().rsplit('@').next();
    let port = match host_port.unwrap_or_default().rsplit_once(':') {
        Some((_, port)) if !port.contains(']') => Some(port),
        _ => None,
    };
    if port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
        return Err(not_a_url());
    }
    Ok(proxy)
}

/// Whether `s` is an RFC 3986 scheme (`http`, `socks5h`).
fn is_scheme(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Any text that may be a proxy setting, for messages, whether or not it parses
/// (nothing here depends on reading it as a URL): everything before the last `@`
/// after the scheme (user name and password, whatever characters they hold)
/// becomes `<credentials>@`, then any query string or fragment is dropped, control
/// characters are escaped, and at most 200 characters are kept.
pub(super) fn redact(value: &str) -> String {
    let (scheme, rest) = match value.split_once("://") {
        Some((scheme, rest)) if is_scheme(scheme) => (Some(scheme), rest),
        _ => (None, value),
    };
    let (credentials, rest) = match rest.rfind('@') {
        Some(at) => ("<credentials>@", &rest[at + 1..]),
        None => ("", rest),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let scheme = scheme.map(|s| format!("{s}://")).unwrap_or_default();
    printable(&format!("{scheme}{credentials}{rest}"), 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_proxy(value: &str) -> NoProxy {
        NoProxy::parse(value)
    }

    #[test]
    fn no_proxy_matches_as_curl_does() {
        let p = no_proxy("example.com, .internal,localhost:5000 10.1.2.3,::1,Upper.Case.");
        assert!(p.matches("example.com"));
        assert!(p.matches("registry.example.com"));
        assert!(p.matches("example.com."));
        assert!(!p.matches("notexample.com"));
        assert!(!p.matches("example.com.evil"));
        assert!(p.matches("a.b.internal"));
        assert!(p.matches("internal"));
        assert!(p.matches("upper.case"));
        assert!(p.matches("x.UPPER.case"));
        // Ports play no part: an entry with one matches nothing.
        assert!(!p.matches("localhost"));
        assert!(p.matches("10.1.2.3"));
        assert!(!p.matches("10.1.2.4"));
        assert!(p.matches("[::1]"));
        assert!(p.matches("::1"));
        assert!(!p.matches("[::2]"));
        // `*` alone is every host; in a list, or with blanks, it is nothing.
        assert!(no_proxy("*").matches("anything"));
        assert!(no_proxy("*").matches("10.0.0.1"));
        assert!(!no_proxy("*,x").matches("anything"));
        assert!(!no_proxy(" *").matches("anything"));
        assert!(!no_proxy("*.example.com").matches("a.example.com"));
        assert!(!no_proxy("").matches("anything"));
        assert!(!no_proxy(".").matches("anything"));
        // Names never match addresses, nor addresses names.
        assert!(!no_proxy("localhost").matches("127.0.0.1"));
        assert!(!no_proxy("127.0.0.1").matches("localhost"));
        // Brackets are not how IPv6 entries are written.
        assert!(!no_proxy("[::1]").matches("[::1]"));
    }

    #[test]
    fn no_proxy_ranges() {
        let p = no_proxy("10.0.0.0/8,192.168.1.0/24,fd00::/8,2001:db8::/33");
        assert!(p.matches("10.200.3.4"));
        assert!(!p.matches("11.0.0.1"));
        assert!(p.matches("192.168.1.77"));
        assert!(!p.matches("192.168.2.1"));
        assert!(p.matches("[fd12:3456::1]"));
        assert!(!p.matches("[fe80::1]"));
        assert!(p.matches("[2001:db8:7fff::1]"));
        assert!(!p.matches("[2001:db8:8000::1]"));
        // Out of range, negative or absent counts, as curl's atoi and range check read them.
        assert!(!no_proxy("127.0.0.1/33").matches("127.0.0.1"));
        assert!(!no_proxy("127.0.0.1/-1").matches("127.0.0.1"));
        assert!(!no_proxy("127.0.0.1/99999999999").matches("127.0.0.1"));
        assert!(no_proxy("127.0.0.1/").matches("127.0.0.1"));
        assert!(no_proxy("127.0.0.1/0").matches("127.0.0.1"));
        assert!(!no_proxy("127.0.0.0/0").matches("127.0.0.1"));
        assert!(no_proxy("127.0.0.0/8x").matches("127.0.0.1"));
        assert!(no_proxy("127.0.0.1/32").matches("127.0.0.1"));
        assert!(!no_proxy("::1/129").matches("::1"));
        assert!(no_proxy("::/0").matches("::"));
        assert!(!no_proxy("::/0").matches("::1"));
    }

    fn read(vars: &[(&str, &str)]) -> Proxies {
        let vars: Vec<(String, OsString)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        let (proxies, not_utf8) =
            Proxies::from_vars(|n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()));
        assert!(not_utf8.is_empty());
        proxies
    }

    fn names(p: &Proxies) -> (Option<&str>, Option<&str>) {
        (
            p.http.as_ref().map(|s| s.setting),
            p.https.as_ref().map(|s| s.setting),
        )
    }

    #[test]
    fn variables_are_read_as_curl_reads_them() {
        let p = read(&[("HTTP_PROXY", "http://h")]);
        assert_eq!(names(&p), (None, None), "HTTP_PROXY is never read");
        let p = read(&[("HTTPS_PROXY", "http://a"), ("https_proxy", "http://b")]);
        assert_eq!(names(&p), (None, Some("https_proxy")));
        let p = read(&[("ALL_PROXY", "http://a"), ("all_proxy", "http://b")]);
        assert_eq!(names(&p), (Some("all_proxy"), Some("all_proxy")));
        let p = read(&[("http_proxy", ""), ("all_proxy", "http://a")]);
        assert_eq!(names(&p), (Some("all_proxy"), Some("all_proxy")));
        let p = read(&[("http_proxy", "http://h"), ("ALL_PROXY", "http://a")]);
        assert_eq!(names(&p), (Some("http_proxy"), Some("ALL_PROXY")));
        let p = read(&[("no_proxy", "a"), ("NO_PROXY", "b")]);
        assert_eq!(p.no_proxy, NoProxy::parse("a"));
        let p = read(&[("no_proxy", ""), ("NO_PROXY", "b")]);
        assert_eq!(p.no_proxy, NoProxy::parse("b"));
    }

    #[cfg(unix)]
    #[test]
    fn a_variable_that_is_not_utf8_is_named() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(b"http://user:hunter2@proxy\xff:3128".to_vec());
        let lookup = |n: &str| match n {
            "HTTPS_PROXY" | "HTTP_PROXY" | "no_proxy" => Some(bad.clone()),
            _ => None,
        };
        let (proxies, not_utf8) = Proxies::from_vars(lookup);
        let names: Vec<&str> = not_utf8.iter().map(|(n, _)| *n).collect();
        // HTTP_PROXY is not read, so it cannot be refused.
        assert_eq!(names, ["HTTPS_PROXY", "no_proxy"]);
        assert!(not_utf8.iter().all(|(_, v)| !v.contains("hunter2")));
        assert_eq!(proxies.https, None);
    }

    #[test]
    fn proxy_schemes_are_read_as_curl_reads_them() {
        use ureq::ProxyProtocol::*;
        for (url, protocol) in [
            ("proxy:3128", Http),
            ("HTTP://proxy", Http),
            ("https://proxy", Https),
            ("socks://proxy", Socks4),
            ("socks4a://proxy", Socks4A),
            ("SOCKS5://proxy", Socks5),
            ("socks5h://user:pass@proxy:1080", Socks5h),
        ] {
            let p = ureq_proxy(url).unwrap();
            assert_eq!(p.protocol(), protocol, "{url}");
        }
        let e = ureq_proxy("ftp://proxy").unwrap_err();
        assert_eq!(
            e,
            SettingProblem::ProxyScheme {
                scheme: "ftp".into()
            }
        );
        assert!(ureq_proxy(" ").is_err());
        assert!(ureq_proxy("http://").is_err());
        assert!(ureq_proxy("user:pass/word@proxy").is_err());
        assert!(ureq_proxy("http://proxy:0").is_err());
        assert!(ureq_proxy("http://proxy:99999").is_err());
        assert!(ureq_proxy("http://[::1]:3128/").is_ok());
        assert!(ureq_proxy("http://[::1]").is_ok());
    }

    #[test]
    fn redaction_needs_no_parsing_and_never_shows_a_password() {
        for (value, shown) in [
            ("user:hunter2@[bad", "<credentials>@[bad"),
            ("http://user:hunter2@[bad", "http://<credentials>@[bad"),
            (
                "http://user:hunter2@proxy:3128",
                "http://<credentials>@proxy:3128",
            ),
            (
                "socks5h://user:hun#ter2@proxy",
                "socks5h://<credentials>@proxy",
            ),
            ("http://user:hun?ter2@proxy/", "http://<credentials>@proxy/"),
            ("http://user:hun/ter2@proxy", "http://<credentials>@proxy"),
            ("http://us@er:hunter2@proxy", "http://<credentials>@proxy"),
            ("user:hun://ter2@proxy", "<credentials>@proxy"),
            ("http://proxy:3128/?token=hunter2", "http://proxy:3128/"),
            ("http://proxy#hunter2", "http://proxy"),
            ("proxy:3128", "proxy:3128"),
            ("http://proxy\x1b[2J", "http://proxy\\x1b[2J"),
        ] {
            assert_eq!(redact(value), shown, "{value}");
        }
        assert_eq!(redact(&"x".repeat(500)).chars().count(), 201);
    }
}
