//! The temporary file a copy out of the cache is written into before it is
//! renamed over the destination. `pull -o` writes it for the whole download, so
//! a pull killed then (kill -9, or Ctrl-C, whose default action runs no
//! destructor) must not leave it behind: on Linux it has no name while it is
//! written (`O_TMPFILE`), and gets one only for the instant before the rename.
//! Where that cannot be done (another system, a file system without
//! `O_TMPFILE`, no `/proc` to link it through) it is a named temporary file,
//! removed when dropped.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// A temporary file in the destination's directory.
#[derive(Debug)]
pub(super) enum Temp {
    /// A file with a name of its own, removed when dropped.
    Named(NamedTempFile),
    /// A file with no name yet, in `dir`: freed with its last descriptor.
    #[cfg(target_os = "linux")]
    Unnamed { file: File, dir: PathBuf },
}

impl Temp {
    /// A new, empty temporary file in `dir`, `0644` before the umask (the
    /// user's own ordinary file, as any they create).
    pub(super) fn new_in(dir: &Path) -> io::Result<Temp> {
        #[cfg(target_os = "linux")]
        if let Some(file) = unnamed_in(dir) {
            return Ok(Temp::Unnamed {
                file,
                dir: dir.to_path_buf(),
            });
        }
        named_in(dir).map(Temp::Named)
    }

    pub(super) fn as_file(&self) -> &File {
        match self {
            Temp::Named(tmp) => tmp.as_file(),
            #[cfg(target_os = "linux")]
            Temp::Unnamed { file, .. } => file,
        }
    }

    /// For messages: its path, or its directory while it has none.
    pub(super) fn path(&self) -> &Path {
        match self {
            Temp::Named(tmp) => tmp.path(),
            #[cfg(target_os = "linux")]
            Temp::Unnamed { dir, .. } => dir,
        }
    }

    /// Renames it over `target` (which is in the same directory).
    pub(super) fn persist(self, target: &Path) -> io::Result<()> {
        match self {
            Temp::Named(tmp) => tmp.persist(target).map(drop).map_err(|e| e.error),
            #[cfg(target_os = "linux")]
            Temp::Unnamed { file, dir } => match link_in(&file, &dir) {
                Ok(named) => std::fs::rename(&named, target).inspect_err(|_| {
                    let _ = std::fs::remove_file(&named);
                }),
                // A sandbox whose /proc cannot link it: its bytes go into a
                // named file instead (a copy, only there).
                Err(_) => copy_into_named(&file, &dir, target),
            },
        }
    }
}

/// A named temporary file in `dir`, removed when dropped, `0644` before the umask.
fn named_in(dir: &Path) -> io::Result<NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".forge-oci-").suffix(".tmp");
    // tempfile creates 0600; the copy is writable even though the cached blob
    // is read-only, and readable as any file the user creates.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    builder.tempfile_in(dir)
}

/// Copies all of `file` into a named temporary file in `dir`, renamed over `target`.
#[cfg(target_os = "linux")]
fn copy_into_named(file: &File, dir: &Path, target: &Path) -> io::Result<()> {
    use std::io::Seek;
    let named = named_in(dir)?;
    let mut from = file;
    from.rewind()?;
    io::copy(&mut from, &mut named.as_file())?;
    named.as_file().sync_all()?;
    named.persist(target).map(drop).map_err(|e| e.error)
}

/// A file with no name in `dir`, if the file system and `/proc` allow one
/// that can be linked later.
#[cfg(target_os = "linux")]
fn unnamed_in(dir: &Path) -> Option<File> {
    use rustix::fs::{CWD, Mode, OFlags};
    // Giving it a name goes through /proc/self/fd (linkat with AT_EMPTY_PATH
    // needs a capability users do not have).
    if !Path::new("/proc/self/fd").is_dir() {
        return None;
    }
    let flags = OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(CWD, dir, flags, Mode::from_raw_mode(0o644)).ok()?;
    Some(File::from(fd))
}

/// Gives the unnamed `file` a fresh name in `dir`, for the rename.
#[cfg(target_os = "linux")]
fn link_in(file: &File, dir: &Path) -> io::Result<PathBuf> {
    use rustix::fs::{AtFlags, CWD};
    use std::os::fd::AsRawFd;
    let through = format!("/proc/self/fd/{}", file.as_raw_fd());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    for attempt in 0..100u32 {
        let name = dir.join(format!(
            ".forge-oci-{}-{nanos}-{attempt}.tmp",
            std::process::id()
        ));
        match rustix::fs::linkat(CWD, through.as_str(), CWD, &name, AtFlags::SYMLINK_FOLLOW) {
            Ok(()) => return Ok(name),
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::ErrorKind::AlreadyExists.into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn it_has_no_name_until_it_replaces_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        std::fs::write(&target, b"old").unwrap();
        let tmp = Temp::new_in(dir.path()).unwrap();
        tmp.as_file().write_all(b"new").unwrap();
        #[cfg(target_os = "linux")]
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "nothing to leave behind if killed now"
        );
        tmp.persist(&target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        drop(Temp::new_in(dir.path()).unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn where_it_cannot_be_linked_its_bytes_are_copied_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        let Temp::Unnamed { file, dir: at } = Temp::new_in(dir.path()).unwrap() else {
            return; // this file system has no O_TMPFILE: nothing to fall back from
        };
        (&file).write_all(b"the whole blob").unwrap();
        copy_into_named(&file, &at, &target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"the whole blob");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
