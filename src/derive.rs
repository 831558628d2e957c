//! A wasm module out of a container image's layer and into the cache: the glue
//! between the cache (which stores files) and `extract.rs` (which finds the
//! module in a tar). The layer and its image config are already cached.

use std::io::BufReader;

use crate::cache::{Cache, Derived, PullGuard, Staged};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::extract::{ExtractError, Failed, Rule, Stage, extract};
use crate::reference::Reference;

impl Stage for Staged {
    type Error = Error;

    fn write_all(&mut self, buf: &[u8]) -> Result<()> {
        Staged::write_all(self, buf)
    }
}

/// The layer a module comes from and the image config that says how to find it.
pub(crate) struct Source<'a> {
    pub(crate) layer: &'a Digest,
    pub(crate) media_type: &'a str,
    pub(crate) config: &'a Digest,
}

/// The module extracted from `source.layer`: the cached one when there is one,
/// else extracted now (reading at most `max_bytes` decompressed) and committed.
///
/// # Errors
/// [`Error::Extract`] when the layer holds no usable module; [`Error::Io`] from the cache.
pub(crate) fn module(
    cache: &Cache,
    held: &PullGuard,
    r: &Reference,
    source: &Source<'_>,
    max_bytes: u64,
) -> Result<Derived> {
    if let Some(found) = cache.derived(source.layer, source.config) {
        return Ok(found);
    }
    let refused = |reason: ExtractError| Error::Extract {
        reference: r.to_string(),
        layer: source.layer.clone(),
        reason: Box::new(reason),
    };
    let config = cache.read_manifest(source.config)?.ok_or_else(|| {
        refused(ExtractError::BadConfig {
            reason: format!("image config {} is not in the cache", source.config),
        })
    })?;
    let rule = Rule::for_config(&config).map_err(refused)?;
    let layer = BufReader::new(cache.open_blob(source.layer)?);
    match extract(layer, source.media_type, &rule, max_bytes, &mut || {
        cache.stage(held)
    }) {
        Ok((_, staged)) => cache.commit_derived(held, source.layer, source.config, staged),
        Err(Failed::Layer(reason)) => Err(refused(reason)),
        Err(Failed::Cache(e)) => Err(e),
    }
}
