//! What the client hands back: the artifact a pull leaves in the cache, and what
//! resolve and inspect find. Results keep their fields behind getters.

use std::path::{Path, PathBuf};

use crate::cache::Derived;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layers::{LayerReason, Plan};
use crate::manifest::{ImageIndex, ImageManifest, LayerSummary, SelectError};
use crate::reference::Reference;
use crate::resolve::Chosen;

/// The result of a pull: one verified blob in the cache, or the wasm module
/// extracted from a container image's layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    path: PathBuf,
    layer_digest: Digest,
    manifest_digest: Digest,
    media_type: String,
    size: u64,
    from_cache: bool,
    title: Option<String>,
    extracted_module: Option<Digest>,
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
            title: resolved.title,
            extracted_module: None,
        }
    }

    /// The module `derived` extracted from `resolved`'s layer.
    pub(crate) fn extracted(derived: Derived, resolved: Chosen, from_cache: bool) -> Artifact {
        Artifact {
            size: derived.size,
            extracted_module: Some(derived.digest),
            ..Artifact::new(derived.path, resolved, from_cache)
        }
    }

    /// The file's path in the cache: the blob, or the module extracted from it
    /// (see [`Artifact::extracted_module`]). Treat it as read-only: it is shared.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The layer's `org.opencontainers.image.title` annotation (its file name,
    /// as oras and wkg record it), when it has one.
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// When the layer is a container image's filesystem layer (Istio "compat" and
    /// Docker `wasi/wasm` images), the digest of the wasm module extracted from it,
    /// which is the file at [`Artifact::path`]; `None` when that file is the layer.
    pub fn extracted_module(&self) -> Option<&Digest> {
        self.extracted_module.as_ref()
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

    /// The layer's media type, as the manifest gives it (for an extracted module,
    /// the container layer's, e.g. `application/vnd.oci.image.layer.v1.tar+gzip`).
    pub fn media_type(&self) -> &str {
        &self.media_type
    }

    /// The size in bytes of the file at [`Artifact::path`]: the blob's, or the
    /// extracted module's.
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
    /// That layer's `org.opencontainers.image.title`, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) title: Option<String>,
    /// Why that layer.
    pub(crate) reason: LayerReason,
    /// Whether a pull extracts the wasm module from the layer (a container image).
    pub(crate) extracts_module: bool,
}

impl Resolution {
    pub(crate) fn new(r: &Reference, chosen: Chosen) -> Resolution {
        Resolution {
            reference: r.to_string(),
            manifest_digest: chosen.manifest_digest,
            layer_digest: chosen.layer_digest,
            media_type: chosen.media_type,
            size: chosen.size,
            title: chosen.title,
            reason: chosen.reason,
            extracts_module: chosen.extract_with.is_some(),
        }
    }

    /// That layer's `org.opencontainers.image.title`, when it has one.
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// Why a pull takes that layer.
    pub fn reason(&self) -> LayerReason {
        self.reason
    }

    /// Whether a pull extracts the wasm module from the layer (a container
    /// image's filesystem layer) rather than returning the layer.
    pub fn extracts_module(&self) -> bool {
        self.extracts_module
    }

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
    /// The layer a pull would take and why, or why none.
    pub(crate) layer: LayerDecision,
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

    /// The layer a pull with the same options would take and why, or why none.
    pub fn layer(&self) -> &LayerDecision {
        &self.layer
    }
}

/// Which layer a pull would take and why, or why it would take none: part of
/// [`Inspection`], so the choice can be seen before it is made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerDecision {
    /// The layer, when one would be taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) chosen: Option<LayerSummary>,
    /// Why it would be taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<LayerReason>,
    /// Whether its wasm module would be extracted (a container image's layer).
    pub(crate) extracts_module: bool,
    /// What a person reads: why this layer, or why none.
    pub(crate) explanation: String,
    /// Why no layer would be taken.
    #[serde(skip)]
    pub(crate) refusal: Option<SelectError>,
}

impl LayerDecision {
    pub(crate) fn taken(plan: &Plan<'_>) -> LayerDecision {
        let summary = LayerSummary::of(plan.layer);
        LayerDecision {
            explanation: format!("a pull takes {summary}: {}", plan.reason),
            chosen: Some(summary),
            reason: Some(plan.reason),
            extracts_module: plan.extract,
            refusal: None,
        }
    }

    pub(crate) fn refused(reason: SelectError) -> LayerDecision {
        LayerDecision {
            chosen: None,
            reason: None,
            extracts_module: false,
            explanation: format!("a pull takes no layer: {reason}"),
            refusal: Some(reason),
        }
    }

    /// The layer a pull would take, or `None`.
    pub fn chosen(&self) -> Option<&LayerSummary> {
        self.chosen.as_ref()
    }

    /// Why that layer.
    pub fn reason(&self) -> Option<LayerReason> {
        self.reason
    }

    /// Whether its wasm module would be extracted rather than the layer returned.
    pub fn extracts_module(&self) -> bool {
        self.extracts_module
    }

    /// Why no layer would be taken (the error the pull would fail with).
    pub fn refusal(&self) -> Option<&SelectError> {
        self.refusal.as_ref()
    }

    /// One sentence a person reads: which layer and why, or why none.
    pub fn explanation(&self) -> &str {
        &self.explanation
    }
}
