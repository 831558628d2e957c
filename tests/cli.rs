//! The `forge-oci` command against the fake registry in `common/server.rs`: where
//! `pull -o` writes and what it refuses, and path options given empty; and the
//! README's shell session against Debian's `docker-registry` (skipped loudly
//! without it, except under CI, where it fails).
//!
//! Every command runs in its own working directory with `HOME` and
//! `XDG_CACHE_HOME` pointed into it, so nothing here can reach the user's cache.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::registry::Registry;
use common::server::{FakeRegistry, Route};
use common::*;

const REPO: &str = "cli/plugin";

/// The CLI in `work`, with no cache or network setting from our environment.
fn forge_oci(work: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge-oci"));
    cmd.current_dir(work)
        .env("HOME", work)
        .env("XDG_CACHE_HOME", work.join("user-cache"))
        .env_remove("FORGE_CACHE_DIR")
        .env_remove("FORGE_OCI_INSECURE_HOSTS")
        .env_remove("FORGE_OFFLINE")
        .env_remove("CARGO_NET_OFFLINE");
    cmd
}

/// `forge-oci pull REF --cache-dir CACHE --insecure HOST` plus `extra`.
fn pull(work: &Path, server: &FakeRegistry, cache: &Path, extra: &[&str]) -> Output {
    forge_oci(work)
        .args(["pull", &format!("{}/{REPO}:1.0", server.host())])
        .arg("--cache-dir")
        .arg(cache)
        .args(["--insecure", server.host()])
        .args(extra)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Pulls the artifact once and returns the cached blob's path.
fn pull_to_cache(work: &Path, server: &FakeRegistry, cache: &Path) -> PathBuf {
    let out = pull(work, server, cache, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The next pull still serves the right bytes, from the cache.
fn assert_cache_serves(work: &Path, server: &FakeRegistry, cache: &Path, payload: &[u8]) {
    let bytes = pull(work, server, cache, &["-o", "-"]);
    assert!(bytes.status.success(), "{}", stderr(&bytes));
    assert_eq!(bytes.stdout, payload);
    let json = pull(work, server, cache, &["--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["from_cache"], true);
    assert_eq!(json["size"], payload.len());
}

#[test]
fn dash_o_onto_the_cached_blob_or_a_link_to_it_is_refused() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("do not truncate me", 100_000);
    server.artifact(REPO, "1.0", &payload, |r| r);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let blob = pull_to_cache(work.path(), &server, &cache);
    let link = work.path().join("link.wasm");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&blob, &link).unwrap();
    #[cfg(not(unix))]
    let link = blob.clone();

    for dest in [&blob, &link] {
        let out = pull(
            work.path(),
            &server,
            &cache,
            &["-o", dest.to_str().unwrap()],
        );
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let message = stderr(&out);
        assert!(
            message.starts_with(&format!(
                "error: cannot copy the artifact to {}: that is inside the cache",
                dest.display()
            )),
            "{message}"
        );
        assert_eq!(fs::read(&blob).unwrap(), payload, "{}", dest.display());
    }
    assert_eq!(verified_blobs(&cache).len(), 2);
    assert_cache_serves(work.path(), &server, &cache, &payload);
}

#[test]
fn dash_o_replaces_the_file_whole_with_an_ordinary_writable_copy() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("copied out", 50_000);
    server.artifact(REPO, "1.0", &payload, |r| r);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let out_dir = work.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let dest = out_dir.join("plugin.wasm");
    fs::write(
        &dest,
        b"an older copy, read-only as copies of read-only blobs were",
    )
    .unwrap();
    let mut read_only = fs::metadata(&dest).unwrap().permissions();
    read_only.set_readonly(true);
    fs::set_permissions(&dest, read_only).unwrap();

    let out = pull(
        work.path(),
        &server,
        &cache,
        &["-o", dest.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert_eq!(fs::read(&dest).unwrap(), payload);
    assert!(!fs::metadata(&dest).unwrap().permissions().readonly());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&dest).unwrap().permissions().mode();
        assert_eq!(mode & 0o600, 0o600, "mode {mode:o}");
    }
    let names: Vec<_> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["plugin.wasm"], "no temporary file is left");

    // A relative FILE is relative to the working directory.
    let out = pull(work.path(), &server, &cache, &["-o", "here.wasm"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read(work.path().join("here.wasm")).unwrap(), payload);
}

/// Unmounts on drop, so a failed assertion does not leave a mount behind.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn dash_o_on_a_full_disk_leaves_the_old_file_intact() {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    if !is_root {
        eprintln!(
            "\n*** SKIPPED dash_o_on_a_full_disk_leaves_the_old_file_intact: \
             mounting a small tmpfs needs root ***\n"
        );
        return;
    }
    let server = FakeRegistry::start();
    let payload = wasm_payload("too big for the disk", 256 << 10);
    server.artifact(REPO, "1.0", &payload, |r| r);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let disk = work.path().join("disk");
    fs::create_dir(&disk).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&disk)
        .output()
        .unwrap();
    if !mounted.status.success() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the full-disk test: {}",
            stderr(&mounted)
        );
        eprintln!(
            "\n*** SKIPPED dash_o_on_a_full_disk_leaves_the_old_file_intact: cannot mount a tmpfs: {} ***\n",
            stderr(&mounted).trim()
        );
        return;
    }
    let _mount = Mount(disk.clone());
    let dest = disk.join("plugin.wasm");
    let old = wasm_payload("the copy from last time", 8 << 10);
    fs::write(&dest, &old).unwrap();

    let out = pull(
        work.path(),
        &server,
        &cache,
        &["-o", dest.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(
        message.starts_with(&format!(
            "error: cannot copy the artifact to {}",
            dest.display()
        )),
        "{message}"
    );
    assert!(message.contains("caused by: "), "{message}");
    assert_eq!(fs::read(&dest).unwrap(), old, "the old file must be intact");
    assert_eq!(
        fs::read_dir(&disk).unwrap().count(),
        1,
        "no temporary file left"
    );
    assert_cache_serves(work.path(), &server, &cache, &payload);
}

/// A working directory that looks like a cache root, and a filled user cache:
/// what an empty path must never reach.
fn seed(work: &Path) -> Vec<PathBuf> {
    let user_cache = work.join("user-cache/openapi-forge/plugins");
    let mut files = Vec::new();
    for root in [work, &user_cache] {
        for dir in ["tmp", "refs", "blobs", "locks"] {
            fs::create_dir_all(root.join(dir)).unwrap();
            let file = root.join(dir).join("keep");
            fs::write(&file, dir).unwrap();
            files.push(file);
        }
    }
    files
}

fn assert_untouched(files: &[PathBuf]) {
    for file in files {
        assert!(file.exists(), "{} was deleted", file.display());
    }
}

#[test]
fn empty_path_options_are_usage_errors_that_touch_nothing() {
    let work = tempfile::tempdir().unwrap();
    let files = seed(work.path());
    for (args, flag) in [
        (&["cache", "clear", "--cache-dir", ""][..], "--cache-dir"),
        (&["cache", "prune", "--cache-dir", ""], "--cache-dir"),
        (&["cache", "--cache-dir", "", "verify"], "--cache-dir"),
        (
            &["pull", "127.0.0.1:1/a/b:1", "--cache-dir", ""],
            "--cache-dir",
        ),
        (
            &["resolve", "127.0.0.1:1/a/b:1", "--cache-dir", ""],
            "--cache-dir",
        ),
        (
            &["inspect", "--cache-dir", "", "127.0.0.1:1/a/b:1"],
            "--cache-dir",
        ),
        (&["pull", "127.0.0.1:1/a/b:1", "-o", ""], "-o"),
        (&["pull", "127.0.0.1:1/a/b:1", "--output", ""], "--output"),
    ] {
        let out = forge_oci(work.path()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let message = stderr(&out);
        assert!(
            message.starts_with(&format!(
                "error: `{flag}` needs a path, not an empty string"
            )),
            "{args:?}: {message}"
        );
        assert!(message.contains("usage: forge-oci"), "{message}");
        assert!(out.stdout.is_empty());
    }
    assert_untouched(&files);
}

#[test]
fn an_empty_forge_cache_dir_is_refused_not_taken_for_the_default() {
    let work = tempfile::tempdir().unwrap();
    let files = seed(work.path());
    for value in ["", " "] {
        let out = forge_oci(work.path())
            .env("FORGE_CACHE_DIR", value)
            .args(["cache", "clear"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{value:?}: {}", stderr(&out));
        let message = stderr(&out);
        assert!(
            message.starts_with(&format!(
                "error: cannot use FORGE_CACHE_DIR `{value}`: an empty path would mean the current directory"
            )),
            "{message}"
        );
    }
    assert_untouched(&files);
}

#[test]
fn cache_verify_exits_1_when_it_repaired_damage_even_without_a_lock_file() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("verify me", 50_000);
    server.artifact(REPO, "1.0", &payload, |r| r);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let verify = || {
        forge_oci(work.path())
            .args(["cache", "verify", "--cache-dir"])
            .arg(&cache)
            .output()
            .unwrap()
    };
    let blob = pull_to_cache(work.path(), &server, &cache);
    assert_eq!(verify().status.code(), Some(0), "a sound cache");

    // Copied as `cp -r dir/*` does: no `.lock`. Then one blob rots.
    fs::remove_file(cache.join(".lock")).unwrap();
    fs::remove_file(&blob).unwrap();
    fs::write(&blob, b"rotten").unwrap();
    let out = verify();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", stderr(&out));
    assert!(stdout.contains("1 corrupt"), "{stdout}");
    assert!(stdout.contains(&blob.display().to_string()), "{stdout}");
    assert!(!blob.exists(), "the corrupt blob is removed");
    // Repaired: the next verify is clean, and the next pull fetches the blob again.
    assert_eq!(verify().status.code(), Some(0));
    assert_eq!(
        fs::read(pull_to_cache(work.path(), &server, &cache)).unwrap(),
        payload
    );
}

#[test]
fn a_port_past_65535_is_refused_naming_it() {
    let work = tempfile::tempdir().unwrap();
    let out = forge_oci(work.path())
        .args(["pull", "--offline", "localhost:99999/x"])
        .arg("--cache-dir")
        .arg(work.path().join("cache"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with(
            "error: invalid reference `localhost:99999/x`: port `99999` is not a port number"
        ),
        "{}",
        stderr(&out)
    );
    assert!(!work.path().join("cache").exists());
}

/// `s` followed by the byte 0xff, which is never UTF-8.
#[cfg(unix)]
fn not_utf8(s: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let mut bytes = s.as_bytes().to_vec();
    bytes.push(0xff);
    std::ffi::OsString::from_vec(bytes)
}

#[cfg(unix)]
fn bytes_of(path: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().to_vec()
}

#[cfg(unix)]
#[test]
fn a_reference_or_text_option_that_is_not_utf8_is_a_usage_error_naming_it() {
    let work = tempfile::tempdir().unwrap();
    let run = |args: &[&str], bad: &str| {
        forge_oci(work.path())
            .args(args)
            .arg(not_utf8(bad))
            .output()
            .unwrap()
    };
    for (args, bad, message) in [
        (&["pull"][..], "a/b", "REF `a/b\u{fffd}` is not valid UTF-8"),
        (
            &["resolve", "a/b", "--platform"],
            "wasip2/wasm",
            "`--platform` needs UTF-8 text; `wasip2/wasm\u{fffd}` is not",
        ),
        (
            &["inspect", "a/b", "--insecure"],
            "host",
            "`--insecure` needs UTF-8 text; `host\u{fffd}` is not",
        ),
        (
            &["cache", "prune", "--older-than"],
            "30d",
            "`--older-than` needs UTF-8 text; `30d\u{fffd}` is not",
        ),
    ] {
        let out = run(args, bad);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).starts_with(&format!("error: {message}")),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("usage: forge-oci"),
            "{}",
            stderr(&out)
        );
    }
}

#[cfg(unix)]
#[test]
fn paths_that_are_not_utf8_are_used_as_they_are() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("a path in latin-1", 20_000);
    server.artifact(REPO, "1.0", &payload, |r| r);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join(not_utf8("cach"));
    let reference = format!("{}/{REPO}:1.0", server.host());
    let pull_with = |extra: &[std::ffi::OsString]| {
        forge_oci(work.path())
            .args(["pull", &reference, "--insecure", server.host()])
            .arg("--cache-dir")
            .arg(&cache)
            .args(extra)
            .output()
            .unwrap()
    };

    // The path printed is the cached file's, byte for byte.
    let out = pull_with(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let blob = cache
        .join("blobs/sha256")
        .join(&digest(&payload)["sha256:".len()..]);
    assert_eq!(out.stdout, [bytes_of(&blob), b"\n".to_vec()].concat());
    assert_eq!(fs::read(&blob).unwrap(), payload);

    // `-o` to such a path.
    let dest = work.path().join(not_utf8("copy"));
    let out = pull_with(&["-o".into(), dest.clone().into()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read(&dest).unwrap(), payload);

    // `--json`: `path` with U+FFFD, `path_bytes` exact.
    let out = pull_with(&["--json".into()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["path"], blob.to_string_lossy().as_ref());
    assert!(json["path"].as_str().unwrap().contains("cach\u{fffd}"));
    assert_eq!(json["path_bytes"], serde_json::json!(bytes_of(&blob)));

    // A UTF-8 path has no `path_bytes`.
    let utf8 = work.path().join("plain");
    let out = forge_oci(work.path())
        .args(["pull", &reference, "--json", "--insecure", server.host()])
        .arg("--cache-dir")
        .arg(&utf8)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json.get("path_bytes").is_none(), "{json}");

    // FORGE_CACHE_DIR is a path too.
    let out = forge_oci(work.path())
        .env("FORGE_CACHE_DIR", not_utf8("env"))
        .args(["cache", "path"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // Relative, as given: the root is not made absolute.
    let root = Path::new(&not_utf8("env")).join("openapi-forge/plugins");
    assert_eq!(out.stdout, [bytes_of(&root), b"\n".to_vec()].concat());
}

#[cfg(unix)]
#[test]
fn a_text_variable_that_is_not_utf8_is_an_error_naming_it() {
    let work = tempfile::tempdir().unwrap();
    for var in [
        "FORGE_OFFLINE",
        "CARGO_NET_OFFLINE",
        "FORGE_OCI_INSECURE_HOSTS",
    ] {
        let out = forge_oci(work.path())
            .env(var, not_utf8("1"))
            .args(["cache", "path"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{var}: {}", stderr(&out));
        assert_eq!(
            stderr(&out),
            format!("error: cannot use {var} `1\u{fffd}`: the value is not valid UTF-8\n")
        );
    }
}

#[test]
fn cache_ls_chooses_the_layer_as_pull_does_and_says_why_there_is_none() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("for a platform of its own", 10_000);
    let m = manifest(&[(WASM, &payload)]);
    let idx = index(&[(&m, "plugin-os", "wasm")]);
    let document = |body: &[u8], media_type: &str| {
        Route::ok(body.to_vec())
            .header("content-type", media_type)
            .header("docker-content-digest", &digest(body))
    };
    server.route(
        &format!("/v2/{REPO}/manifests/1.0"),
        document(&idx, OCI_INDEX),
    );
    server.route(
        &format!("/v2/{REPO}/manifests/{}", digest(&m)),
        document(&m, OCI_MANIFEST),
    );
    server.route(
        &format!("/v2/{REPO}/blobs/{}", digest(&payload)),
        Route::ok(payload.clone()),
    );
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let out = pull(
        work.path(),
        &server,
        &cache,
        &["--platform", "plugin-os/wasm"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let ls = |extra: &[&str]| {
        let out = forge_oci(work.path())
            .args(["cache", "ls", "--cache-dir"])
            .arg(&cache)
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{extra:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let json = |extra: &[&str]| {
        let text = ls(&[&["--json"], extra].concat());
        let rows: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
        rows[0].clone()
    };

    // With the pull's selection: the layer, cached.
    let row = json(&["--platform", "plugin-os/wasm"]);
    assert_eq!(row["layer_digest"], digest(&payload));
    assert_eq!(row["size"], payload.len());
    assert_eq!(row["missing_layer"], serde_json::Value::Null);
    let text = ls(&["--platform", "plugin-os/wasm"]);
    assert!(text.contains("9.8 KiB"), "{text}");

    // With the default platforms: no layer, and why.
    let row = json(&[]);
    assert_eq!(row["layer_digest"], serde_json::Value::Null);
    let why = row["missing_layer"].as_str().unwrap();
    assert!(
        why.starts_with(
            "no layer for this selection: the index has no manifest for platform wasip2/wasm"
        ) && why.ends_with("it offers plugin-os/wasm"),
        "{why}"
    );
    assert!(ls(&[]).contains(why), "{}", ls(&[]));

    // The layer gone: named.
    fs::remove_file(cache.join("blobs/sha256").join(&digest(&payload)[7..])).unwrap();
    let row = json(&["--platform", "plugin-os/wasm"]);
    assert_eq!(
        row["missing_layer"],
        format!("layer {} not cached", digest(&payload))
    );
    // The manifest the index selects gone: named.
    fs::remove_file(cache.join("blobs/sha256").join(&digest(&m)[7..])).unwrap();
    let row = json(&["--platform", "plugin-os/wasm"]);
    assert_eq!(
        row["missing_layer"],
        format!("manifest {} not cached", digest(&m))
    );
}

/// Runs `forge-oci ARGS` on a pseudo-terminal (`script` from util-linux) with
/// `TERM` and `COLUMNS` set; returns what the terminal received, or `None` when
/// there is no `script` to run.
fn on_a_terminal(work: &Path, args: &[&str], term: &str, columns: &str) -> Option<String> {
    if Command::new("script").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the terminal test: `script` (util-linux) is missing"
        );
        eprintln!("\n*** SKIPPED a progress bar test: `script` (util-linux) is missing ***\n");
        return None;
    }
    // Paths here are temporary directories and loopback addresses: nothing to quote.
    let line = std::iter::once(env!("CARGO_BIN_EXE_forge-oci"))
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(work)
        .env("HOME", work)
        .env("XDG_CACHE_HOME", work.join("user-cache"))
        .env("TERM", term)
        .env("COLUMNS", columns)
        .env_remove("FORGE_CACHE_DIR")
        .env_remove("FORGE_OCI_INSECURE_HOSTS")
        .env_remove("FORGE_OFFLINE")
        .env_remove("CARGO_NET_OFFLINE")
        .output()
        .unwrap();
    let transcript = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{transcript}{}", stderr(&out));
    Some(transcript)
}

#[test]
fn the_progress_bar_names_the_reference_fits_the_width_and_knows_dumb_terminals() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("big enough for a bar", 5 << 20);
    server.artifact(REPO, "1.0", &payload, |r| {
        r.slow(512 << 10, std::time::Duration::from_millis(30))
    });
    let reference = format!("{}/{REPO}:1.0", server.host());
    let work = tempfile::tempdir().unwrap();
    let pull_into = |cache: &str, term: &str, columns: &str| {
        let args = [
            "pull",
            &reference,
            "--insecure",
            server.host(),
            "--cache-dir",
            cache,
            "-o",
            "/dev/null",
        ];
        on_a_terminal(work.path(), &args, term, columns)
    };

    let Some(bar) = pull_into("bar", "xterm", "40") else {
        return;
    };
    let frames: Vec<&str> = bar
        .split(['\r', '\n'])
        .map(|f| f.trim_start_matches("\x1b[2K"))
        .filter(|f| !f.is_empty())
        .collect();
    assert!(frames.len() >= 2, "{bar:?}");
    for frame in &frames {
        assert!(frame.chars().count() < 40, "{frame:?} in {bar:?}");
        assert!(
            frame.starts_with('…')
                && reference.ends_with(frame.split(' ').next().unwrap().trim_start_matches('…')),
            "{frame:?} does not name {reference}"
        );
    }
    assert!(frames.last().unwrap().contains("100%"), "{bar:?}");

    let dumb = pull_into("dumb", "dumb", "40").unwrap();
    assert!(!dumb.contains('\x1b'), "{dumb:?}");
    let lines: Vec<&str> = dumb.lines().map(str::trim_end).collect();
    assert_eq!(lines.len(), 2, "{dumb:?}");
    assert_eq!(lines[0], format!("downloading {reference} (5.0 MiB)"));
    assert!(
        lines[1].starts_with(&format!("downloaded {reference}: 5.0 MiB in ")),
        "{dumb:?}"
    );
}

#[test]
fn registry_text_reaches_the_terminal_escaped() {
    let server = FakeRegistry::start();
    let evil = "\u{1b}]0;pwned\u{7}\u{1b}[2K\rerror: forged\nline";
    server.route(
        &format!("/v2/{REPO}/manifests/1.0"),
        common::server::Route::ok(
            serde_json::json!({"errors": [{"code": "X", "message": evil}]}).to_string(),
        )
        .status(500),
    );
    let work = tempfile::tempdir().unwrap();
    let out = pull(work.path(), &server, &work.path().join("cache"), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("\\x1b]0;pwned"), "{err}");
    let control = |b: &u8| b.is_ascii_control() && *b != b'\n';
    assert!(!out.stderr.iter().any(control), "{err:?}");
    assert_eq!(err.lines().count(), 1, "one line per message: {err:?}");
}

#[test]
fn platform_and_annotation_text_from_a_registry_is_escaped_in_every_output() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("evil platform", 1000);
    let m = manifest(&[(WASM, &payload)]);
    let evil = "\u{1b}]0;PWNED\u{7}\u{9b}31m\u{7f}\u{202e}";
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest(&m), "size": m.len(),
                       "platform": {"os": format!("wasip1{evil}"), "architecture": "wasm"},
                       "annotations": {"note": evil}},
                      {"mediaType": OCI_MANIFEST, "digest": digest(&m), "size": m.len(),
                       "platform": {"os": "wasip1", "architecture": "wasm"}}],
    }))
    .unwrap();
    let doc = |body: &[u8], mt: &str| {
        common::server::Route::ok(body.to_vec())
            .header("content-type", mt)
            .header("docker-content-digest", &digest(body))
    };
    server.route(&format!("/v2/{REPO}/manifests/1.0"), doc(&index, OCI_INDEX));
    server.route(
        &format!("/v2/{REPO}/manifests/{}", digest(&m)),
        doc(&m, OCI_MANIFEST),
    );
    server.route(
        &format!("/v2/{REPO}/blobs/{}", digest(&payload)),
        common::server::Route::ok(payload.clone()),
    );
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let reference = format!("{}/{REPO}:1.0", server.host());
    let run = |args: &[&str]| {
        forge_oci(work.path())
            .args(args)
            .arg("--cache-dir")
            .arg(&cache)
            .output()
            .unwrap()
    };
    let pull = run(&["pull", &reference, "--insecure", server.host()]);
    assert!(pull.status.success(), "{}", stderr(&pull));
    let inspect = run(&["inspect", &reference, "--insecure", server.host()]);
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("\\u009b31m"));
    // Not this platform: the listing says which platforms the index offers.
    let ls = run(&["cache", "ls", "--platform", "foo/bar"]);
    assert!(
        String::from_utf8_lossy(&ls.stdout).contains("\\x1b]0;PWNED"),
        "{ls:?}"
    );
    for out in [&inspect, &ls] {
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() && c != '\n' || c == '\u{202e}'),
            "{text:?}"
        );
    }
}

#[test]
fn dash_o_dev_stdout_writes_into_the_pipe() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("into a pipe", 20_000);
    server.artifact(REPO, "1.0", &payload, |r| r);
    let work = tempfile::tempdir().unwrap();
    // Command::output gives the child a pipe for stdout: /dev/stdout leads to it.
    let out = pull(
        work.path(),
        &server,
        &work.path().join("cache"),
        &["-o", "/dev/stdout"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, payload);
}

/// The shell session the README shows, command by command.
#[test]
fn cli_session_from_the_readme() {
    let registry = match Registry::start() {
        Ok(r) => r,
        Err(why) => return skip("cli_session_from_the_readme", &why),
    };
    let payload = wasm_payload("cli", 64 << 10);
    registry.push_wasm("plugins/hello", "1.0", &payload);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let reference = format!("{}/plugins/hello:1.0", registry.host);
    // As the README runs it: the cache and the insecure host from the environment.
    let session = |host: &str| {
        let mut cmd = forge_oci(work.path());
        cmd.env("FORGE_CACHE_DIR", &cache)
            .env("FORGE_OCI_INSECURE_HOSTS", host);
        cmd
    };

    let out = work.path().join("hello.wasm");
    let status = session(&registry.host)
        .args(["pull", &reference, "-o"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read(&out).unwrap(), payload);

    // Without -o the cached path is printed.
    let printed = session(&registry.host)
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
    let stdout = session("")
        .args(["pull", &reference, "--offline", "-o", "-"])
        .output()
        .unwrap();
    assert!(stdout.status.success());
    assert_eq!(stdout.stdout, payload);

    // A runtime error exits 1 with `error:` and the cause; a usage error exits 2.
    let miss = session("")
        .args(["pull", "--offline", "127.0.0.1:1/plugins/absent:1.0"])
        .output()
        .unwrap();
    assert_eq!(miss.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&miss.stderr);
    assert!(
        stderr.starts_with("error: 127.0.0.1:1/plugins/absent:1.0 is not in the cache"),
        "{stderr}"
    );
    let usage = session("").args(["pull"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("usage: forge-oci pull"));
}
