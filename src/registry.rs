//! The distribution API over blocking HTTP (ureq): URLs, the Bearer token dance,
//! manifest and blob GETs, retries and status mapping. The only module that
//! touches the network; it never touches the file system.

use std::io::Read;
use std::thread;
use std::time::Duration;

use ureq::http::Response;
use ureq::{Agent, Body, BodyReader};

use std::collections::HashMap;
use std::sync::Mutex;

use crate::auth::{
    Challenge, CredentialSources, Credentials, Lookup, Source, Token, TokenResponse, TokenStore,
    parse_challenges,
};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::MANIFEST_ACCEPT;
use crate::reference::Reference;

/// Redirects followed for one request (ureq's default, and what docker allows).
const MAX_REDIRECTS: usize = 10;
/// Token answers are a few KiB; anything near this is not a token.
const MAX_TOKEN_RESPONSE: u64 = 128 << 10;
/// How much of an error body is read to explain a failure.
const MAX_ERROR_BODY: u64 = 64 << 10;
/// The longest wait a `Retry-After` header may impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Network settings taken from the client's builder.
#[derive(Debug, Clone)]
pub(crate) struct RegistryConfig {
    pub(crate) insecure_hosts: Vec<String>,
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) max_manifest_size: u64,
    pub(crate) retries: u32,
    pub(crate) credentials: CredentialSources,
}

/// A manifest as the registry sent it.
pub(crate) struct FetchedManifest {
    pub(crate) bytes: Vec<u8>,
    pub(crate) content_type: Option<String>,
    /// `Docker-Content-Digest`, when present and non-empty.
    pub(crate) content_digest: Option<String>,
}

/// A connection pool plus the tokens it has earned.
#[derive(Debug)]
pub(crate) struct Registry {
    agent: Agent,
    config: RegistryConfig,
    tokens: TokenStore,
    /// Credential lookups by registry: helpers run once per client, not per request.
    lookups: Mutex<HashMap<String, Lookup>>,
}

impl Registry {
    /// Retries allowed after a failure that may pass.
    pub(crate) fn retries(&self) -> u32 {
        self.config.retries
    }

    pub(crate) fn new(config: RegistryConfig) -> Registry {
        let agent_config = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(config.connect_timeout))
            .timeout_recv_response(Some(config.read_timeout))
            .timeout_per_read(Some(config.read_timeout))
            // Redirects are followed hop by hop in `follow_redirects`, which decides
            // per hop whether Authorization goes along.
            .max_redirects(0)
            .user_agent(concat!("forge-oci/", env!("CARGO_PKG_VERSION")))
            .build();
        Registry {
            agent: Agent::new_with_config(agent_config),
            config,
            tokens: TokenStore::default(),
            lookups: Mutex::default(),
        }
    }

    /// `https`, or `http` for hosts the user marked insecure.
    fn scheme(&self, r: &Reference) -> &'static str {
        if self.is_insecure(r.api_host()) || self.is_insecure(r.registry()) {
            "http"
        } else {
            "https"
        }
    }

    fn url(&self, r: &Reference, kind: &str, selector: &str) -> String {
        format!(
            "{}://{}/v2/{}/{kind}/{selector}",
            self.scheme(r),
            r.api_host(),
            r.repository()
        )
    }

    /// GETs a manifest by tag or digest, reading at most the configured limit.
    pub(crate) fn fetch_manifest(&self, r: &Reference, selector: &str) -> Result<FetchedManifest> {
        let url = self.url(r, "manifests", selector);
        let action = format!(
            "fetching manifest {selector} of {}/{}",
            r.registry(),
            r.repository()
        );
        let resp = self.request(
            Method::Get,
            r,
            &url,
            &[("accept", MANIFEST_ACCEPT)],
            &action,
        )?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let content_type = header("content-type");
        let content_digest = header("docker-content-digest");
        let limit = self.config.max_manifest_size;
        let too_large = || Error::TooLarge {
            what: "manifest",
            reference: r.to_string(),
            limit,
        };
        // Refuse an announced oversize body without reading any of it.
        if header("content-length")
            .and_then(|l| l.parse::<u64>().ok())
            .is_some_and(|l| l > limit)
        {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        resp.into_body()
            .into_reader()
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| transport(r.api_host(), &action, e))?;
        if bytes.len() as u64 > limit {
            return Err(too_large());
        }
        Ok(FetchedManifest {
            bytes,
            content_type,
            content_digest,
        })
    }

    /// The digest the registry gives for the reference's tag now, from a HEAD
    /// (which Docker Hub does not count against its pull rate limit). `None` when
    /// the registry sends no sha256 `Docker-Content-Digest`.
    pub(crate) fn head_manifest(&self, r: &Reference) -> Result<Option<Digest>> {
        let url = self.url(r, "manifests", &r.manifest_selector());
        let action = format!("revalidating {r}");
        let resp = self.request(
            Method::Head,
            r,
            &url,
            &[("accept", MANIFEST_ACCEPT)],
            &action,
        )?;
        Ok(resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok()))
    }

    /// GETs a blob from byte `offset` on and returns its body as a stream with the
    /// offset it really starts at: `offset` when the registry honoured the range
    /// (206), 0 when it sent the whole blob (200). The caller verifies the content.
    pub(crate) fn open_blob(
        &self,
        r: &Reference,
        digest: &Digest,
        offset: u64,
    ) -> Result<(BodyReader<'static>, u64)> {
        let url = self.url(r, "blobs", &digest.to_string());
        let action = format!("downloading blob {digest} of {r}");
        let range = format!("bytes={offset}-");
        let headers: &[(&str, &str)] = if offset > 0 {
            &[("range", &range)]
        } else {
            &[]
        };
        let resp = self.request(Method::Get, r, &url, headers, &action)?;
        if resp.status().as_u16() != 206 {
            return Ok((resp.into_body().into_reader(), 0));
        }
        let starts_at = resp
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("bytes ")?
                    .split('-')
                    .next()?
                    .parse::<u64>()
                    .ok()
            });
        if starts_at != Some(offset) {
            return Err(Error::Registry {
                registry: r.registry().to_owned(),
                url,
                status: 206,
                code: None,
                detail: Some(format!(
                    "a partial answer that does not start at byte {offset}"
                )),
            });
        }
        Ok((resp.into_body().into_reader(), offset))
    }

    /// One request with the auth dance: send with a stored token if any; on a 401,
    /// answer the challenge once (never in a loop): a Bearer token from the realm,
    /// asked with the registry's credentials if there are any (and anonymously if
    /// they are rejected), or the credentials themselves for a Basic challenge.
    fn request(
        &self,
        method: Method,
        r: &Reference,
        url: &str,
        headers: &[(&str, &str)],
        action: &str,
    ) -> Result<Response<Body>> {
        let host = r.api_host();
        let scope = format!("repository:{}:pull", r.repository());
        let mut authorization = self.tokens.get(host, &scope).map(|t| t.header());
        let mut auth = AuthOutcome::default();
        loop {
            let resp = self.send(host, action, || {
                let mut req = match method {
                    Method::Get => self.agent.get(url),
                    Method::Head => self.agent.head(url),
                };
                for (name, value) in headers {
                    req = req.header(*name, *value);
                }
                if let Some(value) = &authorization {
                    req = req.header("Authorization", value);
                }
                req.call()
            })?;
            if is_redirect(&resp) {
                return self.follow_redirects(
                    method,
                    r,
                    url,
                    resp,
                    headers,
                    authorization.as_deref(),
                    action,
                    &auth,
                );
            }
            if resp.status().as_u16() != 401 || auth.answered {
                return check_status(r, url, resp, &auth);
            }
            auth.answered = true;
            let challenges = challenges(&resp);
            let lookup = self.lookup(r.registry());
            auth.problems.clone_from(&lookup.problems);
            if let Some(challenge) = challenges.iter().find(|c| c.scheme == "bearer") {
                // A token service that refuses us anonymously is the registry refusing
                // access: say so with the advice, not as a token-service failure.
                let anonymously =
                    |auth: &AuthOutcome| match self.fetch_token(r, challenge, &scope, None) {
                        Err(Error::Token {
                            status: Some(401 | 403),
                            ..
                        }) => Err(Error::Unauthorized {
                            reference: r.to_string(),
                            registry: r.registry().to_owned(),
                            detail: Some("the token service refused anonymous access".to_owned()),
                            advice: auth.advice(r.registry()),
                        }),
                        other => other,
                    };
                let realm = challenge.param("realm").unwrap_or_default();
                let found = match &lookup.found {
                    Some((_, source)) if !self.may_send_credentials(realm) => {
                        auth.withheld = Some((source.clone(), realm.to_owned()));
                        None
                    }
                    found => found.as_ref(),
                };
                let token = match found {
                    Some((credentials, source)) => {
                        match self.fetch_token(r, challenge, &scope, Some(credentials)) {
                            Err(Error::Token {
                                status: Some(401 | 403),
                                ..
                            }) => {
                                auth.rejected = Some(source.clone());
                                anonymously(&auth)?
                            }
                            other => {
                                auth.used = Some(source.clone());
                                other?
                            }
                        }
                    }
                    None => anonymously(&auth)?,
                };
                self.tokens.put(host, &scope, token.clone());
                authorization = Some(token.header());
                continue;
            }
            let basic = challenges.iter().any(|c| c.scheme == "basic");
            match (&lookup.found, basic) {
                (Some((credentials, source)), true) if credentials.basic_header().is_some() => {
                    auth.used = Some(source.clone());
                    auth.sent_directly = true;
                    authorization = credentials.basic_header();
                }
                _ => return check_status(r, url, resp, &auth),
            }
        }
    }

    /// Follows redirects one hop at a time, up to [`MAX_REDIRECTS`]. `Authorization`
    /// goes only to the registry's own origin (scheme, host and port); a hop to another
    /// origin that challenges on its own gets its own anonymous token, never the
    /// registry's credentials. A hop from HTTPS down to plain HTTP is refused.
    #[allow(clippy::too_many_arguments)] // one private call site; a struct would only rename them
    fn follow_redirects(
        &self,
        method: Method,
        r: &Reference,
        from: &str,
        mut resp: Response<Body>,
        headers: &[(&str, &str)],
        authorization: Option<&str>,
        action: &str,
        auth: &AuthOutcome,
    ) -> Result<Response<Body>> {
        let home = origin(from).to_owned();
        let mut current = from.to_owned();
        for _ in 0..MAX_REDIRECTS {
            let Some(location) = resp.headers().get("location").and_then(|v| v.to_str().ok())
            else {
                break;
            };
            let next = resolve(&current, location);
            let refuse = |detail: String| Error::Registry {
                registry: r.registry().to_owned(),
                url: current.clone(),
                status: resp.status().as_u16(),
                code: None,
                detail: Some(detail),
            };
            if !(next.starts_with("https://") || next.starts_with("http://")) {
                return Err(refuse(format!(
                    "a redirect to `{next}`, which is not an http(s) URL"
                )));
            }
            if current.starts_with("https://") && next.starts_with("http://") {
                return Err(refuse(format!(
                    "a redirect from HTTPS down to plain HTTP ({next}); refused"
                )));
            }
            let same_origin = origin(&next) == home;
            let host = origin(&next)
                .split("://")
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            let hop = |authorization: Option<&str>| {
                self.send(&host, action, || {
                    let mut req = match method {
                        Method::Get => self.agent.get(&next),
                        Method::Head => self.agent.head(&next),
                    };
                    for (name, value) in headers {
                        req = req.header(*name, *value);
                    }
                    if let Some(value) = authorization {
                        req = req.header("Authorization", value);
                    }
                    req.call()
                })
            };
            resp = hop(if same_origin { authorization } else { None })?;
            if !same_origin && resp.status().as_u16() == 401 {
                if let Some(challenge) =
                    challenges(&resp).into_iter().find(|c| c.scheme == "bearer")
                {
                    let token =
                        self.token_from(&host, next.starts_with("https://"), &challenge, "", None)?;
                    resp = hop(Some(&token.header()))?;
                }
            }
            current = next;
            if !is_redirect(&resp) {
                break;
            }
        }
        if is_redirect(&resp) {
            return Err(Error::Registry {
                registry: r.registry().to_owned(),
                url: current,
                status: resp.status().as_u16(),
                code: None,
                detail: Some(format!("more than {MAX_REDIRECTS} redirects")),
            });
        }
        check_status(r, &current, resp, auth)
    }

    /// The credentials for `registry`, looked up once per client.
    fn lookup(&self, registry: &str) -> Lookup {
        let mut lookups = self.lookups.lock().unwrap_or_else(|p| p.into_inner());
        lookups
            .entry(registry.to_owned())
            .or_insert_with(|| self.config.credentials.lookup(registry))
            .clone()
    }

    /// Asks the challenge's realm for a pull token: anonymously, with Basic
    /// credentials, or by the OAuth2 refresh-token POST for an identity token
    /// (falling back to a GET where the POST is refused, as docker does).
    fn fetch_token(
        &self,
        r: &Reference,
        challenge: &Challenge,
        default_scope: &str,
        credentials: Option<&Credentials>,
    ) -> Result<Token> {
        self.token_from(
            r.api_host(),
            self.scheme(r) == "https",
            challenge,
            default_scope,
            credentials,
        )
    }

    /// [`Registry::fetch_token`] for any origin: `registry` names it in errors,
    /// `https` says whether it was reached over TLS (then a plain-HTTP realm is refused).
    fn token_from(
        &self,
        registry: &str,
        https: bool,
        challenge: &Challenge,
        default_scope: &str,
        credentials: Option<&Credentials>,
    ) -> Result<Token> {
        let fail = |realm: &str, status: Option<u16>, reason: String| Error::Token {
            registry: registry.to_owned(),
            realm: realm.split('?').next().unwrap_or_default().to_owned(),
            status,
            reason,
        };
        let realm = challenge.param("realm").ok_or_else(|| {
            fail(
                "(none)",
                None,
                "the registry's Bearer challenge names no realm".to_owned(),
            )
        })?;
        if !(realm.starts_with("https://") || realm.starts_with("http://")) {
            return Err(fail(
                realm,
                None,
                "the realm is not an http(s) URL".to_owned(),
            ));
        }
        if realm.starts_with("http://") && https {
            return Err(fail(
                realm,
                None,
                "refusing a plain-HTTP token realm for an HTTPS registry".to_owned(),
            ));
        }
        let realm_host = realm
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(['/', '?']).next())
            .unwrap_or(realm);
        // Checked by the caller too (to say so); here so no path can forget it.
        let credentials = credentials.filter(|_| self.may_send_credentials(realm));
        let scope = challenge.param("scope").unwrap_or(default_scope);
        let service = challenge.param("service");
        let get = |authorization: Option<String>| {
            self.send(realm_host, "requesting a token", || {
                let mut req = self.agent.get(realm);
                if let Some(service) = service {
                    req = req.query("service", service);
                }
                if let Some(value) = &authorization {
                    req = req.header("Authorization", value);
                }
                req.query("scope", scope).call()
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
                    let posted = self.send(realm_host, "requesting a token", || {
                        self.agent.post(realm).send_form(form)
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
            return Err(fail(realm, Some(status), reason));
        }
        let mut body = Vec::new();
        resp.into_body()
            .into_reader()
            .take(MAX_TOKEN_RESPONSE + 1)
            .read_to_end(&mut body)
            .map_err(|e| transport(realm_host, "reading a token response", e))?;
        if body.len() as u64 > MAX_TOKEN_RESPONSE {
            return Err(fail(
                realm,
                None,
                format!("the token response exceeds {MAX_TOKEN_RESPONSE} bytes"),
            ));
        }
        // serde's message could quote part of the body, which may hold a token: give the position only.
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            fail(
                realm,
                None,
                format!(
                    "the token response is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        parsed.into_token().ok_or_else(|| {
            fail(
                realm,
                None,
                "the token response has neither `token` nor `access_token`".to_owned(),
            )
        })
    }

    /// Credentials cross plain HTTP only to a host the user marked insecure.
    fn may_send_credentials(&self, url: &str) -> bool {
        match url.strip_prefix("http://") {
            Some(rest) => self.is_insecure(rest.split(['/', '?']).next().unwrap_or(rest)),
            None => url.starts_with("https://"),
        }
    }

    fn is_insecure(&self, host: &str) -> bool {
        let bare = host_without_port(host);
        self.config
            .insecure_hosts
            .iter()
            .any(|h| h == host || ((!h.contains(':') || h.starts_with('[')) && h == bare))
    }

    /// Sends with retries on connection failures and on 429/502/503/504.
    fn send(
        &self,
        host: &str,
        action: &str,
        mut attempt_once: impl FnMut() -> std::result::Result<Response<Body>, ureq::Error>,
    ) -> Result<Response<Body>> {
        let mut attempt = 0;
        loop {
            let wait = match attempt_once() {
                Ok(resp)
                    if attempt < self.config.retries
                        && is_retryable_status(resp.status().as_u16()) =>
                {
                    retry_after(&resp).unwrap_or_else(|| backoff(attempt))
                }
                Ok(resp) => return Ok(resp),
                Err(e) if attempt < self.config.retries && is_transient(&e) => backoff(attempt),
                Err(e) => return Err(transport(host, action, e)),
            };
            thread::sleep(wait);
            attempt += 1;
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Method {
    Get,
    Head,
}

fn transport(host: &str, action: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Transport {
        host: host.to_owned(),
        action: action.to_owned(),
        source: Box::new(e),
    }
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    }
}

fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

fn is_transient(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::Timeout(_)
    )
}

/// 200 ms doubling per attempt (capped at 6.4 s), half of it jittered so that a
/// fleet of clients failing together does not retry together.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = 200u64 << attempt.min(5);
    Duration::from_millis(base / 2 + random() % (base / 2 + 1))
}

/// A random number without a dependency: `RandomState` is seeded per process and
/// per call from the OS's randomness.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// `Retry-After` as seconds or as an HTTP date, capped at [`MAX_RETRY_AFTER`].
fn retry_after(resp: &Response<Body>) -> Option<Duration> {
    let value = resp.headers().get("retry-after")?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_secs();
            Duration::from_secs(parse_http_date(value)?.saturating_sub(now))
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) as seconds since the epoch.
fn parse_http_date(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? as i64 + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + m * 60 + sec).ok()
}

fn is_redirect(resp: &Response<Body>) -> bool {
    matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308)
        && resp.headers().contains_key("location")
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    url[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(url, |end| &url[..after_scheme + end])
}

/// `location` read against `base`: absolute URLs as they are, `/path` on the same
/// origin, anything else beside the base's last path segment.
fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        location.to_owned()
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{}://{rest}", base.split("://").next().unwrap_or("https"))
    } else if location.starts_with('/') {
        format!("{}{location}", origin(base))
    } else {
        let dir = base.split('?').next().unwrap_or(base);
        format!("{}/{location}", &dir[..dir.rfind('/').unwrap_or(dir.len())])
    }
}

fn challenges(resp: &Response<Body>) -> Vec<Challenge> {
    resp.headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| parse_challenges(v).ok())
        .flatten()
        .collect()
}

/// What happened with credentials during one request, for the error if it fails.
#[derive(Debug, Default)]
struct AuthOutcome {
    /// A challenge was answered already; a second 401 is final.
    answered: bool,
    /// Credentials that were sent and accepted by the token service (or sent as Basic).
    used: Option<Source>,
    /// Credentials the token service refused, after which we tried anonymously.
    rejected: Option<Source>,
    /// `used` went to the registry itself (a Basic challenge), so a refusal rejects them.
    sent_directly: bool,
    /// Credentials not sent because the realm is plain HTTP on a host not marked insecure.
    withheld: Option<(Source, String)>,
    /// Sources that could not be read.
    problems: Vec<String>,
}

impl AuthOutcome {
    /// What to tell a person whose request was refused.
    fn advice(&self, registry: &str) -> String {
        let login = format!(
            "log in with `docker login {registry}` (podman, oras and crane logins work too) or pass credentials to ClientBuilder::credentials"
        );
        if let Some((source, realm)) = &self.withheld {
            let host = realm
                .split("://")
                .nth(1)
                .and_then(|r| r.split('/').next())
                .unwrap_or(realm);
            return format!(
                "the {source} were not sent: the token service {realm} uses plain HTTP and {host} is not marked insecure (FORGE_OCI_INSECURE_HOSTS)"
            );
        }
        if let (Some(source), true) = (&self.used, self.sent_directly) {
            return format!(
                "the {source} were rejected; log in again with `docker login {registry}` or fix them"
            );
        }
        match (&self.rejected, &self.used) {
            (Some(source), _) => {
                format!("the {source} were rejected, and anonymous access was refused too; {login}")
            }
            (None, Some(source)) => {
                format!("the {source} were sent but do not grant access to this repository")
            }
            (None, None) if !self.problems.is_empty() => {
                format!(
                    "no usable credentials ({}); {login}",
                    self.problems.join("; ")
                )
            }
            (None, None) => format!("the repository may be private or the name misspelt; {login}"),
        }
    }
}

/// Passes 2xx through; turns anything else into the matching typed error.
fn check_status(
    r: &Reference,
    url: &str,
    resp: Response<Body>,
    auth: &AuthOutcome,
) -> Result<Response<Body>> {
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(resp);
    }
    let (code, detail) = read_error_body(resp);
    let reference = r.to_string();
    let registry = r.registry().to_owned();
    Err(match status {
        401 => Error::Unauthorized {
            advice: auth.advice(&registry),
            reference,
            registry,
            detail,
        },
        403 => Error::Denied {
            advice: auth.advice(&registry),
            reference,
            registry,
            detail,
        },
        404 => Error::NotFound {
            reference,
            registry,
            detail,
        },
        _ => Error::Registry {
            registry,
            url: url.to_owned(),
            status,
            code,
            detail,
        },
    })
}

/// Reads a registry error body: `{"errors":[{"code":…,"message":…}]}` or plain
/// text. Returns the first code and a one-line summary.
fn read_error_body(resp: Response<Body>) -> (Option<String>, Option<String>) {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    let mut body = Vec::new();
    // The body only adds detail to an error we already have; a failed read leaves it out.
    let _ = resp
        .into_body()
        .into_reader()
        .take(MAX_ERROR_BODY)
        .read_to_end(&mut body);
    if let Ok(env) = serde_json::from_slice::<Envelope>(&body) {
        let code = env.errors.iter().find_map(|e| e.code.clone());
        let summary = env
            .errors
            .iter()
            .map(|e| match (&e.code, &e.message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.clone(),
                (None, Some(m)) => m.clone(),
                (None, None) => "unspecified error".to_owned(),
            })
            .collect::<Vec<_>>()
            .join("; ");
        return (code, (!summary.is_empty()).then_some(summary));
    }
    let text = String::from_utf8_lossy(&body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        (None, None)
    } else if text.starts_with('<') {
        (None, Some("the registry sent an HTML page".to_owned()))
    } else {
        (None, Some(text.chars().take(200).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_http_realm_is_refused_for_an_https_registry_before_any_request() {
        let registry = Registry::new(RegistryConfig {
            insecure_hosts: Vec::new(),
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            max_manifest_size: 1024,
            retries: 0,
            credentials: CredentialSources::default(),
        });
        // Port 9 (discard): were a request attempted, this would be a transport error instead.
        let challenge = parse_challenges(r#"Bearer realm="http://127.0.0.1:9/token",service="s""#)
            .unwrap()
            .remove(0);
        let creds = Credentials::basic("u", "p");
        match registry.token_from(
            "ghcr.io",
            true,
            &challenge,
            "repository:a:pull",
            Some(&creds),
        ) {
            Err(Error::Token { reason, .. }) => {
                assert!(reason.contains("plain-HTTP token realm"), "{reason}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(!registry.may_send_credentials("http://127.0.0.1:9/token"));
        assert!(registry.may_send_credentials("https://auth.example/token"));
    }

    #[test]
    fn redirect_targets_resolve_against_their_base() {
        let base = "https://reg.io:5000/v2/a/blobs/sha256:1?x=y";
        assert_eq!(origin(base), "https://reg.io:5000");
        assert_eq!(resolve(base, "https://cdn.io/b"), "https://cdn.io/b");
        assert_eq!(resolve(base, "/elsewhere"), "https://reg.io:5000/elsewhere");
        assert_eq!(resolve(base, "//cdn.io/c"), "https://cdn.io/c");
        assert_eq!(
            resolve(base, "sibling"),
            "https://reg.io:5000/v2/a/blobs/sibling"
        );
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Sat, 28 Nov 2026 09:00:00 GMT"),
            Some(1_795_856_400)
        );
        assert_eq!(parse_http_date("tomorrow"), None);
        assert_eq!(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"), None);
    }

    #[test]
    fn backoff_grows_and_jitters_within_bounds() {
        for attempt in 0..8 {
            let base = 200u64 << attempt.min(5);
            let d = backoff(attempt).as_millis() as u64;
            assert!((base / 2..=base).contains(&d), "attempt {attempt}: {d} ms");
        }
    }

    #[test]
    fn host_without_port_handles_ipv6() {
        assert_eq!(host_without_port("[::1]:5000"), "[::1]");
        assert_eq!(host_without_port("localhost:5000"), "localhost");
        assert_eq!(host_without_port("ghcr.io"), "ghcr.io");
    }
}
