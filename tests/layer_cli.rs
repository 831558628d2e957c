//! The CLI side of layer choice: `--layer`, the layer's title in `--json`, what
//! `inspect` says a pull would take, and the date `cache ls` prints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Output;

use common::server::{FakeRegistry, Route};
use common::*;

const REPO: &str = "team/plugins";

fn cli(cache: &Path, host: &str, args: &[&str]) -> Output {
    cli_command(cache, host, args).output().unwrap()
}

/// Serves `repo:two`: an oras-style artifact with two titled `application/wasm` layers.
fn two_layers(server: &FakeRegistry, a: &[u8], b: &[u8]) {
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest(EMPTY_CONFIG), "size": 2},
        "layers": [
            {"mediaType": WASM, "digest": digest(a), "size": a.len(),
             "annotations": {"org.opencontainers.image.title": "a.wasm"}},
            {"mediaType": WASM, "digest": digest(b), "size": b.len(),
             "annotations": {"org.opencontainers.image.title": "b.wasm"}},
        ],
    }))
    .unwrap();
    let doc = Route::ok(m.clone())
        .header("content-type", OCI_MANIFEST)
        .header("docker-content-digest", &digest(&m));
    server.route(&format!("/v2/{REPO}/manifests/two"), doc.clone());
    server.route(&format!("/v2/{REPO}/manifests/{}", digest(&m)), doc);
    for blob in [a, b] {
        server.route(
            &format!("/v2/{REPO}/blobs/{}", digest(blob)),
            Route::ok(blob.to_vec()),
        );
    }
}

#[test]
fn layer_picks_one_of_two_and_json_names_its_title() {
    let server = FakeRegistry::start();
    let (a, b) = (wasm_payload("a", 500), wasm_payload("b", 700));
    two_layers(&server, &a, &b);
    let cache = tempfile::tempdir().unwrap();
    let reference = format!("{}/{REPO}:two", server.host());

    let refused = cli(cache.path(), server.host(), &["pull", &reference, "-q"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("a.wasm") && stderr.contains("b.wasm") && stderr.contains("--layer"),
        "{stderr}"
    );

    let out = cli(
        cache.path(),
        server.host(),
        &["pull", &reference, "--layer", "b.wasm", "--json", "-q"],
    );
    let json: serde_json::Value = serde_json::from_slice(succeeded(&out)).unwrap();
    assert_eq!(json["title"], "b.wasm");
    assert_eq!(std::fs::read(json["path"].as_str().unwrap()).unwrap(), b);

    let by_digest = digest(&a);
    let out = cli(
        cache.path(),
        server.host(),
        &["resolve", &reference, "--layer", &by_digest, "--json"],
    );
    let json: serde_json::Value = serde_json::from_slice(succeeded(&out)).unwrap();
    assert_eq!(json["title"], "a.wasm");
    assert_eq!(json["layer_digest"], by_digest);
    assert_eq!(json["reason"], "chosen");
}

#[test]
fn inspect_says_which_layer_a_pull_takes_and_why_or_why_none() {
    let server = FakeRegistry::start();
    let (a, b) = (wasm_payload("a", 500), wasm_payload("b", 700));
    two_layers(&server, &a, &b);
    let cache = tempfile::tempdir().unwrap();
    let reference = format!("{}/{REPO}:two", server.host());

    let out = cli(cache.path(), server.host(), &["inspect", &reference]);
    let json: serde_json::Value = serde_json::from_slice(succeeded(&out)).unwrap();
    let layer = &json["layer"];
    assert!(layer.get("chosen").is_none(), "{layer}");
    let why = layer["explanation"].as_str().unwrap();
    assert!(why.contains("ambiguous") && why.contains("a.wasm"), "{why}");

    let out = cli(
        cache.path(),
        server.host(),
        &["inspect", &reference, "--layer", "a.wasm"],
    );
    let json: serde_json::Value = serde_json::from_slice(succeeded(&out)).unwrap();
    let layer = &json["layer"];
    assert_eq!(layer["chosen"]["title"], "a.wasm");
    assert_eq!(layer["chosen"]["digest"], digest(&a));
    assert_eq!(layer["reason"], "chosen");
    assert_eq!(layer["extracts_module"], false);
}

#[test]
fn cache_ls_prints_the_utc_date_each_entry_was_resolved() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("dated", 300);
    server.artifact(REPO, "1.0", &payload, |r| r);
    let cache = tempfile::tempdir().unwrap();
    let reference = format!("{}/{REPO}:1.0", server.host());
    succeeded(&cli(
        cache.path(),
        server.host(),
        &["pull", &reference, "-q"],
    ));

    // Set the ref's time to a known instant: the date printed is that one.
    let ref_file = std::fs::read_dir(cache.path().join("refs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join(REPO)
        .join("_tags")
        .join("1.0");
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_709_251_199);
    std::fs::File::options()
        .append(true)
        .open(&ref_file)
        .unwrap()
        .set_modified(when)
        .unwrap();
    let out = cli(cache.path(), server.host(), &["cache", "ls"]);
    let text = String::from_utf8(succeeded(&out).to_vec()).unwrap();
    assert!(text.contains("resolved 2024-02-29T23:59:59Z ("), "{text}");
    let out = cli(cache.path(), server.host(), &["cache", "ls", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(succeeded(&out)).unwrap();
    assert_eq!(json[0]["resolved_at_utc"], "2024-02-29T23:59:59Z");
    assert_eq!(json[0]["resolved_at"], 1_709_251_199);
}
