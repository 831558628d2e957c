//! Getting bytes into the cache atomically (the only user of tempfile).
//!
//! Every writer writes its own file, created exclusively under `tmp/` with a
//! random name, hashes the bytes as it writes them, and renames exactly that file
//! into place once they verify: what lands under `blobs/` is the file whose bytes
//! were hashed, even when file locks do not work and two processes download the
//! same blob at once, and whatever someone planted in `tmp/`.
//!
//! A download cut short by the network leaves its file at `tmp/<hex>.partial`,
//! released: its writer no longer touches it. The next writer claims it by
//! renaming it to a name of its own before reading it (so no two writers ever
//! share one), re-hashes it, and asks for the rest. A partial that already holds
//! the whole blob is finished without the network. A resumed download that fails
//! verification (the partial was not a true prefix) starts once more from zero.
//!
//! A process killed mid-download leaves its own file behind, never released: no
//! one can tell whether its writer is still alive when locks do not work, so it
//! is not resumed, and `prune` removes it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use tempfile::NamedTempFile;

use super::files::{is_own_file, is_private_regular, open_no_follow, still_names, sync_parent};
use super::pipeline::{self, Stop, Tee};
use crate::digest::{Digest, Hasher, VerifyError};
use crate::error::{Error, Result};

/// Why a download into the cache failed. A cut is left raw because only the
/// caller knows which host it was reading from.
#[derive(Debug)]
pub(crate) enum CommitError {
    /// Reading the source failed part-way (what arrived is kept as the partial):
    /// worth another try.
    Cut(io::Error),
    /// The bytes are not the blob: another try would get the same.
    Verify(VerifyError),
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

/// Where a download goes: the blob's final path, the released partial's, and the
/// directory for the writer's own file.
pub(crate) struct Target<'a> {
    pub(crate) tmp_dir: &'a Path,
    pub(crate) partial: &'a Path,
    pub(crate) dest: &'a Path,
    pub(crate) digest: &'a Digest,
    pub(crate) size: u64,
}

/// Downloads the blob into `target.dest`, resuming a released partial if there
/// is one. `progress` hears the byte count on disk as it grows.
///
/// `tee` is left complete only when the pass that verified wrote it whole from
/// byte 0; whatever else happens it is left incomplete (its owner then copies
/// the blob from the cache): after a failed pass it may hold the bytes that
/// failed, and the caller may yet find the blob in the cache without a pass.
pub(crate) fn download<R: Read>(
    target: &Target<'_>,
    open_at: OpenAt<'_, R>,
    progress: &mut dyn FnMut(u64),
    mut tee: Option<&mut Tee>,
) -> std::result::Result<(), CommitError> {
    if let Some(tee) = tee.as_deref_mut() {
        tee.invalidate();
    }
    let done = passes(target, open_at, progress, tee.as_deref_mut());
    if let (Err(_), Some(tee)) = (&done, tee) {
        tee.invalidate();
    }
    done
}

/// [`download`]'s passes over the source: a resume, then once more from zero
/// if what was resumed was no prefix of the blob.
fn passes<R: Read>(
    target: &Target<'_>,
    open_at: OpenAt<'_, R>,
    progress: &mut dyn FnMut(u64),
    mut tee: Option<&mut Tee>,
) -> std::result::Result<(), CommitError> {
    let mut writer = Writer::claim_or_create(target)?;
    let mut started_over = false;
    loop {
        let resumed = writer.have > 0;
        let outcome = if resumed && writer.have == target.size {
            progress(writer.have);
            writer.check_complete(target)
        } else {
            writer.append(target, open_at, progress, tee.as_deref_mut())
        };
        match outcome {
            Ok(()) => return writer.commit(target),
            Err(Failure::Verify(_)) if resumed && !started_over => {
                // What was resumed was not a prefix of this blob: once more, from zero.
                writer.restart()?;
                started_over = true;
            }
            Err(Failure::Verify(e)) => return Err(CommitError::Verify(e)),
            Err(Failure::Cut(e)) => {
                writer.release(target.partial);
                return Err(CommitError::Cut(e));
            }
            Err(Failure::Source(e)) => {
                writer.release(target.partial);
                return Err(e.into());
            }
            Err(Failure::Local(e)) => return Err(e.into()),
        }
    }
}

/// Why one pass of a download stopped short.
enum Failure {
    /// The bytes do not verify: worthless.
    Verify(VerifyError),
    /// The connection broke: what is on disk is worth keeping.
    Cut(io::Error),
    /// The source could not be opened: what is on disk is worth keeping.
    Source(Error),
    /// A cache file operation failed.
    Local(Error),
}

/// One writer's own file, with the hash and count of what it holds. Dropping it
/// removes the file.
struct Writer {
    file: NamedTempFile,
    hasher: Hasher,
    have: u64,
}

impl Writer {
    /// A new file of our own, holding the released partial if there was one.
    fn claim_or_create(target: &Target<'_>) -> Result<Writer> {
        let fresh = own_file(target.tmp_dir, target.digest)?;
        // Renaming moves a link or a FIFO as it is, without following it; what
        // was claimed is checked below before a byte of it is read.
        if fs::rename(target.partial, fresh.path()).is_err() {
            return Ok(Writer::empty(fresh));
        }
        let claimed = open_no_follow(OpenOptions::new().read(true).write(true), fresh.path())
            .ok()
            .filter(|f| is_private_regular(f).unwrap_or(false) && is_own_file(f).unwrap_or(false));
        let Some(mut file) = claimed else {
            // Not a file of ours: a planted link, FIFO or hard link, or a file
            // another user made (and may still hold open). Drop its name.
            let _ = fs::remove_file(fresh.path());
            return Ok(Writer::empty(own_file(target.tmp_dir, target.digest)?));
        };
        let path = fresh.into_temp_path();
        let (hasher, have) = match rehash(&mut file, target.size) {
            Ok(Some(found)) => found,
            // Longer than the blob, or unreadable: start over in the same file.
            Ok(None) | Err(_) => {
                file.set_len(0)
                    .map_err(|e| Error::io("truncate", &path, e))?;
                (Hasher::default(), 0)
            }
        };
        Ok(Writer {
            file: NamedTempFile::from_parts(file, path),
            hasher,
            have,
        })
    }

    fn empty(file: NamedTempFile) -> Writer {
        Writer {
            file,
            hasher: Hasher::default(),
            have: 0,
        }
    }

    /// Forgets what the file holds.
    fn restart(&mut self) -> Result<()> {
        let path = self.file.path();
        self.file
            .as_file()
            .set_len(0)
            .map_err(|e| Error::io("truncate", path, e))?;
        self.hasher = Hasher::default();
        self.have = 0;
        Ok(())
    }

    /// Whether a partial that holds as many bytes as the blob is the blob.
    fn check_complete(&self, target: &Target<'_>) -> std::result::Result<(), Failure> {
        let actual = self.hasher.clone().finish();
        if actual == *target.digest {
            return Ok(());
        }
        Err(Failure::Verify(VerifyError::DigestMismatch {
            expected: target.digest.clone(),
            actual,
        }))
    }

    /// Appends the rest of the blob from the source, verifying the whole (the
    /// hash is computed on another thread, see [`pipeline`](super::pipeline)).
    fn append<R: Read>(
        &mut self,
        target: &Target<'_>,
        open_at: OpenAt<'_, R>,
        progress: &mut dyn FnMut(u64),
        mut tee: Option<&mut Tee>,
    ) -> std::result::Result<(), Failure> {
        let (source, start) = open_at(self.have).map_err(Failure::Source)?;
        if start != self.have {
            // The server sent the whole blob: start over.
            self.restart().map_err(Failure::Local)?;
        }
        if let Some(tee) = tee.as_deref_mut() {
            tee.starts_at(self.have);
        }
        let path = self.file.path().to_path_buf();
        self.file
            .as_file_mut()
            .seek(SeekFrom::Start(self.have))
            .map_err(|e| Failure::Local(Error::io("seek", &path, e)))?;
        progress(self.have);
        let hasher = std::mem::take(&mut self.hasher);
        let pumped = pipeline::pump(
            source,
            self.file.as_file_mut(),
            hasher,
            self.have,
            target.size,
            tee,
            progress,
        );
        // Keep the hash of what is on disk, for a resume in this process.
        (self.hasher, self.have) = (pumped.hasher, pumped.have);
        match pumped.stop {
            Stop::End if self.have == target.size => self.check_complete(target),
            Stop::End => Err(Failure::Verify(VerifyError::TooShort {
                expected: target.size,
                actual: self.have,
            })),
            // Every byte arrived, then the connection broke (a lying
            // Content-Length, a lost chunked terminator): the hash decides.
            Stop::Cut(_) if self.have == target.size => self.check_complete(target),
            Stop::Cut(e) => Err(Failure::Cut(e)),
            Stop::TooLong => Err(Failure::Verify(VerifyError::TooLong {
                expected: target.size,
            })),
            Stop::Write(e) => Err(Failure::Local(Error::io("write", &path, e))),
        }
    }

    /// Renames the verified file into place, read-only.
    fn commit(self, target: &Target<'_>) -> std::result::Result<(), CommitError> {
        let Writer { file, .. } = self;
        publish(file, target.dest)?;
        Ok(())
    }

    /// Leaves the file at `partial` for the next writer; best effort.
    fn release(self, partial: &Path) {
        let _ = self.file.persist(partial);
    }
}

/// Publishes a writer's own verified file at `dest`: flushed to disk, made
/// read-only, checked to be the very file this writer wrote, renamed into place,
/// and the rename itself flushed. Blobs and extracted modules alike.
///
/// # Errors
/// [`Error::Io`] naming the file or `dest`.
pub(crate) fn publish(file: NamedTempFile, dest: &Path) -> Result<()> {
    let path = file.path().to_path_buf();
    let f = file.as_file();
    f.sync_all().map_err(|e| Error::io("fsync", &path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(0o444))
            .map_err(|e| Error::io("make read-only", &path, e))?;
    }
    // Only this process writes through this name, but anyone who can write
    // `tmp/` could have swapped the file under it: never rename in a stranger.
    if !still_names(&path, f).map_err(|e| Error::io("inspect", &path, e))? {
        return Err(Error::io(
            "rename into place",
            &path,
            io::Error::other("the temporary file was replaced by another"),
        ));
    }
    // Renaming over an existing file is fine: same name, same bytes (or a
    // damaged copy being repaired). A directory planted in its place is removed
    // (never through a link: remove_dir_all does not follow them).
    if fs::symlink_metadata(dest).is_ok_and(|m| m.is_dir()) {
        fs::remove_dir_all(dest)
            .map_err(|e| Error::io("remove the directory in place of", dest, e))?;
    }
    file.persist(dest)
        .map_err(|e| Error::io("rename into place", dest, e.error))?;
    sync_parent(dest)
}

/// A new, empty file only this writer knows, named for the blob so a person
/// reading `tmp/` can tell what it was.
fn own_file(tmp_dir: &Path, digest: &Digest) -> Result<NamedTempFile> {
    let prefix = format!("{}.", digest.hex());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".download");
    with_cache_permissions(&mut builder);
    builder
        .tempfile_in(tmp_dir)
        .map_err(|e| Error::io("create a temporary file in", tmp_dir, e))
}

/// Hashes what a claimed partial holds. `None` when it is longer than the blob,
/// so it cannot be a prefix of it.
fn rehash(file: &mut File, size: u64) -> io::Result<Option<(Hasher, u64)>> {
    let len = file.metadata()?.len();
    if len > size {
        return Ok(None);
    }
    let mut hasher = Hasher::default();
    let copied = io::copy(&mut (&mut *file).take(len), &mut hasher)?;
    Ok(Some((hasher, copied)))
}

/// tempfile creates 0600; cache files are 0644 before the umask, so a cache
/// filled by one user, say root baking an image, can be read by others.
fn with_cache_permissions(builder: &mut tempfile::Builder<'_, '_>) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o644));
    }
    #[cfg(not(unix))]
    let _ = builder;
}

/// Whether a file written with [`write_bytes`] may be changed in place later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Content under `blobs/`: read-only.
    Immutable,
    /// A ref, whose time is renewed in place.
    Mutable,
}

/// Writes `bytes` to `dest` atomically.
pub(crate) fn write_bytes(tmp_dir: &Path, dest: &Path, bytes: &[u8], mode: Mode) -> Result<()> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("part-");
    with_cache_permissions(&mut builder);
    let mut tmp = builder
        .tempfile_in(tmp_dir)
        .map_err(|e| Error::io("create a temporary file in", tmp_dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| Error::io("write", tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io("fsync", tmp.path(), e))?;
    #[cfg(unix)]
    if mode == Mode::Immutable {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o444))
            .map_err(|e| Error::io("make read-only", tmp.path(), e))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    tmp.persist(dest)
        .map_err(|e| Error::io("rename into place", dest, e.error))?;
    sync_parent(dest)
}
