//! Writing an OCI image layout (vendoring): blobs under `blobs/sha256/`, each
//! verified as it is written and renamed into place; `index.json` rewritten whole
//! through a temporary file and a rename, so a reader (or a crash) never sees it
//! half-written. Entries are named by the canonical reference in both
//! `org.opencontainers.image.ref.name` and `io.containerd.image.name`, which
//! skopeo, containerd and this crate's reader all find.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tempfile::NamedTempFile;

use super::{CONTAINERD_NAME, MAX_INDEX_SIZE, REF_NAME, blob_path, index_path, names, open_file};
use crate::cache::sync_parent;
use crate::digest::{Digest, VerifyError, VerifyingReader};
use crate::error::{Error, Result};
use crate::manifest::{Document, Manifest, OCI_INDEX, OCI_MANIFEST};
use crate::reference::Reference;
use crate::resolve::Documents;

/// One reference written into a layout by [`Client::vendor`](crate::Client::vendor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vendored {
    reference: Reference,
    manifest_digest: Digest,
    blobs: usize,
}

impl Vendored {
    pub(crate) fn new(reference: Reference, manifest_digest: Digest, blobs: usize) -> Vendored {
        Vendored {
            reference,
            manifest_digest,
            blobs,
        }
    }

    /// The reference, canonical: what the layout's `index.json` names it.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// The top manifest (or index) it points to.
    pub fn manifest_digest(&self) -> &Digest {
        &self.manifest_digest
    }

    /// How many blobs (manifests, config and layers) it needs in the layout.
    pub fn blobs(&self) -> usize {
        self.blobs
    }
}

/// Writes `refs` into the layout at `dir`: for each, the documents `documents`
/// gives and the config and layers of its image manifest, each one not already
/// there written by `blob` (through [`Writer::write_blob`], which verifies it);
/// `index.json` once at the end.
///
/// # Errors
/// What `documents` and `blob` return; [`Error::UnsupportedDigest`];
/// [`Error::Io`]; as [`check_dir`].
pub(crate) fn vendor(
    dir: &Path,
    cache_root: &Path,
    refs: &[Reference],
    mut documents: impl FnMut(&Reference) -> Result<Documents>,
    mut blob: impl FnMut(&Writer, &Reference, &Digest, u64) -> Result<()>,
) -> Result<Vec<Vendored>> {
    check_dir(dir, cache_root)?;
    let mut writer = Writer::open(dir)?;
    let mut out = Vec::new();
    for r in refs {
        let docs = documents(r)?;
        writer.add_document(&docs.top)?;
        if let Some(child) = &docs.child {
            writer.add_document(child)?;
        }
        let mut blobs = 1 + usize::from(docs.child.is_some());
        for d in std::iter::once(&docs.image.config).chain(&docs.image.layers) {
            let digest = d.sha256().map_err(|reason| Error::UnsupportedDigest {
                reference: r.to_string(),
                reason,
            })?;
            if !is_blob(&blob_path(&writer.dir, &digest), &digest, d.size) {
                blob(&writer, r, &digest, d.size)?;
            }
            blobs += 1;
        }
        writer.record(r, &docs.top);
        out.push(Vendored::new(r.clone(), docs.top.digest.clone(), blobs));
    }
    writer.finish()?;
    Ok(out)
}

/// Refuses a layout directory that is empty (never taken for the current
/// directory: pass `.` to mean it) or inside the cache at `cache_root`, whose
/// `blobs/sha256/` would take the layout's files for corrupt blobs.
///
/// # Errors
/// [`Error::Io`] for an empty path; [`Error::DestinationIsCached`].
fn check_dir(dir: &Path, cache_root: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() {
        let e = io::Error::new(
            io::ErrorKind::InvalidInput,
            "an empty path; pass `.` to mean the current directory",
        );
        return Err(io_error("vendor into", dir, e));
    }
    let Ok(root) = fs::canonicalize(cache_root) else {
        return Ok(()); // no cache yet: nothing to write into
    };
    // The directory may not exist yet: its nearest existing ancestor decides.
    let inside = dir
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .chain([Path::new(".")]) // a relative path's last ancestor
        .find_map(|a| fs::canonicalize(a).ok())
        .is_some_and(|real| real.starts_with(&root));
    if inside {
        return Err(Error::DestinationIsCached {
            destination: dir.to_path_buf(),
            cached: root,
        });
    }
    Ok(())
}

/// A layout being written: its directory and the index as it will be saved.
pub(crate) struct Writer {
    dir: PathBuf,
    /// `index.json` as read (unknown fields kept), `manifests` updated in place.
    index: Value,
    /// The directory, locked while this writer lives (where locks work), so
    /// that two vendors take turns reading, updating and replacing `index.json`.
    _lock: Option<fs::File>,
}

impl Writer {
    /// Makes `dir` a layout (or opens the one there): `blobs/sha256/`, `oci-layout`,
    /// and the current `index.json` read.
    ///
    /// # Errors
    /// [`Error::Io`] when a directory or file cannot be made or read, or when an
    /// existing `index.json` is not an image index.
    pub(crate) fn open(dir: &Path) -> Result<Writer> {
        let blobs = dir.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(|e| io_error("create directory", &blobs, e))?;
        let lock = lock_dir(dir)?;
        if lock.is_some() {
            // No other vendor is writing: temporary files are a killed one's.
            remove_temporary_files(dir);
            remove_temporary_files(&blobs);
        }
        let marker = dir.join("oci-layout");
        if !marker.is_file() {
            replace(dir, &marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let path = index_path(dir);
        let index = match read_index(&path) {
            Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
                .ok()
                .filter(|v| v.get("manifests").is_none_or(Value::is_array) && v.is_object())
                .ok_or_else(|| {
                    let e = io::Error::new(io::ErrorKind::InvalidData, "not an OCI image index");
                    io_error("read", &path, e)
                })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
            }
            Err(e) => return Err(io_error("read", &path, e)),
        };
        Ok(Writer {
            dir: dir.to_path_buf(),
            index,
            _lock: lock,
        })
    }

    /// Writes a manifest held in memory (its digest already checked).
    ///
    /// # Errors
    /// [`Error::Io`].
    pub(crate) fn add_document(&self, doc: &Document) -> Result<()> {
        let dest = blob_path(&self.dir, &doc.digest);
        if is_blob(&dest, &doc.digest, doc.bytes.len() as u64) {
            return Ok(());
        }
        replace(&self.dir, &dest, &doc.bytes)
    }

    /// Writes blob `digest` of `size` bytes of `r` read from `from`, verified
    /// as it is written, through a temporary file renamed into place.
    ///
    /// # Errors
    /// [`Error::Verification`] (naming `r`) when the bytes are not the blob;
    /// what `read_failed` makes of an error reading `from` (the network's, or
    /// the cached file's); [`Error::Io`] for the layout's own files.
    pub(crate) fn write_blob(
        &self,
        r: &Reference,
        digest: &Digest,
        size: u64,
        from: impl Read,
        read_failed: impl FnOnce(io::Error) -> Error,
    ) -> Result<()> {
        let dest = blob_path(&self.dir, digest);
        let parent = dest.parent().unwrap_or(&self.dir);
        let mut tmp = temporary_file(parent)
            .map_err(|e| io_error("create a temporary file in", parent, e))?;
        let mut reader = VerifyingReader::new(from, digest.clone(), size);
        let mut buf = vec![0; 64 << 10];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(match verify_error(e) {
                        Ok(reason) => Error::Verification {
                            what: "blob",
                            reference: r.to_string(),
                            expected: digest.clone(),
                            reason,
                        },
                        Err(e) => read_failed(e),
                    });
                }
            };
            let chunk = buf.get(..n).unwrap_or_default();
            tmp.write_all(chunk)
                .map_err(|e| io_error("write", tmp.path(), e))?;
        }
        tmp.as_file()
            .sync_all()
            .map_err(|e| io_error("write", tmp.path(), e))?;
        tmp.persist(&dest)
            .map_err(|e| io_error("rename into", &dest, e.error))?;
        Ok(())
    }

    /// Names `top` by `r` in the index, replacing any entry that named `r` before
    /// (a tag that moved), so each reference has one entry.
    pub(crate) fn record(&mut self, r: &Reference, top: &Document) {
        let media_type = match &top.manifest {
            Manifest::Index(i) => i.media_type.as_deref().unwrap_or(OCI_INDEX),
            Manifest::Image(m) => m.media_type.as_deref().unwrap_or(OCI_MANIFEST),
        };
        let name = r.to_string();
        let entry = json!({
            "mediaType": media_type,
            "digest": top.digest.to_string(),
            "size": top.bytes.len(),
            "annotations": {REF_NAME: name, CONTAINERD_NAME: name},
        });
        let Some(manifests) = self.index.as_object_mut().map(|o| {
            o.entry("manifests")
                .or_insert_with(|| Value::Array(Vec::new()))
        }) else {
            return;
        };
        if let Value::Array(list) = manifests {
            list.retain(|e| {
                let annotations: HashMap<String, String> = e
                    .get("annotations")
                    .and_then(|a| serde_json::from_value(a.clone()).ok())
                    .unwrap_or_default();
                !names(&annotations, r)
            });
            list.push(entry);
        }
    }

    /// Saves `index.json`: a temporary file, synced, renamed over the old one.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub(crate) fn finish(self) -> Result<()> {
        let path = index_path(&self.dir);
        let mut bytes = serde_json::to_vec_pretty(&self.index)
            .map_err(|e| io_error("write", &path, io::Error::other(e)))?;
        bytes.push(b'\n');
        // The blobs' renames reach the disk before an index that names them,
        // and the index's before vendor says it is done: after a power cut the
        // layout is the old one or the new one, never an index naming blobs
        // that are not there.
        let blobs = self.dir.join("blobs").join("sha256");
        sync_parent(&blobs.join("any"))?;
        replace(&self.dir, &path, &bytes)?;
        sync_parent(&path)
    }
}

/// Whether `path` already holds blob `digest` of `size` bytes, re-hashed: a
/// layout is outside the cache's trust boundary, even one this crate wrote.
fn is_blob(path: &Path, digest: &Digest, size: u64) -> bool {
    let Ok(file) = open_file(path) else {
        return false;
    };
    let mut reader = VerifyingReader::new(file, digest.clone(), size);
    io::copy(&mut reader, &mut io::sink()).is_ok()
}

/// `dir` opened and locked exclusively, waiting for another vendor to finish;
/// `None` where the file system has no locks for it (NFS), as for the
/// cache's locks: then two vendors at once each keep the entries they read.
#[cfg(unix)]
fn lock_dir(dir: &Path) -> Result<Option<fs::File>> {
    use rustix::fs::{FlockOperation, flock};
    use rustix::io::Errno;
    let file = fs::File::open(dir).map_err(|e| io_error("lock", dir, e))?;
    loop {
        match flock(&file, FlockOperation::LockExclusive) {
            Ok(()) => return Ok(Some(file)),
            Err(Errno::INTR) => {}
            // No lock is no reason not to vendor: ENOTSUP, ENOLCK, and NFS's
            // EBADF (it emulates flock with POSIX locks, which want a file
            // opened for writing, which a directory cannot be).
            Err(_) => return Ok(None),
        }
    }
}

#[cfg(not(unix))]
fn lock_dir(_dir: &Path) -> Result<Option<fs::File>> {
    Ok(None)
}

/// Removes the temporary files (`.tmp…`, as [`NamedTempFile`] names them) a
/// vendor killed mid-way left in `dir`, so they are not committed with the
/// layout; best effort.
fn remove_temporary_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let is_temporary = entry.file_name().to_string_lossy().starts_with(".tmp")
            && entry.file_type().is_ok_and(|t| t.is_file());
        if is_temporary {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// A temporary file in `dir` for a file of the layout, readable by all as
/// skopeo's are (`tempfile` makes them 0600): a layout vendored into a shared
/// directory, or copied elsewhere with its modes, is read by other users.
fn temporary_file(dir: &Path) -> io::Result<NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o644));
    }
    builder.tempfile_in(dir)
}

/// The existing `index.json`, as the reader reads it: a regular file of at
/// most [`MAX_INDEX_SIZE`] bytes.
fn read_index(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_file(path)?
        .take(MAX_INDEX_SIZE.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_INDEX_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_INDEX_SIZE} bytes"),
        ));
    }
    Ok(bytes)
}

/// Writes `bytes` to `dest` through a synced temporary file in `dir` and a rename.
fn replace(dir: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    let parent = dest.parent().unwrap_or(dir);
    let mut tmp =
        temporary_file(parent).map_err(|e| io_error("create a temporary file in", parent, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| io_error("write", tmp.path(), e))?;
    tmp.persist(dest)
        .map_err(|e| io_error("rename into", dest, e.error))?;
    Ok(())
}

/// The [`VerifyError`] a [`VerifyingReader`] failed with, or the I/O error.
fn verify_error(e: io::Error) -> std::result::Result<VerifyError, io::Error> {
    if e.get_ref().is_some_and(|inner| inner.is::<VerifyError>()) {
        if let Some(inner) = e.into_inner() {
            if let Ok(v) = inner.downcast::<VerifyError>() {
                return Ok(*v);
            }
        }
        return Err(io::Error::other("verification failed"));
    }
    Err(e)
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> Error {
    Error::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}
