//! Which layer of an image manifest a pull takes, and why: an explicit choice
//! (a layer's title or digest, or media types the user named) narrows what is
//! acceptable and turns every fallback off; a multi-part application is refused by
//! name; a container image's filesystem layer is never handed over as the plugin,
//! the module inside it is extracted instead (see `extract.rs`). Pure: no I/O.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, ParseDigestError};
use crate::manifest::{
    Descriptor, ImageManifest, LayerSummary, SelectError, distinct, essence, is_container_image,
    is_filesystem_layer, no_matching_layer, select_layer,
};

/// The config media type of a Spin application (Fermyon's `spin registry push`):
/// a locked-app document, components and assets, each a layer.
pub(crate) const SPIN_CONFIG: &str = "application/vnd.fermyon.spin.application.v1+config";

/// One layer of a manifest, chosen by the user: by its `org.opencontainers.image.title`
/// annotation (the file name oras, wkg and others record) or by its digest.
///
/// ```
/// use forge_oci::LayerSelector;
/// let by_title: LayerSelector = "plugin.wasm".parse()?;
/// assert_eq!(by_title, LayerSelector::Title("plugin.wasm".into()));
/// let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// assert!(matches!(d.parse()?, LayerSelector::Digest(_)));
/// # Ok::<(), forge_oci::ParseDigestError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LayerSelector {
    /// The layer whose `org.opencontainers.image.title` annotation is this.
    Title(String),
    /// The layer with this digest.
    Digest(Digest),
}

/// Text starting with a digest algorithm's name and `:` (`sha256:`, `sha512:`, in
/// any case) is a digest, and must be a valid one: `SHA256:…` or `sha512:…` is an
/// error naming it, not a title no layer has. Anything else is a title.
impl FromStr for LayerSelector {
    type Err = ParseDigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let algorithm = s.split_once(':').map(|(a, _)| a.to_ascii_lowercase());
        if matches!(algorithm.as_deref(), Some("sha256" | "sha384" | "sha512")) {
            s.parse().map(LayerSelector::Digest)
        } else {
            Ok(LayerSelector::Title(s.to_owned()))
        }
    }
}

impl fmt::Display for LayerSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerSelector::Title(t) => write!(f, "title \"{t}\""),
            LayerSelector::Digest(d) => write!(f, "digest {d}"),
        }
    }
}

impl LayerSelector {
    fn matches(&self, d: &Descriptor) -> bool {
        match self {
            LayerSelector::Title(t) => d.title() == Some(t.as_str()),
            LayerSelector::Digest(want) => d.sha256().is_ok_and(|got| got == *want),
        }
    }
}

/// Options of one pull (or resolve, or inspect) that override the client's:
/// [`Client::pull_with`](crate::Client::pull_with).
///
/// ```
/// use forge_oci::{LayerSelector, PullOptions};
/// let options = PullOptions::default().layer(LayerSelector::Title("plugin.wasm".into()));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PullOptions {
    pub(crate) layer: Option<LayerSelector>,
    pub(crate) media_types: Option<Vec<String>>,
}

impl PullOptions {
    /// Takes this layer (by title or digest) and no other. Defaults to the
    /// client's ([`ClientBuilder::layer`](crate::ClientBuilder::layer)).
    #[must_use]
    pub fn layer(mut self, layer: LayerSelector) -> Self {
        self.layer = Some(layer);
        self
    }

    /// Accepts only layers of these media types, most preferred first, with no
    /// fallback. Defaults to the client's
    /// ([`ClientBuilder::layer_media_types`](crate::ClientBuilder::layer_media_types)).
    #[must_use]
    pub fn media_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.media_types = Some(types.into_iter().map(Into::into).collect());
        self
    }
}

/// Why a layer was taken: what `inspect` reports and `--json` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum LayerReason {
    /// The user named it (`--layer`, [`ClientBuilder::layer`](crate::ClientBuilder::layer)).
    Chosen,
    /// It is the one layer of the most preferred accepted media type.
    MediaType,
    /// No layer has an accepted media type, and it is the artifact's only layer.
    OnlyLayer,
    /// It is a container image's one filesystem layer: the module is extracted
    /// from it (Istio "compat" and Docker `wasi/wasm` images).
    ContainerImage,
}

impl fmt::Display for LayerReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayerReason::Chosen => "it was chosen by title or digest",
            LayerReason::MediaType => {
                "it is the one layer of the most preferred accepted media type"
            }
            LayerReason::OnlyLayer => {
                "no layer has an accepted media type, and it is the artifact's only layer"
            }
            LayerReason::ContainerImage => {
                "it is the container image's one filesystem layer; the wasm module in it is extracted"
            }
        })
    }
}

/// What the user asked for, for [`plan`].
pub(crate) struct Wanted<'a> {
    /// Accepted media types, best first.
    pub(crate) media_types: &'a [String],
    /// Whether the user named them (rather than the defaults): then nothing else is taken.
    pub(crate) explicit_types: bool,
    pub(crate) layer: Option<&'a LayerSelector>,
}

/// The layer a pull takes and what it does with it.
#[derive(Debug)]
pub(crate) struct Plan<'a> {
    pub(crate) layer: &'a Descriptor,
    pub(crate) reason: LayerReason,
    /// Whether the module inside the layer (a tar) is extracted rather than the
    /// layer handed over.
    pub(crate) extract: bool,
}

/// Chooses the layer of `image` a pull takes.
///
/// # Errors
/// The [`SelectError`] saying why none can be taken.
pub(crate) fn plan<'a>(
    image: &'a ImageManifest,
    wanted: &Wanted<'_>,
) -> Result<Plan<'a>, SelectError> {
    let container = is_container_image(image);
    let summaries = || image.layers.iter().map(LayerSummary::of).collect();
    let named_type = |d: &Descriptor| {
        wanted.explicit_types
            && wanted
                .media_types
                .iter()
                .any(|t| essence(t) == d.media_type_essence())
    };
    if let Some(selector) = wanted.layer {
        let matching = distinct(image.layers.iter().filter(|d| selector.matches(d)));
        let layer = match matching.as_slice() {
            [one] => *one,
            [] => {
                return Err(SelectError::NoSuchLayer {
                    wanted: selector.to_string(),
                    layers: summaries(),
                });
            }
            several => {
                return Err(SelectError::SeveralLayers {
                    wanted: selector.to_string(),
                    layers: several.iter().map(|d| LayerSummary::of(d)).collect(),
                });
            }
        };
        if wanted.explicit_types && !named_type(layer) {
            return Err(SelectError::NoMatchingLayer {
                accepted: wanted.media_types.to_vec(),
                found: vec![layer.media_type.clone()],
            });
        }
        // Naming the layer's own media type asks for the layer itself.
        let extract = container && is_filesystem_layer(&layer.media_type) && !named_type(layer);
        return Ok(Plan {
            layer,
            reason: LayerReason::Chosen,
            extract,
        });
    }
    if !wanted.explicit_types && image.config.media_type_essence() == SPIN_CONFIG {
        return Err(SelectError::Application {
            kind: "Spin application",
            config_media_type: image.config.media_type.clone(),
            layers: summaries(),
        });
    }
    match select_layer(image, wanted.media_types) {
        Ok(layer) => {
            let reason = if wanted
                .media_types
                .iter()
                .any(|t| essence(t) == layer.media_type_essence())
            {
                LayerReason::MediaType
            } else {
                LayerReason::OnlyLayer
            };
            if wanted.explicit_types && reason == LayerReason::OnlyLayer {
                // The single-layer fallback never overrides an explicit list.
                return Err(no_matching_layer(image, wanted.media_types));
            }
            Ok(Plan {
                layer,
                reason,
                extract: false,
            })
        }
        Err(SelectError::NoMatchingLayer { .. }) if container && !wanted.explicit_types => {
            match image.layers.as_slice() {
                [layer] => Ok(Plan {
                    layer,
                    reason: LayerReason::ContainerImage,
                    extract: true,
                }),
                _ => Err(SelectError::ContainerImage {
                    layers: summaries(),
                }),
            }
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::manifest::{DEFAULT_LAYER_MEDIA_TYPES, OCI_MANIFEST, TITLE_ANNOTATION};

    fn layer(media_type: &str, title: Option<&str>) -> Descriptor {
        let mut d: Descriptor = serde_json::from_value(serde_json::json!({
            "mediaType": media_type,
            "digest": Digest::of(format!("{media_type}{title:?}").as_bytes()).to_string(),
            "size": 7,
        }))
        .unwrap();
        d.annotations =
            title.map(|t| BTreeMap::from([(TITLE_ANNOTATION.to_owned(), t.to_owned())]));
        d
    }

    fn image(config: &str, layers: Vec<Descriptor>) -> ImageManifest {
        ImageManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            artifact_type: None,
            config: layer(config, None),
            layers,
            subject: None,
            annotations: None,
        }
    }

    fn defaults() -> Vec<String> {
        DEFAULT_LAYER_MEDIA_TYPES.map(str::to_owned).to_vec()
    }

    fn wanted<'a>(
        types: &'a [String],
        explicit: bool,
        layer: Option<&'a LayerSelector>,
    ) -> Wanted<'a> {
        Wanted {
            media_types: types,
            explicit_types: explicit,
            layer,
        }
    }

    const EMPTY: &str = "application/vnd.oci.empty.v1+json";
    const TGZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    const IMAGE: &str = "application/vnd.oci.image.config.v1+json";

    #[test]
    fn two_layers_of_the_winning_type_are_refused_with_both_listed() {
        let m = image(
            EMPTY,
            vec![
                layer("application/wasm", Some("a.wasm")),
                layer("application/wasm", Some("b.wasm")),
            ],
        );
        let d = defaults();
        let e = plan(&m, &wanted(&d, false, None)).unwrap_err();
        assert!(matches!(&e, SelectError::SeveralLayers { layers, .. } if layers.len() == 2));
        let msg = e.to_string();
        assert!(
            msg.contains("a.wasm") && msg.contains("b.wasm") && msg.contains("--layer"),
            "{msg}"
        );
        let pick = LayerSelector::Title("b.wasm".into());
        let p = plan(&m, &wanted(&d, false, Some(&pick))).unwrap();
        assert_eq!(p.layer.title(), Some("b.wasm"));
        assert_eq!(p.reason, LayerReason::Chosen);
    }

    #[test]
    fn an_explicit_media_type_disables_the_single_layer_fallback() {
        let m = image(EMPTY, vec![layer("application/octet-stream", None)]);
        let d = defaults();
        assert_eq!(
            plan(&m, &wanted(&d, false, None)).unwrap().reason,
            LayerReason::OnlyLayer
        );
        let only_wasm = vec!["application/wasm".to_owned()];
        let e = plan(&m, &wanted(&only_wasm, true, None)).unwrap_err();
        assert!(matches!(e, SelectError::NoMatchingLayer { .. }), "{e}");
    }

    #[test]
    fn spin_apps_are_refused_unless_a_layer_is_chosen() {
        let m = image(
            SPIN_CONFIG,
            vec![
                layer(SPIN_CONFIG, None),
                layer("application/vnd.wasm.content.layer.v1+wasm", None),
            ],
        );
        let d = defaults();
        let e = plan(&m, &wanted(&d, false, None)).unwrap_err();
        assert!(e.to_string().contains("Spin application"), "{e}");
        let digest = LayerSelector::Digest(m.layers[1].sha256().unwrap());
        assert!(plan(&m, &wanted(&d, false, Some(&digest))).is_ok());
    }

    #[test]
    fn a_container_image_layer_is_extracted_unless_its_own_type_is_named() {
        let m = image(IMAGE, vec![layer(TGZ, None)]);
        let d = defaults();
        let p = plan(&m, &wanted(&d, false, None)).unwrap();
        assert!(p.extract);
        assert_eq!(p.reason, LayerReason::ContainerImage);
        let wasm = vec!["application/wasm".to_owned()];
        assert!(plan(&m, &wanted(&wasm, true, None)).is_err());
        let own = vec![TGZ.to_owned()];
        let p = plan(&m, &wanted(&own, true, None)).unwrap();
        assert!(!p.extract);
        let two = image(IMAGE, vec![layer(TGZ, None), layer(TGZ, Some("x"))]);
        let e = plan(&two, &wanted(&d, false, None)).unwrap_err();
        assert!(matches!(e, SelectError::ContainerImage { .. }), "{e}");
    }

    #[test]
    fn selectors_parse_digests_strictly() {
        for text in [
            "sha256:abc",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha512:00",
        ] {
            assert!(text.parse::<LayerSelector>().is_err(), "{text}");
        }
        assert_eq!(
            "x.wasm".parse::<LayerSelector>().unwrap(),
            LayerSelector::Title("x.wasm".into())
        );
    }
}
