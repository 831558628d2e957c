//! File locks (the only user of fd-lock), in the manner of cargo's `util/flock.rs`:
//! try first, tell the caller before blocking, then block (or poll until a
//! deadline, when the caller set a timeout).
//!
//! Two kinds of lock files, always taken in this order: the cache-wide `.lock`
//! (shared by pulls, exclusive for prune and clear), then a blob's
//! `locks/<hex>.lock` (exclusive while that blob downloads).
//!
//! Where the file system does not support locking (`ENOTSUP`, or `ENOLCK` from NFS
//! without lockd), locking degrades to none, as cargo does. Content stays correct,
//! because nothing in the cache depends on a lock for correctness: each writer
//! writes its own file and renames exactly the bytes it verified (see `commit`).
//! What is lost is economy and order: two processes may download the same blob at
//! once, and prune may remove a running pull's files (that pull then fails and
//! can be run again).
//!
//! A lock file is never opened through a symbolic link: something other than a
//! regular file in its place (a link planted by another user, a FIFO) is removed
//! and the lock file made anew.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use fd_lock::RwLock;

use super::files::{is_link_refusal, open_no_follow};
use crate::error::Error;

/// How often a lock with a timeout is retried.
const POLL: Duration = Duration::from_millis(50);

/// What a lock guards, which decides which file is locked and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Guarding {
    /// The writes of a pull (and verify's removals): the cache-wide `.lock`,
    /// shared with every other pull.
    Pull,
    /// Prune and clear: the cache-wide `.lock`, held alone, so no pull runs.
    Mutation,
    /// One blob's download: its `locks/<hex>.lock`, held alone.
    BlobDownload,
}

impl Guarding {
    fn shared(self) -> bool {
        self == Guarding::Pull
    }
}

/// Proof that the cache-wide lock is held for a pull: the functions that write
/// into the cache take it, so their signature says the caller holds the lock.
pub(crate) struct PullGuard(pub(super) ());

/// What to do while another process holds a lock.
pub(crate) struct Waiting<'a> {
    /// Called once, just before waiting.
    pub(crate) on_wait: &'a dyn Fn(&Path),
    /// Give up after this long; `None` waits for ever.
    pub(crate) timeout: Option<Duration>,
}

/// Runs `f` while holding the lock file at `path` in `mode`.
pub(crate) fn with_lock<T, E: From<Error>>(
    path: &Path,
    guarding: Guarding,
    waiting: &Waiting<'_>,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let mut lock = RwLock::new(open(path)?);
    let mut reported = false;
    let started = Instant::now();
    loop {
        // Each arm either runs `f` under the guard or falls through to wait.
        let attempt = if guarding.shared() {
            match lock.try_read() {
                Ok(_guard) => return f(),
                Err(e) => e,
            }
        } else {
            match lock.try_write() {
                Ok(_guard) => return f(),
                Err(e) => e,
            }
        };
        if unsupported(&attempt) {
            return f();
        }
        if attempt.kind() != io::ErrorKind::WouldBlock {
            return Err(Error::io("lock", path, attempt).into());
        }
        if !reported {
            (waiting.on_wait)(path);
            reported = true;
        }
        match waiting.timeout {
            Some(limit) if started.elapsed() >= limit => {
                return Err(Error::LockTimeout {
                    path: path.to_path_buf(),
                    waited: limit,
                }
                .into());
            }
            Some(_) => thread::sleep(POLL),
            None => break,
        }
    }
    // No timeout: block in the kernel rather than poll.
    if guarding.shared() {
        let _guard = lock.read().map_err(|e| Error::io("lock", path, e))?;
        f()
    } else {
        let _guard = lock.write().map_err(|e| Error::io("lock", path, e))?;
        f()
    }
}

fn open(path: &Path) -> Result<File, Error> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    match open_no_follow(&mut options, path) {
        Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => return Ok(f),
        Ok(_) => {}
        Err(e) if is_link_refusal(&e) || e.kind() == io::ErrorKind::IsADirectory => {}
        Err(e) => return Err(Error::io("open lock file", path, e)),
    }
    // Something planted in its place: remove it (a link, never its target; a
    // directory with what it holds, never following a link inside it).
    let removed = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        _ => std::fs::remove_file(path),
    };
    removed.map_err(|e| Error::io("remove what is in the place of", path, e))?;
    match open_no_follow(&mut options, path) {
        Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => Ok(f),
        Ok(_) => Err(Error::io(
            "open lock file",
            path,
            io::Error::other("not a regular file"),
        )),
        Err(e) => Err(Error::io("open lock file", path, e)),
    }
}

fn unsupported(e: &io::Error) -> bool {
    #[cfg(unix)]
    let enolck = e.raw_os_error() == Some(libc::ENOLCK);
    #[cfg(not(unix))]
    let enolck = false;
    e.kind() == io::ErrorKind::Unsupported || enolck
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_gives_up_with_the_path_and_reports_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let mut holder = RwLock::new(open(&path).unwrap());
        let _held = holder.write().unwrap();
        let calls = std::cell::Cell::new(0);
        let waiting = Waiting {
            on_wait: &|_| calls.set(calls.get() + 1),
            timeout: Some(Duration::from_millis(200)),
        };
        let r: Result<(), Error> = with_lock(&path, Guarding::Pull, &waiting, || Ok(()));
        match r {
            Err(Error::LockTimeout { path: p, .. }) => assert_eq!(p, path),
            other => panic!("expected LockTimeout, got {other:?}"),
        }
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn shared_locks_do_not_exclude_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let holder = RwLock::new(open(&path).unwrap());
        let _held = holder.read().unwrap();
        let waiting = Waiting {
            on_wait: &|_| panic!("a shared lock must not wait for another shared lock"),
            timeout: Some(Duration::from_millis(10)),
        };
        let r: Result<u8, Error> = with_lock(&path, Guarding::Pull, &waiting, || Ok(7));
        assert_eq!(r.unwrap(), 7);
    }
}
