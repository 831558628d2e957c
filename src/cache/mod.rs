//! The on-disk, content-addressed cache. No network. Paths are in [`layout`].
//!
//! A ref file's modification time is when it was last resolved against the registry.
//! Modules extracted from container image layers live under `derived/`, named for
//! their own digest in a directory named for the layer (see [`derived`]).
//!
//! Invariants: a file under `blobs/` always hashes to its name (each writer
//! verifies its own file while streaming and renames exactly that file into
//! place, see [`commit`]); reads take no lock, so a read-only or pre-seeded cache
//! serves hits; a hit is a regular file of the descriptor's size (a `stat`, not
//! a hash), anything else is a miss that repairs it; only one process at a time
//! downloads a given blob while locks work, and a waiter re-checks `blobs/`
//! before downloading; nothing is written through a link planted in the cache.

mod commit;
mod derived;
mod files;
mod layout;
mod lock;
mod ops;
mod pipeline;
mod tokens;

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::event::{Event, Events};
use crate::manifest::Document;
use crate::reference::Reference;

pub(crate) use commit::CommitError;
use commit::{Mode, Target};
pub(crate) use derived::{Derived, Staged};
pub(crate) use files::sync_parent;
use files::{
    ensure_dir, ensure_dirs_below, ensure_root, open_no_follow, open_regular, regular_len,
};
use layout::Layout;
pub(crate) use lock::PullGuard;
use lock::{Guarding, Waiting, with_lock};
pub use ops::{CacheEntry, CorruptBlob, MissingLayer, PruneOptions, PruneReport, VerifyReport};
pub(crate) use pipeline::Tee;
pub(crate) use tokens::{RememberedChallenge, TokenFiles};

/// How large a cached manifest may be, and how long the cache waits for locks.
/// Set through the client's builder.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) max_manifest_size: u64,
    pub(crate) lock_timeout: Option<Duration>,
}

/// What [`Cache::list`] reports as a reference's layer: the client's manifest
/// selection, handed in so that the cache itself selects nothing.
pub(crate) type LayerOf = Arc<
    dyn Fn(&Cache, &Reference, &Digest) -> std::result::Result<(Digest, u64), MissingLayer>
        + Send
        + Sync,
>;

/// The on-disk cache a [`Client`](crate::Client) pulls into, with the operations
/// that inspect and maintain it. Get one from [`Client::cache`](crate::Client::cache).
#[derive(Clone)]
pub struct Cache {
    layout: Layout,
    policy: Policy,
    events: Events,
    layer_of: LayerOf,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("root", &self.root())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Cache {
    pub(crate) fn new(root: PathBuf, policy: Policy, events: Events, layer_of: LayerOf) -> Cache {
        Cache {
            layout: Layout::new(root),
            policy,
            events,
            layer_of,
        }
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.layout.blob(digest)
    }

    /// Whether blob `digest` of `size` bytes is cached: a regular file (never a
    /// link) of that length. A stat, not a hash: `verify` is what re-hashes.
    pub(crate) fn has_blob(&self, digest: &Digest, size: u64) -> bool {
        regular_len(&self.layout.blob(digest)) == Some(size)
    }

    /// The manifest digest recorded for `r` and when it was resolved. A missing or
    /// unreadable ref is a miss, never an error: the registry can answer instead.
    pub(crate) fn read_ref(&self, r: &Reference) -> Option<(Digest, SystemTime)> {
        read_ref_file(&self.layout.ref_file(r)).or_else(|| {
            // Written by a version that kept upper case in tag file names. On a
            // case-insensitive file system that name may be another tag's, so it
            // counts only where the directory lists it exactly.
            let legacy = self.layout.legacy_ref_file(r)?;
            let (dir, name) = (legacy.parent()?, legacy.file_name()?);
            let listed = fs::read_dir(dir)
                .ok()?
                .flatten()
                .any(|e| e.file_name() == name);
            // And only where names are case-sensitive: there, its lower-case
            // spelling is another file or none (on a case-folding file system, a
            // tag differing only in case may have rewritten it, keeping the old
            // spelling).
            let folded = legacy.with_file_name(name.to_str()?.to_ascii_lowercase());
            let case_sensitive = !is_same_entry(&legacy, &folded);
            (listed && case_sensitive)
                .then(|| read_ref_file(&legacy))
                .flatten()
        })
    }

    /// Records that `r` resolved to `manifest`, now.
    pub(crate) fn write_ref(
        &self,
        _held: &PullGuard,
        r: &Reference,
        manifest: &Digest,
    ) -> Result<()> {
        let (dirs, _) = Layout::ref_components(r);
        let refs = self.layout.refs_dir();
        ensure_dir(&refs)?;
        ensure_dirs_below(&refs, &dirs)?;
        let bytes = format!("{manifest}\n");
        commit::write_bytes(
            &self.tmp_dir()?,
            &self.layout.ref_file(r),
            bytes.as_bytes(),
            Mode::Mutable,
        )
    }

    /// Marks `r` as resolved now. Best effort: a read-only cache keeps the old time.
    pub(crate) fn touch_ref(&self, r: &Reference) {
        let path = self.layout.ref_file(r);
        if let Ok(f) = open_no_follow(fs::OpenOptions::new().append(true), &path) {
            let _ = f.set_modified(SystemTime::now());
        }
    }

    /// A cached manifest, read whole and re-hashed (manifests are small). A file
    /// that does not hash to its name, or is over the size limit, is a miss.
    pub(crate) fn read_manifest(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let path = self.blob_path(digest);
        let file = match open_regular(&path) {
            Ok(Some(f)) => f,
            // Missing, not a file, or unreadable: a miss the registry can fill.
            Ok(None) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(None),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        let limit = self.policy.max_manifest_size;
        let mut bytes = Vec::new();
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io("read", &path, e))?;
        Ok((bytes.len() as u64 <= limit && Digest::of(&bytes) == *digest).then_some(bytes))
    }

    /// A cached manifest that verifies and still parses; anything else is a miss
    /// the registry can fill.
    pub(crate) fn document(&self, digest: &Digest) -> Result<Option<Document>> {
        Ok(self
            .read_manifest(digest)?
            .and_then(|bytes| Document::stored(digest.clone(), bytes)))
    }

    /// Stores bytes already in memory (manifests) under their digest, replacing
    /// a cached copy that is damaged.
    pub(crate) fn store_bytes(
        &self,
        _held: &PullGuard,
        digest: &Digest,
        bytes: &[u8],
    ) -> Result<()> {
        debug_assert_eq!(Digest::of(bytes), *digest);
        if self
            .read_manifest(digest)?
            .is_some_and(|cached| cached == bytes)
        {
            return Ok(());
        }
        ensure_dir(&self.layout.blob_dir())?;
        commit::write_bytes(
            &self.tmp_dir()?,
            &self.blob_path(digest),
            bytes,
            Mode::Immutable,
        )
    }

    fn waiting(&self) -> impl Fn(&Path) + '_ {
        |path| self.events.emit(&Event::WaitingForLock { path })
    }

    fn lock<T, E: From<Error>>(
        &self,
        path: &Path,
        guarding: Guarding,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let on_wait = self.waiting();
        let waiting = Waiting {
            on_wait: &on_wait,
            timeout: self.policy.lock_timeout,
        };
        with_lock(path, guarding, &waiting, f)
    }

    /// Whether a pull of `r` could write here, checked before any network request
    /// so that a read-only cache is said at once. Takes no lock.
    /// Nothing below the root is made here: `clear` removes those directories under
    /// the exclusive lock, and only a pull holding its lock may make them again.
    pub(crate) fn check_writable(&self, r: &Reference) -> Result<()> {
        let root = self.root();
        let result = ensure_root(root).and_then(|()| files::check_can_write(root));
        read_only_for(r, result)
    }

    /// Runs `f` under the cache-wide lock held for a pull (shared with other
    /// pulls), handing it the guard that the writing functions ask for. A cache
    /// that cannot be written is reported as such for `r`.
    pub(crate) fn with_pull_lock<T>(
        &self,
        r: &Reference,
        f: impl FnOnce(&PullGuard) -> Result<T>,
    ) -> Result<T> {
        // The directories are made under the lock: `clear` removes them under the
        // same lock held exclusively, so a pull never finds them gone.
        // The root itself may be a link the user made (`~/.cache` on another disk).
        let result = ensure_root(self.root()).and_then(|()| {
            self.lock(&self.layout.cache_lock(), Guarding::Pull, || {
                self.layout
                    .writable_dirs()
                    .iter()
                    .try_for_each(|d| ensure_dir(d))?;
                f(&PullGuard(()))
            })
        });
        read_only_for(r, result)
    }

    /// Makes sure blob `digest` of `size` bytes is in the cache, downloading it at
    /// most once across processes. `open_at(offset)` opens the source, asking for
    /// the bytes from `offset` when a partial download can be resumed, and returns
    /// the offset its bytes actually start at. `tee`, when given, gets the bytes
    /// as they arrive too (see [`Tee`] for when it ends up complete). Returns the
    /// blob's path and whether this call downloaded it.
    pub(crate) fn fetch_blob_teeing<R: Read>(
        &self,
        _held: &PullGuard,
        digest: &Digest,
        size: u64,
        mut open_at: impl FnMut(u64) -> Result<(R, u64)>,
        tee: Option<&mut Tee>,
    ) -> std::result::Result<(PathBuf, bool), CommitError> {
        let dest = self.blob_path(digest);
        if self.has_blob(digest, size) {
            return Ok((dest, false));
        }
        let downloaded = self.lock(
            &self.layout.blob_lock(digest),
            Guarding::BlobDownload,
            || -> Result<bool, CommitError> {
                // Whoever held the lock before us may have finished the job.
                if self.has_blob(digest, size) {
                    return Ok(false);
                }
                // Every 256 KiB is often enough for a progress bar and rare enough to cost nothing.
                let mut reported = None;
                let mut progress = |received: u64| {
                    let step = received >> 18;
                    if reported != Some(step) || received == size {
                        reported = Some(step);
                        self.events.emit(&Event::Downloading {
                            digest,
                            received,
                            total: size,
                        });
                    }
                };
                let (tmp_dir, partial) = (self.tmp_dir()?, self.layout.partial(digest));
                let target = Target {
                    tmp_dir: &tmp_dir,
                    partial: &partial,
                    dest: &dest,
                    digest,
                    size,
                };
                commit::download(&target, &mut open_at, &mut progress, tee)?;
                Ok(true)
            },
        )?;
        Ok((dest, downloaded))
    }

    /// [`Cache::fetch_blob_teeing`] without a tee.
    #[cfg(test)]
    pub(crate) fn fetch_blob<R: Read>(
        &self,
        held: &PullGuard,
        digest: &Digest,
        size: u64,
        open_at: impl FnMut(u64) -> Result<(R, u64)>,
    ) -> std::result::Result<(PathBuf, bool), CommitError> {
        self.fetch_blob_teeing(held, digest, size, open_at, None)
    }

    /// The files that keep anonymous tokens and challenges across processes.
    pub(crate) fn token_files(&self) -> TokenFiles {
        TokenFiles::new(&self.layout)
    }

    fn tmp_dir(&self) -> Result<PathBuf> {
        let tmp = self.layout.tmp_dir();
        ensure_dir(&tmp)?;
        Ok(tmp)
    }
}

fn read_ref_file(path: &Path) -> Option<(Digest, SystemTime)> {
    let file = open_regular(path).ok()??;
    let modified = file.metadata().and_then(|m| m.modified()).ok()?;
    let mut text = String::new();
    file.take(128).read_to_string(&mut text).ok()?;
    Some((text.trim().parse().ok()?, modified))
}

/// A write failing for want of permission, or on a read-only file system, means
/// the cache is not ours to write: say so for `r`.
fn read_only_for<T>(r: &Reference, result: Result<T>) -> Result<T> {
    match result {
        Err(Error::Io { path, source, .. }) if is_read_only(&source) => Err(Error::ReadOnlyCache {
            reference: r.to_string(),
            path,
        }),
        other => other,
    }
}

/// Whether two paths name the same file (false when either is missing).
fn is_same_entry(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        // No inode to compare: where a lower-case spelling finds anything, the
        // file system may fold case, so the old name is not trusted.
        let _ = a;
        fs::symlink_metadata(b).is_ok()
    }
}

pub(crate) fn is_read_only(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    )
}

#[cfg(test)]
mod tests;
