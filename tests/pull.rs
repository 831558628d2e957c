//! The pull path against a scripted registry (mockito): caching, verification,
//! tokens, limits, index and layer selection, and registry errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use forge_oci::digest::VerifyError;
use forge_oci::{Client, Error, Network, Platform};
use mockito::{Matcher, Server};

const REPO: &str = "test/repo";

/// A registry serving `REPO:tag` as a one-layer wasm artifact. Returns the
/// payload and the manifest bytes.
fn serve_artifact(server: &mut Server, tag: &str, payload: &[u8]) -> Vec<u8> {
    let m = manifest(&[(WASM, payload)]);
    mock_manifest(server, REPO, tag, &m, OCI_MANIFEST);
    mock_blob(server, REPO, payload);
    m
}

#[test]
fn pulls_into_the_cache_then_serves_the_tag_with_the_registry_gone() {
    let mut server = Server::new();
    let payload = wasm_payload("fake-wasm-payload", 4096);
    let m = serve_artifact(&mut server, "v1", &payload);
    let cache = tempfile::tempdir().unwrap();
    let host = server.host_with_port();
    let client = client(&host, cache.path());
    let reference = format!("{host}/{REPO}:v1");

    let first = client.pull(&reference).unwrap();
    assert!(!first.from_cache());
    assert_eq!(first.read().unwrap(), payload);
    assert_eq!(first.layer_digest().to_string(), digest(&payload));
    assert_eq!(first.manifest_digest().to_string(), digest(&m));
    assert_eq!(first.media_type(), WASM);
    assert_eq!(first.size(), payload.len() as u64);
    assert_eq!(
        first.path(),
        cache
            .path()
            .join("blobs/sha256")
            .join(&digest(&payload)[7..])
    );
    // Layer and manifest are cached, the tag recorded; nothing left in tmp/.
    assert_eq!(verified_blobs(cache.path()).len(), 2);
    assert_eq!(temp_files(cache.path()), 0);

    drop(server);
    let second = client.pull(&reference).unwrap();
    assert!(second.from_cache());
    assert_eq!(second.read().unwrap(), payload);
    // A new client (another process, in effect) sees the same cache.
    let third = common::client(&host, cache.path())
        .pull(&reference)
        .unwrap();
    assert!(third.from_cache());
}

#[test]
fn a_tag_whose_blob_is_cached_is_from_the_cache_though_its_manifest_was_fetched() {
    let mut server = Server::new();
    let payload = wasm_payload("shared by two tags", 4096);
    let m = manifest(&[(WASM, &payload)]);
    mock_manifest(&mut server, REPO, "v1", &m, OCI_MANIFEST);
    let blob = mock_blob(&mut server, REPO, &payload).expect(1);
    let second_tag = mock_manifest(&mut server, REPO, "stable", &m, OCI_MANIFEST).expect(1);
    let cache = tempfile::tempdir().unwrap();
    let host = server.host_with_port();
    let client = client(&host, cache.path());

    let first = client.pull(&format!("{host}/{REPO}:v1")).unwrap();
    assert!(!first.from_cache(), "the blob was downloaded");
    // Another tag for the same content: its manifest is fetched, the blob is not.
    let second = client.pull(&format!("{host}/{REPO}:stable")).unwrap();
    assert!(second.from_cache(), "no blob was downloaded");
    assert_eq!(second.read().unwrap(), payload);
    second_tag.assert();
    blob.assert();
}

#[test]
fn digest_pinned_reference_is_verified_and_then_needs_no_network() {
    let mut server = Server::new();
    let payload = wasm_payload("pinned", 1000);
    let m = manifest(&[(WASM, &payload)]);
    let pin = digest(&m);
    let by_digest = mock_manifest(&mut server, REPO, &pin, &m, OCI_MANIFEST).expect(1);
    mock_blob(&mut server, REPO, &payload);
    let cache = tempfile::tempdir().unwrap();
    let host = server.host_with_port();
    let reference = format!("{host}/{REPO}@{pin}");

    let a = client(&host, cache.path()).pull(&reference).unwrap();
    assert_eq!(a.read().unwrap(), payload);
    assert_eq!(a.manifest_digest().to_string(), pin);
    by_digest.assert();
    // The pin is recorded (so prune keeps it), and no tag was invented for it.
    let repo_refs = cache
        .path()
        .join("refs")
        .join(host.replace(':', "_"))
        .join(REPO);
    assert!(repo_refs.join("_digests").join(&pin[7..]).is_file());
    assert!(!repo_refs.join("_tags").exists());

    drop(server);
    let b = client(&host, cache.path()).pull(&reference).unwrap();
    assert!(b.from_cache());
    assert_eq!(b.read().unwrap(), payload);
}

#[test]
fn pinned_manifest_that_does_not_hash_to_the_pin_is_refused() {
    let mut server = Server::new();
    let payload = wasm_payload("x", 100);
    let m = manifest(&[(WASM, &payload)]);
    let pin = digest(b"some other manifest");
    // A registry (or a man in the middle) answers the pinned digest with other bytes.
    server
        .mock("GET", format!("/v2/{REPO}/manifests/{pin}").as_str())
        .with_status(200)
        .with_header("content-type", OCI_MANIFEST)
        .with_body(&m)
        .create();
    let blob = mock_blob(&mut server, REPO, &payload).expect(0);
    let cache = tempfile::tempdir().unwrap();
    let host = server.host_with_port();

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
    blob.assert();
    assert!(verified_blobs(cache.path()).is_empty());
}

#[test]
fn docker_content_digest_is_checked_when_present_and_tolerated_when_absent() {
    let mut server = Server::new();
    let payload = wasm_payload("dcd", 100);
    let m = manifest(&[(WASM, &payload)]);
    let lie = digest(b"not this");
    for (tag, header) in [
        ("lying", Some(lie.as_str())),
        ("absent", None),
        ("empty", Some("")),
    ] {
        let mut mock = server
            .mock("GET", format!("/v2/{REPO}/manifests/{tag}").as_str())
            .with_status(200)
            .with_header("content-type", OCI_MANIFEST);
        if let Some(h) = header {
            mock = mock.with_header("docker-content-digest", h);
        }
        mock.with_body(&m).create();
    }
    mock_blob(&mut server, REPO, &payload);
    let cache = tempfile::tempdir().unwrap();
    let host = server.host_with_port();
    let c = client(&host, cache.path());

    let err = c.pull(&format!("{host}/{REPO}:lying")).unwrap_err();
    match &err {
        Error::Verification {
            what: "manifest",
            expected,
            ..
        } => assert_eq!(expected.to_string(), lie),
        other => panic!("expected a manifest mismatch, got {other:?}"),
    }
    assert!(verified_blobs(cache.path()).is_empty());
    for tag in ["absent", "empty"] {
        assert_eq!(
            c.pull(&format!("{host}/{REPO}:{tag}"))
                .unwrap()
                .read()
                .unwrap(),
            payload,
            "{tag}"
        );
    }
}

/// Serves a manifest for `payload` and, as its blob, `served` instead.
fn pull_with_blob_body(payload: &[u8], served: &[u8]) -> (Error, tempfile::TempDir) {
    let mut server = Server::new();
    let m = manifest(&[(WASM, payload)]);
    mock_manifest(&mut server, REPO, "v1", &m, OCI_MANIFEST);
    server
        .mock(
            "GET",
            format!("/v2/{REPO}/blobs/{}", digest(payload)).as_str(),
        )
        .with_status(200)
        .with_body(served)
        .create();
    let cache = tempfile::tempdir().unwrap();
    let host = server.host_with_port();
    let err = client(&host, cache.path())
        .pull(&format!("{host}/{REPO}:v1"))
        .unwrap_err();
    (err, cache)
}

#[test]
fn blob_digest_mismatch_leaves_nothing_in_the_cache() {
    let payload = wasm_payload("good", 2048);
    let mut tampered = payload.clone();
    tampered[100] ^= 0xff;
    let (err, cache) = pull_with_blob_body(&payload, &tampered);
    match &err {
        Error::Verification {
            what: "blob",
            reason: VerifyError::DigestMismatch { expected, actual },
            ..
        } => {
            assert_eq!(expected.to_string(), digest(&payload));
            assert_eq!(actual.to_string(), digest(&tampered));
        }
        other => panic!("expected a blob digest mismatch, got {other:?}"),
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
    assert!(
        !cache.path().join("refs").exists(),
        "no tag may point at a failed pull"
    );
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
fn one_token_request_serves_two_pulls() {
    let mut server = Server::new();
    let host = server.host_with_port();
    let realm = format!("http://{host}/token");
    let challenge =
        format!(r#"Bearer realm="{realm}",service="test-registry",scope="repository:{REPO}:pull""#);
    let token = server
        .mock("GET", "/token")
        .match_query(Matcher::AllOf(vec![
            Matcher::UrlEncoded("service".into(), "test-registry".into()),
            Matcher::UrlEncoded("scope".into(), format!("repository:{REPO}:pull")),
        ]))
        .with_status(200)
        .with_body(r#"{"token":"anon-token-123","expires_in":300}"#)
        .expect(1)
        .create();
    // Without the token everything is 401; with it the registry answers.
    let unauthorized = server
        .mock("GET", Matcher::Regex(format!("^/v2/{REPO}/")))
        .match_header("authorization", Matcher::Missing)
        .with_status(401)
        .with_header("www-authenticate", &challenge)
        .with_body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#)
        .expect(1)
        .create();
    let mut authorized = Vec::new();
    for (tag, seed) in [("v1", "one"), ("v2", "two")] {
        let payload = wasm_payload(seed, 500);
        let m = manifest(&[(WASM, &payload)]);
        authorized.push(
            server
                .mock("GET", format!("/v2/{REPO}/manifests/{tag}").as_str())
                .match_header("authorization", "Bearer anon-token-123")
                .with_status(200)
                .with_header("content-type", OCI_MANIFEST)
                .with_body(&m)
                .expect(1)
                .create(),
        );
        authorized.push(
            server
                .mock(
                    "GET",
                    format!("/v2/{REPO}/blobs/{}", digest(&payload)).as_str(),
                )
                .match_header("authorization", "Bearer anon-token-123")
                .with_status(200)
                .with_body(&payload)
                .expect(1)
                .create(),
        );
    }
    let cache = tempfile::tempdir().unwrap();
    let client = client(&host, cache.path());
    assert_eq!(
        client
            .pull(&format!("{host}/{REPO}:v1"))
            .unwrap()
            .read()
            .unwrap(),
        wasm_payload("one", 500)
    );
    assert_eq!(
        client
            .pull(&format!("{host}/{REPO}:v2"))
            .unwrap()
            .read()
            .unwrap(),
        wasm_payload("two", 500)
    );
    token.assert();
    unauthorized.assert();
    authorized.iter().for_each(mockito::Mock::assert);
    // The token never leaks into the client's Debug output.
    assert!(!format!("{client:?}").contains("anon-token-123"));
}

#[test]
fn a_second_401_after_a_fresh_token_is_an_error_not_a_loop() {
    let mut server = Server::new();
    let host = server.host_with_port();
    let token = server
        .mock("GET", "/token")
        .match_query(Matcher::Any)
        .with_status(200)
        .with_body(r#"{"access_token":"t"}"#)
        .expect(1)
        .create();
    let manifest = server
        .mock("GET", format!("/v2/{REPO}/manifests/v1").as_str())
        .with_status(401)
        .with_header(
            "www-authenticate",
            &format!(r#"Bearer realm="http://{host}/token",service="s""#),
        )
        .with_body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#)
        .expect(2)
        .create();
    let cache = tempfile::tempdir().unwrap();
    let err = client(&host, cache.path())
        .pull(&format!("{host}/{REPO}:v1"))
        .unwrap_err();
    match &err {
        Error::Unauthorized {
            reference, detail, ..
        } => {
            assert_eq!(reference, &format!("{host}/{REPO}:v1"));
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
    token.assert();
    manifest.assert();
}

#[test]
fn oversized_manifest_is_refused_without_reading_it_all() {
    let mut server = Server::new();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    // 256 MiB, chunked so no Content-Length gives the size away.
    server
        .mock("GET", format!("/v2/{REPO}/manifests/huge").as_str())
        .with_status(200)
        .with_header("content-type", OCI_MANIFEST)
        .with_chunked_body(move |w| {
            let chunk = vec![b' '; 64 << 10];
            for _ in 0..4096 {
                w.write_all(&chunk)?;
                counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            Ok(())
        })
        .create();
    let cache = tempfile::tempdir().unwrap();
    let host = server.host_with_port();
    let client = Client::builder()
        .cache_dir(cache.path())
        .insecure_host(&host)
        .retries(0)
        .max_manifest_size(1 << 20)
        .build()
        .unwrap();
    let err = client.pull(&format!("{host}/{REPO}:huge")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                what: "manifest",
                limit: 1048576,
                ..
            }
        ),
        "{err:?}"
    );
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent < 64 << 20, "the server got to send {sent} bytes");

    // An announced Content-Length over the limit is refused before any body is read.
    let big = vec![b' '; (1 << 20) + 1];
    mock_manifest(&mut server, REPO, "announced", &big, OCI_MANIFEST);
    let err = client
        .pull(&format!("{host}/{REPO}:announced"))
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err:?}");
}

#[test]
fn index_resolves_to_the_wasm_platform() {
    let mut server = Server::new();
    let wasm = wasm_payload("component", 3000);
    let linux = b"ELF for amd64".to_vec();
    let wasm_manifest = manifest(&[(WASM, &wasm)]);
    let linux_manifest = manifest(&[("application/vnd.oci.image.layer.v1.tar", &linux)]);
    let idx = index(&[
        (&linux_manifest, "linux", "amd64"),
        (&wasm_manifest, "wasip2", "wasm"),
    ]);
    mock_manifest(&mut server, REPO, "multi", &idx, OCI_INDEX);
    let child = mock_manifest(
        &mut server,
        REPO,
        &digest(&wasm_manifest),
        &wasm_manifest,
        OCI_MANIFEST,
    )
    .expect(1);
    let other = mock_manifest(
        &mut server,
        REPO,
        &digest(&linux_manifest),
        &linux_manifest,
        OCI_MANIFEST,
    )
    .expect(0);
    mock_blob(&mut server, REPO, &wasm);
    let cache = tempfile::tempdir().unwrap();
    let host = server.host_with_port();

    let a = client(&host, cache.path())
        .pull(&format!("{host}/{REPO}:multi"))
        .unwrap();
    assert_eq!(a.read().unwrap(), wasm);
    assert_eq!(
        a.manifest_digest().to_string(),
        digest(&idx),
        "the reference resolved to the index"
    );
    child.assert();
    other.assert();

    // From the cache too, with the registry gone: the index and its child were stored.
    drop(server);
    let b = client(&host, cache.path())
        .pull(&format!("{host}/{REPO}:multi"))
        .unwrap();
    assert!(b.from_cache());
    assert_eq!(b.read().unwrap(), wasm);
}

#[test]
fn index_without_the_platform_names_what_it_offers() {
    let mut server = Server::new();
    let m = manifest(&[("application/vnd.oci.image.layer.v1.tar", b"x")]);
    let idx = index(&[(&m, "linux", "amd64"), (&m, "linux", "arm64")]);
    mock_manifest(&mut server, REPO, "v1", &idx, OCI_INDEX);
    let cache = tempfile::tempdir().unwrap();
    let host = server.host_with_port();
    let err = client(&host, cache.path())
        .pull(&format!("{host}/{REPO}:v1"))
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::NoMatch { .. }), "{err:?}");
    assert!(
        msg.contains("linux/amd64") && msg.contains("linux/arm64") && msg.contains("wasip2/wasm"),
        "{msg}"
    );

    // A client configured for linux/arm64 picks that entry.
    let child = mock_manifest(&mut server, REPO, &digest(&m), &m, OCI_MANIFEST);
    mock_blob(&mut server, REPO, b"x");
    let arm = Client::builder()
        .cache_dir(cache.path())
        .insecure_host(&host)
        .platforms([Platform::new("linux", "arm64")])
        .build()
        .unwrap();
    assert_eq!(
        arm.pull(&format!("{host}/{REPO}:v1"))
            .unwrap()
            .read()
            .unwrap(),
        b"x"
    );
    child.assert();
}

#[test]
fn layer_selection_prefers_the_accepted_list_and_falls_back_to_a_single_layer() {
    let mut server = Server::new();
    let host = server.host_with_port();
    let component = wasm_payload("component", 300);
    let module = wasm_payload("module", 300);
    let two = manifest(&[
        (WASM, &module),
        (
            "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
            &component,
        ),
    ]);
    mock_manifest(&mut server, REPO, "two", &two, OCI_MANIFEST);
    mock_blob(&mut server, REPO, &component);
    let other = b"not wasm, but the only layer".to_vec();
    let single = manifest(&[("application/x-custom", &other)]);
    mock_manifest(&mut server, REPO, "single", &single, OCI_MANIFEST);
    mock_blob(&mut server, REPO, &other);
    let none = manifest(&[("text/plain", b"a"), ("application/x-tar", b"b")]);
    mock_manifest(&mut server, REPO, "none", &none, OCI_MANIFEST);
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

#[test]
fn not_found_carries_the_registry_error() {
    let mut server = Server::new();
    server
        .mock("GET", format!("/v2/{REPO}/manifests/nope").as_str())
        .with_status(404)
        .with_header("content-type", "application/json")
        .with_body(r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"nope"}}]}"#)
        .create();
    server
        .mock("GET", format!("/v2/{REPO}/manifests/teapot").as_str())
        .with_status(418)
        .with_body("short and stout")
        .create();
    let cache = tempfile::tempdir().unwrap();
    let host = server.host_with_port();
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
    let mut server = Server::new();
    let host = server.host_with_port();
    for (tag, body, media_type) in [
        ("notjson", &b"<html>hello</html>"[..], OCI_MANIFEST),
        ("schema1", br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#, "application/vnd.docker.distribution.manifest.v1+prettyjws"),
        ("unknown", br#"{"schemaVersion":2,"mediaType":"application/vnd.example+json","layers":[]}"#, "application/json"),
        ("negative", br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"a/b","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":-2},"layers":[]}"#, OCI_MANIFEST),
    ] {
        mock_manifest(&mut server, REPO, tag, body, media_type);
    }
    let sha512 = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"a/b","digest":"{}","size":2}},"layers":[{{"mediaType":"{WASM}","digest":"sha512:{}","size":4}}]}}"#,
        digest(EMPTY_CONFIG),
        "ab".repeat(64)
    );
    mock_manifest(&mut server, REPO, "sha512", sha512.as_bytes(), OCI_MANIFEST);
    let cache = tempfile::tempdir().unwrap();
    let c = client(&host, cache.path());
    for tag in ["notjson", "schema1", "unknown", "negative"] {
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

#[test]
fn offline_serves_the_cache_and_names_a_miss() {
    let mut server = Server::new();
    let payload = wasm_payload("offline", 100);
    serve_artifact(&mut server, "v1", &payload);
    let cache = tempfile::tempdir().unwrap();
    let host = server.host_with_port();
    client(&host, cache.path())
        .pull(&format!("{host}/{REPO}:v1"))
        .unwrap();

    let offline = Client::builder()
        .cache_dir(cache.path())
        .insecure_host(&host)
        .network(Network::Offline)
        .build()
        .unwrap();
    assert_eq!(
        offline
            .pull(&format!("{host}/{REPO}:v1"))
            .unwrap()
            .read()
            .unwrap(),
        payload
    );
    let err = offline.pull(&format!("{host}/{REPO}:v2")).unwrap_err();
    match &err {
        Error::NotCached {
            reference,
            cache: dir,
        } => {
            assert_eq!(reference, &format!("{host}/{REPO}:v2"));
            assert_eq!(dir, cache.path());
        }
        other => panic!("expected NotCached, got {other:?}"),
    }
    assert!(err.to_string().contains("offline"), "{err}");
}

#[test]
fn unreachable_registry_is_a_transport_error_naming_the_host() {
    // Bind then drop a listener to get a port with nothing behind it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let cache = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let err = client(&host, cache.path())
        .pull(&format!("{host}/{REPO}:v1"))
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    match &err {
        Error::Transport { host: h, .. } => assert_eq!(h, &host),
        other => panic!("expected Transport, got {other:?}"),
    }
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn invalid_references_fail_before_any_io() {
    let cache = tempfile::tempdir().unwrap();
    let c = client("127.0.0.1:1", cache.path());
    for bad in [
        "",
        "127.0.0.1:1/UPPER/case",
        "ghcr.io/a/b:-tag",
        "ghcr.io/a@sha256:123",
        "ghcr.io/a@md5:abcd",
    ] {
        let err = c.pull(bad).unwrap_err();
        assert!(
            matches!(err, Error::InvalidReference(_)),
            "{bad:?}: {err:?}"
        );
        assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
    }
    assert_eq!(
        std::fs::read_dir(cache.path()).unwrap().count(),
        0,
        "nothing was created"
    );
}

#[test]
fn client_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Client>();
    assert_send_sync::<forge_oci::Artifact>();
    assert_send_sync::<forge_oci::Reference>();
    fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<Error>();
}

#[test]
fn a_pull_that_must_wait_for_a_lock_says_so_then_proceeds() {
    let mut server = Server::new();
    let payload = wasm_payload("locked", 1000);
    serve_artifact(&mut server, "v1", &payload);
    let cache = tempfile::tempdir().unwrap();
    let host = server.host_with_port();

    // Another "process" holds the download lock of this blob.
    let locks = cache.path().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let lock_path = locks.join(format!("{}.lock", &digest(&payload)[7..]));
    let mut held = fd_lock::RwLock::new(std::fs::File::create(&lock_path).unwrap());
    let guard = held.write().unwrap();

    let (tx, rx) = std::sync::mpsc::channel();
    let client = Client::builder()
        .cache_dir(cache.path())
        .insecure_host(&host)
        .on_event(move |e| tx.send(e.to_string()).unwrap())
        .build()
        .unwrap();
    let reference = format!("{host}/{REPO}:v1");
    let puller = std::thread::spawn(move || client.pull(&reference));

    let event = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        event,
        format!("waiting for file lock on {}", lock_path.display())
    );
    assert!(
        !puller.is_finished(),
        "the pull must block while the lock is held"
    );
    drop(guard);
    let artifact = puller.join().unwrap().unwrap();
    assert_eq!(artifact.read().unwrap(), payload);
}
