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
//! the Mozilla roots. A bundle or certificate that holds no certificate fails every
//! request, whatever its scheme, with `Error::Config` naming it: rustls would skip
//! what it cannot read and trust nothing.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use ureq::Agent;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use super::proxy::{Proxies, ProxySetting, redact, ureq_proxy};
use crate::error::{Error, Result, SettingProblem};

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
    reason: SettingProblem,
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
            .timeout_connect(super::call::finite(config.connect_timeout))
            .timeout_recv_response(super::call::finite(config.read_timeout))
            .timeout_per_read(super::call::finite(config.read_timeout))
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
        let unusable = |reason: SettingProblem| Unusable {
            setting,
            value: file.display().to_string(),
            reason,
        };
        let pem = read_bundle(file).map_err(unusable)?;
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

/// Every certificate in a PEM bundle, or the one DER certificate the bytes are.
/// Anything else is refused, saying why: rustls skips a certificate it cannot
/// read, so an empty file, text or random bytes taken as a certificate left
/// nothing trusted, and every registry failed with "unknown issuer".
fn certificates(bytes: &[u8]) -> std::result::Result<Vec<Certificate<'static>>, SettingProblem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(SettingProblem::NoContent);
    }
    if is_der_certificate(bytes) {
        return Ok(vec![Certificate::from_der(bytes).to_owned()]);
    }
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(SettingProblem::NotPemOrDer);
    }
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(bytes) {
        match item {
            Ok(PemItem::Certificate(c)) if is_der_certificate(c.der()) => certs.push(c.to_owned()),
            Ok(PemItem::Certificate(_)) => {
                return Err(SettingProblem::NotX509 {
                    index: certs.len() + 1,
                });
            }
            Ok(_) => {}
            Err(_) => return Err(SettingProblem::InvalidPem),
        }
    }
    if certs.is_empty() {
        return Err(SettingProblem::NoCertificate);
    }
    Ok(certs)
}

/// Whether `der` has the shape of an X.509 certificate in DER: one SEQUENCE of
/// two SEQUENCEs (the signed part, the signature algorithm) and a BIT STRING
/// (the signature), with nothing after it. Text and random bytes never do.
fn is_der_certificate(der: &[u8]) -> bool {
    let Some((0x30, certificate, [])) = der_item(der) else {
        return false;
    };
    let Some((0x30, _, rest)) = der_item(certificate) else {
        return false;
    };
    let Some((0x30, _, rest)) = der_item(rest) else {
        return false;
    };
    matches!(der_item(rest), Some((0x03, _, [])))
}

/// The first DER item of `bytes`: its tag, its contents, and what follows it.
/// Lengths are definite, as DER requires, and at most four bytes long.
fn der_item(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81..=0x84 => {
            let (len, rest) = rest.split_at_checked(usize::from(first & 0x7f))?;
            let len = len.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b));
            (usize::try_from(len).ok()?, rest)
        }
        _ => return None,
    };
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((tag, contents, rest))
}

/// A CA bundle's bytes: a regular file (never a FIFO or a device that would
/// block or never end) of at most 16 MiB (the system bundle is about 200 KiB).
fn read_bundle(file: &std::path::Path) -> std::result::Result<Vec<u8>, SettingProblem> {
    use std::io::Read;
    const LIMIT: u64 = 16 << 20;
    let unreadable = |e: std::io::Error| SettingProblem::Unreadable { kind: e.kind() };
    let f = std::fs::File::open(file).map_err(unreadable)?;
    let meta = f.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(SettingProblem::NotARegularFile);
    }
    let mut bytes = Vec::new();
    f.take(LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > LIMIT {
        return Err(SettingProblem::TooLarge { limit: LIMIT });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_bundle_that_is_not_a_regular_file_is_refused_without_reading_it() {
        // /dev/zero never ends; a FIFO would block.
        let e = read_bundle(std::path::Path::new("/dev/zero")).unwrap_err();
        assert_eq!(e, SettingProblem::NotARegularFile);
    }
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
    }

    /// A self-signed P-256 certificate, `openssl req -x509` made.
    const PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBiTCCAS+gAwIBAgIUWcsSBMa13FApXHa6XVmXGldqtDEwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOZm9yZ2Utb2NpLXRlc3QwIBcNMjYxMjAxMTYxNjU2WhgPMjEy
NjExMDcxNjE2NTZaMBkxFzAVBgNVBAMMDmZvcmdlLW9jaS10ZXN0MFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAErqprE57PmXy57s9ZN9RPKqH/rwN3QG8tFLU7LH5j
TS3iB/Y+UB64L7edjozWrFr3UjjZnBHakQtZh3VhcwDCAKNTMFEwHQYDVR0OBBYE
FJNbF5LH92tUqz4SRsu4gXOP3bV6MB8GA1UdIwQYMBaAFJNbF5LH92tUqz4SRsu4
gXOP3bV6MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIhAPXdApS2
XF28P91HGOId6T5NZQrLjs1NG774QIIRC16kAiAaBljOxBIbmjSntGVdN5/P4HAj
TZg9ise2JU/nt3Y0pg==
-----END CERTIFICATE-----
";

    #[test]
    fn certificates_are_pem_or_der_and_nothing_else_passes() {
        assert_eq!(certificates(PEM.as_bytes()).unwrap().len(), 1);
        let two = format!("a comment\n{PEM}\n{PEM}trailing text\n");
        assert_eq!(certificates(two.as_bytes()).unwrap().len(), 2);
        let der = certificates(PEM.as_bytes()).unwrap()[0].der().to_vec();
        assert_eq!(certificates(&der).unwrap()[0].der(), der);

        let refused = |bytes: &[u8]| certificates(bytes).unwrap_err();
        assert_eq!(refused(b""), SettingProblem::NoContent);
        assert_eq!(refused(b" \n\t\n"), SettingProblem::NoContent);
        let neither = SettingProblem::NotPemOrDer;
        assert_eq!(refused(b"not a certificate\n"), neither);
        assert_eq!(refused(&[0x30, 0x82, 0xff, 0xff, 1, 2, 3]), neither);
        assert_eq!(refused(&der[..der.len() - 1]), neither);
        assert_eq!(refused(&[der.as_slice(), b"x"].concat()), neither);
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_eq!(refused(&noise), neither);
        assert_eq!(
            refused(b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"),
            SettingProblem::NoCertificate
        );
        assert_eq!(
            refused(b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n"),
            SettingProblem::NotX509 { index: 1 }
        );
        assert_eq!(
            refused(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
            SettingProblem::InvalidPem
        );
    }

    #[test]
    fn an_unusable_cert_file_is_named_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        for (name, content, reason) in [
            ("empty.pem", &b""[..], SettingProblem::NoContent),
            ("text.pem", b"hello\n", SettingProblem::NotPemOrDer),
        ] {
            let file = dir.path().join(name);
            std::fs::write(&file, content).unwrap();
            let t = Transport::new(TransportConfig {
                cert_file: Some(file.clone()),
                ..Default::default()
            });
            let e = t.agent("https://x/").unwrap_err();
            let Error::Config {
                setting,
                value,
                reason: why,
            } = &e
            else {
                panic!("{e:?}");
            };
            assert_eq!(
                (*setting, value.as_str()),
                ("SSL_CERT_FILE", file.to_str().unwrap())
            );
            assert_eq!(*why, reason, "{e}");
            // Plain HTTP needs the same agents, so it fails the same way.
            assert!(t.agent("http://x/").is_err());
        }
    }
}
