//! Files derived from cached layers: a wasm module extracted from a container
//! image's filesystem layer, kept at
//! `derived/<rules>/sha256/<layer>/<config>/<module hex>` so a warm pull needs no
//! extraction. The path records where it came from (the layer, and the image
//! config whose platform and entrypoint chose the file in it); the name is the
//! module's own digest, so `verify` re-hashes it like a blob and `prune` drops
//! it with its layer.
//!
//! Written as blobs are: the bytes stream into the writer's own temporary file in
//! `tmp/` (created exclusively, hashed as written), which is flushed, made
//! read-only and renamed into place. A crash leaves at most that temporary file,
//! which `prune` removes; two writers of the same module rename identical bytes
//! to the same name.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::commit::publish;
use super::files::{ensure_dir, ensure_dirs_below, regular_len};
use super::layout::Layout;
use super::{Cache, PullGuard};
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};

/// A module being extracted: the writer's own temporary file, hashed as written.
pub(crate) struct Staged {
    file: NamedTempFile,
    hasher: Hasher,
    len: u64,
}

impl Staged {
    /// Appends bytes.
    ///
    /// # Errors
    /// [`Error::Io`] naming the temporary file.
    pub(crate) fn write_all(&mut self, buf: &[u8]) -> Result<()> {
        self.file
            .write_all(buf)
            .map_err(|e| Error::io("write", self.file.path(), e))?;
        self.hasher
            .write_all(buf)
            .map_err(|e| Error::io("hash", self.file.path(), e))?;
        self.len = self.len.saturating_add(buf.len() as u64);
        Ok(())
    }
}

/// A module in the cache: its path, digest and size.
#[derive(Debug, Clone)]
pub(crate) struct Derived {
    pub(crate) path: PathBuf,
    pub(crate) digest: Digest,
    pub(crate) size: u64,
}

impl Cache {
    /// The module extracted from `layer` under `config`, when it is cached: a
    /// regular file (never a link) named as a digest. A stat, not a hash: `verify`
    /// is what re-hashes.
    pub(crate) fn derived(&self, layer: &Digest, config: &Digest) -> Option<Derived> {
        let dir = self.layout.derived_dir(layer, config);
        // Each directory from `derived/` down is looked at, not through: a link
        // planted for one would serve any file it leads to, and `verify`, which
        // never lists through a link, would not see it.
        let root = self.layout.derived_root();
        let [layer_hex, _] = Layout::derived_components(layer, config);
        let dirs = [
            self.layout.derived_dir_all(),
            self.layout.derived_rules_dir(),
            root.clone(),
            root.join(layer_hex),
            dir.clone(),
        ];
        let real_dir = |d: &PathBuf| fs::symlink_metadata(d).is_ok_and(|m| m.is_dir());
        if !dirs.iter().all(real_dir) {
            return None;
        }
        fs::read_dir(&dir).ok()?.flatten().find_map(|entry| {
            let name = entry.file_name();
            let digest: Digest = format!("sha256:{}", name.to_str()?).parse().ok()?;
            let path = dir.join(&name);
            let size = regular_len(&path)?;
            Some(Derived { path, digest, size })
        })
    }

    /// Opens cached blob `digest` for reading, never through a link.
    ///
    /// # Errors
    /// [`Error::Io`] when it is missing or cannot be read.
    pub(crate) fn open_blob(&self, digest: &Digest) -> Result<fs::File> {
        let path = self.layout.blob(digest);
        match super::files::open_regular(&path) {
            Ok(Some(f)) => Ok(f),
            Ok(None) => Err(Error::io(
                "open",
                &path,
                io::Error::new(io::ErrorKind::NotFound, "not a regular file"),
            )),
            Err(e) => Err(Error::io("open", &path, e)),
        }
    }

    /// A new temporary file for a module about to be extracted.
    ///
    /// # Errors
    /// [`Error::Io`] when `tmp/` cannot be written.
    pub(crate) fn stage(&self, _held: &PullGuard) -> Result<Staged> {
        let tmp = self.tmp_dir()?;
        let mut builder = tempfile::Builder::new();
        builder.prefix("extract-").suffix(".tmp");
        let file = builder
            .tempfile_in(&tmp)
            .map_err(|e| Error::io("create a temporary file in", &tmp, e))?;
        Ok(Staged {
            file,
            hasher: Hasher::default(),
            len: 0,
        })
    }

    /// Renames a fully extracted module into place, recorded with its `layer`
    /// and `config`.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file or directory that could not be written.
    pub(crate) fn commit_derived(
        &self,
        _held: &PullGuard,
        layer: &Digest,
        config: &Digest,
        staged: Staged,
    ) -> Result<Derived> {
        let Staged { file, hasher, len } = staged;
        let digest = hasher.finish();
        let root = self.layout.derived_root();
        // One level at a time, so that no link planted on the way is followed.
        for dir in [
            self.layout.derived_dir_all(),
            self.layout.derived_rules_dir(),
            root.clone(),
        ] {
            ensure_dir(&dir)?;
        }
        ensure_dirs_below(&root, &Layout::derived_components(layer, config))?;
        let dest = self.layout.derived_dir(layer, config).join(digest.hex());
        publish(file, &dest)?;
        Ok(Derived {
            path: dest,
            digest,
            size: len,
        })
    }

    /// Every file under `derived/`, and anything (a link, a file) found where a
    /// layer or config directory belongs, for `verify` to check and remove.
    pub(super) fn derived_files(&self) -> Result<Vec<PathBuf>> {
        let is_dir = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
        let mut found = Vec::new();
        for layer in super::ops::entries_in(&self.layout.derived_root())? {
            if !is_dir(&layer) {
                found.push(layer);
                continue;
            }
            for config in super::ops::entries_in(&layer).unwrap_or_default() {
                if is_dir(&config) {
                    found.extend(super::ops::entries_in(&config).unwrap_or_default());
                } else {
                    found.push(config);
                }
            }
        }
        Ok(found)
    }

    /// The layer directories under `derived/` whose layer is not in `reachable`
    /// (hex names), and the config directories whose config is not.
    pub(super) fn orphaned_derived(
        &self,
        reachable: &std::collections::HashSet<String>,
    ) -> Result<Vec<PathBuf>> {
        let name_of = |p: &Path| {
            p.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned()
        };
        let mut orphans = Vec::new();
        for layer in super::ops::entries_in(&self.layout.derived_root())? {
            if !reachable.contains(&name_of(&layer)) {
                orphans.push(layer);
                continue;
            }
            for config in super::ops::entries_in(&layer).unwrap_or_default() {
                if !reachable.contains(&name_of(&config)) {
                    orphans.push(config);
                }
            }
        }
        Ok(orphans)
    }
}
