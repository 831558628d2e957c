//! What a registry's 401 means and what to send next, decided without I/O. The
//! registry's request loop hands a [`Session`] what the challenge said, the
//! credentials it found and how it judged the token realm; the session says
//! what to do (ask the realm for a token, with credentials or anonymously; send
//! the credentials themselves; or let the 401 stand) and keeps what happened,
//! so a refusal can say which credentials were tried and what to do.
//!
//! The rules: one challenge is answered per request, never in a loop;
//! credentials cross plain HTTP only to a realm the registry may send them to;
//! credentials the token service refuses are followed by an anonymous attempt
//! (a public repository must not fail over stale credentials).

use super::credentials::{Credentials, Lookup, Source};

/// How the registry judged a Bearer challenge's realm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Realm {
    /// Credentials may be sent there.
    Usable,
    /// It is no URL we can read: nothing is sent there (the token request fails
    /// on it, naming it).
    Unreadable,
    /// Plain HTTP on a host not marked insecure: no credentials go there.
    PlainHttp {
        /// The realm, redacted.
        realm: String,
        /// Its `host[:port]`, as it would be marked insecure.
        host: String,
    },
}

/// What to do after a 401.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// The 401 is the answer.
    GiveUp,
    /// Send the request again with this `Authorization` value.
    Send(String),
    /// Ask the Bearer challenge's realm for a token, with these credentials, or
    /// anonymously.
    AskToken(Option<Credentials>),
}

/// One request's dealings with challenges.
#[derive(Debug, Default)]
pub(crate) struct Session {
    outcome: AuthOutcome,
    /// The source of the credentials in the token request under way.
    asking_with: Option<Source>,
}

impl Session {
    /// What happened so far, for the error if the request fails.
    pub(crate) fn outcome(&self) -> &AuthOutcome {
        &self.outcome
    }

    /// Whether a challenge was answered already: a second 401 is final.
    pub(crate) fn answered(&self) -> bool {
        self.outcome.answered
    }

    /// A 401 came with a Bearer challenge whose realm is judged `bearer` (if any)
    /// and perhaps a Basic one; `lookup` is what the credential sources hold.
    pub(crate) fn on_unauthorized(
        &mut self,
        lookup: Lookup,
        bearer: Option<Realm>,
        basic: bool,
    ) -> Next {
        self.outcome.answered = true;
        self.outcome.problems = lookup.problems;
        let found = lookup.found;
        match bearer {
            Some(realm) => {
                let with = match (found, realm) {
                    (Some((credentials, source)), Realm::Usable) => {
                        self.asking_with = Some(source);
                        Some(credentials)
                    }
                    (Some((_, source)), Realm::PlainHttp { realm, host }) => {
                        self.outcome.withheld = Some(Withheld {
                            source,
                            realm,
                            host,
                        });
                        None
                    }
                    (Some(_), Realm::Unreadable) | (None, _) => None,
                };
                Next::AskToken(with)
            }
            None => match found {
                Some((credentials, source)) if basic => match credentials.basic_header() {
                    Some(header) => {
                        self.outcome.used = Some(source);
                        self.outcome.sent_directly = true;
                        Next::Send(header)
                    }
                    None => Next::GiveUp,
                },
                _ => Next::GiveUp,
            },
        }
    }

    /// The token service gave a token.
    pub(crate) fn on_token(&mut self) {
        if let Some(source) = self.asking_with.take() {
            self.outcome.used = Some(source);
        }
    }

    /// The token service refused the request (401 or 403). After credentials, try
    /// anonymously; after an anonymous request, `None`: the refusal stands.
    pub(crate) fn on_token_refused(&mut self) -> Option<Next> {
        let source = self.asking_with.take()?;
        self.outcome.rejected = Some(source);
        Some(Next::AskToken(None))
    }
}

/// What happened with credentials during one request, for the error if it fails.
#[derive(Debug, Default)]
pub(crate) struct AuthOutcome {
    /// A challenge was answered already; a second 401 is final.
    pub(crate) answered: bool,
    /// Credentials that were sent and accepted by the token service (or sent as Basic).
    pub(crate) used: Option<Source>,
    /// Credentials the token service refused, after which we tried anonymously.
    pub(crate) rejected: Option<Source>,
    /// `used` went to the registry itself (a Basic challenge), so a refusal rejects them.
    pub(crate) sent_directly: bool,
    /// Credentials not sent because the realm is plain HTTP on a host not marked insecure.
    pub(crate) withheld: Option<Withheld>,
    /// Sources that could not be read.
    pub(crate) problems: Vec<String>,
}

/// Credentials held back from a plain-HTTP token realm.
#[derive(Debug)]
pub(crate) struct Withheld {
    pub(crate) source: Source,
    /// The realm, redacted.
    pub(crate) realm: String,
    /// The realm's `host[:port]`, as it would be marked insecure.
    pub(crate) host: String,
}

impl AuthOutcome {
    /// What to tell a person whose request was refused.
    pub(crate) fn advice(&self, registry: &str) -> String {
        let login = format!(
            "log in with `docker login {registry}` (podman, oras and crane logins work too) or pass credentials to ClientBuilder::credentials"
        );
        if let Some(Withheld {
            source,
            realm,
            host,
        }) = &self.withheld
        {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn found(user: &str) -> Lookup {
        Lookup {
            found: Some((
                Credentials::basic(user, "secret"),
                Source::File {
                    path: PathBuf::from("/home/u/.docker/config.json"),
                    key: "ghcr.io".into(),
                },
            )),
            problems: Vec::new(),
        }
    }

    fn none() -> Lookup {
        Lookup {
            found: None,
            problems: vec!["a broken file".into()],
        }
    }

    #[test]
    fn a_bearer_challenge_asks_for_a_token_with_credentials_then_anonymously() {
        let mut s = Session::default();
        assert_eq!(
            s.on_unauthorized(found("alice"), Some(Realm::Usable), false),
            Next::AskToken(Some(Credentials::basic("alice", "secret")))
        );
        assert!(s.answered());
        assert_eq!(s.on_token_refused(), Some(Next::AskToken(None)));
        assert_eq!(s.on_token_refused(), None, "anonymous refused: it stands");
        let advice = s.outcome().advice("ghcr.io");
        assert!(
            advice.contains("were rejected, and anonymous access was refused too"),
            "{advice}"
        );
    }

    #[test]
    fn credentials_never_go_to_a_plain_http_realm_or_an_unreadable_one() {
        let mut s = Session::default();
        let plain = Realm::PlainHttp {
            realm: "http://auth.example/token".into(),
            host: "auth.example".into(),
        };
        assert_eq!(
            s.on_unauthorized(found("alice"), Some(plain), false),
            Next::AskToken(None)
        );
        assert!(s.outcome().advice("ghcr.io").contains("were not sent"));
        let mut s = Session::default();
        assert_eq!(
            s.on_unauthorized(found("alice"), Some(Realm::Unreadable), false),
            Next::AskToken(None)
        );
        s.on_token();
        assert_eq!(s.outcome().used, None, "nothing was sent");
    }

    #[test]
    fn basic_challenges_get_the_credentials_themselves_and_nothing_else_gives_up() {
        let mut s = Session::default();
        match s.on_unauthorized(found("bob"), None, true) {
            Next::Send(header) => assert!(header.starts_with("Basic ")),
            other => panic!("{other:?}"),
        }
        assert!(
            s.outcome()
                .advice("r")
                .contains("were rejected; log in again")
        );
        let mut s = Session::default();
        assert_eq!(s.on_unauthorized(none(), None, true), Next::GiveUp);
        assert!(s.outcome().advice("r").contains("a broken file"));
        let mut s = Session::default();
        assert_eq!(s.on_unauthorized(found("bob"), None, false), Next::GiveUp);
    }

    #[test]
    fn a_granted_token_records_the_credentials_it_used() {
        let mut s = Session::default();
        let _ = s.on_unauthorized(found("carol"), Some(Realm::Usable), false);
        s.on_token();
        assert!(
            s.outcome()
                .advice("r")
                .contains("were sent but do not grant access")
        );
    }
}
