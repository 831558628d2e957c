//! Pull WebAssembly plugins, or any single-blob OCI artifact, from OCI registries
//! synchronously, into an on-disk cache that many processes can share.
//!
//! ```
//! use forge_oci::{Client, Error, Network, Reference};
//!
//! // References follow the distribution grammar, Docker Hub names included.
//! let r: Reference = "ghcr.io/owner/plugin:1.0".parse()?;
//! assert_eq!((r.registry(), r.repository(), r.tag()), ("ghcr.io", "owner/plugin", Some("1.0")));
//!
//! // A client that may not touch the network answers from the cache or says why not.
//! let cache = std::env::temp_dir().join("forge-oci-doc-example");
//! let client = Client::builder().cache_dir(&cache).network(Network::Offline).build()?;
//! match client.pull_reference(&r) {
//!     Ok(artifact) => println!("cached at {}", artifact.path().display()),
//!     Err(Error::NotCached { reference, .. }) => assert_eq!(reference, "ghcr.io/owner/plugin:1.0"),
//!     Err(e) => return Err(e),
//! }
//! # Ok::<(), Error>(())
//! ```
//!
//! The rest of this page is the project's README.
#![doc = include_str!("../README.md")]

mod auth;
pub mod build;
mod cache;
mod client;
mod config;
mod derive;
mod digest;
mod env;
mod error;
mod event;
mod export;
mod extract;
mod layers;
pub mod manifest;
mod parallel;
mod pull;
mod reference;
mod registry;
mod resolve;
mod results;
mod source;
mod untrusted;

pub use auth::Credentials;
pub use cache::{
    Cache, CacheEntry, CorruptBlob, MissingLayer, PruneOptions, PruneReport, VerifyReport,
};
pub use client::Client;
pub use config::{ClientBuilder, Network, TagPolicy};
pub use digest::{Digest, DigestErrorKind, ParseDigestError, VerifyError, VerifyingReader};
pub use error::{Error, LayoutProblem, Result, SettingProblem, TokenFailure, UnsafeDirectory};
pub use event::{Event, Source};
pub use extract::ExtractError;
pub use layers::{LayerReason, LayerSelector, PullOptions};
pub use reference::{ParseReferenceError, Reference, ReferenceErrorKind};
pub use registry::UrlRefusal;
pub use results::{Artifact, Inspection, LayerDecision, Resolution};
pub use source::layout::write::Vendored;

use std::path::PathBuf;

#[cfg(any(feature = "__fuzz", test))]
#[doc(hidden)]
pub mod __fuzz {
    //! What the fuzz targets in `fuzz/` call. Each function panics only on a bug:
    //! a property of the parser that must hold for any input.

    /// Parsing never panics, and what parses prints as something that parses to itself.
    pub fn reference(s: &str) {
        if let Ok(r) = s.parse::<crate::Reference>() {
            let again: crate::Reference = r
                .to_string()
                .parse()
                .unwrap_or_else(|e| panic!("{r} does not reparse: {e}"));
            assert_eq!(again, r);
        }
    }

    /// Parsing never panics, and every challenge has a lowercase scheme.
    pub fn www_authenticate(s: &str) {
        for c in crate::auth::parse_challenges(s).unwrap_or_default() {
            assert_eq!(c.scheme, c.scheme.to_ascii_lowercase());
        }
    }

    /// Extracting a module from a layer never panics and never reads past its
    /// bounds, whatever the bytes (as a tar, and as a gzip-compressed tar); a
    /// module it returns was an entry of the layer, so it is no longer than it.
    pub fn layer(data: &[u8]) {
        use crate::extract::{Rule, Stage, extract};
        struct Mem(Vec<u8>);
        impl Stage for Mem {
            type Error = std::convert::Infallible;
            fn write_all(&mut self, buf: &[u8]) -> Result<(), Self::Error> {
                self.0.extend_from_slice(buf);
                Ok(())
            }
        }
        let limit = 1 << 20;
        for media_type in [
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ] {
            for rule in [
                Rule::Istio,
                Rule::Entrypoint(Some("/a.wasm".into())),
                Rule::Entrypoint(None),
            ] {
                if let Ok((_, module)) =
                    extract(data, media_type, &rule, limit, &mut || Ok(Mem(Vec::new())))
                {
                    assert!(module.0.len() as u64 <= limit);
                }
            }
        }
        if let Ok(rule) = Rule::for_config(data) {
            let _ = rule.to_string();
        }
    }

    /// Parsing and selection never panic, whatever the document.
    pub fn manifest(data: &[u8]) {
        use crate::manifest::{DEFAULT_LAYER_MEDIA_TYPES, Manifest, select_layer, select_platform};
        let accepted: Vec<String> = DEFAULT_LAYER_MEDIA_TYPES
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        match Manifest::from_slice(data, None) {
            Ok(Manifest::Image(m)) => {
                if let Ok(layer) = select_layer(&m, &accepted) {
                    let _ = layer.sha256();
                }
            }
            Ok(Manifest::Index(i)) => {
                let _ = select_platform(&i, &crate::manifest::Platform::wasm_defaults());
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }

    /// Reading a credential file (docker config or podman auth.json) never panics,
    /// and which entry and helper apply is the same on every reading (never the
    /// order of a hash map). Helpers are never run from here.
    pub fn credentials(data: &[u8]) {
        for (registry, repository) in [
            ("registry.example:5000", "team/app"),
            ("registry.example:5000", ""),
            ("docker.io", "library/plugin"),
        ] {
            let first = crate::auth::parse_credential_file(data, registry, repository);
            let again = crate::auth::parse_credential_file(data, registry, repository);
            assert_eq!(first, again, "{registry}/{repository}");
        }
    }

    /// What a credential helper printed, however it ended, is judged without
    /// panicking, and a failure is told in one printable line of bounded length
    /// that shows nothing of stdout (where secrets are): when the helper failed or
    /// was stopped, the message is the same whatever stdout held; when it exited
    /// 0, the message is a fixed reason (with a position) and the stderr line.
    /// A found credential's `Debug` is redacted.
    ///
    /// The input is: one byte for how the helper ended, then stdout, a NUL, stderr.
    pub fn credential_helper(data: &[u8]) {
        use crate::auth::{Answer, Ended, judge};
        use std::time::Duration;
        const PROGRAM: &str = "docker-credential-fuzz";
        let Some((&how, rest)) = data.split_first() else {
            return;
        };
        let ended = match how % 5 {
            0 => Ended::Code(0),
            1 => Ended::Code(i32::from(how / 5) - 25),
            2 => Ended::Signal,
            3 => Ended::TimedOut(Duration::from_millis(u64::from(how) * 250)),
            _ => Ended::Deadline(Duration::from_millis(u64::from(how) * 13)),
        };
        let (stdout, stderr) = match rest.iter().position(|&b| b == 0) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        let why = match judge(PROGRAM, ended, stdout, stderr) {
            Answer::Found(c) => {
                assert!(format!("{c:?}").ends_with("<redacted>)"), "{c:?}");
                return;
            }
            Answer::NotFound => return,
            Answer::Failed(why) | Answer::Cut(why) => why,
        };
        assert!(crate::untrusted::is_printable(&why), "{why:?}");
        assert!(why.chars().count() <= 400, "{why:?}");
        if ended != Ended::Code(0) {
            let without_stdout = judge(PROGRAM, ended, b"", stderr);
            assert!(
                matches!(&without_stdout, Answer::Failed(w) | Answer::Cut(w) if *w == why),
                "{why:?} depends on stdout"
            );
            return;
        }
        // What follows the reason comes from stderr alone: as a killed helper's has it.
        let Answer::Failed(killed) = judge(PROGRAM, Ended::Signal, b"", stderr) else {
            panic!("a killed helper is a failure");
        };
        let from_stderr = killed
            .strip_prefix("docker-credential-fuzz get was killed")
            .unwrap_or_else(|| panic!("{killed:?}"));
        let reason = why
            .strip_suffix(from_stderr)
            .and_then(|w| w.strip_prefix("docker-credential-fuzz get "))
            .unwrap_or_else(|| panic!("{why:?} does not end with {from_stderr:?}"));
        let position = |s: &str| {
            let s = s.strip_prefix("line ").and_then(|s| s.strip_suffix(')'));
            s.and_then(|s| s.split_once(", column "))
                .is_some_and(|(l, c)| {
                    [l, c]
                        .iter()
                        .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                })
        };
        assert!(
            reason == "printed more than 64 KiB"
                || reason
                    .strip_prefix("did not print {\"Username\",\"Secret\"} JSON (")
                    .is_some_and(position),
            "{why:?}"
        );
    }

    /// A token endpoint's answer, whatever its numbers, gives a token or a reason
    /// without panicking; the token's `Debug` never shows it, and storing and
    /// looking it up again never panics either.
    pub fn token_answer(data: &[u8]) {
        match crate::auth::parse_token_answer(data) {
            Ok(token) => {
                assert!(token.header().starts_with("Bearer "));
                assert_eq!(format!("{token:?}"), "Token(<redacted>)");
                let store = crate::auth::TokenStore::default();
                store.put("h", "s", token);
                let _ = store.get("h", "s");
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }

    /// A `Retry-After` value, read at any time from 1970 to 9999, never asks for
    /// more than the cap and never panics.
    pub fn retry_after(data: &[u8]) {
        use std::time::{Duration, UNIX_EPOCH};
        let (clock, value) = match data.split_first_chunk::<8>() {
            Some((clock, value)) => (u64::from_le_bytes(*clock), value),
            None => (0, data),
        };
        let Ok(value) = std::str::from_utf8(value) else {
            return;
        };
        let now = UNIX_EPOCH + Duration::from_secs(clock % 253_402_300_800);
        if let Some(wait) = crate::registry::retry::parse_retry_after(value, now) {
            assert!(
                wait <= Duration::from_secs(60),
                "{value:?} asks for {wait:?}"
            );
        }
    }

    /// A registry error body is summarised in bounded, printable text, whatever it holds.
    pub fn error_body(data: &[u8]) {
        let (code, summary) = crate::registry::status::summarise_error_body(data);
        for text in code.iter().chain(summary.iter()) {
            assert!(text.chars().count() <= 401, "{text:?}");
            assert!(crate::untrusted::is_printable(text), "{text:?}");
        }
    }

    /// A `Content-Range` parses into a range that starts no later than it ends
    /// and ends before the complete length, and prints back to what it was read from.
    pub fn content_range(s: &str) {
        if let Some(r) = crate::registry::range::parse_content_range(s) {
            assert!(r.first <= r.last, "{s:?}");
            assert!(r.complete.is_none_or(|c| r.last < c), "{s:?}");
            let complete = r.complete.map_or("*".to_owned(), |c| c.to_string());
            let printed = format!("bytes {}-{}/{complete}", r.first, r.last);
            assert_eq!(
                crate::registry::range::parse_content_range(&printed),
                Some(r)
            );
        }
    }

    /// A URL from a server (a realm, a `Location`) either parses into parts that
    /// hold no user information and print without query or fragment, or is
    /// refused; read against a base, the same holds; redacting any text drops
    /// what follows `?` or `#` and any user information.
    pub fn url(s: &str) {
        use crate::registry::url::{Url, redact};
        // No `@` before the path: what is printed names no user.
        let no_user = |printed: &str| {
            let after_scheme = printed.split_once("://").map_or(printed, |(_, rest)| rest);
            !after_scheme
                .split('/')
                .next()
                .unwrap_or_default()
                .contains('@')
        };
        let check = |u: &Url| {
            let printed = u.redacted();
            assert!(!printed.contains(['?', '#']), "{s:?} -> {printed}");
            assert!(no_user(&printed), "{s:?} -> {printed}");
            assert!(!u.host().is_empty() && !u.host().contains('@'), "{s:?}");
            let again = Url::parse(&u.as_request()).unwrap_or_else(|e| panic!("{s:?}: {e:?}"));
            assert_eq!(&again, u, "{s:?} does not reparse to itself");
        };
        if let Ok(u) = Url::parse(s) {
            check(&u);
        }
        for base in [
            "https://reg.example:5000/v2/a/blobs/sha256:1?x=y",
            "http://[::1]/",
        ] {
            if let Ok(u) = Url::parse(base).and_then(|b| b.join(s)) {
                check(&u);
            }
        }
        let r = redact(s);
        assert!(!r.contains(['?', '#']), "{s:?} -> {r}");
        if r.contains("://") {
            assert!(no_user(&r), "{s:?} -> {r}");
        }
        assert!(r.chars().count() <= 201, "{r}"); // 200 and a `…`
        assert!(!r.chars().any(char::is_control), "{r:?}");
    }
}

/// Pulls `reference` with a default [`Client`] and returns the blob's bytes.
///
/// # Errors
/// As [`Client::pull`], plus [`Error::Io`] when the cached file cannot be read.
pub fn fetch_to_bytes(reference: &str) -> Result<Vec<u8>> {
    Client::new()?.pull(reference)?.read()
}

/// Pulls `reference` with a default [`Client`] and returns the cached blob's path.
///
/// # Errors
/// As [`Client::pull`].
pub fn fetch_to_path(reference: &str) -> Result<PathBuf> {
    Ok(Client::new()?.pull(reference)?.path().to_path_buf())
}

/// Inputs that once crashed the fuzz targets for outside input (fuzz/), kept in
/// `tests/fixtures/fuzz/<target>/` so they never do again.
#[cfg(test)]
mod fuzz_regressions {
    #[test]
    fn kept_inputs_of_every_target() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
        let inputs = |target: &str| -> Vec<Vec<u8>> {
            // A target with no saved crash has no directory (git keeps no empty ones).
            std::fs::read_dir(dir.join(target))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| std::fs::read(e.path()).ok())
                .collect()
        };
        for data in inputs("layer") {
            super::__fuzz::layer(&data);
        }
        for data in inputs("token_answer") {
            super::__fuzz::token_answer(&data);
        }
        for data in inputs("retry_after") {
            super::__fuzz::retry_after(&data);
        }
        for data in inputs("content_range") {
            if let Ok(s) = std::str::from_utf8(&data) {
                super::__fuzz::content_range(s);
            }
        }
        for data in inputs("error_body") {
            super::__fuzz::error_body(&data);
        }
        for data in inputs("credential_helper") {
            super::__fuzz::credential_helper(&data);
        }
        for data in inputs("url") {
            if let Ok(s) = std::str::from_utf8(&data) {
                super::__fuzz::url(s);
            }
        }
    }
}
