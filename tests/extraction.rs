//! Wasm modules extracted from container image layers, end to end against the
//! fake registry: kept in the cache as derived files (a warm pull neither
//! extracts nor connects), found by `verify` when tampered with, dropped by
//! `prune` with their layer, never half-written by a kill, and hostile layers
//! refused with typed errors that leave nothing behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::server::{FakeRegistry, Route};
use common::*;
use forge_oci::{Error, ExtractError, Network, PruneOptions};

const REPO: &str = "istio/filter";
const TGZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

enum Entry<'a> {
    File(&'a str, &'a [u8]),
    /// A name written raw into the header, past the builder's own checks.
    Raw(&'a [u8], &'a [u8]),
    Symlink(&'a str, &'a str),
}

fn tar_gz(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        match e {
            Entry::File(path, data) => {
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, *data).unwrap();
            }
            Entry::Raw(name, data) => {
                h.as_old_mut().name[..name.len()].copy_from_slice(name);
                h.set_size(data.len() as u64);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
            Entry::Symlink(path, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
        }
    }
    gz(&b.into_inner().unwrap())
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Serves `repo:tag` as a one-layer container image (OCI, Istio compat shape)
/// whose layer is `layer`. Returns the layer's blob path on the server.
fn serve_image(server: &FakeRegistry, tag: &str, layer: &[u8]) -> String {
    let config = br#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": IMAGE_CONFIG, "digest": digest(config), "size": config.len()},
        "layers": [{"mediaType": TGZ, "digest": digest(layer), "size": layer.len()}],
        "annotations": {"module.wasm.image/variant": "compat"},
    }))
    .unwrap();
    let doc = Route::ok(m.clone())
        .header("content-type", OCI_MANIFEST)
        .header("docker-content-digest", &digest(&m));
    server.route(&format!("/v2/{REPO}/manifests/{tag}"), doc.clone());
    server.route(&format!("/v2/{REPO}/manifests/{}", digest(&m)), doc);
    server.route(
        &format!("/v2/{REPO}/blobs/{}", digest(config)),
        Route::ok(config.to_vec()),
    );
    let layer_path = format!("/v2/{REPO}/blobs/{}", digest(layer));
    server.route(&layer_path, Route::ok(layer.to_vec()));
    layer_path
}

/// Serves `repo:tag` as an Istio compat image whose one layer holds
/// `plugin.wasm`, `len` bytes seeded by `seed`. Returns the module and the reference.
fn serve_module(server: &FakeRegistry, tag: &str, seed: &str, len: usize) -> (Vec<u8>, String) {
    let module = wasm_payload(seed, len);
    serve_image(server, tag, &tar_gz(&[Entry::File("plugin.wasm", &module)]));
    (module, format!("{}/{REPO}:{tag}", server.host()))
}

/// Every file under `derived/`, each checked to be a regular file hashing to its name.
fn derived_files(cache: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let root = cache.join(DERIVED);
    for layer in std::fs::read_dir(&root).into_iter().flatten() {
        for config in std::fs::read_dir(layer.unwrap().path()).unwrap() {
            for file in std::fs::read_dir(config.unwrap().path()).unwrap() {
                let path = file.unwrap().path();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                assert!(meta.is_file(), "{} is not a regular file", path.display());
                let actual = forge_oci::Digest::of(&std::fs::read(&path).unwrap());
                assert_eq!(
                    actual.hex(),
                    path.file_name().unwrap().to_str().unwrap(),
                    "{} does not hash to its name",
                    path.display()
                );
                found.push(path);
            }
        }
    }
    found
}

#[cfg(unix)]
fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

#[test]
fn a_warm_pull_of_an_extracted_module_neither_extracts_nor_connects() {
    let server = FakeRegistry::start();
    let module = wasm_payload("filter", 5000);
    let layer = tar_gz(&[Entry::File("plugin.wasm", &module)]);
    let layer_path = serve_image(&server, "1.0", &layer);
    let cache = tempfile::tempdir().unwrap();
    let reference = format!("{}/{REPO}:1.0", server.host());

    let c = client(server.host(), cache.path());
    let first = c.pull(&reference).unwrap();
    assert_eq!(first.read().unwrap(), module);
    assert!(!first.from_cache());
    assert_eq!(first.size(), module.len() as u64);
    assert_eq!(
        first.extracted_module().unwrap().to_string(),
        digest(&module)
    );
    assert_eq!(first.layer_digest().to_string(), digest(&layer));
    assert_eq!(derived_files(cache.path()), [first.path().to_path_buf()]);
    assert!(
        first
            .path()
            .starts_with(cache.path().join(DERIVED).join(&digest(&layer)[7..]))
    );
    assert_eq!(temp_files(cache.path()), 0, "no temporary file left");
    assert_eq!(server.hits("GET", &layer_path), 1);

    let connections = server.connections();
    #[cfg(unix)]
    let before = inode(first.path());
    let warm = c.pull(&reference).unwrap();
    assert!(warm.from_cache());
    assert_eq!(warm.path(), first.path());
    assert_eq!(warm.read().unwrap(), module);
    assert_eq!(
        server.connections(),
        connections,
        "a warm pull connects to nothing"
    );
    // Extraction writes a new file and renames it over: the same inode means none ran.
    #[cfg(unix)]
    assert_eq!(inode(warm.path()), before, "a warm pull extracts nothing");
    assert_eq!(temp_files(cache.path()), 0);

    // Offline, with the registry gone, the same.
    drop(server);
    let offline = isolated("127.0.0.1:9", cache.path())
        .network(Network::Offline)
        .build()
        .unwrap();
    assert_eq!(offline.pull(&reference).unwrap().read().unwrap(), module);
}

#[test]
fn verify_finds_a_tampered_module_and_the_next_pull_extracts_it_again_offline() {
    let server = FakeRegistry::start();
    let module = wasm_payload("tampered", 3000);
    serve_image(
        &server,
        "1.0",
        &tar_gz(&[Entry::File("plugin.wasm", &module)]),
    );
    let cache = tempfile::tempdir().unwrap();
    let reference = format!("{}/{REPO}:1.0", server.host());
    let c = client(server.host(), cache.path());
    let path = c.pull(&reference).unwrap().path().to_path_buf();

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::write(&path, b"\0asm evil").unwrap();
    let report = c.cache().verify().unwrap();
    assert_eq!(report.corrupt().len(), 1, "{report:?}");
    assert_eq!(report.corrupt()[0].path(), path);
    assert!(!path.exists(), "the tampered module was removed");

    drop(server);
    let offline = isolated("127.0.0.1:9", cache.path())
        .network(Network::Offline)
        .build()
        .unwrap();
    let again = offline.pull(&reference).unwrap();
    assert_eq!(
        again.read().unwrap(),
        module,
        "re-extracted from the cached layer"
    );
    assert_eq!(c.cache().verify().unwrap().corrupt().len(), 0);
}

#[test]
fn prune_drops_modules_whose_layer_is_gone_and_keeps_the_others() {
    let server = FakeRegistry::start();
    let kept = wasm_payload("kept", 2000);
    let dropped = wasm_payload("dropped", 2000);
    serve_image(
        &server,
        "kept",
        &tar_gz(&[Entry::File("plugin.wasm", &kept)]),
    );
    serve_image(
        &server,
        "old",
        &tar_gz(&[Entry::File("plugin.wasm", &dropped)]),
    );
    let cache = tempfile::tempdir().unwrap();
    let c = client(server.host(), cache.path());
    let kept_path = c
        .pull(&format!("{}/{REPO}:kept", server.host()))
        .unwrap()
        .path()
        .to_path_buf();
    let old = format!("{}/{REPO}:old", server.host());
    let old_path = c.pull(&old).unwrap().path().to_path_buf();
    assert_eq!(derived_files(cache.path()).len(), 2);

    // Forget the old tag, as `cache prune --older-than` would once it aged.
    let r: forge_oci::Reference = old.parse().unwrap();
    let ref_file = cache
        .path()
        .join("refs")
        .join(r.registry().replace(':', "_"))
        .join(REPO)
        .join("_tags")
        .join("old");
    std::fs::remove_file(&ref_file).unwrap();
    // A module chosen by an older version of the extraction rules, for the kept
    // layer itself: never served, and pruned.
    let rel = kept_path.strip_prefix(cache.path().join(DERIVED)).unwrap();
    let older = cache.path().join("derived/rules-0/sha256").join(rel);
    std::fs::create_dir_all(older.parent().unwrap()).unwrap();
    std::fs::write(&older, b"what older rules chose").unwrap();
    assert_eq!(
        c.pull(&format!("{}/{REPO}:kept", server.host()))
            .unwrap()
            .path(),
        kept_path
    );
    let report = c.cache().prune(&PruneOptions::default()).unwrap();
    assert_eq!(report.derived_removed(), 2, "{report:?}");
    assert!(!cache.path().join("derived/rules-0").exists());
    assert!(!old_path.exists());
    assert!(
        !old_path.parent().unwrap().parent().unwrap().exists(),
        "its layer's directory went too"
    );
    assert_eq!(std::fs::read(&kept_path).unwrap(), kept);
    assert_eq!(derived_files(cache.path()), [kept_path]);
}

/// Pulls `layer` as an image and returns the refusal.
fn refusal(layer: &[u8], max: Option<u64>) -> (ExtractError, PathBuf) {
    let server = FakeRegistry::start();
    serve_image(&server, "bad", layer);
    let cache = tempfile::tempdir().unwrap().keep();
    let mut b = isolated(server.host(), &cache);
    if let Some(max) = max {
        b = b.max_extracted_size(max);
    }
    let e = b
        .build()
        .unwrap()
        .pull(&format!("{}/{REPO}:bad", server.host()))
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(REPO) && msg.contains(&digest(layer)), "{msg}");
    match e {
        Error::Extract { reason, .. } => (*reason, cache),
        other => panic!("expected an extraction error, got {other:?}"),
    }
}

fn assert_nothing_left(cache: &Path) {
    assert!(
        derived_files(cache).is_empty(),
        "nothing derived was stored"
    );
    assert_eq!(temp_files(cache), 0, "no temporary file left");
    verified_blobs(cache);
    let _ = std::fs::remove_dir_all(cache);
}

#[test]
fn hostile_layers_are_refused_with_typed_errors_and_leave_nothing() {
    // A gzip bomb: 64 MiB of zeros in a few tens of KiB.
    let bomb = tar_gz(&[Entry::File("plugin.wasm", &vec![0u8; 64 << 20])]);
    assert!(bomb.len() < 256 << 10);
    let (e, cache) = refusal(&bomb, Some(4 << 20));
    assert!(
        matches!(e, ExtractError::TooLarge { limit } if limit == 4 << 20),
        "{e}"
    );
    assert_nothing_left(&cache);

    let (e, cache) = refusal(
        &tar_gz(&[Entry::Raw(b"../../../tmp/plugin.wasm", b"\0asm")]),
        None,
    );
    assert!(
        matches!(&e, ExtractError::UnsafePath { path } if path.starts_with("../")),
        "{e}"
    );
    assert_nothing_left(&cache);
    assert!(
        !Path::new("/tmp/plugin.wasm").exists()
            || std::fs::read("/tmp/plugin.wasm").unwrap() != b"\0asm"
    );

    let (e, cache) = refusal(
        &tar_gz(&[Entry::Symlink("plugin.wasm", "/etc/passwd")]),
        None,
    );
    assert!(
        matches!(&e, ExtractError::Link { path } if path == "plugin.wasm"),
        "{e}"
    );
    assert_nothing_left(&cache);

    let names: Vec<String> = (0..10_001).map(|i| format!("f{i}")).collect();
    let many: Vec<Entry<'_>> = names.iter().map(|n| Entry::File(n, b"")).collect();
    let (e, cache) = refusal(&tar_gz(&many), None);
    assert!(
        matches!(e, ExtractError::TooManyEntries { limit: 10_000 }),
        "{e}"
    );
    assert_nothing_left(&cache);

    let two = tar_gz(&[
        Entry::File("a.wasm", b"\0asm a"),
        Entry::File("b.wasm", b"\0asm b"),
    ]);
    let (e, cache) = refusal(&two, None);
    assert!(
        matches!(&e, ExtractError::SeveralModules { paths } if paths.len() == 2),
        "{e}"
    );
    assert!(e.to_string().contains("a.wasm") && e.to_string().contains("b.wasm"));
    assert_nothing_left(&cache);
}

#[test]
fn a_pull_killed_at_any_call_while_extracting_leaves_nothing_half_written() {
    let strace_works = Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !strace_works {
        return skip(
            "a_pull_killed_at_any_call_while_extracting",
            "strace is not installed",
        );
    }
    let module = wasm_payload("killed while extracting", 200 << 10);
    let layer = tar_gz(&[Entry::File("plugin.wasm", &module)]);
    let server = FakeRegistry::start();
    serve_image(&server, "1.0", &layer);
    let reference = format!("{}/{REPO}:1.0", server.host());
    let work = tempfile::tempdir().unwrap();

    // A full pull, its extracted module then removed: the layer and config stay
    // cached, so the offline pulls below only extract, and every kill lands there.
    let seeded = work.path().join("seed");
    let out = cli_command(&seeded, server.host(), &["pull", &reference, "-q"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(seeded.join("derived")).unwrap();

    // Each kill point is a set of calls (glibc renames with renameat or
    // renameat2, never rename); openat is counted from the first that names the
    // cache: the program opens its shared libraries long before it extracts.
    let calls = [
        "write",
        "fsync",
        "fchmod",
        "mkdir",
        "rename,renameat,renameat2",
        "openat",
    ];
    let mut landed = 0;
    for call in calls {
        let pull_in = |cache: &Path| {
            cli_command(
                cache,
                server.host(),
                &["pull", &reference, "-q", "--offline"],
            )
        };
        let first = if call == "openat" {
            first_call_naming(&seeded, &work.path().join("dry"), call, pull_in)
        } else {
            1
        };
        let mut landed_here = 0;
        for when in first..first + 12 {
            let cache = work.path().join(format!("{call}-{when}"));
            copy_dir(&seeded, &cache);
            // Offline: the kill can only land in the local extraction.
            let pull = cli_command(
                &cache,
                server.host(),
                &["pull", &reference, "-q", "--offline"],
            );
            let log = work.path().join(format!("{call}-{when}.log"));
            let out = Command::new("strace")
                .args(["-f", "-qq", "-o"])
                .arg(&log)
                .args(["-e", &format!("trace={call}"), "-e"])
                .arg(format!("inject={call}:signal=SIGKILL:when={when}"))
                .arg(pull.get_program())
                .args(pull.get_args())
                .envs(pull.get_envs().filter_map(|(k, v)| Some((k, v?))))
                .env_remove("FORGE_OFFLINE")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            if std::fs::read_to_string(&log)
                .unwrap()
                .contains("+++ killed by SIGKILL +++")
            {
                landed += 1;
                landed_here += 1;
            } else {
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            // Whatever was killed, `derived/` holds only whole modules...
            derived_files(&cache);
            verified_blobs(&cache);
            // ...and the next pull, offline, finishes the job.
            let next = cli_command(
                &cache,
                server.host(),
                &["pull", &reference, "-q", "--offline"],
            )
            .output()
            .unwrap();
            assert!(
                next.status.success(),
                "after {call} #{when}: {}",
                String::from_utf8_lossy(&next.stderr)
            );
            let path = PathBuf::from(String::from_utf8(next.stdout).unwrap().trim());
            assert_eq!(
                std::fs::read(&path).unwrap(),
                module,
                "after {call} #{when}"
            );
            let verify = cli_command(&cache, server.host(), &["cache", "verify"])
                .output()
                .unwrap();
            assert_eq!(verify.status.code(), Some(0), "after {call} #{when}");
            let _ = std::fs::remove_dir_all(&cache);
        }
        assert!(landed_here > 0, "no kill at {call} landed");
    }
    eprintln!("extraction kill points that landed: {landed}");
    assert!(
        landed >= 10,
        "only {landed} kills landed: the test proves little"
    );
}

/// The number (from 1) of the first of `calls` a run of `pull` in a copy of
/// `seeded` makes that names the copy, or 1 when none does.
fn first_call_naming(
    seeded: &Path,
    dry: &Path,
    calls: &str,
    pull_in: impl Fn(&Path) -> Command,
) -> u32 {
    let _ = std::fs::remove_dir_all(dry);
    copy_dir(seeded, dry);
    let pull = pull_in(dry);
    let log = dry.with_extension("log");
    let out = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&log)
        .args(["-e", &format!("trace={calls}")])
        .arg(pull.get_program())
        .args(pull.get_args())
        .envs(pull.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env_remove("FORGE_OFFLINE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace = std::fs::read_to_string(&log).unwrap();
    let dry = dry.to_str().unwrap();
    let lines: Vec<&str> = trace.lines().filter(|l| !l.contains("resumed>")).collect();
    let at = lines.iter().position(|l| l.contains(dry)).unwrap_or(0);
    u32::try_from(at + 1).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_dir(&entry.path(), &dest);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

#[test]
fn an_extracted_module_is_what_pull_to_writes_and_what_a_vendored_layout_serves_offline() {
    let server = FakeRegistry::start();
    let (module, reference) = serve_module(&server, "2.0", "vendored filter", 7000);
    let work = tempfile::tempdir().unwrap();

    // -o writes the module, not the layer that streamed past while downloading.
    let out = work.path().join("filter.wasm");
    std::fs::write(&out, b"old").unwrap();
    let cache = work.path().join("cache");
    let c = client(server.host(), &cache);
    let pulled = c.pull_to(&reference, &out).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), module);
    assert_eq!(pulled.size(), module.len() as u64);
    let siblings = std::fs::read_dir(work.path()).unwrap().count();
    assert_eq!(
        siblings, 2,
        "only the output and the cache: no temporary file"
    );

    // The layout holds the image (manifest, config, layer) and a new machine
    // with an empty cache and no network extracts the module from it.
    let layout = work.path().join("vendor");
    c.vendor(&layout, &[&reference]).unwrap();
    drop(server);
    let fresh = work.path().join("fresh-cache");
    let offline = isolated("127.0.0.1:9", &fresh)
        .network(Network::Offline)
        .oci_layout(&layout)
        .build()
        .unwrap();
    let from_layout = offline.pull(&reference).unwrap();
    assert_eq!(from_layout.read().unwrap(), module);
    assert_eq!(
        from_layout.extracted_module().unwrap().to_string(),
        digest(&module)
    );
    assert_eq!(derived_files(&fresh), [from_layout.path().to_path_buf()]);
}

#[cfg(unix)]
#[test]
fn a_link_planted_for_derived_is_never_written_through() {
    let server = FakeRegistry::start();
    let (_, reference) = serve_module(&server, "linked", "not through a link", 3000);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let elsewhere = work.path().join("elsewhere");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, cache.join("derived")).unwrap();
    let c = client(server.host(), &cache);
    let e = c.pull(&reference).unwrap_err();
    assert!(e.to_string().contains("derived"), "{e}");
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "nothing was created through the link"
    );
}

/// A vendored container image whose config blob is gone from the layout:
/// offline, the pull fails naming that file; online, the layout is passed over
/// with an event and the registry's copy is extracted.
#[test]
fn a_layout_missing_an_images_config_is_named_offline_and_passed_over_online() {
    let server = FakeRegistry::start();
    let (module, reference) = serve_module(&server, "3.0", "config gone", 3000);
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("vendor");
    client(server.host(), &work.path().join("c0"))
        .vendor(&layout, &[&reference])
        .unwrap();
    let config = br#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let hex = digest(config).trim_start_matches("sha256:").to_owned();
    std::fs::remove_file(layout.join("blobs/sha256").join(&hex)).unwrap();

    let offline = isolated(server.host(), &work.path().join("c1"))
        .network(Network::Offline)
        .oci_layout(&layout)
        .build()
        .unwrap();
    let e = offline.pull(&reference).unwrap_err();
    assert!(matches!(e, Error::Layout { .. }), "{e:?}");
    assert!(e.to_string().contains(&hex), "{e}");

    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    let online = isolated(server.host(), &work.path().join("c2"))
        .oci_layout(&layout)
        .on_event(move |e| seen.lock().unwrap().push(e.to_string()))
        .build()
        .unwrap();
    let out = work.path().join("out.wasm");
    let pulled = online.pull_to(&reference, &out).unwrap();
    assert_eq!(pulled.read().unwrap(), module);
    assert_eq!(std::fs::read(&out).unwrap(), module);
    let events = events.lock().unwrap();
    assert!(
        events.iter().any(|e| e.contains(&hex)),
        "an event names the layout's missing file: {events:?}"
    );
}

/// A mirror serving a container image whose config does not verify is passed
/// over; the registry's image is extracted, and `pull_to` writes the module.
#[test]
fn a_mirror_serving_a_config_that_does_not_verify_is_passed_over() {
    let upstream = FakeRegistry::start();
    let mirror = FakeRegistry::start();
    let module = wasm_payload("mirrored filter", 3000);
    let layer = tar_gz(&[Entry::File("plugin.wasm", &module)]);
    serve_image(&upstream, "4.0", &layer);
    serve_image(&mirror, "4.0", &layer);
    let config = br#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let mut bad = config.to_vec();
    bad[2] = b'A';
    mirror.route(
        &format!("/v2/{REPO}/blobs/{}", digest(config)),
        Route::ok(bad),
    );
    let reference = format!("{}/{REPO}:4.0", upstream.host());
    let work = tempfile::tempdir().unwrap();
    let c = isolated(upstream.host(), &work.path().join("cache"))
        .insecure_host(mirror.host())
        .mirror(upstream.host(), mirror.host())
        .build()
        .unwrap();
    let out = work.path().join("out.wasm");
    let pulled = c.pull_to(&reference, &out).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), module);
    assert_eq!(pulled.read().unwrap(), module);
    // pull_all of the same reference twice plus a second tag, warm: all agree.
    let all = c.pull_all(&[&reference, &reference]);
    for a in all {
        assert_eq!(a.unwrap().read().unwrap(), module);
    }
}

/// Duplicates in one `pull_all`, offline from a layout, each extracting the
/// same module into a fresh cache at once: every one gets it, one derived file.
#[test]
fn pull_all_of_duplicates_from_a_layout_extracts_once() {
    let server = FakeRegistry::start();
    let (module, reference) = serve_module(&server, "5.0", "dup filter", 50_000);
    let pin_server = server.host().to_owned();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("vendor");
    let vendored = client(server.host(), &work.path().join("c0"))
        .vendor(&layout, &[&reference])
        .unwrap();
    let pin = format!("{pin_server}/{REPO}@{}", vendored[0].manifest_digest());
    drop(server);
    let fresh = work.path().join("fresh");
    let c = isolated("127.0.0.1:9", &fresh)
        .network(Network::Offline)
        .oci_layout(&layout)
        .jobs(4)
        .build()
        .unwrap();
    let refs = [&reference, &pin, &reference, &pin, &reference];
    for a in c.pull_all(&refs) {
        assert_eq!(a.unwrap().read().unwrap(), module);
    }
    assert_eq!(derived_files(&fresh).len(), 1);
}
