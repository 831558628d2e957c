//! Hostile and flaky registries: each test scripts one bad behaviour and checks
//! that the pull ends in a typed error (or the right bytes), in bounded time, with
//! nothing under `blobs/` that does not hash to its name and no panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::server::{FakeRegistry, Route};
use common::*;
use forge_oci::manifest::ManifestErrorKind;
use forge_oci::manifest::Platform;
use forge_oci::{Artifact, Credentials, Error, TokenFailure, UrlRefusal, VerifyError};

const REPO: &str = "hostile/plugin";

/// Pulls `REPO:tag` with short timeouts and one retry; returns the result, the cache,
/// and checks the invariants every case shares.
fn pull(server: &FakeRegistry, reference: &str) -> (Result<Artifact, Error>, tempfile::TempDir) {
    pull_with(server, reference, |b| b)
}

fn pull_with(
    server: &FakeRegistry,
    reference: &str,
    configure: impl FnOnce(forge_oci::ClientBuilder) -> forge_oci::ClientBuilder,
) -> (Result<Artifact, Error>, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    let builder = isolated(server.host(), cache.path())
        .retries(1)
        .connect_timeout(Duration::from_secs(2))
        .read_timeout(Duration::from_secs(1));
    let client = configure(builder).build().unwrap();
    let started = Instant::now();
    let result = client.pull(reference);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    verified_blobs(cache.path()); // panics on any file that does not hash to its name
    if result.is_err() {
        assert!(
            !cache.path().join("refs").exists(),
            "a failed pull recorded a ref"
        );
    }
    (result, cache)
}

fn reference(server: &FakeRegistry, tag: &str) -> String {
    format!("{}/{REPO}:{tag}", server.host())
}

/// Serves a manifest for `payload` under `tag`, and `blob` as its blob.
fn serve(server: &FakeRegistry, tag: &str, payload: &[u8], blob: Route) -> Vec<u8> {
    let m = manifest(&[(WASM, payload)]);
    server.route(
        &format!("/v2/{REPO}/manifests/{tag}"),
        Route::ok(m.clone()).header("content-type", OCI_MANIFEST),
    );
    server.route(&format!("/v2/{REPO}/blobs/{}", digest(payload)), blob);
    m
}

fn serve_manifest(server: &FakeRegistry, tag: &str, body: impl Into<Vec<u8>>) {
    server.route(
        &format!("/v2/{REPO}/manifests/{tag}"),
        Route::ok(body).header("content-type", OCI_MANIFEST),
    );
}

fn blob_error(result: &Result<Artifact, Error>) -> Option<&VerifyError> {
    match result {
        Err(Error::Verification {
            what: "blob",
            reason,
            ..
        }) => Some(reason),
        _ => None,
    }
}

fn manifest_error(result: &Result<Artifact, Error>) -> Option<&ManifestErrorKind> {
    match result {
        Err(Error::InvalidManifest { reason, .. }) => Some(reason.kind()),
        _ => None,
    }
}

// 1
#[test]
fn wrong_digest() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("right", 5000);
    let wrong = wasm_payload("wrong", 5000);
    serve(&server, "t", &payload, Route::ok(wrong.clone()));
    let (r, cache) = pull(&server, &reference(&server, "t"));
    match blob_error(&r) {
        Some(VerifyError::DigestMismatch { expected, actual }) => {
            assert_eq!(expected.to_string(), digest(&payload));
            assert_eq!(actual.to_string(), digest(&wrong));
        }
        _ => panic!("expected a blob digest mismatch, got {r:?}"),
    }
    assert!(
        verified_blobs(cache.path()).is_empty(),
        "nothing may be committed"
    );
    assert_eq!(
        temp_files(cache.path()),
        0,
        "the partial download is removed"
    );
}

// 2
#[test]
fn short_body_then_connection_closed() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("short", 50_000);
    serve(
        &server,
        "t",
        &payload,
        Route::ok(payload.clone()).cut_after(10_000),
    );
    let (r, cache) = pull(&server, &reference(&server, "t"));
    assert!(matches!(r, Err(Error::Transport { .. })), "{r:?}");
    assert_eq!(
        server.hits("GET", &format!("/v2/{REPO}/blobs/{}", digest(&payload))),
        2,
        "retried once"
    );
    assert!(verified_blobs(cache.path()).is_empty());
}

// 3
#[test]
fn body_longer_than_the_descriptor() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("long", 5000);
    let mut longer = payload.clone();
    longer.extend_from_slice(&[0; 100]);
    serve(&server, "t", &payload, Route::ok(longer));
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert!(
        matches!(
            blob_error(&r),
            Some(VerifyError::TooLong { expected: 5000 })
        ),
        "{r:?}"
    );
}

// 4
#[test]
fn content_length_smaller_than_the_body() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("cl-small", 5000);
    serve(
        &server,
        "t",
        &payload,
        Route::ok(payload.clone()).content_length(1000),
    );
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert!(
        matches!(
            blob_error(&r),
            Some(VerifyError::TooShort {
                expected: 5000,
                actual: 1000
            })
        ),
        "{r:?}"
    );
}

// 5
#[test]
fn content_length_larger_than_the_body() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("cl-large", 5000);
    serve(
        &server,
        "t",
        &payload,
        Route::ok(payload.clone()).content_length(9000),
    );
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    // The body ends before its announced length, but every byte of the blob came
    // and verifies: the blob is kept, without asking again.
    assert_eq!(r.unwrap().read().unwrap(), payload);
    assert_eq!(
        server.hits("GET", &format!("/v2/{REPO}/blobs/{}", digest(&payload))),
        1
    );
}

// 6
#[test]
fn descriptor_size_lies() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("size-lie", 5000);
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"a/b","digest":"{}","size":2}},"layers":[{{"mediaType":"{WASM}","digest":"{}","size":10}}]}}"#,
        digest(EMPTY_CONFIG),
        digest(&payload)
    );
    serve_manifest(&server, "t", m);
    server.route(
        &format!("/v2/{REPO}/blobs/{}", digest(&payload)),
        Route::ok(payload),
    );
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert!(
        matches!(blob_error(&r), Some(VerifyError::TooLong { expected: 10 })),
        "{r:?}"
    );
}

// 7
#[test]
fn negative_size() {
    let server = FakeRegistry::start();
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"a/b","digest":"{}","size":2}},"layers":[{{"mediaType":"{WASM}","digest":"{}","size":-1}}]}}"#,
        digest(EMPTY_CONFIG),
        digest(b"x")
    );
    serve_manifest(&server, "t", m);
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert!(
        matches!(manifest_error(&r), Some(ManifestErrorKind::Invalid)),
        "{r:?}"
    );
}

// 8
#[test]
fn absurd_size_is_read_only_as_far_as_the_body_goes() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("absurd", 3000);
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"a/b","digest":"{}","size":2}},"layers":[{{"mediaType":"{WASM}","digest":"{}","size":18000000000000000000}}]}}"#,
        digest(EMPTY_CONFIG),
        digest(&payload)
    );
    serve_manifest(&server, "t", m);
    server.route(
        &format!("/v2/{REPO}/blobs/{}", digest(&payload)),
        Route::ok(payload),
    );
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert!(
        matches!(
            blob_error(&r),
            Some(VerifyError::TooShort { actual: 3000, .. })
        ),
        "{r:?}"
    );
}

// 9
#[test]
fn manifest_that_is_not_json() {
    let server = FakeRegistry::start();
    serve_manifest(&server, "t", "this is not json {");
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert!(
        matches!(manifest_error(&r), Some(ManifestErrorKind::Invalid)),
        "{r:?}"
    );
    let err = r.unwrap_err();
    assert!(err.to_string().contains(&reference(&server, "t")), "{err}");
}

// 10
#[test]
fn html_error_page_with_status_200() {
    let server = FakeRegistry::start();
    let html = "<!DOCTYPE html><html><body>Service temporarily unavailable</body></html>";
    serve_manifest(&server, "t", html);
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert!(
        matches!(manifest_error(&r), Some(ManifestErrorKind::Invalid)),
        "{r:?}"
    );
    // The same page served as a blob never becomes content.
    let payload = wasm_payload("html", 1000);
    serve(
        &server,
        "b",
        &payload,
        Route::ok(html).header("content-type", "text/html"),
    );
    let (r, _cache) = pull(&server, &reference(&server, "b"));
    assert!(blob_error(&r).is_some(), "{r:?}");
}

// 11
#[test]
fn docker_content_digest_mismatch() {
    let server = FakeRegistry::start();
    let m = manifest(&[(WASM, b"x")]);
    let lie = digest(b"other");
    server.route(
        &format!("/v2/{REPO}/manifests/t"),
        Route::ok(m.clone())
            .header("content-type", OCI_MANIFEST)
            .header("docker-content-digest", &lie),
    );
    let (r, cache) = pull(&server, &reference(&server, "t"));
    match &r {
        Err(Error::Verification {
            what: "manifest",
            expected,
            ..
        }) => assert_eq!(expected.to_string(), lie),
        other => panic!("expected a manifest mismatch, got {other:?}"),
    }
    assert!(verified_blobs(cache.path()).is_empty());
    // Absent or empty, the header is tolerated.
    serve_manifest(&server, "absent", m.clone());
    server.route(
        &format!("/v2/{REPO}/manifests/empty"),
        Route::ok(m)
            .header("content-type", OCI_MANIFEST)
            .header("docker-content-digest", ""),
    );
    server.route(
        &format!("/v2/{REPO}/blobs/{}", digest(b"x")),
        Route::ok("x"),
    );
    for tag in ["absent", "empty"] {
        let (r, _cache) = pull(&server, &reference(&server, tag));
        assert_eq!(r.unwrap().read().unwrap(), b"x", "{tag}");
    }
}

// 12
#[test]
fn index_without_a_wasm_platform() {
    let server = FakeRegistry::start();
    let child = manifest(&[("application/vnd.oci.image.layer.v1.tar", b"x")]);
    serve_manifest(
        &server,
        "t",
        index(&[(&child, "linux", "amd64"), (&child, "linux", "arm64")]),
    );
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert!(matches!(r, Err(Error::NoMatch { .. })), "{r:?}");
    // The error names what the index offers and what was looked for.
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("linux/amd64") && msg.contains("linux/arm64") && msg.contains("wasip2/wasm"),
        "{msg}"
    );
    // A client configured for linux/arm64 picks that entry.
    server.route(
        &format!("/v2/{REPO}/manifests/{}", digest(&child)),
        Route::ok(child).header("content-type", OCI_MANIFEST),
    );
    server.route(
        &format!("/v2/{REPO}/blobs/{}", digest(b"x")),
        Route::ok("x"),
    );
    let (r, _cache) = pull_with(&server, &reference(&server, "t"), |b| {
        b.platforms([Platform::new("linux", "arm64")])
    });
    assert_eq!(r.unwrap().read().unwrap(), b"x");
}

// 13
#[test]
fn index_that_points_to_an_index() {
    let server = FakeRegistry::start();
    // The child the index names is served as an index itself (which could name the first).
    let inner = index(&[(b"nothing", "wasip2", "wasm")]);
    let outer = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": digest(&inner), "size": inner.len(), "platform": {"os": "wasip2", "architecture": "wasm"}}
    ]}))
    .unwrap();
    serve_manifest(&server, "t", outer);
    server.route(
        &format!("/v2/{REPO}/manifests/{}", digest(&inner)),
        Route::ok(inner).header("content-type", OCI_INDEX),
    );
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert!(
        matches!(manifest_error(&r), Some(ManifestErrorKind::NestedIndex)),
        "{r:?}"
    );
}

/// A registry behind a token service at `/token` answering with `token_route`.
fn behind_tokens(server: &FakeRegistry, token_route: Route) -> Vec<u8> {
    let payload = wasm_payload("tokens", 1000);
    let challenge = format!(
        r#"Bearer realm="http://{}/token",service="s""#,
        server.host()
    );
    let m = manifest(&[(WASM, &payload)]);
    server.route(
        &format!("/v2/{REPO}/manifests/t"),
        Route::ok("")
            .status(401)
            .header("www-authenticate", &challenge)
            .then(Route::ok(m).header("content-type", OCI_MANIFEST)),
    );
    server.route(
        &format!("/v2/{REPO}/blobs/{}", digest(&payload)),
        Route::ok(payload.clone()),
    );
    server.route("/token", token_route);
    payload
}

// 14
#[test]
fn huge_token_response() {
    let server = FakeRegistry::start();
    behind_tokens(
        &server,
        Route::ok(format!(r#"{{"token":"{}"}}"#, "a".repeat(200 << 10))),
    );
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert!(
        matches!(
            &r,
            Err(Error::Token {
                reason: TokenFailure::TooLarge { .. },
                ..
            })
        ),
        "{r:?}"
    );
}

// 15
#[test]
fn token_without_expiry_works() {
    let server = FakeRegistry::start();
    let payload = behind_tokens(&server, Route::ok(r#"{"token":"no-expiry"}"#));
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert_eq!(r.unwrap().read().unwrap(), payload);
}

// 16
#[test]
fn a_401_after_a_fresh_token_is_final() {
    let server = FakeRegistry::start();
    let challenge = format!(
        r#"Bearer realm="http://{}/token",service="s""#,
        server.host()
    );
    server.route(
        &format!("/v2/{REPO}/manifests/t"),
        Route::ok(r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#)
            .status(401)
            .header("www-authenticate", &challenge),
    );
    server.route("/token", Route::ok(r#"{"token":"useless"}"#));
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    match &r {
        Err(Error::Unauthorized {
            reference: named,
            detail,
            ..
        }) => {
            assert_eq!(named, &reference(&server, "t"));
            assert!(
                detail
                    .as_deref()
                    .unwrap_or_default()
                    .contains("UNAUTHORIZED"),
                "{detail:?}"
            );
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert_eq!(server.hits("GET", "/token"), 1);
    assert_eq!(server.hits("GET", &format!("/v2/{REPO}/manifests/t")), 2);
}

// 17
#[test]
fn error_500_forever_gives_up_after_the_retries() {
    let server = FakeRegistry::start();
    server.route(
        &format!("/v2/{REPO}/manifests/t"),
        Route::ok("oops").status(500),
    );
    let (r, _cache) = pull_with(&server, &reference(&server, "t"), |b| b.retries(2));
    assert!(
        matches!(r, Err(Error::Registry { status: 500, .. })),
        "{r:?}"
    );
    assert_eq!(server.hits("GET", &format!("/v2/{REPO}/manifests/t")), 3);
}

// 18
#[test]
fn error_429_with_retry_after_is_waited_out() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("rate limited", 1000);
    let m = serve(&server, "t", &payload, Route::ok(payload.clone()));
    server.route(
        &format!("/v2/{REPO}/manifests/t"),
        Route::ok("You have reached your pull rate limit.")
            .status(429)
            .header("retry-after", "1")
            .then(Route::ok(m).header("content-type", OCI_MANIFEST)),
    );
    let started = Instant::now();
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert_eq!(r.unwrap().read().unwrap(), payload);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After was not honoured"
    );
}

// 19
#[test]
fn headers_trickled_slower_than_the_timeout() {
    let server = FakeRegistry::start();
    let m = manifest(&[(WASM, b"x")]);
    server.route(
        &format!("/v2/{REPO}/manifests/t"),
        Route::ok(m)
            .header("content-type", OCI_MANIFEST)
            .trickle_headers(Duration::from_millis(40)),
    );
    let (r, _cache) = pull_with(&server, &reference(&server, "t"), |b| b.retries(0));
    assert!(matches!(r, Err(Error::Transport { .. })), "{r:?}");
}

// 20
#[test]
fn body_that_stalls() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("stall", 50_000);
    serve(
        &server,
        "t",
        &payload,
        Route::ok(payload.clone()).stall_after(1000),
    );
    let (r, cache) = pull_with(&server, &reference(&server, "t"), |b| b.retries(0));
    assert!(matches!(r, Err(Error::Transport { .. })), "{r:?}");
    assert!(verified_blobs(cache.path()).is_empty());
}

// 21
#[test]
fn redirect_loop() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("loop", 1000);
    let blob = format!("/v2/{REPO}/blobs/{}", digest(&payload));
    serve(
        &server,
        "t",
        &payload,
        Route::ok("").status(302).header("location", &blob),
    );
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert!(
        matches!(&r, Err(Error::Registry { detail: Some(d), .. }) if d.contains("redirects")),
        "{r:?}"
    );
}

// 22
#[test]
fn redirect_to_a_non_http_url() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("file", 1000);
    serve(
        &server,
        "t",
        &payload,
        Route::ok("")
            .status(307)
            .header("location", "file:///etc/passwd"),
    );
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert!(
        matches!(
            &r,
            Err(Error::RefusedUrl {
                what: "redirect target",
                reason: UrlRefusal::NotHttp,
                ..
            })
        ),
        "{r:?}"
    );
}

// 23
#[test]
fn a_redirect_without_location_is_not_content() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("no location", 1000);
    serve(
        &server,
        "t",
        &payload,
        Route::ok("<html>Redirecting…</html>").status(302),
    );
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert!(
        matches!(r, Err(Error::Registry { status: 302, .. })),
        "{r:?}"
    );
}

// 24
#[test]
fn quay_style_html_redirect_body_is_followed_not_stored() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("quay", 1000);
    serve(
        &server,
        "t",
        &payload,
        Route::ok("<html><body>Redirecting…</body></html>")
            .status(302)
            .header("location", "/storage/blob"),
    );
    server.route("/storage/blob", Route::ok(payload.clone()));
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert_eq!(r.unwrap().read().unwrap(), payload);
}

// 25
#[test]
fn digests_and_tags_that_look_like_path_traversal() {
    let server = FakeRegistry::start();
    for bad in [
        format!("{}/../../etc/passwd:1", server.host()),
        format!("{}/{REPO}:..", server.host()),
        format!("{}/{REPO}@sha256:../../../../etc/passwd", server.host()),
    ] {
        let (r, cache) = pull(&server, &bad);
        assert!(matches!(r, Err(Error::InvalidReference(_))), "{bad}: {r:?}");
        assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
    }
    // A descriptor whose digest tries the same is refused when the manifest is read.
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"a/b","digest":"{}","size":2}},"layers":[{{"mediaType":"{WASM}","digest":"sha256:../../../../tmp/owned","size":1}}]}}"#,
        digest(EMPTY_CONFIG)
    );
    serve_manifest(&server, "t", m);
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert!(
        matches!(manifest_error(&r), Some(ManifestErrorKind::Invalid)),
        "{r:?}"
    );
}

// 26
#[test]
fn duplicate_layers() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("dup", 1000);
    let m = manifest(&[(WASM, &payload), (WASM, &payload)]);
    serve_manifest(&server, "t", m);
    server.route(
        &format!("/v2/{REPO}/blobs/{}", digest(&payload)),
        Route::ok(payload.clone()),
    );
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert_eq!(r.unwrap().read().unwrap(), payload);
}

// 27
#[test]
fn zero_size_blob() {
    let server = FakeRegistry::start();
    serve(&server, "t", b"", Route::ok(Vec::new()));
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    let a = r.unwrap();
    assert_eq!(a.size(), 0);
    assert_eq!(a.read().unwrap(), b"");
}

// 28
#[test]
fn a_layer_media_type_with_parameters() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("params", 1000);
    serve_manifest(
        &server,
        "t",
        manifest(&[
            ("text/plain", b"no"),
            ("application/wasm; charset=binary", &payload),
        ]),
    );
    server.route(
        &format!("/v2/{REPO}/blobs/{}", digest(&payload)),
        Route::ok(payload.clone()),
    );
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert_eq!(r.unwrap().read().unwrap(), payload);
}

// 29
#[test]
fn unknown_registry_error_codes_are_kept() {
    let server = FakeRegistry::start();
    server.route(
        &format!("/v2/{REPO}/manifests/t"),
        Route::ok(
            r#"{"errors":[{"code":"QUANTUM_FLUX","message":"the registry is in two states"}]}"#,
        )
        .status(409),
    );
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    match r {
        Err(Error::Registry {
            status: 409,
            code,
            detail,
            ..
        }) => {
            assert_eq!(code.as_deref(), Some("QUANTUM_FLUX"));
            assert_eq!(
                detail.as_deref(),
                Some("QUANTUM_FLUX: the registry is in two states")
            );
        }
        other => panic!("{other:?}"),
    }
}

// 30
#[test]
fn a_blob_that_never_ends_is_cut_at_the_descriptor_size() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("endless", 4096);
    serve(&server, "t", &payload, Route::ok(payload.clone()).endless());
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert!(
        matches!(
            blob_error(&r),
            Some(VerifyError::TooLong { expected: 4096 })
        ),
        "{r:?}"
    );
}

// 31
#[test]
fn a_manifest_that_never_ends_is_cut_at_the_limit() {
    let server = FakeRegistry::start();
    server.route(
        &format!("/v2/{REPO}/manifests/t"),
        Route::ok(vec![b' '; 64 << 10]).endless(),
    );
    let (r, _cache) = pull_with(&server, &reference(&server, "t"), |b| {
        b.max_manifest_size(1 << 20)
    });
    assert!(
        matches!(
            r,
            Err(Error::TooLarge {
                what: "manifest",
                limit: 1048576,
                ..
            })
        ),
        "{r:?}"
    );
    // An announced Content-Length over the limit is refused before any body is read.
    serve_manifest(&server, "announced", vec![b' '; (1 << 20) + 1]);
    let (r, _cache) = pull_with(&server, &reference(&server, "announced"), |b| {
        b.max_manifest_size(1 << 20)
    });
    assert!(matches!(r, Err(Error::TooLarge { .. })), "{r:?}");
}

// 32
#[test]
fn a_dropped_download_is_retried_and_resumed_within_one_pull() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("flaky network", 300_000);
    serve(
        &server,
        "t",
        &payload,
        Route::ok(payload.clone())
            .cut_after(120_000)
            .ranges()
            .then(Route::ok(payload.clone()).ranges()),
    );
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert_eq!(r.unwrap().read().unwrap(), payload);
    assert_eq!(
        server.ranges(&format!("/v2/{REPO}/blobs/{}", digest(&payload))),
        [None, Some(120_000)]
    );
}

// 33
#[test]
fn too_many_layers() {
    let server = FakeRegistry::start();
    let layers: Vec<(&str, &[u8])> = (0..1001).map(|_| ("text/plain", &b"x"[..])).collect();
    serve_manifest(&server, "t", manifest(&layers));
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert!(
        matches!(
            manifest_error(&r),
            Some(ManifestErrorKind::TooManyEntries { count: 1001, .. })
        ),
        "{r:?}"
    );
}

// 34
#[test]
fn token_endpoint_answering_not_json() {
    let server = FakeRegistry::start();
    behind_tokens(&server, Route::ok("<html>login</html>"));
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert!(
        matches!(
            &r,
            Err(Error::Token {
                reason: TokenFailure::NotJson { .. },
                ..
            })
        ),
        "{r:?}"
    );
}

// 35
#[test]
fn a_trickling_blob_is_stopped_by_the_pull_deadline() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("trickle", 100_000);
    // One byte every 200 ms: never stalled long enough for the read timeout.
    serve(
        &server,
        "t",
        &payload,
        Route::ok(payload.clone()).slow(1, Duration::from_millis(200)),
    );
    let started = Instant::now();
    let (r, cache) = pull_with(&server, &reference(&server, "t"), |b| {
        b.pull_timeout(Duration::from_millis(1500))
    });
    assert!(
        matches!(&r, Err(Error::Deadline { action }) if action.contains("downloading blob")),
        "{r:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(verified_blobs(cache.path()).is_empty());
}

// 36
#[test]
fn a_token_that_claims_to_live_for_ever() {
    let server = FakeRegistry::start();
    let payload = behind_tokens(
        &server,
        Route::ok(r#"{"token":"t","expires_in":18446744073709551615}"#),
    );
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert_eq!(r.unwrap().read().unwrap(), payload);
}

// 37
#[test]
fn a_retry_after_date_in_an_absurd_year() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("absurd retry-after", 1000);
    let m = serve(&server, "t", &payload, Route::ok(payload.clone()));
    server.route(
        &format!("/v2/{REPO}/manifests/t"),
        Route::ok("slow down")
            .status(503)
            .header("retry-after", "Sun, 06 Nov 99999999999999999 08:49:37 GMT")
            .then(Route::ok(m).header("content-type", OCI_MANIFEST)),
    );
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert_eq!(r.unwrap().read().unwrap(), payload);
    assert_eq!(server.hits("GET", &format!("/v2/{REPO}/manifests/t")), 2);
}

// 38
#[test]
fn timeouts_and_limits_too_large_to_add_mean_none() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("no limits", 1000);
    serve(&server, "t", &payload, Route::ok(payload.clone()));
    let (r, _cache) = pull_with(&server, &reference(&server, "t"), |b| {
        b.pull_timeout(Duration::MAX)
            .connect_timeout(Duration::MAX)
            .read_timeout(Duration::MAX)
            .lock_timeout(Duration::MAX)
            .retries(u32::MAX)
    });
    assert_eq!(r.unwrap().read().unwrap(), payload);
}

// 39
#[test]
fn a_partial_answer_whose_content_range_ends_before_it_starts() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("bad range", 300_000);
    serve(
        &server,
        "t",
        &payload,
        Route::ok(payload.clone()).cut_after(120_000).ranges().then(
            Route::ok(payload.clone())
                .status(206)
                .header("content-range", "bytes 120000-99/300000"),
        ),
    );
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    assert!(
        matches!(&r, Err(Error::Registry { status: 206, detail: Some(d), .. }) if d.contains("Content-Range")),
        "{r:?}"
    );
}

// 40
#[test]
fn a_token_realm_with_userinfo_gets_no_credentials() {
    // `127.0.0.1` (any port) is marked insecure; the realm reads as 127.0.0.1 at a
    // glance but leads to localhost, which is not.
    let server = FakeRegistry::start();
    let token_service = FakeRegistry::start();
    let port = token_service.host().rsplit(':').next().unwrap().to_owned();
    behind_tokens(&server, Route::ok(r#"{"token":"t"}"#));
    let challenge =
        format!(r#"Bearer realm="http://127.0.0.1:x@localhost:{port}/token",service="s""#);
    server.route(
        &format!("/v2/{REPO}/manifests/t"),
        Route::ok("")
            .status(401)
            .header("www-authenticate", &challenge),
    );
    token_service.route("/token", Route::ok(r#"{"token":"t"}"#));
    let (r, _cache) = pull_with(&server, &reference(&server, "t"), |b| {
        b.insecure_host("127.0.0.1")
            .credentials(server.host(), Credentials::basic("frank", "hunter2"))
    });
    match &r {
        Err(
            e @ Error::RefusedUrl {
                what: "token realm",
                reason: UrlRefusal::UserInfo,
                host: Some(host),
                ..
            },
        ) => {
            assert_eq!(host, &format!("localhost:{port}"));
            assert!(!e.to_string().contains("127.0.0.1:x"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(token_service.connections(), 0);
}

// 41
#[test]
fn a_redirect_whose_location_carries_userinfo() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("userinfo redirect", 1000);
    serve(
        &server,
        "t",
        &payload,
        Route::ok("").status(307).header(
            "location",
            &format!("http://user:pw@{}/storage/blob", server.host()),
        ),
    );
    server.route("/storage/blob", Route::ok(payload));
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    match &r {
        Err(
            e @ Error::RefusedUrl {
                reason: UrlRefusal::UserInfo,
                ..
            },
        ) => assert!(!e.to_string().contains("pw"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.hits("GET", "/storage/blob"), 0);
}

// 42
#[test]
fn an_expired_presigned_url_names_the_cdn_and_not_its_signature() {
    let server = FakeRegistry::start();
    let cdn = FakeRegistry::start();
    let payload = wasm_payload("presigned", 1000);
    let signature = "X-Amz-Signature=5ec7e75ec7e75ec7";
    for (tag, body) in [
        (
            "xml",
            "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>".to_owned(),
        ),
        ("echo", format!("gone: /bucket/blob?{signature}")),
    ] {
        let blob = wasm_payload(tag, 1000);
        serve(
            &server,
            tag,
            &blob,
            Route::ok("").status(307).header(
                "location",
                &format!("http://{}/bucket/{tag}?X-Amz-Expires=300&{signature}", cdn.host()),
            ),
        );
        cdn.route(&format!("/bucket/{tag}"), Route::ok(body).status(410));
        let (r, _cache) = pull(&server, &reference(&server, tag));
        let e = r.unwrap_err();
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(!text.contains("5ec7e75ec7e75ec7") && !text.contains("X-Amz"), "{text}");
        }
        match &e {
            Error::RedirectTarget {
                registry,
                host,
                url,
                status: 410,
                detail,
            } => {
                assert_eq!((registry.as_str(), host.as_str()), (server.host(), cdn.host()));
                assert_eq!(url, &format!("http://{}/bucket/{tag}", cdn.host()));
                let expected = (tag == "xml").then_some("AccessDenied: Request has expired");
                assert_eq!(detail.as_deref(), expected);
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().starts_with(&format!("{} answered HTTP 410", cdn.host())), "{e}");
    }
    let _ = payload;
}

// 43
#[test]
fn a_cdn_that_cuts_the_body_is_named_as_the_host_that_failed() {
    let server = FakeRegistry::start();
    let cdn = FakeRegistry::start();
    let payload = wasm_payload("cut by the cdn", 50_000);
    serve(
        &server,
        "t",
        &payload,
        Route::ok("").status(307).header(
            "location",
            &format!("http://{}/bucket/t?X-Amz-Signature=5ec7e75e", cdn.host()),
        ),
    );
    cdn.route("/bucket/t", Route::ok(payload.clone()).cut_after(10_000));
    let (r, _cache) = pull(&server, &reference(&server, "t"));
    match r {
        Err(e @ Error::Transport { .. }) => {
            let Error::Transport { host, .. } = &e else {
                unreachable!()
            };
            assert_eq!(host, cdn.host());
            assert!(!format!("{e} {e:?}").contains("5ec7e75e"), "{e:?}");
        }
        other => panic!("{other:?}"),
    }
}

// 44
#[test]
fn escape_sequences_from_the_registry_never_reach_a_message_raw() {
    let server = FakeRegistry::start();
    let evil = "\u{1b}]0;pwned\u{7}\u{1b}[2K\rforged line\u{202e}";
    let body = serde_json::json!({"errors": [{"code": "DENIED\u{1b}[31m", "message": evil}]});
    server.route(
        &format!("/v2/{REPO}/manifests/err"),
        Route::ok(body.to_string()).status(500),
    );
    server.route(
        &format!("/v2/{REPO}/manifests/text"),
        Route::ok(format!("plain {evil}")).status(502),
    );
    // A media type whose parameter carries an escape sequence.
    let payload = wasm_payload("evil media type", 100);
    let m = manifest(&[(WASM, &payload)]);
    let m = String::from_utf8(m)
        .unwrap()
        .replace(WASM, "application/wasm; x=\\u001b]0;pwned\\u0007");
    serve_manifest(&server, "media", m);
    for tag in ["err", "text", "media"] {
        let (r, _cache) = pull(&server, &reference(&server, tag));
        let e = r.unwrap_err();
        let mut texts = vec![e.to_string(), format!("{e:?}")];
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            texts.push(cause.to_string());
            source = cause.source();
        }
        for text in &texts {
            assert!(!text.chars().any(char::is_control), "{tag}: {text:?}");
            assert!(!text.contains('\u{202e}'), "{tag}: {text:?}");
        }
        assert!(texts[0].contains("\\x1b]0;pwned"), "{tag}: {}", texts[0]);
    }
}

// 45
#[test]
fn a_body_echoing_a_signature_decoded_or_from_the_registry_itself_is_left_out() {
    let server = FakeRegistry::start();
    let cdn = FakeRegistry::start();
    for (tag, host) in [
        ("same", server.host().to_owned()),
        ("cdn", cdn.host().to_owned()),
    ] {
        let blob = wasm_payload(tag, 1000);
        serve(
            &server,
            tag,
            &blob,
            Route::ok("").status(307).header(
                "location",
                &format!("http://{host}/signed/{tag}?sig=Ab%2BSECRETSIG3%2Fxy%3D%3D&se=2030"),
            ),
        );
        let echo = Route::ok("signature check failed for sig=Ab+SECRETSIG3/xy==").status(403);
        if tag == "same" {
            server.route(&format!("/signed/{tag}"), echo);
        } else {
            cdn.route(&format!("/signed/{tag}"), echo);
        }
        let (r, _cache) = pull(&server, &reference(&server, tag));
        let e = r.unwrap_err();
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(!text.to_lowercase().contains("secretsig"), "{tag}: {text}");
        }
    }
}

// Lies told once, with the exact error each one must give.

#[test]
fn pinned_manifest_that_does_not_hash_to_the_pin_is_refused() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("x", 100);
    let m = manifest(&[(WASM, &payload)]);
    let pin = digest(b"some other manifest");
    // A registry (or a man in the middle) answers the pinned digest with other bytes.
    server.route(
        &format!("/v2/{REPO}/manifests/{pin}"),
        Route::ok(m.clone()).header("content-type", OCI_MANIFEST),
    );
    let blob = server.blob(REPO, &payload);
    let cache = tempfile::tempdir().unwrap();
    let host = server.host().to_owned();

    let err = client(&host, cache.path())
        .pull(&format!("{host}/{REPO}@{pin}"))
        .unwrap_err();
    match &err {
        Error::Verification {
            what: "manifest",
            reason: VerifyError::DigestMismatch { expected, actual },
            ..
        } => {
            assert_eq!(expected.to_string(), pin);
            assert_eq!(actual.to_string(), digest(&m));
        }
        other => panic!("expected a manifest digest mismatch, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&pin) && msg.contains(&digest(&m)), "{msg}");
    assert_eq!(server.hits("GET", &blob), 0);
    assert!(verified_blobs(cache.path()).is_empty());
}

/// Serves a manifest for `payload` and, as its blob, `served` instead.
fn pull_with_blob_body(payload: &[u8], served: &[u8]) -> (Error, tempfile::TempDir) {
    let server = FakeRegistry::start();
    let m = manifest(&[(WASM, payload)]);
    server.manifest(REPO, "v1", &m, OCI_MANIFEST);
    server.route(
        &format!("/v2/{REPO}/blobs/{}", digest(payload)),
        Route::ok(served),
    );
    let cache = tempfile::tempdir().unwrap();
    let host = server.host().to_owned();
    let err = client(&host, cache.path())
        .pull(&format!("{host}/{REPO}:v1"))
        .unwrap_err();
    (err, cache)
}

#[test]
fn blob_size_mismatch_leaves_nothing_in_the_cache() {
    let payload = wasm_payload("sized", 2048);
    let (err, cache) = pull_with_blob_body(&payload, &payload[..1000]);
    assert!(
        matches!(
            &err,
            Error::Verification {
                reason: VerifyError::TooShort {
                    expected: 2048,
                    actual: 1000
                },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(verified_blobs(cache.path()).is_empty());
    assert_eq!(temp_files(cache.path()), 0);

    let mut longer = payload.clone();
    longer.extend_from_slice(b"trailing bytes");
    let (err, cache) = pull_with_blob_body(&payload, &longer);
    assert!(
        matches!(
            &err,
            Error::Verification {
                reason: VerifyError::TooLong { expected: 2048 },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(verified_blobs(cache.path()).is_empty());
    assert_eq!(temp_files(cache.path()), 0);
}

#[test]
fn not_found_carries_the_registry_error() {
    let server = FakeRegistry::start();
    server.route(
        &format!("/v2/{REPO}/manifests/nope"),
        Route::ok(r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"nope"}}]}"#)
            .status(404)
            .header("content-type", "application/json"),
    );
    server.route(
        &format!("/v2/{REPO}/manifests/teapot"),
        Route::ok("short and stout").status(418),
    );
    let cache = tempfile::tempdir().unwrap();
    let host = server.host().to_owned();
    let c = client(&host, cache.path());

    let err = c.pull(&format!("{host}/{REPO}:nope")).unwrap_err();
    match &err {
        Error::NotFound {
            reference,
            registry,
            detail,
        } => {
            assert_eq!(reference, &format!("{host}/{REPO}:nope"));
            assert_eq!(registry, &host);
            assert_eq!(
                detail.as_deref(),
                Some("MANIFEST_UNKNOWN: manifest unknown")
            );
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(
        err.to_string().contains(&format!("{host}/{REPO}:nope")),
        "{err}"
    );

    let err = c.pull(&format!("{host}/{REPO}:teapot")).unwrap_err();
    match &err {
        Error::Registry {
            status: 418,
            detail,
            code: None,
            ..
        } => {
            assert_eq!(detail.as_deref(), Some("short and stout"));
        }
        other => panic!("expected Registry 418, got {other:?}"),
    }
}

#[test]
fn bad_server_answers_are_typed_errors() {
    let server = FakeRegistry::start();
    let host = server.host().to_owned();
    for (tag, body, media_type) in [
        ("schema1", &br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#[..], "application/vnd.docker.distribution.manifest.v1+prettyjws"),
        ("unknown", br#"{"schemaVersion":2,"mediaType":"application/vnd.example+json","layers":[]}"#, "application/json"),
        ("negative", br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"a/b","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":-2},"layers":[]}"#, OCI_MANIFEST),
    ] {
        server.manifest(REPO, tag, body, media_type);
    }
    let sha512 = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"a/b","digest":"{}","size":2}},"layers":[{{"mediaType":"{WASM}","digest":"sha512:{}","size":4}}]}}"#,
        digest(EMPTY_CONFIG),
        "ab".repeat(64)
    );
    server.manifest(REPO, "sha512", sha512.as_bytes(), OCI_MANIFEST);
    let cache = tempfile::tempdir().unwrap();
    let c = client(&host, cache.path());
    for tag in ["schema1", "unknown", "negative"] {
        let err = c.pull(&format!("{host}/{REPO}:{tag}")).unwrap_err();
        assert!(
            matches!(err, Error::InvalidManifest { .. }),
            "{tag}: {err:?}"
        );
        assert!(
            err.to_string().contains(&format!("{host}/{REPO}:{tag}")),
            "{err}"
        );
    }
    let err = c.pull(&format!("{host}/{REPO}:sha512")).unwrap_err();
    assert!(matches!(err, Error::UnsupportedDigest { .. }), "{err:?}");
    assert!(err.to_string().contains("sha512"), "{err}");
    assert!(verified_blobs(cache.path()).is_empty());
}
