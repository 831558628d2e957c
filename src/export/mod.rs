//! Copying a file out of the cache to a path the caller chose: never onto the
//! cached file itself, and never leaving a half-written destination behind.
//!
//! Every copy out of the cache goes through here: [`copy_out`]
//! (`Artifact::copy_to`) for a blob already cached, and [`prepare`] then
//! [`Output::finish`] for `Client::pull_to` (the CLI's `-o FILE` and
//! `build::fetch_to_out_dir`), whose download is teed into the destination's
//! temporary file as it arrives. One place decides what a destination may be
//! (never the blob, never inside the cache; devices and FIFOs written into) and
//! how bytes are copied (reflink, else `copy_file_range`, else read and write).

use std::fs::{self, File};
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};

use crate::cache::{Tee, sync_parent};

mod temp;
use crate::error::{Error, Result};
use temp::Temp;

/// Copies `source` to `dest` through a temporary file in the destination's
/// directory that is renamed over it once complete and on disk.
///
/// Whatever fails, the destination keeps its old content and no temporary file
/// remains (the temporary file is removed when dropped). A symbolic link at `dest`
/// is followed, as `cp` does, so the file it names is what is replaced (and
/// `/dev/stdout` stays a link); a destination that is not a regular file (a
/// device such as `/dev/null`, a FIFO, a terminal) is written into, never replaced;
/// a directory is refused. The copy is a reflink where the file system can share
/// blocks (`FICLONE`: btrfs, XFS, bcachefs), else `copy_file_range`, else a read
/// and write loop.
pub(crate) fn copy_out(source: &Path, dest: &Path) -> Result<()> {
    let from = File::open(source).map_err(|e| Error::io("open", source, e))?;
    let from_meta = from.metadata().map_err(|e| Error::io("stat", source, e))?;
    if same_file(source, &from_meta, dest)? {
        return Err(Error::DestinationIsCached {
            destination: dest.to_path_buf(),
            cached: source.to_path_buf(),
        });
    }
    match prepare(cache_root_of(source), dest)? {
        Destination::Into(dest) => write_into(&from, &dest),
        Destination::Replace(out) => out.finish_from(&from, source, from_meta.len()),
    }
}

/// Where a copy out of the cache goes, decided before its bytes exist (so that
/// `pull -o` can write them as they arrive).
#[derive(Debug)]
pub(crate) enum Destination {
    /// A device, FIFO, socket or terminal: nothing to replace whole, so it is
    /// written into once the blob is in the cache.
    Into(PathBuf),
    /// A regular file, or none yet: replaced by a temporary file beside it.
    Replace(Output),
}

/// A temporary file beside the destination, with the [`Tee`] a download writes
/// into. Dropping it removes the temporary file: the destination is untouched
/// until [`Output::finish`].
#[derive(Debug)]
pub(crate) struct Output {
    tmp: Temp,
    /// Where the links at `dest` lead: the file replaced.
    target: PathBuf,
    /// As the caller gave it, for errors.
    dest: PathBuf,
    tee: Tee,
}

/// Decides where a copy to `dest` goes and, for a file, makes its temporary
/// file. `cache_root`, when known, is refused along with everything in it.
///
/// # Errors
/// [`Error::DestinationIsCached`] for a path inside the cache; [`Error::Io`] for a
/// directory, a path that names no file, or a temporary file that cannot be made.
pub(crate) fn prepare(cache_root: Option<&Path>, dest: &Path) -> Result<Destination> {
    // What `dest` leads to, as the system resolves it (`/dev/stdout` leads to a
    // pipe through `/proc/self/fd/1`, whose link text is no path).
    match fs::metadata(dest) {
        Ok(m) if m.is_dir() => {
            return Err(Error::io(
                "copy the artifact to",
                dest,
                io::Error::new(io::ErrorKind::IsADirectory, "it is a directory"),
            ));
        }
        Ok(m) if !m.is_file() => return Ok(Destination::Into(dest.to_path_buf())),
        _ => {}
    }
    // A regular file, or none yet: the file to replace is where the links lead.
    let target = follow_links(dest)?;
    if let Some(root) = cache_root.and_then(|root| inside_the_cache(root, &target)) {
        return Err(Error::DestinationIsCached {
            destination: dest.to_path_buf(),
            cached: root,
        });
    }
    if target.file_name().is_none() {
        return Err(Error::io(
            "copy the artifact to",
            dest,
            io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"),
        ));
    }
    let dir = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let tmp = Temp::new_in(dir).map_err(|e| Error::io("create a temporary file in", dir, e))?;
    let handle = tmp
        .as_file()
        .try_clone()
        .map_err(|e| Error::io("open", tmp.path(), e))?;
    Ok(Destination::Replace(Output {
        tmp,
        target,
        dest: dest.to_path_buf(),
        tee: Tee::new(handle),
    }))
}

impl Output {
    /// The tee a download writes the blob's bytes into as they arrive.
    pub(crate) fn tee(&mut self) -> &mut Tee {
        &mut self.tee
    }

    /// Puts the verified blob at `blob` (of `size` bytes) in place of the
    /// destination: what the tee holds when it is the whole blob, else a copy.
    ///
    /// # Errors
    /// [`Error::DestinationIsCached`] when the destination is the cached file;
    /// [`Error::Io`] when the copy cannot be made or renamed into place.
    pub(crate) fn finish(self, blob: &Path, size: u64) -> Result<()> {
        let from = File::open(blob).map_err(|e| Error::io("open", blob, e))?;
        let meta = from.metadata().map_err(|e| Error::io("stat", blob, e))?;
        if same_file(blob, &meta, &self.dest)? {
            return Err(Error::DestinationIsCached {
                destination: self.dest,
                cached: blob.to_path_buf(),
            });
        }
        if self.tee.is_complete(size) && meta.len() == size {
            return self.persist();
        }
        self.finish_from(&from, blob, meta.len())
    }

    /// Fills the temporary file from `from` (the file at `source`, `len` bytes)
    /// and renames it into place.
    fn finish_from(self, from: &File, source: &Path, len: u64) -> Result<()> {
        let mut to = self.tmp.as_file();
        // The tee wrote through a clone of this file, which shares its offset:
        // emptied, it must be written from its start again, or the copy lands
        // after a hole as long as what the tee had written.
        to.set_len(0)
            .and_then(|()| to.rewind())
            .map_err(|e| Error::io("truncate", self.tmp.path(), e))?;
        fast_copy(from, to, len).map_err(|e| {
            let failed = if e.kind() == io::ErrorKind::UnexpectedEof {
                source
            } else {
                &self.dest
            };
            Error::io("copy the artifact to", failed, e)
        })?;
        self.persist()
    }

    fn persist(self) -> Result<()> {
        let Output {
            tmp, target, dest, ..
        } = self;
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io("fsync", tmp.path(), e))?;
        tmp.persist(&target)
            .map_err(|e| Error::io("replace", &dest, e))?;
        sync_parent(&target)
    }
}

/// Writes the whole of `from` into `dest`, a device, FIFO or terminal.
fn write_into(mut from: &File, dest: &Path) -> Result<()> {
    let mut to = fs::OpenOptions::new()
        .write(true)
        .open(dest)
        .map_err(|e| Error::io("open", dest, e))?;
    io::copy(&mut from, &mut to).map_err(|e| Error::io("copy the artifact to", dest, e))?;
    Ok(())
}

/// Copies `len` bytes of `from` (at its start) into the empty file `to`: a
/// reflink where the file system can, else `copy_file_range` (which copies
/// inside the kernel, or shares blocks on NFS and btrfs), else read and write.
fn fast_copy(from: &File, to: &File, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        if rustix::fs::ioctl_ficlone(to, from).is_ok() {
            return Ok(());
        }
        let mut left = len;
        while left > 0 {
            let chunk = usize::try_from(left.min(1 << 30)).unwrap_or(1 << 30);
            match rustix::fs::copy_file_range(from, None, to, None, chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => left = left.saturating_sub(n as u64),
                // Not between these files (another file system on old kernels, a
                // file system without it): the plain loop below, from the start.
                Err(e) if left == len && copy_range_unsupported(e) => break,
                Err(e) => return Err(e.into()),
            }
        }
        if left == 0 {
            return Ok(());
        }
    }
    let (from, mut to) = (from, to);
    let copied = io::copy(&mut from.take(len), &mut to)?;
    if copied < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn copy_range_unsupported(e: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    [
        Errno::NOSYS,
        Errno::XDEV,
        Errno::INVAL,
        Errno::OPNOTSUPP,
        Errno::PERM,
    ]
    .contains(&e)
}

/// The cache root that holds `source` when it is a cached blob
/// (`<root>/blobs/sha256/<hex>`).
fn cache_root_of(source: &Path) -> Option<&Path> {
    let sha256 = source.parent()?;
    let blobs = sha256.parent()?;
    if sha256.file_name()? != "sha256" || blobs.file_name()? != "blobs" {
        return None;
    }
    blobs.parent()
}

/// The cache root when `target` would land inside the cache at `root`: a copy
/// there would put a file under a blob's name, or replace a lock file.
fn inside_the_cache(root: &Path, target: &Path) -> Option<PathBuf> {
    let root = fs::canonicalize(root).ok()?;
    // The file may not exist yet: its directory decides where it lands.
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = fs::canonicalize(dir).ok()?;
    // Beside the cache's own directories, in the root itself, only `.lock` is the
    // cache's; anything deeper is.
    let ours = if dir == root {
        target.file_name().is_some_and(|n| n == ".lock")
    } else {
        dir.starts_with(&root)
    };
    ours.then_some(root)
}

/// The path `dest` leads to once symbolic links in its last component are
/// followed (the path itself when it is not a link, or does not exist).
fn follow_links(dest: &Path) -> Result<PathBuf> {
    let mut path = dest.to_path_buf();
    // As many hops as Linux allows before ELOOP.
    for _ in 0..40 {
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = fs::read_link(&path).map_err(|e| Error::io("read link", &path, e))?;
                path = match path.parent() {
                    Some(parent) => parent.join(link),
                    None => link,
                };
            }
            _ => return Ok(path),
        }
    }
    Err(Error::io(
        "copy the artifact to",
        dest,
        io::Error::other("too many levels of symbolic links"),
    ))
}

/// Whether `dest` is the file `source` is: its path, a hard link, or a symlink to it.
#[cfg(unix)]
fn same_file(_source: &Path, source_meta: &fs::Metadata, dest: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    // `metadata` follows a symlink at `dest`: a link to the blob is the blob.
    match fs::metadata(dest) {
        Ok(m) => Ok(m.dev() == source_meta.dev() && m.ino() == source_meta.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("stat", dest, e)),
    }
}

/// Whether `dest` is the file `source` is, by canonical path (links resolved).
#[cfg(not(unix))]
fn same_file(source: &Path, _source_meta: &fs::Metadata, dest: &Path) -> Result<bool> {
    match (fs::canonicalize(source), fs::canonicalize(dest)) {
        (Ok(a), Ok(b)) => Ok(a == b),
        _ => Ok(false),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn blob(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("blob");
        fs::write(&path, b"cached bytes").unwrap();
        path
    }

    #[test]
    fn replaces_the_destination_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let source = blob(dir.path());
        let dest = dir.path().join("out.wasm");
        fs::write(&dest, b"old").unwrap();
        copy_out(&source, &dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"cached bytes");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[cfg(unix)]
    #[test]
    fn refuses_the_source_by_path_hard_link_and_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let source = blob(dir.path());
        let hard = dir.path().join("hard");
        fs::hard_link(&source, &hard).unwrap();
        let soft = dir.path().join("soft");
        std::os::unix::fs::symlink(&source, &soft).unwrap();
        for dest in [&source, &hard, &soft] {
            let err = copy_out(&source, dest).unwrap_err();
            assert!(
                matches!(&err, Error::DestinationIsCached { destination, .. } if destination == dest),
                "{err}"
            );
        }
        assert_eq!(fs::read(&source).unwrap(), b"cached bytes");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_is_followed_and_its_target_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let source = blob(dir.path());
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        let other = sub.join("other");
        fs::write(&other, b"old content").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("sub/other", &link).unwrap();
        copy_out(&source, &link).unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&other).unwrap(), b"cached bytes");
        assert_eq!(
            fs::read_dir(&sub).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_written_into_never_replaced_and_a_directory_is_refused() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let source = blob(dir.path());
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read(fifo).unwrap())
        };
        copy_out(&source, &fifo).unwrap();
        assert_eq!(reader.join().unwrap(), b"cached bytes");
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());

        let err = copy_out(&source, dir.path()).unwrap_err();
        assert!(err.to_string().contains("copy the artifact"), "{err}");
        assert!(fs::symlink_metadata(dir.path()).unwrap().is_dir());
    }

    #[test]
    fn nowhere_inside_the_cache_is_a_destination() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        fs::create_dir_all(dir.path().join("locks")).unwrap();
        let source = blobs.join("aaaa");
        fs::write(&source, b"cached bytes").unwrap();
        fs::write(blobs.join("bbbb"), b"another blob").unwrap();
        for dest in [
            blobs.join("bbbb"),
            blobs.join("cccc"),
            dir.path().join("locks/x.lock"),
            dir.path().join(".lock"),
        ] {
            let err = copy_out(&source, &dest).unwrap_err();
            assert!(
                matches!(err, Error::DestinationIsCached { .. }),
                "{dest:?}: {err}"
            );
        }
        assert_eq!(fs::read(blobs.join("bbbb")).unwrap(), b"another blob");
        let outside = tempfile::tempdir().unwrap();
        copy_out(&source, &outside.path().join("out")).unwrap();
        // Beside the cache's directories, in its root, is not inside it.
        copy_out(&source, &dir.path().join("out.wasm")).unwrap();
    }

    #[test]
    fn an_output_the_tee_left_incomplete_is_filled_from_its_start() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let source = blob(dir.path());
        let dest = dir.path().join("out.wasm");
        let Destination::Replace(out) = prepare(None, &dest).unwrap() else {
            panic!("a new file is replaced")
        };
        // A download teed a few bytes, then the tee broke (a resume, a write error).
        out.tmp.as_file().write_all(b"half").unwrap();
        out.finish(&source, 12).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"cached bytes");
    }

    #[test]
    fn a_path_without_a_file_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let source = blob(dir.path());
        let err = copy_out(&source, &dir.path().join("..")).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }
}
