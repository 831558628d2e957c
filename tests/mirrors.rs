//! Mirrors in front of a registry, played by the fake registry (which records each
//! request's path, query string and credentials): the path prefix and `ns=`, the
//! fallback past every way a mirror fails, whose credentials go where, and
//! digest-only mirrors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::registry::free_port;
use common::server::{FakeRegistry, Route};
use common::*;
use forge_oci::{ClientBuilder, Credentials, Event, Network, Source};

type Skips = Arc<Mutex<Vec<(Source, String)>>>;

/// `b` with its `SourceSkipped` events recorded (the source, the message).
fn recording(b: ClientBuilder) -> (ClientBuilder, Skips) {
    let skips = Skips::default();
    let sink = Arc::clone(&skips);
    let b = b.on_event(move |e| {
        if let Event::SourceSkipped { source, .. } = e {
            sink.lock()
                .unwrap()
                .push(((*source).clone(), e.to_string()));
        }
    });
    (b, skips)
}

fn mirror_source(m: &str) -> Source {
    Source::Mirror(m.to_owned())
}

#[test]
fn a_path_prefix_mirror_gets_prefixed_requests_with_ns_and_the_cache_keeps_upstream_names() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let payload = wasm_payload("through a proxy project", 30_000);
    mirror.artifact("ghcr-proxy/plugins/m", "v1", &payload, |r| r);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let reference = format!("{}/plugins/m:v1", upstream.host());
    let c = isolated(upstream.host(), &cache)
        .insecure_host(mirror.host())
        .mirror(upstream.host(), format!("{}/ghcr-proxy", mirror.host()))
        .build()
        .unwrap();
    assert_eq!(c.pull(&reference).unwrap().read().unwrap(), payload);

    let seen = mirror.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for s in &seen {
        assert!(
            s.target.starts_with("/v2/ghcr-proxy/plugins/m/"),
            "{}",
            s.target
        );
        assert!(
            s.target.ends_with(&format!("?ns={}", upstream.host())),
            "{}",
            s.target
        );
    }
    assert!(
        upstream.seen().is_empty(),
        "the registry itself was not asked"
    );
    // The cache names the upstream reference: a client without mirrors finds it.
    let listed = c.cache().list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].reference().to_string(), reference);
    let plain = isolated(upstream.host(), &cache)
        .network(Network::Offline)
        .build()
        .unwrap();
    assert_eq!(plain.pull(&reference).unwrap().read().unwrap(), payload);
}

/// Down, timing out, 5xx, lacking the repository, demanding auth it has no credentials for,
/// serving another manifest for a pin, serving a blob that does not verify: each
/// time the pull succeeds from the registry and one event names the mirror.
#[test]
fn each_way_a_mirror_fails_falls_back_to_the_registry_with_an_event() {
    let upstream = FakeRegistry::start();
    let payload = wasm_payload("upstream's own", 20_000);
    let m = upstream.artifact("plugins/m", "v1", &payload, |r| r);
    let pin = format!("{}/plugins/m@{}", upstream.host(), digest(&m));
    let manifest_path = format!("/v2/plugins/m/manifests/{}", digest(&m));
    let blob_path = format!("/v2/plugins/m/blobs/{}", digest(&payload));

    let down = format!("127.0.0.1:{}", free_port());
    let stalled = FakeRegistry::start();
    stalled.route(&manifest_path, Route::ok(m.clone()).stall_after(0));
    let overloaded = FakeRegistry::start();
    overloaded.route(&manifest_path, Route::ok("busy").status(503));
    let empty = FakeRegistry::start();
    let locked = FakeRegistry::start();
    locked.route(
        &manifest_path,
        Route::ok("")
            .status(401)
            .header("www-authenticate", "Basic realm=\"mirror\""),
    );
    let impostor = FakeRegistry::start();
    let other = manifest(&[(WASM, b"\0asm\x01\0\0\0not the one")]);
    impostor.route(
        &manifest_path,
        Route::ok(other.clone())
            .header("content-type", OCI_MANIFEST)
            .header("docker-content-digest", &digest(&other)),
    );
    let corrupt = FakeRegistry::start();
    corrupt.artifact("plugins/m", "v1", &payload, |r| r);
    let mut bad = payload.clone();
    bad[100] ^= 1;
    corrupt.route(&blob_path, Route::ok(bad));

    let cases = [
        ("down", down.as_str()),
        ("times out", stalled.host()),
        ("5xx", overloaded.host()),
        ("404", empty.host()),
        ("auth", locked.host()),
        ("wrong manifest", impostor.host()),
        ("wrong blob", corrupt.host()),
    ];
    let work = tempfile::tempdir().unwrap();
    for (i, (why, mirror)) in cases.into_iter().enumerate() {
        let cache = work.path().join(format!("cache{i}"));
        let (b, skips) = recording(
            isolated(upstream.host(), &cache)
                .insecure_host(mirror)
                .read_timeout(std::time::Duration::from_secs(1))
                .mirror(upstream.host(), mirror),
        );
        let artifact = b.build().unwrap().pull(&pin).unwrap();
        assert_eq!(artifact.read().unwrap(), payload, "{why}");
        let skips = skips.lock().unwrap();
        assert_eq!(skips.len(), 1, "{why}: {skips:?}");
        assert_eq!(skips[0].0, mirror_source(mirror), "{why}");
        assert!(skips[0].1.contains(mirror), "{why}: {}", skips[0].1);
        assert_eq!(verified_blobs(&cache).len(), 2, "{why}: manifest and blob");
    }
    assert!(
        corrupt.hits("GET", &blob_path) >= 1,
        "the corrupt blob was tried"
    );
}

/// The registry's credentials never go to its mirror; the mirror's own do.
#[test]
fn a_mirror_gets_its_own_credentials_never_the_registrys() {
    let upstream = FakeRegistry::start();
    let payload = wasm_payload("secret plugin", 10_000);
    let m = upstream.artifact("plugins/s", "v1", &payload, |r| r);
    let reference = format!("{}/plugins/s:v1", upstream.host());
    let challenge = |then: Route| {
        Route::ok("")
            .status(401)
            .header("www-authenticate", "Basic realm=\"mirror\"")
            .then(then)
    };
    let mirror = FakeRegistry::start();
    let manifest_route = Route::ok(m.clone())
        .header("content-type", OCI_MANIFEST)
        .header("docker-content-digest", &digest(&m));
    mirror.route("/v2/plugins/s/manifests/v1", challenge(manifest_route));
    mirror.route(
        &format!("/v2/plugins/s/blobs/{}", digest(&payload)),
        challenge(Route::ok(payload.clone())),
    );
    let upstream_auth = basic_auth("upstream-user", "upstream-secret");
    let work = tempfile::tempdir().unwrap();

    // Credentials for the registry only: the mirror asks, gets nothing, is skipped.
    let (b, skips) = recording(
        isolated(upstream.host(), &work.path().join("c1"))
            .insecure_host(mirror.host())
            .credentials(
                upstream.host(),
                Credentials::basic("upstream-user", "upstream-secret"),
            )
            .mirror(upstream.host(), mirror.host()),
    );
    assert_eq!(
        b.build().unwrap().pull(&reference).unwrap().read().unwrap(),
        payload
    );
    assert_eq!(skips.lock().unwrap().len(), 1);
    let seen = mirror.seen();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|s| s.authorization.is_none()),
        "credentials reached the mirror: {seen:?}"
    );

    // With the mirror's own credentials as well: those, and only those, reach it.
    let mirror_auth = basic_auth("mirror-user", "mirror-secret");
    let (b, skips) = recording(
        isolated(upstream.host(), &work.path().join("c2"))
            .insecure_host(mirror.host())
            .credentials(
                upstream.host(),
                Credentials::basic("upstream-user", "upstream-secret"),
            )
            .credentials(
                mirror.host(),
                Credentials::basic("mirror-user", "mirror-secret"),
            )
            .mirror(upstream.host(), mirror.host()),
    );
    let before = upstream.seen().len();
    assert_eq!(
        b.build().unwrap().pull(&reference).unwrap().read().unwrap(),
        payload
    );
    assert!(
        skips.lock().unwrap().is_empty(),
        "{:?}",
        skips.lock().unwrap()
    );
    assert_eq!(upstream.seen().len(), before, "the mirror answered");
    let sent: Vec<_> = mirror
        .seen()
        .into_iter()
        .filter_map(|s| s.authorization)
        .collect();
    assert!(!sent.is_empty());
    assert!(sent.iter().all(|a| *a == mirror_auth), "{sent:?}");
    assert!(!sent.contains(&upstream_auth));
}

/// A digest-only mirror is never asked for a tag, and is asked first for a pin.
#[test]
fn a_digest_only_mirror_answers_pins_only() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let payload = wasm_payload("pinned", 8_000);
    let m = upstream.artifact("plugins/p", "v1", &payload, |r| r);
    mirror.artifact("plugins/p", "v1", &payload, |r| r);
    let work = tempfile::tempdir().unwrap();
    let build = |cache: &str| {
        isolated(upstream.host(), &work.path().join(cache))
            .insecure_host(mirror.host())
            .digest_only_mirror(upstream.host(), mirror.host())
            .build()
            .unwrap()
    };
    let tag = format!("{}/plugins/p:v1", upstream.host());
    assert_eq!(build("tag").pull(&tag).unwrap().read().unwrap(), payload);
    assert!(
        mirror.seen().is_empty(),
        "a tag went to a digest-only mirror"
    );
    let upstream_before = upstream.seen().len();
    let pin = format!("{}/plugins/p@{}", upstream.host(), digest(&m));
    assert_eq!(build("pin").pull(&pin).unwrap().read().unwrap(), payload);
    assert_eq!(mirror.seen().len(), 2);
    assert_eq!(upstream.seen().len(), upstream_before);
}

/// `FORGE_OCI_MIRRORS` that cannot be read is refused by name at build time.
#[test]
fn bad_mirror_settings_are_refused_naming_them() {
    let work = tempfile::tempdir().unwrap();
    let err = isolated("127.0.0.1:1", work.path())
        .mirror("ghcr.io", "https://mirror.corp")
        .build()
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("ClientBuilder::mirror"), "{text}");
    assert!(text.contains("https://mirror.corp"), "{text}");
}

/// The CLI's `--mirror`: a mirror that is down is named on stderr as a warning
/// and the registry answers; a working one answers instead of the registry.
#[test]
fn the_cli_takes_mirrors_and_warns_about_a_skipped_one() {
    let upstream = FakeRegistry::start();
    let payload = wasm_payload("cli mirror", 3_000);
    upstream.artifact("plugins/c", "v1", &payload, |r| r);
    let mirror = FakeRegistry::start();
    mirror.artifact("plugins/c", "v1", &payload, |r| r);
    let down = format!("127.0.0.1:{}", free_port());
    let work = tempfile::tempdir().unwrap();
    let reference = format!("{}/plugins/c:v1", upstream.host());
    let run = |mirror: &str, cache: &str| {
        let mirror_arg = format!("{}={mirror}", upstream.host());
        let args = ["pull", &reference, "-o", "-", "--insecure", mirror];
        cli_command(&work.path().join(cache), upstream.host(), &args)
            .args(["--mirror", &mirror_arg])
            .env_remove("FORGE_OCI_MIRRORS")
            .output()
            .unwrap()
    };
    let out = run(&down, "c1");
    assert_eq!(succeeded(&out), &payload[..]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("warning: skipping mirror {down}")),
        "{stderr}"
    );
    let before = upstream.seen().len();
    let out = run(mirror.host(), "c2");
    assert_eq!(succeeded(&out), &payload[..]);
    assert_eq!(upstream.seen().len(), before, "the mirror answered");
    assert!(!mirror.seen().is_empty());

    // A FORGE_OCI_MIRRORS that cannot be read stops the command, naming it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_forge-oci"))
        .args(["pull", &reference, "--cache-dir"])
        .arg(work.path().join("c3"))
        .env("FORGE_OCI_MIRRORS", "ghcr.io:mirror.corp")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("FORGE_OCI_MIRRORS"), "{stderr}");
    assert!(stderr.contains("ghcr.io:mirror.corp"), "{stderr}");
}

/// Revalidating a cached tag asks the mirror first, as a pull does.
#[test]
fn revalidation_asks_the_mirror_first() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let payload = wasm_payload("revalidated", 3_000);
    upstream.artifact("plugins/r", "v1", &payload, |r| r);
    mirror.artifact("plugins/r", "v1", &payload, |r| r);
    let work = tempfile::tempdir().unwrap();
    let c = isolated(upstream.host(), work.path())
        .insecure_host(mirror.host())
        .mirror(upstream.host(), mirror.host())
        .tag_policy(forge_oci::TagPolicy::Revalidate)
        .build()
        .unwrap();
    let reference = format!("{}/plugins/r:v1", upstream.host());
    assert!(!c.pull(&reference).unwrap().from_cache());
    let again = c.pull(&reference).unwrap();
    assert!(again.from_cache());
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    assert_eq!(mirror.hits("HEAD", "/v2/plugins/r/manifests/v1"), 1);
}

/// With a pull timeout, a mirror that stalls is skipped in time for the
/// registry to answer: "a mirror that times out is skipped", whichever timeout.
#[test]
fn a_stalled_mirror_is_skipped_within_the_pull_timeout() {
    let upstream = FakeRegistry::start();
    let payload = wasm_payload("deadline", 5_000);
    upstream.artifact("plugins/t", "v1", &payload, |r| r);
    let stalled = FakeRegistry::start();
    stalled.route("/v2/plugins/t/manifests/v1", Route::ok("{}").stall_after(0));
    let work = tempfile::tempdir().unwrap();
    let (b, skips) = recording(
        isolated(upstream.host(), work.path())
            .insecure_host(stalled.host())
            .pull_timeout(std::time::Duration::from_secs(4))
            .mirror(upstream.host(), stalled.host()),
    );
    let reference = format!("{}/plugins/t:v1", upstream.host());
    let got = b.build().unwrap().pull(&reference);
    assert_eq!(got.unwrap().read().unwrap(), payload);
    assert_eq!(skips.lock().unwrap().len(), 1);
}

/// Vendoring skips a mirror whose blob does not verify, as a pull does, and
/// writes the registry's bytes.
#[test]
fn vendoring_skips_a_mirror_serving_a_corrupt_blob() {
    let upstream = FakeRegistry::start();
    let payload = wasm_payload("vendored past a bad mirror", 20_000);
    upstream.artifact("plugins/v", "v1", &payload, |r| r);
    let corrupt = FakeRegistry::start();
    corrupt.artifact("plugins/v", "v1", &payload, |r| r);
    upstream.blob("plugins/v", EMPTY_CONFIG);
    corrupt.blob("plugins/v", EMPTY_CONFIG);
    let mut bad = payload.clone();
    bad[100] ^= 1;
    corrupt.route(
        &format!("/v2/plugins/v/blobs/{}", digest(&payload)),
        Route::ok(bad),
    );
    let work = tempfile::tempdir().unwrap();
    let (b, skips) = recording(
        isolated(upstream.host(), &work.path().join("cache"))
            .insecure_host(corrupt.host())
            .mirror(upstream.host(), corrupt.host()),
    );
    let layout = work.path().join("oci");
    let reference = format!("{}/plugins/v:v1", upstream.host());
    let vendored = b.build().unwrap().vendor(&layout, &[&reference]);
    assert_eq!(vendored.unwrap().len(), 1);
    let hex = digest(&payload).trim_start_matches("sha256:").to_owned();
    assert_eq!(
        std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap(),
        payload
    );
    assert_eq!(
        skips.lock().unwrap().len(),
        1,
        "{:?}",
        skips.lock().unwrap()
    );
}

/// A mirror that answers 503 is skipped at once, not retried: the registry is
/// there to answer, and a `Retry-After` would hold the pull for its length
/// each time (retries are for the last source).
#[test]
fn an_overloaded_mirror_is_not_retried_before_the_registry_is_asked() {
    let upstream = FakeRegistry::start();
    let payload = wasm_payload("not retried", 3_000);
    upstream.artifact("plugins/o", "v1", &payload, |r| r);
    let mirror = FakeRegistry::start();
    let path = "/v2/plugins/o/manifests/v1";
    mirror.route(
        path,
        Route::ok("busy").status(503).header("retry-after", "1"),
    );
    let work = tempfile::tempdir().unwrap();
    let (b, skips) = recording(
        isolated(upstream.host(), work.path())
            .retries(3)
            .insecure_host(mirror.host())
            .mirror(upstream.host(), mirror.host()),
    );
    let reference = format!("{}/plugins/o:v1", upstream.host());
    assert_eq!(
        b.build().unwrap().pull(&reference).unwrap().read().unwrap(),
        payload
    );
    assert_eq!(skips.lock().unwrap().len(), 1);
    assert_eq!(mirror.hits("GET", path), 1, "the mirror was retried");
}
