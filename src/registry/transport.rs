//! Which connection carries a request: direct, or through the proxy for its
//! scheme; and which certificates TLS trusts. Agents are built on first use, so
//! building a client still does no I/O (reading `SSL_CERT_FILE` is I/O). Proxy
//! settings are read as [`proxy`](super::proxy) describes.
//!
//! TLS trusts the Mozilla roots bundled with rustls by default. Certificates given to
//! [`ClientBuilder::root_certificate`](crate::ClientBuilder::root_certificate) or found
//! in `SSL_CERT_FILE` replace them with: the `SSL_CERT_FILE` bundle if it is set, else
//! the system bundle (`/etc/ssl/certs/ca-certificates.crt` and its equivalents) if there
//! is one, plus the certificates given. ureq takes one root set, not additions to its
//! own, and this keeps public registries reachable without bundling a second copy of
//! the Mozilla roots.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use ureq::Agent;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use super::proxy::{Proxies, ProxySetting, redact, ureq_proxy};
use crate::error::{Error, Result};

/// System CA bundles, first found wins: Debian/Ubuntu/Alpine, Fedora/RHEL, openSUSE, macOS/BSD.
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Settings for the connections, from the builder and the environment.
#[derive(Debug, Clone, Default)]
pub(crate) struct TransportConfig {
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    /// Extra trusted certificates, PEM or DER.
    pub(crate) root_certificates: Vec<Vec<u8>>,
    /// `SSL_CERT_FILE`.
    pub(crate) cert_file: Option<PathBuf>,
    pub(crate) proxies: Proxies,
}

/// A setting that cannot be used, and why: the error every request that needs
/// it gets.
#[derive(Debug, Clone)]
struct Unusable {
    setting: &'static str,
    value: String,
    reason: String,
}

impl Unusable {
    fn error(&self) -> Error {
        Error::Config {
            setting: self.setting,
            value: self.value.clone(),
            reason: self.reason.clone(),
        }
    }
}

type Lazy<T> = OnceLock<std::result::Result<T, Unusable>>;

/// The agents, each built on the first request that needs it: a proxy that is
/// never used (its scheme is not asked for, or `NO_PROXY` covers every host
/// asked for) is never judged, as in curl.
pub(crate) struct Transport {
    config: TransportConfig,
    tls: Lazy<TlsConfig>,
    direct: Lazy<Agent>,
    http: Lazy<Agent>,
    https: Lazy<Agent>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("proxies", &self.config.proxies)
            .field(
                "extra_root_certificates",
                &self.config.root_certificates.len(),
            )
            .field("cert_file", &self.config.cert_file)
            .finish()
    }
}

impl Transport {
    pub(crate) fn new(config: TransportConfig) -> Transport {
        Transport {
            config,
            tls: OnceLock::new(),
            direct: OnceLock::new(),
            http: OnceLock::new(),
            https: OnceLock::new(),
        }
    }

    /// The agent for `url`: through its scheme's proxy unless `NO_PROXY` says otherwise.
    ///
    /// # Errors
    /// [`Error::Config`] when the TLS roots or the proxy this request needs cannot be used.
    pub(crate) fn agent(&self, url: &str) -> Result<&Agent> {
        let https = url.starts_with("https://");
        let authority = url
            .split("://")
            .nth(1)
            .and_then(|r| r.split(['/', '?', '#']).next())
            .unwrap_or("");
        let proxies = &self.config.proxies;
        let (slot, proxy) = match if https { &proxies.https } else { &proxies.http } {
            Some(proxy) if !proxies.no_proxy.matches(host_of(authority)) => {
                (if https { &self.https } else { &self.http }, Some(proxy))
            }
            _ => (&self.direct, None),
        };
        slot.get_or_init(|| self.build(proxy))
            .as_ref()
            .map_err(Unusable::error)
    }

    fn build(&self, proxy: Option<&ProxySetting>) -> std::result::Result<Agent, Unusable> {
        let tls = self.tls.get_or_init(|| tls_config(&self.config)).clone()?;
        let proxy = proxy
            .map(|p| {
                ureq_proxy(&p.url).map_err(|reason| Unusable {
                    setting: p.setting,
                    value: redact(&p.url),
                    reason,
                })
            })
            .transpose()?;
        let config = &self.config;
        let config = Agent::config_builder()
            .http_status_as_error(false)
            // ureq adds timeouts to instants unchecked: an absurd one is none.
            .timeout_connect(super::finite(config.connect_timeout))
            .timeout_recv_response(super::finite(config.read_timeout))
            .timeout_per_read(super::finite(config.read_timeout))
            // Redirects are followed hop by hop in `redirect.rs`, which decides per
            // hop whether Authorization goes along.
            .max_redirects(0)
            .proxy(proxy)
            .tls_config(tls)
            .user_agent(concat!("forge-oci/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Agent::new_with_config(config))
    }
}

/// The host of a URL's authority (`[::1]` keeps its brackets), without the port.
fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or(authority)
}

fn tls_config(config: &TransportConfig) -> std::result::Result<TlsConfig, Unusable> {
    let builder = TlsConfig::builder();
    #[cfg(feature = "native-tls")]
    let builder = builder.provider(ureq::tls::TlsProvider::NativeTls);
    if config.root_certificates.is_empty() && config.cert_file.is_none() {
        return Ok(builder.build());
    }
    let base = match &config.cert_file {
        Some(file) => Some(file.clone()),
        None => SYSTEM_BUNDLES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file()),
    };
    let mut roots = Vec::new();
    if let Some(file) = &base {
        let setting = if config.cert_file.is_some() {
            "SSL_CERT_FILE"
        } else {
            "the system CA bundle"
        };
        let unusable = |reason: String| Unusable {
            setting,
            value: file.display().to_string(),
            reason,
        };
        let pem = std::fs::read(file).map_err(|e| unusable(e.to_string()))?;
        roots.extend(certificates(&pem).map_err(unusable)?);
    }
    for (i, given) in config.root_certificates.iter().enumerate() {
        roots.extend(certificates(given).map_err(|reason| Unusable {
            setting: "ClientBuilder::root_certificate",
            value: format!("certificate #{}", i + 1),
            reason,
        })?);
    }
    Ok(builder
        .root_certs(RootCerts::new_with_certs(&roots))
        .build())
}

/// Every certificate in a PEM bundle, or the one DER certificate given.
fn certificates(bytes: &[u8]) -> std::result::Result<Vec<Certificate<'static>>, String> {
    if !bytes.starts_with(b"-----") && !bytes.windows(5).any(|w| w == b"-----") {
        return Ok(vec![Certificate::from_der(bytes).to_owned()]);
    }
    let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(bytes)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(Ok(c.to_owned())),
            Ok(_) => None,
            Err(e) => Some(Err(e.to_string())),
        })
        .collect::<std::result::Result<_, _>>()?;
    if certs.is_empty() {
        return Err("no certificate found".to_owned());
    }
    Ok(certs)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::proxy::NoProxy;

    fn setting(url: &str) -> Option<ProxySetting> {
        Some(ProxySetting {
            setting: "https_proxy",
            url: url.to_owned(),
        })
    }

    #[test]
    fn each_scheme_has_its_own_proxy() {
        let t = Transport::new(TransportConfig {
            proxies: Proxies {
                http: None,
                https: setting("http://127.0.0.1:9"),
                no_proxy: NoProxy::parse("bypassed.local"),
            },
            ..Default::default()
        });
        let direct = t.agent("http://registry.local/v2/").unwrap() as *const Agent;
        let proxied = t.agent("https://registry.local/v2/").unwrap() as *const Agent;
        let bypassed = t.agent("https://bypassed.local:5000/v2/").unwrap() as *const Agent;
        assert_ne!(
            direct, proxied,
            "an https URL goes through HTTPS_PROXY, an http one does not"
        );
        assert_eq!(direct, bypassed, "NO_PROXY ignores the port of the URL");
    }

    #[test]
    fn a_proxy_is_judged_only_when_used() {
        let t = Transport::new(TransportConfig {
            proxies: Proxies {
                http: None,
                https: setting("ftp://unusable"),
                no_proxy: NoProxy::parse("direct.local"),
            },
            ..Default::default()
        });
        assert!(t.agent("http://registry.local/").is_ok());
        assert!(t.agent("https://direct.local/").is_ok());
        let e = t.agent("https://registry.local/").unwrap_err().to_string();
        assert!(
            e.starts_with("cannot use https_proxy `ftp://unusable`"),
            "{e}"
        );
    }

    #[test]
    fn bad_settings_are_named_and_passwords_hidden() {
        // With a scheme or without (the password used to be shown then).
        for url in [
            "http://user:hunter2@[bad",
            "user:hunter2@[bad",
            "ftp://u:hunter2@p",
        ] {
            let t = Transport::new(TransportConfig {
                proxies: Proxies {
                    http: Some(ProxySetting {
                        setting: "http_proxy",
                        url: url.into(),
                    }),
                    ..Default::default()
                },
                ..Default::default()
            });
            let e = t.agent("http://x/").unwrap_err();
            assert!(
                matches!(&e, Error::Config { setting: "http_proxy", value, .. } if value.contains("<credentials>@")),
                "{e:?}"
            );
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        let t = Transport::new(TransportConfig {
            cert_file: Some("/nonexistent/bundle.pem".into()),
            ..Default::default()
        });
        let e = t.agent("https://x/").unwrap_err().to_string();
        assert!(
            e.contains("SSL_CERT_FILE") && e.contains("/nonexistent/bundle.pem"),
            "{e}"
        );
        assert_eq!(
            certificates(b"-----BEGIN NOTHING-----\n-----END NOTHING-----\n").unwrap_err(),
            "no certificate found"
        );
    }
}
