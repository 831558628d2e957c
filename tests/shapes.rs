//! The artifact shapes real tools publish (`tests/fixtures/shapes/*.json`, sources
//! in `tests/fixtures/SOURCES.md`), each pushed to a real `docker-registry` and
//! pulled with the options each case gives: the right bytes, or a refusal whose
//! typed error and message name the reason.
//!
//! A fixture names its blobs and describes each: `json`/`text` content, a
//! `wasm` module, a `tar` (optionally gzipped) of other blobs, or a `manifest`
//! whose descriptors say `"blob": NAME` where the digest and size go.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use common::registry::Registry;
use common::*;
use forge_oci::manifest::SelectError;
use forge_oci::{Error, ExtractError, LayerSelector, PullOptions};
use serde_json::Value;

/// The fixture's blobs, built: name -> bytes.
struct Built {
    blobs: BTreeMap<String, Vec<u8>>,
    /// Manifests and indexes, with their media types, in push order (children first).
    documents: Vec<(String, String)>,
}

fn build(name: &str, specs: &serde_json::Map<String, Value>, built: &mut Built) -> Vec<u8> {
    if let Some(b) = built.blobs.get(name) {
        return b.clone();
    }
    let spec = specs.get(name).unwrap_or_else(|| panic!("no blob {name}"));
    let bytes = if let Some(json) = spec.get("json") {
        serde_json::to_vec(json).unwrap()
    } else if let Some(text) = spec.get("text") {
        text.as_str().unwrap().as_bytes().to_vec()
    } else if let Some(seed) = spec.get("wasm") {
        wasm_payload(seed.as_str().unwrap(), 64 + seed.as_str().unwrap().len())
    } else if let Some(entries) = spec.get("tar") {
        let mut tar = tar::Builder::new(Vec::new());
        for e in entries.as_array().unwrap() {
            let path = e["path"].as_str().unwrap();
            let mut h = tar::Header::new_gnu();
            h.set_mtime(1_714_557_600);
            if e.get("dir").is_some() {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                tar.append_data(&mut h, path, &[][..]).unwrap();
            } else {
                let content = build(e["blob"].as_str().unwrap(), specs, built);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(content.len() as u64);
                tar.append_data(&mut h, path, &content[..]).unwrap();
            }
        }
        let tar = tar.into_inner().unwrap();
        if spec["gzip"].as_bool().unwrap() {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&tar).unwrap();
            gz.finish().unwrap()
        } else {
            tar
        }
    } else if let Some(doc) = spec.get("manifest") {
        let mut doc = doc.clone();
        fill(&mut doc, specs, built);
        let media_type = doc["mediaType"].as_str().unwrap_or(OCI_MANIFEST).to_owned();
        let bytes = serde_json::to_vec(&doc).unwrap();
        built.documents.push((name.to_owned(), media_type));
        bytes
    } else {
        panic!("blob {name}: unknown kind {spec}")
    };
    built.blobs.insert(name.to_owned(), bytes.clone());
    bytes
}

/// Replaces each `"blob": NAME` in a document with the blob's digest and size.
fn fill(v: &mut Value, specs: &serde_json::Map<String, Value>, built: &mut Built) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(name)) = map.remove("blob") {
                let bytes = build(&name, specs, built);
                map.insert("digest".into(), digest(&bytes).into());
                map.insert("size".into(), bytes.len().into());
            }
            for child in map.values_mut() {
                fill(child, specs, built);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| fill(i, specs, built)),
        _ => {}
    }
}

/// A name for the way `e` refuses, to compare with a fixture's `error`.
fn refusal_kind(e: &Error) -> String {
    match e {
        Error::NoMatch { reason, .. } => match reason {
            SelectError::SeveralLayers { .. } => "several-layers",
            SelectError::NoSuchLayer { .. } => "no-such-layer",
            SelectError::Application { .. } => "application",
            SelectError::ContainerImage { .. } => "container-image",
            SelectError::NoMatchingLayer { .. } => "no-matching-layer",
            SelectError::NoMatchingPlatform { .. } => "no-matching-platform",
            _ => "other select error",
        }
        .to_owned(),
        Error::Extract { reason, .. } => format!(
            "extract:{}",
            match **reason {
                ExtractError::SeveralModules { .. } => "several-modules",
                ExtractError::NoModule { .. } => "no-module",
                ExtractError::EntrypointMissing { .. } => "entrypoint-missing",
                ExtractError::Link { .. } => "link",
                ExtractError::UnsafePath { .. } => "unsafe-path",
                ExtractError::TooLarge { .. } => "too-large",
                ExtractError::TooManyEntries { .. } => "too-many-entries",
                _ => "other",
            }
        ),
        other => format!("unexpected: {other:?}"),
    }
}

fn run_fixture(registry: &Registry, file: &Path, work: &Path) -> usize {
    let stem = file.file_stem().unwrap().to_str().unwrap().to_owned();
    let fixture: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let specs = fixture["blobs"].as_object().unwrap();
    let mut built = Built {
        blobs: BTreeMap::new(),
        documents: Vec::new(),
    };
    for name in specs.keys() {
        build(name, specs, &mut built);
    }
    let repo = format!("shapes/{stem}");
    let top = fixture["top"].as_str().unwrap();
    for (name, bytes) in &built.blobs {
        if !built.documents.iter().any(|(d, _)| d == name) {
            registry.push_blob(&repo, bytes);
        }
    }
    for (name, media_type) in &built.documents {
        let bytes = &built.blobs[name];
        let at = if name == top {
            "t".to_owned()
        } else {
            digest(bytes)
        };
        registry.push_manifest_typed(&repo, &at, bytes, media_type);
    }
    let reference = format!("{}/{repo}:t", registry.host);
    let pulls = fixture["pulls"].as_array().unwrap();
    for (i, case) in pulls.iter().enumerate() {
        let what = format!("{stem} case {i} ({case})");
        let mut options = PullOptions::default();
        if let Some(types) = case.get("media_types") {
            options = options.media_types(
                types
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_owned()),
            );
        }
        if let Some(layer) = case.get("layer").and_then(Value::as_str) {
            let selector: LayerSelector = match layer.strip_prefix('@') {
                Some(blob) => digest(&built.blobs[blob]).parse().unwrap(),
                None => layer.parse().unwrap(),
            };
            options = options.layer(selector);
        }
        let cache = work.join(format!("{stem}-{i}"));
        let client = isolated(&registry.host, &cache).build().unwrap();
        let expect = &case["expect"];
        let result = client.pull_with(&reference, &options);
        if let Some(blob) = expect.get("blob").and_then(Value::as_str) {
            let artifact = result.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(artifact.read().unwrap(), built.blobs[blob], "{what}");
            let extracted = expect.get("extracted").is_some_and(|v| v == true);
            assert_eq!(artifact.extracted_module().is_some(), extracted, "{what}");
            assert_eq!(
                artifact.title(),
                expect.get("title").and_then(Value::as_str),
                "{what}"
            );
            // resolve and inspect agree with the pull.
            let resolution = client.resolve_with(&reference, &options).unwrap();
            assert_eq!(resolution.layer_digest(), artifact.layer_digest(), "{what}");
            assert_eq!(resolution.extracts_module(), extracted, "{what}");
            let inspection = client.inspect_with(&reference, &options).unwrap();
            let chosen = inspection.layer().chosen().unwrap();
            assert_eq!(chosen.digest, artifact.layer_digest().to_string(), "{what}");
        } else {
            let kind = expect["error"].as_str().unwrap();
            let e = match result {
                Ok(a) => panic!("{what}: expected {kind}, got {}", a.path().display()),
                Err(e) => e,
            };
            assert_eq!(refusal_kind(&e), kind, "{what}: {e}");
            let msg = e.to_string();
            for m in expect["mentions"].as_array().unwrap() {
                assert!(msg.contains(m.as_str().unwrap()), "{what}: {msg}");
            }
            assert!(
                msg.contains(&format!("shapes/{stem}")),
                "{what}: the error names the reference: {msg}"
            );
            if kind.starts_with("extract:") {
                // Nothing was stored for a module that could not be extracted.
                assert!(
                    !cache
                        .join(DERIVED)
                        .read_dir()
                        .is_ok_and(|mut d| d.next().is_some()),
                    "{what}"
                );
            } else {
                // inspect says why a pull takes nothing, rather than failing.
                let inspection = client.inspect_with(&reference, &options).unwrap();
                assert!(inspection.layer().chosen().is_none(), "{what}");
                assert!(
                    inspection.layer().explanation().contains(kind_word(kind)),
                    "{what}"
                );
            }
        }
    }
    pulls.len()
}

/// A word the explanation of a refusal of `kind` contains.
fn kind_word(kind: &str) -> &str {
    match kind {
        "several-layers" => "ambiguous",
        "no-such-layer" => "no layer has",
        "application" => "Spin application",
        "container-image" => "container image",
        _ => "accepted media type",
    }
}

#[test]
fn every_published_shape_gives_the_right_bytes_or_says_why_not() {
    let registry = match Registry::start() {
        Ok(r) => r,
        Err(why) => {
            return skip(
                "every_published_shape_gives_the_right_bytes_or_says_why_not",
                &why,
            );
        }
    };
    let work = tempfile::tempdir().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shapes");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut cases = 0;
    for file in &files {
        cases += run_fixture(&registry, file, work.path());
    }
    assert!(
        files.len() >= 12 && cases >= 25,
        "{} fixtures, {cases} cases",
        files.len()
    );
}
