//! The crate's error type.
//!
//! Every variant names what a person needs to act: the reference, the registry,
//! the digest expected and received, the path. Failures that come from outside
//! (I/O, the network) are returned from `source()` rather than repeated in the
//! message. No variant ever holds a password or a token.

use std::path::PathBuf;

use crate::digest::{Digest, ParseDigestError, VerifyError};
use crate::extract::ExtractError;
use crate::manifest::{ParseManifestError, SelectError};
use crate::reference::ParseReferenceError;

mod reason;

pub use reason::{SettingProblem, TokenFailure, UnsafeDirectory};

impl Error {
    /// Whether this is a source's failure, after which another source (a mirror,
    /// a layout, the registry) may do better; not the cache's or the settings',
    /// which no other source changes, nor a deadline that has passed.
    pub(crate) fn is_source_failure(&self) -> bool {
        !matches!(
            self,
            Error::Io { .. }
                | Error::LockTimeout { .. }
                | Error::ReadOnlyCache { .. }
                | Error::UnsafeCacheDirectory { .. }
                | Error::NoCacheDir
                | Error::Config { .. }
                | Error::Deadline { .. }
        )
    }
}

/// What is wrong with a file of an OCI image layout ([`Error::Layout`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutProblem {
    /// It could not be read.
    #[error("cannot read it: {0}")]
    Io(std::io::Error),
    /// `index.json` is not an image index this crate can read.
    #[error("not a valid index.json: {0}")]
    Index(String),
    /// A descriptor's digest cannot be used.
    #[error("{0}")]
    Digest(ParseDigestError),
    /// A manifest in the layout is not valid.
    #[error("{0}")]
    Manifest(ParseManifestError),
    /// Its content does not match its digest or size.
    #[error("{0}")]
    Verify(VerifyError),
    /// It is larger than the limit for a manifest.
    #[error("larger than the {limit}-byte manifest limit")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
}

/// Shorthand for `Result<T, forge_oci::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while pulling or caching an artifact.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The reference string does not follow the distribution grammar.
    #[error(transparent)]
    InvalidReference(#[from] ParseReferenceError),

    /// The registry has no such repository, tag or digest (HTTP 404).
    #[error("{reference} not found on {registry}{}", detail_suffix(.detail))]
    NotFound {
        /// The reference as normalised.
        reference: String,
        /// The registry host asked.
        registry: String,
        /// What the registry said, if anything.
        detail: Option<String>,
    },

    /// The registry wants credentials that were not given or not accepted (HTTP 401).
    #[error("{registry} refused access to {reference}{}; {advice}", detail_suffix(.detail))]
    Unauthorized {
        /// The reference as normalised.
        reference: String,
        /// The registry host asked.
        registry: String,
        /// What the registry said, if anything.
        detail: Option<String>,
        /// What to do: which credentials were tried (by source, never by value) and how to log in.
        advice: String,
    },

    /// The registry refused access to the repository (HTTP 403).
    #[error("{registry} denied access to {reference}{}; {advice}", detail_suffix(.detail))]
    Denied {
        /// The reference as normalised.
        reference: String,
        /// The registry host asked.
        registry: String,
        /// What the registry said, if anything.
        detail: Option<String>,
        /// What to do: which credentials were tried (by source, never by value) and how to log in.
        advice: String,
    },

    /// Any other unexpected HTTP status.
    #[error("{registry} answered HTTP {status} for {url}{}", detail_suffix(.detail))]
    Registry {
        /// The registry host asked.
        registry: String,
        /// The URL requested, without query string.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The first error code of a registry error body (`MANIFEST_UNKNOWN`, …).
        code: Option<String>,
        /// The registry's error body, summarised.
        detail: Option<String>,
    },

    /// A host the registry redirected to (a CDN, a storage bucket) answered with an
    /// error status, whichever it was: its 401, 403 or 404 says nothing of the
    /// reference or of the registry's credentials.
    #[error("{host} answered HTTP {status} for {url}, where {registry} redirected{}", detail_suffix(.detail))]
    RedirectTarget {
        /// The registry that redirected.
        registry: String,
        /// The host that answered, `host[:port]`.
        host: String,
        /// The URL that answered, without user information, query string or
        /// fragment (a presigned URL's signature is in its query).
        url: String,
        /// The HTTP status.
        status: u16,
        /// Its error body, summarised; left out if it quotes the query string.
        detail: Option<String>,
    },

    /// The registry could not be reached or the connection failed mid-way.
    #[error("connection to {host} failed while {action}")]
    Transport {
        /// The host (and port) connected to.
        host: String,
        /// What was being done, e.g. `fetching the manifest of ghcr.io/a/b:1`.
        action: String,
        /// The underlying failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The pull's deadline ([`ClientBuilder::pull_timeout`](crate::ClientBuilder::pull_timeout))
    /// passed. Nothing was committed to the cache.
    #[error("gave up {action}: the time allowed for the pull ran out")]
    Deadline {
        /// What was being done when time ran out.
        action: String,
    },

    /// The bearer-token service did not give a usable token.
    #[error("could not get a token for {registry} from {realm}: {reason}")]
    Token {
        /// The registry that asked for the token.
        registry: String,
        /// The token endpoint, without user information, query string or fragment.
        realm: String,
        /// What went wrong; [`TokenFailure::status`] gives the endpoint's HTTP status.
        reason: TokenFailure,
    },

    /// A URL a server sent, a token realm or a redirect's `Location`, was refused
    /// before anything was sent to it.
    #[error("{registry} sent a {what} that was refused: {reason} ({url})")]
    RefusedUrl {
        /// The registry being talked to.
        registry: String,
        /// What the URL was for: `"token realm"` or `"redirect target"`.
        what: &'static str,
        /// `host[:port]` the URL would have led to, when it names one; for a URL
        /// with user information, the host after it.
        host: Option<String>,
        /// The URL without user information, query string or fragment.
        url: String,
        /// Why it was refused.
        reason: UrlRefusal,
    },

    /// A manifest (or token response) exceeded its size limit; reading stopped there.
    #[error("{what} for {reference} is larger than the {limit}-byte limit")]
    TooLarge {
        /// What was being read.
        what: &'static str,
        /// The reference as normalised.
        reference: String,
        /// The limit in bytes.
        limit: u64,
    },

    /// A manifest could not be used.
    #[error("manifest {digest} of {reference}: {reason}")]
    InvalidManifest {
        /// The reference as normalised.
        reference: String,
        /// The manifest's digest.
        digest: Digest,
        /// What was wrong with it.
        reason: ParseManifestError,
    },

    /// Nothing in the manifest or index fits the client's platforms or media types.
    #[error("{reference}: {reason}")]
    NoMatch {
        /// The reference as normalised.
        reference: String,
        /// What was looked for and what was found.
        reason: SelectError,
    },

    /// No wasm module could be taken out of a container image's filesystem layer.
    /// Nothing was stored for it.
    #[error("{reference}: cannot extract the wasm module from layer {layer}: {reason}")]
    Extract {
        /// The reference as normalised.
        reference: String,
        /// The layer's digest.
        layer: Digest,
        /// Why.
        reason: Box<ExtractError>,
    },

    /// A descriptor uses a digest forge-oci cannot verify.
    #[error("{reference}: {reason}")]
    UnsupportedDigest {
        /// The reference as normalised.
        reference: String,
        /// The digest and why it is refused.
        reason: ParseDigestError,
    },

    /// Content did not match its digest or size. Nothing was stored.
    #[error("{what} {expected} of {reference}: {reason}")]
    Verification {
        /// `"manifest"` or `"blob"`.
        what: &'static str,
        /// The reference as normalised.
        reference: String,
        /// The digest the content should have had.
        expected: Digest,
        /// The mismatch: digests or sizes expected and received.
        reason: VerifyError,
    },

    /// A file of an OCI image layout cannot be used: unreadable, invalid, or not
    /// the content its digest names. Nothing from it was cached.
    #[error("{reference}: cannot use {} from an OCI image layout: {reason}", path.display())]
    Layout {
        /// The reference as normalised.
        reference: String,
        /// The file in the layout (`index.json`, `blobs/sha256/<hex>`).
        path: PathBuf,
        /// What is wrong with it.
        reason: LayoutProblem,
    },

    /// The network is off (offline mode) and the reference is not cached.
    #[error(
        "{reference} is not in the cache at {cache} and the network is off (offline mode: Network::Offline, FORGE_OFFLINE or CARGO_NET_OFFLINE); pull it once online to fill the cache"
    )]
    NotCached {
        /// The reference as normalised.
        reference: String,
        /// The cache root.
        cache: PathBuf,
    },

    /// A file-system operation failed, in the cache or on a copy out of it.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done (`create directory`, `write`, `lock`, …).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },

    /// A copy out of the cache ([`Artifact::copy_to`](crate::Artifact::copy_to)) was
    /// asked to write onto the cached file itself (its path, or a symbolic or hard
    /// link to it) or anywhere else inside the cache. Nothing was written; the
    /// cache is intact.
    #[error(
        "cannot copy the artifact to {}: that is inside the cache ({}); choose another destination",
        destination.display(),
        cached.display()
    )]
    DestinationIsCached {
        /// The destination given.
        destination: PathBuf,
        /// The cached file it leads to, or the cache's root when it is another
        /// place inside the cache.
        cached: PathBuf,
    },

    /// Another process held a cache lock longer than the configured lock timeout.
    #[error("gave up after {waited:?} waiting for file lock on {path}")]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited: std::time::Duration,
    },

    /// The reference is not cached and the cache cannot be written (a read-only
    /// mount or a directory owned by someone else). Hits are still served.
    #[error(
        "{reference} is not in the cache and the cache is read-only ({path} cannot be written); pull it once with a writable cache, or point FORGE_CACHE_DIR elsewhere"
    )]
    ReadOnlyCache {
        /// The reference as normalised.
        reference: String,
        /// The path that could not be written.
        path: PathBuf,
    },

    /// A setting cannot be used: an empty cache directory (from
    /// [`ClientBuilder::cache_dir`](crate::ClientBuilder::cache_dir) or `FORGE_CACHE_DIR`),
    /// a TLS certificate bundle that cannot be read or holds no certificate, a
    /// proxy URL that does not parse or has a scheme that is not a proxy's, or a
    /// variable that is not UTF-8.
    #[error("cannot use {setting} `{value}`: {reason}")]
    Config {
        /// The setting: `FORGE_CACHE_DIR`, `ClientBuilder::cache_dir`, `SSL_CERT_FILE`,
        /// the proxy variable (`https_proxy`, `ALL_PROXY`, …), `ClientBuilder::proxy`,
        /// `ClientBuilder::root_certificate`, ….
        setting: &'static str,
        /// Its value (a proxy URL with any password replaced).
        value: String,
        /// What is wrong with it.
        reason: SettingProblem,
    },

    /// A cache directory this process would write into can be changed by another
    /// user, who could then swap its entries for links and redirect the writes.
    /// Nothing was written there; as git refuses a repository another user owns.
    #[error("refusing to write into {}: {reason}", path.display())]
    UnsafeCacheDirectory {
        /// The directory.
        path: PathBuf,
        /// Why it is not safe: who owns it, or who else can write it.
        reason: UnsafeDirectory,
    },

    /// No cache directory was given and the platform has none.
    #[error("no cache directory: set FORGE_CACHE_DIR or ClientBuilder::cache_dir")]
    NoCacheDir,
}

fn detail_suffix(detail: &Option<String>) -> String {
    match detail {
        Some(d) => format!(" ({d})"),
        None => String::new(),
    }
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Why a URL a server sent was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UrlRefusal {
    /// Not an `http://` or `https://` URL (`file:`, `ftp:`, a bare path…).
    NotHttp,
    /// It carries a user name or password (`http://user:pass@host/`). Its host
    /// is not what a quick reading suggests, and credentials are never sent this way.
    UserInfo,
    /// It cannot be read unambiguously: a malformed host or port, or a character
    /// URLs cannot hold.
    Malformed,
    /// A redirect from HTTPS down to plain HTTP.
    Downgrade,
    /// A plain-HTTP token realm for a registry reached over HTTPS.
    PlainHttpRealm,
}

impl std::fmt::Display for UrlRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UrlRefusal::NotHttp => "it is not an http(s) URL",
            UrlRefusal::UserInfo => "it carries a user name or password",
            UrlRefusal::Malformed => "it cannot be read unambiguously",
            UrlRefusal::Downgrade => "it leads from HTTPS down to plain HTTP",
            UrlRefusal::PlainHttpRealm => {
                "it is a plain-HTTP token service for a registry reached over HTTPS"
            }
        })
    }
}

#[cfg(test)]
mod tests {
    /// Every `Result` in the crate carries an `Error`: keep it small enough to
    /// move cheaply (clippy's `result_large_err` draws the line at 128 bytes).
    #[test]
    fn an_error_stays_within_its_size_budget() {
        let size = std::mem::size_of::<super::Error>();
        assert!(size <= 128, "Error is {size} bytes");
    }
}
