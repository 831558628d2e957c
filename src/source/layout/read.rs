//! Reading an OCI image layout: finding a reference in `index.json` (or a pin in
//! `blobs/`), walking its manifests, and copying its blob into the cache,
//! verified on the way in.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{MAX_INDEX_SIZE, blob_path, index_path, names, open_file};
use crate::cache::{Cache, CommitError, PullGuard};
use crate::digest::Digest;
use crate::error::{Error, LayoutProblem, Result};
use crate::event::{Events, Source};
use crate::manifest::{Document, Rejected};
use crate::reference::Reference;
use crate::resolve::{Documents, Selection};
use crate::results::Artifact;

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

    /// Pulls `r` from the first layout that holds it and can give it, into the
    /// cache; `None` when none can. A failure is treated as by [`Layouts::find`].
    ///
    /// # Errors
    /// As [`commit`]; the cache's errors.
    pub(crate) fn pull(
        &self,
        cache: &Cache,
        selection: &Selection,
        r: &Reference,
        online: bool,
        events: &Events,
    ) -> Result<Option<Artifact>> {
        for dir in &self.dirs {
            let pulled = self.documents(dir, r, selection).and_then(|found| {
                let Some(docs) = found else { return Ok(None) };
                cache.check_writable(r)?;
                cache
                    .with_pull_lock(r, |held| commit(cache, held, selection, r, dir, &docs))
                    .map(Some)
            });
            match pulled {
                Ok(None) => {}
                Ok(Some(artifact)) => return Ok(Some(artifact)),
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

/// Copies the blob `docs` lead to from layout `dir` into the cache, verifying it
/// on the way, then stores the manifests and records `r` (the canonical upstream
/// reference) as the registry's answer would be.
///
/// # Errors
/// [`Error::Layout`] naming the layout's file when it cannot be read or does not
/// verify (nothing of it is cached); the cache's own errors.
pub(crate) fn commit(
    cache: &Cache,
    held: &PullGuard,
    selection: &Selection,
    r: &Reference,
    dir: &Path,
    docs: &Documents,
) -> Result<Artifact> {
    let chosen = selection.choose(r, docs)?;
    let file = blob_path(dir, &chosen.layer_digest);
    let fetched = cache.fetch_blob(held, &chosen.layer_digest, chosen.size, |offset| {
        let mut f = open_file(&file).map_err(|e| problem(r, &file, LayoutProblem::Io(e)))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| problem(r, &file, LayoutProblem::Io(e)))?;
        Ok((f, offset))
    });
    let (path, copied) = fetched.map_err(|e| match e {
        CommitError::Typed(e) => e,
        CommitError::Verify(reason) => problem(r, &file, LayoutProblem::Verify(reason)),
        CommitError::Cut(e) => problem(r, &file, LayoutProblem::Io(e)),
    })?;
    // Manifests after the blob, the ref last, as for a registry pull.
    if let Some(child) = &docs.child {
        cache.store_bytes(held, &child.digest, &child.bytes)?;
    }
    cache.store_bytes(held, &docs.top.digest, &docs.top.bytes)?;
    cache.write_ref(held, r, &docs.top.digest)?;
    Ok(Artifact::new(path, chosen, !copied))
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
