//! Interoperability with skopeo, both ways, against Debian's `docker-registry`:
//! what `forge-oci vendor` writes skopeo reads and copies to a registry (a pull of
//! the copy gives identical bytes), and what `skopeo copy ... oci:DIR:REF` writes
//! forge-oci reads offline with the registry stopped.
//!
//! Without `skopeo` or `docker-registry` the test is skipped loudly, except under CI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::registry::Registry;
use common::*;

const FORGE: &str = env!("CARGO_BIN_EXE_forge-oci");

fn skopeo(args: &[&str]) -> Output {
    // No signature policy file is needed (a fresh machine may have none).
    Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .unwrap()
}

fn forge(args: &[&str], cache: &Path) -> Output {
    Command::new(FORGE)
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .env_remove("FORGE_OCI_MIRRORS")
        .env_remove("FORGE_OCI_LAYOUTS")
        .env("DOCKER_CONFIG", cache.join("no-docker-config"))
        .env("REGISTRY_AUTH_FILE", cache.join("no-auth.json"))
        .output()
        .unwrap()
}

/// Pushes `payload` as a wasm layer under an image config (which `skopeo inspect`
/// can describe); returns the manifest.
fn push_image(registry: &Registry, repo: &str, tag: &str, payload: &[u8]) -> Vec<u8> {
    let config =
        br#"{"architecture":"wasm","os":"wasip1","rootfs":{"type":"layers","diff_ids":[]}}"#;
    registry.push_blob(repo, config);
    registry.push_blob(repo, payload);
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": config.len()},
        "layers": [{"mediaType": WASM, "digest": digest(payload), "size": payload.len()}],
    }))
    .unwrap();
    registry.push_manifest(repo, tag, &m);
    m
}

#[test]
fn skopeo_reads_vendored_layouts_and_forge_oci_reads_skopeos() {
    if Command::new("skopeo").arg("--version").output().is_err() {
        return skip(
            "skopeo_reads_vendored_layouts_and_forge_oci_reads_skopeos",
            "skopeo is not installed (apt-get install -y skopeo)",
        );
    }
    let registry = match Registry::start() {
        Ok(r) => r,
        Err(why) => return skip("skopeo_reads_vendored_layouts", &why),
    };
    let host = registry.host.clone();
    let image_payload = wasm_payload("an image skopeo can describe", 40_000);
    let image = push_image(&registry, "plugins/img", "v1", &image_payload);
    let payload = wasm_payload("an artifact", 50_000);
    let artifact = registry.push_wasm("plugins/art", "v1", &payload);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("vendor");
    let img_ref = format!("{host}/plugins/img:v1");
    let art_ref = format!("{host}/plugins/art:v1");

    let out = forge(
        &[
            "vendor",
            "--to",
            dir.to_str().unwrap(),
            "--insecure",
            &host,
            &img_ref,
            &art_ref,
        ],
        &work.path().join("c0"),
    );
    let listed = String::from_utf8(succeeded(&out).to_vec()).unwrap();
    assert!(
        listed.contains(&format!("{art_ref} {}", digest(&artifact))),
        "{listed}"
    );

    // skopeo reads the layout: the image described, the artifact's raw manifest.
    let layout = |r: &str| format!("oci:{}:{r}", dir.display());
    let inspected: serde_json::Value =
        serde_json::from_slice(succeeded(&skopeo(&["inspect", &layout(&img_ref)]))).unwrap();
    assert_eq!(inspected["Digest"], digest(&image).as_str());
    assert_eq!(inspected["Os"], "wasip1");
    assert_eq!(
        succeeded(&skopeo(&["inspect", "--raw", &layout(&art_ref)])),
        &artifact[..]
    );

    // skopeo copies the vendored artifact to the registry; forge-oci pulls the copy.
    let copy = format!("{host}/copied/art:v1");
    succeeded(&skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &layout(&art_ref),
        &format!("docker://{copy}"),
    ]));
    let out = forge(
        &["pull", "--insecure", &host, &copy, "-o", "-"],
        &work.path().join("c1"),
    );
    assert_eq!(
        succeeded(&out),
        &payload[..],
        "the copy pulls identical bytes"
    );

    // skopeo writes a layout from the registry; forge-oci reads it offline.
    let theirs = work.path().join("skopeo-layout");
    succeeded(&skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{art_ref}"),
        &format!("oci:{}:{art_ref}", theirs.display()),
    ]));
    drop(registry);
    let out = forge(
        &[
            "pull",
            "--offline",
            "--layout",
            theirs.to_str().unwrap(),
            &art_ref,
            "-o",
            "-",
        ],
        &work.path().join("c2"),
    );
    assert_eq!(succeeded(&out), &payload[..]);
}
