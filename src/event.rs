//! Things worth telling a person while the library works, delivered to the
//! callback given to [`ClientBuilder::on_event`](crate::ClientBuilder::on_event).
//! The library itself never prints.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::digest::Digest;
use crate::error::Error;
use crate::reference::Reference;

/// Something worth telling a person about; silent unless a callback is set.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// Another process holds a lock this operation needs; it waits until the lock
    /// is released (or the lock timeout passes).
    WaitingForLock {
        /// The lock file.
        path: &'a Path,
    },
    /// A blob download made progress. Sent when it starts (with what a resumed
    /// download already had), then every 256 KiB or so, and when it completes.
    Downloading {
        /// The blob.
        digest: &'a Digest,
        /// Bytes on disk so far.
        received: u64,
        /// The blob's size.
        total: u64,
    },
    /// A tag could not be revalidated because the registry could not be reached,
    /// so the digest it resolved to before is used.
    UsingCachedTag {
        /// The reference being pulled.
        reference: &'a Reference,
        /// The manifest digest the cache holds for it.
        digest: &'a Digest,
        /// Why the registry could not answer.
        error: &'a Error,
    },
    /// A source other than the registry itself (an OCI image layout, a mirror)
    /// could not give the reference, so the next source is tried.
    SourceSkipped {
        /// The source that failed.
        source: &'a Source,
        /// The reference being pulled, as the registry names it.
        reference: &'a Reference,
        /// Why the source could not give it.
        error: &'a Error,
    },
}

/// Where a pull may come from besides the cache and the registry itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// An OCI image layout directory.
    Layout(PathBuf),
    /// A mirror or pull-through cache, as `host[:port][/path-prefix]`.
    Mirror(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Layout(dir) => write!(f, "OCI image layout {}", dir.display()),
            Source::Mirror(m) => write!(f, "mirror {m}"),
        }
    }
}

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::WaitingForLock { path } => {
                write!(f, "waiting for file lock on {}", path.display())
            }
            Event::Downloading {
                digest,
                received,
                total,
            } => {
                write!(f, "downloading {digest}: {received} of {total} bytes")
            }
            Event::UsingCachedTag {
                reference,
                digest,
                error,
            } => {
                write!(
                    f,
                    "could not revalidate {reference} ({error}); using the cached {digest}"
                )
            }
            Event::SourceSkipped {
                source,
                reference,
                error,
            } => write!(
                f,
                "skipping {source} for {reference}: {error}; trying the next source"
            ),
        }
    }
}

/// A user's event callback.
pub(crate) type Callback = Arc<dyn Fn(&Event<'_>) + Send + Sync>;

/// Where events go: a user callback, or nowhere.
#[derive(Clone, Default)]
pub(crate) struct Events(Option<Callback>);

impl Events {
    pub(crate) fn new(f: Callback) -> Events {
        Events(Some(f))
    }

    pub(crate) fn emit(&self, event: &Event<'_>) {
        if let Some(f) = &self.0 {
            f(event);
        }
    }

    /// Reports [`Event::SourceSkipped`].
    pub(crate) fn skipped(&self, source: &Source, reference: &Reference, error: &Error) {
        self.emit(&Event::SourceSkipped {
            source,
            reference,
            error,
        });
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Events(callback)"
        } else {
            "Events(none)"
        })
    }
}
