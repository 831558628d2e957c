//! End to end: a real `docker-registry` on 127.0.0.1, the `forge-oci` CLI, and
//! several processes pulling at once.
//!
//! This binary has its own small harness (`harness = false` in Cargo.toml) because
//! the multi-process test re-runs it as a child that calls the one-line API with
//! configuration from the environment. It prints libtest's closing line.
//!
//! `FORGE_OCI_CRASH_ITERATIONS=200 cargo test --test e2e sigkill` is the long
//! version of the crash test (20 kills by default).
//!
//! Without `/usr/bin/docker-registry` (Debian package `docker-registry`) the
//! real-registry tests are skipped with a loud message, except under CI, where
//! they fail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::proxy::RecordingProxy;
use common::registry::Registry;
use common::server::{FakeRegistry, Route};
use common::token_service::{ALICE_PASSWORD, TokenService};
use common::*;
use forge_oci::{Client, Credentials, Error, Network, PruneOptions};

const CHILD_ENV: &str = "FORGE_OCI_E2E_CHILD";

enum Outcome {
    Passed,
    Skipped(String),
}

type TestFn = fn() -> Outcome;

fn main() -> ExitCode {
    if std::env::var_os(CHILD_ENV).is_some() {
        return child_fetch();
    }
    let tests: &[(&str, TestFn)] = &[
        (
            "real_registry_cold_then_warm_with_registry_stopped",
            real_registry_cold_then_warm,
        ),
        ("cli_session_from_the_readme", cli_session_from_the_readme),
        (
            "eight_processes_download_one_blob_once",
            eight_processes_download_once,
        ),
        (
            "sixteen_processes_four_references_each_blob_once",
            sixteen_processes_four_references,
        ),
        (
            "sigkill_at_random_moments_leaves_the_cache_consistent",
            sigkill_at_random_moments,
        ),
        (
            "read_only_cache_serves_hits_and_names_misses",
            read_only_cache,
        ),
        (
            "build_script_pulls_then_builds_offline",
            build_script_pulls_then_builds_offline,
        ),
        (
            "token_auth_registry_public_private_config_helper_and_refusal",
            token_auth_registry,
        ),
        ("htpasswd_registry_basic_challenge", htpasswd_registry),
        (
            "tls_registry_with_a_private_ca",
            tls_registry_with_a_private_ca,
        ),
        (
            "proxies_per_scheme_and_no_proxy",
            proxies_per_scheme_and_no_proxy,
        ),
    ];
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for &(name, test) in tests {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let started = Instant::now();
        match std::panic::catch_unwind(test) {
            Ok(Outcome::Passed) => {
                passed += 1;
                println!(
                    "test {name} ... ok ({:.1}s)",
                    started.elapsed().as_secs_f64()
                );
            }
            Ok(Outcome::Skipped(why)) => {
                skipped += 1;
                println!("test {name} ... ignored");
                eprintln!("\n*** SKIPPED {name}: {why} ***\n");
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED");
            }
        }
    }
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {passed} passed; {failed} failed; {skipped} ignored; 0 measured; 0 filtered out"
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
    std::fs::create_dir_all(out).unwrap();
    Command::new(std::env::current_exe().unwrap())
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

fn real_registry_cold_then_warm() -> Outcome {
    let registry = match Registry::start() {
        Ok(r) => r,
        Err(why) => return Outcome::Skipped(why),
    };
    let payload = wasm_payload("one mebibyte of plugin", 1 << 20);
    let m = registry.push_wasm("plugins/hello", "1.0", &payload);
    let cache = tempfile::tempdir().unwrap();
    let reference = format!("{}/plugins/hello:1.0", registry.host);
    let client = Client::builder()
        .cache_dir(cache.path())
        .insecure_host(&registry.host)
        .build()
        .unwrap();

    let cold = client.pull(&reference).unwrap();
    assert!(!cold.from_cache());
    assert_eq!(cold.read().unwrap(), payload);
    assert_eq!(cold.manifest_digest().to_string(), digest(&m));
    assert_eq!(verified_blobs(cache.path()).len(), 2);

    // Pinned by the digest the registry computed for our manifest.
    let pinned = format!("{}/plugins/hello@{}", registry.host, digest(&m));
    assert_eq!(client.pull(&pinned).unwrap().read().unwrap(), payload);

    drop(registry);
    for r in [&reference, &pinned] {
        let warm = client.pull(r).unwrap();
        assert!(warm.from_cache(), "{r}");
        assert_eq!(warm.read().unwrap(), payload);
    }
    let offline = Client::builder()
        .cache_dir(cache.path())
        .network(Network::Offline)
        .build()
        .unwrap();
    assert!(offline.pull(&reference).unwrap().from_cache());
    Outcome::Passed
}

fn forge_oci(cache: &Path, host: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge-oci"));
    cmd.env("FORGE_CACHE_DIR", cache)
        .env("FORGE_OCI_INSECURE_HOSTS", host)
        .env_remove("FORGE_OFFLINE")
        .env_remove("CARGO_NET_OFFLINE");
    cmd
}

/// The shell session the README shows, command by command.
fn cli_session_from_the_readme() -> Outcome {
    let registry = match Registry::start() {
        Ok(r) => r,
        Err(why) => return Outcome::Skipped(why),
    };
    let payload = wasm_payload("cli", 64 << 10);
    registry.push_wasm("plugins/hello", "1.0", &payload);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let reference = format!("{}/plugins/hello:1.0", registry.host);

    let out = work.path().join("hello.wasm");
    let status = forge_oci(&cache, &registry.host)
        .args(["pull", &reference, "-o"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read(&out).unwrap(), payload);

    // Without -o the cached path is printed.
    let printed = forge_oci(&cache, &registry.host)
        .args(["pull", &reference])
        .output()
        .unwrap();
    assert!(printed.status.success());
    let path = PathBuf::from(String::from_utf8(printed.stdout).unwrap().trim());
    assert!(
        path.starts_with(cache.join("openapi-forge/plugins/blobs/sha256")),
        "{}",
        path.display()
    );
    assert_eq!(std::fs::read(&path).unwrap(), payload);

    // `-o -` writes the bytes to stdout; --offline works from the cache.
    drop(registry);
    let stdout = forge_oci(&cache, "")
        .args(["pull", &reference, "--offline", "-o", "-"])
        .output()
        .unwrap();
    assert!(stdout.status.success());
    assert_eq!(stdout.stdout, payload);

    // A runtime error exits 1 with `error:` and the cause; a usage error exits 2.
    let miss = forge_oci(&cache, "")
        .args(["pull", "--offline", "127.0.0.1:1/plugins/absent:1.0"])
        .output()
        .unwrap();
    assert_eq!(miss.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&miss.stderr);
    assert!(
        stderr.starts_with("error: 127.0.0.1:1/plugins/absent:1.0 is not in the cache"),
        "{stderr}"
    );
    let usage = forge_oci(&cache, "").args(["pull"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("usage: forge-oci pull"));
    Outcome::Passed
}

/// Eight processes pull one uncached reference at the same moment; the blob is
/// served slowly so they all contend. Exactly one blob GET reaches the server.
fn eight_processes_download_once() -> Outcome {
    let mut server = mockito::Server::new();
    let payload = Arc::new(wasm_payload("shared by eight", 2 << 20));
    let m = manifest(&[(WASM, &payload)]);
    mock_manifest(&mut server, "race/plugin", "1.0", &m, OCI_MANIFEST);
    let blob_gets = Arc::new(AtomicUsize::new(0));
    let (gets, body) = (Arc::clone(&blob_gets), Arc::clone(&payload));
    let blob = server
        .mock(
            "GET",
            format!("/v2/race/plugin/blobs/{}", digest(&payload)).as_str(),
        )
        .with_status(200)
        .with_chunked_body(move |w| {
            gets.fetch_add(1, Ordering::SeqCst);
            for chunk in body.chunks(32 << 10) {
                w.write_all(chunk)?;
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(())
        })
        .create();
    let host = server.host_with_port();
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
            *payload,
            "{}",
            out.display()
        );
    }
    assert_eq!(
        blob_gets.load(Ordering::SeqCst),
        1,
        "the blob must be downloaded exactly once"
    );
    blob.assert();
    let root = work.path().join("openapi-forge/plugins");
    assert_eq!(verified_blobs(&root).len(), 2);
    assert_eq!(temp_files(&root), 0);
    Outcome::Passed
}

/// 16 processes start at once, each pulling two references all of them share and
/// two of its own. Every blob crosses the network exactly once.
fn sixteen_processes_four_references() -> Outcome {
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
    Outcome::Passed
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
fn sigkill_at_random_moments() -> Outcome {
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
    let client = Client::builder()
        .cache_dir(&root)
        .insecure_host(&host)
        .build()
        .unwrap();
    std::thread::scope(|scope| {
        for a in 0..artifacts {
            let (client, host) = (&client, &host);
            scope.spawn(move || {
                let artifact = client.pull(&format!("{host}/crash/plugin:a{a}")).unwrap();
                assert_eq!(artifact.read().unwrap(), payload(a), "artifact {a}");
            });
        }
    });
    assert!(client.cache().verify().unwrap().corrupt.is_empty());
    client.cache().prune(&PruneOptions::default()).unwrap();
    assert_eq!(temp_files(&root), 0, "prune removes what the kills left");
    Outcome::Passed
}

/// A cache this user cannot write still serves what it holds, with no lock, and a
/// miss says the cache is read-only. As root (CI), the reader is `nobody` via
/// setpriv; otherwise the cache is made read-only with chmod.
fn read_only_cache() -> Outcome {
    let server = FakeRegistry::start();
    let payload = wasm_payload("read only", 100_000);
    server.artifact("ro/plugin", "1.0", &payload, |r| r);
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("cache");
    let host = server.host().to_owned();
    let hit = format!("{host}/ro/plugin:1.0");
    let miss = format!("{host}/ro/plugin:2.0");
    Client::builder()
        .cache_dir(&root)
        .insecure_host(&host)
        .build()
        .unwrap()
        .pull(&hit)
        .unwrap();
    let before = server.connections();

    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    if is_root && Command::new("setpriv").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the read-only test: setpriv is missing"
        );
        return Outcome::Skipped("running as root without setpriv (util-linux)".into());
    }
    // As nobody: the temp dir (0700) must be enterable, and the binary reachable
    // wherever CI cloned the repository (maybe under a 0700 home): run a copy.
    set_mode(work.path(), 0o755);
    let exe = work.path().join("forge-oci");
    std::fs::copy(env!("CARGO_BIN_EXE_forge-oci"), &exe).unwrap();
    set_mode(&exe, 0o755);
    if !is_root {
        chmod_tree(&root, false);
    }
    let run = |reference: &str| {
        let mut cmd = if is_root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(["pull", reference, "-o", "-", "--cache-dir"])
            .arg(&root)
            .args(["--insecure", &host]);
        cmd.output().unwrap()
    };
    let got = run(&hit);
    assert!(
        got.status.success(),
        "hit failed: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(got.stdout, payload);
    let missed = run(&miss);
    let stderr = String::from_utf8_lossy(&missed.stderr);
    assert_eq!(missed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{miss} is not in the cache and the cache is read-only"
        )),
        "{stderr}"
    );
    assert_eq!(
        server.connections(),
        before,
        "a read-only miss fails before any request"
    );
    if !is_root {
        chmod_tree(&root, true);
    }
    Outcome::Passed
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chmod_tree(dir: &Path, writable: bool) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            chmod_tree(&path, writable);
        } else {
            set_mode(&path, if writable { 0o644 } else { 0o444 });
        }
    }
    set_mode(dir, if writable { 0o755 } else { 0o555 });
}

/// `tests/build-script` is a crate whose build.rs calls `forge_oci::build`. Build
/// it with cargo against a real registry; stop the registry and build again with
/// CARGO_NET_OFFLINE=true (the build script reruns: the variable changed); then ask
/// for an uncached reference offline and read the error cargo shows.
fn build_script_pulls_then_builds_offline() -> Outcome {
    let registry = match Registry::start() {
        Ok(r) => r,
        Err(why) => return Outcome::Skipped(why),
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
    let cargo_run = |reference: &str, offline: bool| {
        // The script reads the reference from this file: a change to it must rerun
        // the script although it prints rerun-if-env-changed lines.
        std::fs::write(krate.join("plugin.ref"), reference).unwrap();
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["run", "--quiet"])
            .current_dir(&krate)
            // Its own target dir: ours is locked by the cargo running this test.
            .env("CARGO_TARGET_DIR", here.join("target/build-script-test"))
            .env("FORGE_CACHE_DIR", &cache)
            .env("FORGE_OCI_INSECURE_HOSTS", &host)
            .env_remove("FORGE_OFFLINE");
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
    let online = cargo_run(&reference, false);
    assert!(
        online.status.success(),
        "online build failed:\n{}",
        String::from_utf8_lossy(&online.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&online.stdout), expected);

    drop(registry);
    let offline = cargo_run(&reference, true);
    assert!(
        offline.status.success(),
        "offline build failed:\n{}",
        String::from_utf8_lossy(&offline.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&offline.stdout), expected);

    let missing = cargo_run(&format!("{host}/plugins/build:2.0"), true);
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
    Outcome::Passed
}

/// docker-registry in `auth: token` mode with a token service that signs JWTs with
/// a key made now: a public repository pulls anonymously; a private one with
/// credentials from a docker config file and from a credential helper; wrong
/// credentials are refused on the private one and fall back to anonymous on the
/// public one.
fn token_auth_registry() -> Outcome {
    let work = tempfile::tempdir().unwrap();
    let tokens = match TokenService::start(work.path()) {
        Ok(t) => t,
        Err(why) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the token-auth test: {why}"
            );
            return Outcome::Skipped(why);
        }
    };
    let registry = match Registry::start_with(&tokens.registry_config()) {
        Ok(r) => r,
        Err(why) => return Outcome::Skipped(why),
    };
    let host = registry.host.clone();
    let public = wasm_payload("public plugin", 100_000);
    let private = wasm_payload("private plugin", 100_000);
    registry.push_wasm_as(
        "public/plugin",
        "1.0",
        &public,
        Some(&tokens.push_token("public/plugin")),
    );
    registry.push_wasm_as(
        "private/plugin",
        "1.0",
        &private,
        Some(&tokens.push_token("private/plugin")),
    );
    let (public_ref, private_ref) = (
        format!("{host}/public/plugin:1.0"),
        format!("{host}/private/plugin:1.0"),
    );
    // The token service is plain HTTP on its own port: credentials go there only
    // once it too is marked insecure (checked first, then marked).
    let strict = Client::builder()
        .cache_dir(work.path().join("strict"))
        .insecure_host(&host)
        .credentials(&host, Credentials::basic("alice", ALICE_PASSWORD))
        .build()
        .unwrap();
    let err = strict
        .pull(&format!("{host}/private/plugin:1.0"))
        .unwrap_err();
    assert!(
        err.to_string().contains("were not sent") && err.to_string().contains(&tokens.host),
        "{err}"
    );
    let client = |cache: &str| {
        Client::builder()
            .cache_dir(work.path().join(cache))
            .insecure_host(&host)
            .insecure_host(&tokens.host)
            .docker_config_dir(work.path().join("no-docker-config"))
            .auth_files([])
    };

    assert_eq!(
        client("anon")
            .build()
            .unwrap()
            .pull(&public_ref)
            .unwrap()
            .read()
            .unwrap(),
        public
    );
    let err = client("anon")
        .build()
        .unwrap()
        .pull(&private_ref)
        .unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { .. } | Error::Denied { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!("docker login {host}")),
        "{err}"
    );

    // Credentials from a docker config file.
    let docker = work.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let auth = basic_auth("alice", ALICE_PASSWORD);
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths":{{"{host}":{{"auth":"{}"}}}}}}"#,
            auth.trim_start_matches("Basic ")
        ),
    )
    .unwrap();
    let c = client("config").docker_config_dir(&docker).build().unwrap();
    assert_eq!(c.pull(&private_ref).unwrap().read().unwrap(), private);

    // Credentials from a helper on PATH, through the CLI as a user would run it.
    let bin = work.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-testhelper");
    std::fs::write(
        &helper,
        format!("#!/bin/sh\nread server\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"{ALICE_PASSWORD}\"}}' \"$server\"\n"),
    )
    .unwrap();
    set_mode(&helper, 0o755);
    let helper_config = work.path().join("helper-config");
    std::fs::create_dir_all(&helper_config).unwrap();
    std::fs::write(
        helper_config.join("config.json"),
        format!(r#"{{"credHelpers":{{"{host}":"testhelper"}}}}"#),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_forge-oci"))
        .args([
            "pull",
            &private_ref,
            "-o",
            "-",
            "--insecure",
            &host,
            "--insecure",
            &tokens.host,
            "--cache-dir",
        ])
        .arg(work.path().join("helper-cache"))
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("DOCKER_CONFIG", &helper_config)
        .env("REGISTRY_AUTH_FILE", work.path().join("none.json"))
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, private);

    // Wrong credentials: refused on the private repository, naming their source;
    // the public one still pulls (anonymously).
    let wrong =
        || client("wrong").credentials(&host, Credentials::basic("alice", "not-the-password"));
    let err = wrong().build().unwrap().pull(&private_ref).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("ClientBuilder::credentials") && msg.contains("rejected"),
        "{msg}"
    );
    assert!(!msg.contains("not-the-password"), "{msg}");
    assert_eq!(
        wrong()
            .build()
            .unwrap()
            .pull(&public_ref)
            .unwrap()
            .read()
            .unwrap(),
        public
    );
    assert!(tokens.requests() > 0);
    Outcome::Passed
}

/// A bcrypt htpasswd line: `htpasswd` (apache2-utils, which CI installs) when
/// present, else Python's crypt module.
fn htpasswd_line(user: &str, password: &str) -> Result<String, String> {
    if let Ok(out) = Command::new("htpasswd")
        .args(["-nbB", user, password])
        .output()
    {
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned());
        }
    }
    let script = format!(
        "import crypt; print(crypt.crypt({password:?}, crypt.mksalt(crypt.METHOD_BLOWFISH)))"
    );
    let out = Command::new("python3")
        .args(["-W", "ignore", "-c", &script])
        .output()
        .map_err(|e| format!("no htpasswd and no python3: {e}"))?;
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || !hash.starts_with("$2") {
        return Err("cannot make a bcrypt hash: install apache2-utils".into());
    }
    Ok(format!("{user}:{hash}"))
}

/// docker-registry with `auth: htpasswd`: a Basic challenge. No credentials is a
/// refusal with login advice; the right ones pull; wrong ones are rejected, named.
fn htpasswd_registry() -> Outcome {
    let work = tempfile::tempdir().unwrap();
    let line = match htpasswd_line("bob", "bob-s3cret-password") {
        Ok(l) => l,
        Err(why) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the htpasswd test: {why}"
            );
            return Outcome::Skipped(why);
        }
    };
    let file = work.path().join("htpasswd");
    std::fs::write(&file, format!("{line}\n")).unwrap();
    let config = format!(
        "auth:\n  htpasswd:\n    realm: forge-test\n    path: {}\n",
        file.display()
    );
    let registry = match Registry::start_with(&config) {
        Ok(r) => r,
        Err(why) => return Outcome::Skipped(why),
    };
    let host = registry.host.clone();
    let payload = wasm_payload("behind htpasswd", 50_000);
    registry.push_wasm_as(
        "team/plugin",
        "1.0",
        &payload,
        Some(&basic_auth("bob", "bob-s3cret-password")),
    );
    let reference = format!("{host}/team/plugin:1.0");
    let client = |credentials: Option<Credentials>| {
        let mut b = Client::builder()
            .cache_dir(work.path().join("cache"))
            .insecure_host(&host)
            .docker_config_dir(work.path().join("no-docker-config"))
            .auth_files([]);
        if let Some(c) = credentials {
            b = b.credentials(&host, c);
        }
        b.build().unwrap()
    };
    let err = client(None).pull(&reference).unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { .. }) && err.to_string().contains("docker login"),
        "{err}"
    );
    let wrong = client(Some(Credentials::basic("bob", "wrong")))
        .pull(&reference)
        .unwrap_err();
    assert!(
        wrong
            .to_string()
            .contains("ClientBuilder::credentials were rejected"),
        "{wrong}"
    );
    let right = client(Some(Credentials::basic("bob", "bob-s3cret-password")));
    assert_eq!(right.pull(&reference).unwrap().read().unwrap(), payload);
    Outcome::Passed
}

/// A test CA and a certificate for 127.0.0.1 signed by it, made now.
fn make_ca(dir: &Path) -> Result<(), String> {
    let subj = |cn: &str| format!("/CN={cn}");
    common::self_signed(dir, "forge-oci test CA", "ca.key", "ca.pem")?;
    common::openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &subj("127.0.0.1"),
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    )?;
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    common::openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ],
    )
}

/// docker-registry over HTTPS with a certificate from a CA made now: trusted through
/// ClientBuilder::root_certificate and through SSL_CERT_FILE; refused otherwise.
fn tls_registry_with_a_private_ca() -> Outcome {
    let work = tempfile::tempdir().unwrap();
    if let Err(why) = make_ca(work.path()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the TLS test: {why}"
        );
        return Outcome::Skipped(why);
    }
    let data = work.path().join("data");
    let payload = wasm_payload("over tls", 40_000);
    {
        // Push over plain HTTP, then serve the same storage over TLS.
        let plain = match Registry::start_in(Some(&data), "") {
            Ok(r) => r,
            Err(why) => return Outcome::Skipped(why),
        };
        plain.push_wasm("secure/plugin", "1.0", &payload);
    }
    let tls = format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        work.path().join("server.pem").display(),
        work.path().join("server.key").display()
    );
    let registry = Registry::start_in(Some(&data), &tls).unwrap();
    let reference = format!("{}/secure/plugin:1.0", registry.host);
    let ca = std::fs::read(work.path().join("ca.pem")).unwrap();
    let client = |cache: &str| {
        Client::builder()
            .cache_dir(work.path().join(cache))
            .retries(0)
    };

    let err = client("untrusted")
        .build()
        .unwrap()
        .pull(&reference)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Transport { host, .. } if *host == registry.host),
        "{err:?}"
    );

    // A certificate that does not verify fails at once, retries allowed or not:
    // trying again cannot change it. A proxy counts the connections.
    let proxy = RecordingProxy::start();
    let tunnels = |host: &str| {
        let connect = format!("CONNECT {host} ");
        proxy
            .seen()
            .iter()
            .filter(|l| l.starts_with(&connect))
            .count()
    };
    let by_name = reference.replacen("127.0.0.1", "localhost", 1);
    let localhost = registry.host.replacen("127.0.0.1", "localhost", 1);
    for (cache, trusted, reference, host, why) in [
        (
            "unknown-issuer",
            None,
            &reference,
            &registry.host,
            "UnknownIssuer",
        ),
        // The certificate names 127.0.0.1, not localhost.
        (
            "misnamed",
            Some(ca.clone()),
            &by_name,
            &localhost,
            "not valid for name",
        ),
    ] {
        let mut builder = client(cache).retries(3).proxy(Some(&proxy.url));
        if let Some(ca) = trusted {
            builder = builder.root_certificate(ca);
        }
        let started = Instant::now();
        let err = builder.build().unwrap().pull(reference).unwrap_err();
        let cause = std::error::Error::source(&err).map(ToString::to_string);
        assert!(
            matches!(&err, Error::Transport { host: h, .. } if h == host)
                && cause.as_deref().is_some_and(|c| c.contains(why)),
            "{err:?}"
        );
        assert_eq!(tunnels(host), 1, "{cache}: {:?}", proxy.seen());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{cache}: retried"
        );
    }

    let trusted = client("trusted").root_certificate(ca).build().unwrap();
    assert_eq!(trusted.pull(&reference).unwrap().read().unwrap(), payload);

    let out = Command::new(env!("CARGO_BIN_EXE_forge-oci"))
        .args(["pull", &reference, "-o", "-", "--cache-dir"])
        .arg(work.path().join("env-cache"))
        .env("SSL_CERT_FILE", work.path().join("ca.pem"))
        .env_remove("FORGE_OCI_INSECURE_HOSTS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, payload);
    Outcome::Passed
}

/// http_proxy carries http:// requests (through a proxy that records them);
/// NO_PROXY bypasses it; an HTTPS_PROXY does not capture http:// requests (ureq
/// alone would send them there). Which variable wins where is compared with curl
/// in tests/network.rs.
fn proxies_per_scheme_and_no_proxy() -> Outcome {
    let server = FakeRegistry::start();
    let payload = wasm_payload("proxied", 20_000);
    server.artifact("via/proxy", "1.0", &payload, |r| r);
    let proxy = RecordingProxy::start();
    let host = server.host().to_owned();
    let work = tempfile::tempdir().unwrap();
    let pull = |cache: &str, env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge-oci"));
        cmd.args([
            "pull",
            &format!("{host}/via/proxy:1.0"),
            "-o",
            "-",
            "--insecure",
            &host,
            "--cache-dir",
        ])
        .arg(work.path().join(cache));
        common::proxy::without_proxies(&mut cmd).envs(env.iter().copied());
        cmd.output().unwrap()
    };

    let out = pull("proxied", &[("http_proxy", &proxy.url)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, payload);
    // ureq tunnels through the proxy with CONNECT even for http:// URLs: one tunnel
    // per connection (manifest, blob).
    let seen = proxy.seen();
    let tunnels = seen
        .iter()
        .filter(|l| **l == format!("CONNECT {host} HTTP/1.1"))
        .count();
    assert!(tunnels >= 2, "{seen:?}");

    let before = proxy.seen().len();
    let out = pull(
        "bypassed",
        &[
            ("http_proxy", &proxy.url),
            ("NO_PROXY", "localhost,127.0.0.1"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(proxy.seen().len(), before, "NO_PROXY must bypass the proxy");

    let dead = format!("http://127.0.0.1:{}", common::registry::free_port());
    let out = pull("https-proxy-only", &[("HTTPS_PROXY", &dead)]);
    assert!(
        out.status.success(),
        "an https proxy must not carry http requests: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, payload);
    Outcome::Passed
}
