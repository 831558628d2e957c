//! Checking a [`ClientBuilder`]'s settings into a [`Config`]: plain data, every
//! value judged once, for [`Client`](crate::Client) to build its parts from.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use super::{CACHE_SUBDIR, CacheDir, ClientBuilder, Network, NotUtf8, TagPolicy};
use crate::error::{Error, Result, SettingProblem};
use crate::event::Events;
use crate::layers::LayerSelector;
use crate::manifest::Platform;
use crate::registry::{RegistryConfig, TransportConfig};
use crate::source::mirror::{MIRRORS_VAR, Mirrors, parse_mirror, registry_name};

impl ClientBuilder {
    /// The settings as plain data for [`Client`](crate::Client) to assemble its
    /// parts from, checked: see `ClientBuilder::build` for what is refused.
    pub(crate) fn into_config(self) -> Result<Config> {
        if let Some(NotUtf8 { name, value }) = self.not_utf8.first() {
            return Err(Error::Config {
                setting: name,
                value: value.clone(),
                reason: SettingProblem::NotUtf8,
            });
        }
        let empty = |setting: &'static str, value: &OsString| Error::Config {
            setting,
            value: value.to_string_lossy().into_owned(),
            reason: SettingProblem::EmptyPath,
        };
        let root = match self.cache_dir {
            CacheDir::Given(d) if d.as_os_str().is_empty() => {
                return Err(empty("ClientBuilder::cache_dir", &d.into_os_string()));
            }
            CacheDir::Given(d) => d,
            CacheDir::Env(v) if v.to_str().is_some_and(|s| s.trim().is_empty()) => {
                return Err(empty("FORGE_CACHE_DIR", &v));
            }
            CacheDir::Env(v) => CACHE_SUBDIR.iter().fold(PathBuf::from(v), |p, s| p.join(s)),
            CacheDir::Default => {
                let base = dirs::cache_dir().ok_or(Error::NoCacheDir)?;
                CACHE_SUBDIR.iter().fold(base, |p, s| p.join(s))
            }
        };
        let mut mirrors = Mirrors::default();
        for (registry, mirror, digest_only) in &self.given_mirrors {
            let parsed = registry_name(registry)
                .and_then(|reg| Ok((reg, parse_mirror(mirror, *digest_only)?)));
            match parsed {
                Ok((reg, m)) => mirrors.push(reg, m),
                Err(why) => {
                    return Err(Error::Config {
                        setting: "ClientBuilder::mirror",
                        value: format!("{registry}={mirror}"),
                        reason: why,
                    });
                }
            }
        }
        match self.env_mirrors {
            Ok(m) => mirrors.extend(m),
            Err((value, why)) => {
                return Err(Error::Config {
                    setting: MIRRORS_VAR,
                    value,
                    reason: why,
                });
            }
        }
        if let Some(d) = self.given_layouts.iter().find(|d| d.as_os_str().is_empty()) {
            return Err(empty(
                "ClientBuilder::oci_layout",
                &d.clone().into_os_string(),
            ));
        }
        let mut layouts = self.given_layouts;
        layouts.extend(self.env_layouts);
        Ok(Config {
            root,
            mirrors,
            layouts,
            events: self.on_event.map(Events::new).unwrap_or_default(),
            max_manifest_size: self.max_manifest_size,
            lock_timeout: self.lock_timeout,
            platforms: self.platforms,
            layer_media_types: self.layer_media_types,
            media_types_explicit: self.media_types_explicit,
            layer: self.layer,
            max_extracted_size: self.max_extracted_size,
            registry: RegistryConfig {
                insecure_hosts: self.insecure_hosts,
                max_manifest_size: self.max_manifest_size,
                retries: self.retries,
                credentials: self.credentials,
                transport: TransportConfig {
                    connect_timeout: self.connect_timeout,
                    read_timeout: self.read_timeout,
                    root_certificates: self.root_certificates,
                    cert_file: self.cert_file,
                    proxies: self.proxies,
                },
            },
            network: self.network,
            tag_policy: self.tag_policy,
            pull_timeout: self.pull_timeout,
            jobs: self.jobs,
        })
    }
}

/// Every setting of a client, checked, as plain data: what
/// [`Client`](crate::Client) builds its cache, registry and selection from.
pub(crate) struct Config {
    pub(crate) root: PathBuf,
    pub(crate) mirrors: Mirrors,
    pub(crate) layouts: Vec<PathBuf>,
    pub(crate) events: Events,
    pub(crate) max_manifest_size: u64,
    pub(crate) lock_timeout: Option<Duration>,
    pub(crate) platforms: Vec<Platform>,
    pub(crate) layer_media_types: Vec<String>,
    pub(crate) media_types_explicit: bool,
    pub(crate) layer: Option<LayerSelector>,
    pub(crate) max_extracted_size: u64,
    pub(crate) registry: RegistryConfig,
    pub(crate) network: Network,
    pub(crate) tag_policy: TagPolicy,
    pub(crate) pull_timeout: Option<Duration>,
    pub(crate) jobs: usize,
}
