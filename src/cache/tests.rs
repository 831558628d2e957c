//! The cache's own behaviour, without a network: downloads, resumes, hits,
//! refs and manifests against sources scripted in memory.
use super::*;

fn cache_in(dir: &Path) -> Cache {
    let policy = Policy {
        max_manifest_size: 1 << 20,
        lock_timeout: None,
    };
    let layer_of: LayerOf = Arc::new(|_, _, top| Err(MissingLayer::Manifest(top.clone())));
    Cache::new(dir.to_path_buf(), policy, Events::default(), layer_of)
}

/// Tests run as if inside a pull.
const HELD: PullGuard = PullGuard(());

/// A cache whose directories exist, as inside a pull.
fn ready_cache(dir: &Path) -> Cache {
    let c = cache_in(dir);
    let r: Reference = "localhost/x:1".parse().unwrap();
    c.with_pull_lock(&r, |_| Ok(())).unwrap();
    c
}

fn tmp_entries(c: &Cache) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(c.layout.tmp_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Serves `blob` from any offset, recording the offsets asked for.
fn source<'a>(
    blob: &'static [u8],
    asked: &'a mut Vec<u64>,
) -> impl FnMut(u64) -> Result<(&'static [u8], u64)> + 'a {
    move |offset| {
        asked.push(offset);
        Ok((&blob[offset as usize..], offset))
    }
}

#[test]
fn round_trip_blob_and_ref() {
    let dir = tempfile::tempdir().unwrap();
    let c = ready_cache(dir.path());
    let d = Digest::of(b"hello");
    assert!(c.read_manifest(&d).unwrap().is_none());
    c.store_bytes(&HELD, &d, b"hello").unwrap();
    assert_eq!(c.read_manifest(&d).unwrap().unwrap(), b"hello");

    let r: Reference = "ghcr.io/o/r:1.0".parse().unwrap();
    assert_eq!(c.read_ref(&r), None);
    c.write_ref(&HELD, &r, &d).unwrap();
    assert_eq!(c.read_ref(&r).unwrap().0, d);
    assert!(tmp_entries(&c).is_empty(), "temp files left behind");
}

#[test]
fn a_corrupt_manifest_is_a_miss_and_storing_it_again_heals_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = ready_cache(dir.path());
    let d = Digest::of(b"hello");
    c.store_bytes(&HELD, &d, b"hello").unwrap();
    let path = c.blob_path(&d);
    fs::remove_file(&path).unwrap();
    fs::write(&path, b"HELLO").unwrap();
    assert!(c.read_manifest(&d).unwrap().is_none());
    c.store_bytes(&HELD, &d, b"hello").unwrap();
    assert_eq!(c.read_manifest(&d).unwrap().unwrap(), b"hello");
}

#[test]
fn tags_differing_in_case_are_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    let c = ready_cache(dir.path());
    let (lower, upper): (Reference, Reference) = (
        "ghcr.io/o/r:v1".parse().unwrap(),
        "ghcr.io/o/r:V1".parse().unwrap(),
    );
    let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
    c.write_ref(&HELD, &lower, &a).unwrap();
    assert_eq!(c.read_ref(&upper), None);
    c.write_ref(&HELD, &upper, &b).unwrap();
    assert_eq!(c.read_ref(&lower).unwrap().0, a);
    assert_eq!(c.read_ref(&upper).unwrap().0, b);
    let names: Vec<_> = c
        .list()
        .unwrap()
        .iter()
        .map(|e| e.reference().to_string())
        .collect();
    assert_eq!(names, ["ghcr.io/o/r:V1", "ghcr.io/o/r:v1"]);

    // A ref an older version wrote under the tag's own spelling is still read.
    let old: Reference = "ghcr.io/o/r:Old".parse().unwrap();
    let legacy = c.layout.legacy_ref_file(&old).unwrap();
    fs::write(&legacy, format!("{a}\n")).unwrap();
    assert_eq!(c.read_ref(&old).unwrap().0, a);
}

#[test]
fn failed_verification_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = ready_cache(dir.path());
    let d = Digest::of(b"expected");
    assert!(matches!(
        c.fetch_blob(&HELD, &d, 8, |_| Ok((&b"tampered"[..], 0))),
        Err(CommitError::Verify(_))
    ));
    assert!(!c.has_blob(&d, 8));
    assert!(tmp_entries(&c).is_empty());
    let (path, downloaded) = c
        .fetch_blob(&HELD, &d, 8, |_| Ok((&b"expected"[..], 0)))
        .unwrap();
    assert!(downloaded);
    assert_eq!(fs::read(path).unwrap(), b"expected");
    let (_, again) = c.fetch_blob(&HELD, &d, 8, |_| Ok((&b""[..], 0))).unwrap();
    assert!(!again, "a cached blob is not fetched again");
}

#[cfg(unix)]
#[test]
fn blobs_are_read_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let c = ready_cache(dir.path());
    let d = Digest::of(b"expected");
    let (path, _) = c
        .fetch_blob(&HELD, &d, 8, |_| Ok((&b"expected"[..], 0)))
        .unwrap();
    let m = Digest::of(b"manifest");
    c.store_bytes(&HELD, &m, b"manifest").unwrap();
    for p in [path, c.blob_path(&m)] {
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o444,
            "{p:?}"
        );
    }
}

#[test]
fn a_partial_download_is_resumed_from_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let c = ready_cache(dir.path());
    let d = Digest::of(b"expected");
    fs::write(c.layout.partial(&d), b"expe").unwrap();
    let mut asked = Vec::new();
    let (path, _) = c
        .fetch_blob(&HELD, &d, 8, source(b"expected", &mut asked))
        .unwrap();
    assert_eq!(asked, [4]);
    assert_eq!(fs::read(path).unwrap(), b"expected");
    assert!(tmp_entries(&c).is_empty());

    // A server that ignores the range sends everything: start over.
    let d2 = Digest::of(b"abcdefgh");
    fs::write(c.layout.partial(&d2), b"abcd").unwrap();
    let (path, _) = c
        .fetch_blob(&HELD, &d2, 8, |_| Ok((&b"abcdefgh"[..], 0)))
        .unwrap();
    assert_eq!(fs::read(path).unwrap(), b"abcdefgh");
}

#[test]
fn a_partial_that_is_not_a_prefix_is_fetched_once_more_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let c = ready_cache(dir.path());
    let d = Digest::of(b"12345678");
    fs::write(c.layout.partial(&d), b"XXXX").unwrap();
    let mut asked = Vec::new();
    let (path, _) = c
        .fetch_blob(&HELD, &d, 8, source(b"12345678", &mut asked))
        .unwrap();
    assert_eq!(asked, [4, 0]);
    assert_eq!(fs::read(path).unwrap(), b"12345678");

    // Only once: a source that is itself wrong fails, leaving nothing.
    let bad = Digest::of(b"abcdefgh");
    fs::write(c.layout.partial(&bad), b"XXXX").unwrap();
    let mut asked = Vec::new();
    assert!(
        c.fetch_blob(&HELD, &bad, 8, source(b"zzzzzzzz", &mut asked))
            .is_err()
    );
    assert_eq!(asked, [4, 0]);
    assert!(!c.has_blob(&bad, 8));
    assert!(tmp_entries(&c).is_empty());
}

#[test]
fn a_complete_partial_is_finished_without_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let c = ready_cache(dir.path());
    let d = Digest::of(b"complete");
    fs::write(c.layout.partial(&d), b"complete").unwrap();
    let (path, downloaded) = c
        .fetch_blob(&HELD, &d, 8, |_| -> Result<(&[u8], u64)> {
            panic!("no request is needed")
        })
        .unwrap();
    assert!(downloaded);
    assert_eq!(fs::read(path).unwrap(), b"complete");

    // A complete partial with the wrong bytes is fetched from zero instead.
    let d2 = Digest::of(b"rightful");
    fs::write(c.layout.partial(&d2), b"wrongful").unwrap();
    let mut asked = Vec::new();
    let (path, _) = c
        .fetch_blob(&HELD, &d2, 8, source(b"rightful", &mut asked))
        .unwrap();
    assert_eq!(asked, [0]);
    assert_eq!(fs::read(path).unwrap(), b"rightful");
}

/// Reads `data`, then fails as a dropped connection does.
struct CutAfter(&'static [u8]);

impl Read for CutAfter {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        let n = self.0.len().min(buf.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn a_cut_download_is_released_as_the_partial_and_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let c = ready_cache(dir.path());
    let d = Digest::of(b"interrupted");
    let cut = c.fetch_blob(&HELD, &d, 11, |_| Ok((CutAfter(b"inter"), 0)));
    assert!(matches!(cut, Err(CommitError::Cut(_))));
    let partial = c.layout.partial(&d);
    assert_eq!(fs::read(&partial).unwrap(), b"inter");
    assert_eq!(tmp_entries(&c), [format!("{}.partial", d.hex())]);

    // The rest, then no clean end (a lost chunked terminator): the hash decides.
    let mut asked = Vec::new();
    let (path, _) = c
        .fetch_blob(&HELD, &d, 11, |o| {
            asked.push(o);
            Ok((CutAfter(&b"interrupted"[o as usize..]), o))
        })
        .unwrap();
    assert_eq!(asked, [5]);
    assert_eq!(fs::read(path).unwrap(), b"interrupted");
    assert!(tmp_entries(&c).is_empty());

    // A partial left whole by a writer killed before its rename is finished locally.
    let d2 = Digest::of(b"whole");
    let cut = c.fetch_blob(&HELD, &d2, 5, |_| Ok((CutAfter(b"who"), 0)));
    assert!(cut.is_err());
    fs::write(c.layout.partial(&d2), b"whole").unwrap();
    let (path, _) = c
        .fetch_blob(&HELD, &d2, 5, |_| -> Result<(&[u8], u64)> {
            panic!("no request is needed")
        })
        .unwrap();
    assert_eq!(fs::read(path).unwrap(), b"whole");
}

#[test]
fn a_hit_is_a_regular_file_of_the_right_size() {
    let dir = tempfile::tempdir().unwrap();
    let c = ready_cache(dir.path());
    let d = Digest::of(b"expected");
    let (path, _) = c
        .fetch_blob(&HELD, &d, 8, |_| Ok((&b"expected"[..], 0)))
        .unwrap();
    assert!(c.has_blob(&d, 8));
    assert!(!c.has_blob(&d, 9), "the descriptor's size is what counts");
    fs::remove_file(&path).unwrap();
    fs::write(&path, b"expec").unwrap();
    assert!(!c.has_blob(&d, 8), "a truncated blob is a miss");
    let (path, downloaded) = c
        .fetch_blob(&HELD, &d, 8, |_| Ok((&b"expected"[..], 0)))
        .unwrap();
    assert!(downloaded, "and is repaired");
    assert_eq!(fs::read(path).unwrap(), b"expected");
}

/// A tee over a new file in `dir`, and the file's path.
fn tee_in(dir: &Path) -> (Tee, PathBuf) {
    let path = dir.join("out");
    (Tee::new(fs::File::create(&path).unwrap()), path)
}

#[test]
fn a_tee_is_complete_only_when_the_pass_that_verified_wrote_it_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let c = ready_cache(dir.path());
    let d = Digest::of(b"interrupted");
    let (mut tee, out) = tee_in(dir.path());
    // A lying source sends five wrong bytes, then the connection drops.
    let cut = c.fetch_blob_teeing(
        &HELD,
        &d,
        11,
        |_| Ok((CutAfter(b"XXXXX"), 0)),
        Some(&mut tee),
    );
    assert!(matches!(cut, Err(CommitError::Cut(_))));
    // Meanwhile another writer claimed the partial, found it was no prefix,
    // started over and was cut at the same length: the partial is now true.
    fs::write(c.layout.partial(&d), b"inter").unwrap();
    c.fetch_blob_teeing(
        &HELD,
        &d,
        11,
        |o| Ok((&b"interrupted"[o as usize..], o)),
        Some(&mut tee),
    )
    .unwrap();
    assert!(
        !tee.is_complete(11) || fs::read(&out).unwrap() == b"interrupted",
        "the tee holds bytes that were never hashed"
    );

    // A tee written whole by a pass that failed verification is not the blob,
    // even when the blob then turns up in the cache without a download.
    let d2 = Digest::of(b"rightful");
    let (mut tee, out) = tee_in(&dir.path().join("tmp"));
    let bad = c.fetch_blob_teeing(&HELD, &d2, 8, |_| Ok((&b"wrongful"[..], 0)), Some(&mut tee));
    assert!(matches!(bad, Err(CommitError::Verify(_))));
    c.fetch_blob(&HELD, &d2, 8, |_| Ok((&b"rightful"[..], 0)))
        .unwrap();
    let (_, downloaded) = c
        .fetch_blob_teeing(
            &HELD,
            &d2,
            8,
            |_| -> Result<(&[u8], u64)> { panic!("cached") },
            Some(&mut tee),
        )
        .unwrap();
    assert!(!downloaded);
    assert!(
        !tee.is_complete(8) || fs::read(&out).unwrap() == b"rightful",
        "the tee holds the bytes that failed"
    );
}
