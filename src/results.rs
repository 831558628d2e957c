//! What the client hands back: the artifact a pull leaves in the cache, and what
//! resolve and inspect find. Results keep their fields behind getters.

use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{ImageIndex, ImageManifest};
use crate::resolve::Chosen;

/// The result of a pull: one verified blob in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    path: PathBuf,
    layer_digest: Digest,
    manifest_digest: Digest,
    media_type: String,
    size: u64,
    from_cache: bool,
}

impl Artifact {
    pub(crate) fn new(path: PathBuf, resolved: Chosen, from_cache: bool) -> Artifact {
        Artifact {
            path,
            layer_digest: resolved.layer_digest,
            manifest_digest: resolved.manifest_digest,
            media_type: resolved.media_type,
            size: resolved.size,
            from_cache,
        }
    }

    /// The blob's path in the cache. Treat it as read-only: it is shared.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The digest of the layer that was selected.
    pub fn layer_digest(&self) -> &Digest {
        &self.layer_digest
    }

    /// The digest the reference resolved to: the index when there is one, else
    /// the manifest. Pin this (`name@digest`) for reproducible builds.
    pub fn manifest_digest(&self) -> &Digest {
        &self.manifest_digest
    }

    /// The layer's media type, as the manifest gives it.
    pub fn media_type(&self) -> &str {
        &self.media_type
    }

    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the blob came from the cache: it was not downloaded by this pull.
    ///
    /// Manifests may still have been asked for: a revalidation request (HEAD), or
    /// the manifest of a tag that was not cached or has moved, when it leads to a
    /// blob the cache already holds (another tag's, or one another process has
    /// just downloaded). `false` means this pull downloaded the blob.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }

    /// Reads the whole blob.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read.
    pub fn read(&self) -> Result<Vec<u8>> {
        std::fs::read(&self.path).map_err(|e| Error::io("read", &self.path, e))
    }

    /// Copies the blob to `dest`, replacing any file there.
    ///
    /// The bytes go to a temporary file in `dest`'s directory, which is flushed to
    /// disk and then renamed over `dest`: `dest` holds either its old content or the
    /// whole blob, never part of it, even when the disk fills up or the process
    /// dies, and no temporary file is left behind by a failure. This needs write
    /// access to `dest`'s directory. A symbolic link at `dest` is followed, as `cp`
    /// follows it: the file it names is replaced and the link stays. A `dest` that
    /// is not a regular file (`/dev/null`, a FIFO, a terminal) is written into,
    /// never replaced. The copy is an ordinary file of the caller's, readable by
    /// others (`0644` before the umask) and writable, even though the cached blob is
    /// read-only.
    ///
    /// # Errors
    /// - [`Error::DestinationIsCached`] when `dest` is the cached file itself (its
    ///   path, or a symbolic or hard link to it); nothing is written.
    /// - [`Error::Io`], naming the path, when the blob cannot be read or the copy
    ///   cannot be written (a missing or read-only directory, a full disk, `dest`
    ///   is a directory); `dest` is then as it was.
    pub fn copy_to(&self, dest: &Path) -> Result<()> {
        crate::export::copy_out(&self.path, dest)
    }
}

/// What a reference resolves to, from [`Client::resolve`](crate::Client::resolve): no blob is downloaded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Resolution {
    /// The reference, normalised.
    pub(crate) reference: String,
    /// The digest the reference resolves to (the index, when there is one).
    pub(crate) manifest_digest: Digest,
    /// The layer a pull would download.
    pub(crate) layer_digest: Digest,
    /// That layer's media type.
    pub(crate) media_type: String,
    /// That layer's size in bytes.
    pub(crate) size: u64,
}

impl Resolution {
    /// The reference, normalised.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// The digest the reference resolves to (the index, when there is one).
    pub fn manifest_digest(&self) -> &Digest {
        &self.manifest_digest
    }

    /// The layer a pull would download.
    pub fn layer_digest(&self) -> &Digest {
        &self.layer_digest
    }

    /// That layer's media type.
    pub fn media_type(&self) -> &str {
        &self.media_type
    }

    /// That layer's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// The documents behind a reference, from [`Client::inspect`](crate::Client::inspect).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Inspection {
    /// The reference, normalised.
    pub(crate) reference: String,
    /// The digest the reference resolves to (the index, when there is one): the
    /// same as [`Artifact::manifest_digest`] and [`Resolution::manifest_digest`].
    pub(crate) manifest_digest: Digest,
    /// The index, when the reference names one.
    pub(crate) index: Option<ImageIndex>,
    /// The digest of the image manifest selected from the index (equal to
    /// `manifest_digest` without an index).
    pub(crate) image_manifest_digest: Digest,
    /// The image manifest whose layer a pull would download.
    pub(crate) manifest: ImageManifest,
}

impl Inspection {
    /// The reference, normalised.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// The digest the reference resolves to (the index, when there is one): the
    /// same as [`Artifact::manifest_digest`] and [`Resolution::manifest_digest`].
    pub fn manifest_digest(&self) -> &Digest {
        &self.manifest_digest
    }

    /// The index, when the reference names one.
    pub fn index(&self) -> Option<&ImageIndex> {
        self.index.as_ref()
    }

    /// The digest of the image manifest selected from the index (equal to
    /// `manifest_digest` without an index).
    pub fn image_manifest_digest(&self) -> &Digest {
        &self.image_manifest_digest
    }

    /// The image manifest whose layer a pull would download.
    pub fn manifest(&self) -> &ImageManifest {
        &self.manifest
    }
}
