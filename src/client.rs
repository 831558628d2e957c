//! [`Client`]: assembles its parts from a [`Config`] and offers the pull,
//! resolve, inspect and vendor operations; the flows behind them are in
//! `pull.rs`. Settings live in [`ClientBuilder`](crate::ClientBuilder).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::cache::{Cache, Policy};
use crate::config::{ClientBuilder, Config};
use crate::error::Result;
use crate::export::{self, Destination};
use crate::layers::PullOptions;
use crate::pull::Parts;
use crate::reference::Reference;
use crate::registry::Registry;
use crate::resolve::Selection;
use crate::results::{Artifact, Inspection, Resolution};
use crate::source::layout::read::Layouts;
use crate::source::layout::write::{Vendored, vendor};

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
    inner: Arc<Parts>,
}

impl ClientBuilder {
    /// Builds the client. Does no I/O: directories are created on first write.
    ///
    /// # Errors
    /// - [`Error::Config`](crate::Error::Config) naming `ClientBuilder::cache_dir` or `FORGE_CACHE_DIR` when
    ///   the cache directory given is empty.
    /// - [`Error::Config`](crate::Error::Config) naming the variable when `FORGE_OCI_INSECURE_HOSTS`,
    ///   `FORGE_OFFLINE` or `CARGO_NET_OFFLINE` is set to something that is not UTF-8
    ///   (the offline ones not once [`network`](Self::network) is set), and when the
    ///   first proxy variable set in curl's order for `https://` or for `http://`
    ///   requests, or the first of `no_proxy` and `NO_PROXY` set, is (not once
    ///   [`proxy`](Self::proxy), or [`no_proxy`](Self::no_proxy), is set). A
    ///   `FORGE_CACHE_DIR` that is not UTF-8 is a path like any other, and is used.
    /// - [`Error::Config`](crate::Error::Config) naming `FORGE_OCI_MIRRORS` or `ClientBuilder::mirror` for
    ///   a mirror setting that cannot be read (or is not UTF-8), and naming
    ///   `ClientBuilder::oci_layout` for an empty layout path.
    /// - [`Error::NoCacheDir`](crate::Error::NoCacheDir) when no cache directory was set and the platform has none.
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
        let layouts = Layouts::new(config.layouts, config.max_manifest_size);
        // Anonymous tokens and challenges are kept in the cache for the next process.
        let registry = Registry::new(config.registry).with_token_files(cache.token_files());
        Client {
            inner: Arc::new(Parts {
                cache,
                selection,
                registry,
                network: config.network,
                tag_policy: config.tag_policy,
                events: config.events,
                pull_timeout: config.pull_timeout,
                mirrors: config.mirrors,
                layouts,
                jobs: config.jobs,
                max_extracted_size: config.max_extracted_size,
                max_config_size: config.max_manifest_size,
            }),
        }
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

    /// The `index.json` files of the layouts this client reads, for
    /// the build-script functions to have cargo watch them.
    pub(crate) fn layout_index_files(&self) -> Vec<std::path::PathBuf> {
        self.inner.layouts.index_files()
    }

    /// The cache this client pulls into, with its operations (list, prune, verify…).
    pub fn cache(&self) -> &Cache {
        &self.inner.cache
    }

    /// Parses `reference` and pulls it; see [`Client::pull_reference`].
    ///
    /// # Errors
    /// [`Error::InvalidReference`](crate::Error::InvalidReference), or as [`Client::pull_reference`].
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
    /// [`TagPolicy`](crate::TagPolicy). Otherwise the manifest is fetched (an index resolved to the
    /// client's platforms), the layer downloaded once across all processes,
    /// verified while streaming, and committed atomically. The layer is chosen as
    /// the README's "Artifact shapes" says; from a container image's filesystem
    /// layer the wasm module is extracted into the cache, once.
    ///
    /// # Errors
    /// Network, registry and verification errors; [`Error::NoMatch`](crate::Error::NoMatch) when no
    /// platform or layer fits, or several do ([`SelectError`](crate::manifest::SelectError)
    /// says which); [`Error::Extract`](crate::Error::Extract) when a container image's layer holds no
    /// usable module; [`Error::NotCached`](crate::Error::NotCached) offline and
    /// [`Error::ReadOnlyCache`](crate::Error::ReadOnlyCache) on a read-only cache when the reference is not
    /// cached; [`Error::Io`](crate::Error::Io) and [`Error::LockTimeout`](crate::Error::LockTimeout) from the cache.
    pub fn pull_reference(&self, r: &Reference) -> Result<Artifact> {
        self.inner.pull(r, &self.inner.selection, None)
    }

    /// [`Client::pull`] with this pull's own [`PullOptions`] (a layer chosen by
    /// title or digest, media types) over the client's.
    ///
    /// # Errors
    /// As [`Client::pull`].
    pub fn pull_with(&self, reference: &str, options: &PullOptions) -> Result<Artifact> {
        let selection = self.inner.selection.with(options);
        self.inner.pull(&reference.parse()?, &selection, None)
    }

    /// Pulls `reference` as [`Client::pull`] does and puts a copy at `dest`,
    /// as [`Artifact::copy_to`] would, without a second pass over the bytes: a
    /// download is written to a temporary file beside `dest` as it arrives, and
    /// that file is renamed over `dest` only once the blob verified and is in the
    /// cache. A cached blob is copied (a reflink where the file system can).
    /// Whatever fails, `dest` keeps its old content and no temporary file remains.
    ///
    /// # Errors
    /// As [`Client::pull`] and [`Artifact::copy_to`]; [`Error::DestinationIsCached`](crate::Error::DestinationIsCached)
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
                let artifact = self
                    .inner
                    .pull(&r, &self.inner.selection, Some(out.tee()))?;
                out.finish(artifact.path(), artifact.size())?;
                Ok(artifact)
            }
        }
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
    /// [`Event::SourceSkipped`](crate::Event::SourceSkipped) and the next source asked). Every blob is
    /// verified as it is written and renamed into place; `index.json` is replaced
    /// whole, once, at the end. Read the layout back with
    /// [`ClientBuilder::oci_layout`] or `FORGE_OCI_LAYOUTS`.
    ///
    /// # Errors
    /// [`Error::InvalidReference`](crate::Error::InvalidReference); as [`Client::resolve`] and [`Client::pull`];
    /// [`Error::Io`](crate::Error::Io) for the layout's files, and for an empty `dir` (pass `.` to
    /// mean the current directory); [`Error::DestinationIsCached`](crate::Error::DestinationIsCached)
    /// for a `dir` inside the cache. Nothing is recorded in `index.json`
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
            |r| self.inner.documents(r, &self.inner.selection, false),
            |writer, r, digest, size| self.inner.vendor_blob(writer, r, digest, size),
        )
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
        self.inner.resolve(r, &self.inner.selection)
    }

    /// [`Client::resolve`] with this call's own [`PullOptions`] over the client's.
    ///
    /// # Errors
    /// As [`Client::resolve`].
    pub fn resolve_with(&self, reference: &str, options: &PullOptions) -> Result<Resolution> {
        self.inner
            .resolve(&reference.parse()?, &self.inner.selection.with(options))
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
        self.inner.inspect(r, &self.inner.selection)
    }

    /// [`Client::inspect`] with this call's own [`PullOptions`] over the client's:
    /// the layer it reports is the one a [`Client::pull_with`] with them would take.
    ///
    /// # Errors
    /// As [`Client::resolve`].
    pub fn inspect_with(&self, reference: &str, options: &PullOptions) -> Result<Inspection> {
        self.inner
            .inspect(&reference.parse()?, &self.inner.selection.with(options))
    }
}
