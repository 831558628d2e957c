//! The distribution API over blocking HTTP (ureq): URLs, the Bearer token dance,
//! manifest and blob GETs, retries and status mapping. The only module that
//! touches the network; it never touches the file system.

use std::io::Read;
use std::thread;
use std::time::{Duration, Instant};

use ureq::http::Response;
use ureq::{Body, BodyReader};

mod call;
mod proxy;
pub(crate) mod range;
mod redirect;
pub(crate) mod retry;
mod reuse;
pub(crate) mod status;
mod token;
mod transport;
pub(crate) mod url;

use call::Call;
use call::{Method, host_without_port, limited, refused, transport};
pub(crate) use proxy::{NO_PROXY_VARS, NoProxy, PROXY_VARS, Proxies, ProxySetting};
use range::parse_content_range;
use redirect::is_redirect;
use retry::{is_retryable_status, is_transient, retry_after};
use reuse::{Remembered, buffered};
use status::{Answer, check_status};
use token::challenges;
use transport::Transport;
pub(crate) use transport::TransportConfig;
use url::Url;
pub use url::UrlRefusal;

use crate::auth::{
    Challenge, CredentialSources, HelperAnswers, Lookup, Next, Realm, Session, TokenStore,
};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::MANIFEST_ACCEPT;
use crate::reference::Reference;

/// A blob's body as [`Registry::open_blob`] opens it.
pub(crate) struct BlobBody {
    pub(crate) reader: BodyReader<'static>,
    /// The offset its bytes start at: the one asked for when the range was
    /// honoured, 0 when the whole blob comes.
    pub(crate) starts_at: u64,
    /// The host that answered (a CDN's, after a redirect), `host[:port]`.
    pub(crate) host: String,
}

/// Network settings taken from the client's builder.
#[derive(Debug, Clone)]
pub(crate) struct RegistryConfig {
    pub(crate) insecure_hosts: Vec<String>,
    pub(crate) max_manifest_size: u64,
    pub(crate) retries: u32,
    pub(crate) credentials: CredentialSources,
    pub(crate) transport: TransportConfig,
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
    transport: Transport,
    config: RegistryConfig,
    tokens: TokenStore,
    /// Credential helpers' answers: a helper runs once per client and server, not
    /// per request, and with no lock held.
    helpers: HelperAnswers,
    /// Each registry's challenge, and the cache's token files.
    remembered: Remembered,
}

impl Registry {
    /// Retries allowed after a failure that may pass.
    /// Runs `once` again, with backoff and within `deadline`, as long as it fails
    /// in a way `worth_again` calls passing (a download cut short, which resumes
    /// from what arrived), up to the client's number of retries.
    pub(crate) fn retrying<T, E>(
        &self,
        deadline: Option<Instant>,
        mut once: impl FnMut() -> std::result::Result<T, E>,
        worth_again: impl Fn(&E) -> bool,
    ) -> std::result::Result<T, E> {
        let mut attempt = 0;
        loop {
            match once() {
                Err(e) if attempt < self.config.retries && worth_again(&e) => {
                    // Past the deadline the next request says so (Error::Deadline),
                    // so never wait beyond it.
                    let wait = retry::backoff(attempt);
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    thread::sleep(left.map_or(wait, |l| wait.min(l)));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    pub(crate) fn new(config: RegistryConfig) -> Registry {
        Registry {
            transport: Transport::new(config.transport.clone()),
            config,
            tokens: TokenStore::default(),
            helpers: HelperAnswers::default(),
            remembered: Remembered::default(),
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

    /// A mirror's URLs carry `ns=<upstream registry>`, as containerd sends them.
    fn url(&self, r: &Reference, kind: &str, selector: &str) -> String {
        let ns = r
            .namespace()
            .map(|ns| format!("?ns={ns}"))
            .unwrap_or_default();
        format!(
            "{}://{}/v2/{}/{kind}/{selector}{ns}",
            self.scheme(r),
            r.api_host(),
            r.repository()
        )
    }

    /// GETs a manifest by tag or digest, reading at most the configured limit.
    pub(crate) fn fetch_manifest(
        &self,
        r: &Reference,
        selector: &str,
        deadline: Option<Instant>,
    ) -> Result<FetchedManifest> {
        let action = format!(
            "fetching manifest {selector} of {}/{}",
            r.registry(),
            r.repository()
        );
        let answer = self.manifest_request(Method::Get, r, selector, &action, deadline)?;
        let header = |name: &str| {
            answer
                .resp
                .headers()
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
        let host = answer.connected_to(r);
        let mut bytes = Vec::new();
        answer
            .resp
            .into_body()
            .into_reader()
            .take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| transport(&host, &action, e))?;
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
    pub(crate) fn head_manifest(
        &self,
        r: &Reference,
        deadline: Option<Instant>,
    ) -> Result<Option<Digest>> {
        let action = format!("revalidating {r}");
        let answer =
            self.manifest_request(Method::Head, r, &r.manifest_selector(), &action, deadline)?;
        Ok(answer
            .resp
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
        deadline: Option<Instant>,
    ) -> Result<BlobBody> {
        let url = self.url(r, "blobs", &digest.to_string());
        let action = format!("downloading blob {digest} of {r}");
        let range = format!("bytes={offset}-");
        let headers: &[(&str, &str)] = if offset > 0 {
            &[("range", &range)]
        } else {
            &[]
        };
        let call = Call {
            action: &action,
            deadline,
            once: r.namespace().is_some(),
        };
        let answer = match self.request(Method::Get, r, &url, headers, call) {
            // The range is past what the server holds (it may count the blob
            // differently than the manifest does): ask for all of it instead.
            Err(
                Error::Registry { status: 416, .. } | Error::RedirectTarget { status: 416, .. },
            ) if offset > 0 => {
                return self.open_blob(r, digest, 0, deadline);
            }
            other => other?,
        };
        let host = answer.connected_to(r);
        let body = |answer: Answer, starts_at| BlobBody {
            reader: answer.resp.into_body().into_reader(),
            starts_at,
            host: host.clone(),
        };
        if answer.resp.status().as_u16() != 206 {
            return Ok(body(answer, 0));
        }
        let range = answer
            .resp
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_content_range);
        let detail = match range {
            Some(range) if range.first == offset => return Ok(body(answer, offset)),
            Some(range) => format!(
                "a partial answer from byte {} when byte {offset} was asked for",
                range.first
            ),
            None => "a partial answer without a valid Content-Range".to_owned(),
        };
        Err(answer.error(r, None, Some(detail)))
    }

    /// A manifest request, accepting every manifest type we can read.
    fn manifest_request(
        &self,
        method: Method,
        r: &Reference,
        selector: &str,
        action: &str,
        deadline: Option<Instant>,
    ) -> Result<Answer> {
        let url = self.url(r, "manifests", selector);
        self.request(
            method,
            r,
            &url,
            &[("accept", MANIFEST_ACCEPT)],
            Call {
                action,
                deadline,
                once: r.namespace().is_some(),
            },
        )
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
        call: Call<'_>,
    ) -> Result<Answer> {
        let host = r.api_host();
        // Built from a validated reference; refused only for a port beyond 65535.
        let home = Url::parse(url).map_err(|e| refused(r.registry(), "registry URL", url, e))?;
        let target = home.as_request();
        let scope = format!("repository:{}:pull", r.repository());
        let mut authorization = self.token_for(r, &scope, call.deadline);
        let mut session = Session::default();
        let agent = self.transport.agent(&target)?;
        loop {
            let resp = self.send(host, call, |remaining| {
                let mut req = match method {
                    Method::Get => agent.get(&target),
                    Method::Head => agent.head(&target),
                };
                for (name, value) in headers {
                    req = req.header(*name, *value);
                }
                if let Some(value) = &authorization {
                    req = req.header("Authorization", value);
                }
                limited(req, remaining).call()
            })?;
            if is_redirect(&resp) {
                return self.follow_redirects(
                    method,
                    r,
                    &home,
                    resp,
                    headers,
                    authorization.as_deref(),
                    call,
                    session.outcome(),
                );
            }
            let answer = Answer {
                resp,
                url: home.clone(),
                foreign: false,
            };
            if answer.resp.status().as_u16() != 401 || session.answered() {
                return check_status(r, answer, session.outcome());
            }
            // Read now (it is small), so the connection is reused for the retry.
            let answer = Answer {
                resp: buffered(answer.resp),
                ..answer
            };
            // What the 401 means is the session's to decide; asking the credential
            // sources and the token service is ours.
            let challenges = challenges(&answer.resp);
            let bearer = challenges.iter().find(|c| c.scheme == "bearer");
            let realm = bearer.map(|c| self.judge_realm(c));
            let basic = challenges.iter().any(|c| c.scheme == "basic");
            let lookup = self.lookup(r, call.deadline);
            let mut next = session.on_unauthorized(lookup, realm, basic);
            authorization = loop {
                let with = match next {
                    Next::GiveUp => return check_status(r, answer, session.outcome()),
                    Next::Send(header) => break Some(header),
                    Next::AskToken(with) => with,
                };
                let Some(challenge) = bearer else {
                    return check_status(r, answer, session.outcome());
                };
                match self.fetch_token(r, challenge, &scope, with.as_ref(), call.deadline) {
                    Ok(token) => {
                        session.on_token();
                        self.keep(host, &scope, challenge, with.is_none(), &token);
                        break Some(token.header());
                    }
                    Err(Error::Token { reason, .. })
                        if matches!(reason.status(), Some(401 | 403)) =>
                    {
                        match session.on_token_refused() {
                            Some(again) => next = again,
                            // A token service that refuses us anonymously is the registry
                            // refusing access: say so with the advice.
                            None => {
                                return Err(Error::Unauthorized {
                                    reference: r.to_string(),
                                    registry: r.registry().to_owned(),
                                    detail: Some(
                                        "the token service refused anonymous access".to_owned(),
                                    ),
                                    advice: session.outcome().advice(r.registry()),
                                });
                            }
                        }
                    }
                    Err(e) => return Err(e),
                }
            };
        }
    }

    /// How a Bearer challenge's realm is judged for credentials: a URL we can read,
    /// on a host credentials may be sent to over its scheme.
    fn judge_realm(&self, challenge: &Challenge) -> Realm {
        match challenge.param("realm").and_then(|u| Url::parse(u).ok()) {
            None => Realm::Unreadable,
            Some(realm) if !self.may_send_credentials(&realm) => Realm::PlainHttp {
                realm: realm.redacted(),
                host: realm.authority(),
            },
            Some(_) => Realm::Usable,
        }
    }

    /// The credentials for the reference's repository. The files are read again
    /// on each challenge (they are small, and a 401 comes once per token); a
    /// helper's answer is kept per server, and a helper never runs past `deadline`.
    /// No lock is held while a helper runs, so a slow one holds up only the
    /// requests that wait for its answer.
    fn lookup(&self, r: &Reference, deadline: Option<Instant>) -> Lookup {
        self.config
            .credentials
            .lookup(r.registry(), r.repository(), &self.helpers, deadline)
    }

    /// Credentials cross plain HTTP only to a host the user marked insecure, judged
    /// on the host and port the URL leads to.
    fn may_send_credentials(&self, url: &Url) -> bool {
        url.is_https() || self.is_insecure(&format!("{}:{}", url.host(), url.port()))
    }

    /// Whether `host[:port]` was marked insecure: as it is, or by its bare host.
    fn is_insecure(&self, host: &str) -> bool {
        let bare = host_without_port(host);
        self.config.insecure_hosts.iter().any(|h| {
            h.eq_ignore_ascii_case(host)
                || ((!h.contains(':') || h.starts_with('[')) && h.eq_ignore_ascii_case(bare))
        })
    }

    /// Sends with retries on connection failures and on 408/429/500/502/503/504,
    /// within the call's deadline: each attempt is given the time that is left.
    fn send(
        &self,
        host: &str,
        call: Call<'_>,
        mut attempt_once: impl FnMut(
            Option<Duration>,
        ) -> std::result::Result<Response<Body>, ureq::Error>,
    ) -> Result<Response<Body>> {
        let retries = if call.once { 0 } else { self.config.retries };
        let mut attempt = 0;
        loop {
            let remaining = call
                .deadline
                .map(|d| d.saturating_duration_since(Instant::now()));
            if remaining == Some(Duration::ZERO) {
                return Err(Error::Deadline {
                    action: call.action.to_owned(),
                });
            }
            let wait = match attempt_once(remaining) {
                Ok(resp) if attempt < retries && is_retryable_status(resp.status().as_u16()) => {
                    retry_after(&resp).unwrap_or_else(|| retry::backoff(attempt))
                }
                Ok(resp) => return Ok(resp),
                Err(e) if attempt < retries && is_transient(&e) => retry::backoff(attempt),
                Err(_) if call.deadline.is_some_and(|d| Instant::now() >= d) => {
                    return Err(Error::Deadline {
                        action: call.action.to_owned(),
                    });
                }
                Err(e) => return Err(transport(host, call.action, e)),
            };
            thread::sleep(remaining.map_or(wait, |r| wait.min(r)));
            attempt += 1;
        }
    }
}
