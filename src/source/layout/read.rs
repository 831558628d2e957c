//! Reading an OCI image layout: finding a reference in `index.json` (or a pin in
//! `blobs/`), walking its manifests, and opening its blobs for the cache to copy,
//! verified on the way in.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{MAX_INDEX_SIZE, blob_path, index_path, names, open_file};
use crate::cache::CommitError;
use crate::digest::Digest;
use crate::error::{Error, LayoutProblem, Result};
use crate::event::{Events, Source};
use crate::manifest::{Document, Rejected};
use crate::reference::Reference;
use crate::resolve::{Documents, Selection};

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    media_type: Option<String>,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

/// The layouts a client reads, in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layouts {
    dirs: Vec<PathBuf>,
    max_manifest_size: u64,
}

impl Layouts {
    pub(crate) fn new(dirs: Vec<PathBuf>, max_manifest_size: u64) -> Layouts {
        Layouts {
            dirs,
            max_manifest_size,
        }
    }

    /// The documents `r` leads to in the first layout that holds it. A
    /// layout that holds it but cannot give it is an error offline; online it is
    /// reported and passed over for the next source.
    ///
    /// # Errors
    /// As [`Layouts::documents`], offline.
    pub(crate) fn find(
        &self,
        r: &Reference,
        selection: &Selection,
        online: bool,
        events: &Events,
    ) -> Result<Option<Documents>> {
        for dir in &self.dirs {
            match self.documents(dir, r, selection) {
                Ok(Some(docs)) => return Ok(Some(docs)),
                Ok(None) => {}
                Err(e) if online && e.is_source_failure() => {
                    events.skipped(&Source::Layout(dir.clone()), r, &e);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// `take(dir, documents)` for the first layout that holds `r` and from which
    /// `take` succeeds; `None` when none holds it. A failure is treated as by
    /// [`Layouts::find`]: reported and passed over online, returned offline.
    ///
    /// # Errors
    /// As [`Layouts::documents`] and `take`, offline or when not a source's failure.
    pub(crate) fn attempt<T>(
        &self,
        r: &Reference,
        selection: &Selection,
        online: bool,
        events: &Events,
        mut take: impl FnMut(&Path, Documents) -> Result<T>,
    ) -> Result<Option<T>> {
        for dir in &self.dirs {
            let taken = self
                .documents(dir, r, selection)
                .and_then(|found| found.map(|docs| take(dir, docs)).transpose());
            match taken {
                Ok(None) => {}
                Ok(Some(t)) => return Ok(Some(t)),
                Err(e) if online && e.is_source_failure() => {
                    events.skipped(&Source::Layout(dir.clone()), r, &e);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The documents `r` leads to in layout `dir`; `None` when the layout does
    /// not hold `r` (or does not exist: a layout not yet vendored is no error).
    ///
    /// # Errors
    /// [`Error::Layout`] when a file it needs is unreadable, invalid or not what
    /// its digest names; as [`Selection::walk`].
    pub(crate) fn documents(
        &self,
        dir: &Path,
        r: &Reference,
        selection: &Selection,
    ) -> Result<Option<Documents>> {
        let (digest, size, media_type) = match r.digest() {
            Some(pin) if blob_path(dir, pin).is_file() => (pin.clone(), None, None),
            Some(_) => return Ok(None),
            None => match self.entry(dir, r)? {
                Some(e) => {
                    let digest = e.digest.parse::<Digest>().map_err(|e| Error::Layout {
                        reference: r.to_string(),
                        path: index_path(dir),
                        reason: LayoutProblem::Digest(e),
                    })?;
                    (digest, Some(e.size), e.media_type)
                }
                None => return Ok(None),
            },
        };
        let top = self.document(dir, r, &digest, size, media_type.as_deref())?;
        selection.walk(r, top, |d, size| {
            self.document(dir, r, d, Some(size), None).map(Some)
        })
    }

    /// The digest the first layout that names tag `r` gives it; `None` for a
    /// pin, or when no layout names it (or one that would cannot be read: the
    /// pull that follows says why).
    pub(crate) fn tag_digest(&self, r: &Reference) -> Option<Digest> {
        if r.digest().is_some() {
            return None;
        }
        self.dirs.iter().find_map(|dir| {
            let entry = self.entry(dir, r).ok()??;
            entry.digest.parse().ok()
        })
    }

    /// The `index.json` files of the layouts that have one: what a build script
    /// asks cargo to watch, so vendoring again reruns it.
    pub(crate) fn index_files(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .map(|dir| index_path(dir))
            .filter(|index| index.is_file())
            .collect()
    }

    /// The first entry of `dir/index.json` that names `r`.
    fn entry(&self, dir: &Path, r: &Reference) -> Result<Option<Entry>> {
        let path = index_path(dir);
        let bytes = match read_limited(&path, MAX_INDEX_SIZE) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                return Err(problem(
                    r,
                    &path,
                    LayoutProblem::TooLarge {
                        limit: MAX_INDEX_SIZE,
                    },
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(problem(r, &path, LayoutProblem::Io(e))),
        };
        let index: Index = serde_json::from_slice(&bytes)
            .map_err(|e| problem(r, &path, LayoutProblem::Index(e.to_string())))?;
        Ok(index
            .manifests
            .into_iter()
            .find(|e| names(&e.annotations, r)))
    }

    /// Manifest `digest` from `dir`, verified against its digest (and size, when
    /// a descriptor gives one).
    fn document(
        &self,
        dir: &Path,
        r: &Reference,
        digest: &Digest,
        size: Option<u64>,
        media_type: Option<&str>,
    ) -> Result<Document> {
        let path = blob_path(dir, digest);
        let limit = self.max_manifest_size;
        let bytes = match read_limited(&path, limit) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(problem(r, &path, LayoutProblem::TooLarge { limit })),
            Err(e) => return Err(problem(r, &path, LayoutProblem::Io(e))),
        };
        Document::fetched(bytes, media_type, Some(digest), None, size).map_err(|rejected| {
            let reason = match rejected {
                Rejected::Verify { reason, .. } => LayoutProblem::Verify(reason),
                Rejected::Invalid { reason, .. } => LayoutProblem::Manifest(reason),
            };
            problem(r, &path, reason)
        })
    }
}

/// Blob `digest` of layout `dir`, opened at `offset`: a source for
/// [`Cache::fetch_blob_teeing`](crate::cache::Cache::fetch_blob_teeing), which verifies it.
///
/// # Errors
/// [`Error::Layout`] naming the file when it cannot be opened.
pub(crate) fn open_blob(
    dir: &Path,
    r: &Reference,
    digest: &Digest,
    offset: u64,
) -> Result<(File, u64)> {
    let file = blob_path(dir, digest);
    let io = |e| problem(r, &file, LayoutProblem::Io(e));
    let mut f = open_file(&file).map_err(io)?;
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    Ok((f, offset))
}

/// The error for blob `digest` of layout `dir` that could not be copied into the
/// cache: the layout's file is named when it was the one at fault.
pub(crate) fn blob_error(dir: &Path, r: &Reference, digest: &Digest, e: CommitError) -> Error {
    let file = blob_path(dir, digest);
    match e {
        CommitError::Typed(e) => e,
        CommitError::Verify(reason) => problem(r, &file, LayoutProblem::Verify(reason)),
        CommitError::Cut(e) => problem(r, &file, LayoutProblem::Io(e)),
    }
}

/// The whole file when it is at most `limit` bytes; `None` when it is larger.
fn read_limited(path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    open_file(path)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

fn problem(r: &Reference, path: &Path, reason: LayoutProblem) -> Error {
    Error::Layout {
        reference: r.to_string(),
        path: path.to_path_buf(),
        reason,
    }
}
