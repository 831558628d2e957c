//! [`Client`]: joins the registry and the cache and applies the network and tag
//! policies. Settings live in [`ClientBuilder`](crate::ClientBuilder).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::cache::{Cache, CommitError, Policy, PullGuard, Tee};
use crate::config::{ClientBuilder, Config, Network, TagPolicy};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::event::{Event, Events};
use crate::export::{self, Destination};
use crate::manifest::{Document, Manifest, Rejected};
use crate::reference::Reference;
use crate::registry::Registry;
use crate::resolve::{Chosen, Documents, Selection};
use crate::results::{Artifact, Inspection, Resolution};
use crate::source::layout::read::Layouts;
use crate::source::layout::write::{Vendored, Writer, vendor};
use crate::source::mirror::Mirrors;

/// Pulls artifacts through the cache. Cheap to clone (an `Arc` inside); clones
/// share connections and tokens, and the client is `Send + Sync`, so one client
/// can serve many threads.
///
/// ```no_run
/// let client = forge_oci::Client::builder()
///     .cache_dir("/tmp/plugins")
///     .on_event(|e| eprintln!("{e}"))
///     .build()?;
/// let artifact = client.pull("ghcr.io/owner/plugin:1.0")?;
/// println!("{} ({} bytes)", artifact.path().display(), artifact.size());
/// # Ok::<(), forge_oci::Error>(())
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// Everything a client holds, assembled from its [`Config`].
struct Inner {
    cache: Cache,
    selection: Selection,
    registry: Registry,
    network: Network,
    tag_policy: TagPolicy,
    events: Events,
    pull_timeout: Option<Duration>,
    mirrors: Mirrors,
    layouts: Layouts,
    jobs: usize,
}

impl ClientBuilder {
    /// Builds the client. Does no I/O: directories are created on first write.
    ///
    /// # Errors
    /// - [`Error::Config`] naming `ClientBuilder::cache_dir` or `FORGE_CACHE_DIR` when
    ///   the cache directory given is empty.
    /// - [`Error::Config`] naming the variable when `FORGE_OCI_INSECURE_HOSTS`,
    ///   `FORGE_OFFLINE` or `CARGO_NET_OFFLINE` is set to something that is not UTF-8
    ///   (the offline ones not once [`network`](Self::network) is set), and when the
    ///   first proxy variable set in curl's order for `https://` or for `http://`
    ///   requests, or the first of `no_proxy` and `NO_PROXY` set, is (not once
    ///   [`proxy`](Self::proxy), or [`no_proxy`](Self::no_proxy), is set). A
    ///   `FORGE_CACHE_DIR` that is not UTF-8 is a path like any other, and is used.
    /// - [`Error::Config`] naming `FORGE_OCI_MIRRORS` or `ClientBuilder::mirror` for
    ///   a mirror setting that cannot be read (or is not UTF-8), and naming
    ///   `ClientBuilder::oci_layout` for an empty layout path.
    /// - [`Error::NoCacheDir`] when no cache directory was set and the platform has none.
    pub fn build(self) -> Result<Client> {
        Ok(Client::from_config(self.into_config()?))
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Client")
            .field("cache", &i.cache)
            .field("network", &i.network)
            .field("tag_policy", &i.tag_policy)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Assembles a client's parts from its settings.
    fn from_config(config: Config) -> Client {
        let selection = Selection {
            platforms: config.platforms,
            layer_media_types: config.layer_media_types,
        };
        let policy = Policy {
            max_manifest_size: config.max_manifest_size,
            lock_timeout: config.lock_timeout,
        };
        let cache = Cache::new(
            config.root,
            policy,
            config.events.clone(),
            selection.clone().for_listing(),
        );
        let layouts = Layouts::new(config.layouts, config.max_manifest_size);
        // Anonymous tokens and challenges are kept in the cache for the next process.
        let registry = Registry::new(config.registry).with_token_files(cache.token_files());
        Client {
            inner: Arc::new(Inner {
                mirrors: config.mirrors,
                layouts,
                cache,
                selection,
                registry,
                network: config.network,
                tag_policy: config.tag_policy,
                events: config.events,
                pull_timeout: config.pull_timeout,
                jobs: config.jobs,
            }),
        }
    }

    /// When the operation starting now must be done by, if a pull timeout is set.
    fn deadline(&self) -> Option<Instant> {
        // A deadline past what an `Instant` can hold is no deadline.
        let now = Instant::now();
        self.inner.pull_timeout.and_then(|t| now.checked_add(t))
    }

    /// A builder with the defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client with the defaults.
    ///
    /// # Errors
    /// As [`ClientBuilder::build`].
    pub fn new() -> Result<Client> {
        Client::builder().build()
    }

    /// The cache this client pulls into, with its operations (list, prune, verify…).
    pub fn cache(&self) -> &Cache {
        &self.inner.cache
    }

    /// Parses `reference` and pulls it; see [`Client::pull_reference`].
    ///
    /// # Errors
    /// [`Error::InvalidReference`], or as [`Client::pull_reference`].
    pub fn pull(&self, reference: &str) -> Result<Artifact> {
        self.pull_reference(&reference.parse()?)
    }

    /// Pulls several references at once, as [`Client::pull`] pulls each, on at
    /// most [`ClientBuilder::jobs`] threads (4 by default) that share this
    /// client's connections and tokens. The results come in the order of
    /// `references`, one for each: a reference that fails does not stop the
    /// others. Two references that lead to the same blob download it once.
    ///
    /// ```no_run
    /// let client = forge_oci::Client::new()?;
    /// let refs = ["ghcr.io/owner/a:1.0", "ghcr.io/owner/b:2.1"];
    /// for (r, result) in refs.iter().zip(client.pull_all(&refs)) {
    ///     match result {
    ///         Ok(artifact) => println!("{r}: {}", artifact.path().display()),
    ///         Err(e) => eprintln!("{r}: {e}"),
    ///     }
    /// }
    /// # Ok::<(), forge_oci::Error>(())
    /// ```
    pub fn pull_all<S: AsRef<str> + Sync>(&self, references: &[S]) -> Vec<Result<Artifact>> {
        crate::parallel::map_bounded(references, self.inner.jobs, |r| self.pull(r.as_ref()))
    }

    /// Makes sure the artifact is in the cache and returns where it is.
    ///
    /// A digest-pinned reference is answered from the cache with no network traffic
    /// when its manifest and layer are cached; a cached tag is treated by the
    /// [`TagPolicy`]. Otherwise the manifest is fetched (an index resolved to the
    /// client's platforms), the layer downloaded once across all processes,
    /// verified while streaming, and committed atomically.
    ///
    /// # Errors
    /// Network, registry and verification errors; [`Error::NoMatch`] when no
    /// platform or layer fits; [`Error::NotCached`] offline and
    /// [`Error::ReadOnlyCache`] on a read-only cache when the reference is not
    /// cached; [`Error::Io`] and [`Error::LockTimeout`] from the cache.
    pub fn pull_reference(&self, r: &Reference) -> Result<Artifact> {
        self.pull_teeing(r, None)
    }

    /// Pulls `reference` as [`Client::pull`] does and puts a copy at `dest`,
    /// as [`Artifact::copy_to`] would, without a second pass over the bytes: a
    /// download is written to a temporary file beside `dest` as it arrives, and
    /// that file is renamed over `dest` only once the blob verified and is in the
    /// cache. A cached blob is copied (a reflink where the file system can).
    /// Whatever fails, `dest` keeps its old content and no temporary file remains.
    ///
    /// # Errors
    /// As [`Client::pull`] and [`Artifact::copy_to`]; [`Error::DestinationIsCached`]
    /// also for any path inside the cache, checked before any request.
    pub fn pull_to(&self, reference: &str, dest: &Path) -> Result<Artifact> {
        let r: Reference = reference.parse()?;
        match export::prepare(Some(self.inner.cache.root()), dest)? {
            Destination::Into(_) => {
                let artifact = self.pull_reference(&r)?;
                artifact.copy_to(dest)?;
                Ok(artifact)
            }
            Destination::Replace(mut out) => {
                let artifact = self.pull_teeing(&r, Some(out.tee()))?;
                out.finish(artifact.path(), artifact.size())?;
                Ok(artifact)
            }
        }
    }

    /// [`Client::pull_reference`], writing the bytes into `tee` too when they
    /// are downloaded.
    fn pull_teeing(&self, r: &Reference, tee: Option<&mut Tee>) -> Result<Artifact> {
        let inner = &self.inner;
        let online = inner.network == Network::Online;
        let deadline = self.deadline();
        if let Some(pin) = r.digest() {
            if let Some(hit) = inner.selection.cached(&inner.cache, r, pin)? {
                return Ok(self.hit(hit));
            }
        } else if let Some((digest, resolved_at)) = inner.cache.read_ref(r) {
            if let Some(hit) = inner.selection.cached(&inner.cache, r, &digest)? {
                if !online || self.tag_is_fresh(resolved_at) {
                    return Ok(self.hit(hit));
                }
                match self.current_digest(r, deadline) {
                    Ok(Some(current)) if current == digest => {
                        inner.cache.touch_ref(r);
                        return Ok(self.hit(hit));
                    }
                    Ok(_) => {} // moved, or no digest to compare: pull it
                    Err(error) if cannot_tell_now(&error) => {
                        inner.events.emit(&Event::UsingCachedTag {
                            reference: r,
                            digest: &digest,
                            error: &error,
                        });
                        return Ok(self.hit(hit));
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        let (cache, selection, events) = (&inner.cache, &inner.selection, &inner.events);
        if let Some(artifact) = inner.layouts.pull(cache, selection, r, online, events)? {
            return Ok(artifact);
        }
        if !online {
            return Err(Error::NotCached {
                reference: r.to_string(),
                cache: inner.cache.root().to_path_buf(),
            });
        }
        // The manifests come first and outside the cache-wide lock: their requests
        // are where a 401 runs credential helpers, and prune and clear must not
        // wait on those. A cache that cannot take the result is said first.
        inner.cache.check_writable(r)?;
        let mut tee = tee;
        // A mirror's share of the time bounds its answer (the manifests); the
        // blob of one that answered has until the pull's deadline.
        inner.mirrors.attempt(r, deadline, events, |source, share| {
            let docs = self.documents_to_pull(r, source, share)?;
            inner.cache.with_pull_lock(r, |held| {
                self.pull_from_registry(held, r, source, docs, deadline, tee.as_deref_mut())
            })
        })
    }

    /// Writes `references` into the OCI image layout at `dir` (made if missing,
    /// else updated): for each, its top manifest or index, the manifest selected
    /// from an index, and that manifest's config and every layer, under
    /// `blobs/sha256/`; and an `index.json` entry named by the full canonical
    /// reference in `org.opencontainers.image.ref.name` and
    /// `io.containerd.image.name`. A reference vendored before is replaced (a
    /// moved tag leaves one entry). Tags are asked of the network (mirrors, then
    /// the registry); blobs come from the cache when it has them, else as a pull
    /// gets them (a mirror whose blob fails to arrive or verify is skipped with
    /// [`Event::SourceSkipped`] and the next source asked). Every blob is
    /// verified as it is written and renamed into place; `index.json` is replaced
    /// whole, once, at the end. Read the layout back with
    /// [`ClientBuilder::oci_layout`] or `FORGE_OCI_LAYOUTS`.
    ///
    /// # Errors
    /// [`Error::InvalidReference`]; as [`Client::resolve`] and [`Client::pull`];
    /// [`Error::Io`] for the layout's files, and for an empty `dir` (pass `.` to
    /// mean the current directory); [`Error::DestinationIsCached`] for a `dir`
    /// inside the cache. Nothing is recorded in `index.json`
    /// unless every reference was written (blobs already written stay: they are
    /// whole and verified). Two runs on one directory at once take turns (the
    /// directory is locked while one writes), so each keeps the other's entries,
    /// and the temporary files of a run that was killed are removed by the next;
    /// where the file system has no locks, each keeps the entries it read and
    /// the later `index.json` wins.
    pub fn vendor<S: AsRef<str>>(
        &self,
        dir: impl AsRef<Path>,
        references: &[S],
    ) -> Result<Vec<Vendored>> {
        let refs = references
            .iter()
            .map(|s| s.as_ref().parse::<Reference>())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        vendor(
            dir.as_ref(),
            self.inner.cache.root(),
            &refs,
            |r| self.documents_from(r, false),
            |writer, r, digest, size| self.vendor_blob(writer, r, digest, size),
        )
    }

    /// Writes blob `digest` of `r` into a layout: the cached file, else from a
    /// mirror or the registry, a mirror whose bytes fail being skipped.
    fn vendor_blob(
        &self,
        writer: &Writer,
        r: &Reference,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let cache = &self.inner.cache;
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
        if self.inner.network == Network::Offline {
            return Err(Error::NotCached {
                reference: r.to_string(),
                cache: cache.root().to_path_buf(),
            });
        }
        let deadline = self.deadline();
        let events = &self.inner.events;
        self.inner
            .mirrors
            .attempt(r, deadline, events, |source, _| {
                let body = self.inner.registry.open_blob(source, digest, 0, deadline)?;
                let host = body.host;
                writer.write_blob(r, digest, size, body.reader, |e| Error::Transport {
                    host,
                    action: format!("downloading blob {digest} of {r}"),
                    source: Box::new(e),
                })
            })
    }

    /// The documents a pull of `r` needs: a pin's from the cache when they are
    /// there (content-addressed manifests cannot be stale), else the registry's.
    fn documents_to_pull(
        &self,
        r: &Reference,
        source: &Reference,
        deadline: Option<Instant>,
    ) -> Result<Documents> {
        let inner = &self.inner;
        let cached = match r.digest() {
            Some(pin) => inner.selection.cached_documents(&inner.cache, r, pin)?,
            None => None,
        };
        match cached {
            Some(docs) => {
                // The blob's request would be the first to meet a 401, under the
                // cache lock: ask for the manifest's headers first, so credential
                // helpers run and the token is kept out here. Whatever this says,
                // the blob's own request reports it again where it matters.
                let _ = inner.registry.head_manifest(source, deadline);
                Ok(docs)
            }
            None => self.fetch_documents(source, deadline),
        }
    }

    /// The digest tag `r` points to now: a HEAD, or a GET of the manifest when the
    /// registry does not answer HEAD (405, 501). `None` when it gives no digest.
    /// Asked of the mirrors first, as a pull would be.
    fn current_digest(&self, r: &Reference, deadline: Option<Instant>) -> Result<Option<Digest>> {
        let inner = &self.inner;
        inner
            .mirrors
            .attempt(r, deadline, &inner.events, |source, share| {
                match inner.registry.head_manifest(source, share) {
                    Err(Error::Registry {
                        status: 405 | 501, ..
                    }) => Ok(Some(self.fetch_manifest(source, None, None, share)?.digest)),
                    other => other,
                }
            })
    }

    fn tag_is_fresh(&self, resolved_at: SystemTime) -> bool {
        match self.inner.tag_policy {
            TagPolicy::CacheFirst => true,
            TagPolicy::Revalidate => false,
            TagPolicy::MaxAge(max) => SystemTime::now()
                .duration_since(resolved_at)
                .is_ok_and(|age| age <= max),
        }
    }

    fn hit(&self, resolved: Chosen) -> Artifact {
        let path = self.inner.cache.blob_path(&resolved.layer_digest);
        Artifact::new(path, resolved, true)
    }

    /// Downloads the blob `docs` lead to and commits it, then the manifests, then
    /// the ref.
    fn pull_from_registry(
        &self,
        held: &PullGuard,
        r: &Reference,
        source: &Reference,
        docs: Documents,
        deadline: Option<Instant>,
        mut tee: Option<&mut Tee>,
    ) -> Result<Artifact> {
        let Inner {
            cache,
            registry,
            selection,
            ..
        } = &*self.inner;
        let chosen = selection.choose(r, &docs)?;
        let layer_digest = chosen.layer_digest.clone();
        // A connection dropped mid-download is retried, resuming from the partial
        // file; content that fails verification is not (the next try would be the same).
        // The host whose body was being read, named if reading it fails.
        let mut answered = source.api_host().to_owned();
        let fetched = registry.retrying(
            deadline,
            || {
                let open_at = |offset| {
                    let body = registry.open_blob(source, &layer_digest, offset, deadline)?;
                    answered = body.host;
                    Ok((body.reader, body.starts_at))
                };
                cache.fetch_blob_teeing(
                    held,
                    &layer_digest,
                    chosen.size,
                    open_at,
                    tee.as_deref_mut(),
                )
            },
            |e| matches!(e, CommitError::Cut(_)),
        );
        let (path, downloaded) =
            fetched.map_err(|e| commit_error(r, &layer_digest, &answered, e))?;
        // Manifests after the blob, the ref last: a ref never points at something missing.
        if let Some(child) = &docs.child {
            cache.store_bytes(held, &child.digest, &child.bytes)?;
        }
        cache.store_bytes(held, &docs.top.digest, &docs.top.bytes)?;
        cache.write_ref(held, r, &docs.top.digest)?;
        Ok(Artifact::new(path, chosen, !downloaded))
    }

    /// What `reference` resolves to, without downloading the layer. A tag is asked
    /// of the OCI image layouts configured first, then of the mirrors and the
    /// registry (without layouts, this is how to learn what it points to now: a
    /// layout answers with the digest it was vendored at); a digest pin, or
    /// anything when offline, is answered from the cache when it can be.
    ///
    /// # Errors
    /// As [`Client::pull`], without the blob's own download errors.
    pub fn resolve(&self, reference: &str) -> Result<Resolution> {
        self.resolve_reference(&reference.parse()?)
    }

    /// [`Client::resolve`] for a parsed reference, as [`Client::pull_reference`]
    /// is for [`Client::pull`].
    ///
    /// # Errors
    /// As [`Client::resolve`].
    pub fn resolve_reference(&self, r: &Reference) -> Result<Resolution> {
        let docs = self.documents(r)?;
        let chosen = self.inner.selection.choose(r, &docs)?;
        Ok(Resolution {
            reference: r.to_string(),
            manifest_digest: chosen.manifest_digest,
            layer_digest: chosen.layer_digest,
            media_type: chosen.media_type,
            size: chosen.size,
        })
    }

    /// The manifest `reference` leads to, and the index it was selected from if
    /// there is one; from the registry or the cache as [`Client::resolve`] decides.
    ///
    /// # Errors
    /// As [`Client::resolve`].
    pub fn inspect(&self, reference: &str) -> Result<Inspection> {
        self.inspect_reference(&reference.parse()?)
    }

    /// [`Client::inspect`] for a parsed reference.
    ///
    /// # Errors
    /// As [`Client::resolve`].
    pub fn inspect_reference(&self, r: &Reference) -> Result<Inspection> {
        let docs = self.documents(r)?;
        let index = match &docs.top.manifest {
            Manifest::Index(i) => Some(i.clone()),
            Manifest::Image(_) => None,
        };
        Ok(Inspection {
            reference: r.to_string(),
            manifest_digest: docs.top.digest.clone(),
            index,
            image_manifest_digest: docs.child.as_ref().unwrap_or(&docs.top).digest.clone(),
            manifest: docs.image,
        })
    }

    /// The documents for [`Client::resolve`] and [`Client::inspect`].
    fn documents(&self, r: &Reference) -> Result<Documents> {
        self.documents_from(r, true)
    }

    /// The documents for `r`: from the cache (a pin, or a tag when offline), the
    /// layouts (for a tag only when `layouts_for_tags`: vendoring asks the
    /// network), the mirrors, then the registry.
    fn documents_from(&self, r: &Reference, layouts_for_tags: bool) -> Result<Documents> {
        let inner = &self.inner;
        let online = inner.network == Network::Online;
        let cached = match (r.digest(), online) {
            (Some(pin), _) => Some(pin.clone()),
            (None, false) => inner.cache.read_ref(r).map(|(d, _)| d),
            (None, true) => None,
        };
        if let Some(top) = cached {
            if let Some(docs) = inner.selection.cached_documents(&inner.cache, r, &top)? {
                return Ok(docs);
            }
        }
        if layouts_for_tags || r.digest().is_some() || !online {
            let found = inner
                .layouts
                .find(r, &inner.selection, online, &inner.events)?;
            if let Some(docs) = found {
                return Ok(docs);
            }
        }
        if !online {
            return Err(Error::NotCached {
                reference: r.to_string(),
                cache: inner.cache.root().to_path_buf(),
            });
        }
        let deadline = self.deadline();
        let fetch = |source: &Reference, share| self.fetch_documents(source, share);
        inner.mirrors.attempt(r, deadline, &inner.events, fetch)
    }

    /// GETs the top manifest and, for an index, the selected child.
    fn fetch_documents(&self, r: &Reference, deadline: Option<Instant>) -> Result<Documents> {
        let top = self.fetch_manifest(r, r.digest(), None, deadline)?;
        let walked = self.inner.selection.walk(r, top, |digest, size| {
            self.fetch_manifest(r, Some(digest), Some(size), deadline)
                .map(Some)
        })?;
        // The registry's load never says "none": it answers or fails.
        walked.ok_or_else(|| Error::NotCached {
            reference: r.to_string(),
            cache: self.inner.cache.root().to_path_buf(),
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
        let fetched = self.inner.registry.fetch_manifest(r, &selector, deadline)?;
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
