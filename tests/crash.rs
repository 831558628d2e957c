//! The cache's promise under crashes and broken locks, proven with the real CLI
//! run under `strace` (Debian's; `.ci/run` installs it):
//! - a pull killed at each write, fsync, truncate, chmod, mkdir, rename and
//!   unlink it makes, one kill point per run, leaves `blobs/` holding only files
//!   that hash to their names, and the next pull and `cache verify` succeed;
//! - many pulls of one blob at once with `flock` failing with `ENOLCK` (as on
//!   NFS without lockd) all return the right bytes and leave no bad blob.
//!
//! Without strace these tests are skipped with a loud message, except in CI
//! (`CI` set), where a missing strace is a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::server::{FakeRegistry, Route};
use common::*;

const REPO: &str = "crash/plugin";

/// The system calls a kill is injected at: every one that changes the file system.
const KILL_AT: &[&str] = &[
    "write",
    "pwrite64",
    "fsync",
    "fdatasync",
    "ftruncate",
    "fchmod",
    "mkdir",
    "mkdirat",
    "rename",
    "renameat",
    "renameat2",
    "unlink",
    "unlinkat",
];

/// `Some(path)` to strace, or `None` after saying loudly why the test is skipped.
fn strace() -> Option<&'static str> {
    let works = Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return Some("strace");
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "strace is missing in CI: .ci/run must install it"
    );
    eprintln!("\n*** SKIPPED: strace is not installed (apt-get install strace) ***\n");
    None
}

/// A fake registry serving `tag` as an index whose wasm platform leads to a
/// manifest with `payload`; the first blob request is cut after a third of it,
/// later ones honour `Range`, so one pull runs the whole resume path.
fn registry(tag: &str, payload: &[u8]) -> FakeRegistry {
    let server = FakeRegistry::start();
    let m = manifest(&[(WASM, payload)]);
    let i = index(&[(&m, "wasip1", "wasm")]);
    let doc = |body: &[u8], mt: &str| {
        Route::ok(body.to_vec())
            .header("content-type", mt)
            .header("docker-content-digest", &digest(body))
    };
    server.route(&format!("/v2/{REPO}/manifests/{tag}"), doc(&i, OCI_INDEX));
    server.route(
        &format!("/v2/{REPO}/manifests/{}", digest(&m)),
        doc(&m, OCI_MANIFEST),
    );
    let blob = Route::ok(payload.to_vec())
        .cut_after(payload.len() / 3)
        .then(Route::ok(payload.to_vec()).ranges());
    server.route(&format!("/v2/{REPO}/blobs/{}", digest(payload)), blob);
    server
}

fn pull(cache: &Path, host: &str, reference: &str) -> Output {
    cli_command(cache, host, &["pull", reference, "-q"])
        .output()
        .unwrap()
}

/// Runs a pull under strace, tracing `syscalls` into `log`, with `inject` if given.
fn traced_pull(
    cache: &Path,
    host: &str,
    reference: &str,
    trace: &str,
    inject: Option<&str>,
    log: &Path,
) -> Output {
    under_strace(cache, host, reference, trace, inject, log)
        .output()
        .unwrap()
}

/// The command for a pull under strace, tracing `trace` into `log`, with
/// `inject` if given; output piped.
fn under_strace(
    cache: &Path,
    host: &str,
    reference: &str,
    trace: &str,
    inject: Option<&str>,
    log: &Path,
) -> Command {
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-e"])
        .arg(format!("trace={trace}"))
        .arg("-o")
        .arg(log);
    if let Some(inject) = inject {
        cmd.args(["-e", inject]);
    }
    let pull = cli_command(cache, host, &["pull", reference, "-q"]);
    cmd.arg(pull.get_program()).args(pull.get_args());
    for (k, v) in pull.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// How often each of `KILL_AT` runs in a cold pull, read from a trace.
fn count_calls(log: &Path) -> BTreeMap<&'static str, usize> {
    let text = std::fs::read_to_string(log).unwrap();
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        // `-f` prefixes each line with the pid.
        let call = line.split_whitespace().nth(1).unwrap_or_default();
        if let Some(name) = KILL_AT.iter().find(|n| call.starts_with(&format!("{n}("))) {
            *counts.entry(*name).or_insert(0) += 1;
        }
    }
    counts
}

/// `blobs/` holds only regular files that hash to their names.
fn assert_blobs_sound(cache: &Path, when: &str) {
    let dir = cache.join("blobs").join("sha256");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(
            meta.is_file(),
            "{when}: {} is not a regular file",
            path.display()
        );
        let actual = forge_oci::Digest::of(&std::fs::read(&path).unwrap());
        assert_eq!(
            actual.hex(),
            path.file_name().unwrap().to_str().unwrap(),
            "{when}: {} does not hash to its name",
            path.display()
        );
    }
}

fn printed_path(out: &Output) -> PathBuf {
    PathBuf::from(String::from_utf8(out.stdout.clone()).unwrap().trim())
}

#[test]
fn a_pull_killed_at_any_system_call_leaves_a_cache_the_next_pull_finishes() {
    let Some(_) = strace() else { return };
    let payload = wasm_payload("killed at every call", 300 << 10);
    let work = tempfile::tempdir().unwrap();
    let trace = KILL_AT.join(",");

    // A clean traced run says how many of each call a pull makes.
    let server = registry("v1", &payload);
    let reference = format!("{}/{REPO}:v1", server.host());
    let log = work.path().join("count.log");
    let cache = work.path().join("count-cache");
    let out = traced_pull(&cache, server.host(), &reference, &trace, None, &log);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(printed_path(&out)).unwrap(), payload);
    let counts = count_calls(&log);
    assert!(counts.get("fsync").is_some_and(|&n| n >= 4), "{counts:?}");

    let (mut planned, mut killed) = (0, 0);
    for (call, &n) in &counts {
        for when in 1..=n {
            planned += 1;
            let at = format!("{call} #{when}");
            // A fresh registry whose first blob answer is cut again, and a cold cache.
            let server = registry("v1", &payload);
            let reference = format!("{}/{REPO}:v1", server.host());
            let cache = work.path().join(format!("cache-{call}-{when}"));
            let log = work.path().join(format!("{call}-{when}.log"));
            let inject = format!("inject={call}:signal=SIGKILL:when={when}");
            traced_pull(
                &cache,
                server.host(),
                &reference,
                &trace,
                Some(&inject),
                &log,
            );
            if std::fs::read_to_string(&log)
                .unwrap()
                .contains("+++ killed by SIGKILL +++")
            {
                killed += 1;
            }
            assert_blobs_sound(&cache, &format!("after a kill at {at}"));

            let next = pull(&cache, server.host(), &reference);
            assert!(
                next.status.success(),
                "the pull after a kill at {at} failed: {}",
                String::from_utf8_lossy(&next.stderr)
            );
            assert_eq!(
                std::fs::read(printed_path(&next)).unwrap(),
                payload,
                "after {at}"
            );
            assert_blobs_sound(&cache, &format!("after the pull following {at}"));
            let verify = cli_command(&cache, server.host(), &["cache", "verify"])
                .output()
                .unwrap();
            assert_eq!(
                verify.status.code(),
                Some(0),
                "verify after {at}: {}",
                String::from_utf8_lossy(&verify.stdout)
            );
            let _ = std::fs::remove_dir_all(&cache);
        }
    }
    eprintln!("crash points: {killed} distinct kill points hit of {planned} planned ({counts:?})");
    assert!(
        killed * 10 >= planned * 9,
        "only {killed} of {planned} kills landed: the counting run no longer matches"
    );
}

#[test]
fn concurrent_pulls_with_flock_failing_never_commit_a_bad_blob() {
    let Some(_) = strace() else { return };
    let rounds: usize = std::env::var("FORGE_OCI_DEGRADED_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let processes = 6;
    let payload = wasm_payload("no working locks", 512 << 10);
    let work = tempfile::tempdir().unwrap();
    let blob = format!("/v2/{REPO}/blobs/{}", digest(&payload));
    let mut overlapping_rounds = 0;
    for round in 0..rounds {
        let server = FakeRegistry::start();
        // Slow enough that the writers overlap; ranges honoured in odd rounds, so
        // both a server that resumes and one that restarts are covered.
        server.artifact(REPO, "v1", &payload, |r| {
            let r = r.slow(32 << 10, Duration::from_millis(3));
            if round % 2 == 1 { r.ranges() } else { r }
        });
        let reference = format!("{}/{REPO}:v1", server.host());
        let cache = work.path().join(format!("cache-{round}"));
        let children: Vec<_> = (0..processes)
            .map(|p| {
                let log = work.path().join(format!("{round}-{p}.log"));
                let mut cmd = under_strace(
                    &cache,
                    server.host(),
                    &reference,
                    "flock",
                    Some("inject=flock:error=ENOLCK"),
                    &log,
                );
                (log, cmd.spawn().unwrap())
            })
            .collect();
        for (log, child) in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                std::fs::read(printed_path(&out)).unwrap(),
                payload,
                "round {round}"
            );
            let trace = std::fs::read_to_string(&log).unwrap();
            assert!(
                trace.contains("ENOLCK") && trace.contains("(INJECTED)"),
                "round {round}: flock was not failed"
            );
        }
        assert_blobs_sound(&cache, &format!("round {round}"));
        if server.hits("GET", &blob) > 1 {
            overlapping_rounds += 1;
        }
    }
    eprintln!(
        "degraded locks: {overlapping_rounds} of {rounds} rounds downloaded the blob more than once at a time; 0 bad blobs"
    );
    assert!(
        overlapping_rounds > 0,
        "no round had two writers at once: the test proves nothing"
    );
}

#[test]
fn a_pull_to_a_file_killed_mid_download_leaves_nothing_beside_the_file() {
    // `-o FILE` is written as the bytes arrive, for the whole download: a kill
    // then (kill -9, or Ctrl-C, which runs no destructor either) must not
    // leave a hidden temporary file as large as what had arrived in the
    // user's directory, where nothing would ever remove it.
    let server = FakeRegistry::start();
    let payload = wasm_payload("killed while teeing", 3 << 20);
    server.artifact(REPO, "v1", &payload, |r| {
        r.slow(64 << 10, Duration::from_millis(40))
    });
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("plugin.wasm"), b"the old plugin").unwrap();
    let reference = format!("{}/{REPO}:v1", server.host());
    let dest = out.join("plugin.wasm");
    let dest_arg = dest.to_str().unwrap();
    let mut child = cli_command(
        &cache,
        server.host(),
        &["pull", &reference, "-q", "-o", dest_arg],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    // Until the download has written something, then kill it.
    let downloading = || {
        std::fs::read_dir(cache.join("tmp")).is_ok_and(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| e.metadata().is_ok_and(|m| m.len() > 0))
        })
    };
    while !downloading() {
        assert!(child.try_wait().unwrap().is_none(), "the pull ended first");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["plugin.wasm"], "left beside the output");
    assert_eq!(std::fs::read(&dest).unwrap(), b"the old plugin");
}
