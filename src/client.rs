//! [`Client`] and its builder: joins the registry and the cache, and holds the
//! policies (platforms, media types, offline).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::cache::{Cache, CommitError};
use crate::digest::{Digest, VerifyError};
use crate::error::{Error, Result};
use crate::manifest::{
    DEFAULT_LAYER_MEDIA_TYPES, Descriptor, ImageIndex, ImageManifest, Manifest, ParseManifestError,
    Platform, SelectError, select_layer, select_platform,
};
use crate::reference::Reference;
use crate::registry::{Registry, RegistryConfig};

const CACHE_SUBDIR: [&str; 2] = ["openapi-forge", "plugins"];

/// Whether the client may use the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// Ask the registry when the cache cannot answer.
    #[default]
    Online,
    /// Never open a connection; a reference that is not cached is an error.
    Offline,
}

/// Something worth telling a person about while a pull runs. Delivered to the
/// callback given to [`ClientBuilder::on_event`]; silent by default.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// Another process holds a lock this pull needs; the pull blocks until it is released.
    WaitingForLock {
        /// The lock file.
        path: &'a Path,
    },
}

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::WaitingForLock { path } => {
                write!(f, "waiting for file lock on {}", path.display())
            }
        }
    }
}

type EventCallback = Arc<dyn Fn(&Event<'_>) + Send + Sync>;

/// The result of a pull: one verified blob in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    path: PathBuf,
    layer_digest: Digest,
    manifest_digest: Digest,
    media_type: String,
    size: u64,
    from_cache: bool,
}

impl Artifact {
    /// The blob's path in the cache. Treat it as read-only: it is shared.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The digest of the layer that was selected.
    pub fn layer_digest(&self) -> &Digest {
        &self.layer_digest
    }

    /// The digest the reference resolved to: the index when there is one, else
    /// the manifest. Pin this (`name@digest`) for reproducible builds.
    pub fn manifest_digest(&self) -> &Digest {
        &self.manifest_digest
    }

    /// The layer's media type, as the manifest gives it.
    pub fn media_type(&self) -> &str {
        &self.media_type
    }

    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the pull was answered from the cache with no network traffic.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }

    /// Reads the whole blob.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read.
    pub fn read(&self) -> Result<Vec<u8>> {
        std::fs::read(&self.path).map_err(|e| Error::io("read", &self.path, e))
    }
}

/// Configures a [`Client`]. Start from [`Client::builder`]; every setter overrides
/// the default, which for some settings comes from the environment.
#[must_use]
pub struct ClientBuilder {
    cache_dir: Option<PathBuf>,
    insecure_hosts: Vec<String>,
    layer_media_types: Vec<String>,
    platforms: Vec<Platform>,
    network: Network,
    connect_timeout: Duration,
    read_timeout: Duration,
    max_manifest_size: u64,
    retries: u32,
    on_event: Option<EventCallback>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("cache_dir", &self.cache_dir)
            .field("insecure_hosts", &self.insecure_hosts)
            .field("layer_media_types", &self.layer_media_types)
            .field("platforms", &self.platforms)
            .field("network", &self.network)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("max_manifest_size", &self.max_manifest_size)
            .field("retries", &self.retries)
            .field("on_event", &self.on_event.as_ref().map(|_| "Fn(&Event)"))
            .finish()
    }
}

impl Default for ClientBuilder {
    /// The defaults, with `FORGE_CACHE_DIR`, `FORGE_OCI_INSECURE_HOSTS`,
    /// `FORGE_OFFLINE` and `CARGO_NET_OFFLINE` read from the environment.
    fn default() -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let is_on = |v: String| {
            !matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "0" | "false" | "no" | "off"
            )
        };
        let offline =
            env("FORGE_OFFLINE").is_some_and(is_on) || env("CARGO_NET_OFFLINE").is_some_and(is_on);
        ClientBuilder {
            cache_dir: env("FORGE_CACHE_DIR")
                .map(|d| CACHE_SUBDIR.iter().fold(PathBuf::from(d), |p, s| p.join(s))),
            insecure_hosts: env("FORGE_OCI_INSECURE_HOSTS")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|h| !h.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            layer_media_types: DEFAULT_LAYER_MEDIA_TYPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            platforms: Platform::wasm_defaults(),
            network: if offline {
                Network::Offline
            } else {
                Network::Online
            },
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            max_manifest_size: 4 << 20,
            retries: 3,
            on_event: None,
        }
    }
}

impl ClientBuilder {
    /// The cache root itself (blobs go in `<dir>/blobs`). Defaults to
    /// `$FORGE_CACHE_DIR/openapi-forge/plugins`, else `<user cache dir>/openapi-forge/plugins`.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Adds a `host[:port]` reached over plain HTTP. A bare host matches any port.
    /// Defaults to the comma-separated list in `FORGE_OCI_INSECURE_HOSTS`.
    pub fn insecure_host(mut self, host: impl Into<String>) -> Self {
        self.insecure_hosts.push(host.into());
        self
    }

    /// The layer media types to accept, most preferred first. Defaults to
    /// [`DEFAULT_LAYER_MEDIA_TYPES`](crate::manifest::DEFAULT_LAYER_MEDIA_TYPES).
    pub fn layer_media_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.layer_media_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// The platforms to pick from an index, most preferred first. Defaults to
    /// [`Platform::wasm_defaults`].
    pub fn platforms(mut self, platforms: impl IntoIterator<Item = Platform>) -> Self {
        self.platforms = platforms.into_iter().collect();
        self
    }

    /// Online or offline. Defaults to offline when `FORGE_OFFLINE` or
    /// `CARGO_NET_OFFLINE` is set to anything but `0`/`false`, else online.
    pub fn network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// How long to wait for a TCP (and TLS) connection. Defaults to 30 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a response or a body may stall without a byte arriving. Defaults to 60 s.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// The largest manifest or index accepted, in bytes. Defaults to 4 MiB.
    pub fn max_manifest_size(mut self, bytes: u64) -> Self {
        self.max_manifest_size = bytes;
        self
    }

    /// Retries after a connection failure or a 429/502/503/504. Defaults to 3.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Called with each [`Event`], e.g. to print "waiting for file lock on …".
    pub fn on_event(mut self, f: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.on_event = Some(Arc::new(f));
        self
    }

    /// Builds the client. Does no I/O: directories are created on first write.
    ///
    /// # Errors
    /// [`Error::NoCacheDir`] when no cache directory was set and the platform has none.
    pub fn build(self) -> Result<Client> {
        let root = match self.cache_dir {
            Some(d) => d,
            None => {
                let base = dirs::cache_dir().ok_or(Error::NoCacheDir)?;
                CACHE_SUBDIR.iter().fold(base, |p, s| p.join(s))
            }
        };
        let registry = Registry::new(RegistryConfig {
            insecure_hosts: self.insecure_hosts,
            connect_timeout: self.connect_timeout,
            read_timeout: self.read_timeout,
            max_manifest_size: self.max_manifest_size,
            retries: self.retries,
        });
        Ok(Client {
            inner: Arc::new(Inner {
                cache: Cache::new(root),
                registry,
                layer_media_types: self.layer_media_types,
                platforms: self.platforms,
                network: self.network,
                max_manifest_size: self.max_manifest_size,
                on_event: self.on_event,
            }),
        })
    }
}

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

struct Inner {
    cache: Cache,
    registry: Registry,
    layer_media_types: Vec<String>,
    platforms: Vec<Platform>,
    network: Network,
    max_manifest_size: u64,
    on_event: Option<EventCallback>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Client")
            .field("cache_dir", &i.cache.root())
            .field("network", &i.network)
            .field("platforms", &i.platforms)
            .field("layer_media_types", &i.layer_media_types)
            .finish_non_exhaustive()
    }
}

/// A manifest fetched from the registry and checked against its digest.
struct Fetched {
    digest: Digest,
    bytes: Vec<u8>,
    manifest: Manifest,
}

impl Client {
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

    /// The cache root.
    pub fn cache_dir(&self) -> &Path {
        self.inner.cache.root()
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
    /// A digest-pinned reference, or a tag already in the cache, is answered with
    /// no network traffic when its manifest and layer are cached. Otherwise the
    /// manifest is fetched (an index resolved to the client's platforms), the layer
    /// downloaded once across all processes, verified while streaming, and
    /// committed atomically.
    ///
    /// # Errors
    /// Network, registry and verification errors, [`Error::NoMatch`] when no
    /// platform or layer fits, [`Error::NotCached`] offline, [`Error::Io`] for the cache.
    pub fn pull_reference(&self, reference: &Reference) -> Result<Artifact> {
        if let Some(hit) = self.cached_artifact(reference)? {
            return Ok(hit);
        }
        let inner = &self.inner;
        if inner.network == Network::Offline {
            return Err(Error::NotCached {
                reference: reference.to_string(),
                cache: inner.cache.root().to_path_buf(),
            });
        }
        let on_wait = |path: &Path| self.emit(&Event::WaitingForLock { path });
        inner
            .cache
            .with_pull_lock(&on_wait, || self.pull_from_registry(reference))
    }

    fn emit(&self, event: &Event<'_>) {
        if let Some(f) = &self.inner.on_event {
            f(event);
        }
    }

    fn cached_artifact(&self, r: &Reference) -> Result<Option<Artifact>> {
        let cache = &self.inner.cache;
        let top = match r.digest() {
            Some(d) => d.clone(),
            None => match cache.read_ref(r) {
                Some(d) => d,
                None => return Ok(None),
            },
        };
        let image = match self.cached_manifest(&top)? {
            Some(Manifest::Image(m)) => m,
            Some(Manifest::Index(index)) => {
                let child = descriptor_digest(r, self.select_platform(r, &index)?)?;
                match self.cached_manifest(&child)? {
                    Some(Manifest::Image(m)) => m,
                    _ => return Ok(None),
                }
            }
            None => return Ok(None),
        };
        let layer = self.select_layer(r, &image)?;
        let digest = descriptor_digest(r, layer)?;
        if !cache.has_blob(&digest) {
            return Ok(None);
        }
        Ok(Some(self.artifact(layer, digest, top, true)))
    }

    /// A cached manifest that still parses; anything else is a miss the registry can fill.
    fn cached_manifest(&self, digest: &Digest) -> Result<Option<Manifest>> {
        let bytes = self
            .inner
            .cache
            .read_manifest(digest, self.inner.max_manifest_size)?;
        Ok(bytes.and_then(|b| Manifest::from_slice(&b, None).ok()))
    }

    fn pull_from_registry(&self, r: &Reference) -> Result<Artifact> {
        let inner = &self.inner;
        let top = self.fetch_manifest(r, r.digest(), None)?;
        let (image, child) = match &top.manifest {
            Manifest::Image(m) => (m.clone(), None),
            Manifest::Index(index) => {
                let desc = self.select_platform(r, index)?;
                let digest = descriptor_digest(r, desc)?;
                let child = self.fetch_manifest(r, Some(&digest), Some(desc.size))?;
                match &child.manifest {
                    Manifest::Image(m) => (m.clone(), Some(child)),
                    Manifest::Index(_) => {
                        return Err(Error::InvalidManifest {
                            reference: r.to_string(),
                            digest,
                            reason: ParseManifestError::nested_index(),
                        });
                    }
                }
            }
        };
        let layer = self.select_layer(r, &image)?;
        let digest = descriptor_digest(r, layer)?;
        let on_wait = |path: &Path| self.emit(&Event::WaitingForLock { path });
        inner
            .cache
            .fetch_blob(&digest, layer.size, &on_wait, || {
                inner.registry.open_blob(r, &digest)
            })
            .map_err(|e| self.commit_error(r, &digest, e))?;
        // Manifests after the blob, the tag last: a ref never points at something missing.
        if let Some(child) = &child {
            inner.cache.store_bytes(&child.digest, &child.bytes)?;
        }
        inner.cache.store_bytes(&top.digest, &top.bytes)?;
        if r.digest().is_none() {
            inner.cache.write_ref(r, &top.digest)?;
        }
        Ok(self.artifact(layer, digest, top.digest, false))
    }

    /// GETs a manifest by `expected` digest (or the reference's tag) and checks it:
    /// against `expected` when given, else against `Docker-Content-Digest` when the
    /// registry sends a sha256 one.
    fn fetch_manifest(
        &self,
        r: &Reference,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<Fetched> {
        let selector = expected.map_or_else(|| r.manifest_selector(), ToString::to_string);
        let fetched = self.inner.registry.fetch_manifest(r, &selector)?;
        let actual = Digest::of(&fetched.bytes);
        let claimed = match expected {
            Some(d) => Some(d.clone()),
            None => fetched
                .content_digest
                .as_deref()
                .and_then(|h| h.parse().ok()),
        };
        let mismatch = |reason| Error::Verification {
            what: "manifest",
            reference: r.to_string(),
            expected: claimed.clone().unwrap_or_else(|| actual.clone()),
            reason,
        };
        if let Some(want) = &claimed {
            if *want != actual {
                return Err(mismatch(VerifyError::DigestMismatch {
                    expected: want.clone(),
                    actual: actual.clone(),
                }));
            }
        }
        let len = fetched.bytes.len() as u64;
        match expected_size {
            Some(size) if len < size => {
                return Err(mismatch(VerifyError::TooShort {
                    expected: size,
                    actual: len,
                }));
            }
            Some(size) if len > size => {
                return Err(mismatch(VerifyError::TooLong { expected: size }));
            }
            _ => {}
        }
        let manifest = Manifest::from_slice(&fetched.bytes, fetched.content_type.as_deref())
            .map_err(|reason| Error::InvalidManifest {
                reference: r.to_string(),
                digest: actual.clone(),
                reason,
            })?;
        Ok(Fetched {
            digest: actual,
            bytes: fetched.bytes,
            manifest,
        })
    }

    fn select_platform<'a>(&self, r: &Reference, index: &'a ImageIndex) -> Result<&'a Descriptor> {
        select_platform(index, &self.inner.platforms).map_err(|reason| no_match(r, reason))
    }

    fn select_layer<'a>(&self, r: &Reference, image: &'a ImageManifest) -> Result<&'a Descriptor> {
        select_layer(image, &self.inner.layer_media_types).map_err(|reason| no_match(r, reason))
    }

    fn artifact(
        &self,
        layer: &Descriptor,
        layer_digest: Digest,
        manifest_digest: Digest,
        from_cache: bool,
    ) -> Artifact {
        Artifact {
            path: self.inner.cache.blob_path(&layer_digest),
            layer_digest,
            manifest_digest,
            media_type: layer.media_type.clone(),
            size: layer.size,
            from_cache,
        }
    }

    fn commit_error(&self, r: &Reference, digest: &Digest, e: CommitError) -> Error {
        match e {
            CommitError::Typed(e) => e,
            CommitError::Read(io) => {
                match io.get_ref().and_then(|e| e.downcast_ref::<VerifyError>()) {
                    Some(v) => Error::Verification {
                        what: "blob",
                        reference: r.to_string(),
                        expected: digest.clone(),
                        reason: v.clone(),
                    },
                    None => Error::Transport {
                        host: r.api_host().to_owned(),
                        action: format!("downloading blob {digest} of {r}"),
                        source: Box::new(io),
                    },
                }
            }
        }
    }
}

fn no_match(r: &Reference, reason: SelectError) -> Error {
    Error::NoMatch {
        reference: r.to_string(),
        reason,
    }
}

fn descriptor_digest(r: &Reference, d: &Descriptor) -> Result<Digest> {
    d.sha256().map_err(|reason| Error::UnsupportedDigest {
        reference: r.to_string(),
        reason,
    })
}
