//! [`ClientBuilder`] and the policy types it takes: every setting in one place,
//! with its default, some of them read from the environment.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{CredentialSources, Credentials};
use crate::error::SettingProblem;
use crate::event::{Callback, Event};
use crate::layers::LayerSelector;
use crate::manifest::{DEFAULT_LAYER_MEDIA_TYPES, Platform};
use crate::registry::{NO_PROXY_VARS, NoProxy, PROXY_VARS, Proxies, ProxySetting};
use crate::source::mirror::{MIRRORS_VAR, Mirrors, parse_list};

mod checked;

pub(crate) use checked::Config;

const CACHE_SUBDIR: [&str; 2] = ["openapi-forge", "plugins"];
/// The variables behind the default [`Network`].
const OFFLINE_VARS: [&str; 2] = ["FORGE_OFFLINE", "CARGO_NET_OFFLINE"];

/// Whether the client may use the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// Ask the registry when the cache cannot answer.
    #[default]
    Online,
    /// Never open a connection; a reference that is not cached is an error.
    Offline,
}

/// When a tag found in the cache is checked against the registry. Digest-pinned
/// references never are: their content cannot change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TagPolicy {
    /// Use a cached tag as it is; only a miss asks the registry.
    #[default]
    CacheFirst,
    /// Ask the registry for the tag's digest (a HEAD request, or a GET where HEAD
    /// is not allowed) on every pull and download again only if it changed. When
    /// the registry cannot tell now (it or its token service is unreachable or
    /// overloaded, or the pull's deadline passes) the cached digest is used and
    /// [`Event::UsingCachedTag`] is reported; a real answer (not found, refused)
    /// is an error.
    Revalidate,
    /// Like [`TagPolicy::CacheFirst`] while the tag was resolved less than this long
    /// ago, like [`TagPolicy::Revalidate`] after.
    MaxAge(Duration),
}

/// Where the cache root comes from; resolved, and checked, by [`ClientBuilder::build`].
#[derive(Debug)]
enum CacheDir {
    /// `<user cache dir>/openapi-forge/plugins`.
    Default,
    /// `FORGE_CACHE_DIR` as set; the root is `openapi-forge/plugins` under it.
    Env(OsString),
    /// [`ClientBuilder::cache_dir`]: the root itself.
    Given(PathBuf),
}

/// An environment variable set to a value that is not UTF-8, where text is needed:
/// [`ClientBuilder::build`] refuses it rather than silently using the default.
#[derive(Debug)]
struct NotUtf8 {
    name: &'static str,
    /// The value as an error may show it (lossily, a proxy URL's password hidden).
    value: String,
}

/// References [`Client::pull_all`](crate::Client::pull_all) pulls at once by default.
const DEFAULT_JOBS: usize = 4;
/// The most pulls at once: see [`ClientBuilder::jobs`].
pub(crate) const MAX_JOBS: usize = 64;

/// Configures a [`Client`](crate::Client). Start from [`Client::builder`](crate::Client::builder); every setter overrides
/// a default, and some defaults come from the environment.
#[must_use]
pub struct ClientBuilder {
    cache_dir: CacheDir,
    /// Variables read for a default that could not be used; the setter that
    /// replaces the default removes its variables from here.
    not_utf8: Vec<NotUtf8>,
    insecure_hosts: Vec<String>,
    layer_media_types: Vec<String>,
    /// Whether `layer_media_types` was set: then it is all that is accepted.
    media_types_explicit: bool,
    layer: Option<LayerSelector>,
    max_extracted_size: u64,
    platforms: Vec<Platform>,
    network: Network,
    tag_policy: TagPolicy,
    connect_timeout: Duration,
    read_timeout: Duration,
    max_manifest_size: u64,
    retries: u32,
    lock_timeout: Option<Duration>,
    pull_timeout: Option<Duration>,
    jobs: usize,
    on_event: Option<Callback>,
    credentials: CredentialSources,
    root_certificates: Vec<Vec<u8>>,
    cert_file: Option<PathBuf>,
    proxies: Proxies,
    /// `FORGE_OCI_MIRRORS` as parsed, or its value and why it cannot be used.
    env_mirrors: std::result::Result<Mirrors, (String, SettingProblem)>,
    /// [`ClientBuilder::mirror`]'s: registry, mirror, digest only.
    given_mirrors: Vec<(String, String, bool)>,
    /// [`ClientBuilder::oci_layout`]'s, then `FORGE_OCI_LAYOUTS`'s.
    given_layouts: Vec<PathBuf>,
    env_layouts: Vec<PathBuf>,
}

impl Default for ClientBuilder {
    /// The defaults, with `FORGE_CACHE_DIR`, `FORGE_OCI_INSECURE_HOSTS`,
    /// `FORGE_OCI_MIRRORS`, `FORGE_OCI_LAYOUTS`, `FORGE_OFFLINE`, `CARGO_NET_OFFLINE`,
    /// `SSL_CERT_FILE` and the proxy variables read from the environment. A text
    /// variable that is not UTF-8 is kept for [`build`](ClientBuilder::build) to refuse.
    fn default() -> Self {
        let mut not_utf8 = Vec::new();
        let mut env = |name: &'static str| match crate::env::var(name)?.into_string() {
            Ok(v) => Some(v).filter(|v| !v.trim().is_empty()),
            Err(value) => {
                not_utf8.push(NotUtf8 {
                    name,
                    value: value.to_string_lossy().into_owned(),
                });
                None
            }
        };
        let is_on = |v: String| {
            !matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "0" | "false" | "no" | "off"
            )
        };
        // Both are read, so that either one not being UTF-8 is found.
        let [forge_offline, cargo_offline] = OFFLINE_VARS.map(|name| env(name).is_some_and(is_on));
        let offline = forge_offline || cargo_offline;
        let insecure_hosts = env("FORGE_OCI_INSECURE_HOSTS");
        let env_mirrors = env(MIRRORS_VAR).map_or(Ok(Mirrors::default()), |v| {
            parse_list(&v).map_err(|why| (v, why))
        });
        // A path list, split as the platform splits PATH; paths need not be UTF-8.
        let env_layouts = crate::env::var("FORGE_OCI_LAYOUTS")
            .map(|v| {
                std::env::split_paths(&v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let (proxies, proxies_not_utf8) = Proxies::from_env();
        not_utf8.extend(
            proxies_not_utf8
                .into_iter()
                .map(|(name, value)| NotUtf8 { name, value }),
        );
        ClientBuilder {
            // Set but empty is kept, for build() to refuse: not silently the default.
            // A path need not be UTF-8: it is used as it is.
            cache_dir: crate::env::var("FORGE_CACHE_DIR").map_or(CacheDir::Default, CacheDir::Env),
            not_utf8,
            insecure_hosts: insecure_hosts
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
            media_types_explicit: false,
            layer: None,
            max_extracted_size: 512 << 20,
            platforms: Platform::wasm_defaults(),
            network: if offline {
                Network::Offline
            } else {
                Network::Online
            },
            tag_policy: TagPolicy::CacheFirst,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            max_manifest_size: 4 << 20,
            retries: 3,
            lock_timeout: None,
            pull_timeout: None,
            jobs: DEFAULT_JOBS,
            on_event: None,
            credentials: CredentialSources::from_env(),
            root_certificates: Vec::new(),
            cert_file: crate::env::var("SSL_CERT_FILE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            proxies,
            env_mirrors,
            given_mirrors: Vec::new(),
            given_layouts: Vec::new(),
            env_layouts,
        }
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("cache_dir", &self.cache_dir)
            .field("not_utf8", &self.not_utf8)
            .field("insecure_hosts", &self.insecure_hosts)
            .field("layer_media_types", &self.layer_media_types)
            .field("media_types_explicit", &self.media_types_explicit)
            .field("layer", &self.layer)
            .field("max_extracted_size", &self.max_extracted_size)
            .field("platforms", &self.platforms)
            .field("network", &self.network)
            .field("tag_policy", &self.tag_policy)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("max_manifest_size", &self.max_manifest_size)
            .field("retries", &self.retries)
            .field("lock_timeout", &self.lock_timeout)
            .field("pull_timeout", &self.pull_timeout)
            .field("jobs", &self.jobs)
            .field("on_event", &self.on_event.as_ref().map(|_| "Fn(&Event)"))
            .field("credentials", &self.credentials)
            .field("root_certificates", &self.root_certificates.len())
            .field("cert_file", &self.cert_file)
            .field("proxies", &self.proxies)
            .field("env_mirrors", &self.env_mirrors)
            .field("given_mirrors", &self.given_mirrors)
            .field("given_layouts", &self.given_layouts)
            .field("env_layouts", &self.env_layouts)
            .finish()
    }
}

impl ClientBuilder {
    /// The cache root itself (blobs go in `<dir>/blobs`). Defaults to
    /// `$FORGE_CACHE_DIR/openapi-forge/plugins`, else `<user cache dir>/openapi-forge/plugins`.
    ///
    /// An empty path, or a `FORGE_CACHE_DIR` set to an empty (or all-blank) value, is
    /// refused by [`build`](Self::build): it would silently mean the current
    /// directory, and `clear` would empty that. Pass `"."` to mean it.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = CacheDir::Given(dir.into());
        self
    }

    /// Adds a `host[:port]` reached over plain HTTP. A bare host matches any port.
    /// Defaults to the comma-separated list in `FORGE_OCI_INSECURE_HOSTS` (the hosts
    /// added here come on top of it).
    pub fn insecure_host(mut self, host: impl Into<String>) -> Self {
        self.insecure_hosts.push(host.into());
        self
    }

    /// The layer media types to accept, most preferred first. Defaults to
    /// [`DEFAULT_LAYER_MEDIA_TYPES`].
    ///
    /// Types set here are an explicit choice: a layer of another type is never
    /// taken, not even an artifact's only layer, and naming a container image's
    /// own layer type (`application/vnd.oci.image.layer.v1.tar+gzip`) returns the
    /// layer itself rather than the module extracted from it.
    pub fn layer_media_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.layer_media_types = types.into_iter().map(Into::into).collect();
        self.media_types_explicit = true;
        self
    }

    /// Takes this layer, by its `org.opencontainers.image.title` annotation or its
    /// digest, and no other: the way to pull one part of an artifact with several
    /// layers of one type, or of a Spin application. A layer that is a container
    /// image's filesystem layer still has its module extracted. Defaults to none:
    /// the layer is chosen by media type.
    pub fn layer(mut self, layer: LayerSelector) -> Self {
        self.layer = Some(layer);
        self
    }

    /// The most bytes a container image's layer may decompress to while its wasm
    /// module is extracted; past it the pull fails with [`Error::Extract`](crate::Error::Extract) (a gzip
    /// bomb is stopped here). Defaults to 512 MiB.
    pub fn max_extracted_size(mut self, bytes: u64) -> Self {
        self.max_extracted_size = bytes;
        self
    }

    /// The platforms to pick from an index, most preferred first. Defaults to
    /// [`Platform::wasm_defaults`].
    pub fn platforms(mut self, platforms: impl IntoIterator<Item = Platform>) -> Self {
        self.platforms = platforms.into_iter().collect();
        self
    }

    /// Online or offline. Defaults to offline when `FORGE_OFFLINE` or
    /// `CARGO_NET_OFFLINE` is set to anything but `0`/`false`/`no`/`off`, else online.
    /// Setting it makes those variables irrelevant, so one that is not UTF-8 is
    /// no longer refused.
    pub fn network(mut self, network: Network) -> Self {
        self.network = network;
        self.not_utf8.retain(|v| !OFFLINE_VARS.contains(&v.name));
        self
    }

    /// When cached tags are checked against the registry. Defaults to [`TagPolicy::CacheFirst`].
    pub fn tag_policy(mut self, policy: TagPolicy) -> Self {
        self.tag_policy = policy;
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

    /// Retries after a connection failure or a 408/429/500/502/503/504; never after
    /// a TLS failure (a certificate not trusted, expired or for another host),
    /// which would fail the same way again. Defaults to 3. A mirror's requests
    /// are not retried: the next source is asked instead.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Gives up with [`Error::LockTimeout`](crate::Error::LockTimeout) after waiting this long for a cache lock
    /// another process holds. Defaults to waiting for as long as it takes.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = Some(timeout);
        self
    }

    /// Credentials for `registry` (`host[:port]` as in references, `docker.io` for
    /// Docker Hub), tried before any credential file. A key may name a namespace or a
    /// repository (`ghcr.io/team-a`, `ghcr.io/team-a/plugin`), as in podman's
    /// `auth.json`: the most specific key that applies to a repository wins.
    /// Defaults to none.
    pub fn credentials(mut self, registry: impl Into<String>, credentials: Credentials) -> Self {
        self.credentials.given.insert(registry.into(), credentials);
        self
    }

    /// The directory holding docker's `config.json` (`auths`, `credHelpers`,
    /// `credsStore`). Defaults to `$DOCKER_CONFIG`, else `~/.docker`.
    pub fn docker_config_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.credentials.docker_config = Some(dir.into());
        self
    }

    /// Podman-style `auth.json` files, tried in order after docker's config.
    /// Defaults to `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
    /// `~/.config/containers/auth.json`.
    pub fn auth_files(mut self, files: impl IntoIterator<Item = PathBuf>) -> Self {
        self.credentials.auth_files = files.into_iter().collect();
        self
    }

    /// How long a credential helper (`docker-credential-<name> get`) may run. A
    /// helper still running then (a keychain waiting for a click, a hung network
    /// call) is killed, and the pull goes on as if it had no credentials: anonymously,
    /// with the helper named in the error if the registry refuses that. A helper
    /// never runs past the pull's deadline ([`pull_timeout`](Self::pull_timeout)).
    /// Defaults to 10 s.
    pub fn credential_helper_timeout(mut self, timeout: Duration) -> Self {
        self.credentials.helper_timeout = timeout;
        self
    }

    /// Trusts this certificate (PEM, possibly several, or DER) for TLS. Once any
    /// certificate is given, the trusted set is the system CA bundle (or the
    /// `SSL_CERT_FILE` bundle) plus the certificates given, instead of the Mozilla
    /// roots bundled in. Bytes that are neither PEM holding a certificate nor one
    /// DER certificate, like an `SSL_CERT_FILE` that is neither, fail the first
    /// request with [`Error::Config`](crate::Error::Config) naming them and why. Defaults to none.
    pub fn root_certificate(mut self, certificate: impl Into<Vec<u8>>) -> Self {
        self.root_certificates.push(certificate.into());
        self
    }

    /// Sends every request through this proxy, or directly with `None`. The URL is
    /// `[scheme://][user:password@]host[:port]` with the scheme `http` (the default),
    /// `https`, `socks4`, `socks4a`, `socks5` or `socks5h` (`socks` is `socks4`, as in
    /// curl); a URL that cannot be used fails the first request with [`Error::Config`](crate::Error::Config).
    /// Setting it makes the proxy variables irrelevant, so one that is not UTF-8 is
    /// no longer refused.
    ///
    /// Defaults to the environment as curl reads it: for `https://` requests
    /// `https_proxy`, else `HTTPS_PROXY`; for `http://` requests `http_proxy` (never
    /// `HTTP_PROXY`, which CGI servers fill from a request's `Proxy:` header); for
    /// both, failing those, `all_proxy`, else `ALL_PROXY`. A variable set to the
    /// empty string counts as unset.
    pub fn proxy(mut self, url: Option<&str>) -> Self {
        let setting = url.map(|url| ProxySetting {
            setting: "ClientBuilder::proxy",
            url: url.to_owned(),
        });
        self.proxies.http.clone_from(&setting);
        self.proxies.https = setting;
        self.not_utf8.retain(|v| !PROXY_VARS.contains(&v.name));
        self
    }

    /// Hosts reached without a proxy, matched as curl matches `NO_PROXY`:
    /// - `["*"]` alone means every host;
    /// - a name matches itself and its subdomains, ignoring case and a leading or
    ///   trailing `.`: `example.com` and `.example.com` both match
    ///   `registry.example.com`, never `notexample.com`; there are no wildcards
    ///   (`*.example.com` matches nothing);
    /// - an IP address matches itself or a CIDR range (`10.0.0.0/8`, `::1`,
    ///   `fd00::/8`; IPv6 without brackets); names never match addresses;
    /// - ports play no part: an entry with one (`localhost:5000`) matches nothing.
    ///
    /// Setting it makes `no_proxy` and `NO_PROXY` irrelevant, so one that is not
    /// UTF-8 is no longer refused. Defaults to `no_proxy`, else `NO_PROXY`: a
    /// comma-separated list of the same entries, or `*`.
    pub fn no_proxy<I, S>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let hosts: Vec<String> = hosts
            .into_iter()
            .map(|h| h.as_ref().trim().to_owned())
            .collect();
        self.proxies.no_proxy = NoProxy::parse(&hosts.join(","));
        self.not_utf8.retain(|v| !NO_PROXY_VARS.contains(&v.name));
        self
    }

    /// Gives every pull (or resolve, or inspect) at most this long on the network,
    /// retries and waits included; past it the pull fails with [`Error::Deadline`](crate::Error::Deadline) and
    /// nothing is committed. Lock waits are bounded by [`lock_timeout`](Self::lock_timeout)
    /// instead. Defaults to no limit (each stalled read still times out).
    pub fn pull_timeout(mut self, timeout: Duration) -> Self {
        self.pull_timeout = Some(timeout);
        self
    }

    /// Adds `mirror` (`host[:port][/path-prefix]`) for `registry` (`docker.io`,
    /// `ghcr.io`, `host:port`): a mirror or pull-through cache asked before the
    /// registry itself. Mirrors are tried in the order given, those given here
    /// before those in `FORGE_OCI_MIRRORS`
    /// (`REGISTRY=MIRROR[,MIRROR...][;REGISTRY=MIRROR...]`). A path prefix is put
    /// in front of the repository (`harbor.corp/ghcr-proxy` serves
    /// `ghcr.io/owner/plugin` as `harbor.corp/ghcr-proxy/owner/plugin`); requests
    /// carry `ns=<registry>`; the mirror is sent its own credentials, never the
    /// registry's, and speaks plain HTTP only when its host is marked insecure. A
    /// mirror that cannot answer, or answers with bytes that do not verify, is
    /// skipped with [`Event::SourceSkipped`]; with a
    /// [`pull_timeout`](Self::pull_timeout), each mirror has an equal share of
    /// the time left with the sources after it to give its manifests, so one
    /// that stalls leaves the registry time to answer. The cache records the registry's
    /// reference whichever source answered. A value that cannot be read is
    /// refused by [`build`](Self::build).
    pub fn mirror(mut self, registry: impl Into<String>, mirror: impl Into<String>) -> Self {
        self.given_mirrors
            .push((registry.into(), mirror.into(), false));
        self
    }

    /// [`mirror`](Self::mirror) for a mirror that may serve digest-pinned references
    /// only (podman's `pull-from-mirror = "digest-only"`): tags then always come
    /// from the registry itself (or another mirror), pins from this one first.
    pub fn digest_only_mirror(
        mut self,
        registry: impl Into<String>,
        mirror: impl Into<String>,
    ) -> Self {
        self.given_mirrors
            .push((registry.into(), mirror.into(), true));
        self
    }

    /// Adds an OCI image layout directory (as written by
    /// [`Client::vendor`](crate::Client::vendor), `forge-oci vendor` or
    /// `skopeo copy ... oci:DIR:REF`) to read artifacts from, before the network
    /// and also when offline. A tag matches an `index.json` entry whose
    /// `org.opencontainers.image.ref.name` or `io.containerd.image.name` is the
    /// full reference; a digest pin matches its manifest in `blobs/`. What is
    /// read is verified as it is copied into the cache. Layouts are consulted in
    /// order, those given here before those in `FORGE_OCI_LAYOUTS` (a path list,
    /// separated as `PATH` is, its empty entries skipped). An empty `dir` is
    /// refused by [`build`](Self::build), never taken for the current directory.
    pub fn oci_layout(mut self, dir: impl Into<PathBuf>) -> Self {
        self.given_layouts.push(dir.into());
        self
    }

    /// How many references [`Client::pull_all`](crate::Client::pull_all) pulls at
    /// once, each on its own thread; 0 counts as 1, and more than 64 as 64 (each
    /// pull holds a connection, a file and 2 MiB of buffers while it downloads).
    /// Defaults to 4: enough to keep a connection busy while another waits on a
    /// round trip, few enough not to crowd a small machine or a registry's rate limit.
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.clamp(1, MAX_JOBS);
        self
    }

    /// Called with each [`Event`], e.g. to print "waiting for file lock on …".
    /// Defaults to nothing.
    pub fn on_event(mut self, f: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.on_event = Some(Arc::new(f));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_kept_between_one_and_the_most() {
        for (given, kept) in [(0, 1), (1, 1), (4, 4), (64, 64), (65, 64), (usize::MAX, 64)] {
            assert_eq!(ClientBuilder::default().jobs(given).jobs, kept, "{given}");
        }
    }
}
