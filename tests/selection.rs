//! Which manifest of an index and which layer of a manifest a pull takes, against
//! the fake registry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::server::FakeRegistry;
use common::*;
use forge_oci::Error;

const REPO: &str = "test/repo";

#[test]
fn index_resolves_to_the_wasm_platform() {
    let server = FakeRegistry::start();
    let wasm = wasm_payload("component", 3000);
    let linux = b"ELF for amd64".to_vec();
    let wasm_manifest = manifest(&[(WASM, &wasm)]);
    let linux_manifest = manifest(&[("application/vnd.oci.image.layer.v1.tar", &linux)]);
    let idx = index(&[
        (&linux_manifest, "linux", "amd64"),
        (&wasm_manifest, "wasip2", "wasm"),
    ]);
    server.manifest(REPO, "multi", &idx, OCI_INDEX);
    let child = server.manifest(REPO, &digest(&wasm_manifest), &wasm_manifest, OCI_MANIFEST);
    let other = server.manifest(
        REPO,
        &digest(&linux_manifest),
        &linux_manifest,
        OCI_MANIFEST,
    );
    server.blob(REPO, &wasm);
    let cache = tempfile::tempdir().unwrap();
    let host = server.host().to_owned();

    let a = client(&host, cache.path())
        .pull(&format!("{host}/{REPO}:multi"))
        .unwrap();
    assert_eq!(a.read().unwrap(), wasm);
    assert_eq!(
        a.manifest_digest().to_string(),
        digest(&idx),
        "the reference resolved to the index"
    );
    assert_eq!(server.hits("GET", &child), 1);
    assert_eq!(server.hits("GET", &other), 0);

    // From the cache too, with the registry gone: the index and its child were stored.
    drop(server);
    let b = client(&host, cache.path())
        .pull(&format!("{host}/{REPO}:multi"))
        .unwrap();
    assert!(b.from_cache());
    assert_eq!(b.read().unwrap(), wasm);
}

#[test]
fn layer_selection_prefers_the_accepted_list_and_falls_back_to_a_single_layer() {
    let server = FakeRegistry::start();
    let host = server.host().to_owned();
    let component = wasm_payload("component", 300);
    let module = wasm_payload("module", 300);
    let two = manifest(&[
        (WASM, &module),
        (
            "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
            &component,
        ),
    ]);
    server.manifest(REPO, "two", &two, OCI_MANIFEST);
    server.blob(REPO, &component);
    let other = b"not wasm, but the only layer".to_vec();
    let single = manifest(&[("application/x-custom", &other)]);
    server.manifest(REPO, "single", &single, OCI_MANIFEST);
    server.blob(REPO, &other);
    let none = manifest(&[("text/plain", b"a"), ("application/x-tar", b"b")]);
    server.manifest(REPO, "none", &none, OCI_MANIFEST);
    let cache = tempfile::tempdir().unwrap();
    let c = client(&host, cache.path());

    assert_eq!(
        c.pull(&format!("{host}/{REPO}:two"))
            .unwrap()
            .read()
            .unwrap(),
        component
    );
    assert_eq!(
        c.pull(&format!("{host}/{REPO}:single"))
            .unwrap()
            .read()
            .unwrap(),
        other
    );
    let err = c.pull(&format!("{host}/{REPO}:none")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::NoMatch { .. }), "{err:?}");
    assert!(
        msg.contains("text/plain") && msg.contains("application/x-tar"),
        "{msg}"
    );
}
