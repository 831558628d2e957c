//! Several processes at once: pulls racing for the same blobs, and pulls killed
//! with SIGKILL at random moments.
//!
//! This binary has its own small harness (`harness = false` in Cargo.toml) because
//! each test re-runs it as a child that calls the one-line API with configuration
//! from the environment. It prints libtest's closing line.
//!
//! `FORGE_OCI_CRASH_ITERATIONS=200 cargo test --test processes sigkill` is the long
//! version of the crash test (20 kills by default).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use common::registry::Registry;
use common::server::{FakeRegistry, Route};
use common::*;
use forge_oci::PruneOptions;

const CHILD_ENV: &str = "FORGE_OCI_E2E_CHILD";

fn main() -> ExitCode {
    if std::env::var_os(CHILD_ENV).is_some() {
        return child_fetch();
    }
    let tests: &[(&str, fn())] = &[
        (
            "eight_processes_download_one_blob_once",
            eight_processes_download_once,
        ),
        (
            "sixteen_processes_four_references_each_blob_once",
            sixteen_processes_four_references,
        ),
        (
            "four_processes_pull_all_at_once_each_blob_once",
            four_processes_pull_all_at_once,
        ),
        (
            "sigkill_at_random_moments_leaves_the_cache_consistent",
            sigkill_at_random_moments,
        ),
        (
            "sixteen_runners_through_a_pull_through_cache_add_no_upstream_fetch",
            sixteen_runners_through_a_pull_through_cache,
        ),
    ];
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (mut passed, mut failed) = (0, 0);
    for &(name, test) in tests {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let started = Instant::now();
        if std::panic::catch_unwind(test).is_ok() {
            passed += 1;
            println!(
                "test {name} ... ok ({:.1}s)",
                started.elapsed().as_secs_f64()
            );
        } else {
            failed += 1;
            println!("test {name} ... FAILED");
        }
    }
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {passed} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out"
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Child mode: the one-line API, configured only by the environment, for each
/// reference in `CHILD_REFS` (comma-separated); the bytes go to `CHILD_OUT/<n>`.
fn child_fetch() -> ExitCode {
    let references = std::env::var("CHILD_REFS").unwrap();
    let out = PathBuf::from(std::env::var("CHILD_OUT").unwrap());
    if std::env::var_os("CHILD_PULL_ALL").is_some() {
        let refs: Vec<&str> = references.split(',').collect();
        let client = forge_oci::Client::builder().jobs(4).build().unwrap();
        for (i, result) in client.pull_all(&refs).into_iter().enumerate() {
            match result.and_then(|a| a.read()) {
                Ok(bytes) => std::fs::write(out.join(i.to_string()), bytes).unwrap(),
                Err(e) => {
                    eprintln!("child error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        return ExitCode::SUCCESS;
    }
    for (i, reference) in references.split(',').enumerate() {
        match forge_oci::fetch_to_bytes(reference) {
            Ok(bytes) => std::fs::write(out.join(i.to_string()), bytes).unwrap(),
            Err(e) => {
                eprintln!("child error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// Starts this binary as a child pulling `references` into the cache under `cache_base`.
fn spawn_child(references: &[String], out: &Path, cache_base: &Path, insecure: &str) -> Child {
    spawn_child_with(references, out, cache_base, insecure, &[])
}

/// [`spawn_child`] with more variables set (`FORGE_OCI_MIRRORS`, say).
fn spawn_child_with(
    references: &[String],
    out: &Path,
    cache_base: &Path,
    insecure: &str,
    env: &[(&str, &str)],
) -> Child {
    std::fs::create_dir_all(out).unwrap();
    Command::new(std::env::current_exe().unwrap())
        .envs(env.iter().copied())
        .env(CHILD_ENV, "1")
        .env("CHILD_REFS", references.join(","))
        .env("CHILD_OUT", out)
        .env("FORGE_CACHE_DIR", cache_base)
        .env("FORGE_OCI_INSECURE_HOSTS", insecure)
        .env_remove("FORGE_OFFLINE")
        .env_remove("CARGO_NET_OFFLINE")
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Four processes each pull the same six references with `pull_all` (four
/// threads each) at the same moment: 24 pulls race for six blobs, in threads and
/// in processes, and each blob crosses the network once.
fn four_processes_pull_all_at_once() {
    let server = FakeRegistry::start();
    let slow = |r: Route| r.slow(32 << 10, Duration::from_millis(3));
    let payloads: Vec<Vec<u8>> = (0..6)
        .map(|i| wasm_payload(&format!("pulled by all {i}"), 384 << 10))
        .collect();
    for (i, p) in payloads.iter().enumerate() {
        server.artifact("all/plugins", &format!("p{i}"), p, slow);
    }
    let work = tempfile::tempdir().unwrap();
    let host = server.host().to_owned();
    let refs: Vec<String> = (0..6).map(|i| format!("{host}/all/plugins:p{i}")).collect();
    let children: Vec<(PathBuf, Child)> = (0..4)
        .map(|n| {
            let out = work.path().join(format!("out-{n}"));
            std::fs::create_dir_all(&out).unwrap();
            let child = Command::new(std::env::current_exe().unwrap())
                .env(CHILD_ENV, "1")
                .env("CHILD_PULL_ALL", "1")
                .env("CHILD_REFS", refs.join(","))
                .env("CHILD_OUT", &out)
                .env("FORGE_CACHE_DIR", work.path())
                .env("FORGE_OCI_INSECURE_HOSTS", &host)
                .env_remove("FORGE_OFFLINE")
                .env_remove("CARGO_NET_OFFLINE")
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            (out, child)
        })
        .collect();
    for (out, mut child) in children {
        assert!(child.wait().unwrap().success(), "a child failed");
        for (i, p) in payloads.iter().enumerate() {
            assert_eq!(&std::fs::read(out.join(i.to_string())).unwrap(), p);
        }
    }
    for p in &payloads {
        assert_eq!(
            server.hits("GET", &format!("/v2/all/plugins/blobs/{}", digest(p))),
            1,
            "each blob downloaded once"
        );
    }
    let root = work.path().join("openapi-forge/plugins");
    assert_eq!(verified_blobs(&root).len(), 2 * 6);
    assert_eq!(temp_files(&root), 0);
}

/// Eight processes pull one uncached reference at the same moment; the blob is
/// served slowly so they all contend. Exactly one blob GET reaches the server.
fn eight_processes_download_once() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("shared by eight", 2 << 20);
    let m = manifest(&[(WASM, &payload)]);
    server.manifest("race/plugin", "1.0", &m, OCI_MANIFEST);
    let blob = format!("/v2/race/plugin/blobs/{}", digest(&payload));
    server.route(
        &blob,
        Route::ok(payload.clone()).slow(32 << 10, Duration::from_millis(10)),
    );
    let host = server.host().to_owned();
    let work = tempfile::tempdir().unwrap();
    let reference = format!("{host}/race/plugin:1.0");

    let children: Vec<(PathBuf, Child)> = (0..8)
        .map(|i| {
            let out = work.path().join(format!("out-{i}"));
            let child = spawn_child(std::slice::from_ref(&reference), &out, work.path(), &host);
            (out, child)
        })
        .collect();
    for (out, mut child) in children {
        assert!(child.wait().unwrap().success(), "a child failed");
        assert_eq!(
            std::fs::read(out.join("0")).unwrap(),
            payload,
            "{}",
            out.display()
        );
    }
    assert_eq!(
        server.hits("GET", &blob),
        1,
        "the blob must be downloaded exactly once"
    );
    let root = work.path().join("openapi-forge/plugins");
    assert_eq!(verified_blobs(&root).len(), 2);
    assert_eq!(temp_files(&root), 0);
}

/// 16 processes start at once, each pulling two references all of them share and
/// two of its own. Every blob crosses the network exactly once.
fn sixteen_processes_four_references() {
    let server = FakeRegistry::start();
    let slow = |r: Route| r.slow(32 << 10, Duration::from_millis(4));
    let shared: Vec<Vec<u8>> = (0..2)
        .map(|i| wasm_payload(&format!("shared {i}"), 512 << 10))
        .collect();
    for (i, p) in shared.iter().enumerate() {
        server.artifact("fleet/shared", &format!("s{i}"), p, slow);
    }
    let own = |n: usize, j: usize| wasm_payload(&format!("process {n} own {j}"), 256 << 10);
    for n in 0..16 {
        for j in 0..2 {
            server.artifact("fleet/own", &format!("p{n}-{j}"), &own(n, j), slow);
        }
    }
    let work = tempfile::tempdir().unwrap();
    let host = server.host().to_owned();
    let children: Vec<(usize, PathBuf, Child)> = (0..16)
        .map(|n| {
            let refs = vec![
                format!("{host}/fleet/shared:s0"),
                format!("{host}/fleet/own:p{n}-0"),
                format!("{host}/fleet/shared:s1"),
                format!("{host}/fleet/own:p{n}-1"),
            ];
            let out = work.path().join(format!("out-{n}"));
            let child = spawn_child(&refs, &out, work.path(), &host);
            (n, out, child)
        })
        .collect();
    for (n, out, mut child) in children {
        assert!(child.wait().unwrap().success(), "process {n} failed");
        let expected = [&shared[0], &own(n, 0), &shared[1], &own(n, 1)];
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(
                &std::fs::read(out.join(i.to_string())).unwrap(),
                *want,
                "process {n} reference {i}"
            );
        }
    }
    for p in &shared {
        assert_eq!(
            server.hits("GET", &format!("/v2/fleet/shared/blobs/{}", digest(p))),
            1
        );
    }
    for n in 0..16 {
        for j in 0..2 {
            assert_eq!(
                server.hits(
                    "GET",
                    &format!("/v2/fleet/own/blobs/{}", digest(&own(n, j)))
                ),
                1
            );
        }
    }
    let root = work.path().join("openapi-forge/plugins");
    assert_eq!(verified_blobs(&root).len(), 2 * (2 + 32));
    assert_eq!(temp_files(&root), 0);
}

/// xorshift64: reproducible randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A child pulling a 2 MiB blob from a slow server is killed with SIGKILL at a
/// random moment, again and again. Each artifact is attacked three times, so
/// kills land at different stages of its download (a killed writer's own file is
/// not resumed: see `cache/commit.rs`; tests/crash.rs kills at each system call). After every kill,
/// `blobs/` holds only files that hash to their names; at the end every
/// artifact pulls correctly and prune leaves no temporary file behind.
fn sigkill_at_random_moments() {
    let iterations: usize = std::env::var("FORGE_OCI_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed = std::env::var("FORGE_OCI_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("sigkill test: {iterations} kills, FORGE_OCI_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let server = FakeRegistry::start();
    let host = server.host().to_owned();
    let artifacts = iterations.div_ceil(3);
    let payload = |a: usize| wasm_payload(&format!("crash target {a}"), 2 << 20);
    for a in 0..artifacts {
        server.artifact("crash/plugin", &format!("a{a}"), &payload(a), |r| {
            r.slow(32 << 10, Duration::from_millis(8)).ranges()
        });
    }
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("openapi-forge/plugins");
    let out = work.path().join("out");
    let mut killed_mid_pull = 0;
    for i in 0..iterations {
        let reference = format!("{host}/crash/plugin:a{}", i / 3);
        let mut child = spawn_child(&[reference], &out, work.path(), &host);
        std::thread::sleep(Duration::from_millis(rng.below(450)));
        if child.try_wait().unwrap().is_none() {
            killed_mid_pull += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        verified_blobs(&root); // panics on any file that does not hash to its name
    }
    eprintln!("sigkill test: {killed_mid_pull} of {iterations} kills hit a running pull");
    assert!(
        killed_mid_pull > 0,
        "no kill landed while a pull was running"
    );
    let client = client(&host, &root);
    std::thread::scope(|scope| {
        for a in 0..artifacts {
            let (client, host) = (&client, &host);
            scope.spawn(move || {
                let artifact = client.pull(&format!("{host}/crash/plugin:a{a}")).unwrap();
                assert_eq!(artifact.read().unwrap(), payload(a), "artifact {a}");
            });
        }
    });
    assert!(client.cache().verify().unwrap().corrupt().is_empty());
    client.cache().prune(&PruneOptions::default()).unwrap();
    assert_eq!(temp_files(&root), 0, "prune removes what the kills left");
}

/// A CI fleet behind a pull-through cache: Debian's `docker-registry` upstream
/// (access log on) and a second one in `proxy` mode in front of it, named in
/// `FORGE_OCI_MIRRORS`. One runner warms the proxy; then 16 runners, each with its
/// own cache, pull the same reference at once. All get the right bytes, the
/// upstream is asked for the blob by no one new, and everything it ever saw came
/// from the proxy's own Go client, nothing from forge-oci.
fn sixteen_runners_through_a_pull_through_cache() {
    let upstream = match Registry::start_logging("") {
        Ok(r) => r,
        Err(why) => return skip("sixteen_runners_through_a_pull_through_cache", &why),
    };
    let proxy =
        Registry::start_with(&format!("proxy:\n  remoteurl: http://{}\n", upstream.host)).unwrap();
    let payload = wasm_payload("one plugin for the whole fleet", 1 << 20);
    upstream.push_wasm("fleet/plugin", "1.0", &payload);
    let pushes = upstream.access_log().len();
    let reference = format!("{}/fleet/plugin:1.0", upstream.host);
    let blob_get = format!("\"GET /v2/fleet/plugin/blobs/{}", digest(&payload));
    let mirrors = format!("{}={}", upstream.host, proxy.host);
    let insecure = format!("{},{}", upstream.host, proxy.host);
    let work = tempfile::tempdir().unwrap();
    let runner = |name: &str| {
        let out = work.path().join(format!("out-{name}"));
        let child = spawn_child_with(
            std::slice::from_ref(&reference),
            &out,
            &work.path().join(format!("runner-{name}")),
            &insecure,
            &[("FORGE_OCI_MIRRORS", mirrors.as_str())],
        );
        (out, child)
    };
    let finish = |(out, mut child): (PathBuf, Child)| {
        assert!(child.wait().unwrap().success(), "a runner failed");
        assert_eq!(std::fs::read(out.join("0")).unwrap(), payload);
    };
    let blob_gets = || {
        upstream
            .access_log()
            .iter()
            .filter(|l| l.contains(&blob_get))
            .count()
    };
    finish(runner("warm"));
    // docker-registry 2.8 fetches a cold blob twice (a stream to the client, one
    // to store it); let the second finish before counting, if it has not.
    let settle = Instant::now() + Duration::from_secs(10);
    while blob_gets() < 2 && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(50));
    }
    let warmed = blob_gets();
    assert!(warmed >= 1, "the proxy fetched the blob from upstream");
    let runners: Vec<_> = (0..16).map(|n| runner(&n.to_string())).collect();
    runners.into_iter().for_each(finish);
    assert_eq!(
        blob_gets(),
        warmed,
        "16 runners added no upstream blob fetch"
    );
    let log = upstream.access_log();
    let pulls = &log[pushes..];
    assert!(!pulls.is_empty());
    for line in pulls {
        assert!(line.contains("Go-http-client"), "not the proxy: {line}");
        assert!(
            !line.contains("forge-oci/"),
            "a runner reached upstream: {line}"
        );
    }
}
