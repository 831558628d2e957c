//! Operating a cache: list what it holds, measure it, prune, verify, clear.
//!
//! Prune and clear hold the cache-wide lock exclusively, so they wait for running
//! pulls (which hold it shared from their first request to their last write) and
//! never delete what a pull is about to reference. Verify holds it shared.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::files::{check_dir_to_clean, check_root, open_regular, still_names};
use super::lock::Guarding;
use super::{Cache, read_ref_file};
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::manifest::{Manifest, SelectError};
use crate::reference::Reference;

/// One reference recorded in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    reference: Reference,
    manifest_digest: Digest,
    layer: std::result::Result<(Digest, u64), MissingLayer>,
    resolved_at: SystemTime,
}

/// Why a [`CacheEntry`] has no layer: what a pull of it with this client would
/// have to fetch, or why it would fail.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingLayer {
    /// This manifest (the one recorded, or the one its index selects) is not in
    /// the cache, or no longer verifies.
    Manifest(Digest),
    /// The manifests are cached; the layer they select, this one, is not.
    Blob(Digest),
    /// The cached manifests offer no platform or layer the client accepts (its
    /// [`platforms`](crate::ClientBuilder::platforms) and
    /// [`layer_media_types`](crate::ClientBuilder::layer_media_types)): the
    /// reference may have been pulled with others.
    NoMatch(SelectError),
    /// The cached manifests could not be read or used; the error's message.
    Unreadable(String),
}

impl fmt::Display for MissingLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MissingLayer::Manifest(d) => write!(f, "manifest {d} not cached"),
            MissingLayer::Blob(d) => write!(f, "layer {d} not cached"),
            MissingLayer::NoMatch(e) => write!(f, "no layer for this selection: {e}"),
            MissingLayer::Unreadable(e) => write!(f, "cannot read the manifests: {e}"),
        }
    }
}

impl CacheEntry {
    /// The reference: `registry/repository:tag` or `registry/repository@sha256:…`.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// The manifest (or index) digest it resolved to.
    pub fn manifest_digest(&self) -> &Digest {
        &self.manifest_digest
    }

    /// The layer a pull with this client would return, if it is cached. The
    /// layer is chosen with the client's platforms and layer media types.
    pub fn layer_digest(&self) -> Option<&Digest> {
        self.layer.as_ref().ok().map(|(d, _)| d)
    }

    /// The size of that layer in bytes, if it is cached.
    pub fn size(&self) -> Option<u64> {
        self.layer.as_ref().ok().map(|(_, s)| *s)
    }

    /// Why [`layer_digest`](Self::layer_digest) is `None`; `None` when it is not.
    pub fn missing_layer(&self) -> Option<&MissingLayer> {
        self.layer.as_ref().err()
    }

    /// When the reference was last resolved against the registry.
    pub fn resolved_at(&self) -> SystemTime {
        self.resolved_at
    }
}

/// What [`Cache::prune`] removes besides unreferenced blobs and temporary files.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PruneOptions {
    /// Also forget references resolved longer ago than this.
    pub older_than: Option<Duration>,
}

impl PruneOptions {
    /// Also forget references resolved longer ago than `age`.
    #[must_use]
    pub fn older_than(mut self, age: Duration) -> Self {
        self.older_than = Some(age);
        self
    }
}

/// What [`Cache::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// References forgotten for their age.
    refs_removed: usize,
    /// Blobs no reference leads to.
    blobs_removed: usize,
    /// Extracted modules whose layer (or image config) no reference leads to.
    derived_removed: usize,
    /// Leftover temporary files and partial downloads.
    temp_files_removed: usize,
    /// Bytes freed in all.
    bytes_freed: u64,
}

impl PruneReport {
    /// References forgotten for their age.
    pub fn refs_removed(&self) -> usize {
        self.refs_removed
    }

    /// Blobs no reference leads to.
    pub fn blobs_removed(&self) -> usize {
        self.blobs_removed
    }

    /// Extracted modules (directories of them) whose layer or image config no
    /// reference leads to any more.
    pub fn derived_removed(&self) -> usize {
        self.derived_removed
    }

    /// Leftover temporary files and partial downloads, and kept tokens that expired.
    pub fn temp_files_removed(&self) -> usize {
        self.temp_files_removed
    }

    /// Bytes freed in all.
    pub fn bytes_freed(&self) -> u64 {
        self.bytes_freed
    }
}

/// What [`Cache::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blobs and extracted modules hashed.
    blobs_checked: usize,
    /// Bytes hashed.
    bytes_checked: u64,
    /// Blobs whose content did not match their name; each was removed.
    corrupt: Vec<CorruptBlob>,
}

impl VerifyReport {
    /// Blobs and extracted modules hashed.
    pub fn blobs_checked(&self) -> usize {
        self.blobs_checked
    }

    /// Bytes hashed.
    pub fn bytes_checked(&self) -> u64 {
        self.bytes_checked
    }

    /// Blobs whose content did not match their name; each was removed.
    pub fn corrupt(&self) -> &[CorruptBlob] {
        &self.corrupt
    }
}

/// An entry under `blobs/` that was not a regular file hashing to its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptBlob {
    /// Where it was.
    path: PathBuf,
    /// What its content hashed to; `None` when it was not a regular file (a
    /// symbolic link, a directory…) and so was not read.
    actual: Option<Digest>,
}

impl CorruptBlob {
    /// Where it was.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What its content hashed to; `None` when it was not a regular file (a
    /// symbolic link, a directory…) and so was not read.
    pub fn actual(&self) -> Option<&Digest> {
        self.actual.as_ref()
    }
}

impl Cache {
    /// Every reference recorded in the cache, sorted, with the layer a pull with
    /// this cache's client would return (selected with the client's platforms and
    /// layer media types), or why there is none. Takes no lock.
    ///
    /// # Errors
    /// [`Error::Io`] when the `refs/` tree cannot be read.
    pub fn list(&self) -> Result<Vec<CacheEntry>> {
        let mut entries = Vec::new();
        for (reference, path) in self.ref_files()? {
            let Some((manifest_digest, resolved_at)) = read_ref_file(&path) else {
                continue;
            };
            let layer = (self.layer_of)(self, &reference, &manifest_digest);
            entries.push(CacheEntry {
                reference,
                manifest_digest,
                layer,
                resolved_at,
            });
        }
        entries.sort_by_key(|e| e.reference.to_string());
        Ok(entries)
    }

    /// The bytes the cache occupies (blobs, partial downloads, refs). Takes no lock.
    ///
    /// # Errors
    /// [`Error::Io`] when a directory cannot be read.
    pub fn size(&self) -> Result<u64> {
        let mut total = 0;
        walk_files(self.root(), &mut |_, meta| total += meta.len())?;
        Ok(total)
    }

    /// Removes references older than `options.older_than` (if set), then every blob
    /// no remaining reference leads to, leftover temporary files, stale lock files
    /// and expired token files.
    /// Waits for running pulls to finish first.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::LockTimeout`].
    pub fn prune(&self, options: &PruneOptions) -> Result<PruneReport> {
        self.exclusively(|| {
            for dir in self.layout.content_dirs().iter().chain([
                &self.layout.blob_dir(),
                &self.layout.derived_rules_dir(),
                &self.layout.derived_root(),
            ]) {
                if fs::symlink_metadata(dir).is_ok() {
                    check_dir_to_clean(dir)?;
                }
            }
            let mut report = PruneReport::default();
            let mut live = Vec::new();
            for (_, path) in self.ref_files()? {
                let Some((digest, resolved_at)) = read_ref_file(&path) else {
                    remove(&path, &mut report.refs_removed, &mut report.bytes_freed)?;
                    continue;
                };
                let age = SystemTime::now()
                    .duration_since(resolved_at)
                    .unwrap_or_default();
                if options.older_than.is_some_and(|max| age > max) {
                    remove(&path, &mut report.refs_removed, &mut report.bytes_freed)?;
                } else {
                    live.push(digest);
                }
            }
            remove_empty_dirs(&self.layout.refs_dir())?;

            let reachable = self.reachable(live);
            for path in entries_in(&self.layout.blob_dir())? {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                if !reachable.contains(name) {
                    remove(&path, &mut report.blobs_removed, &mut report.bytes_freed)?;
                }
            }
            // Modules chosen by other versions of the extraction rules are never served.
            let current = self.layout.derived_rules_dir();
            for path in entries_in(&self.layout.derived_dir_all())? {
                if path != current {
                    let mut bytes = 0;
                    walk_files(&path, &mut |_, meta| bytes += meta.len())?;
                    remove(&path, &mut report.derived_removed, &mut 0)?;
                    report.bytes_freed = report.bytes_freed.saturating_add(bytes);
                }
            }
            for path in self.orphaned_derived(&reachable)? {
                let mut bytes = 0;
                walk_files(&path, &mut |_, meta| bytes += meta.len())?;
                remove(&path, &mut report.derived_removed, &mut 0)?;
                report.bytes_freed = report.bytes_freed.saturating_add(bytes);
            }
            // No pull is running: every temporary file is a leftover, and no one waits on a blob lock.
            for path in entries_in(&self.layout.tmp_dir())? {
                remove(
                    &path,
                    &mut report.temp_files_removed,
                    &mut report.bytes_freed,
                )?;
            }
            for path in entries_in(&self.layout.locks_dir())? {
                remove(&path, &mut 0, &mut 0)?;
            }
            // Token files are small but one is kept per repository pulled, and a
            // writer killed mid-write leaves a `.token-*` file holding a token.
            report.temp_files_removed += self.token_files().prune();
            Ok(report)
        })
    }

    /// Re-hashes every blob and extracted module and removes those whose content
    /// does not match their name, and anything under `blobs/` that is not a regular file (the next pull
    /// fetches them again). Hits do not hash blobs (it would cost a full read per
    /// hit), so this is how corruption on disk is found. A report with entries in
    /// [`VerifyReport::corrupt`] means the cache was damaged and has been repaired;
    /// the CLI exits 1 then, as `fsck` does when it corrected errors.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::LockTimeout`].
    pub fn verify(&self) -> Result<VerifyReport> {
        if !self.root().exists() {
            return Ok(VerifyReport::default());
        }
        // A cache copied without its `.lock` (`cp -r dir/*`) is verified all the
        // same: the lock file is made if it can be, and a cache that cannot be
        // written is read without it (nothing can be running a pull there).
        let run = || {
            let mut report = VerifyReport::default();
            for (dir, paths) in [
                (self.layout.blob_dir(), entries_in(&self.layout.blob_dir())?),
                (self.layout.derived_root(), self.derived_files()?),
            ] {
                let mut checked_ours = false;
                let mut may_remove = || -> Result<()> {
                    if !checked_ours {
                        check_dir_to_clean(&dir)?;
                        checked_ours = true;
                    }
                    Ok(())
                };
                for path in paths {
                    let Some((actual, len, file)) = hash_regular(&path)? else {
                        // A link, a directory, or a file no one can read: never content.
                        may_remove()?;
                        remove(&path, &mut 0, &mut 0)?;
                        report.corrupt.push(CorruptBlob { path, actual: None });
                        continue;
                    };
                    report.blobs_checked += 1;
                    report.bytes_checked += len;
                    if path.file_name().and_then(|n| n.to_str()) != Some(actual.hex()) {
                        // A pull may have just repaired it: remove only what was hashed.
                        if !still_names(&path, &file).unwrap_or(false) {
                            continue;
                        }
                        may_remove()?;
                        remove(&path, &mut 0, &mut 0)?;
                        report.corrupt.push(CorruptBlob {
                            path,
                            actual: Some(actual),
                        });
                    }
                }
            }
            Ok(report)
        };
        // Held as a pull holds it: verify removes only what no pull would serve.
        match check_root(self.root()) {
            Ok(()) => self.lock(&self.layout.cache_lock(), Guarding::Pull, run),
            // Not ours to write: read it without a lock (it can report but not
            // remove, and nothing there can be running a pull of ours).
            Err(Error::Io { source, .. }) if super::is_read_only(&source) => run(),
            Err(e) => Err(e),
        }
    }

    /// Removes everything the cache holds. Waits for running pulls to finish first.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::LockTimeout`].
    pub fn clear(&self) -> Result<()> {
        self.exclusively(|| {
            for path in self.layout.content_dirs() {
                match fs::remove_dir_all(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(Error::io("remove", path, e));
                    }
                    _ => {}
                }
            }
            Ok(())
        })
    }

    fn exclusively<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        if !self.root().exists() {
            return f(); // nothing to lock, nothing to race
        }
        check_root(self.root())?;
        self.lock(&self.layout.cache_lock(), Guarding::Mutation, f)
    }

    /// Every ref file with the reference it records.
    fn ref_files(&self) -> Result<Vec<(Reference, PathBuf)>> {
        let mut found = Vec::new();
        walk_files(&self.layout.refs_dir(), &mut |path, _| {
            if let Some(r) = self.layout.reference_of(path) {
                found.push((r, path.to_path_buf()));
            }
        })?;
        Ok(found)
    }

    /// The hex names of every blob the given manifests lead to, themselves included.
    fn reachable(&self, roots: Vec<Digest>) -> HashSet<String> {
        let mut seen = HashSet::new();
        let mut todo = roots;
        while let Some(d) = todo.pop() {
            if !seen.insert(d.hex().to_owned()) {
                continue;
            }
            let children = match self.document(&d).map(|doc| doc.map(|doc| doc.manifest)) {
                Ok(Some(Manifest::Image(m))) => std::iter::once(m.config).chain(m.layers).collect(),
                Ok(Some(Manifest::Index(i))) => i.manifests,
                _ => Vec::new(),
            };
            todo.extend(children.iter().filter_map(|c| c.sha256().ok()));
        }
        seen
    }
}

/// Removes the entry at `path`: a file or a link (never what it points to), or a
/// directory someone put where a file belongs, with all it holds.
fn remove(path: &Path, count: &mut usize, bytes: &mut u64) -> Result<()> {
    let meta = fs::symlink_metadata(path);
    let len = meta.as_ref().map(|m| m.len()).unwrap_or(0);
    let removed = match meta {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        _ => fs::remove_file(path),
    };
    match removed {
        Ok(()) => {
            *count += 1;
            *bytes += len;
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// Every entry of `dir`: files, and links, directories or anything else someone
/// put there. A `dir` that is a link is refused, never listed through.
pub(super) fn entries_in(dir: &Path) -> Result<Vec<PathBuf>> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return check_dir_to_clean(dir).map(|()| Vec::new()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("inspect", dir, e)),
    }
    fs::read_dir(dir)
        .map_err(|e| Error::io("read directory", dir, e))?
        .map(|e| {
            e.map(|e| e.path())
                .map_err(|e| Error::io("read directory", dir, e))
        })
        .collect()
}

fn walk_files(dir: &Path, f: &mut dyn FnMut(&Path, &fs::Metadata)) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("read directory", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            walk_files(&path, f)?;
        } else {
            f(&path, &meta);
        }
    }
    Ok(())
}

/// Removes directories left empty under `dir` (not `dir` itself).
fn remove_empty_dirs(dir: &Path) -> Result<bool> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(false);
    };
    let mut empty = true;
    for entry in entries.flatten() {
        let path = entry.path();
        // `file_type` does not follow a link: a link to a directory elsewhere is
        // never descended into.
        if entry.file_type().is_ok_and(|t| t.is_dir()) && remove_empty_dirs(&path)? {
            // Another process may have just written a ref here; then it stays.
            let _ = fs::remove_dir(&path);
        }
        empty &= fs::symlink_metadata(&path).is_err();
    }
    Ok(empty)
}

/// The digest and length of the regular file at `path`, with the file as it was
/// hashed; `None` for anything else, or a file that cannot be read.
fn hash_regular(path: &Path) -> Result<Option<(Digest, u64, fs::File)>> {
    let mut file = match open_regular(path) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(None),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let mut hasher = Hasher::default();
    let len = io::copy(&mut file, &mut hasher).map_err(|e| Error::io("read", path, e))?;
    Ok(Some((hasher.finish(), len, file)))
}
