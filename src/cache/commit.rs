//! Getting bytes into the cache atomically (the only user of tempfile): write a
//! uniquely named file under `tmp/`, fsync it, rename it over its final name, fsync
//! the directory. A crash at any point leaves at most a stale file under `tmp/`.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use tempfile::NamedTempFile;

use crate::error::{Error, Result};

/// Why streaming into the cache failed. A read error is left raw because only
/// the caller knows where the source was (and it may carry a `VerifyError`).
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

/// Streams `source` into `dest` through a temp file in `tmp_dir`. The temp file is
/// deleted on any error, so `dest` either appears whole or not at all.
pub(crate) fn stream_into(
    tmp_dir: &Path,
    dest: &Path,
    source: &mut dyn Read,
) -> std::result::Result<(), CommitError> {
    let mut tmp = new_temp(tmp_dir)?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CommitError::Read(e)),
        };
        tmp.write_all(&buf[..n])
            .map_err(|e| Error::io("write", tmp.path(), e))?;
    }
    Ok(persist(tmp, dest)?)
}

/// Writes `bytes` to `dest` atomically.
pub(crate) fn write_bytes(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = new_temp(tmp_dir)?;
    tmp.write_all(bytes)
        .map_err(|e| Error::io("write", tmp.path(), e))?;
    persist(tmp, dest)
}

fn new_temp(tmp_dir: &Path) -> Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix("part-")
        .tempfile_in(tmp_dir)
        .map_err(|e| Error::io("create a temporary file in", tmp_dir, e))
}

fn persist(tmp: NamedTempFile, dest: &Path) -> Result<()> {
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io("fsync", tmp.path(), e))?;
    // Renaming over an existing blob is fine: same name, same bytes.
    tmp.persist(dest)
        .map_err(|e| Error::io("rename into place", dest, e.error))?;
    if let Some(dir) = dest.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<()> {
    // Windows cannot open a directory as a file; its rename is already durable enough.
    Ok(())
}
