//! Getting bytes into the cache atomically (the only user of tempfile).
//!
//! Small writes (manifests, refs) go to a uniquely named file under `tmp/`, are
//! fsynced and renamed over their final name, and the directory is fsynced.
//!
//! Blob downloads go to `tmp/<hex>.partial`, a name only the holder of the blob's
//! download lock touches. A crash or a dropped connection leaves the partial file
//! behind; the next download of the same blob re-hashes what is there and asks the
//! registry for the rest. Only content that verified whole is renamed into `blobs/`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::digest::{Digest, Hasher, VerifyError, VerifyingReader};
use crate::error::{Error, Result};

/// Why a download into the cache failed. A read error is left raw because only
/// the caller knows where the source was (and it may carry a [`VerifyError`]).
#[derive(Debug)]
pub(crate) enum CommitError {
    /// Reading the source failed.
    Read(io::Error),
    /// Anything already typed: opening the source, or a cache file operation.
    Typed(Error),
}

impl From<Error> for CommitError {
    fn from(e: Error) -> Self {
        CommitError::Typed(e)
    }
}

/// A source for [`download`]: given how many bytes are already on disk, returns
/// a reader and the offset its bytes start at (0 when the server ignored the range).
pub(crate) type OpenAt<'a, R> = &'a mut dyn FnMut(u64) -> Result<(R, u64)>;

/// Downloads `digest` of `size` bytes into `dest`, resuming `partial` if present.
/// `progress` hears the byte count on disk as it grows.
pub(crate) fn download<R: Read>(
    partial: &Path,
    dest: &Path,
    digest: &Digest,
    size: u64,
    open_at: OpenAt<'_, R>,
    progress: &mut dyn FnMut(u64),
) -> std::result::Result<(), CommitError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(partial)
        .map_err(|e| Error::io("open", partial, e))?;
    let (mut hasher, mut have) = rehash(&mut file, partial, size)?;
    let (source, start) = open_at(have)?;
    if start != have {
        // The server sent the whole blob: start over.
        file.set_len(0)
            .map_err(|e| Error::io("truncate", partial, e))?;
        (hasher, have) = (Default::default(), 0);
    }
    file.seek(SeekFrom::Start(have))
        .map_err(|e| Error::io("seek", partial, e))?;
    progress(have);
    let mut verifying = VerifyingReader::resume(source, digest.clone(), size, hasher, have);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match verifying.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Wrong content is worthless; a dropped connection leaves a prefix worth keeping.
                if e.get_ref().is_some_and(|inner| inner.is::<VerifyError>()) {
                    let _ = fs::remove_file(partial);
                }
                return Err(CommitError::Read(e));
            }
        };
        file.write_all(&buf[..n])
            .map_err(|e| Error::io("write", partial, e))?;
        progress(verifying.bytes_read());
    }
    file.sync_all()
        .map_err(|e| Error::io("fsync", partial, e))?;
    drop(file);
    // Renaming over an existing blob is fine: same name, same bytes.
    fs::rename(partial, dest).map_err(|e| Error::io("rename into place", dest, e))?;
    sync_parent(dest)?;
    Ok(())
}

/// Hashes what a partial file already holds. More bytes than the blob has means
/// the file is not a prefix of it: start over.
fn rehash(file: &mut File, path: &Path, size: u64) -> Result<(Hasher, u64)> {
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat", path, e))?
        .len();
    let mut hasher = Hasher::default();
    if len == 0 || len > size {
        file.set_len(0)
            .map_err(|e| Error::io("truncate", path, e))?;
        return Ok((hasher, 0));
    }
    let copied = io::copy(&mut (&mut *file).take(len), &mut hasher)
        .map_err(|e| Error::io("read", path, e))?;
    Ok((hasher, copied))
}

/// Writes `bytes` to `dest` atomically.
pub(crate) fn write_bytes(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("part-");
    // tempfile creates 0600; cache files are 0644 before the umask (as the partial
    // downloads are), so a cache filled by one user, say root baking an image, can
    // be read by others.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o644));
    }
    let mut tmp = builder
        .tempfile_in(tmp_dir)
        .map_err(|e| Error::io("create a temporary file in", tmp_dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| Error::io("write", tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io("fsync", tmp.path(), e))?;
    tmp.persist(dest)
        .map_err(|e| Error::io("rename into place", dest, e.error))?;
    sync_parent(dest)
}

#[cfg(unix)]
fn sync_parent(path: &Path) -> Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

#[cfg(not(unix))]
fn sync_parent(_path: &Path) -> Result<()> {
    // Windows cannot open a directory as a file; its rename is already durable enough.
    Ok(())
}
