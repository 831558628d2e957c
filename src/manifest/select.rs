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

/// The annotation oras, wkg and others set to a layer's file name: what
/// `--layer TITLE` matches.
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

/// Config media types of container images (OCI and Docker): a manifest with one
/// of these and filesystem layers is an image to run, not an artifact to hand over.
pub const IMAGE_CONFIG_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// Whether `media_type` is a container filesystem layer (a tar, compressed or
/// not, OCI or Docker).
pub fn is_filesystem_layer(media_type: &str) -> bool {
    let t = essence(media_type);
    t.starts_with("application/vnd.oci.image.layer.")
        || t.starts_with("application/vnd.docker.image.rootfs.")
}

/// Whether `manifest` is a container image: an image config and at least one
/// filesystem layer.
pub fn is_container_image(manifest: &ImageManifest) -> bool {
    IMAGE_CONFIG_MEDIA_TYPES.contains(&manifest.config.media_type_essence().as_str())
        && manifest
            .layers
            .iter()
            .any(|d| is_filesystem_layer(&d.media_type))
}

/// Picks the layer to download by media type: the layer of the most preferred
/// type in `accepted` that the manifest has; failing that, the only layer if
/// there is exactly one and the manifest is not a container image (whose layer
/// is a file system, not the artifact).
///
/// # Errors
/// [`SelectError::SeveralLayers`] when more than one layer has the winning type
/// (never "the first"), [`SelectError::NoMatchingLayer`] listing the media types
/// found.
pub fn select_layer<'a>(
    manifest: &'a ImageManifest,
    accepted: &[String],
) -> Result<&'a Descriptor, SelectError> {
    for want in accepted {
        let want = essence(want);
        let of_type = distinct(
            manifest
                .layers
                .iter()
                .filter(|d| d.media_type_essence() == want),
        );
        match of_type.as_slice() {
            [] => {}
            [one] => return Ok(one),
            several => {
                return Err(SelectError::SeveralLayers {
                    wanted: format!("media type {want}"),
                    layers: several.iter().map(|d| LayerSummary::of(d)).collect(),
                });
            }
        }
    }
    if let [only] = manifest.layers.as_slice() {
        if !is_container_image(manifest) {
            return Ok(only);
        }
    }
    Err(no_matching_layer(manifest, accepted))
}

/// `layers` with repeats of one blob (the same digest listed twice) left out:
/// the same bytes twice are no ambiguity.
pub(crate) fn distinct<'a>(layers: impl Iterator<Item = &'a Descriptor>) -> Vec<&'a Descriptor> {
    let mut seen: Vec<&'a Descriptor> = Vec::new();
    for d in layers {
        if !seen.iter().any(|s| s.digest == d.digest) {
            seen.push(d);
        }
    }
    seen
}

pub(crate) fn no_matching_layer(manifest: &ImageManifest, accepted: &[String]) -> SelectError {
    SelectError::NoMatchingLayer {
        accepted: accepted.to_vec(),
        found: manifest
            .layers
            .iter()
            .map(|d| d.media_type.clone())
            .collect(),
    }
}

/// What an error or `inspect` shows of a layer, so a person can choose one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct LayerSummary {
    /// The media type, as the manifest gives it.
    pub media_type: String,
    /// The digest, as the manifest gives it.
    pub digest: String,
    /// The size in bytes.
    pub size: u64,
    /// The `org.opencontainers.image.title` annotation, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

impl LayerSummary {
    /// The summary of layer `d`.
    pub fn of(d: &Descriptor) -> LayerSummary {
        LayerSummary {
            media_type: d.media_type.clone(),
            digest: d.digest.clone(),
            size: d.size,
            title: d.title().map(str::to_owned),
        }
    }
}

/// `"plugin.wasm" application/wasm, 1234 bytes, sha256:…`: every field came
/// from a registry, so it is shown escaped.
impl fmt::Display for LayerSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |s: &str| crate::untrusted::printable(s, 200);
        match &self.title {
            Some(t) => write!(f, "\"{}\" ", shown(t))?,
            None => f.write_str("(no title) ")?,
        }
        write!(
            f,
            "{}, {} bytes, {}",
            shown(&self.media_type),
            self.size,
            shown(&self.digest)
        )
    }
}

fn list(layers: &[LayerSummary]) -> String {
    let items: Vec<String> = layers.iter().map(ToString::to_string).collect();
    items.join("; ")
}

/// How a person picks one layer, said at the end of each refusal that lists them.
const HOW_TO_CHOOSE: &str = "choose one with --layer TITLE or --layer sha256:… \
     (ClientBuilder::layer, PullOptions::layer), or narrow with --media-type";

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
    /// No layer of an accepted media type, and no single artifact layer to fall back on.
    NoMatchingLayer {
        /// The media types accepted, best first.
        accepted: Vec<String>,
        /// The media types of the manifest's layers.
        found: Vec<String>,
    },
    /// More than one layer fits what was asked for: handing over one of them
    /// would be a guess.
    SeveralLayers {
        /// What they all match: `media type application/wasm`, `title "x"`.
        wanted: String,
        /// The layers that match.
        layers: Vec<LayerSummary>,
    },
    /// No layer has the title or digest given with `--layer`.
    NoSuchLayer {
        /// The title or digest asked for.
        wanted: String,
        /// The manifest's layers.
        layers: Vec<LayerSummary>,
    },
    /// A multi-part application (a Spin app: a locked-app document, components,
    /// assets), not a single-blob plugin.
    Application {
        /// What kind of application, e.g. `Spin application`.
        kind: &'static str,
        /// The manifest's config media type, which says so.
        config_media_type: String,
        /// The manifest's layers.
        layers: Vec<LayerSummary>,
    },
    /// A container image whose filesystem layers hold no one layer a module
    /// could be extracted from (forge-oci extracts from one-layer images only).
    ContainerImage {
        /// The manifest's layers.
        layers: Vec<LayerSummary>,
    },
}

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |s: &str| crate::untrusted::printable(s, 200);
        match self {
            SelectError::NoMatchingPlatform { wanted, found } => write!(
                f,
                "the index has no manifest for platform {}; it offers {}",
                wanted.join(", "),
                found.join(", ")
            ),
            SelectError::NoMatchingLayer { accepted, found } => {
                let found: Vec<String> = found.iter().map(|t| shown(t)).collect();
                write!(
                    f,
                    "none of the {} layers has an accepted media type ({}); found {}",
                    found.len(),
                    accepted.join(", "),
                    found.join(", ")
                )
            }
            SelectError::SeveralLayers { wanted, layers } => write!(
                f,
                "{} layers have {}, so which one to pull is ambiguous: {}; {HOW_TO_CHOOSE}",
                layers.len(),
                shown(wanted),
                list(layers)
            ),
            SelectError::NoSuchLayer { wanted, layers } => write!(
                f,
                "no layer has the title or digest {}; the layers are: {}",
                shown(wanted),
                list(layers)
            ),
            SelectError::Application {
                kind,
                config_media_type,
                layers,
            } => write!(
                f,
                "this is a {kind} (config {}), made of several parts, not a single-blob \
                 plugin; its layers are: {}; to take one part anyway, {HOW_TO_CHOOSE}",
                shown(config_media_type),
                list(layers)
            ),
            SelectError::ContainerImage { layers } => write!(
                f,
                "this is a container image with {} layers; a wasm module is extracted \
                 only from an image with one filesystem layer; its layers are: {}; {HOW_TO_CHOOSE}",
                layers.len(),
                list(layers)
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
