//! From a top manifest to the one blob a pull returns: under an index, the child
//! manifest for the wanted platforms; then the layer. The walk is pure: documents
//! come from a `load` function, so the cache and the registry (and, later, an OCI
//! image layout) all feed the same rules.

use std::sync::Arc;

use crate::cache::{Cache, LayerOf, MissingLayer};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layers::{LayerReason, LayerSelector, Plan, PullOptions, Wanted, plan};
use crate::manifest::{
    Descriptor, Document, ImageIndex, ImageManifest, Manifest, ParseManifestError, Platform,
    select_platform,
};
use crate::reference::Reference;

/// What a pull selects: platforms from an index, then a layer (see `layers.rs`).
#[derive(Debug, Clone)]
pub(crate) struct Selection {
    pub(crate) platforms: Vec<Platform>,
    pub(crate) layer_media_types: Vec<String>,
    /// Whether the user named the media types: then nothing else is acceptable.
    pub(crate) media_types_explicit: bool,
    /// The layer the user chose by title or digest.
    pub(crate) layer: Option<LayerSelector>,
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
    /// The layer's `org.opencontainers.image.title`.
    pub(crate) title: Option<String>,
    pub(crate) reason: LayerReason,
    /// For a module extracted from the layer: the image config's digest and size
    /// (it says which rule finds the module).
    pub(crate) extract_with: Option<(Digest, u64)>,
}

impl Selection {
    /// This selection with a pull's own options over it.
    pub(crate) fn with(&self, options: &PullOptions) -> Selection {
        let mut s = self.clone();
        if let Some(types) = &options.media_types {
            s.layer_media_types.clone_from(types);
            s.media_types_explicit = true;
        }
        if let Some(layer) = &options.layer {
            s.layer = Some(layer.clone());
        }
        s
    }

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

    /// The layer a pull returns from `docs`, and what it does with it.
    ///
    /// # Errors
    /// [`Error::NoMatch`] when no layer is acceptable, [`Error::UnsupportedDigest`].
    pub(crate) fn choose(&self, r: &Reference, docs: &Documents) -> Result<Chosen> {
        let Plan {
            layer,
            reason,
            extract,
        } = self.plan(r, &docs.image)?;
        let extract_with = if extract {
            let config = &docs.image.config;
            Some((descriptor_digest(r, config)?, config.size))
        } else {
            None
        };
        Ok(Chosen {
            manifest_digest: docs.top.digest.clone(),
            layer_digest: descriptor_digest(r, layer)?,
            media_type: layer.media_type.clone(),
            size: layer.size,
            title: layer.title().map(str::to_owned),
            reason,
            extract_with,
        })
    }

    /// The layer of `image` a pull takes.
    ///
    /// # Errors
    /// [`Error::NoMatch`] saying why none.
    pub(crate) fn plan<'a>(&self, r: &Reference, image: &'a ImageManifest) -> Result<Plan<'a>> {
        let wanted = Wanted {
            media_types: &self.layer_media_types,
            explicit_types: self.media_types_explicit,
            layer: self.layer.as_ref(),
        };
        plan(image, &wanted).map_err(|reason| Error::NoMatch {
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

    /// What `top` resolves to from the cache alone, its blob present (and, for a
    /// module to extract, the image config); `None` when one is missing.
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
        let config_cached = chosen
            .extract_with
            .as_ref()
            .is_none_or(|(digest, size)| cache.has_blob(digest, *size));
        Ok((config_cached && cache.has_blob(&chosen.layer_digest, chosen.size)).then_some(chosen))
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
