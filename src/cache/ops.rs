//! Operating a cache: list what it holds, measure it, prune, verify, clear.
//!
//! Prune and clear hold the cache-wide lock exclusively, so they wait for running
//! pulls (which hold it shared from their first request to their last write) and
//! never delete what a pull is about to reference. Verify holds it shared.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::lock::LockMode;
use super::{Cache, read_ref_file};
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::reference::Reference;

/// One reference recorded in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    reference: Reference,
    manifest_digest: Digest,
    layer: Option<(Digest, u64)>,
    resolved_at: SystemTime,
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

    /// The layer a pull would return, if it is cached.
    pub fn layer_digest(&self) -> Option<&Digest> {
        self.layer.as_ref().map(|(d, _)| d)
    }

    /// The size of that layer in bytes, if it is cached.
    pub fn size(&self) -> Option<u64> {
        self.layer.as_ref().map(|(_, s)| *s)
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
#[non_exhaustive]
pub struct PruneReport {
    /// References forgotten for their age.
    pub refs_removed: usize,
    /// Blobs no reference leads to.
    pub blobs_removed: usize,
    /// Leftover temporary files and partial downloads.
    pub temp_files_removed: usize,
    /// Bytes freed in all.
    pub bytes_freed: u64,
}

/// What [`Cache::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Blobs hashed.
    pub blobs_checked: usize,
    /// Bytes hashed.
    pub bytes_checked: u64,
    /// Blobs whose content did not match their name; each was removed.
    pub corrupt: Vec<CorruptBlob>,
}

/// A blob whose content does not hash to its name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CorruptBlob {
    /// Where it was.
    pub path: PathBuf,
    /// What its content hashes to.
    pub actual: Digest,
}

impl Cache {
    /// Every reference recorded in the cache, sorted. Takes no lock.
    ///
    /// # Errors
    /// [`Error::Io`] when the `refs/` tree cannot be read.
    pub fn list(&self) -> Result<Vec<CacheEntry>> {
        let mut entries = Vec::new();
        for (reference, path) in self.ref_files()? {
            let Some((manifest_digest, resolved_at)) = read_ref_file(&path) else {
                continue;
            };
            let layer = self
                .resolve(&reference, &manifest_digest)
                .ok()
                .flatten()
                .map(|r| (r.layer_digest, r.size));
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
    /// no remaining reference leads to, leftover temporary files and stale lock files.
    /// Waits for running pulls to finish first.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::LockTimeout`].
    pub fn prune(&self, options: &PruneOptions) -> Result<PruneReport> {
        self.exclusively(|| {
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
            remove_empty_dirs(&self.root().join("refs"))?;

            let reachable = self.reachable(live);
            for path in files_in(&self.blob_dir())? {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                if !reachable.contains(name) {
                    remove(&path, &mut report.blobs_removed, &mut report.bytes_freed)?;
                }
            }
            // No pull is running: every temporary file is a leftover, and no one waits on a blob lock.
            for path in files_in(&self.tmp_path())? {
                remove(
                    &path,
                    &mut report.temp_files_removed,
                    &mut report.bytes_freed,
                )?;
            }
            for path in files_in(&self.root().join("locks"))? {
                remove(&path, &mut 0, &mut 0)?;
            }
            Ok(report)
        })
    }

    /// Re-hashes every blob and removes those whose content does not match their
    /// name (the next pull fetches them again). Hits do not hash blobs (it would
    /// cost a full read per hit), so this is how corruption on disk is found.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::LockTimeout`].
    pub fn verify(&self) -> Result<VerifyReport> {
        let lock = self.root().join(".lock");
        if !lock.exists() {
            return Ok(VerifyReport::default()); // never written to: nothing to verify
        }
        self.lock(&lock, LockMode::Shared, || {
            let mut report = VerifyReport::default();
            for path in files_in(&self.blob_dir())? {
                let actual = match hash_file(&path) {
                    Ok(d) => d,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io("read", &path, e)),
                };
                report.blobs_checked += 1;
                report.bytes_checked += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                if path.file_name().and_then(|n| n.to_str()) != Some(actual.hex()) {
                    fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
                    report.corrupt.push(CorruptBlob { path, actual });
                }
            }
            Ok(report)
        })
    }

    /// Removes everything the cache holds. Waits for running pulls to finish first.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::LockTimeout`].
    pub fn clear(&self) -> Result<()> {
        self.exclusively(|| {
            for dir in ["blobs", "refs", "tmp", "locks"] {
                let path = self.root().join(dir);
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
        self.lock(&self.root().join(".lock"), LockMode::Exclusive, f)
    }

    /// Every ref file with the reference it records.
    fn ref_files(&self) -> Result<Vec<(Reference, PathBuf)>> {
        let refs = self.root().join("refs");
        let mut found = Vec::new();
        walk_files(&refs, &mut |path, _| {
            if let Some(r) = reference_of(&refs, path) {
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
            let children = match self.cached_manifest(&d) {
                Ok(Some(Manifest::Image(m))) => std::iter::once(m.config).chain(m.layers).collect(),
                Ok(Some(Manifest::Index(i))) => i.manifests,
                _ => Vec::new(),
            };
            todo.extend(children.iter().filter_map(|c| c.sha256().ok()));
        }
        seen
    }
}

/// Rebuilds the reference a ref file records from its path under `refs/`.
fn reference_of(refs: &Path, path: &Path) -> Option<Reference> {
    let rel = path.strip_prefix(refs).ok()?;
    let parts: Vec<&str> = rel.iter().map(|p| p.to_str()).collect::<Option<_>>()?;
    let [registry, repo @ .., kind, name] = parts.as_slice() else {
        return None;
    };
    let registry = registry.replace('_', ":");
    let text = match *kind {
        "_tags" => format!("{registry}/{}:{name}", repo.join("/")),
        "_digests" => format!("{registry}/{}@sha256:{name}", repo.join("/")),
        _ => return None,
    };
    text.parse().ok()
}

fn remove(path: &Path, count: &mut usize, bytes: &mut u64) -> Result<()> {
    let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    match fs::remove_file(path) {
        Ok(()) => {
            *count += 1;
            *bytes += len;
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

fn files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| {
                e.map(|e| e.path())
                    .map_err(|e| Error::io("read directory", dir, e))
            })
            .filter(|p| p.as_ref().map_or(true, |p| p.is_file()))
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io("read directory", dir, e)),
    }
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
        if path.is_dir() && remove_empty_dirs(&path)? {
            // Another process may have just written a ref here; then it stays.
            let _ = fs::remove_dir(&path);
        }
        empty &= !path.exists();
    }
    Ok(empty)
}

fn hash_file(path: &Path) -> io::Result<Digest> {
    let mut hasher = Hasher::default();
    io::copy(&mut fs::File::open(path)?, &mut hasher)?;
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_of_round_trips_ref_paths() {
        let c = super::super::tests::cache_in(Path::new("/c"));
        let refs = Path::new("/c/refs");
        for s in [
            "localhost:5000/a/b/c:1.0",
            "ghcr.io/o/r:latest",
            "[::1]:5000/x:y",
            "ghcr.io/o/r@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            let r: Reference = s.parse().unwrap();
            assert_eq!(reference_of(refs, &c.ref_path(&r)).unwrap(), r, "{s}");
        }
    }
}
