//! The token dance: asking a realm for a Bearer token (anonymously, with Basic
//! credentials, or by the OAuth2 refresh-token grant), and what to tell a person
//! when access is refused.

use std::io::Read;
use std::time::Instant;

use ureq::Body;
use ureq::http::Response;

use super::Registry;
use super::call::{Call, MAX_TOKEN_RESPONSE, limited, refused, transport};
use super::url::{Url, UrlRefusal};
use crate::auth::{Challenge, Credentials, Token, parse_challenges, parse_token_answer};
use crate::error::{Error, Result, TokenFailure};
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
            reason: TokenFailure::NoRealm,
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
        let fail = |reason: TokenFailure| Error::Token {
            registry: registry.to_owned(),
            realm: realm.redacted(),
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
            once: false,
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
            return Err(fail(match (status, credentials.is_some()) {
                (401 | 403, true) => TokenFailure::CredentialsRefused { status },
                _ => TokenFailure::Status { status },
            }));
        }
        let mut body = Vec::new();
        resp.into_body()
            .into_reader()
            .take(MAX_TOKEN_RESPONSE + 1)
            .read_to_end(&mut body)
            .map_err(|e| transport(realm_host, "reading a token response", e))?;
        if body.len() as u64 > MAX_TOKEN_RESPONSE {
            return Err(fail(TokenFailure::TooLarge {
                limit: MAX_TOKEN_RESPONSE,
            }));
        }
        parse_token_answer(&body).map_err(fail)
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

#[cfg(test)]
mod failures {
    use super::tests_support::*;
    use crate::error::{Error, TokenFailure};

    #[test]
    fn each_token_failure_is_typed() {
        for (status, body, with_credentials, expected) in [
            (
                401,
                "",
                true,
                TokenFailure::CredentialsRefused { status: 401 },
            ),
            (
                403,
                "",
                true,
                TokenFailure::CredentialsRefused { status: 403 },
            ),
            (401, "", false, TokenFailure::Status { status: 401 }),
            (500, "", true, TokenFailure::Status { status: 500 }),
            (
                200,
                "<html>",
                false,
                TokenFailure::NotJson { line: 1, column: 1 },
            ),
            (200, "{}", false, TokenFailure::NoToken),
        ] {
            let realm = answer_once(status, body);
            match ask_at(&realm, with_credentials) {
                Err(Error::Token {
                    reason, realm: r, ..
                }) => {
                    assert_eq!(reason, expected, "HTTP {status} {body:?}");
                    assert_eq!(reason.status(), (status != 200).then_some(status));
                    assert!(r.starts_with("http://127.0.0.1:"), "{r}");
                }
                other => panic!("HTTP {status} {body:?}: expected a token error, got {other:?}"),
            }
        }
    }
}

/// A token endpoint that answers one request, for the failure tests.
#[cfg(test)]
mod tests_support {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::Registry;
    use crate::auth::{CredentialSources, Credentials, Token, parse_challenges};
    use crate::error::Result;
    use crate::registry::{RegistryConfig, TransportConfig};

    /// The realm URL of a server that answers the next request with `status` and `body`.
    pub(super) fn answer_once(status: u16, body: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        });
        format!("http://127.0.0.1:{port}/token")
    }

    pub(super) fn ask_at(realm: &str, with_credentials: bool) -> Result<Token> {
        let registry = Registry::new(RegistryConfig {
            insecure_hosts: vec!["127.0.0.1".to_owned()],
            max_manifest_size: 1024,
            retries: 0,
            credentials: CredentialSources::default(),
            transport: TransportConfig {
                connect_timeout: std::time::Duration::from_secs(5),
                read_timeout: std::time::Duration::from_secs(5),
                ..Default::default()
            },
        });
        let challenge = parse_challenges(&format!(r#"Bearer realm="{realm}",service="s""#))
            .unwrap()
            .remove(0);
        let creds = Credentials::basic("u", "p");
        registry.token_from(
            "127.0.0.1",
            false,
            &challenge,
            "repository:a:pull",
            with_credentials.then_some(&creds),
            None,
        )
    }
}
