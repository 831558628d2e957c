//! [`Client`]: joins the registry and the cache and applies the network and tag
//! policies. Settings live in [`ClientBuilder`](crate::ClientBuilder).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::cache::{Cache, CommitError, Policy, PullGuard};
use crate::config::{ClientBuilder, Config, Network, TagPolicy};
use crate::derive;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::event::{Event, Events};
use crate::layers::PullOptions;
use crate::manifest::{Document, Manifest, Rejected};
use crate::reference::Reference;
use crate::registry::Registry;
use crate::resolve::{Chosen, Documents, Selection};
use crate::results::{Artifact, Inspection, LayerDecision, Resolution};

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
    max_extracted_size: u64,
    /// Image configs are read whole, as manifests are: the same limit.
    max_config_size: u64,
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
            media_types_explicit: config.media_types_explicit,
            layer: config.layer,
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
        Client {
            inner: Arc::new(Inner {
                cache,
                selection,
                registry: Registry::new(config.registry),
                network: config.network,
                tag_policy: config.tag_policy,
                events: config.events,
                pull_timeout: config.pull_timeout,
                max_extracted_size: config.max_extracted_size,
                max_config_size: config.max_manifest_size,
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

    /// Makes sure the artifact is in the cache and returns where it is.
    ///
    /// A digest-pinned reference is answered from the cache with no network traffic
    /// when its manifest and layer are cached; a cached tag is treated by the
    /// [`TagPolicy`]. Otherwise the manifest is fetched (an index resolved to the
    /// client's platforms), the layer downloaded once across all processes,
    /// verified while streaming, and committed atomically. The layer is chosen as
    /// the README's "Artifact shapes" says; from a container image's filesystem
    /// layer the wasm module is extracted into the cache, once.
    ///
    /// # Errors
    /// Network, registry and verification errors; [`Error::NoMatch`] when no
    /// platform or layer fits, or several do ([`SelectError`](crate::manifest::SelectError)
    /// says which); [`Error::Extract`] when a container image's layer holds no
    /// usable module; [`Error::NotCached`] offline and
    /// [`Error::ReadOnlyCache`] on a read-only cache when the reference is not
    /// cached; [`Error::Io`] and [`Error::LockTimeout`] from the cache.
    pub fn pull_reference(&self, r: &Reference) -> Result<Artifact> {
        self.pull_selected(r, &self.inner.selection)
    }

    /// [`Client::pull`] with this pull's own [`PullOptions`] (a layer chosen by
    /// title or digest, media types) over the client's.
    ///
    /// # Errors
    /// As [`Client::pull`].
    pub fn pull_with(&self, reference: &str, options: &PullOptions) -> Result<Artifact> {
        self.pull_selected(&reference.parse()?, &self.inner.selection.with(options))
    }

    fn pull_selected(&self, r: &Reference, selection: &Selection) -> Result<Artifact> {
        let inner = &self.inner;
        let online = inner.network == Network::Online;
        let deadline = self.deadline();
        if let Some(pin) = r.digest() {
            if let Some(hit) = selection.cached(&inner.cache, r, pin)? {
                return self.hit(r, hit);
            }
        } else if let Some((digest, resolved_at)) = inner.cache.read_ref(r) {
            if let Some(hit) = selection.cached(&inner.cache, r, &digest)? {
                if !online || self.tag_is_fresh(resolved_at) {
                    return self.hit(r, hit);
                }
                match self.current_digest(r, deadline) {
                    Ok(Some(current)) if current == digest => {
                        inner.cache.touch_ref(r);
                        return self.hit(r, hit);
                    }
                    Ok(_) => {} // moved, or no digest to compare: pull it
                    Err(error) if cannot_tell_now(&error) => {
                        inner.events.emit(&Event::UsingCachedTag {
                            reference: r,
                            digest: &digest,
                            error: &error,
                        });
                        return self.hit(r, hit);
                    }
                    Err(error) => return Err(error),
                }
            }
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
        let docs = self.documents_to_pull(r, selection, deadline)?;
        inner.cache.with_pull_lock(r, |held| {
            self.pull_from_registry(held, r, selection, docs, deadline)
        })
    }

    /// The documents a pull of `r` needs: a pin's from the cache when they are
    /// there (content-addressed manifests cannot be stale), else the registry's.
    fn documents_to_pull(
        &self,
        r: &Reference,
        selection: &Selection,
        deadline: Option<Instant>,
    ) -> Result<Documents> {
        let inner = &self.inner;
        let cached = match r.digest() {
            Some(pin) => selection.cached_documents(&inner.cache, r, pin)?,
            None => None,
        };
        match cached {
            Some(docs) => {
                // The blob's request would be the first to meet a 401, under the
                // cache lock: ask for the manifest's headers first, so credential
                // helpers run and the token is kept out here. Whatever this says,
                // the blob's own request reports it again where it matters.
                let _ = inner.registry.head_manifest(r, deadline);
                Ok(docs)
            }
            None => self.fetch_documents(r, selection, deadline),
        }
    }

    /// The digest tag `r` points to now: a HEAD, or a GET of the manifest when the
    /// registry does not answer HEAD (405, 501). `None` when it gives no digest.
    fn current_digest(&self, r: &Reference, deadline: Option<Instant>) -> Result<Option<Digest>> {
        match self.inner.registry.head_manifest(r, deadline) {
            Err(Error::Registry {
                status: 405 | 501, ..
            }) => Ok(Some(self.fetch_manifest(r, None, None, deadline)?.digest)),
            other => other,
        }
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

    /// The artifact for a cache hit: the blob, or the module extracted from it
    /// (extracted now, from the cached layer, if it is not cached yet).
    fn hit(&self, r: &Reference, chosen: Chosen) -> Result<Artifact> {
        let cache = &self.inner.cache;
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
                    derive::module(
                        cache,
                        held,
                        r,
                        &chosen,
                        config,
                        self.inner.max_extracted_size,
                    )
                })?
            }
        };
        Ok(Artifact::extracted(derived, chosen, true))
    }

    /// Downloads the blob `docs` lead to and commits it, then the manifests, then
    /// the ref.
    fn pull_from_registry(
        &self,
        held: &PullGuard,
        r: &Reference,
        selection: &Selection,
        docs: Documents,
        deadline: Option<Instant>,
    ) -> Result<Artifact> {
        let cache = &self.inner.cache;
        let chosen = selection.choose(r, &docs)?;
        let (path, downloaded) =
            self.fetch_blob(held, r, &chosen.layer_digest, chosen.size, deadline)?;
        let derived = match &chosen.extract_with {
            None => None,
            Some((config, size)) => {
                // The image config says which file is the module; it is small, and
                // kept so that a later extraction needs no network.
                let limit = self.inner.max_config_size;
                if *size > limit {
                    return Err(Error::TooLarge {
                        what: "image config",
                        reference: r.to_string(),
                        limit,
                    });
                }
                self.fetch_blob(held, r, config, *size, deadline)?;
                Some(derive::module(
                    cache,
                    held,
                    r,
                    &chosen,
                    config,
                    self.inner.max_extracted_size,
                )?)
            }
        };
        // Manifests after the blob, the ref last: a ref never points at something missing.
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

    /// Downloads blob `digest` into the cache unless it is there; returns its path
    /// and whether this call downloaded it.
    fn fetch_blob(
        &self,
        held: &PullGuard,
        r: &Reference,
        digest: &Digest,
        size: u64,
        deadline: Option<Instant>,
    ) -> Result<(std::path::PathBuf, bool)> {
        let Inner {
            cache, registry, ..
        } = &*self.inner;
        // A connection dropped mid-download is retried, resuming from the partial
        // file; content that fails verification is not (the next try would be the same).
        // The host whose body was being read, named if reading it fails.
        let mut answered = r.api_host().to_owned();
        let fetched = registry.retrying(
            deadline,
            || {
                cache.fetch_blob(held, digest, size, |offset| {
                    let body = registry.open_blob(r, digest, offset, deadline)?;
                    answered = body.host;
                    Ok((body.reader, body.starts_at))
                })
            },
            |e| matches!(e, CommitError::Cut(_)),
        );
        fetched.map_err(|e| commit_error(r, digest, &answered, e))
    }

    /// What `reference` resolves to, without downloading the layer. A tag is asked
    /// of the registry (this is how to learn what it points to now); a digest pin,
    /// or anything when offline, is answered from the cache when it can be.
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
        self.resolve_selected(r, &self.inner.selection)
    }

    /// [`Client::resolve`] with this call's own [`PullOptions`] over the client's.
    ///
    /// # Errors
    /// As [`Client::resolve`].
    pub fn resolve_with(&self, reference: &str, options: &PullOptions) -> Result<Resolution> {
        self.resolve_selected(&reference.parse()?, &self.inner.selection.with(options))
    }

    fn resolve_selected(&self, r: &Reference, selection: &Selection) -> Result<Resolution> {
        let docs = self.documents(r, selection)?;
        let chosen = selection.choose(r, &docs)?;
        Ok(Resolution::new(r, chosen))
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
        self.inspect_selected(r, &self.inner.selection)
    }

    /// [`Client::inspect`] with this call's own [`PullOptions`] over the client's:
    /// the layer it reports is the one a [`Client::pull_with`] with them would take.
    ///
    /// # Errors
    /// As [`Client::resolve`].
    pub fn inspect_with(&self, reference: &str, options: &PullOptions) -> Result<Inspection> {
        self.inspect_selected(&reference.parse()?, &self.inner.selection.with(options))
    }

    fn inspect_selected(&self, r: &Reference, selection: &Selection) -> Result<Inspection> {
        let docs = self.documents(r, selection)?;
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

    /// The documents for [`Client::resolve`] and [`Client::inspect`].
    fn documents(&self, r: &Reference, selection: &Selection) -> Result<Documents> {
        let inner = &self.inner;
        let online = inner.network == Network::Online;
        let cached = match (r.digest(), online) {
            (Some(pin), _) => Some(pin.clone()),
            (None, false) => inner.cache.read_ref(r).map(|(d, _)| d),
            (None, true) => None,
        };
        if let Some(top) = cached {
            if let Some(docs) = selection.cached_documents(&inner.cache, r, &top)? {
                return Ok(docs);
            }
        }
        if !online {
            return Err(Error::NotCached {
                reference: r.to_string(),
                cache: inner.cache.root().to_path_buf(),
            });
        }
        self.fetch_documents(r, selection, self.deadline())
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
        Error::Token { status, .. } => status.is_none_or(unavailable),
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
