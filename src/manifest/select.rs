//! Choosing what to download: the platform from an index, the layer from a manifest.

use std::fmt;

use super::{Descriptor, ImageIndex, ImageManifest, Platform, essence};

/// Picks the child manifest for the first platform in `wanted` (best first) that the
/// index offers. An index with a single entry that states no platform is taken as is.
///
/// # Errors
/// [`SelectError::NoMatchingPlatform`], listing the platforms the index offers.
pub fn select_platform<'a>(
    index: &'a ImageIndex,
    wanted: &[Platform],
) -> Result<&'a Descriptor, SelectError> {
    for w in wanted {
        if let Some(d) = index
            .manifests
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| p.matches(w)))
        {
            return Ok(d);
        }
    }
    if let [only] = index.manifests.as_slice() {
        if only.platform.is_none() {
            return Ok(only);
        }
    }
    Err(SelectError::NoMatchingPlatform {
        wanted: wanted.iter().map(ToString::to_string).collect(),
        found: index
            .manifests
            .iter()
            .map(|d| {
                d.platform
                    .as_ref()
                    .map_or_else(|| "(none)".to_owned(), ToString::to_string)
            })
            .collect(),
    })
}

/// Picks the layer to download: the first layer whose media type (parameters
/// ignored) is the most preferred in `accepted`; failing that, the only layer if
/// there is exactly one.
///
/// # Errors
/// [`SelectError::NoMatchingLayer`], listing the media types found.
pub fn select_layer<'a>(
    manifest: &'a ImageManifest,
    accepted: &[String],
) -> Result<&'a Descriptor, SelectError> {
    for want in accepted {
        let want = essence(want);
        if let Some(d) = manifest
            .layers
            .iter()
            .find(|d| d.media_type_essence() == want)
        {
            return Ok(d);
        }
    }
    if let [only] = manifest.layers.as_slice() {
        return Ok(only);
    }
    Err(SelectError::NoMatchingLayer {
        accepted: accepted.to_vec(),
        found: manifest
            .layers
            .iter()
            .map(|d| d.media_type.clone())
            .collect(),
    })
}

/// Why nothing could be chosen from a manifest or index.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SelectError {
    /// No child manifest of an index is for a wanted platform.
    NoMatchingPlatform {
        /// The platforms searched for, best first.
        wanted: Vec<String>,
        /// The platforms the index offers.
        found: Vec<String>,
    },
    /// Several layers and none of an accepted media type.
    NoMatchingLayer {
        /// The media types accepted, best first.
        accepted: Vec<String>,
        /// The media types of the manifest's layers.
        found: Vec<String>,
    },
}

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelectError::NoMatchingPlatform { wanted, found } => write!(
                f,
                "the index has no manifest for platform {}; it offers {}",
                wanted.join(", "),
                found.join(", ")
            ),
            SelectError::NoMatchingLayer { accepted, found } => write!(
                f,
                "none of the {} layers has an accepted media type ({}); found {}",
                found.len(),
                accepted.join(", "),
                found.join(", ")
            ),
        }
    }
}

impl std::error::Error for SelectError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::manifest::{DEFAULT_LAYER_MEDIA_TYPES, OCI_MANIFEST};

    fn layer(media_type: &str) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: Digest::of(media_type.as_bytes()).to_string(),
            size: 1,
            platform: None,
            artifact_type: None,
            urls: None,
            data: None,
            annotations: None,
        }
    }

    fn manifest(layers: &[&str]) -> ImageManifest {
        ImageManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            artifact_type: None,
            config: layer("application/vnd.oci.empty.v1+json"),
            layers: layers.iter().map(|m| layer(m)).collect(),
            subject: None,
            annotations: None,
        }
    }

    fn defaults() -> Vec<String> {
        DEFAULT_LAYER_MEDIA_TYPES
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn layer_priority_follows_the_accepted_list_not_layer_order() {
        let m = manifest(&[
            "application/wasm",
            "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
        ]);
        let got = select_layer(&m, &defaults()).unwrap();
        assert_eq!(
            got.media_type,
            "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm"
        );
    }

    #[test]
    fn single_layer_of_any_type_is_taken() {
        let m = manifest(&["application/octet-stream"]);
        assert_eq!(
            select_layer(&m, &defaults()).unwrap().media_type,
            "application/octet-stream"
        );
    }

    #[test]
    fn no_match_lists_what_was_found() {
        let m = manifest(&["text/plain", "application/x-tar"]);
        let e = select_layer(&m, &defaults()).unwrap_err().to_string();
        assert!(
            e.contains("text/plain") && e.contains("application/x-tar"),
            "{e}"
        );
    }

    #[test]
    fn media_type_parameters_are_ignored() {
        let m = manifest(&["text/plain", "Application/Wasm; charset=binary"]);
        assert_eq!(
            select_layer(&m, &defaults()).unwrap().media_type,
            "Application/Wasm; charset=binary"
        );
    }
}
