//! The on-disk, content-addressed cache. No network.
//!
//! ```text
//! <root>/blobs/sha256/<hex>                            immutable content: manifests and layers
//! <root>/refs/<registry>/<repository>/_tags/<tag>      "sha256:<hex>\n": the manifest a tag resolved to
//! <root>/refs/<registry>/<repository>/_digests/<hex>   the same for a digest pin (keeps it from prune)
//! <root>/tmp/                                          in-flight writes; <hex>.partial downloads resume
//! <root>/locks/<hex>.lock                              per-blob download lock
//! <root>/.lock                                         cache-wide: shared by pulls, exclusive for prune/clear
//! ```
//!
//! A ref file's modification time is when it was last resolved against the registry.
//! Refs live under `_tags/` and `_digests/` because a repository may have
//! sub-repositories: `a/b:c` and `a/b/c:d` would otherwise need `a/b/c` to be both
//! a file and a directory. No path component can start with `_`, so they never collide.
//!
//! Invariants: a file under `blobs/` always hashes to its name (content is verified
//! while streaming and renamed into place whole); reads take no lock, so a
//! read-only or pre-seeded cache serves hits; only one process at a time downloads
//! a given blob, and a waiter re-checks `blobs/` before downloading.

mod commit;
mod lock;
mod ops;

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::event::{Event, Events};
use crate::manifest::{
    Descriptor, ImageManifest, Manifest, ParseManifestError, Platform, select_layer,
    select_platform,
};
use crate::reference::Reference;

pub(crate) use commit::CommitError;
use lock::{LockMode, Waiting, with_lock};
pub use ops::{CacheEntry, CorruptBlob, PruneOptions, PruneReport, VerifyReport};

/// How the cache turns a manifest into the one blob to return, and how long it
/// waits for locks. Set through the client's builder.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) platforms: Vec<Platform>,
    pub(crate) layer_media_types: Vec<String>,
    pub(crate) max_manifest_size: u64,
    pub(crate) lock_timeout: Option<Duration>,
}

/// What a reference resolves to in the cache: the manifest it names and the
/// selected layer, whose blob is present.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) manifest_digest: Digest,
    pub(crate) layer_digest: Digest,
    pub(crate) media_type: String,
    pub(crate) size: u64,
}

/// A manifest document checked against its digest, with its bytes.
pub(crate) struct Document {
    pub(crate) digest: Digest,
    pub(crate) bytes: Vec<u8>,
    pub(crate) manifest: Manifest,
}

/// What a reference leads to: its top document and, under an index, the child
/// selected for the client's platforms; `image` is the one that lists layers.
/// Built from the cache here, or from the registry by the client.
pub(crate) struct Documents {
    pub(crate) top: Document,
    pub(crate) child: Option<Document>,
    pub(crate) image: ImageManifest,
}

impl Documents {
    pub(crate) fn new(r: &Reference, top: Document, child: Option<Document>) -> Result<Documents> {
        let image = match (&top.manifest, &child) {
            (Manifest::Image(m), None) => m.clone(),
            (
                Manifest::Index(_),
                Some(Document {
                    manifest: Manifest::Image(m),
                    ..
                }),
            ) => m.clone(),
            // What is left is an index under an index: only an index is given a
            // child, and only an image manifest may be one.
            _ => {
                return Err(Error::InvalidManifest {
                    reference: r.to_string(),
                    digest: child.as_ref().map_or(&top.digest, |c| &c.digest).clone(),
                    reason: ParseManifestError::nested_index(),
                });
            }
        };
        Ok(Documents { top, child, image })
    }
}

/// The on-disk cache a [`Client`](crate::Client) pulls into, with the operations
/// that inspect and maintain it. Get one from [`Client::cache`](crate::Client::cache).
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
    policy: Policy,
    events: Events,
}

impl Cache {
    pub(crate) fn new(root: PathBuf, policy: Policy, events: Events) -> Cache {
        Cache {
            root,
            policy,
            events,
        }
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// Where `r` is recorded: its digest pin if it has one, else its tag.
    pub(crate) fn ref_path(&self, r: &Reference) -> PathBuf {
        // The grammar already excludes `/`, `..` and NUL; `:` (host:port) is the
        // one character some file systems refuse, and `_` never occurs in a host.
        let mut p = self.root.join("refs").join(r.registry().replace(':', "_"));
        p.extend(r.repository().split('/'));
        match (r.digest(), r.tag()) {
            (Some(d), _) => p.join("_digests").join(d.hex()),
            (None, tag) => p.join("_tags").join(tag.unwrap_or("latest")),
        }
    }

    pub(crate) fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The manifest digest recorded for `r` and when it was resolved. A missing or
    /// unreadable ref is a miss, never an error: the registry can answer instead.
    pub(crate) fn read_ref(&self, r: &Reference) -> Option<(Digest, SystemTime)> {
        read_ref_file(&self.ref_path(r))
    }

    /// Records that `r` resolved to `manifest`, now.
    pub(crate) fn write_ref(&self, r: &Reference, manifest: &Digest) -> Result<()> {
        let path = self.ref_path(r);
        if let Some(dir) = path.parent() {
            create_dir(dir)?;
        }
        commit::write_bytes(&self.tmp_dir()?, &path, format!("{manifest}\n").as_bytes())
    }

    /// Marks `r` as resolved now. Best effort: a read-only cache keeps the old time.
    pub(crate) fn touch_ref(&self, r: &Reference) {
        if let Ok(f) = fs::OpenOptions::new().append(true).open(self.ref_path(r)) {
            let _ = f.set_modified(SystemTime::now());
        }
    }

    /// A cached manifest, read whole and re-hashed (manifests are small). A file
    /// that does not hash to its name, or is over the size limit, is a miss.
    pub(crate) fn read_manifest(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let path = self.blob_path(digest);
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", path, e)),
        };
        let limit = self.policy.max_manifest_size;
        let mut bytes = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io("read", &path, e))?;
        Ok((bytes.len() as u64 <= limit && Digest::of(&bytes) == *digest).then_some(bytes))
    }

    /// A cached manifest that still parses; anything else is a miss the registry can fill.
    pub(crate) fn cached_manifest(&self, digest: &Digest) -> Result<Option<Manifest>> {
        Ok(self
            .read_manifest(digest)?
            .and_then(|b| Manifest::from_slice(&b, None).ok()))
    }

    /// Follows manifest `top` (through an index, if it is one) to the selected layer.
    /// `None` when a manifest or the layer blob is not cached.
    ///
    /// # Errors
    /// When the cached documents offer no acceptable platform or layer.
    pub(crate) fn resolve(&self, r: &Reference, top: &Digest) -> Result<Option<Resolved>> {
        let Some(docs) = self.cached_documents(r, top)? else {
            return Ok(None);
        };
        let layer = self.select_layer(r, &docs.image)?;
        let layer_digest = self.descriptor_digest(r, layer)?;
        if !self.has_blob(&layer_digest) {
            return Ok(None);
        }
        Ok(Some(Resolved {
            manifest_digest: top.clone(),
            layer_digest,
            media_type: layer.media_type.clone(),
            size: layer.size,
        }))
    }

    /// The documents manifest `top` leads to, as cached; `None` when one is missing
    /// (or no longer parses: the registry can fill it again).
    pub(crate) fn cached_documents(
        &self,
        r: &Reference,
        top: &Digest,
    ) -> Result<Option<Documents>> {
        let load = |digest: &Digest| -> Result<Option<Document>> {
            let Some(bytes) = self.read_manifest(digest)? else {
                return Ok(None);
            };
            Ok(Manifest::from_slice(&bytes, None)
                .ok()
                .map(|manifest| Document {
                    digest: digest.clone(),
                    bytes,
                    manifest,
                }))
        };
        let Some(top) = load(top)? else {
            return Ok(None);
        };
        let child = match &top.manifest {
            Manifest::Index(index) => {
                match load(&self.descriptor_digest(r, self.select_platform(r, index)?)?)? {
                    Some(child) => Some(child),
                    None => return Ok(None),
                }
            }
            Manifest::Image(_) => None,
        };
        Documents::new(r, top, child).map(Some)
    }

    pub(crate) fn select_platform<'a>(
        &self,
        r: &Reference,
        index: &'a crate::manifest::ImageIndex,
    ) -> Result<&'a Descriptor> {
        select_platform(index, &self.policy.platforms).map_err(|reason| Error::NoMatch {
            reference: r.to_string(),
            reason,
        })
    }

    pub(crate) fn select_layer<'a>(
        &self,
        r: &Reference,
        image: &'a crate::manifest::ImageManifest,
    ) -> Result<&'a Descriptor> {
        select_layer(image, &self.policy.layer_media_types).map_err(|reason| Error::NoMatch {
            reference: r.to_string(),
            reason,
        })
    }

    pub(crate) fn descriptor_digest(&self, r: &Reference, d: &Descriptor) -> Result<Digest> {
        d.sha256().map_err(|reason| Error::UnsupportedDigest {
            reference: r.to_string(),
            reason,
        })
    }

    /// Stores bytes already in memory (manifests) under their digest.
    pub(crate) fn store_bytes(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        debug_assert_eq!(Digest::of(bytes), *digest);
        if self.has_blob(digest) {
            return Ok(());
        }
        create_dir(self.blob_dir())?;
        commit::write_bytes(&self.tmp_dir()?, &self.blob_path(digest), bytes)
    }

    fn waiting(&self) -> impl Fn(&Path) + '_ {
        |path| self.events.emit(&Event::WaitingForLock { path })
    }

    fn lock<T, E: From<Error>>(
        &self,
        path: &Path,
        mode: LockMode,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let on_wait = self.waiting();
        let waiting = Waiting {
            on_wait: &on_wait,
            timeout: self.policy.lock_timeout,
        };
        with_lock(path, mode, &waiting, f)
    }

    /// Runs `f` under the cache-wide lock held shared, as every pull that writes
    /// does. A cache that cannot be written is reported as such for `r`.
    pub(crate) fn with_pull_lock<T>(
        &self,
        r: &Reference,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let dirs = [
            self.root.clone(),
            self.tmp_path(),
            self.root.join("locks"),
            self.blob_dir(),
        ];
        let result = dirs
            .iter()
            .try_for_each(create_dir)
            .and_then(|()| self.lock(&self.root.join(".lock"), LockMode::Shared, f));
        match result {
            // Any write the pull attempts failing this way means the cache is not ours to write.
            Err(Error::Io { path, source, .. }) if is_read_only(&source) => {
                Err(Error::ReadOnlyCache {
                    reference: r.to_string(),
                    path,
                })
            }
            other => other,
        }
    }

    /// Makes sure blob `digest` of `size` bytes is in the cache, downloading it at
    /// most once across processes. `open_at(offset)` opens the source, asking for
    /// the bytes from `offset` when a partial download can be resumed, and returns
    /// the offset its bytes actually start at. Returns the blob's path and whether
    /// this call downloaded it.
    pub(crate) fn fetch_blob<R: Read>(
        &self,
        digest: &Digest,
        size: u64,
        mut open_at: impl FnMut(u64) -> Result<(R, u64)>,
    ) -> std::result::Result<(PathBuf, bool), CommitError> {
        let dest = self.blob_path(digest);
        if dest.is_file() {
            return Ok((dest, false));
        }
        let lock_path = self
            .root
            .join("locks")
            .join(format!("{}.lock", digest.hex()));
        let partial = self.tmp_path().join(format!("{}.partial", digest.hex()));
        let downloaded = self.lock(
            &lock_path,
            LockMode::Exclusive,
            || -> Result<bool, CommitError> {
                // Whoever held the lock before us may have finished the job.
                if dest.is_file() {
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
                commit::download(&partial, &dest, digest, size, &mut open_at, &mut progress)?;
                Ok(true)
            },
        )?;
        Ok((dest, downloaded))
    }

    fn tmp_path(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn tmp_dir(&self) -> Result<PathBuf> {
        let tmp = self.tmp_path();
        create_dir(&tmp)?;
        Ok(tmp)
    }
}

fn read_ref_file(path: &Path) -> Option<(Digest, SystemTime)> {
    let file = fs::File::open(path).ok()?;
    let modified = file.metadata().and_then(|m| m.modified()).ok()?;
    let mut text = String::new();
    file.take(128).read_to_string(&mut text).ok()?;
    Some((text.trim().parse().ok()?, modified))
}

fn is_read_only(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    )
}

fn create_dir(dir: impl AsRef<Path>) -> Result<()> {
    let dir = dir.as_ref();
    fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn cache_in(dir: &Path) -> Cache {
        let policy = Policy {
            platforms: Platform::wasm_defaults(),
            layer_media_types: vec!["application/wasm".into()],
            max_manifest_size: 1 << 20,
            lock_timeout: None,
        };
        Cache::new(dir.to_path_buf(), policy, Events::default())
    }

    #[test]
    fn blob_path_layout() {
        let c = cache_in(Path::new("/tmp/x"));
        let d = Digest::of(b"hello");
        assert_eq!(
            c.blob_path(&d),
            PathBuf::from(format!("/tmp/x/blobs/sha256/{}", d.hex()))
        );
    }

    #[test]
    fn ref_path_layout_encodes_port_and_keeps_nesting_apart() {
        let c = cache_in(Path::new("/c"));
        let r: Reference = "localhost:5000/owner/repo:1.0.0".parse().unwrap();
        assert_eq!(
            c.ref_path(&r),
            PathBuf::from("/c/refs/localhost_5000/owner/repo/_tags/1.0.0")
        );
        let d = Digest::of(b"m");
        let pinned: Reference = format!("ghcr.io/o/r:1.0@{d}").parse().unwrap();
        assert_eq!(
            c.ref_path(&pinned),
            PathBuf::from(format!("/c/refs/ghcr.io/o/r/_digests/{}", d.hex()))
        );
        let parent: Reference = "ghcr.io/a/b:c".parse().unwrap();
        let child: Reference = "ghcr.io/a/b/c:d".parse().unwrap();
        let (p, ch) = (c.ref_path(&parent), c.ref_path(&child));
        assert!(!ch.starts_with(&p), "{p:?} vs {ch:?}");
    }

    #[test]
    fn round_trip_blob_and_ref() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache_in(dir.path());
        let d = Digest::of(b"hello");
        assert!(c.read_manifest(&d).unwrap().is_none());
        c.store_bytes(&d, b"hello").unwrap();
        assert_eq!(c.read_manifest(&d).unwrap().unwrap(), b"hello");

        let r: Reference = "ghcr.io/o/r:1.0".parse().unwrap();
        assert_eq!(c.read_ref(&r), None);
        c.write_ref(&r, &d).unwrap();
        assert_eq!(c.read_ref(&r).unwrap().0, d);
        assert_eq!(
            fs::read_dir(c.tmp_path()).unwrap().count(),
            0,
            "temp files left behind"
        );
    }

    #[test]
    fn corrupt_manifest_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache_in(dir.path());
        let d = Digest::of(b"hello");
        c.store_bytes(&d, b"hello").unwrap();
        fs::write(c.blob_path(&d), b"HELLO").unwrap();
        assert!(c.read_manifest(&d).unwrap().is_none());
    }

    fn fetch(
        c: &Cache,
        d: &Digest,
        source: &'static [u8],
    ) -> std::result::Result<(PathBuf, bool), CommitError> {
        let r: Reference = "localhost/x:1".parse().unwrap();
        c.with_pull_lock(&r, || Ok(())).unwrap();
        c.fetch_blob(d, 8, |_| Ok((source, 0)))
    }

    #[test]
    fn failed_verification_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache_in(dir.path());
        let d = Digest::of(b"expected");
        assert!(matches!(
            fetch(&c, &d, b"tampered"),
            Err(CommitError::Read(_))
        ));
        assert!(!c.has_blob(&d));
        assert_eq!(fs::read_dir(c.tmp_path()).unwrap().count(), 0);
        let (path, downloaded) = fetch(&c, &d, b"expected").unwrap();
        assert!(downloaded);
        assert_eq!(fs::read(path).unwrap(), b"expected");
        let (_, again) = fetch(&c, &d, b"").unwrap();
        assert!(!again, "a cached blob is not fetched again");
    }

    #[test]
    fn a_partial_download_is_resumed_from_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache_in(dir.path());
        let d = Digest::of(b"expected");
        c.with_pull_lock(&"localhost/x:1".parse().unwrap(), || Ok(()))
            .unwrap();
        fs::write(c.tmp_path().join(format!("{}.partial", d.hex())), b"expe").unwrap();
        let mut asked = Vec::new();
        let (path, _) = c
            .fetch_blob(&d, 8, |offset| {
                asked.push(offset);
                Ok((&b"expected"[offset as usize..], offset))
            })
            .unwrap();
        assert_eq!(asked, [4]);
        assert_eq!(fs::read(path).unwrap(), b"expected");

        // A server that ignores the range sends everything: start over.
        let d2 = Digest::of(b"abcdefgh");
        fs::write(c.tmp_path().join(format!("{}.partial", d2.hex())), b"abcd").unwrap();
        let (path, _) = c.fetch_blob(&d2, 8, |_| Ok((&b"abcdefgh"[..], 0))).unwrap();
        assert_eq!(fs::read(path).unwrap(), b"abcdefgh");

        // A partial that is not a prefix of the blob fails verification and is discarded.
        let d3 = Digest::of(b"12345678");
        let partial = c.tmp_path().join(format!("{}.partial", d3.hex()));
        fs::write(&partial, b"XXXX").unwrap();
        assert!(
            c.fetch_blob(&d3, 8, |o| Ok((&b"12345678"[o as usize..], o)))
                .is_err()
        );
        assert!(!partial.exists());
        assert!(!c.has_blob(&d3));
    }
}
