//! Vendored OCI image layouts: `Client::vendor` writes one from Debian's
//! `docker-registry`, and pulls read it back offline with the registry stopped.
//!
//! Without `/usr/bin/docker-registry` the tests are skipped loudly, except under CI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::registry::Registry;
use common::*;
use forge_oci::{Error, Event, LayoutProblem, Network, Source};

fn index_entries(dir: &Path) -> Vec<serde_json::Value> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"].as_array().unwrap().clone()
}

/// Vendor a reference, stop the registry, and pull it by tag and by pin from the
/// layout alone (offline, each into an empty cache): the bytes are the pushed
/// ones and the cache records the registry's reference.
#[test]
fn vendored_layout_serves_tag_and_pin_offline_with_the_registry_stopped() {
    let registry = match Registry::start() {
        Ok(r) => r,
        Err(why) => return skip("vendored_layout_serves_tag_and_pin_offline", &why),
    };
    let payload = wasm_payload("vendored", 70_000);
    let m = registry.push_wasm("plugins/a", "v1", &payload);
    let host = registry.host.clone();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("vendor/oci");
    let reference = format!("{host}/plugins/a:v1");
    let vendored = client(&host, &work.path().join("c0"))
        .vendor(&layout, &[&reference])
        .unwrap();
    assert_eq!(vendored.len(), 1);
    assert_eq!(vendored[0].manifest_digest().to_string(), digest(&m));
    assert_eq!(vendored[0].blobs(), 3, "manifest, config, layer");

    // The layout: marker, one entry named both ways by the full reference, blobs.
    assert_eq!(
        std::fs::read_to_string(layout.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let entries = index_entries(&layout);
    assert_eq!(entries.len(), 1);
    let a = &entries[0]["annotations"];
    assert_eq!(a["org.opencontainers.image.ref.name"], reference.as_str());
    assert_eq!(a["io.containerd.image.name"], reference.as_str());
    assert_eq!(entries[0]["digest"], digest(&m).as_str());
    for blob in [&m[..], &payload, EMPTY_CONFIG] {
        let hex = digest(blob).trim_start_matches("sha256:").to_owned();
        assert_eq!(
            std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap(),
            blob
        );
    }
    drop(registry);

    let pin = format!("{host}/plugins/a@{}", digest(&m));
    for (i, r) in [&reference, &pin].into_iter().enumerate() {
        let cache = work.path().join(format!("offline{i}"));
        let c = isolated(&host, &cache)
            .network(Network::Offline)
            .oci_layout(&layout)
            .build()
            .unwrap();
        let artifact = c.pull(r).unwrap();
        assert!(
            artifact.path().starts_with(&cache),
            "the path is in the cache"
        );
        assert_eq!(artifact.read().unwrap(), payload);
        // The cache now answers alone: the layout can go.
        let again = isolated(&host, &cache)
            .network(Network::Offline)
            .build()
            .unwrap();
        assert_eq!(again.pull(r).unwrap().read().unwrap(), payload);
    }
    // Online with the registry down the layout still answers first.
    let cache = work.path().join("online");
    let c = isolated(&host, &cache).oci_layout(&layout).build().unwrap();
    assert_eq!(c.pull(&reference).unwrap().read().unwrap(), payload);
    assert_eq!(
        c.resolve(&reference).unwrap().manifest_digest().to_string(),
        digest(&m)
    );
}

/// A layout blob that does not hash to its name is an error naming that file;
/// nothing of it is cached.
#[test]
fn a_corrupted_layout_blob_is_an_error_naming_the_file() {
    let registry = match Registry::start() {
        Ok(r) => r,
        Err(why) => return skip("a_corrupted_layout_blob_is_an_error_naming_the_file", &why),
    };
    let payload = wasm_payload("to be corrupted", 20_000);
    registry.push_wasm("plugins/b", "v1", &payload);
    let host = registry.host.clone();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("oci");
    let reference = format!("{host}/plugins/b:v1");
    client(&host, &work.path().join("c0"))
        .vendor(&layout, &[&reference])
        .unwrap();
    drop(registry);
    let hex = digest(&payload).trim_start_matches("sha256:").to_owned();
    let blob = layout.join("blobs/sha256").join(&hex);
    let mut bad = payload.clone();
    bad[10_000] ^= 1;
    std::fs::write(&blob, &bad).unwrap();

    let cache = work.path().join("cache");
    let c = isolated(&host, &cache)
        .network(Network::Offline)
        .oci_layout(&layout)
        .build()
        .unwrap();
    let err = c.pull(&reference).unwrap_err();
    match &err {
        Error::Layout {
            path,
            reason: LayoutProblem::Verify(_),
            ..
        } => assert_eq!(path, &blob),
        other => panic!("expected a layout verification error, got {other:?}"),
    }
    assert!(
        err.to_string().contains(&blob.display().to_string()),
        "{err}"
    );
    assert!(
        verified_blobs(&cache).iter().all(|p| !p.ends_with(&hex)),
        "the corrupt blob was cached"
    );
    assert_eq!(temp_files(&cache), 0);
    assert!(
        c.cache().list().unwrap().is_empty(),
        "no reference recorded"
    );
}

/// Vendoring again after a tag moved replaces its entry: one per reference.
#[test]
fn revendoring_a_moved_tag_replaces_its_entry() {
    let registry = match Registry::start() {
        Ok(r) => r,
        Err(why) => return skip("revendoring_a_moved_tag_replaces_its_entry", &why),
    };
    let host = registry.host.clone();
    let first = registry.push_wasm("plugins/c", "v1", &wasm_payload("first", 5_000));
    let other = registry.push_wasm("plugins/c", "v2", &wasm_payload("other", 5_000));
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("oci");
    let c = client(&host, &work.path().join("cache"));
    let v1 = format!("{host}/plugins/c:v1");
    let v2 = format!("{host}/plugins/c:v2");
    c.vendor(&layout, &[&v1, &v2]).unwrap();
    let moved_payload = wasm_payload("moved", 6_000);
    let moved = registry.push_wasm("plugins/c", "v1", &moved_payload);
    assert_ne!(first, moved);
    // The same client, whose cache holds the old v1: vendoring asks the registry.
    c.vendor(&layout, &[&v1]).unwrap();
    let entries = index_entries(&layout);
    let named = |r: &str| -> Vec<String> {
        entries
            .iter()
            .filter(|e| e["annotations"]["org.opencontainers.image.ref.name"] == r)
            .map(|e| e["digest"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(named(&v1), [digest(&moved)]);
    assert_eq!(named(&v2), [digest(&other)]);
    drop(registry);
    let c = isolated(&host, &work.path().join("fresh"))
        .network(Network::Offline)
        .oci_layout(&layout)
        .build()
        .unwrap();
    assert_eq!(c.pull(&v1).unwrap().read().unwrap(), moved_payload);
}

/// Online, a layout that cannot give a reference is passed over with an event
/// naming it, and the registry answers.
#[test]
fn online_a_broken_layout_is_skipped_with_an_event() {
    let registry = match Registry::start() {
        Ok(r) => r,
        Err(why) => return skip("online_a_broken_layout_is_skipped_with_an_event", &why),
    };
    let host = registry.host.clone();
    let payload = wasm_payload("broken layout", 4_000);
    let m = registry.push_wasm("plugins/d", "v1", &payload);
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("oci");
    let reference = format!("{host}/plugins/d:v1");
    client(&host, &work.path().join("c0"))
        .vendor(&layout, &[&reference])
        .unwrap();
    let hex = digest(&m).trim_start_matches("sha256:").to_owned();
    std::fs::write(layout.join("blobs/sha256").join(hex), b"{}").unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let c = isolated(&host, &work.path().join("cache"))
        .oci_layout(&layout)
        .on_event(move |e| {
            if let Event::SourceSkipped { source, .. } = e {
                sink.lock()
                    .unwrap()
                    .push(((*source).clone(), e.to_string()));
            }
        })
        .build()
        .unwrap();
    assert_eq!(c.pull(&reference).unwrap().read().unwrap(), payload);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, Source::Layout(layout.clone()));
    assert!(seen[0].1.contains(&layout.display().to_string()));
}

/// A build script reruns when the mirrors or layouts change.
#[test]
fn build_scripts_watch_the_new_variables() {
    for var in ["FORGE_OCI_MIRRORS", "FORGE_OCI_LAYOUTS"] {
        assert!(forge_oci::build::ENV_VARS.contains(&var), "{var}");
    }
}

/// A tag vendored by hand as `one`, pulled offline from the layout into a cache
/// of its own, then vendored again as `two`: the client (offline, reading the
/// layout) and the second manifest.
struct Revendored {
    work: tempfile::TempDir,
    layout: std::path::PathBuf,
    client: forge_oci::Client,
    second: Vec<u8>,
}

fn vendored_twice(reference: &str, one: &[u8], two: &[u8]) -> Revendored {
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("oci");
    hand_layout(&layout, reference, one);
    let client = isolated("127.0.0.1:1", &work.path().join("cache"))
        .network(Network::Offline)
        .oci_layout(&layout)
        .build()
        .unwrap();
    assert_eq!(client.pull(reference).unwrap().read().unwrap(), one);
    let second = hand_layout(&layout, reference, two); // `git pull` brings it
    Revendored {
        work,
        layout,
        client,
        second,
    }
}

/// A layout written by hand: the payload's manifest named `reference`.
fn hand_layout(dir: &Path, reference: &str, payload: &[u8]) -> Vec<u8> {
    let m = manifest(&[(WASM, payload)]);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    for b in [&m[..], payload, EMPTY_CONFIG] {
        let hex = digest(b).trim_start_matches("sha256:").to_owned();
        std::fs::write(blobs.join(hex), b).unwrap();
    }
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": digest(&m), "size": m.len(),
        "annotations": {"org.opencontainers.image.ref.name": reference}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    m
}

/// Runs `f` on a thread; panics (instead of hanging the suite) when it has not
/// returned after a minute: only a hang takes that long.
fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("hung on a layout file")
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// A layout's `index.json` or blob that is a FIFO (or a link to one) is an
/// error naming it, never a pull that waits for a writer for ever.
#[test]
fn a_fifo_in_a_layout_is_an_error_not_a_hang() {
    let work = tempfile::tempdir().unwrap();
    let payload = wasm_payload("fifo", 3_000);
    let reference = "127.0.0.1:1/plugins/f:v1".to_owned();
    for (i, which) in ["index.json", "layer"].into_iter().enumerate() {
        let layout = work.path().join(format!("oci{i}"));
        hand_layout(&layout, &reference, &payload);
        let file = match which {
            "index.json" => layout.join("index.json"),
            _ => layout
                .join("blobs/sha256")
                .join(digest(&payload).trim_start_matches("sha256:")),
        };
        std::fs::remove_file(&file).unwrap();
        mkfifo(&file);
        let c = isolated("127.0.0.1:1", &work.path().join(format!("cache{i}")))
            .network(Network::Offline)
            .oci_layout(&layout)
            .build()
            .unwrap();
        let r = reference.clone();
        let err = within_a_minute(move || c.pull(&r).map(|_| ())).unwrap_err();
        match &err {
            Error::Layout { path, .. } => assert_eq!(path, &file, "{which}"),
            other => panic!("{which}: expected a layout error, got {other:?}"),
        }
    }
}

/// Text from a layout's `index.json` is shown escaped, as a server's is.
#[test]
fn a_layout_digest_with_escape_sequences_is_shown_escaped() {
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("oci");
    let reference = "127.0.0.1:1/plugins/e:v1";
    hand_layout(&layout, reference, &wasm_payload("esc", 100));
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "digest": "sha256:\u{1b}]0;owned\u{7}\u{1b}[2K", "size": 1,
        "annotations": {"org.opencontainers.image.ref.name": reference}}]});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    let err = isolated("127.0.0.1:1", &work.path().join("cache"))
        .network(Network::Offline)
        .oci_layout(&layout)
        .build()
        .unwrap()
        .pull(reference)
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Layout { .. }), "{err:?}");
    assert!(!text.contains('\u{1b}'), "{text:?}");
}

/// Vendoring into a directory whose `index.json` is a FIFO is an error, not a
/// wait for a writer that never comes.
#[test]
fn vendoring_onto_a_fifo_index_is_an_error_not_a_hang() {
    let registry = common::server::FakeRegistry::start();
    let payload = wasm_payload("vendor fifo", 2_000);
    registry.artifact("plugins/v", "v1", &payload, |r| r);
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("oci");
    std::fs::create_dir_all(&layout).unwrap();
    mkfifo(&layout.join("index.json"));
    let c = client(registry.host(), &work.path().join("cache"));
    let reference = format!("{}/plugins/v:v1", registry.host());
    let to = layout.clone();
    let err = within_a_minute(move || c.vendor(&to, &[&reference]).map(|_| ())).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("index.json"), "{err}");
}

/// A connection cut while vendoring a blob is reported as the network failing
/// (naming the registry), not as a local file that could not be written.
#[test]
fn a_cut_download_while_vendoring_names_the_registry() {
    let registry = common::server::FakeRegistry::start();
    let payload = wasm_payload("cut while vendoring", 20_000);
    registry.artifact("plugins/cut", "v1", &payload, |r| r);
    registry.blob("plugins/cut", EMPTY_CONFIG);
    registry.route(
        &format!("/v2/plugins/cut/blobs/{}", digest(&payload)),
        common::server::Route::ok(payload.clone()).cut_after(1_000),
    );
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("oci");
    let reference = format!("{}/plugins/cut:v1", registry.host());
    let err = client(registry.host(), &work.path().join("cache"))
        .vendor(&layout, &[&reference])
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(err.to_string().contains(registry.host()), "{err}");
}

/// A layout is never written inside the cache (its `blobs/sha256/` would take
/// the layout's files for corrupt blobs), nor into the current directory for
/// an empty path.
#[test]
fn vendoring_into_the_cache_or_an_empty_path_is_refused() {
    let registry = common::server::FakeRegistry::start();
    let payload = wasm_payload("not into the cache", 2_000);
    registry.artifact("plugins/v", "v1", &payload, |r| r);
    registry.blob("plugins/v", EMPTY_CONFIG);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let c = client(registry.host(), &cache);
    let reference = format!("{}/plugins/v:v1", registry.host());
    c.pull(&reference).unwrap();
    for dir in [
        cache.clone(),
        cache.join("blobs/sha256"),
        cache.join("refs/new/oci"),
    ] {
        let err = c.vendor(&dir, &[&reference]).unwrap_err();
        assert!(
            matches!(err, Error::DestinationIsCached { .. }),
            "{}: {err:?}",
            dir.display()
        );
    }
    assert!(c.cache().verify().unwrap().corrupt().is_empty());
    assert!(!cache.join("index.json").exists());
    let err = c.vendor("", &[&reference]).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
}

/// Two vendors into one directory at once take turns: the entries of both are
/// in `index.json` at the end, whichever finished first.
#[test]
fn two_vendors_at_once_keep_each_others_entries() {
    use common::server::FakeRegistry;
    let registry = FakeRegistry::start();
    let slow = wasm_payload("slow to vendor", 20_000);
    let quick = wasm_payload("quick to vendor", 2_000);
    registry.artifact("plugins/slow", "v1", &slow, |r| {
        r.slow(2_000, std::time::Duration::from_millis(100))
    });
    registry.artifact("plugins/quick", "v1", &quick, |r| r);
    registry.blob("plugins/slow", EMPTY_CONFIG);
    registry.blob("plugins/quick", EMPTY_CONFIG);
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("oci");
    let slow_ref = format!("{}/plugins/slow:v1", registry.host());
    let quick_ref = format!("{}/plugins/quick:v1", registry.host());
    let slow_blob = format!("/v2/plugins/slow/blobs/{}", digest(&slow));

    let (c, to, r) = (
        client(registry.host(), &work.path().join("c1")),
        layout.clone(),
        slow_ref.clone(),
    );
    let first = std::thread::spawn(move || c.vendor(&to, &[&r]).map(|_| ()));
    // The slow vendor has its layout open once its blob is being sent.
    while registry.hits("GET", &slow_blob) == 0 {
        std::thread::yield_now();
    }
    client(registry.host(), &work.path().join("c2"))
        .vendor(&layout, &[&quick_ref])
        .unwrap();
    first.join().unwrap().unwrap();
    let names: Vec<String> = index_entries(&layout)
        .iter()
        .map(|e| e["annotations"]["org.opencontainers.image.ref.name"].to_string())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

/// The temporary files a vendor killed mid-way left are removed by the next,
/// so they are not committed with the layout.
#[test]
fn vendoring_again_removes_a_killed_vendors_temporary_files() {
    let registry = common::server::FakeRegistry::start();
    let payload = wasm_payload("after a kill", 2_000);
    registry.artifact("plugins/k", "v1", &payload, |r| r);
    registry.blob("plugins/k", EMPTY_CONFIG);
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("oci");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let left = [
        layout.join(".tmpAbC123"),
        layout.join("blobs/sha256/.tmpXyZ789"),
    ];
    for f in &left {
        std::fs::write(f, b"half a blob").unwrap();
    }
    client(registry.host(), &work.path().join("cache"))
        .vendor(&layout, &[format!("{}/plugins/k:v1", registry.host())])
        .unwrap();
    for f in &left {
        assert!(!f.exists(), "{} was left", f.display());
    }
}

/// A layout is readable by others, as skopeo writes one: vendored into a
/// shared directory (or copied to an air-gapped machine with its modes), the
/// build user must be able to read what an admin vendored.
#[cfg(unix)]
#[test]
fn a_vendored_layout_is_readable_by_other_users() {
    use std::os::unix::fs::PermissionsExt;
    let registry = common::server::FakeRegistry::start();
    let payload = wasm_payload("shared", 2_000);
    let m = registry.artifact("plugins/sh", "v1", &payload, |r| r);
    registry.blob("plugins/sh", EMPTY_CONFIG);
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("oci");
    client(registry.host(), &work.path().join("cache"))
        .vendor(&layout, &[format!("{}/plugins/sh:v1", registry.host())])
        .unwrap();
    let blob = |b: &[u8]| {
        layout
            .join("blobs/sha256")
            .join(digest(b).trim_start_matches("sha256:"))
    };
    // What the umask lets an ordinary file be, as skopeo's would be.
    let plain = work.path().join("plain");
    std::fs::write(&plain, b"").unwrap();
    let expected = std::fs::metadata(&plain).unwrap().permissions().mode() & 0o644;
    for f in [
        layout.join("index.json"),
        layout.join("oci-layout"),
        blob(&m),
        blob(&payload),
    ] {
        let mode = std::fs::metadata(&f).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, expected, "{}: {mode:o}", f.display());
    }
}

/// An empty layout path is refused when the client is built, as an empty cache
/// directory is: never the current directory's `index.json` and `blobs/`.
#[test]
fn an_empty_layout_path_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let err = isolated("127.0.0.1:1", work.path())
        .oci_layout("")
        .build()
        .unwrap_err();
    match &err {
        Error::Config { setting, .. } => assert_eq!(*setting, "ClientBuilder::oci_layout"),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn a_tag_vendored_again_wins_over_the_digest_the_cache_recorded() {
    let reference = "127.0.0.1:1/plugins/moved:v1";
    let (one, two) = (wasm_payload("one", 500), wasm_payload("two", 500));
    let v = vendored_twice(reference, &one, &two);
    assert_eq!(v.client.pull(reference).unwrap().read().unwrap(), two);
    // Without the layout, the cache's record of the tag is what there is.
    let plain = isolated("127.0.0.1:1", &v.work.path().join("cache"))
        .network(Network::Offline)
        .build()
        .unwrap();
    assert_eq!(plain.pull(reference).unwrap().read().unwrap(), two);
}

/// Offline, resolve and inspect say what a pull would take: the layout's digest
/// for a tag vendored again, not the one the cache recorded before.
#[test]
fn offline_resolve_agrees_with_pull_after_vendoring_again() {
    let reference = "127.0.0.1:1/plugins/resolved:v1";
    let (one, two) = (wasm_payload("one", 400), wasm_payload("two", 400));
    let v = vendored_twice(reference, &one, &two);
    let resolved = v.client.resolve(reference).unwrap();
    let inspected = v.client.inspect(reference).unwrap();
    let pulled = v.client.pull(reference).unwrap();
    assert_eq!(pulled.manifest_digest().to_string(), digest(&v.second));
    assert_eq!(resolved.manifest_digest().to_string(), digest(&v.second));
    assert_eq!(inspected.manifest_digest().to_string(), digest(&v.second));
}

/// A layout vendored again whose new blobs are missing: offline, the pull fails
/// naming the layout's missing file (it does not serve the old cached bytes as
/// if they were what the project vendored).
#[test]
fn offline_a_revendored_tag_with_missing_blobs_names_the_file() {
    let reference = "127.0.0.1:1/plugins/missing:v1";
    let (one, two) = (wasm_payload("one", 300), wasm_payload("two", 300));
    let v = vendored_twice(reference, &one, &two);
    let hex = digest(&two).trim_start_matches("sha256:").to_owned();
    std::fs::remove_file(v.layout.join("blobs/sha256").join(&hex)).unwrap();
    let e = v.client.pull(reference).unwrap_err();
    assert!(matches!(e, Error::Layout { .. }), "{e:?}");
    assert!(e.to_string().contains(&hex), "{e}");
}

/// Online, with the registry unreachable: a layout naming a tag another digest
/// whose blobs are not there (index.json updated, blobs not yet fetched) is
/// passed over with an event, and the cached tag is still what is served, as
/// it would be without the layout.
#[test]
fn online_a_broken_revendored_layout_does_not_turn_a_warm_cache_into_a_failure() {
    let server = common::server::FakeRegistry::start();
    let one = wasm_payload("one", 300);
    server.artifact("plugins/warm", "v1", &one, |r| r);
    let reference = format!("{}/plugins/warm:v1", server.host());
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let layout = work.path().join("oci");
    client(server.host(), &cache).pull(&reference).unwrap();
    let two = wasm_payload("two", 300);
    hand_layout(&layout, &reference, &two);
    let hex = digest(&two).trim_start_matches("sha256:").to_owned();
    std::fs::remove_file(layout.join("blobs/sha256").join(&hex)).unwrap();
    let host = server.host().to_owned();
    drop(server);
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let c = isolated(&host, &cache)
        .oci_layout(&layout)
        .on_event(move |e| seen.lock().unwrap().push(e.to_string()))
        .build()
        .unwrap();
    let pulled = c.pull(&reference);
    let events = events.lock().unwrap();
    assert!(events.iter().any(|e| e.contains(&hex)), "{events:?}");
    assert_eq!(pulled.unwrap().read().unwrap(), one);
}
