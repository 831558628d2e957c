//! Opening cache files that someone else may have planted. Anyone who can write
//! the cache directory can put a symbolic link, a FIFO or a hard link where the
//! cache expects its own file; nothing here follows a link or blocks on a FIFO,
//! and a file about to be written must be a regular file with no other name.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

use crate::error::{Error, Result, UnsafeDirectory};

/// Opens `path` with `options` without following a symbolic link in its last
/// component (`ELOOP`) and without blocking on a FIFO.
pub(crate) fn open_no_follow(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    options.open(path)
}

/// Opens an existing regular file for reading. `Ok(None)` when there is none, or
/// when what is there is a link, a directory or anything else.
pub(crate) fn open_regular(path: &Path) -> io::Result<Option<File>> {
    let file = match open_no_follow(OpenOptions::new().read(true), path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound || is_link_refusal(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(file.metadata()?.is_file().then_some(file))
}

/// The length of the regular file at `path`, not following a link; `None` for
/// anything else, or nothing.
pub(crate) fn regular_len(path: &Path) -> Option<u64> {
    fs::symlink_metadata(path)
        .ok()
        .filter(fs::Metadata::is_file)
        .map(|m| m.len())
}

/// Whether `file`, which this process will write, is a regular file that no other
/// name shares (a hard link planted in the cache could point at anyone's file).
pub(crate) fn is_private_regular(file: &File) -> io::Result<bool> {
    let meta = file.metadata()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok(meta.is_file() && meta.nlink() == 1)
    }
    #[cfg(not(unix))]
    Ok(meta.is_file())
}

/// Whether `path` still names `file` (and not something put in its place since).
pub(crate) fn still_names(path: &Path, file: &File) -> io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let (on_disk, open) = (fs::symlink_metadata(path)?, file.metadata()?);
        Ok(on_disk.dev() == open.dev() && on_disk.ino() == open.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        Ok(fs::symlink_metadata(path)?.is_file())
    }
}

/// Makes sure `dir` is a directory this process may safely write into, creating
/// it (and its parents) if needed. Something else in its place, a symbolic link
/// included, is refused: the cache never writes through a link someone planted
/// inside it. So is a directory another user could change ([`check_ours`]).
pub(crate) fn ensure_dir(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => return check_ours(dir, &m),
        Ok(_) => return Err(not_a_directory(dir)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("inspect", dir, e)),
    }
    fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    // Created by us or, a moment ago, by someone else: either way, check what it is.
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => check_ours(dir, &m),
        Ok(_) => Err(not_a_directory(dir)),
        Err(e) => Err(Error::io("inspect", dir, e)),
    }
}

/// Creates the directories `components` below `base` (which must exist), one at
/// a time, refusing any that is a link, not a directory, or not ours.
pub(crate) fn ensure_dirs_below(base: &Path, components: &[String]) -> Result<()> {
    let mut dir = base.to_path_buf();
    for c in components {
        dir.push(c);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create directory", &dir, e)),
        }
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => check_ours(&dir, &m)?,
            _ => return Err(not_a_directory(&dir)),
        }
    }
    Ok(())
}

/// The cache root, which may be a link the user made (`~/.cache` on another
/// disk): what it leads to must be a directory only this user can change.
pub(crate) fn ensure_root(root: &Path) -> Result<()> {
    fs::create_dir_all(root).map_err(|e| Error::io("create directory", root, e))?;
    check_root(root)
}

/// Whether this process may create files in `dir` (the file system's own answer:
/// permission bits, a read-only mount).
pub(crate) fn check_can_write(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    if let Err(errno) = rustix::fs::access(dir, rustix::fs::Access::WRITE_OK) {
        return Err(Error::io("write into", dir, errno.into()));
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// [`ensure_root`] for a root that exists.
///
/// The way to it counts too, as ssh's `StrictModes` has it: every directory on
/// the path as given and on the path it resolves to must belong to this user or
/// to root and be writable by no one else (a sticky directory such as `/tmp`
/// is fine), and every link on the way must belong to this user or to root.
/// Otherwise whoever controls that directory or link could point the cache
/// somewhere else between the check and the write.
pub(crate) fn check_root(root: &Path) -> Result<()> {
    match fs::metadata(root) {
        Ok(m) if m.is_dir() => check_ours(root, &m)?,
        Ok(_) => return Err(not_a_directory(root)),
        Err(e) => return Err(Error::io("inspect", root, e)),
    }
    let given = std::path::absolute(root).map_err(|e| Error::io("inspect", root, e))?;
    let resolved = fs::canonicalize(root).map_err(|e| Error::io("inspect", root, e))?;
    for path in [&given, &resolved] {
        for ancestor in path.ancestors() {
            check_on_the_way(ancestor, ancestor == path.as_path())?;
        }
    }
    Ok(())
}

/// One step on the way to the root (see [`check_root`]); `is_root`: the root
/// itself, whose directory [`check_ours`] has judged already.
#[cfg(unix)]
fn check_on_the_way(path: &Path, is_root: bool) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::symlink_metadata(path) else {
        return Ok(()); // `..` resolved away, or gone: canonicalize judged the rest
    };
    let me = rustix::process::geteuid().as_raw();
    let trusted_owner = meta.uid() == me || meta.uid() == 0;
    let reason = if meta.file_type().is_symlink() {
        (!trusted_owner).then_some(UnsafeDirectory::LinkOwnedBy { uid: meta.uid() })
    } else if is_root {
        None
    } else if !trusted_owner {
        Some(UnsafeDirectory::ParentOwnedBy { uid: meta.uid() })
    } else if meta.mode() & 0o002 != 0 && meta.mode() & 0o1000 == 0 {
        Some(UnsafeDirectory::ParentWorldWritable {
            mode: meta.mode() & 0o7777,
        })
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::UnsafeCacheDirectory {
            path: path.to_path_buf(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(not(unix))]
fn check_on_the_way(_path: &Path, _is_root: bool) -> Result<()> {
    Ok(())
}

/// An existing directory of the cache that is about to be read for removal
/// (prune, verify, clear): a directory, not a link to one elsewhere, and ours.
pub(crate) fn check_dir_to_clean(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => check_ours(dir, &m),
        Ok(_) => Err(not_a_directory(dir)),
        Err(e) => Err(Error::io("inspect", dir, e)),
    }
}

/// Whether a directory is one only this user can change: owned by this process's
/// effective user and not writable by everyone. Another user who can rename
/// entries in it could swap a checked directory for a link between the check and
/// the write, and make this process (root, say) write wherever they like. Group
/// write is allowed: distributions that give each user a private group create
/// directories group-writable.
#[cfg(unix)]
fn check_ours(dir: &Path, meta: &fs::Metadata) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        // A directory this user cannot write anyway is a read-only cache, not a
        // threat: say so as the file system would.
        if let Err(errno) = rustix::fs::access(dir, rustix::fs::Access::WRITE_OK) {
            return Err(Error::io("write into", dir, errno.into()));
        }
    }
    let reason = if meta.uid() != me {
        UnsafeDirectory::OwnedBy { uid: meta.uid() }
    } else if meta.mode() & 0o002 != 0 {
        UnsafeDirectory::WorldWritable {
            mode: meta.mode() & 0o7777,
        }
    } else {
        return Ok(());
    };
    Err(Error::UnsafeCacheDirectory {
        path: dir.to_path_buf(),
        reason,
    })
}

#[cfg(not(unix))]
fn check_ours(_dir: &Path, _meta: &fs::Metadata) -> Result<()> {
    Ok(())
}

/// Whether `file`, claimed from `tmp/`, was written by this user: a file another
/// user left there may still be open for writing in their process.
pub(crate) fn is_own_file(file: &File) -> io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok(file.metadata()?.uid() == rustix::process::geteuid().as_raw())
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        Ok(true)
    }
}

fn not_a_directory(dir: &Path) -> Error {
    Error::io(
        "use as a directory",
        dir,
        io::Error::other("something else is in its place (a symbolic link is never followed)"),
    )
}

/// `open` refused because the last component is a symbolic link (`ELOOP`), or a
/// FIFO with no reader (`ENXIO`).
pub(crate) fn is_link_refusal(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENXIO))
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// Fsyncs the directory holding `path`, so a rename into it survives a crash.
/// Also used for copies out of the cache (`export`).
#[cfg(unix)]
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => return Ok(()),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Windows cannot open a directory as a file; its rename is already durable enough.
#[cfg(not(unix))]
pub(crate) fn sync_parent(_path: &Path) -> Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_and_non_files_are_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, b"outside").unwrap();
        let link = dir.path().join("link");
        symlink(&target, &link).unwrap();
        assert!(open_regular(&link).unwrap().is_none());
        assert_eq!(regular_len(&link), None);
        assert!(open_regular(dir.path()).unwrap().is_none());
        assert!(open_regular(&dir.path().join("missing")).unwrap().is_none());
        assert_eq!(regular_len(&target), Some(7));

        let hard = dir.path().join("hard");
        fs::hard_link(&target, &hard).unwrap();
        let f = OpenOptions::new().read(true).open(&hard).unwrap();
        assert!(!is_private_regular(&f).unwrap());
    }

    #[test]
    fn directories_behind_links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let link = dir.path().join("tmp");
        symlink(elsewhere.path(), &link).unwrap();
        assert!(ensure_dir(&link).is_err());
        assert!(ensure_dir(&dir.path().join("new/deeper")).is_ok());
        symlink(elsewhere.path(), dir.path().join("refs")).unwrap();
        let err = ensure_dirs_below(dir.path(), &["refs".into(), "x".into()]).unwrap_err();
        assert!(err.to_string().contains("refs"), "{err}");
        assert!(!elsewhere.path().join("x").exists());
    }
}
