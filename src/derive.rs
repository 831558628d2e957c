//! A wasm module out of a container image's layer and into the cache: the glue
//! between the cache (which stores files) and `extract.rs` (which finds the
//! module in a tar). The layer and its image config are already cached.

use std::io::BufReader;

use crate::cache::{Cache, Derived, PullGuard, Staged};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::extract::{ExtractError, Failed, Rule, Stage, extract};
use crate::reference::Reference;
use crate::resolve::Chosen;

impl Stage for Staged {
    type Error = Error;

    fn write_all(&mut self, buf: &[u8]) -> Result<()> {
        Staged::write_all(self, buf)
    }
}

/// The module extracted from `chosen`'s layer by the rule image config `config`
/// implies: the cached one when there is one, else extracted now (reading at
/// most `max_bytes` decompressed) and committed.
///
/// # Errors
/// [`Error::Extract`] when the layer holds no usable module; [`Error::Io`] from the cache.
pub(crate) fn module(
    cache: &Cache,
    held: &PullGuard,
    r: &Reference,
    chosen: &Chosen,
    config: &Digest,
    max_bytes: u64,
) -> Result<Derived> {
    let layer = &chosen.layer_digest;
    if let Some(found) = cache.derived(layer, config) {
        return Ok(found);
    }
    let refused = |reason: ExtractError| Error::Extract {
        reference: r.to_string(),
        layer: layer.clone(),
        reason: Box::new(reason),
    };
    let config_bytes = cache.read_manifest(config)?.ok_or_else(|| {
        refused(ExtractError::BadConfig {
            reason: format!("image config {config} is not in the cache"),
        })
    })?;
    let rule = Rule::for_config(&config_bytes).map_err(refused)?;
    let reader = BufReader::new(cache.open_blob(layer)?);
    match extract(reader, &chosen.media_type, &rule, max_bytes, &mut || {
        cache.stage(held)
    }) {
        Ok((_, staged)) => cache.commit_derived(held, layer, config, staged),
        Err(Failed::Layer(reason)) => Err(refused(reason)),
        Err(Failed::Cache(e)) => Err(e),
    }
}
