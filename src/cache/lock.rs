//! File locks (the only user of fd-lock), in the manner of cargo's `util/flock.rs`:
//! try first, tell the caller before blocking, then block.
//!
//! Where the file system does not support locking (some network mounts), the lock
//! degrades to no lock, as cargo does: downloads stay correct because every commit
//! is an atomic rename of verified content, but two processes may download the
//! same blob at once.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use fd_lock::RwLock;

use crate::error::{Error, Result};

/// Shared (many holders) or exclusive (one holder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockMode {
    /// Pulls hold the cache-wide lock shared.
    Shared,
    /// A blob download, or prune and clear on the cache-wide lock.
    Exclusive,
}

/// Runs `f` while holding the lock file at `path` in `mode`. `on_wait` is called
/// once, just before blocking, when another process holds the lock.
pub(crate) fn with_lock<T, E: From<Error>>(
    path: &Path,
    mode: LockMode,
    on_wait: &dyn Fn(&Path),
    f: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let mut lock = RwLock::new(open(path)?);
    match mode {
        LockMode::Shared => {
            match lock.try_read() {
                Ok(_guard) => return f(),
                Err(e) if unsupported(&e) => return f(),
                Err(e) => wait_or_fail(path, e, on_wait)?,
            }
            let _guard = lock.read().map_err(|e| Error::io("lock", path, e))?;
            f()
        }
        LockMode::Exclusive => {
            match lock.try_write() {
                Ok(_guard) => return f(),
                Err(e) if unsupported(&e) => return f(),
                Err(e) => wait_or_fail(path, e, on_wait)?,
            }
            let _guard = lock.write().map_err(|e| Error::io("lock", path, e))?;
            f()
        }
    }
}

/// After a failed try: when another process holds the lock, report the wait so
/// the caller can go on to block; any other failure is an error.
fn wait_or_fail(path: &Path, e: io::Error, on_wait: &dyn Fn(&Path)) -> Result<()> {
    if e.kind() == io::ErrorKind::WouldBlock {
        on_wait(path);
        Ok(())
    } else {
        Err(Error::io("lock", path, e))
    }
}

fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io("open lock file", path, e))
}

fn unsupported(e: &io::Error) -> bool {
    // ENOLCK is what NFS without lockd answers.
    const ENOLCK: i32 = if cfg!(target_os = "linux") { 37 } else { 77 };
    e.kind() == io::ErrorKind::Unsupported || e.raw_os_error() == Some(ENOLCK)
}
