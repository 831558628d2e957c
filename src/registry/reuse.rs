//! Fewer round trips and connections: a 401's small body is read so its
//! connection goes back to the pool; each registry's Bearer challenge is
//! remembered, so a request with no fresh token asks the token service first
//! instead of meeting the 401 again; and anonymous tokens are kept in the cache
//! ([`TokenFiles`]) for the next process, per realm, service and scope, until
//! they expire. A token asked for with credentials stays in this process.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::Instant;

use ureq::Body;
use ureq::http::Response;

use super::Registry;
use super::call::MAX_ERROR_BODY;
use crate::auth::{Challenge, Lookup, Next, Session, Token};
use crate::cache::{RememberedChallenge, TokenFiles};
use crate::error::Error;
use crate::reference::Reference;

/// Challenges met, by registry host, and where to keep them across processes.
#[derive(Debug, Default)]
pub(crate) struct Remembered {
    /// `None`: none to ask ahead with (none kept, or its token service failed).
    challenges: Mutex<HashMap<String, Option<Known>>>,
    files: Option<TokenFiles>,
}

/// A challenge to ask ahead with, and whether the registry sent it to this
/// process (else it was read from the cache: some earlier answer at that
/// address, which may not have been the registry's).
#[derive(Debug, Clone)]
struct Known {
    challenge: RememberedChallenge,
    live: bool,
}

impl Remembered {
    fn challenge(&self, host: &str) -> Option<Known> {
        let mut map = self.challenges.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = map.get(host) {
            return known.clone();
        }
        // Read once per process and host, found or not.
        let found = self
            .files
            .as_ref()
            .and_then(|files| files.challenge(host))
            .map(|challenge| Known {
                challenge,
                live: false,
            });
        map.insert(host.to_owned(), found.clone());
        found
    }

    /// Stops asking ahead for `host`, in this process and the next ones (its
    /// token service failed: the 401s that follow say what is wrong, once each).
    fn forget(&self, host: &str) {
        let mut map = self.challenges.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(host.to_owned(), None);
        if let Some(files) = &self.files {
            files.forget_challenge(host);
        }
    }

    fn remember(&self, host: &str, challenge: &RememberedChallenge) {
        let mut map = self.challenges.lock().unwrap_or_else(|p| p.into_inner());
        let known = map.get(host).and_then(Option::as_ref);
        if known.map(|k| &k.challenge) != Some(challenge) {
            if let Some(files) = &self.files {
                files.remember_challenge(host, challenge);
            }
        }
        let live = Known {
            challenge: challenge.clone(),
            live: true,
        };
        map.insert(host.to_owned(), Some(live));
    }
}

impl Registry {
    /// Keeps anonymous tokens and challenges in `files` (the cache's) too.
    pub(crate) fn with_token_files(mut self, files: TokenFiles) -> Registry {
        self.remembered.files = Some(files);
        self
    }

    /// The `Authorization` to send first for `scope` on `r`'s registry: a fresh
    /// token of this process; else, for the challenge the registry gave last,
    /// an anonymous token kept in the cache when there are no credentials for
    /// it (with credentials, their own token is wanted: Docker Hub, for one,
    /// counts anonymous pulls against a lower limit), else one asked for now
    /// from that challenge's realm. `None` when the registry never challenged
    /// us (or asking failed: the 401 that follows is then answered as usual).
    pub(super) fn token_for(
        &self,
        r: &Reference,
        scope: &str,
        deadline: Option<Instant>,
    ) -> Option<String> {
        let host = r.api_host();
        if let Some(token) = self.tokens.get(host, scope) {
            return Some(token.header());
        }
        let known = self.remembered.challenge(host)?;
        // As a 401 would: the files are read, and a helper runs, outside any lock.
        let lookup = self.lookup(r, deadline);
        // Credentials go only to a realm the registry itself named to this
        // process. A challenge read from the cache may have come from whatever
        // answered at that address once (a squatted localhost port, a hostile
        // network in front of plain HTTP): asking it ahead with credentials
        // would send them there on every later pull. With credentials, the
        // registry's own 401 comes first (one round trip more, in a new process).
        if lookup.found.is_some() && !known.live {
            return None;
        }
        let remembered = known.challenge;
        let kept = match (&lookup.found, &self.remembered.files) {
            (None, Some(files)) => files
                .token(&remembered, scope)
                .and_then(|(value, expires)| Token::until(value, expires)),
            _ => None,
        };
        if let Some(token) = kept {
            self.tokens.put(host, scope, token.clone());
            return Some(token.header());
        }
        self.ask_ahead(r, scope, &remembered, lookup, deadline)
    }

    /// Answers `remembered` as if the registry had just sent it, with a session
    /// of its own: the request's own session still answers one real 401.
    fn ask_ahead(
        &self,
        r: &Reference,
        scope: &str,
        remembered: &RememberedChallenge,
        lookup: Lookup,
        deadline: Option<Instant>,
    ) -> Option<String> {
        let mut params = vec![("realm".to_owned(), remembered.realm.clone())];
        if let Some(service) = &remembered.service {
            params.push(("service".to_owned(), service.clone()));
        }
        let challenge = Challenge {
            scheme: "bearer".to_owned(),
            params,
        };
        let mut session = Session::default();
        let realm = self.judge_realm(&challenge);
        let mut next = session.on_unauthorized(lookup, Some(realm), false);
        loop {
            let Next::AskToken(with) = next else {
                return None;
            };
            match self.fetch_token(r, &challenge, scope, with.as_ref(), deadline) {
                Ok(token) => {
                    self.keep(r.api_host(), scope, &challenge, with.is_none(), &token);
                    return Some(token.header());
                }
                Err(Error::Token { reason, .. }) if matches!(reason.status(), Some(401 | 403)) => {
                    next = session.on_token_refused()?
                }
                Err(_) => {
                    self.remembered.forget(r.api_host());
                    return None;
                }
            }
        }
    }

    /// Stores a token the realm of `challenge` gave for `scope`: in this
    /// process, and in the cache when it was asked for `anonymously`. Remembers
    /// the challenge.
    pub(super) fn keep(
        &self,
        host: &str,
        scope: &str,
        challenge: &Challenge,
        anonymously: bool,
        token: &Token,
    ) {
        self.tokens.put(host, scope, token.clone());
        let Some(realm) = challenge.param("realm") else {
            return;
        };
        let remembered = RememberedChallenge {
            realm: realm.to_owned(),
            service: challenge.param("service").map(str::to_owned),
        };
        self.remembered.remember(host, &remembered);
        // Kept under the scope this process asks with, as in memory.
        if let (true, Some(files)) = (anonymously, &self.remembered.files) {
            files.keep_token(&remembered, scope, token.secret(), token.expires_at());
        }
    }
}

/// `resp` with its body read (at most [`MAX_ERROR_BODY`]) and held in memory,
/// so that its connection goes back to the pool for the next request instead
/// of being closed with an unread body.
pub(super) fn buffered(resp: Response<Body>) -> Response<Body> {
    let (parts, body) = resp.into_parts();
    let mut bytes = Vec::new();
    // A body that fails to read explains nothing; the status still does.
    let _ = body
        .into_reader()
        .take(MAX_ERROR_BODY)
        .read_to_end(&mut bytes);
    Response::from_parts(parts, Body::builder().data(bytes))
}
