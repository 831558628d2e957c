//! Manifest and index documents, and choosing what to download from them.
//!
//! OCI image manifests and indexes and their Docker v2 equivalents share one shape,
//! so one pair of types reads all four. Unknown fields are ignored, as the spec
//! asks. Docker schema1 and unknown media types are refused with an error naming them.
//! Everything here is pure: no network, no disk.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::digest::{Digest, ParseDigestError};

mod document;
mod select;

pub(crate) use document::{Document, Rejected};
pub use select::{
    IMAGE_CONFIG_MEDIA_TYPES, LayerSummary, SelectError, TITLE_ANNOTATION, is_container_image,
    is_filesystem_layer, select_layer, select_platform,
};
pub(crate) use select::{distinct, no_matching_layer};

/// Media type of an OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of a Docker v2 schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Media type of a Docker v2 manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// The `Accept` header for manifest requests: every type we can read. ghcr.io
/// refuses to serve an index to a client that does not list it.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// The layer media types accepted by default, in order of preference: the
/// component and core-module types first, then the older wasm-to-oci ones.
pub const DEFAULT_LAYER_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
    "application/wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.module.wasm.content.layer.v1+wasm",
];

/// A content descriptor: what a manifest says about a blob or a child manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Descriptor {
    /// The media type of the referenced content.
    #[serde(deserialize_with = "media_type")]
    pub media_type: String,
    /// The digest as written, checked against the OCI digest grammar. Use
    /// [`Descriptor::sha256`] to get a [`Digest`] that can be fetched.
    #[serde(deserialize_with = "digest_grammar")]
    pub digest: String,
    /// The size in bytes.
    pub size: u64,
    /// Where the platform of a child manifest in an index is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// The artifact type of a child manifest.
    #[serde(
        default,
        deserialize_with = "opt_media_type",
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    /// Other places the content may be fetched from (absolute URIs).
    #[serde(
        default,
        deserialize_with = "opt_urls",
        skip_serializing_if = "Option::is_none"
    )]
    pub urls: Option<Vec<String>>,
    /// The content itself, base64-encoded, for small blobs.
    #[serde(
        default,
        deserialize_with = "opt_base64",
        skip_serializing_if = "Option::is_none"
    )]
    pub data: Option<String>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Descriptor {
    /// The digest as a [`Digest`].
    ///
    /// # Errors
    /// When the descriptor uses an algorithm other than sha256.
    pub fn sha256(&self) -> Result<Digest, ParseDigestError> {
        self.digest.parse()
    }

    /// The media type without parameters, lowercased (`application/wasm; x=y` → `application/wasm`).
    pub(crate) fn media_type_essence(&self) -> String {
        essence(&self.media_type)
    }

    /// The `org.opencontainers.image.title` annotation: the file name oras, wkg
    /// and others give a layer.
    pub fn title(&self) -> Option<&str> {
        self.annotations
            .as_ref()?
            .get(select::TITLE_ANNOTATION)
            .map(String::as_str)
    }
}

/// The platform of a child manifest in an index.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Platform {
    /// CPU architecture, e.g. `wasm`, `amd64`.
    pub architecture: String,
    /// Operating system, e.g. `wasip2`, `linux`.
    pub os: String,
    /// CPU variant, e.g. `v8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// A platform from an OS and an architecture.
    pub fn new(os: impl Into<String>, architecture: impl Into<String>) -> Platform {
        Platform {
            architecture: architecture.into(),
            os: os.into(),
            variant: None,
        }
    }

    /// The platforms a wasm artifact index is searched for by default, best first:
    /// `wasip2`, `wasip1`, then `wasi`, each with architecture `wasm` or `wasm32`.
    pub fn wasm_defaults() -> Vec<Platform> {
        ["wasip2", "wasip1", "wasi"]
            .into_iter()
            .flat_map(|os| ["wasm", "wasm32"].map(|arch| Platform::new(os, arch)))
            .collect()
    }

    fn matches(&self, wanted: &Platform) -> bool {
        self.os == wanted.os
            && self.architecture == wanted.architecture
            && (wanted.variant.is_none() || self.variant == wanted.variant)
    }
}

/// A platform as a registry wrote it may hold anything: it is shown escaped.
impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |s: &str| crate::untrusted::printable(s, 100);
        write!(f, "{}/{}", shown(&self.os), shown(&self.architecture))?;
        if let Some(v) = &self.variant {
            write!(f, "/{}", shown(v))?;
        }
        Ok(())
    }
}

/// An image manifest (OCI or Docker v2): a config and a list of layers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type, when it states one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The artifact type, for artifacts that are not container images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers, in order.
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to (signatures, SBOMs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image index (OCI) or manifest list (Docker): one manifest per platform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type, when it states one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The artifact type, for artifacts that are not container images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The child manifests.
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A manifest document of either kind.
#[derive(Clone, Debug, PartialEq, Eq)]
// One or two of these exist per pull; boxing would only make matching clumsier.
#[allow(clippy::large_enum_variant)]
pub enum Manifest {
    /// A manifest that lists layers.
    Image(ImageManifest),
    /// An index that lists manifests.
    Index(ImageIndex),
}

impl Manifest {
    /// Parses a manifest document. The kind comes from the document's own
    /// `mediaType`, else from `content_type` (the response's `Content-Type`), else
    /// from its shape (`manifests` → index, `layers` → manifest).
    ///
    /// # Errors
    /// Not JSON, a schema1 or unknown media type, a missing or mistyped required
    /// field, a malformed digest or media type, or a manifest without layers.
    pub fn from_slice(
        bytes: &[u8],
        content_type: Option<&str>,
    ) -> Result<Manifest, ParseManifestError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Probe {
            schema_version: Option<u32>,
            media_type: Option<String>,
            manifests: Option<serde_json::Value>,
            layers: Option<serde_json::Value>,
        }
        let probe: Probe = serde_json::from_slice(bytes).map_err(ParseManifestError::json)?;
        if probe.schema_version == Some(1) {
            return Err(ParseManifestError::new(ManifestErrorKind::Schema1));
        }
        let declared = probe
            .media_type
            .as_deref()
            .map(essence)
            .or_else(|| content_type.map(essence).filter(|c| is_manifest_type(c)));
        let is_index = match declared.as_deref() {
            Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => true,
            Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
            Some(t) if DOCKER_SCHEMA1.contains(&t) => {
                return Err(ParseManifestError::new(ManifestErrorKind::Schema1));
            }
            Some(t) => {
                return Err(ParseManifestError::new(
                    ManifestErrorKind::UnsupportedMediaType(t.to_owned()),
                ));
            }
            None => match (&probe.manifests, &probe.layers) {
                (Some(_), None) => true,
                (None, Some(_)) => false,
                _ => return Err(ParseManifestError::new(ManifestErrorKind::UnknownKind)),
            },
        };
        if is_index {
            let index: ImageIndex =
                serde_json::from_slice(bytes).map_err(ParseManifestError::json)?;
            check_count("manifests in the index", index.manifests.len())?;
            Ok(Manifest::Index(index))
        } else {
            let m: ImageManifest =
                serde_json::from_slice(bytes).map_err(ParseManifestError::json)?;
            if m.layers.is_empty() {
                return Err(ParseManifestError::new(ManifestErrorKind::NoLayers));
            }
            check_count("layers in the manifest", m.layers.len())?;
            Ok(Manifest::Image(m))
        }
    }
}

fn is_manifest_type(t: &str) -> bool {
    [
        OCI_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST,
        DOCKER_MANIFEST_LIST,
    ]
    .contains(&t)
        || DOCKER_SCHEMA1.contains(&t)
}

/// More entries than any artifact needs: a manifest within the size limit can
/// still list tens of thousands, and selection should not have to walk them.
pub const MAX_ENTRIES: usize = 1000;

fn check_count(what: &'static str, count: usize) -> Result<(), ParseManifestError> {
    if count > MAX_ENTRIES {
        return Err(ParseManifestError::new(ManifestErrorKind::TooManyEntries {
            what,
            count,
            limit: MAX_ENTRIES,
        }));
    }
    Ok(())
}

pub(crate) fn essence(media_type: &str) -> String {
    media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// A manifest document that cannot be used.
#[derive(Debug)]
pub struct ParseManifestError {
    kind: ManifestErrorKind,
    source: Option<serde_json::Error>,
}

impl ParseManifestError {
    fn new(kind: ManifestErrorKind) -> Self {
        ParseManifestError { kind, source: None }
    }

    fn json(e: serde_json::Error) -> Self {
        ParseManifestError {
            kind: ManifestErrorKind::Invalid,
            source: Some(e),
        }
    }

    pub(crate) fn nested_index() -> Self {
        ParseManifestError::new(ManifestErrorKind::NestedIndex)
    }

    /// What was wrong.
    pub fn kind(&self) -> &ManifestErrorKind {
        &self.kind
    }
}

impl fmt::Display for ParseManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.kind, &self.source) {
            // serde_json's message names the field and position; it is the whole story.
            (ManifestErrorKind::Invalid, Some(e)) => write!(f, "invalid manifest JSON: {e}"),
            (kind, _) => kind.fmt(f),
        }
    }
}

impl std::error::Error for ParseManifestError {}

/// The ways a manifest document can be unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManifestErrorKind {
    /// Not JSON, or a required field missing or of the wrong type.
    Invalid,
    /// A Docker schema 1 manifest, which registries stopped serving in 2020.
    Schema1,
    /// A media type that is neither an image manifest nor an index.
    UnsupportedMediaType(String),
    /// No media type and a shape that is neither manifest nor index.
    UnknownKind,
    /// An image manifest with an empty `layers` list.
    NoLayers,
    /// An index whose selected entry is itself an index.
    NestedIndex,
    /// More manifests or layers than [`MAX_ENTRIES`].
    TooManyEntries {
        /// What was counted.
        what: &'static str,
        /// How many there were.
        count: usize,
        /// The limit.
        limit: usize,
    },
}

impl fmt::Display for ManifestErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestErrorKind::Invalid => f.write_str("invalid manifest JSON"),
            ManifestErrorKind::Schema1 => {
                f.write_str("docker schema1 manifests are not supported; push the artifact again with a current tool")
            }
            ManifestErrorKind::UnsupportedMediaType(t) => {
                write!(f, "unsupported manifest media type `{t}`")
            }
            ManifestErrorKind::UnknownKind => {
                f.write_str("the document is neither an image manifest nor an index")
            }
            ManifestErrorKind::NoLayers => f.write_str("the manifest lists no layers"),
            ManifestErrorKind::TooManyEntries { what, count, limit } => {
                write!(f, "{count} {what}, more than the {limit} allowed")
            }
            ManifestErrorKind::NestedIndex => {
                f.write_str("the index entry for this platform is another index; nested indexes are not supported")
            }
        }
    }
}

/// RFC 6838 media type, as the image-spec schema checks it.
fn check_media_type(t: &str) -> Result<(), String> {
    let part_ok = |p: &str| {
        let b = p.as_bytes();
        !b.is_empty()
            && b.len() <= 127
            && b[0].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(c))
    };
    // Parameters (`; charset=utf-8`) are allowed after the type itself, as long
    // as they hold nothing a terminal would act on: media types end up in messages.
    let base = t.split(';').next().unwrap_or_default().trim_end();
    match base.split_once('/') {
        Some((ty, sub)) if part_ok(ty) && part_ok(sub) && crate::untrusted::is_printable(t) => {
            Ok(())
        }
        _ => Err(format!(
            "invalid media type `{}`",
            crate::untrusted::printable(t, 300)
        )),
    }
}

fn media_type<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    check_media_type(&s).map_err(serde::de::Error::custom)?;
    Ok(s)
}

fn opt_media_type<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    if let Some(t) = &s {
        check_media_type(t).map_err(serde::de::Error::custom)?;
    }
    Ok(s)
}

/// Each URL must at least be absolute: `scheme:` with the RFC 3986 scheme grammar.
fn opt_urls<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let urls = Option::<Vec<String>>::deserialize(d)?;
    for u in urls.iter().flatten() {
        let scheme_ok = u.split_once(':').is_some_and(|(scheme, _)| {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        });
        if !scheme_ok || u.contains(char::is_whitespace) {
            return Err(serde::de::Error::custom(format!(
                "`{u}` is not an absolute URL"
            )));
        }
    }
    Ok(urls)
}

/// Standard base64 with padding (RFC 4648 §4), as the schema requires.
fn opt_base64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let data = Option::<String>::deserialize(d)?;
    if let Some(s) = &data {
        let body = s.trim_end_matches('=');
        let padding = s.len() - body.len();
        let ok = s.len() % 4 == 0
            && padding <= 2
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
        if !ok {
            return Err(serde::de::Error::custom(
                "`data` is not padded standard base64",
            ));
        }
    }
    Ok(data)
}

/// The image-spec digest grammar, plus the length rules of the algorithms it
/// registers. Unknown algorithms pass: the spec says they SHOULD be accepted, and
/// only a descriptor we actually fetch must be sha256.
fn digest_grammar<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    let bad = || serde::de::Error::custom(format!("invalid digest `{s}`"));
    let (alg, enc) = s.split_once(':').ok_or_else(bad)?;
    let alg_ok = alg.split(['+', '.', '_', '-']).all(|c| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    let enc_ok = !enc.is_empty()
        && enc
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'));
    let hex_len = |n: usize| {
        enc.len() == n
            && enc
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let registered_ok = match alg {
        "sha256" => hex_len(64),
        "sha512" => hex_len(128),
        _ => true,
    };
    if alg_ok && enc_ok && registered_ok {
        Ok(s)
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema1_refused() {
        let e = Manifest::from_slice(br#"{"schemaVersion":1,"name":"x"}"#, None).unwrap_err();
        assert_eq!(e.kind(), &ManifestErrorKind::Schema1);
    }
}
