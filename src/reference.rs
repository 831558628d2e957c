//! Image references: the distribution/reference grammar, written out by hand.
//!
//! Parsing follows `ParseNormalizedNamed` from github.com/distribution/reference
//! and then adds `:latest` when neither tag nor digest is given, so `ubuntu`
//! becomes `docker.io/library/ubuntu:latest`. The grammar:
//!
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [ domain "/" ] path-component ( "/" path-component )*
//! domain     := host [ ":" port ]        port: digits, 1 to 65535
//! host       := domain-component ( "." domain-component )* | "[" ipv6 "]"
//! domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! path-component   := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag        := [\w][\w.-]{0,127}
//! ```
//!
//! The first component is a registry host only when it contains `.` or `:`, is
//! `localhost`, or has an uppercase letter; otherwise the name lives on Docker Hub.
//! The path after the registry, as normalised (`library/` included), is at most 255
//! characters.
//!
//! Two deliberate differences from distribution/reference:
//! - digests other than sha256 are rejected (see [`crate::Digest`]); distribution's
//!   own test suite rejects `sha512` too, because its test binary does not link that
//!   hash;
//! - a port must be 1 to 65535 ([`ReferenceErrorKind::InvalidPort`]). The grammar
//!   takes any run of digits, and upstream leaves the range to a later step; here
//!   `localhost:99999` would otherwise name a cache entry for a registry nothing
//!   can connect to (URL parsers refuse the port or wrap it to another one).

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, ParseDigestError};

const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";
const DEFAULT_TAG: &str = "latest";
const MAX_PATH_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed, normalised reference to an artifact in a registry:
/// `registry/repository[:tag][@digest]`.
///
/// ```
/// use forge_oci::Reference;
///
/// let r: Reference = "ubuntu".parse()?;
/// assert_eq!(r.registry(), "docker.io");
/// assert_eq!(r.repository(), "library/ubuntu");
/// assert_eq!(r.tag(), Some("latest"));
/// assert_eq!(r.to_string(), "docker.io/library/ubuntu:latest");
/// assert_eq!(r.api_host(), "registry-1.docker.io");
///
/// let r: Reference = "localhost:5000/plugins/hello:1.0".parse()?;
/// assert_eq!((r.registry(), r.repository()), ("localhost:5000", "plugins/hello"));
/// # Ok::<(), forge_oci::ParseReferenceError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
    /// Set on a reference rewritten for a mirror: the upstream registry, sent as
    /// `ns=` (containerd's convention, so that one mirror can front many).
    namespace: Option<String>,
}

impl Reference {
    /// This reference as a mirror serves it: `host` in place of the registry,
    /// `prefix` (possibly empty) in front of the repository, and the upstream
    /// registry kept for `ns=`.
    pub(crate) fn at_mirror(&self, host: &str, prefix: &str) -> Reference {
        let repository = if prefix.is_empty() {
            self.repository.clone()
        } else {
            format!("{prefix}/{}", self.repository)
        };
        Reference {
            registry: host.to_owned(),
            repository,
            tag: self.tag.clone(),
            digest: self.digest.clone(),
            namespace: Some(self.registry.clone()),
        }
    }

    /// For a reference rewritten by [`Reference::at_mirror`], the upstream registry.
    pub(crate) fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The registry as written (after Docker Hub normalisation): `ghcr.io`,
    /// `localhost:5000`, `[::1]:5000`, `docker.io`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host and port to connect to: the registry, except `registry-1.docker.io`
    /// for `docker.io`.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The repository path inside the registry, e.g. `library/ubuntu`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag. `None` only when the reference is pinned by digest without a tag.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The manifest digest the reference is pinned to, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest when pinned, else the tag.
    pub(crate) fn manifest_selector(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ParseReferenceError;

    fn from_str(s: &str) -> Result<Reference, ParseReferenceError> {
        parse(s).map_err(|kind| ParseReferenceError {
            input: s.to_owned(),
            kind,
        })
    }
}

impl TryFrom<&str> for Reference {
    type Error = ParseReferenceError;

    fn try_from(s: &str) -> Result<Reference, ParseReferenceError> {
        s.parse()
    }
}

fn parse(s: &str) -> Result<Reference, ReferenceErrorKind> {
    use ReferenceErrorKind as K;
    if s.is_empty() {
        return Err(K::Empty);
    }
    if s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(K::HexName);
    }
    let (registry, remainder) = split_registry(s);

    let (name_and_tag, digest) = match remainder.split_once('@') {
        Some((n, d)) => (n, Some(d.parse::<Digest>().map_err(K::Digest)?)),
        None => (remainder, None),
    };
    // A ':' after the last '/' starts the tag; one before it belonged to a host.
    let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    let (path, tag) = match name_and_tag[last_slash..].find(':') {
        Some(i) => (
            &name_and_tag[..last_slash + i],
            Some(&name_and_tag[last_slash + i + 1..]),
        ),
        None => (name_and_tag, None),
    };

    check_domain(registry)?;
    if path.is_empty() {
        return Err(K::Empty);
    }
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(K::Uppercase(path.to_owned()));
    }
    if let Some(bad) = path.split('/').find(|c| !is_path_component(c)) {
        return Err(K::InvalidPathComponent(bad.to_owned()));
    }
    if let Some(t) = tag {
        if !is_tag(t) {
            return Err(K::InvalidTag(t.to_owned()));
        }
    }

    let registry = if registry == DOCKER_HUB_LEGACY {
        DOCKER_HUB
    } else {
        registry
    };
    let repository = if registry == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_owned()
    };
    // The limit applies to the path as normalised (`library/` included), as in
    // distribution's ParseNormalizedNamed; before, a 252-character Hub name passed
    // and then printed as something that no longer parsed.
    if repository.len() > MAX_PATH_LEN {
        return Err(K::NameTooLong(repository.len()));
    }
    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t.to_owned()),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_TAG.to_owned()),
    };
    Ok(Reference {
        registry: registry.to_owned(),
        repository,
        tag,
        digest,
        namespace: None,
    })
}

/// distribution's `splitDockerDomain`: is the first component a host?
fn split_registry(s: &str) -> (&str, &str) {
    match s.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, s),
    }
}

/// `host[:port]` as the grammar has it, with the port in 1..=65535.
fn check_domain(s: &str) -> Result<(), ReferenceErrorKind> {
    let invalid = || ReferenceErrorKind::InvalidRegistry(s.to_owned());
    let (host_ok, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return Err(invalid());
        };
        let v6_ok = !v6.is_empty() && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
        match after {
            "" => (v6_ok, None),
            p => match p.strip_prefix(':') {
                Some(port) => (v6_ok, Some(port)),
                None => return Err(invalid()),
            },
        }
    } else {
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        (host.split('.').all(is_domain_component), port)
    };
    let digits = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !host_ok || !digits {
        return Err(invalid());
    }
    match port {
        // Digits only, so the parse fails only past u16::MAX. A leading zero would
        // name the same port as another spelling, and so another cache entry.
        Some(p) if !matches!(p.parse::<u16>(), Ok(1..)) || p.starts_with('0') => {
            Err(ReferenceErrorKind::InvalidPort(p.to_owned()))
        }
        _ => Ok(()),
    }
}

fn is_domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        }
        _ => false,
    }
}

fn is_path_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let b = c.as_bytes();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        // One separator: ".", "_", "__", or a run of "-".
        match b[i] {
            b'.' => i += 1,
            b'_' => i += if b.get(i + 1) == Some(&b'_') { 2 } else { 1 },
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

fn is_tag(t: &str) -> bool {
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && word(&b[0])
        && b[1..].iter().all(|x| word(x) || *x == b'.' || *x == b'-')
}

/// A string that is not a valid reference, and which part of it is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseReferenceError {
    input: String,
    kind: ReferenceErrorKind,
}

impl ParseReferenceError {
    /// The string that failed to parse.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Which part was wrong.
    pub fn kind(&self) -> &ReferenceErrorKind {
        &self.kind
    }
}

impl fmt::Display for ParseReferenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid reference `{}`: {}", self.input, self.kind)
    }
}

impl std::error::Error for ParseReferenceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ReferenceErrorKind::Digest(e) => Some(e),
            _ => None,
        }
    }
}

/// The part of a reference that is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReferenceErrorKind {
    /// Nothing, or no repository, was given.
    Empty,
    /// A bare 64-character hex string, which would be mistaken for an image ID.
    HexName,
    /// The registry is not a valid `host[:port]`; holds the registry as written.
    InvalidRegistry(String),
    /// The registry's port is digits but not 1 to 65535; holds the port as written.
    InvalidPort(String),
    /// A path component breaks the grammar (lowercase letters and digits joined by
    /// `.`, `_`, `__` or dashes).
    InvalidPathComponent(String),
    /// The repository path has uppercase letters.
    Uppercase(String),
    /// The repository path is longer than 255 characters; holds its length.
    NameTooLong(usize),
    /// The tag breaks `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    InvalidTag(String),
    /// The digest after `@` is invalid or not sha256.
    Digest(ParseDigestError),
}

impl fmt::Display for ReferenceErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ReferenceErrorKind as K;
        match self {
            K::Empty => f.write_str("no repository name given"),
            K::HexName => f.write_str(
                "a 64-character hex string is not a repository name (pin a digest with `name@sha256:…`)",
            ),
            K::InvalidRegistry(r) => write!(f, "registry `{r}` is not a valid host[:port]"),
            K::InvalidPort(p) => write!(f, "port `{p}` is not a port number (1 to 65535)"),
            K::InvalidPathComponent(c) => write!(
                f,
                "repository component `{c}` must be lowercase letters and digits separated by `.`, `_`, `__` or `-`"
            ),
            K::Uppercase(p) => write!(f, "repository `{p}` must be lowercase"),
            K::NameTooLong(n) => {
                write!(f, "repository is {n} characters long; the limit is {MAX_PATH_LEN}")
            }
            K::InvalidTag(t) => write!(
                f,
                "tag `{t}` must be 1 to 128 characters of letters, digits, `_`, `.` and `-`, not starting with `.` or `-`"
            ),
            K::Digest(e) => write!(f, "{}", e.kind()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typical_ref() {
        let r: Reference = "ghcr.io/marcusdunn/typescript-fetch:0.1.0".parse().unwrap();
        assert_eq!(r.registry(), "ghcr.io");
        assert_eq!(r.repository(), "marcusdunn/typescript-fetch");
        assert_eq!(r.tag(), Some("0.1.0"));
        assert_eq!(r.digest(), None);
    }

    #[test]
    fn digest_pinned_ref_has_no_default_tag() {
        let s =
            "ghcr.io/x/y@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r: Reference = s.parse().unwrap();
        assert_eq!(r.digest().unwrap().algorithm(), "sha256");
        assert_eq!(r.tag(), None);
        assert_eq!(r.to_string(), s);
        assert_eq!(r.manifest_selector(), &s[s.len() - 71..]);
    }

    #[test]
    fn errors_name_the_part() {
        let kind = |s: &str| s.parse::<Reference>().unwrap_err().kind().clone();
        assert_eq!(
            kind("ghcr.io/Foo/bar"),
            ReferenceErrorKind::Uppercase("Foo/bar".into())
        );
        assert_eq!(
            kind("ghcr.io/a/b:-x"),
            ReferenceErrorKind::InvalidTag("-x".into())
        );
        assert_eq!(
            kind("ghcr.io:x/a"),
            ReferenceErrorKind::InvalidRegistry("ghcr.io:x".into())
        );
        assert_eq!(
            kind("ghcr.io/a..b"),
            ReferenceErrorKind::InvalidPathComponent("a..b".into())
        );
        assert!(matches!(kind("a@sha512:00"), ReferenceErrorKind::Digest(_)));
        for (input, port) in [
            ("localhost:99999/x", "99999"),
            ("localhost:05000/x", "05000"),
            ("localhost:65536/x", "65536"),
            ("localhost:0/x", "0"),
            ("[::1]:70000/x", "70000"),
            ("ghcr.io:99999999999999999999/a:1", "99999999999999999999"),
        ] {
            assert_eq!(
                kind(input),
                ReferenceErrorKind::InvalidPort(port.into()),
                "{input}"
            );
        }
        for ok in ["localhost:1/x", "localhost:65535/x", "[::1]:5000/x"] {
            assert!(ok.parse::<Reference>().is_ok(), "{ok}");
        }
        let e = "localhost:99999/x".parse::<Reference>().unwrap_err();
        assert!(e.to_string().contains("port `99999`"), "{e}");
        let e = "ghcr.io/a/b:-x"
            .parse::<Reference>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("ghcr.io/a/b:-x") && e.contains("`-x`"), "{e}");
    }

    #[test]
    fn separators() {
        for ok in ["a", "a.b", "a_b", "a__b", "a-b", "a---b", "a1.b2_c3__d4-e5"] {
            assert!(is_path_component(ok), "{ok}");
        }
        for bad in ["", ".a", "a.", "a..b", "a___b", "a_.b", "a-", "-a", "A"] {
            assert!(!is_path_component(bad), "{bad}");
        }
    }
}
