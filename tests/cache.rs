//! The cache as users operate it: tag policies, offline, list/prune/verify/clear,
//! resumed downloads, prune racing pulls. Against the fake registry in
//! `common/server.rs`, which counts every connection and request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::server::{FakeRegistry, Route};
use common::*;
use forge_oci::{Client, Error, Network, PruneOptions, TagPolicy};

const REPO: &str = "cache/plugin";

fn client_with(server: &FakeRegistry, cache: &Path, policy: TagPolicy) -> Client {
    isolated(server.host(), cache)
        .tag_policy(policy)
        .build()
        .unwrap()
}

/// An artifact `REPO:1.0` served by the fake registry and pulled once into a
/// cache of its own, for tests about what later pulls do.
struct Warm {
    payload: Vec<u8>,
    manifest: Vec<u8>,
    cache: tempfile::TempDir,
    reference: String,
}

fn warm(server: &FakeRegistry, seed: &str) -> Warm {
    let payload = wasm_payload(seed, 1000);
    let manifest = server.artifact(REPO, "1.0", &payload, |r| r);
    let cache = tempfile::tempdir().unwrap();
    let reference = format!("{}/{REPO}:1.0", server.host());
    client_with(server, cache.path(), TagPolicy::CacheFirst)
        .pull(&reference)
        .unwrap();
    Warm {
        payload,
        manifest,
        cache,
        reference,
    }
}

fn manifest_path(tag: &str) -> String {
    format!("/v2/{REPO}/manifests/{tag}")
}

fn blob_path(payload: &[u8]) -> String {
    format!("/v2/{REPO}/blobs/{}", digest(payload))
}

/// Makes the ref of `reference` look resolved `age` ago.
fn age_ref(cache: &Path, host: &str, tag: &str, age: Duration) {
    let path = cache
        .join("refs")
        .join(host.replace(':', "_"))
        .join(REPO)
        .join("_tags")
        .join(tag);
    let f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

#[test]
fn cache_first_serves_a_cached_tag_without_a_request() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("cache-first", 1000);
    server.artifact(REPO, "1.0", &payload, |r| r);
    let cache = tempfile::tempdir().unwrap();
    let c = client_with(&server, cache.path(), TagPolicy::CacheFirst);
    let reference = format!("{}/{REPO}:1.0", server.host());
    assert!(!c.pull(&reference).unwrap().from_cache());
    let connections = server.connections();
    assert!(c.pull(&reference).unwrap().from_cache());
    assert_eq!(
        server.connections(),
        connections,
        "a cached tag costs no request"
    );
}

#[test]
fn revalidate_refetches_a_moved_tag_and_only_heads_an_unchanged_one() {
    let server = FakeRegistry::start();
    let old = wasm_payload("old build", 1000);
    server.artifact(REPO, "latest", &old, |r| r);
    let cache = tempfile::tempdir().unwrap();
    let reference = format!("{}/{REPO}:latest", server.host());
    client_with(&server, cache.path(), TagPolicy::CacheFirst)
        .pull(&reference)
        .unwrap();

    // The tag is pushed again with a new build.
    let new = wasm_payload("new build after a re-push", 1000);
    let m = server.artifact(REPO, "latest", &new, |r| r);
    let c = client_with(&server, cache.path(), TagPolicy::Revalidate);
    let a = c.pull(&reference).unwrap();
    assert_eq!(a.read().unwrap(), new, "the stale build must not be served");
    assert!(!a.from_cache());
    assert_eq!(a.manifest_digest().to_string(), digest(&m));
    assert_eq!(server.hits("HEAD", &manifest_path("latest")), 1);

    // Unchanged now: one HEAD, no GET.
    let gets = server.hits("GET", &manifest_path("latest"));
    let b = c.pull(&reference).unwrap();
    assert!(b.from_cache());
    assert_eq!(b.read().unwrap(), new);
    assert_eq!(server.hits("HEAD", &manifest_path("latest")), 2);
    assert_eq!(server.hits("GET", &manifest_path("latest")), gets);
    assert_eq!(server.hits("GET", &blob_path(&new)), 1);
}

#[test]
fn revalidate_uses_the_cache_when_the_registry_is_down_and_says_so() {
    let server = FakeRegistry::start();
    let Warm {
        payload,
        manifest: m,
        cache,
        reference,
    } = warm(&server, "stays");
    let host = server.host().to_owned();
    drop(server);

    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let c = isolated(&host, cache.path())
        .tag_policy(TagPolicy::Revalidate)
        .on_event(move |e| seen.lock().unwrap().push(e.to_string()))
        .build()
        .unwrap();
    let a = c.pull(&reference).unwrap();
    assert_eq!(a.read().unwrap(), payload);
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0].starts_with(&format!("could not revalidate {reference}")),
        "{}",
        events[0]
    );
    assert!(
        events[0].ends_with(&format!("using the cached {}", digest(&m))),
        "{}",
        events[0]
    );
}

/// Pulls `reference` with `TagPolicy::Revalidate`; returns the artifact and the events.
fn revalidating_pull(
    cache: &Path,
    host: &str,
    reference: &str,
    timeout: Option<Duration>,
) -> (forge_oci::Artifact, Vec<String>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let mut b = isolated(host, cache)
        .tag_policy(TagPolicy::Revalidate)
        .on_event(move |e| seen.lock().unwrap().push(e.to_string()));
    if let Some(t) = timeout {
        b = b.pull_timeout(t);
    }
    let a = b.build().unwrap().pull(reference).unwrap();
    let events = events.lock().unwrap().clone();
    (a, events)
}

#[test]
fn revalidate_falls_back_to_a_get_where_head_is_not_allowed() {
    let server = FakeRegistry::start();
    let Warm {
        payload: old,
        cache,
        reference,
        ..
    } = warm(&server, "head not allowed");
    server.route_method("HEAD", &manifest_path("1.0"), Route::ok("").status(405));

    // Unchanged: the GET says so, and the cached blob is served.
    let (a, events) = revalidating_pull(cache.path(), server.host(), &reference, None);
    assert!(a.from_cache() && events.is_empty(), "{events:?}");
    assert_eq!(a.read().unwrap(), old);
    assert_eq!(server.hits("GET", &manifest_path("1.0")), 2);

    // Moved: the new build is pulled.
    let new = wasm_payload("head not allowed, moved", 1000);
    server.artifact(REPO, "1.0", &new, |r| r);
    server.route_method("HEAD", &manifest_path("1.0"), Route::ok("").status(405));
    let (a, _) = revalidating_pull(cache.path(), server.host(), &reference, None);
    assert_eq!(a.read().unwrap(), new);
}

#[test]
fn revalidate_serves_the_cached_tag_when_the_token_service_or_the_deadline_fails() {
    let server = FakeRegistry::start();
    let Warm {
        payload,
        manifest: m,
        cache,
        reference,
    } = warm(&server, "token down");
    let host = server.host().to_owned();
    let cached = format!("using the cached {}", digest(&m));

    // The registry now wants a token, and its token service is down.
    let challenge = format!(r#"Bearer realm="http://{host}/token",service="fake""#);
    server.route_method(
        "HEAD",
        &manifest_path("1.0"),
        Route::ok("")
            .status(401)
            .header("www-authenticate", &challenge),
    );
    server.route("/token", Route::ok("down for maintenance").status(503));
    let (a, events) = revalidating_pull(cache.path(), &host, &reference, None);
    assert_eq!(a.read().unwrap(), payload);
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].ends_with(&cached), "{}", events[0]);
    assert_eq!(server.hits("GET", "/token"), 1);

    // The registry answers too slowly for the pull's deadline.
    server.route_method(
        "HEAD",
        &manifest_path("1.0"),
        Route::ok("").trickle_headers(Duration::from_millis(50)),
    );
    let (a, events) = revalidating_pull(
        cache.path(),
        &host,
        &reference,
        Some(Duration::from_millis(300)),
    );
    assert_eq!(a.read().unwrap(), payload);
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].contains("time allowed"), "{}", events[0]);
    assert!(events[0].ends_with(&cached), "{}", events[0]);

    // A real answer is not papered over: the tag is gone.
    server.route_method("HEAD", &manifest_path("1.0"), Route::ok("").status(404));
    let c = client_with(&server, cache.path(), TagPolicy::Revalidate);
    assert!(matches!(c.pull(&reference), Err(Error::NotFound { .. })));
}

#[test]
fn max_age_asks_again_only_once_the_tag_is_older() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("aging", 1000);
    server.artifact(REPO, "1.0", &payload, |r| r);
    let cache = tempfile::tempdir().unwrap();
    let reference = format!("{}/{REPO}:1.0", server.host());
    let c = client_with(
        &server,
        cache.path(),
        TagPolicy::MaxAge(Duration::from_secs(3600)),
    );
    c.pull(&reference).unwrap();
    c.pull(&reference).unwrap();
    assert_eq!(
        server.hits("HEAD", &manifest_path("1.0")),
        0,
        "young enough: no request"
    );

    age_ref(
        cache.path(),
        server.host(),
        "1.0",
        Duration::from_secs(7200),
    );
    assert!(c.pull(&reference).unwrap().from_cache());
    assert_eq!(
        server.hits("HEAD", &manifest_path("1.0")),
        1,
        "too old: revalidated"
    );
    // The revalidation renewed the ref's age.
    c.pull(&reference).unwrap();
    assert_eq!(server.hits("HEAD", &manifest_path("1.0")), 1);
}

#[test]
fn offline_opens_no_connection() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("offline", 1000);
    server.artifact(REPO, "1.0", &payload, |r| r);
    let cache = tempfile::tempdir().unwrap();
    let reference = format!("{}/{REPO}:1.0", server.host());
    client_with(&server, cache.path(), TagPolicy::CacheFirst)
        .pull(&reference)
        .unwrap();
    let before = server.connections();

    for policy in [
        TagPolicy::CacheFirst,
        TagPolicy::Revalidate,
        TagPolicy::MaxAge(Duration::ZERO),
    ] {
        let offline = isolated(server.host(), cache.path())
            .network(Network::Offline)
            .tag_policy(policy)
            .build()
            .unwrap();
        assert_eq!(offline.pull(&reference).unwrap().read().unwrap(), payload);
        let miss = format!("{}/{REPO}:2.0", server.host());
        let err = offline.pull(&miss).unwrap_err();
        match &err {
            Error::NotCached {
                reference,
                cache: dir,
            } => {
                assert_eq!(reference, &miss);
                assert_eq!(dir, cache.path());
            }
            other => panic!("expected NotCached, got {other:?}"),
        }
        assert!(err.to_string().contains("offline"), "{err}");
    }
    // The environment switches, through the CLI: FORGE_OFFLINE=1 and CARGO_NET_OFFLINE=true.
    for (var, value) in [("FORGE_OFFLINE", "1"), ("CARGO_NET_OFFLINE", "true")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_forge-oci"))
            .args([
                "pull",
                &format!("{}/{REPO}:2.0", server.host()),
                "--cache-dir",
            ])
            .arg(cache.path())
            .args(["--insecure", server.host()])
            .env(var, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("is not in the cache") && stderr.contains("offline"),
            "{stderr}"
        );
    }
    assert_eq!(
        server.connections(),
        before,
        "offline mode must not connect"
    );
}

#[test]
fn list_size_prune_and_clear() {
    let server = FakeRegistry::start();
    let (one, two) = (wasm_payload("one", 3000), wasm_payload("two", 5000));
    server.artifact(REPO, "1.0", &one, |r| r);
    let m2 = server.artifact(REPO, "2.0", &two, |r| r);
    let cache = tempfile::tempdir().unwrap();
    let host = server.host().to_owned();
    let c = client_with(&server, cache.path(), TagPolicy::CacheFirst);
    c.pull(&format!("{host}/{REPO}:1.0")).unwrap();
    c.pull(&format!("{host}/{REPO}@{}", digest(&m2))).unwrap();

    let entries = c.cache().list().unwrap();
    let listed: Vec<String> = entries.iter().map(|e| e.reference().to_string()).collect();
    assert_eq!(
        listed,
        [
            format!("{host}/{REPO}:1.0"),
            format!("{host}/{REPO}@{}", digest(&m2))
        ]
    );
    assert_eq!(entries[0].layer_digest().unwrap().to_string(), digest(&one));
    assert_eq!(entries[0].size(), Some(3000));
    assert_eq!(entries[1].manifest_digest().to_string(), digest(&m2));
    assert!(entries[0].resolved_at().elapsed().unwrap() < Duration::from_secs(60));
    let size = c.cache().size().unwrap();
    assert!(size >= 8000, "{size}");

    // Leftovers: an unreferenced blob and a stale partial download.
    let stray = b"left by an interrupted run".to_vec();
    fs::write(
        cache.path().join("blobs/sha256").join(&digest(&stray)[7..]),
        &stray,
    )
    .unwrap();
    fs::write(cache.path().join("tmp").join("0123.partial"), b"partial").unwrap();
    let report = c.cache().prune(&PruneOptions::default()).unwrap();
    assert_eq!(
        (
            report.refs_removed(),
            report.blobs_removed(),
            report.temp_files_removed()
        ),
        (0, 1, 1)
    );
    assert_eq!(report.bytes_freed(), stray.len() as u64 + 7);
    assert_eq!(
        verified_blobs(cache.path()).len(),
        4,
        "two manifests and two layers stay"
    );

    // Refs older than a day go, and with them what only they referenced.
    age_ref(cache.path(), &host, "1.0", Duration::from_secs(2 * 86400));
    let report = c
        .cache()
        .prune(&PruneOptions::default().older_than(Duration::from_secs(86400)))
        .unwrap();
    assert_eq!((report.refs_removed(), report.blobs_removed()), (1, 2));
    let remaining: Vec<String> = c
        .cache()
        .list()
        .unwrap()
        .iter()
        .map(|e| e.reference().to_string())
        .collect();
    assert_eq!(remaining, [format!("{host}/{REPO}@{}", digest(&m2))]);
    assert!(
        !cache
            .path()
            .join("refs")
            .join(host.replace(':', "_"))
            .join(REPO)
            .join("_tags")
            .exists()
    );

    c.cache().clear().unwrap();
    assert!(c.cache().list().unwrap().is_empty());
    assert_eq!(c.cache().size().unwrap(), 0);
    // And it fills again.
    assert_eq!(
        c.pull(&format!("{host}/{REPO}:1.0"))
            .unwrap()
            .read()
            .unwrap(),
        one
    );
}

#[test]
fn verify_finds_corruption_and_the_next_pull_fetches_again() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("will rot", 4000);
    server.artifact(REPO, "1.0", &payload, |r| r);
    let cache = tempfile::tempdir().unwrap();
    let reference = format!("{}/{REPO}:1.0", server.host());
    let c = client_with(&server, cache.path(), TagPolicy::CacheFirst);
    let a = c.pull(&reference).unwrap();

    let clean = c.cache().verify().unwrap();
    assert_eq!((clean.blobs_checked(), clean.corrupt().len()), (2, 0));

    let mut rotten = payload.clone();
    rotten[1234] ^= 0x40; // one flipped bit
    fs::remove_file(a.path()).unwrap(); // blobs are read-only: replace, as damage would
    fs::write(a.path(), &rotten).unwrap();
    let report = c.cache().verify().unwrap();
    assert_eq!(report.corrupt().len(), 1);
    assert_eq!(report.corrupt()[0].path(), a.path());
    assert_eq!(
        report.corrupt()[0].actual().as_ref().unwrap().to_string(),
        digest(&rotten)
    );
    assert!(!a.path().exists(), "the corrupt blob is removed");

    let again = c.pull(&reference).unwrap();
    assert_eq!(again.read().unwrap(), payload);
    assert_eq!(server.hits("GET", &blob_path(&payload)), 2);
}

#[test]
fn a_dropped_download_resumes_with_a_range_request() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("resumable", 300_000);
    server.artifact(REPO, "1.0", &payload, |r| r.cut_after(100_000));
    let cache = tempfile::tempdir().unwrap();
    let reference = format!("{}/{REPO}:1.0", server.host());
    let c = client_with(&server, cache.path(), TagPolicy::CacheFirst);

    let err = c.pull(&reference).unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(verified_blobs(cache.path()).is_empty());
    let partial = cache
        .path()
        .join("tmp")
        .join(format!("{}.partial", &digest(&payload)[7..]));
    assert_eq!(
        fs::metadata(&partial).unwrap().len(),
        100_000,
        "the received prefix is kept"
    );

    server.artifact(REPO, "1.0", &payload, Route::ranges);
    assert_eq!(c.pull(&reference).unwrap().read().unwrap(), payload);
    assert_eq!(server.ranges(&blob_path(&payload)), [None, Some(100_000)]);
    assert!(!partial.exists());
}

#[test]
fn a_registry_that_ignores_the_range_makes_the_download_start_over() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("no ranges here", 200_000);
    server.artifact(REPO, "1.0", &payload, |r| r.cut_after(50_000));
    let cache = tempfile::tempdir().unwrap();
    let reference = format!("{}/{REPO}:1.0", server.host());
    let c = client_with(&server, cache.path(), TagPolicy::CacheFirst);
    c.pull(&reference).unwrap_err();
    server.artifact(REPO, "1.0", &payload, |r| r); // 200 with everything
    assert_eq!(c.pull(&reference).unwrap().read().unwrap(), payload);
    assert_eq!(server.ranges(&blob_path(&payload)), [None, Some(50_000)]);
}

/// Serves `count` artifacts `REPO:v0`… of `size` bytes, sent a tenth at a time
/// `delay` apart, so that pulls of them take a while; returns their payloads.
fn slow_artifacts(
    server: &FakeRegistry,
    count: usize,
    size: usize,
    delay: Duration,
) -> Vec<Vec<u8>> {
    let payloads: Vec<Vec<u8>> = (0..count)
        .map(|i| wasm_payload(&format!("artifact {i} of {count}"), size))
        .collect();
    for (i, p) in payloads.iter().enumerate() {
        server.artifact(REPO, &format!("v{i}"), p, |r| r.slow(size / 10, delay));
    }
    payloads
}

/// A cache operation run again and again on a thread of its own until stopped.
struct Looping {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl Looping {
    fn start(
        client: Client,
        op: impl Fn(&Client) -> forge_oci::Result<()> + Send + 'static,
    ) -> Looping {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut rounds = 0;
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                op(&client).unwrap();
                rounds += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            rounds
        });
        Looping { stop, thread }
    }

    /// Stops the loop; how many times the operation ran.
    fn stop(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

#[test]
fn prune_in_a_loop_never_breaks_a_pull() {
    let server = Arc::new(FakeRegistry::start());
    let payloads = slow_artifacts(&server, 12, 200_000, Duration::from_millis(2));
    let cache = tempfile::tempdir().unwrap();
    let pruner = Looping::start(
        client_with(&server, cache.path(), TagPolicy::CacheFirst),
        |c| c.cache().prune(&PruneOptions::default()).map(drop),
    );
    let pullers: Vec<_> = (0..4)
        .map(|t| {
            let (server, cache, payloads) = (
                Arc::clone(&server),
                cache.path().to_owned(),
                payloads.clone(),
            );
            std::thread::spawn(move || {
                // Round 0 downloads (under the shared lock, with gaps in which prune
                // can take it exclusively); later rounds are lock-free hits while prune runs.
                for round in 0..4 {
                    for i in (t..12).step_by(4) {
                        let c = client_with(&server, &cache, TagPolicy::CacheFirst);
                        let a = c.pull(&format!("{}/{REPO}:v{i}", server.host())).unwrap();
                        assert_eq!(
                            a.read().unwrap(),
                            payloads[i],
                            "thread {t} round {round} artifact {i}"
                        );
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            })
        })
        .collect();
    for p in pullers {
        p.join().unwrap();
    }
    let rounds = pruner.stop();
    assert!(rounds > 1, "prune ran {rounds} times");
    // Everything pulled is still referenced, so prune kept it all.
    assert_eq!(verified_blobs(cache.path()).len(), 24);
}

#[test]
fn clear_in_a_loop_never_breaks_a_pull() {
    let server = Arc::new(FakeRegistry::start());
    slow_artifacts(&server, 6, 30_000, Duration::from_millis(1));
    let cache = tempfile::tempdir().unwrap();
    let clearer = Looping::start(
        client_with(&server, cache.path(), TagPolicy::CacheFirst),
        |c| c.cache().clear(),
    );
    // 150 pulls, as many of them downloads as clear makes: none may fail.
    let pullers: Vec<_> = (0..3)
        .map(|t| {
            let (server, cache) = (Arc::clone(&server), cache.path().to_owned());
            std::thread::spawn(move || {
                let mut failed = Vec::new();
                for n in 0..50 {
                    let c = client_with(&server, &cache, TagPolicy::CacheFirst);
                    let reference = format!("{}/{REPO}:v{}", server.host(), (t + n) % 6);
                    if let Err(e) = c.pull(&reference) {
                        failed.push(e.to_string());
                    }
                }
                failed
            })
        })
        .collect();
    let failed: Vec<String> = pullers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    let rounds = clearer.stop();
    assert!(rounds > 1, "clear ran {rounds} times");
    assert!(
        failed.is_empty(),
        "{} of 150 pulls failed: {:?}",
        failed.len(),
        failed.first()
    );
    // And what the last pulls left is sound.
    verified_blobs(cache.path());
}

#[test]
fn a_pin_whose_layer_went_missing_refetches_only_the_blob() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("pinned layer", 4000);
    let m = server.artifact(REPO, "1.0", &payload, |r| r);
    let cache = tempfile::tempdir().unwrap();
    let pinned = format!("{}/{REPO}@{}", server.host(), digest(&m));
    let c = client_with(&server, cache.path(), TagPolicy::CacheFirst);
    let a = c.pull(&pinned).unwrap();
    fs::remove_file(a.path()).unwrap(); // as verify does with a corrupt blob
    assert_eq!(c.pull(&pinned).unwrap().read().unwrap(), payload);
    assert_eq!(
        server.hits("GET", &format!("/v2/{REPO}/manifests/{}", digest(&m))),
        1,
        "the cached manifest is reused"
    );
    assert_eq!(server.hits("GET", &blob_path(&payload)), 2);
}

/// A registry serving `REPO:tag` as a one-layer wasm artifact. Returns the
/// payload and the manifest bytes.
fn serve_artifact(server: &FakeRegistry, tag: &str, payload: &[u8]) -> Vec<u8> {
    let m = manifest(&[(WASM, payload)]);
    server.manifest(REPO, tag, &m, OCI_MANIFEST);
    server.blob(REPO, payload);
    m
}

#[test]
fn pulls_into_the_cache_then_serves_the_tag_with_the_registry_gone() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("fake-wasm-payload", 4096);
    let m = serve_artifact(&server, "v1", &payload);
    let cache = tempfile::tempdir().unwrap();
    let host = server.host().to_owned();
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
    let server = FakeRegistry::start();
    let payload = wasm_payload("shared by two tags", 4096);
    let m = manifest(&[(WASM, &payload)]);
    server.manifest(REPO, "v1", &m, OCI_MANIFEST);
    let blob = server.blob(REPO, &payload);
    let second_tag = server.manifest(REPO, "stable", &m, OCI_MANIFEST);
    let cache = tempfile::tempdir().unwrap();
    let host = server.host().to_owned();
    let client = client(&host, cache.path());

    let first = client.pull(&format!("{host}/{REPO}:v1")).unwrap();
    assert!(!first.from_cache(), "the blob was downloaded");
    // Another tag for the same content: its manifest is fetched, the blob is not.
    let second = client.pull(&format!("{host}/{REPO}:stable")).unwrap();
    assert!(second.from_cache(), "no blob was downloaded");
    assert_eq!(second.read().unwrap(), payload);
    assert_eq!(server.hits("GET", &second_tag), 1);
    assert_eq!(server.hits("GET", &blob), 1);
}

#[test]
fn digest_pinned_reference_is_verified_and_then_needs_no_network() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("pinned", 1000);
    let m = manifest(&[(WASM, &payload)]);
    let pin = digest(&m);
    let by_digest = server.manifest(REPO, &pin, &m, OCI_MANIFEST);
    server.blob(REPO, &payload);
    let cache = tempfile::tempdir().unwrap();
    let host = server.host().to_owned();
    let reference = format!("{host}/{REPO}@{pin}");

    let a = client(&host, cache.path()).pull(&reference).unwrap();
    assert_eq!(a.read().unwrap(), payload);
    assert_eq!(a.manifest_digest().to_string(), pin);
    assert_eq!(server.hits("GET", &by_digest), 1);
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
fn a_pull_that_must_wait_for_a_lock_says_so_then_proceeds() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("locked", 1000);
    serve_artifact(&server, "v1", &payload);
    let cache = tempfile::tempdir().unwrap();
    let host = server.host().to_owned();

    // Another "process" holds the download lock of this blob.
    let locks = cache.path().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let lock_path = locks.join(format!("{}.lock", &digest(&payload)[7..]));
    let mut held = fd_lock::RwLock::new(std::fs::File::create(&lock_path).unwrap());
    let guard = held.write().unwrap();

    let (tx, rx) = std::sync::mpsc::channel();
    let client = isolated(&host, cache.path())
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
