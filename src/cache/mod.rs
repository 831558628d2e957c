//! The on-disk, content-addressed cache. No network.
//!
//! ```text
//! <root>/blobs/sha256/<hex>                         immutable content: manifests and layers
//! <root>/refs/<registry>/<repository>/_tags/<tag>   "sha256:<hex>\n", the manifest a tag resolved to
//! <root>/tmp/                                       in-flight writes
//! <root>/locks/<hex>.lock                           per-blob download lock
//! <root>/.lock                                      cache-wide: shared by pulls
//! ```
//!
//! Tags live under `_tags/` because a repository may have sub-repositories:
//! `a/b:c` and `a/b/c:d` would otherwise need `a/b/c` to be both a file and a
//! directory. No path component can start with `_`, so `_tags` never collides.
//!
//! Invariants: a file under `blobs/` always hashes to its name (content is
//! verified while streaming and renamed into place whole); reads take no lock, so
//! a read-only or pre-seeded cache serves hits; only one process at a time
//! downloads a given blob, and a waiter re-checks `blobs/` before downloading.

mod commit;
mod lock;

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, VerifyingReader};
use crate::error::{Error, Result};
use crate::reference::Reference;

pub(crate) use commit::CommitError;
use lock::{LockMode, with_lock};

/// A cache rooted at one directory. Cheap: holds only the path.
#[derive(Debug, Clone)]
pub(crate) struct Cache {
    root: PathBuf,
}

impl Cache {
    pub(crate) fn new(root: PathBuf) -> Cache {
        Cache { root }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    /// Where the tag of `r` is recorded; `None` for a reference without a tag.
    pub(crate) fn ref_path(&self, r: &Reference) -> Option<PathBuf> {
        let tag = r.tag()?;
        // The grammar already excludes `/`, `..` and NUL; `:` (host:port) is the
        // one character some file systems refuse, and `_` never occurs in a host.
        let mut p = self.root.join("refs").join(r.registry().replace(':', "_"));
        p.extend(r.repository().split('/'));
        Some(p.join("_tags").join(tag))
    }

    pub(crate) fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The manifest digest recorded for the tag of `r`. A missing or unreadable
    /// ref is a miss, never an error: the registry can always answer instead.
    pub(crate) fn read_ref(&self, r: &Reference) -> Option<Digest> {
        let mut text = String::new();
        fs::File::open(self.ref_path(r)?)
            .ok()?
            .take(128)
            .read_to_string(&mut text)
            .ok()?;
        text.trim().parse().ok()
    }

    /// Records that the tag of `r` resolved to `manifest`. Tagless references are ignored.
    pub(crate) fn write_ref(&self, r: &Reference, manifest: &Digest) -> Result<()> {
        let Some(path) = self.ref_path(r) else {
            return Ok(());
        };
        if let Some(dir) = path.parent() {
            create_dir(dir)?;
        }
        commit::write_bytes(&self.tmp_dir()?, &path, format!("{manifest}\n").as_bytes())
    }

    /// A cached manifest, read whole and re-hashed (manifests are small). A file
    /// that does not hash to its name, or is over `limit`, is treated as a miss.
    pub(crate) fn read_manifest(&self, digest: &Digest, limit: u64) -> Result<Option<Vec<u8>>> {
        let path = self.blob_path(digest);
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", path, e)),
        };
        let mut bytes = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io("read", &path, e))?;
        Ok((bytes.len() as u64 <= limit && Digest::of(&bytes) == *digest).then_some(bytes))
    }

    /// Stores bytes already in memory (manifests) under their digest.
    pub(crate) fn store_bytes(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        debug_assert_eq!(Digest::of(bytes), *digest);
        if self.has_blob(digest) {
            return Ok(());
        }
        let dest = self.blob_path(digest);
        create_dir(self.root.join("blobs").join(digest.algorithm()))?;
        commit::write_bytes(&self.tmp_dir()?, &dest, bytes)
    }

    /// Runs `f` under the cache-wide lock held shared, as every pull that writes does.
    pub(crate) fn with_pull_lock<T>(
        &self,
        on_wait: &dyn Fn(&Path),
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        create_dir(&self.root)?;
        with_lock(&self.root.join(".lock"), LockMode::Shared, on_wait, f)
    }

    /// Makes sure blob `digest` of `size` bytes is in the cache, downloading it with
    /// `open` at most once across processes. Returns its path and whether this
    /// call downloaded it.
    pub(crate) fn fetch_blob<R: Read>(
        &self,
        digest: &Digest,
        size: u64,
        on_wait: &dyn Fn(&Path),
        open: impl FnOnce() -> Result<R>,
    ) -> std::result::Result<(PathBuf, bool), CommitError> {
        let dest = self.blob_path(digest);
        if dest.is_file() {
            return Ok((dest, false));
        }
        let locks = self.root.join("locks");
        create_dir(&locks)?;
        create_dir(self.root.join("blobs").join(digest.algorithm()))?;
        let tmp = self.tmp_dir()?;
        let lock_path = locks.join(format!("{}.lock", digest.hex()));
        let downloaded = with_lock(
            &lock_path,
            LockMode::Exclusive,
            on_wait,
            || -> Result<bool, CommitError> {
                // Whoever held the lock before us may have finished the job.
                if dest.is_file() {
                    return Ok(false);
                }
                let mut verifying = VerifyingReader::new(open()?, digest.clone(), size);
                commit::stream_into(&tmp, &dest, &mut verifying)?;
                Ok(true)
            },
        )?;
        Ok((dest, downloaded))
    }

    fn tmp_dir(&self) -> Result<PathBuf> {
        let tmp = self.root.join("tmp");
        create_dir(&tmp)?;
        Ok(tmp)
    }
}

fn create_dir(dir: impl AsRef<Path>) -> Result<()> {
    let dir = dir.as_ref();
    fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> (tempfile::TempDir, Cache) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        (dir, cache)
    }

    #[test]
    fn blob_path_layout() {
        let c = Cache::new(PathBuf::from("/tmp/x"));
        let d = Digest::of(b"hello");
        assert_eq!(
            c.blob_path(&d),
            PathBuf::from(format!("/tmp/x/blobs/sha256/{}", d.hex()))
        );
    }

    #[test]
    fn ref_path_layout_encodes_port_and_keeps_nesting_apart() {
        let c = Cache::new(PathBuf::from("/c"));
        let r: Reference = "localhost:5000/owner/repo:1.0.0".parse().unwrap();
        assert_eq!(
            c.ref_path(&r).unwrap(),
            PathBuf::from("/c/refs/localhost_5000/owner/repo/_tags/1.0.0")
        );
        let parent: Reference = "ghcr.io/a/b:c".parse().unwrap();
        let child: Reference = "ghcr.io/a/b/c:d".parse().unwrap();
        let (p, ch) = (c.ref_path(&parent).unwrap(), c.ref_path(&child).unwrap());
        assert!(!ch.starts_with(&p), "{p:?} vs {ch:?}");
    }

    #[test]
    fn round_trip_blob_and_ref() {
        let (_dir, c) = cache();
        let d = Digest::of(b"hello");
        assert!(c.read_manifest(&d, 1024).unwrap().is_none());
        c.store_bytes(&d, b"hello").unwrap();
        assert_eq!(c.read_manifest(&d, 1024).unwrap().unwrap(), b"hello");

        let r: Reference = "ghcr.io/o/r:1.0".parse().unwrap();
        assert_eq!(c.read_ref(&r), None);
        c.write_ref(&r, &d).unwrap();
        assert_eq!(c.read_ref(&r), Some(d));
        assert_eq!(
            fs::read_dir(c.root().join("tmp")).unwrap().count(),
            0,
            "temp files left behind"
        );
    }

    #[test]
    fn corrupt_manifest_is_a_miss() {
        let (_dir, c) = cache();
        let d = Digest::of(b"hello");
        c.store_bytes(&d, b"hello").unwrap();
        fs::write(c.blob_path(&d), b"HELLO").unwrap();
        assert!(c.read_manifest(&d, 1024).unwrap().is_none());
    }

    #[test]
    fn failed_verification_leaves_nothing() {
        let (_dir, c) = cache();
        let d = Digest::of(b"expected");
        let r = c.fetch_blob(&d, 8, &|_| {}, || Ok(&b"tampered"[..]));
        assert!(matches!(r, Err(CommitError::Read(_))));
        assert!(!c.has_blob(&d));
        assert_eq!(fs::read_dir(c.root().join("tmp")).unwrap().count(), 0);
        let (path, downloaded) = c
            .fetch_blob(&d, 8, &|_| {}, || Ok(&b"expected"[..]))
            .unwrap();
        assert!(downloaded);
        assert_eq!(fs::read(path).unwrap(), b"expected");
        let (_, again) = c
            .fetch_blob(&d, 8, &|_| {}, || -> Result<&[u8]> {
                panic!("must not reopen")
            })
            .unwrap();
        assert!(!again);
    }
}
