//! Which connection carries a request: direct, or through the proxy for its
//! scheme; and which certificates TLS trusts. Agents are built on first use, so
//! building a client still does no I/O (reading `SSL_CERT_FILE` is I/O).
//!
//! Proxies follow curl rather than ureq: `HTTPS_PROXY` carries `https://` requests
//! and `HTTP_PROXY` `http://` ones (each falling back to `ALL_PROXY`), where ureq
//! would use the first variable it finds for every scheme. `NO_PROXY` is a comma-
//! separated list of hosts matched as curl does: `*` for all, `example.com` and
//! `.example.com` for the domain and every subdomain, an optional `:port`, and exact
//! IP addresses (CIDR ranges are not supported).
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

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::{Agent, Proxy};

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

/// Proxy settings: one per scheme, and the hosts that bypass them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Proxies {
    pub(crate) http: Option<String>,
    pub(crate) https: Option<String>,
    pub(crate) no_proxy: Vec<String>,
}

impl Proxies {
    /// From `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` (either case).
    pub(crate) fn from_env() -> Proxies {
        let var = |name: &str| {
            [name.to_ascii_uppercase(), name.to_ascii_lowercase()]
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
        };
        let all = var("all_proxy");
        Proxies {
            http: var("http_proxy").or_else(|| all.clone()),
            https: var("https_proxy").or(all),
            no_proxy: var("no_proxy")
                .map(|v| {
                    v.split(',')
                        .map(|e| e.trim().to_ascii_lowercase())
                        .filter(|e| !e.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Whether `host` (with `port`) bypasses the proxies.
    pub(crate) fn bypass(&self, host: &str, port: u16) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        self.no_proxy.iter().any(|entry| {
            if entry == "*" {
                return true;
            }
            let (name, entry_port) = split_port(entry);
            if entry_port.is_some_and(|p| p != port) {
                return false;
            }
            let name = name.trim_start_matches("*.").trim_start_matches('.');
            host == name || host.ends_with(&format!(".{name}"))
        })
    }
}

/// `host:port` / `[v6]:port` / `host` -> (host, port).
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        return (host, after.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(p) => (host, Some(p)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

struct Agents {
    direct: Agent,
    http: Option<Agent>,
    https: Option<Agent>,
}

/// The agents, built once per client on first use.
pub(crate) struct Transport {
    config: TransportConfig,
    agents: OnceLock<std::result::Result<Agents, (&'static str, String, String)>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Proxy URLs may carry a password: say whether there is one, not what.
        let p = &self.config.proxies;
        f.debug_struct("Transport")
            .field("http_proxy", &p.http.is_some())
            .field("https_proxy", &p.https.is_some())
            .field("no_proxy", &p.no_proxy)
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
            agents: OnceLock::new(),
        }
    }

    /// The agent for `url`: through its scheme's proxy unless `NO_PROXY` says otherwise.
    ///
    /// # Errors
    /// [`Error::Config`] when the TLS roots or a proxy URL cannot be used.
    pub(crate) fn agent(&self, url: &str) -> Result<&Agent> {
        let agents = self
            .agents
            .get_or_init(|| build(&self.config))
            .as_ref()
            .map_err(|(setting, value, reason)| Error::Config {
                setting,
                value: value.clone(),
                reason: reason.clone(),
            })?;
        let https = url.starts_with("https://");
        let authority = url
            .split("://")
            .nth(1)
            .and_then(|r| r.split(['/', '?', '#']).next())
            .unwrap_or("");
        let (host, port) = split_port(authority);
        let port = port.unwrap_or(if https { 443 } else { 80 });
        let proxied = if https { &agents.https } else { &agents.http };
        Ok(match proxied {
            Some(agent) if !self.config.proxies.bypass(host, port) => agent,
            _ => &agents.direct,
        })
    }
}

fn build(config: &TransportConfig) -> std::result::Result<Agents, (&'static str, String, String)> {
    let tls = tls_config(config)?;
    let agent =
        |proxy: Option<&str>| -> std::result::Result<Agent, (&'static str, String, String)> {
            let proxy = match proxy {
                Some(url) => {
                    Some(Proxy::new(url).map_err(|e| ("proxy", redact(url), e.to_string()))?)
                }
                None => None,
            };
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
                .tls_config(tls.clone())
                .user_agent(concat!("forge-oci/", env!("CARGO_PKG_VERSION")))
                .build();
            Ok(Agent::new_with_config(config))
        };
    let proxies = &config.proxies;
    Ok(Agents {
        direct: agent(None)?,
        http: proxies
            .http
            .as_deref()
            .map(|p| agent(Some(p)))
            .transpose()?,
        https: proxies
            .https
            .as_deref()
            .map(|p| agent(Some(p)))
            .transpose()?,
    })
}

fn tls_config(
    config: &TransportConfig,
) -> std::result::Result<TlsConfig, (&'static str, String, String)> {
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
        let pem = std::fs::read(file)
            .map_err(|e| (setting, file.display().to_string(), e.to_string()))?;
        roots.extend(
            certificates(&pem).map_err(|reason| (setting, file.display().to_string(), reason))?,
        );
    }
    for (i, given) in config.root_certificates.iter().enumerate() {
        let value = format!("certificate #{}", i + 1);
        roots.extend(
            certificates(given)
                .map_err(|reason| ("ClientBuilder::root_certificate", value, reason))?,
        );
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

/// A proxy URL without its password, query string or fragment, for messages.
fn redact(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            format!("{}://<credentials>@{}", &url[..s], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(no_proxy: &str) -> Proxies {
        Proxies {
            http: Some("http://proxy:3128".into()),
            https: None,
            no_proxy: no_proxy
                .split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }

    #[test]
    fn no_proxy_matches_as_curl_does() {
        let p = proxies("example.com, .internal, localhost:5000, 10.1.2.3, [::1]");
        assert!(p.bypass("example.com", 443));
        assert!(p.bypass("registry.example.com", 443));
        assert!(!p.bypass("notexample.com", 443));
        assert!(p.bypass("a.b.internal", 80));
        assert!(p.bypass("localhost", 5000));
        assert!(!p.bypass("localhost", 5001));
        assert!(p.bypass("10.1.2.3", 80));
        assert!(!p.bypass("10.1.2.4", 80));
        assert!(p.bypass("[::1]", 5000));
        assert!(proxies("*").bypass("anything", 1));
        assert!(!proxies("").bypass("anything", 1));
    }

    #[test]
    fn each_scheme_has_its_own_proxy() {
        let t = Transport::new(TransportConfig {
            proxies: Proxies {
                http: None,
                https: Some("http://127.0.0.1:9".into()),
                no_proxy: vec![],
            },
            ..Default::default()
        });
        let direct = t.agent("http://registry.local/v2/").unwrap() as *const Agent;
        let proxied = t.agent("https://registry.local/v2/").unwrap() as *const Agent;
        assert_ne!(
            direct, proxied,
            "an https URL goes through HTTPS_PROXY, an http one does not"
        );
    }

    #[test]
    fn bad_settings_are_named_and_passwords_hidden() {
        let t = Transport::new(TransportConfig {
            proxies: Proxies {
                http: Some("http://user:hunter2@[bad".into()),
                ..Default::default()
            },
            ..Default::default()
        });
        let e = t.agent("http://x/").unwrap_err().to_string();
        assert!(e.contains("proxy") && !e.contains("hunter2"), "{e}");
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
