//! From a top manifest to the one blob a pull returns: under an index, the child
//! manifest for the wanted platforms; then the layer. The walk is pure: documents
//! come from a `load` function, so the cache and the registry (and, later, an OCI
//! image layout) all feed the same rules.

use std::sync::Arc;

use crate::cache::{Cache, LayerOf, MissingLayer};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{
    Descriptor, Document, ImageIndex, ImageManifest, Manifest, ParseManifestError, Platform,
    select_layer, select_platform,
};
use crate::reference::Reference;

/// What a pull selects: platforms from an index, then a layer by media type.
#[derive(Debug, Clone)]
pub(crate) struct Selection {
    pub(crate) platforms: Vec<Platform>,
    pub(crate) layer_media_types: Vec<String>,
}

/// What a reference leads to: its top document and, under an index, the child
/// selected for the platforms; `image` is the one that lists layers.
pub(crate) struct Documents {
    pub(crate) top: Document,
    pub(crate) child: Option<Document>,
    pub(crate) image: ImageManifest,
}

/// The blob a reference resolves to.
#[derive(Debug, Clone)]
pub(crate) struct Chosen {
    /// The top manifest (the index, when there is one).
    pub(crate) manifest_digest: Digest,
    pub(crate) layer_digest: Digest,
    pub(crate) media_type: String,
    pub(crate) size: u64,
}

impl Selection {
    /// The digest and size of the child manifest `index` selects.
    pub(crate) fn child_of(&self, r: &Reference, index: &ImageIndex) -> Result<(Digest, u64)> {
        let d = select_platform(index, &self.platforms).map_err(|reason| Error::NoMatch {
            reference: r.to_string(),
            reason,
        })?;
        Ok((descriptor_digest(r, d)?, d.size))
    }

    /// The documents `top` leads to. Under an index, `load(digest, size)` gives the
    /// selected child; `Ok(None)` when it has none to give.
    ///
    /// # Errors
    /// [`Error::NoMatch`] when the index offers no wanted platform, an index under
    /// an index, and whatever `load` returns.
    pub(crate) fn walk(
        &self,
        r: &Reference,
        top: Document,
        load: impl FnOnce(&Digest, u64) -> Result<Option<Document>>,
    ) -> Result<Option<Documents>> {
        let child = match &top.manifest {
            Manifest::Index(index) => {
                let (digest, size) = self.child_of(r, index)?;
                match load(&digest, size)? {
                    Some(child) => Some(child),
                    None => return Ok(None),
                }
            }
            Manifest::Image(_) => None,
        };
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
        Ok(Some(Documents { top, child, image }))
    }

    /// The layer a pull returns from `docs`.
    ///
    /// # Errors
    /// [`Error::NoMatch`] when no layer is acceptable, [`Error::UnsupportedDigest`].
    pub(crate) fn choose(&self, r: &Reference, docs: &Documents) -> Result<Chosen> {
        let layer = self.layer(r, &docs.image)?;
        Ok(Chosen {
            manifest_digest: docs.top.digest.clone(),
            layer_digest: descriptor_digest(r, layer)?,
            media_type: layer.media_type.clone(),
            size: layer.size,
        })
    }

    fn layer<'a>(&self, r: &Reference, image: &'a ImageManifest) -> Result<&'a Descriptor> {
        select_layer(image, &self.layer_media_types).map_err(|reason| Error::NoMatch {
            reference: r.to_string(),
            reason,
        })
    }

    /// The documents `top` leads to in the cache; `None` when one is missing (or
    /// no longer verifies: the registry can fill it again).
    pub(crate) fn cached_documents(
        &self,
        cache: &Cache,
        r: &Reference,
        top: &Digest,
    ) -> Result<Option<Documents>> {
        let Some(top) = cache.document(top)? else {
            return Ok(None);
        };
        self.walk(r, top, |digest, _| cache.document(digest))
    }

    /// What `top` resolves to from the cache alone, its blob present; `None` when
    /// a manifest or the blob is missing.
    ///
    /// # Errors
    /// When the cached documents offer no acceptable platform or layer.
    pub(crate) fn cached(
        &self,
        cache: &Cache,
        r: &Reference,
        top: &Digest,
    ) -> Result<Option<Chosen>> {
        let Some(docs) = self.cached_documents(cache, r, top)? else {
            return Ok(None);
        };
        let chosen = self.choose(r, &docs)?;
        Ok(cache
            .has_blob(&chosen.layer_digest, chosen.size)
            .then_some(chosen))
    }

    /// For [`Cache::list`]: the cached layer `top` leads to, or what is missing.
    fn cached_layer(
        &self,
        cache: &Cache,
        r: &Reference,
        top: &Digest,
    ) -> std::result::Result<(Digest, u64), MissingLayer> {
        let unusable = |e: Error| match e {
            Error::NoMatch { reason, .. } => MissingLayer::NoMatch(reason),
            e => MissingLayer::Unreadable(e.to_string()),
        };
        let docs = self
            .cached_documents(cache, r, top)
            .map_err(unusable)?
            .ok_or_else(|| {
                // The top manifest, or the one its index selects, is missing.
                let child = match cache.document(top) {
                    Ok(Some(Document {
                        manifest: Manifest::Index(index),
                        ..
                    })) => self.child_of(r, &index).ok().map(|(d, _)| d),
                    _ => None,
                };
                MissingLayer::Manifest(child.unwrap_or_else(|| top.clone()))
            })?;
        let chosen = self.choose(r, &docs).map_err(unusable)?;
        if cache.has_blob(&chosen.layer_digest, chosen.size) {
            Ok((chosen.layer_digest, chosen.size))
        } else {
            Err(MissingLayer::Blob(chosen.layer_digest))
        }
    }

    /// This selection as the cache's listing applies it.
    pub(crate) fn for_listing(self) -> LayerOf {
        Arc::new(move |cache, r, top| self.cached_layer(cache, r, top))
    }
}

fn descriptor_digest(r: &Reference, d: &Descriptor) -> Result<Digest> {
    d.sha256().map_err(|reason| Error::UnsupportedDigest {
        reference: r.to_string(),
        reason,
    })
}
