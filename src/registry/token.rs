//! The token dance: asking a realm for a Bearer token (anonymously, with Basic
//! credentials, or by the OAuth2 refresh-token grant), and what to tell a person
//! when access is refused.

use std::io::Read;
use std::time::Instant;

use ureq::Body;
use ureq::http::Response;

use super::url::{Url, UrlRefusal};
use super::{Call, MAX_TOKEN_RESPONSE, Registry, limited, refused, transport};
use crate::auth::{Challenge, Credentials, Token, parse_challenges, parse_token_answer};
use crate::error::{Error, Result};
use crate::reference::Reference;

impl Registry {
    /// Asks the challenge's realm for a pull token: anonymously, with Basic
    /// credentials, or by the OAuth2 refresh-token POST for an identity token
    /// (falling back to a GET where the POST is refused, as docker does).
    pub(super) fn fetch_token(
        &self,
        r: &Reference,
        challenge: &Challenge,
        default_scope: &str,
        credentials: Option<&Credentials>,
        deadline: Option<Instant>,
    ) -> Result<Token> {
        self.token_from(
            r.api_host(),
            self.scheme(r) == "https",
            challenge,
            default_scope,
            credentials,
            deadline,
        )
    }

    /// [`Registry::fetch_token`] for any origin: `registry` names it in errors,
    /// `https` says whether it was reached over TLS (then a plain-HTTP realm is refused).
    pub(super) fn token_from(
        &self,
        registry: &str,
        https: bool,
        challenge: &Challenge,
        default_scope: &str,
        credentials: Option<&Credentials>,
        deadline: Option<Instant>,
    ) -> Result<Token> {
        let raw = challenge.param("realm").ok_or_else(|| Error::Token {
            registry: registry.to_owned(),
            realm: "(none)".to_owned(),
            status: None,
            reason: "the registry's Bearer challenge names no realm".to_owned(),
        })?;
        // Judged on the host and port ureq will contact; user information refused.
        let realm = Url::parse(raw).map_err(|e| refused(registry, "token realm", raw, e))?;
        if https && !realm.is_https() {
            return Err(Error::RefusedUrl {
                registry: registry.to_owned(),
                what: "token realm",
                host: Some(realm.authority()),
                url: realm.redacted(),
                reason: UrlRefusal::PlainHttpRealm,
            });
        }
        let fail = |status: Option<u16>, reason: String| Error::Token {
            registry: registry.to_owned(),
            realm: realm.redacted(),
            status,
            reason,
        };
        let realm_host = realm.authority();
        let realm_host = realm_host.as_str();
        // Checked by the caller too (to say so); here so no path can forget it.
        let credentials = credentials.filter(|_| self.may_send_credentials(&realm));
        let scope = challenge.param("scope").unwrap_or(default_scope);
        let service = challenge.param("service");
        let call = Call {
            action: "requesting a token",
            deadline,
        };
        let target = realm.as_request();
        let agent = self.transport.agent(&target)?;
        let get = |authorization: Option<String>| {
            self.send(realm_host, call, |remaining| {
                let mut req = agent.get(&target);
                if let Some(service) = service {
                    req = req.query("service", service);
                }
                if let Some(value) = &authorization {
                    req = req.header("Authorization", value);
                }
                limited(req.query("scope", scope), remaining).call()
            })
        };
        let resp = match credentials {
            Some(c) => match c.refresh_token() {
                Some(refresh) => {
                    let form = [
                        ("grant_type", "refresh_token"),
                        ("service", service.unwrap_or_default()),
                        ("scope", scope),
                        ("client_id", "forge-oci"),
                        ("refresh_token", refresh),
                    ];
                    let posted = self.send(realm_host, call, |remaining| {
                        limited(agent.post(&target), remaining).send_form(form)
                    })?;
                    if matches!(posted.status().as_u16(), 404 | 405) {
                        get(Some(format!(
                            "Basic {}",
                            crate::auth::base64(format!("<token>:{refresh}").as_bytes())
                        )))?
                    } else {
                        posted
                    }
                }
                None => get(c.basic_header())?,
            },
            None => get(None)?,
        };
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            let reason = match (status, credentials.is_some()) {
                (401 | 403, true) => {
                    format!("the token endpoint refused the credentials (HTTP {status})")
                }
                _ => format!("the token endpoint answered HTTP {status}"),
            };
            return Err(fail(Some(status), reason));
        }
        let mut body = Vec::new();
        resp.into_body()
            .into_reader()
            .take(MAX_TOKEN_RESPONSE + 1)
            .read_to_end(&mut body)
            .map_err(|e| transport(realm_host, "reading a token response", e))?;
        if body.len() as u64 > MAX_TOKEN_RESPONSE {
            return Err(fail(
                None,
                format!("the token response exceeds {MAX_TOKEN_RESPONSE} bytes"),
            ));
        }
        parse_token_answer(&body).map_err(|e| fail(None, e.to_string()))
    }
}

pub(super) fn challenges(resp: &Response<Body>) -> Vec<Challenge> {
    resp.headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| parse_challenges(v).ok())
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::CredentialSources;
    use crate::registry::{RegistryConfig, TransportConfig};
    use std::time::Duration;

    fn registry(insecure: &[&str]) -> Registry {
        Registry::new(RegistryConfig {
            insecure_hosts: insecure.iter().map(|h| (*h).to_owned()).collect(),
            max_manifest_size: 1024,
            retries: 0,
            credentials: CredentialSources::default(),
            transport: TransportConfig {
                connect_timeout: Duration::from_secs(1),
                read_timeout: Duration::from_secs(1),
                ..Default::default()
            },
        })
    }

    /// `token_from` for a challenge with `realm`, with credentials; port 9
    /// (discard) in realms means that a request attempted would be a transport error.
    fn ask(registry: &Registry, https: bool, realm: &str) -> Result<Token> {
        let challenge = parse_challenges(&format!(r#"Bearer realm="{realm}",service="s""#))
            .unwrap()
            .remove(0);
        let creds = Credentials::basic("u", "p");
        registry.token_from(
            "ghcr.io",
            https,
            &challenge,
            "repository:a:pull",
            Some(&creds),
            None,
        )
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn a_plain_http_realm_is_refused_for_an_https_registry_before_any_request() {
        let registry = registry(&[]);
        match ask(&registry, true, "http://127.0.0.1:9/token") {
            Err(Error::RefusedUrl {
                what: "token realm",
                host: Some(host),
                reason: UrlRefusal::PlainHttpRealm,
                ..
            }) => assert_eq!(host, "127.0.0.1:9"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(!registry.may_send_credentials(&url("http://127.0.0.1:9/token")));
        assert!(registry.may_send_credentials(&url("https://auth.example/token")));
    }

    #[test]
    fn a_realm_with_userinfo_is_refused_naming_the_host_it_leads_to() {
        let registry = registry(&["127.0.0.1"]);
        match ask(
            &registry,
            false,
            "http://127.0.0.1:x@localhost:9/token?secret=1",
        ) {
            Err(
                e @ Error::RefusedUrl {
                    reason: UrlRefusal::UserInfo,
                    ..
                },
            ) => {
                let Error::RefusedUrl { host, url, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(host.as_deref(), Some("localhost:9"));
                assert_eq!(url, "http://localhost:9/token");
                let msg = e.to_string();
                assert!(
                    !msg.contains("127.0.0.1") && !msg.contains("secret"),
                    "{msg}"
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn plain_http_is_judged_on_the_host_and_port_contacted() {
        let registry = registry(&["127.0.0.1", "LocalHost:5000", "[::1]"]);
        for (realm, allowed) in [
            ("http://127.0.0.1:9/token", true),
            ("http://localhost:5000/token", true),
            ("http://localhost:5001/token", false),
            ("http://localhost/token", false),
            ("http://[::1]:9/token", true),
            ("http://127.0.0.2/token?127.0.0.1", false),
            ("https://anything.example/token", true),
        ] {
            assert_eq!(
                registry.may_send_credentials(&url(realm)),
                allowed,
                "{realm}"
            );
        }
        let registry = self::registry(&["localhost:80"]);
        assert!(registry.may_send_credentials(&url("http://localhost/token")));
    }
}
