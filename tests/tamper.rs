//! A hostile local user: whoever can write the cache directory plants links,
//! FIFOs, hard links and damaged files where the cache keeps its own. Each is
//! never served, repaired, or refused with an error naming the path; nothing
//! outside the cache is ever written.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
#![cfg(unix)]

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::server::{FakeRegistry, Route};
use common::*;
use forge_oci::{Client, Error, Network, UnsafeDirectory};

const REPO: &str = "tamper/plugin";

struct Setup {
    server: FakeRegistry,
    cache: tempfile::TempDir,
    outside: tempfile::TempDir,
    payload: Vec<u8>,
    manifest: Vec<u8>,
}

impl Setup {
    fn new(seed: &str, blob: impl FnOnce(Route) -> Route) -> Setup {
        let server = FakeRegistry::start();
        let payload = wasm_payload(seed, 100_000);
        let manifest = server.artifact(REPO, "v1", &payload, blob);
        Setup {
            server,
            cache: tempfile::tempdir().unwrap(),
            outside: tempfile::tempdir().unwrap(),
            payload,
            manifest,
        }
    }

    fn reference(&self) -> String {
        format!("{}/{REPO}:v1", self.server.host())
    }

    fn client(&self) -> Client {
        client(self.server.host(), self.cache.path())
    }

    fn root(&self) -> &Path {
        self.cache.path()
    }

    fn hex(&self) -> String {
        forge_oci::Digest::of(&self.payload).hex().to_owned()
    }

    fn blob(&self) -> PathBuf {
        self.root().join("blobs/sha256").join(self.hex())
    }

    fn partial(&self) -> PathBuf {
        self.root()
            .join("tmp")
            .join(format!("{}.partial", self.hex()))
    }

    fn blob_requests(&self) -> Vec<Option<u64>> {
        self.server
            .ranges(&format!("/v2/{REPO}/blobs/{}", digest(&self.payload)))
    }

    /// A file outside the cache with `content`, which must stay as it is.
    fn victim(&self, content: &[u8]) -> PathBuf {
        let path = self.outside.path().join("victim");
        fs::write(&path, content).unwrap();
        path
    }

    /// Makes the cache's directories, as a first pull would, without a blob.
    fn make_dirs(&self) {
        for d in ["tmp", "locks", "blobs/sha256", "refs"] {
            fs::create_dir_all(self.root().join(d)).unwrap();
        }
    }

    /// Pulls and checks the bytes, that the blob is a regular file, and that
    /// `blobs/` is sound.
    fn pull_right_bytes(&self) -> forge_oci::Artifact {
        let a = self.client().pull(&self.reference()).unwrap();
        assert_eq!(a.read().unwrap(), self.payload);
        assert!(fs::symlink_metadata(a.path()).unwrap().is_file());
        verified_blobs(self.root());
        a
    }
}

#[test]
fn a_partial_planted_as_a_link_is_not_written_through() {
    let s = Setup::new("link partial", |r| r.ranges());
    s.make_dirs();
    let victim = s.victim(b"someone else's file");
    symlink(&victim, s.partial()).unwrap();
    s.pull_right_bytes();
    assert_eq!(fs::read(&victim).unwrap(), b"someone else's file");
    assert!(!s.partial().exists());
}

#[test]
fn a_partial_planted_as_a_hard_link_is_not_written_through() {
    let s = Setup::new("hard link partial", |r| r.ranges());
    s.make_dirs();
    // A prefix of the blob, so a writer that trusted it would append to it.
    let victim = s.victim(&s.payload[..10]);
    fs::hard_link(&victim, s.partial()).unwrap();
    s.pull_right_bytes();
    assert_eq!(fs::read(&victim).unwrap(), &s.payload[..10]);
    assert_eq!(
        s.blob_requests(),
        [None],
        "the planted prefix is not resumed"
    );
}

#[test]
fn a_partial_planted_as_a_fifo_does_not_hang_the_pull() {
    let s = Setup::new("fifo partial", |r| r.ranges());
    s.make_dirs();
    mkfifo(&s.partial());
    s.pull_right_bytes();
}

#[test]
fn a_partial_that_is_not_a_prefix_is_fetched_again_from_zero() {
    let s = Setup::new("bad prefix", |r| r.ranges());
    s.make_dirs();
    fs::write(s.partial(), vec![b'X'; 5_000]).unwrap();
    s.pull_right_bytes();
    assert_eq!(s.blob_requests(), [Some(5_000), None]);
}

#[test]
fn a_partial_holding_the_whole_blob_is_finished_without_a_request() {
    // The registry answers 416 to any range: a client that asked for the bytes
    // after the end would be wedged.
    let s = Setup::new("whole partial", |r| r.refuse_ranges());
    s.make_dirs();
    fs::write(s.partial(), &s.payload).unwrap();
    s.pull_right_bytes();
    assert_eq!(s.blob_requests(), Vec::<Option<u64>>::new());
}

#[test]
fn a_partial_the_registry_will_not_resume_is_fetched_from_zero() {
    let s = Setup::new("416", |r| r.refuse_ranges());
    s.make_dirs();
    fs::write(s.partial(), &s.payload[..5_000]).unwrap();
    s.pull_right_bytes();
    assert_eq!(s.blob_requests(), [Some(5_000), None]);
}

#[test]
fn a_lock_file_planted_as_a_link_is_not_followed() {
    let s = Setup::new("link lock", |r| r);
    s.make_dirs();
    let target = s.outside.path().join("created-through-a-link");
    symlink(
        &target,
        s.root().join("locks").join(format!("{}.lock", s.hex())),
    )
    .unwrap();
    symlink(s.outside.path().join("cache-lock"), s.root().join(".lock")).unwrap();
    s.pull_right_bytes();
    assert!(!target.exists(), "a dangling link's target was created");
    assert!(!s.outside.path().join("cache-lock").exists());
}

#[test]
fn a_lock_file_planted_as_a_fifo_does_not_hang_the_pull() {
    let s = Setup::new("fifo lock", |r| r);
    s.make_dirs();
    mkfifo(&s.root().join("locks").join(format!("{}.lock", s.hex())));
    s.pull_right_bytes();
}

#[test]
fn a_blob_that_is_a_link_is_never_served_and_is_replaced() {
    let s = Setup::new("link blob", |r| r);
    s.pull_right_bytes();
    // Swap the blob for a link to a file outside with the very same bytes.
    let victim = s.victim(&s.payload);
    fs::remove_file(s.blob()).unwrap();
    symlink(&victim, s.blob()).unwrap();
    let a = s.pull_right_bytes();
    assert!(!a.from_cache(), "a link is a miss");
    assert_eq!(fs::read(&victim).unwrap(), s.payload);
}

#[test]
fn a_truncated_blob_is_a_miss_that_is_repaired() {
    let s = Setup::new("truncated blob", |r| r);
    s.pull_right_bytes();
    fs::remove_file(s.blob()).unwrap();
    fs::write(s.blob(), &s.payload[..99_000]).unwrap();
    let a = s.pull_right_bytes();
    assert!(
        !a.from_cache(),
        "a blob shorter than its descriptor is a miss"
    );
    assert!(s.client().pull(&s.reference()).unwrap().from_cache());
}

#[test]
fn a_corrupt_cached_manifest_is_replaced_so_offline_pulls_work_again() {
    let s = Setup::new("corrupt manifest", |r| r);
    s.pull_right_bytes();
    let manifest = s
        .root()
        .join("blobs/sha256")
        .join(forge_oci::Digest::of(&s.manifest).hex());
    fs::remove_file(&manifest).unwrap();
    fs::write(&manifest, b"{\"not\": \"the manifest\"}").unwrap();
    // Online, the damaged manifest is a miss: fetched again, and stored again.
    s.pull_right_bytes();
    assert_eq!(fs::read(&manifest).unwrap(), s.manifest);
    let offline = Client::builder()
        .cache_dir(s.root())
        .network(Network::Offline)
        .build()
        .unwrap();
    assert_eq!(
        offline.pull(&s.reference()).unwrap().read().unwrap(),
        s.payload
    );
}

#[test]
fn cache_directories_replaced_by_links_are_refused_naming_the_path() {
    for dir in ["tmp", "locks", "blobs/sha256"] {
        let s = Setup::new(&format!("link dir {dir}"), |r| r);
        fs::create_dir_all(s.root().join("blobs")).unwrap();
        symlink(s.outside.path(), s.root().join(dir)).unwrap();
        let e = s.client().pull(&s.reference()).unwrap_err();
        assert!(
            matches!(&e, Error::Io { path, .. } if path.ends_with(dir)),
            "{dir}: {e:?}"
        );
        assert_eq!(fs::read_dir(s.outside.path()).unwrap().count(), 0, "{dir}");
    }
}

#[test]
fn a_refs_directory_replaced_by_a_link_is_refused_naming_the_path() {
    let s = Setup::new("link refs", |r| r);
    let registry = s.server.host().replace(':', "_");
    fs::create_dir_all(s.root().join("refs")).unwrap();
    symlink(s.outside.path(), s.root().join("refs").join(&registry)).unwrap();
    let e = s.client().pull(&s.reference()).unwrap_err();
    assert!(
        matches!(&e, Error::Io { path, .. } if path.ends_with(&registry)),
        "{e:?}"
    );
    assert_eq!(fs::read_dir(s.outside.path()).unwrap().count(), 0);
}

#[test]
fn verify_removes_links_and_strangers_from_blobs() {
    let s = Setup::new("verify links", |r| r);
    s.pull_right_bytes();
    let victim = s.victim(b"outside");
    let planted = s
        .root()
        .join("blobs/sha256")
        .join(forge_oci::Digest::of(b"outside").hex());
    symlink(&victim, &planted).unwrap();
    let report = s.client().cache().verify().unwrap();
    assert_eq!(report.corrupt().len(), 1, "{report:?}");
    assert_eq!(report.corrupt()[0].path(), planted);
    assert_eq!(report.corrupt()[0].actual(), None);
    assert!(fs::symlink_metadata(&planted).is_err());
    assert_eq!(fs::read(&victim).unwrap(), b"outside");
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
    // A pull that blocked on it would hang the test: fail it instead.
    let path = path.to_owned();
    std::thread::spawn(move || {
        use std::os::unix::fs::FileTypeExt;
        std::thread::sleep(Duration::from_secs(60));
        if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_fifo()) {
            eprintln!(
                "a pull still blocks on the FIFO {} after 60 s",
                path.display()
            );
            std::process::exit(1);
        }
    });
}

/// Whether this process may chown files to another user (root may).
fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn chown_nobody(path: &Path) {
    let ok = Command::new("chown")
        .args(["-h", "65534"])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "chown {}", path.display());
}

#[test]
fn prune_and_verify_never_list_or_remove_through_a_linked_directory() {
    for dir in ["tmp", "locks", "blobs/sha256"] {
        let s = Setup::new(&format!("prune through {dir}"), |r| r);
        s.pull_right_bytes();
        let victim_dir = s.outside.path().join("docs");
        fs::create_dir(&victim_dir).unwrap();
        fs::write(victim_dir.join("thesis.txt"), b"years of work").unwrap();
        let linked = s.root().join(dir);
        fs::remove_dir_all(&linked).unwrap();
        symlink(&victim_dir, &linked).unwrap();
        let c = s.client();
        let prune = c.cache().prune(&forge_oci::PruneOptions::default());
        assert!(
            matches!(&prune, Err(Error::Io { path, .. }) if path == &linked),
            "{dir}: {prune:?}"
        );
        if dir == "blobs/sha256" {
            let verify = c.cache().verify();
            assert!(verify.is_err(), "{dir}: {verify:?}");
        }
        assert_eq!(
            fs::read(victim_dir.join("thesis.txt")).unwrap(),
            b"years of work",
            "{dir}"
        );
    }
}

#[test]
fn prune_never_descends_into_a_link_under_refs() {
    let s = Setup::new("prune refs link", |r| r);
    s.pull_right_bytes();
    let victim = s.outside.path().join("proj");
    fs::create_dir_all(victim.join("empty/also-empty")).unwrap();
    symlink(&victim, s.root().join("refs").join("x")).unwrap();
    s.client()
        .cache()
        .prune(&forge_oci::PruneOptions::default())
        .unwrap();
    assert!(
        victim.join("empty/also-empty").is_dir(),
        "a directory outside was removed"
    );
}

#[test]
fn a_cache_directory_everyone_can_write_is_refused_for_writing() {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::new("world-writable tmp", |r| r);
    s.make_dirs();
    let tmp = s.root().join("tmp");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o777)).unwrap();
    let e = s.client().pull(&s.reference()).unwrap_err();
    assert!(
        matches!(&e, Error::UnsafeCacheDirectory { path, reason: UnsafeDirectory::WorldWritable { mode: 0o777 } } if path == &tmp),
        "{e:?}"
    );
    assert!(e.to_string().contains("every user can write it"), "{e}");
    assert_eq!(
        s.blob_requests(),
        Vec::<Option<u64>>::new(),
        "nothing was fetched"
    );
}

#[test]
fn a_cache_another_user_owns_is_refused_for_writing_as_root() {
    if !is_root() {
        eprintln!("\n*** SKIPPED: chown to another user needs root (CI runs as root) ***\n");
        return;
    }
    let s = Setup::new("foreign root", |r| r);
    s.make_dirs();
    chown_nobody(s.root());
    let e = s.client().pull(&s.reference()).unwrap_err();
    assert!(
        matches!(&e, Error::UnsafeCacheDirectory { path, reason: UnsafeDirectory::OwnedBy { uid: 65534 } } if path == s.root()),
        "{e:?}"
    );
    assert!(e.to_string().contains("belongs to user 65534"), "{e}");
}

#[test]
fn a_partial_another_user_left_is_never_adopted() {
    if !is_root() {
        eprintln!("\n*** SKIPPED: chown to another user needs root (CI runs as root) ***\n");
        return;
    }
    let s = Setup::new("foreign partial", |r| r.ranges());
    s.make_dirs();
    // The whole blob, but another user's, who may still hold it open for writing.
    fs::write(s.partial(), &s.payload).unwrap();
    chown_nobody(&s.partial());
    let a = s.pull_right_bytes();
    assert_eq!(s.blob_requests(), [None], "downloaded anew from zero");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(a.path()).unwrap().uid(), 0);
}

#[test]
fn directories_planted_where_a_blob_or_lock_file_belongs_are_replaced() {
    let s = Setup::new("dirs planted", |r| r);
    s.make_dirs();
    fs::create_dir_all(s.blob().join("inner")).unwrap();
    fs::create_dir_all(s.root().join("locks").join(format!("{}.lock", s.hex()))).unwrap();
    s.pull_right_bytes();

    // And verify removes one planted among the blobs.
    let planted = s.root().join("blobs/sha256").join("0".repeat(64));
    fs::create_dir(&planted).unwrap();
    let report = s.client().cache().verify().unwrap();
    assert_eq!(report.corrupt().len(), 1, "{report:?}");
    assert_eq!(report.corrupt()[0].path(), planted);
    assert!(fs::symlink_metadata(&planted).is_err());
}

#[test]
fn copying_out_into_the_cache_is_refused() {
    let s = Setup::new("copy into cache", |r| r);
    let a = s.pull_right_bytes();
    let manifest = s
        .root()
        .join("blobs/sha256")
        .join(forge_oci::Digest::of(&s.manifest).hex());
    for dest in [
        manifest.clone(),
        s.root().join("blobs/sha256/new"),
        s.root().join(".lock"),
    ] {
        let e = a.copy_to(&dest).unwrap_err();
        assert!(
            matches!(e, Error::DestinationIsCached { .. }),
            "{dest:?}: {e:?}"
        );
    }
    assert_eq!(fs::read(&manifest).unwrap(), s.manifest);
}

#[test]
fn a_cache_reached_through_another_users_directory_or_link_is_refused() {
    if !is_root() {
        eprintln!("\n*** SKIPPED: chown to another user needs root (CI runs as root) ***\n");
        return;
    }
    let s = Setup::new("path through another user", |r| r);
    // The victim: a cache-shaped directory of root's with something to lose.
    let victim = s.outside.path().join("victim");
    fs::create_dir_all(victim.join("refs/important")).unwrap();
    fs::write(victim.join("refs/important/data"), b"keep").unwrap();
    // Another user's directory holding a link named like the cache root.
    let attacker = s.root().join("attacker");
    fs::create_dir_all(&attacker).unwrap();
    symlink(&victim, attacker.join("cache")).unwrap();
    chown_nobody(&attacker);
    let c = client(s.server.host(), &attacker.join("cache"));
    let e = c.cache().clear().unwrap_err();
    assert!(
        matches!(&e, Error::UnsafeCacheDirectory { path, reason: UnsafeDirectory::ParentOwnedBy { uid: 65534 } } if path == &attacker),
        "{e:?}"
    );
    for e in [
        c.pull(&s.reference()).unwrap_err(),
        c.cache().verify().unwrap_err(),
    ] {
        assert!(matches!(e, Error::UnsafeCacheDirectory { .. }), "{e:?}");
    }
    assert_eq!(
        fs::read(victim.join("refs/important/data")).unwrap(),
        b"keep"
    );
    assert!(!victim.join(".lock").exists());
}

/// Serves `REPO:istio` as a one-layer Istio compat image holding `plugin.wasm`.
fn serve_istio_image(server: &FakeRegistry, module: &[u8]) -> String {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(module.len() as u64);
    b.append_data(&mut h, "plugin.wasm", module).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &b.into_inner().unwrap()).unwrap();
    let layer = gz.finish().unwrap();
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest(&layer), "size": layer.len()}],
    }))
    .unwrap();
    let doc = Route::ok(m).header("content-type", OCI_MANIFEST);
    server.route(&format!("/v2/{REPO}/manifests/istio"), doc);
    for blob in [&config[..], &layer] {
        let path = format!("/v2/{REPO}/blobs/{}", digest(blob));
        server.route(&path, Route::ok(blob.to_vec()));
    }
    format!("{}/{REPO}:istio", server.host())
}

#[test]
fn an_extracted_module_directory_replaced_by_a_link_is_never_served_and_verify_removes_it() {
    let server = FakeRegistry::start();
    let module = wasm_payload("the real module", 4 << 10);
    let reference = serve_istio_image(&server, &module);
    let cache = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let online = isolated(server.host(), cache.path()).build().unwrap();
    let pulled = online.pull(&reference).unwrap();
    // The directory holding the module (derived/<rules>/sha256/<layer>/<config>) becomes a
    // link to a directory holding another "module", named by its own digest.
    let dir = pulled.path().parent().unwrap().to_path_buf();
    let planted = b"\0asm planted";
    let name = forge_oci::Digest::of(planted).hex().to_owned();
    fs::write(outside.path().join(&name), planted).unwrap();
    fs::remove_dir_all(&dir).unwrap();
    symlink(outside.path(), &dir).unwrap();

    let offline = isolated(server.host(), cache.path())
        .network(Network::Offline)
        .build()
        .unwrap();
    // Never the planted file: refused, naming the directory.
    let e = offline.pull(&reference).unwrap_err();
    assert!(e.to_string().contains(&*dir.to_string_lossy()), "{e}");
    let report = offline.cache().verify().unwrap();
    assert!(
        fs::symlink_metadata(&dir).map_or(true, |m| !m.file_type().is_symlink()),
        "verify left the link: {report:?}"
    );
    let again = offline.pull(&reference).unwrap();
    assert!(fs::read(again.path()).unwrap() == module, "not the module");
    assert_eq!(fs::read(outside.path().join(&name)).unwrap(), planted);
}
