//! forge-oci as a build-script dependency, built by a real cargo against Debian's
//! `docker-registry`, online then offline.
//!
//! Without `/usr/bin/docker-registry` (Debian package `docker-registry`) the test
//! is skipped with a loud message, except under CI, where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::registry::Registry;
use common::*;

/// `tests/build-script` is a crate whose build.rs calls `forge_oci::build`. Build
/// it with cargo against a real registry; stop the registry and build again with
/// CARGO_NET_OFFLINE=true (the build script reruns: the variable changed); then ask
/// for an uncached reference offline and read the error cargo shows. Last, the
/// air-gapped build: an empty cache, the registry gone, CARGO_NET_OFFLINE=true and
/// only the layout `Client::vendor` wrote while the registry was up.
#[test]
fn build_script_pulls_then_builds_offline() {
    let registry = match Registry::start() {
        Ok(r) => r,
        Err(why) => return skip("build_script_pulls_then_builds_offline", &why),
    };
    let payload = wasm_payload("built into a binary", 300_000);
    registry.push_wasm("plugins/build", "1.0", &payload);
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let krate = work.path().join("consumer");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    let manifest = std::fs::read_to_string(here.join("tests/build-script/Cargo.toml"))
        .unwrap()
        .replace(
            "path = \"../..\"",
            &format!("path = {:?}", here.display().to_string()),
        );
    std::fs::write(krate.join("Cargo.toml"), manifest).unwrap();
    for file in ["build.rs", "src/main.rs"] {
        std::fs::copy(here.join("tests/build-script").join(file), krate.join(file)).unwrap();
    }
    // Same dependency versions as forge-oci's own build, so nothing is resolved anew.
    std::fs::copy(here.join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();

    let cache = work.path().join("cache");
    let host = registry.host.clone();
    let vendored = krate.join("vendor/oci");
    let cargo_run = |reference: &str, offline: bool, layout: Option<&Path>| {
        // The script reads the reference from this file: a change to it must rerun
        // the script although it prints rerun-if-env-changed lines.
        // Written only when it changes: cargo compares modification times, and
        // the last run must rerun for the layout's sake alone.
        let file = krate.join("plugin.ref");
        if std::fs::read_to_string(&file).ok().as_deref() != Some(reference) {
            std::fs::write(&file, reference).unwrap();
        }
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["run", "--quiet"])
            .current_dir(&krate)
            // Its own target dir: ours is locked by the cargo running this test.
            .env("CARGO_TARGET_DIR", here.join("target/build-script-test"))
            .env("FORGE_OCI_INSECURE_HOSTS", &host)
            .env_remove("FORGE_OCI_MIRRORS")
            .env_remove("FORGE_OFFLINE");
        match layout {
            Some(dir) => cmd
                .env("FORGE_CACHE_DIR", work.path().join("empty-cache"))
                .env("FORGE_OCI_LAYOUTS", dir),
            None => cmd
                .env("FORGE_CACHE_DIR", &cache)
                .env_remove("FORGE_OCI_LAYOUTS"),
        };
        if offline {
            cmd.env("CARGO_NET_OFFLINE", "true");
        } else {
            cmd.env_remove("CARGO_NET_OFFLINE");
        }
        cmd.output().unwrap()
    };
    let checksum = payload.iter().fold(0u32, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(u32::from(*b))
    });
    let expected = format!("{} {checksum}\n", payload.len());

    let reference = format!("{}/plugins/build:1.0", registry.host);
    let online = cargo_run(&reference, false, None);
    assert!(
        online.status.success(),
        "online build failed:\n{}",
        String::from_utf8_lossy(&online.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&online.stdout), expected);

    client(&host, &work.path().join("vendoring-cache"))
        .vendor(&vendored, &[&reference])
        .unwrap();
    drop(registry);
    let offline = cargo_run(&reference, true, None);
    assert!(
        offline.status.success(),
        "offline build failed:\n{}",
        String::from_utf8_lossy(&offline.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&offline.stdout), expected);

    let missing = cargo_run(&format!("{host}/plugins/build:2.0"), true, None);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    for line in [
        format!("forge-oci could not fetch `{host}/plugins/build:2.0`"),
        "  error: ".to_owned(),
        "is not in the cache".to_owned(),
        "  help: build once with network access".to_owned(),
    ] {
        assert!(stderr.contains(&line), "missing {line:?} in:\n{stderr}");
    }

    let air_gapped = cargo_run(&reference, true, Some(&vendored));
    assert!(
        air_gapped.status.success(),
        "build from the vendored layout failed:\n{}",
        String::from_utf8_lossy(&air_gapped.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&air_gapped.stdout), expected);
    let copied = work.path().join("empty-cache/openapi-forge/plugins");
    assert_eq!(
        verified_blobs(&copied).len(),
        2,
        "the plugin and its manifest were copied into the cache from the layout"
    );

    // Vendored again after the tag moved (written here by hand: the registry is
    // gone). Cargo must rerun the script, and the layout's new digest must win
    // over the one the cache recorded for the tag.
    let moved = wasm_payload("the tag moved", 200_000);
    let m = common::manifest(&[(WASM, &moved)]);
    for blob in [&m[..], &moved[..]] {
        let hex = digest(blob).trim_start_matches("sha256:").to_owned();
        std::fs::write(vendored.join("blobs/sha256").join(hex), blob).unwrap();
    }
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": digest(&m), "size": m.len(),
        "annotations": {"org.opencontainers.image.ref.name": &reference,
                        "io.containerd.image.name": &reference}}]});
    std::fs::write(
        vendored.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    let revendored = cargo_run(&reference, true, Some(&vendored));
    assert!(
        revendored.status.success(),
        "build after vendoring again failed:\n{}",
        String::from_utf8_lossy(&revendored.stderr)
    );
    let moved_sum = moved.iter().fold(0u32, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(u32::from(*b))
    });
    assert_eq!(
        String::from_utf8_lossy(&revendored.stdout),
        format!("{} {moved_sum}\n", moved.len()),
        "the script reran and took the layout's new digest for the tag"
    );
}
