//! Why a token, a setting or a cache directory could not be used: the typed
//! reasons [`Error`](super::Error) variants carry, so a caller matches on a
//! variant instead of searching a message.

use std::fmt;

use crate::untrusted::printable;

/// Why a bearer-token service gave no usable token ([`Error::Token`](super::Error::Token)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenFailure {
    /// The registry's `Bearer` challenge names no `realm` to ask.
    NoRealm,
    /// The token endpoint refused the credentials it was sent (HTTP 401 or 403).
    CredentialsRefused {
        /// The HTTP status.
        status: u16,
    },
    /// The token endpoint answered with an error status.
    Status {
        /// The HTTP status.
        status: u16,
    },
    /// The answer is larger than a token answer can reasonably be.
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The answer is not JSON of the expected shape. The body is never quoted: it
    /// may hold a token.
    NotJson {
        /// Where parsing stopped: line, 1-based.
        line: usize,
        /// Where parsing stopped: column, 1-based.
        column: usize,
    },
    /// The answer has neither `token` nor `access_token` (or both are empty).
    NoToken,
}

impl TokenFailure {
    /// The token endpoint's HTTP status, when it answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            TokenFailure::CredentialsRefused { status } | TokenFailure::Status { status } => {
                Some(*status)
            }
            _ => None,
        }
    }
}

impl fmt::Display for TokenFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenFailure::NoRealm => f.write_str("the registry's Bearer challenge names no realm"),
            TokenFailure::CredentialsRefused { status } => {
                write!(
                    f,
                    "the token endpoint refused the credentials (HTTP {status})"
                )
            }
            TokenFailure::Status { status } => {
                write!(f, "the token endpoint answered HTTP {status}")
            }
            TokenFailure::TooLarge { limit } => {
                write!(f, "the token response exceeds {limit} bytes")
            }
            TokenFailure::NotJson { line, column } => write!(
                f,
                "the token response is not valid JSON (line {line}, column {column})"
            ),
            TokenFailure::NoToken => {
                f.write_str("the token response has neither `token` nor `access_token`")
            }
        }
    }
}

/// Why a setting cannot be used ([`Error::Config`](super::Error::Config)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SettingProblem {
    /// An environment variable's value is not valid UTF-8.
    NotUtf8,
    /// A path setting is empty, which would mean the current directory.
    EmptyPath,
    /// A number was expected (a count of columns, of threads, …).
    NotANumber {
        /// What the number counts.
        expected: &'static str,
    },
    /// A file the setting names cannot be read.
    Unreadable {
        /// The operating system's reason.
        kind: std::io::ErrorKind,
    },
    /// A file the setting names is a directory, a device or a FIFO.
    NotARegularFile,
    /// A file the setting names is larger than such a file can reasonably be.
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// A certificate bundle is empty.
    NoContent,
    /// A certificate bundle is neither PEM nor one DER certificate.
    NotPemOrDer,
    /// A certificate bundle is PEM that does not parse.
    InvalidPem,
    /// A certificate bundle's certificate (1-based) is not an X.509 certificate.
    NotX509 {
        /// Its position in the bundle, 1-based.
        index: usize,
    },
    /// A PEM bundle holds no `CERTIFICATE` item.
    NoCertificate,
    /// A proxy URL's scheme is not one a proxy speaks.
    ProxyScheme {
        /// The scheme, escaped and shortened for display.
        scheme: String,
    },
    /// A proxy setting is not `[scheme://][user:password@]host[:port]`.
    NotAProxyUrl,
    /// A mirror list entry is not `REGISTRY=MIRROR[,MIRROR...]`.
    NotAMirrorEntry {
        /// The entry, escaped and shortened for display.
        entry: String,
    },
    /// A mirror entry's registry is not `host[:port]`.
    NotARegistry {
        /// The registry as written, escaped and shortened.
        registry: String,
    },
    /// A mirror is not `host[:port][/path-prefix]`.
    NotAMirror {
        /// The mirror as written, escaped and shortened.
        mirror: String,
    },
}

impl SettingProblem {
    pub(crate) fn mirror_entry(entry: impl AsRef<str>) -> SettingProblem {
        SettingProblem::NotAMirrorEntry {
            entry: printable(entry.as_ref(), 200),
        }
    }

    pub(crate) fn mirror_registry(registry: impl AsRef<str>) -> SettingProblem {
        SettingProblem::NotARegistry {
            registry: printable(registry.as_ref(), 200),
        }
    }

    pub(crate) fn mirror_host(mirror: impl AsRef<str>) -> SettingProblem {
        SettingProblem::NotAMirror {
            mirror: printable(mirror.as_ref(), 200),
        }
    }
}

impl fmt::Display for SettingProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingProblem::NotUtf8 => f.write_str("the value is not valid UTF-8"),
            SettingProblem::EmptyPath => {
                f.write_str("an empty path would mean the current directory; name a directory")
            }
            SettingProblem::NotANumber { expected } => {
                write!(f, "expected {expected}, a whole number")
            }
            SettingProblem::Unreadable { kind } => write!(f, "it cannot be read: {kind}"),
            SettingProblem::NotARegularFile => f.write_str("it is not a regular file"),
            SettingProblem::TooLarge { limit } => {
                write!(f, "it is larger than {} MiB", limit >> 20)
            }
            SettingProblem::NoContent => f.write_str("it is empty"),
            SettingProblem::NotPemOrDer => f.write_str(
                "it is neither PEM (`-----BEGIN CERTIFICATE-----`) nor one DER certificate",
            ),
            SettingProblem::InvalidPem => f.write_str("it is not valid PEM"),
            SettingProblem::NotX509 { index } => {
                write!(f, "its certificate #{index} is not an X.509 certificate")
            }
            SettingProblem::NoCertificate => {
                f.write_str("it holds no certificate (`-----BEGIN CERTIFICATE-----`)")
            }
            SettingProblem::ProxyScheme { scheme } => write!(
                f,
                "`{scheme}` is not a proxy scheme; use http, https, socks4, socks4a, socks5 or socks5h"
            ),
            SettingProblem::NotAProxyUrl => {
                f.write_str("it is not a proxy URL (`[scheme://][user:password@]host[:port]`)")
            }
            SettingProblem::NotAMirrorEntry { entry } => {
                write!(f, "`{entry}` is not REGISTRY=MIRROR[,MIRROR...]")
            }
            SettingProblem::NotARegistry { registry } => write!(
                f,
                "`{registry}` is not a registry host[:port] (e.g. docker.io, ghcr.io)"
            ),
            SettingProblem::NotAMirror { mirror } => write!(
                f,
                "`{mirror}` is not a mirror host[:port][/path-prefix] (e.g. mirror.corp:5000, harbor.corp/ghcr-proxy)"
            ),
        }
    }
}

/// Why a cache directory is not safe to write into
/// ([`Error::UnsafeCacheDirectory`](super::Error::UnsafeCacheDirectory)): another
/// user could swap its entries for links and redirect this process's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnsafeDirectory {
    /// The directory belongs to another user.
    OwnedBy {
        /// That user's id.
        uid: u32,
    },
    /// Every user can write the directory.
    WorldWritable {
        /// Its permission bits.
        mode: u32,
    },
    /// A directory on the way to the cache belongs to another user (not root).
    ParentOwnedBy {
        /// That user's id.
        uid: u32,
    },
    /// A directory on the way to the cache can be written by every user and is
    /// not sticky.
    ParentWorldWritable {
        /// Its permission bits.
        mode: u32,
    },
    /// A symbolic link on the way to the cache belongs to another user (not root).
    LinkOwnedBy {
        /// That user's id.
        uid: u32,
    },
}

impl fmt::Display for UnsafeDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnsafeDirectory::OwnedBy { uid } => write!(
                f,
                "it belongs to user {uid}, not to this user: that user could swap its entries for links"
            ),
            UnsafeDirectory::WorldWritable { mode } => write!(
                f,
                "every user can write it (mode {mode:o}): any of them could swap its entries for links"
            ),
            UnsafeDirectory::ParentOwnedBy { uid } => write!(
                f,
                "a directory on the way to the cache belongs to user {uid}, who could swap its entries"
            ),
            UnsafeDirectory::ParentWorldWritable { mode } => write!(
                f,
                "a directory on the way to the cache can be written by every user (mode {mode:o}) and is not sticky"
            ),
            UnsafeDirectory::LinkOwnedBy { uid } => write!(
                f,
                "the link on the way to the cache belongs to user {uid}, who could point it elsewhere"
            ),
        }
    }
}
