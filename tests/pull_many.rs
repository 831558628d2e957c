//! The fast paths of a pull: hashing beside the download, `pull_to` writing the
//! output as the bytes arrive, and `pull_all` pulling several references at once.
//! Each proves what must hold whatever the speed: nothing unverified is ever left
//! in the cache or at the destination, and results come back in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;

use common::server::{FakeRegistry, Route};
use common::*;
use forge_oci::{Error, VerifyError};

const REPO: &str = "fast/plugin";

/// Files in `dir` other than `keep`: temporary files left beside an output.
fn others(dir: &Path, keep: &[&str]) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

/// Several buffers' worth, so the hashing thread sees many hand-overs.
fn big(seed: &str) -> Vec<u8> {
    wasm_payload(seed, (3 << 20) + 4321)
}

#[test]
fn a_download_that_fails_verification_leaves_nothing_in_blobs_and_no_output() {
    let server = FakeRegistry::start();
    let payload = big("the real one");
    let mut forged = payload.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1; // same length, one bit off, in the last buffer
    server.artifact(REPO, "v1", &payload, |_| Route::ok(forged));
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("plugin.wasm");
    let client = client(server.host(), cache.path());

    let err = client
        .pull_to(&format!("{}/{REPO}:v1", server.host()), &dest)
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Verification {
                what: "blob",
                reason: VerifyError::DigestMismatch { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(verified_blobs(cache.path()).is_empty(), "nothing in blobs/");
    assert_eq!(temp_files(cache.path()), 0);
    assert!(!dest.exists(), "no output file");
    assert!(
        others(out.path(), &[]).is_empty(),
        "no temporary file beside it"
    );
}

#[test]
fn an_existing_output_keeps_its_old_content_when_the_pull_fails() {
    let server = FakeRegistry::start();
    let payload = big("kept");
    let mut forged = payload.clone();
    forged[10] ^= 0x40;
    server.artifact(REPO, "forged", &payload, |_| Route::ok(forged));
    let cut = big("cut short");
    server.artifact(REPO, "cut", &cut, |r| r.cut_after(1 << 20));
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("plugin.wasm");
    let client = client(server.host(), cache.path());
    for tag in ["forged", "cut"] {
        fs::write(&dest, b"the old plugin").unwrap();
        let err = client
            .pull_to(&format!("{}/{REPO}:{tag}", server.host()), &dest)
            .unwrap_err();
        assert!(
            matches!(err, Error::Verification { .. } | Error::Transport { .. }),
            "{tag}: {err:?}"
        );
        assert_eq!(fs::read(&dest).unwrap(), b"the old plugin", "{tag}");
        assert!(others(out.path(), &["plugin.wasm"]).is_empty(), "{tag}");
    }
    assert!(verified_blobs(cache.path()).is_empty());
}

#[test]
fn the_output_is_the_verified_blob_downloaded_or_copied_from_the_cache() {
    let server = FakeRegistry::start();
    let payload = big("written while downloading");
    server.artifact(REPO, "v1", &payload, |r| {
        r.slow(200_000, Default::default())
    });
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let client = client(server.host(), cache.path());
    let reference = format!("{}/{REPO}:v1", server.host());

    let first = out.path().join("first.wasm");
    fs::write(&first, b"replaced").unwrap();
    let a = client.pull_to(&reference, &first).unwrap();
    assert!(!a.from_cache());
    assert_eq!(fs::read(&first).unwrap(), payload);
    assert_eq!(fs::read(a.path()).unwrap(), payload);
    // An ordinary, writable file of the user's, not the read-only blob.
    assert!(!fs::metadata(&first).unwrap().permissions().readonly());

    let second = out.path().join("second.wasm");
    let b = client.pull_to(&reference, &second).unwrap();
    assert!(b.from_cache());
    assert_eq!(fs::read(&second).unwrap(), payload);
    assert_eq!(
        others(out.path(), &["first.wasm", "second.wasm"]),
        Vec::<String>::new()
    );
    assert_eq!(
        verified_blobs(cache.path()).len(),
        2,
        "the blob and its manifest"
    );
}

#[test]
fn pull_to_refuses_a_destination_inside_the_cache_before_any_request() {
    let server = FakeRegistry::start();
    server.artifact(REPO, "v1", b"\0asm\x01\0\0\0", |r| r);
    let cache = tempfile::tempdir().unwrap();
    fs::create_dir_all(cache.path().join("blobs/sha256")).unwrap();
    let client = client(server.host(), cache.path());
    let dest = cache.path().join("blobs/sha256/planted");
    let err = client
        .pull_to(&format!("{}/{REPO}:v1", server.host()), &dest)
        .unwrap_err();
    assert!(matches!(err, Error::DestinationIsCached { .. }), "{err:?}");
    assert_eq!(server.hits("GET", &format!("/v2/{REPO}/manifests/v1")), 0);
    assert!(!dest.exists());
}

#[test]
fn pull_all_returns_the_good_ones_in_order_and_a_typed_error_for_each_bad_one() {
    let server = FakeRegistry::start();
    let payloads: Vec<Vec<u8>> = (0..5)
        .map(|i| wasm_payload(&format!("plugin {i}"), 300_000 + i * 1000))
        .collect();
    for (i, p) in payloads.iter().enumerate() {
        server.artifact(&format!("many/p{i}"), "1.0", p, |r| r);
    }
    let cache = tempfile::tempdir().unwrap();
    let client = isolated(server.host(), cache.path())
        .jobs(3)
        .build()
        .unwrap();
    let host = server.host();
    let mut refs: Vec<String> = (0..5).map(|i| format!("{host}/many/p{i}:1.0")).collect();
    refs.insert(2, format!("{host}/many/missing:1.0"));
    refs.insert(4, "Not A Reference".to_owned());

    let results = client.pull_all(&refs);
    assert_eq!(results.len(), refs.len());
    let mut good = payloads.iter();
    for (r, result) in refs.iter().zip(&results) {
        match result {
            Ok(artifact) => assert_eq!(&fs::read(artifact.path()).unwrap(), good.next().unwrap()),
            Err(Error::NotFound { .. } | Error::Registry { status: 404, .. }) => {
                assert!(r.contains("missing"), "{r}")
            }
            Err(Error::InvalidReference(_)) => assert_eq!(r, "Not A Reference"),
            Err(e) => panic!("{r}: {e:?}"),
        }
    }
    assert!(good.next().is_none(), "every good reference pulled");
    assert!(results[2].is_err() && results[4].is_err());
}

#[test]
fn pull_all_of_references_sharing_a_blob_downloads_it_once() {
    let server = FakeRegistry::start();
    let payload = big("shared");
    for tag in ["a", "b", "c", "d"] {
        server.artifact(REPO, tag, &payload, |r| {
            r.slow(64 << 10, Default::default())
        });
    }
    let cache = tempfile::tempdir().unwrap();
    let client = client(server.host(), cache.path());
    let refs: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|t| format!("{}/{REPO}:{t}", server.host()))
        .collect();
    for result in client.pull_all(&refs) {
        assert_eq!(fs::read(result.unwrap().path()).unwrap(), payload);
    }
    assert_eq!(
        server.hits("GET", &format!("/v2/{REPO}/blobs/{}", digest(&payload))),
        1
    );
}

#[test]
fn the_cli_pulls_several_references_prints_an_array_and_exits_1_if_any_failed() {
    let server = FakeRegistry::start();
    let a = wasm_payload("cli a", 70_000);
    let b = wasm_payload("cli b", 80_000);
    server.artifact("cli/a", "1", &a, |r| r);
    server.artifact("cli/b", "1", &b, |r| r);
    let work = tempfile::tempdir().unwrap();
    let host = server.host();
    let run = |refs: &[String], extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_forge-oci"))
            .current_dir(work.path())
            .env("HOME", work.path())
            .env("XDG_CACHE_HOME", work.path().join("user-cache"))
            .env_remove("FORGE_CACHE_DIR")
            .env_remove("FORGE_OFFLINE")
            .env_remove("CARGO_NET_OFFLINE")
            .arg("pull")
            .args(refs)
            .args(["--cache-dir", "cache", "--insecure", host, "--jobs", "2"])
            .args(extra)
            .output()
            .unwrap()
    };
    let good = [format!("{host}/cli/a:1"), format!("{host}/cli/b:1")];
    let out = run(&good, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<(&str, &str)> = stdout.lines().map(|l| l.split_once(' ').unwrap()).collect();
    assert_eq!(lines.len(), 2);
    for ((r, path), (want_ref, want)) in lines.iter().zip(good.iter().zip([&a, &b])) {
        assert_eq!(r, want_ref);
        assert_eq!(&fs::read(work.path().join(path)).unwrap(), want);
    }

    let with_bad = [
        good[0].clone(),
        format!("{host}/cli/missing:1"),
        good[1].clone(),
    ];
    let out = run(&with_bad, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["reference"], good[0].as_str());
    assert_eq!(rows[0]["from_cache"], true);
    assert_eq!(rows[1]["reference"], with_bad[1].as_str());
    assert!(
        rows[1]["error"].as_str().unwrap().contains("cli/missing"),
        "{json}"
    );
    assert_eq!(rows[2]["size"], b.len());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("error: {}", with_bad[1])),
        "{stderr}"
    );
}

#[test]
fn a_forged_download_from_a_mirror_never_becomes_the_output_when_the_blob_is_cached() {
    // The mirror answers the tag with a layer of its own, as long as the real
    // one, whose bytes do not verify: they are teed into the output's
    // temporary file whole. The registry then answers with the real layer,
    // already in the cache (pulled under another tag), so nothing is
    // downloaded again: the output must be a copy of the cached blob, never
    // the mirror's bytes.
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let payload = big("the real plugin");
    upstream.artifact(REPO, "v1", &payload, |r| r);
    let other = big("the mirror's own layer");
    assert_eq!(other.len(), payload.len());
    let forged = vec![0x66; other.len()];
    mirror.artifact(REPO, "v1", &other, |_| Route::ok(forged.clone()));
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("plugin.wasm");
    let client = isolated(upstream.host(), cache.path())
        .insecure_host(mirror.host())
        .mirror(upstream.host(), mirror.host())
        .build()
        .unwrap();
    client
        .pull(&format!(
            "{}/{REPO}@{}",
            upstream.host(),
            digest(&manifest(&[(WASM, &payload)]))
        ))
        .unwrap();

    let artifact = client
        .pull_to(&format!("{}/{REPO}:v1", upstream.host()), &dest)
        .unwrap();
    assert_eq!(fs::read(artifact.path()).unwrap(), payload);
    assert!(
        fs::read(&dest).unwrap() == payload,
        "the output holds bytes that never verified"
    );
    assert!(others(out.path(), &["plugin.wasm"]).is_empty());
}

#[test]
fn a_download_cut_and_resumed_still_gives_the_output_the_blob_exactly() {
    // The connection drops after 1 MiB; the retry resumes from the partial, so
    // the output's temporary file, teed from the first attempt, is not the
    // whole blob and is filled from the cache instead: from its start, not
    // after the bytes it already held.
    let server = FakeRegistry::start();
    let payload = big("cut, then resumed");
    server.artifact(REPO, "v1", &payload, |r| {
        r.cut_after(1 << 20)
            .ranges()
            .then(Route::ok(payload.clone()).ranges())
    });
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("plugin.wasm");
    let client = isolated(server.host(), cache.path())
        .retries(2)
        .build()
        .unwrap();
    let artifact = client
        .pull_to(&format!("{}/{REPO}:v1", server.host()), &dest)
        .unwrap();
    assert_eq!(fs::read(artifact.path()).unwrap(), payload);
    let got = fs::read(&dest).unwrap();
    assert_eq!(got.len(), payload.len(), "the output's length");
    assert!(got == payload, "the output is not the blob");
    assert!(others(out.path(), &["plugin.wasm"]).is_empty());
}

#[cfg(unix)]
#[test]
fn a_pull_where_no_thread_can_be_started_still_works_on_one() {
    // A build machine at its process limit (`ulimit -u`, a container's
    // pids.max, busy with rustc): spawning the hashing thread or `-j`'s
    // workers fails with EAGAIN. The pull must still work, on the one thread
    // it has, not panic. Root ignores the limit, so run as nobody.
    use std::os::unix::process::CommandExt;
    let server = FakeRegistry::start();
    let a = big("no thread a");
    let b = wasm_payload("no thread b", 90_000);
    server.artifact("lim/a", "1", &a, |r| r);
    server.artifact("lim/b", "1", &b, |r| r);
    let work = tempfile::tempdir().unwrap();
    let root = rustix::process::geteuid().is_root();
    let mut bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_forge-oci"));
    if root {
        // nobody may not reach the build directory (a home that is 0700).
        let copy = work.path().join("forge-oci");
        fs::copy(&bin, &copy).unwrap();
        bin = copy;
        std::os::unix::fs::chown(work.path(), Some(65534), Some(65534)).unwrap();
    }
    let host = server.host();
    let run = |refs: &[String]| {
        let mut cmd = std::process::Command::new("bash");
        cmd.arg("-c")
            .arg(r#"ulimit -u 1 && exec "$0" "$@""#)
            .arg(&bin)
            .current_dir(work.path())
            .env("HOME", work.path())
            .env_remove("FORGE_CACHE_DIR")
            .env_remove("FORGE_OFFLINE")
            .env_remove("CARGO_NET_OFFLINE")
            .arg("pull")
            .args(refs)
            .args(["--cache-dir", "cache", "--insecure", host, "-j", "2"]);
        if root {
            cmd.uid(65534).gid(65534);
        }
        cmd.output().unwrap()
    };
    let out = run(&[format!("{host}/lim/a:1")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[format!("{host}/lim/a:1"), format!("{host}/lim/b:1")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(verified_blobs(&work.path().join("cache")).len(), 4);
}
