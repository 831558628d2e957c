//! The flows behind [`Client`](crate::Client)'s methods. A pull tries its
//! sources in DESIGN.md's order (the cache, the OCI image layouts, each mirror,
//! the registry); every source hands over documents and a way to open a blob,
//! and committing into the cache (the blob, a module extracted from it, the
//! manifests, then the ref) is written once, here. Resolve, inspect and vendor
//! read documents along the same order.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::cache::{Cache, CommitError, PullGuard, Tee};
use crate::config::{Network, TagPolicy};
use crate::derive;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::event::{Event, Events};
use crate::manifest::{Document, Manifest, Rejected};
use crate::reference::Reference;
use crate::registry::Registry;
use crate::resolve::{Chosen, Documents, Selection};
use crate::results::{Artifact, Inspection, LayerDecision, Resolution};
use crate::source::layout::read::{self as layout, Layouts};
use crate::source::layout::write::Writer;
use crate::source::mirror::Mirrors;

/// Everything a client holds, assembled from its [`Config`](crate::config::Config).
pub(crate) struct Parts {
    pub(crate) cache: Cache,
    pub(crate) selection: Selection,
    pub(crate) registry: Registry,
    pub(crate) network: Network,
    pub(crate) tag_policy: TagPolicy,
    pub(crate) events: Events,
    pub(crate) pull_timeout: Option<Duration>,
    pub(crate) mirrors: Mirrors,
    pub(crate) layouts: Layouts,
    pub(crate) jobs: usize,
    pub(crate) max_extracted_size: u64,
    /// Image configs are read whole, as manifests are: the same limit.
    pub(crate) max_config_size: u64,
}

/// Where the blobs of a pull come from once the cache lacks them.
#[derive(Clone, Copy)]
enum BlobSource<'a> {
    /// An OCI image layout directory.
    Layout(&'a Path),
    /// A registry or one of its mirrors, `r` rewritten for it.
    Remote(&'a Reference),
}

impl Parts {
    /// When the operation starting now must be done by, if a pull timeout is set.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        // A deadline past what an `Instant` can hold is no deadline.
        let now = Instant::now();
        self.pull_timeout.and_then(|t| now.checked_add(t))
    }

    fn online(&self) -> bool {
        self.network == Network::Online
    }

    /// Pulls `r` as `selection` chooses, writing the bytes into `tee` too when
    /// they are downloaded (never when a module is extracted: the tee would
    /// hold the layer, not the module).
    pub(crate) fn pull(
        &self,
        r: &Reference,
        selection: &Selection,
        tee: Option<&mut Tee>,
    ) -> Result<Artifact> {
        let online = self.online();
        let deadline = self.deadline();
        // A cached tag passed over for the digest a layout gives it.
        let mut moved_from = None;
        if let Some(pin) = r.digest() {
            if let Some(hit) = selection.cached(&self.cache, r, pin)? {
                return self.hit(r, hit);
            }
        } else if let Some((digest, resolved_at)) = self.cache.read_ref(r) {
            if let Some(hit) = selection.cached(&self.cache, r, &digest)? {
                // A vendored layout is the project's own record of its tags: where it
                // names another digest than the cache (vendored again), it wins.
                let vendored = self.layouts.tag_digest(r);
                if vendored.is_none_or(|d| d == digest) {
                    if let Some(artifact) =
                        self.cached_tag(r, hit, &digest, resolved_at, deadline)?
                    {
                        return Ok(artifact);
                    }
                } else {
                    moved_from = Some((hit, digest, resolved_at));
                }
            }
        }
        let mut tee = tee;
        let from_layout =
            self.layouts
                .attempt(r, selection, online, &self.events, |dir, docs| {
                    self.cache.check_writable(r)?;
                    self.cache.with_pull_lock(r, |held| {
                        let from = BlobSource::Layout(dir);
                        self.commit(held, r, selection, &docs, from, deadline, None)
                    })
                })?;
        if let Some(artifact) = from_layout {
            return Ok(artifact);
        }
        // Online, no layout could give what it names (each passed over with an
        // event): the cached tag is served as it would be without the layouts,
        // not made to depend on the registry answering.
        if let (true, Some((hit, digest, resolved_at))) = (online, moved_from) {
            if let Some(artifact) = self.cached_tag(r, hit, &digest, resolved_at, deadline)? {
                return Ok(artifact);
            }
        }
        if !online {
            return Err(Error::NotCached {
                reference: r.to_string(),
                cache: self.cache.root().to_path_buf(),
            });
        }
        // The manifests come first and outside the cache-wide lock: their requests
        // are where a 401 runs credential helpers, and prune and clear must not
        // wait on those. A cache that cannot take the result is said first.
        self.cache.check_writable(r)?;
        // A mirror's share of the time bounds its answer (the manifests); the
        // blob of one that answered has until the pull's deadline.
        self.mirrors
            .attempt(r, deadline, &self.events, |source, share| {
                let docs = self.documents_to_pull(r, source, selection, share)?;
                self.cache.with_pull_lock(r, |held| {
                    let from = BlobSource::Remote(source);
                    let tee = tee.as_deref_mut();
                    self.commit(held, r, selection, &docs, from, deadline, tee)
                })
            })
    }

    /// Cached tag `r` (at `digest`, recorded at `resolved_at`) if the tag
    /// policy lets it be served: as it is, or after the registry confirms it
    /// (or cannot be asked now). `None` when it moved: pull it.
    fn cached_tag(
        &self,
        r: &Reference,
        hit: Chosen,
        digest: &Digest,
        resolved_at: SystemTime,
        deadline: Option<Instant>,
    ) -> Result<Option<Artifact>> {
        if !self.online() || self.tag_is_fresh(resolved_at) {
            return self.hit(r, hit).map(Some);
        }
        match self.current_digest(r, deadline) {
            Ok(Some(current)) if current == *digest => {
                self.cache.touch_ref(r);
                self.hit(r, hit).map(Some)
            }
            Ok(_) => Ok(None), // moved, or no digest to compare: pull it
            Err(error) if cannot_tell_now(&error) => {
                self.events.emit(&Event::UsingCachedTag {
                    reference: r,
                    digest,
                    error: &error,
                });
                self.hit(r, hit).map(Some)
            }
            Err(error) => Err(error),
        }
    }

    /// The artifact for a cache hit: the blob, or the module extracted from it
    /// (extracted now, from the cached layer, if it is not cached yet).
    fn hit(&self, r: &Reference, chosen: Chosen) -> Result<Artifact> {
        let cache = &self.cache;
        let Some((config, _)) = &chosen.extract_with else {
            let path = cache.blob_path(&chosen.layer_digest);
            return Ok(Artifact::new(path, chosen, true));
        };
        let derived = match cache.derived(&chosen.layer_digest, config) {
            Some(found) => found,
            None => {
                // The layer and its config are cached: extracted here, no network.
                cache.check_writable(r)?;
                cache.with_pull_lock(r, |held| {
                    derive::module(cache, held, r, &chosen, config, self.max_extracted_size)
                })?
            }
        };
        Ok(Artifact::extracted(derived, chosen, true))
    }

    /// Downloads the blob `docs` lead to from `from` (and, for a module inside a
    /// container image's layer, the image config, then extracts it), then
    /// commits the manifests, then the ref: a ref never points at something missing.
    #[allow(clippy::too_many_arguments)] // two private call sites, each naming all of it
    fn commit(
        &self,
        held: &PullGuard,
        r: &Reference,
        selection: &Selection,
        docs: &Documents,
        from: BlobSource<'_>,
        deadline: Option<Instant>,
        tee: Option<&mut Tee>,
    ) -> Result<Artifact> {
        let cache = &self.cache;
        let chosen = selection.choose(r, docs)?;
        let tee = tee.filter(|_| chosen.extract_with.is_none());
        let layer = &chosen.layer_digest;
        let (path, downloaded) =
            self.fetch_blob(held, r, from, layer, chosen.size, deadline, tee)?;
        let derived = match &chosen.extract_with {
            None => None,
            Some((config, size)) => {
                // The image config says which file is the module; it is small, and
                // kept so that a later extraction needs no network.
                let limit = self.max_config_size;
                if *size > limit {
                    return Err(Error::TooLarge {
                        what: "image config",
                        reference: r.to_string(),
                        limit,
                    });
                }
                self.fetch_blob(held, r, from, config, *size, deadline, None)?;
                let max = self.max_extracted_size;
                Some(derive::module(cache, held, r, &chosen, config, max)?)
            }
        };
        if let Some(child) = &docs.child {
            cache.store_bytes(held, &child.digest, &child.bytes)?;
        }
        cache.store_bytes(held, &docs.top.digest, &docs.top.bytes)?;
        cache.write_ref(held, r, &docs.top.digest)?;
        Ok(match derived {
            Some(derived) => Artifact::extracted(derived, chosen, !downloaded),
            None => Artifact::new(path, chosen, !downloaded),
        })
    }

    /// Blob `digest` in the cache, copied from `from` unless it is there: its
    /// path and whether this call copied it. From a registry, a connection
    /// dropped mid-download is retried, resuming from the partial file; content
    /// that fails verification is not (the next try would be the same).
    #[allow(clippy::too_many_arguments)] // private; each call names what it fetches
    fn fetch_blob(
        &self,
        held: &PullGuard,
        r: &Reference,
        from: BlobSource<'_>,
        digest: &Digest,
        size: u64,
        deadline: Option<Instant>,
        mut tee: Option<&mut Tee>,
    ) -> Result<(PathBuf, bool)> {
        let cache = &self.cache;
        let source = match from {
            BlobSource::Layout(dir) => {
                let open_at = |offset| layout::open_blob(dir, r, digest, offset);
                return cache
                    .fetch_blob_teeing(held, digest, size, open_at, tee)
                    .map_err(|e| layout::blob_error(dir, r, digest, e));
            }
            BlobSource::Remote(source) => source,
        };
        let registry = &self.registry;
        // The host whose body was being read, named if reading it fails.
        let mut answered = source.api_host().to_owned();
        let fetched = registry.retrying(
            deadline,
            || {
                let open_at = |offset| {
                    let body = registry.open_blob(source, digest, offset, deadline)?;
                    answered = body.host;
                    Ok((body.reader, body.starts_at))
                };
                cache.fetch_blob_teeing(held, digest, size, open_at, tee.as_deref_mut())
            },
            |e| matches!(e, CommitError::Cut(_)),
        );
        fetched.map_err(|e| commit_error(r, digest, &answered, e))
    }

    /// The documents a pull of `r` from `source` needs: a pin's from the cache
    /// when they are there (content-addressed manifests cannot be stale), else
    /// the source's.
    fn documents_to_pull(
        &self,
        r: &Reference,
        source: &Reference,
        selection: &Selection,
        deadline: Option<Instant>,
    ) -> Result<Documents> {
        let cached = match r.digest() {
            Some(pin) => selection.cached_documents(&self.cache, r, pin)?,
            None => None,
        };
        match cached {
            Some(docs) => {
                // The blob's request would be the first to meet a 401, under the
                // cache lock: ask for the manifest's headers first, so credential
                // helpers run and the token is kept out here. Whatever this says,
                // the blob's own request reports it again where it matters.
                let _ = self.registry.head_manifest(source, deadline);
                Ok(docs)
            }
            None => self.fetch_documents(source, selection, deadline),
        }
    }

    /// The digest tag `r` points to now: a HEAD, or a GET of the manifest when the
    /// registry does not answer HEAD (405, 501). `None` when it gives no digest.
    /// Asked of the mirrors first, as a pull would be.
    fn current_digest(&self, r: &Reference, deadline: Option<Instant>) -> Result<Option<Digest>> {
        self.mirrors
            .attempt(r, deadline, &self.events, |source, share| {
                match self.registry.head_manifest(source, share) {
                    Err(Error::Registry {
                        status: 405 | 501, ..
                    }) => Ok(Some(self.fetch_manifest(source, None, None, share)?.digest)),
                    other => other,
                }
            })
    }

    fn tag_is_fresh(&self, resolved_at: SystemTime) -> bool {
        match self.tag_policy {
            TagPolicy::CacheFirst => true,
            TagPolicy::Revalidate => false,
            TagPolicy::MaxAge(max) => SystemTime::now()
                .duration_since(resolved_at)
                .is_ok_and(|age| age <= max),
        }
    }

    /// What `r` resolves to as `selection` chooses, without downloading the layer.
    pub(crate) fn resolve(&self, r: &Reference, selection: &Selection) -> Result<Resolution> {
        let docs = self.documents(r, selection, true)?;
        let chosen = selection.choose(r, &docs)?;
        Ok(Resolution::new(r, chosen))
    }

    /// The manifests `r` leads to and the layer a pull with `selection` would
    /// take, or why none.
    pub(crate) fn inspect(&self, r: &Reference, selection: &Selection) -> Result<Inspection> {
        let docs = self.documents(r, selection, true)?;
        let index = match &docs.top.manifest {
            Manifest::Index(i) => Some(i.clone()),
            Manifest::Image(_) => None,
        };
        let decision = match selection.plan(r, &docs.image) {
            Ok(plan) => LayerDecision::taken(&plan),
            // Inspecting is how a person learns why a pull refuses: said, not failed.
            Err(Error::NoMatch { reason, .. }) => LayerDecision::refused(reason),
            Err(e) => return Err(e),
        };
        Ok(Inspection {
            reference: r.to_string(),
            manifest_digest: docs.top.digest.clone(),
            index,
            image_manifest_digest: docs.child.as_ref().unwrap_or(&docs.top).digest.clone(),
            manifest: docs.image,
            layer: decision,
        })
    }

    /// The documents for `r`: from the cache (a pin, or a tag when offline), the
    /// layouts (for a tag only when `layouts_for_tags`: vendoring asks the
    /// network), the mirrors, then the registry.
    pub(crate) fn documents(
        &self,
        r: &Reference,
        selection: &Selection,
        layouts_for_tags: bool,
    ) -> Result<Documents> {
        let online = self.online();
        let cached = match (r.digest(), online) {
            (Some(pin), _) => Some(pin.clone()),
            // As a pull: a layout naming the tag another digest (vendored again) wins.
            (None, false) => self
                .cache
                .read_ref(r)
                .map(|(d, _)| d)
                .filter(|d| self.layouts.tag_digest(r).is_none_or(|v| v == *d)),
            (None, true) => None,
        };
        if let Some(top) = cached {
            if let Some(docs) = selection.cached_documents(&self.cache, r, &top)? {
                return Ok(docs);
            }
        }
        if layouts_for_tags || r.digest().is_some() || !online {
            if let Some(docs) = self.layouts.find(r, selection, online, &self.events)? {
                return Ok(docs);
            }
        }
        if !online {
            return Err(Error::NotCached {
                reference: r.to_string(),
                cache: self.cache.root().to_path_buf(),
            });
        }
        let deadline = self.deadline();
        let fetch = |source: &Reference, share| self.fetch_documents(source, selection, share);
        self.mirrors.attempt(r, deadline, &self.events, fetch)
    }

    /// Writes blob `digest` of `r` into a layout: the cached file, else from a
    /// mirror or the registry, a mirror whose bytes fail being skipped.
    pub(crate) fn vendor_blob(
        &self,
        writer: &Writer,
        r: &Reference,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let cache = &self.cache;
        if cache.has_blob(digest, size) {
            let path = cache.blob_path(digest);
            let failed = |source| Error::Io {
                action: "read",
                path: path.clone(),
                source,
            };
            let file = std::fs::File::open(&path).map_err(failed)?;
            return writer.write_blob(r, digest, size, file, failed);
        }
        if !self.online() {
            return Err(Error::NotCached {
                reference: r.to_string(),
                cache: cache.root().to_path_buf(),
            });
        }
        let deadline = self.deadline();
        self.mirrors
            .attempt(r, deadline, &self.events, |source, _| {
                let body = self.registry.open_blob(source, digest, 0, deadline)?;
                let host = body.host;
                writer.write_blob(r, digest, size, body.reader, |e| Error::Transport {
                    host,
                    action: format!("downloading blob {digest} of {r}"),
                    source: Box::new(e),
                })
            })
    }

    /// GETs the top manifest and, for an index, the selected child.
    fn fetch_documents(
        &self,
        r: &Reference,
        selection: &Selection,
        deadline: Option<Instant>,
    ) -> Result<Documents> {
        let top = self.fetch_manifest(r, r.digest(), None, deadline)?;
        let walked = selection.walk(r, top, |digest, size| {
            self.fetch_manifest(r, Some(digest), Some(size), deadline)
                .map(Some)
        })?;
        // The registry's load never says "none": it answers or fails.
        walked.ok_or_else(|| Error::NotCached {
            reference: r.to_string(),
            cache: self.cache.root().to_path_buf(),
        })
    }

    /// GETs a manifest by `expected` digest (or the reference's tag) and checks it
    /// as [`Document::fetched`] does.
    fn fetch_manifest(
        &self,
        r: &Reference,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
        deadline: Option<Instant>,
    ) -> Result<Document> {
        let selector = expected.map_or_else(|| r.manifest_selector(), ToString::to_string);
        let fetched = self.registry.fetch_manifest(r, &selector, deadline)?;
        Document::fetched(
            fetched.bytes,
            fetched.content_type.as_deref(),
            expected,
            fetched.content_digest.as_deref(),
            expected_size,
        )
        .map_err(|rejected| match rejected {
            Rejected::Verify { expected, reason } => Error::Verification {
                what: "manifest",
                reference: r.to_string(),
                expected,
                reason,
            },
            Rejected::Invalid { digest, reason } => Error::InvalidManifest {
                reference: r.to_string(),
                digest,
                reason,
            },
        })
    }
}

/// Failures that say "can't tell now", after which a cached tag is still worth
/// serving: the registry or its token service is unreachable, overloaded, broken
/// or slower than the deadline. A real answer (the tag is gone, access is refused,
/// the manifest is invalid) is not one of them.
fn cannot_tell_now(e: &Error) -> bool {
    let unavailable = |status: u16| status == 408 || status == 429 || status >= 500;
    match e {
        Error::Transport { .. } | Error::Deadline { .. } => true,
        Error::Registry { status, .. } | Error::RedirectTarget { status, .. } => {
            unavailable(*status)
        }
        // No status: the token service could not be reached, or answered nonsense.
        Error::Token { reason, .. } => reason.status().is_none_or(unavailable),
        _ => false,
    }
}

/// The typed error for a failed blob download; `host` answered the request.
fn commit_error(r: &Reference, digest: &Digest, host: &str, e: CommitError) -> Error {
    match e {
        CommitError::Typed(e) => e,
        CommitError::Verify(reason) => Error::Verification {
            what: "blob",
            reference: r.to_string(),
            expected: digest.clone(),
            reason,
        },
        CommitError::Cut(io) => Error::Transport {
            host: host.to_owned(),
            action: format!("downloading blob {digest} of {r}"),
            source: Box::new(io),
        },
    }
}
