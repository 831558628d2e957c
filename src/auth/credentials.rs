//! Where credentials come from, in the order docker, podman, oras and crane users
//! expect: the builder; `$DOCKER_CONFIG/config.json` (`credHelpers`, `auths`, then
//! `credsStore`, each helper run as `docker-credential-<name> get`); podman's
//! `auth.json`. The only I/O here is reading those files and running helpers.
//!
//! Which key of a file applies to a repository is podman's rule, and never the
//! order of a hash map: the exact `host/namespace/repository`, then its parent
//! namespaces longest first, then `host`; then, for Docker Hub, docker's
//! `https://index.docker.io/v1/`; then keys that name the host with a scheme and
//! a path (`https://host/v1/`), the first in byte order. A key without a scheme
//! that has a path is a namespace and matches only as one.
//!
//! Trouble with a source (a malformed file, a missing helper) is recorded, not
//! raised: a public pull must not fail because of local credential trouble.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::base64::{base64, decode_base64};
use super::helper::{self, Answer, HelperAnswers};
use super::keys::{DOCKER_HUB_KEY, find_key, is_docker_hub, scoped_keys};
use crate::untrusted::printable;

/// What a registry is told about who we are. Its `Debug` never shows a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    kind: Kind,
}

#[derive(Clone, PartialEq, Eq)]
enum Kind {
    Basic { username: String, password: String },
    IdentityToken(String),
}

impl Credentials {
    /// A user name and a password (or a personal access token used as one).
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            kind: Kind::Basic {
                username: username.into(),
                password: password.into(),
            },
        }
    }

    /// An OAuth2 refresh token (docker's `identitytoken`), exchanged for access tokens.
    pub fn identity_token(token: impl Into<String>) -> Credentials {
        Credentials {
            kind: Kind::IdentityToken(token.into()),
        }
    }

    /// The `Authorization: Basic …` value, or `None` for an identity token.
    pub(crate) fn basic_header(&self) -> Option<String> {
        match &self.kind {
            Kind::Basic { username, password } => Some(format!(
                "Basic {}",
                base64(format!("{username}:{password}").as_bytes())
            )),
            Kind::IdentityToken(_) => None,
        }
    }

    /// The refresh token, for an identity token.
    pub(crate) fn refresh_token(&self) -> Option<&str> {
        match &self.kind {
            Kind::IdentityToken(t) => Some(t),
            Kind::Basic { .. } => None,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Basic { username, .. } => {
                write!(f, "Credentials::Basic({username:?}, <redacted>)")
            }
            Kind::IdentityToken(_) => f.write_str("Credentials::IdentityToken(<redacted>)"),
        }
    }
}

/// Where a credential was found, for messages: never the credential itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Builder,
    /// A credential file, and the key of its `auths` entry that was used.
    File {
        path: PathBuf,
        key: String,
    },
    Helper(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Builder => f.write_str("credentials given to ClientBuilder::credentials"),
            Source::File { path, key } => write!(
                f,
                "credentials from {} (entry `{}`)",
                path.display(),
                printable(key, 200)
            ),
            Source::Helper(name) => {
                write!(f, "credentials from the helper docker-credential-{name}")
            }
        }
    }
}

/// The outcome of looking for a registry's credentials.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lookup {
    pub(crate) found: Option<(Credentials, Source)>,
    /// Sources that could not be read, with why; shown only if the pull fails.
    pub(crate) problems: Vec<String>,
}

/// The configured sources. Cheap to build: nothing is read until [`lookup`](CredentialSources::lookup).
#[derive(Debug, Clone)]
pub(crate) struct CredentialSources {
    pub(crate) given: HashMap<String, Credentials>,
    pub(crate) docker_config: Option<PathBuf>,
    pub(crate) auth_files: Vec<PathBuf>,
    /// How long a credential helper may run.
    pub(crate) helper_timeout: Duration,
}

impl Default for CredentialSources {
    /// No source at all.
    fn default() -> Self {
        CredentialSources {
            given: HashMap::new(),
            docker_config: None,
            auth_files: Vec::new(),
            helper_timeout: helper::DEFAULT_TIMEOUT,
        }
    }
}

/// How helpers are asked during one lookup.
struct Helpers<'a> {
    answers: &'a HelperAnswers,
    timeout: Duration,
    deadline: Option<Instant>,
}

impl Helpers<'_> {
    /// Asks helper `name` for `registry` (Docker Hub as docker names it); its
    /// trouble goes to `problems`.
    fn ask(&self, name: &str, registry: &str, problems: &mut Vec<String>) -> Option<Credentials> {
        let server = if is_docker_hub(registry) {
            DOCKER_HUB_KEY
        } else {
            registry
        };
        match self.answers.get(name, server, self.timeout, self.deadline) {
            Answer::Found(c) => Some(c),
            Answer::NotFound => None,
            Answer::Failed(why) | Answer::Cut(why) => {
                problems.push(why);
                None
            }
        }
    }
}

impl CredentialSources {
    /// The defaults from the environment: `$DOCKER_CONFIG` (else `~/.docker`), and
    /// podman's `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
    /// `~/.config/containers/auth.json`.
    pub(crate) fn from_env() -> CredentialSources {
        let env = |k: &'static str| {
            crate::env::var(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let home = dirs::home_dir();
        let docker_config =
            env("DOCKER_CONFIG").or_else(|| home.as_ref().map(|h| h.join(".docker")));
        let auth_files = [
            env("REGISTRY_AUTH_FILE"),
            env("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")),
            home.map(|h| h.join(".config/containers/auth.json")),
        ]
        .into_iter()
        .flatten()
        .collect();
        CredentialSources {
            docker_config,
            auth_files,
            ..CredentialSources::default()
        }
    }

    /// Finds credentials for `repository` of `registry` (`host[:port]`, as in
    /// references). The builder's keys are tried as a file's are, exact and
    /// namespaces only. A helper's answer is taken from `answers`, or it runs,
    /// for at most the helper timeout and never past `deadline`.
    pub(crate) fn lookup(
        &self,
        registry: &str,
        repository: &str,
        answers: &HelperAnswers,
        deadline: Option<Instant>,
    ) -> Lookup {
        let helpers = Helpers {
            answers,
            timeout: self.helper_timeout,
            deadline,
        };
        let mut lookup = Lookup::default();
        if let Some(c) = scoped_keys(registry, repository)
            .iter()
            .find_map(|k| self.given.get(k))
        {
            lookup.found = Some((c.clone(), Source::Builder));
            return lookup;
        }
        if let Some(dir) = &self.docker_config {
            let path = dir.join("config.json");
            match read_config(&path) {
                Ok(Some(config)) => {
                    if let Some(found) = from_docker_config(
                        &config,
                        &path,
                        (registry, repository),
                        &helpers,
                        &mut lookup.problems,
                    ) {
                        lookup.found = Some(found);
                        return lookup;
                    }
                }
                Ok(None) => {}
                Err(e) => lookup.problems.push(e),
            }
        }
        for path in &self.auth_files {
            match read_config(path) {
                Ok(Some(config)) => {
                    if let Some(found) = find_auth(
                        &config.auths,
                        registry,
                        repository,
                        path,
                        &mut lookup.problems,
                    ) {
                        lookup.found = Some(found);
                        return lookup;
                    }
                }
                Ok(None) => {}
                Err(e) => lookup.problems.push(e),
            }
        }
        lookup
    }
}

/// Ordered maps: when several keys could apply, the choice never depends on a
/// hash map's iteration order.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// The credentials a credential file's bytes hold for `repository` of `registry`
/// (`auths` only: helpers are not run), and the helper `credHelpers` names for
/// the registry. For the fuzz target and its regression inputs.
#[cfg(any(feature = "__fuzz", test))]
pub(crate) fn parse_credential_file(
    data: &[u8],
    registry: &str,
    repository: &str,
) -> Option<(Option<String>, Option<Credentials>)> {
    let config: ConfigFile = serde_json::from_slice(data).ok()?;
    let helper = find_key(&config.cred_helpers, registry, "").map(|(_, name)| name.clone());
    let found = find_auth(
        &config.auths,
        registry,
        repository,
        Path::new("fuzz-input"),
        &mut Vec::new(),
    );
    Some((helper, found.map(|(c, _)| c)))
}

/// `Ok(None)` when the file does not exist.
fn read_config(path: &Path) -> Result<Option<ConfigFile>, String> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    // serde's message could quote the file, which holds secrets: give the position only.
    serde_json::from_slice(&text).map(Some).map_err(|e| {
        format!(
            "{} is not valid JSON (line {}, column {})",
            path.display(),
            e.line(),
            e.column()
        )
    })
}

/// `credHelpers` (matched on the registry alone: helpers are asked for a host,
/// never a namespace), then `auths`, then `credsStore`.
fn from_docker_config(
    config: &ConfigFile,
    path: &Path,
    (registry, repository): (&str, &str),
    helpers: &Helpers<'_>,
    problems: &mut Vec<String>,
) -> Option<(Credentials, Source)> {
    if let Some((_, name)) = find_key(&config.cred_helpers, registry, "") {
        return helpers
            .ask(name, registry, problems)
            .map(|c| (c, Source::Helper(name.clone())));
    }
    if let Some(found) = find_auth(&config.auths, registry, repository, path, problems) {
        return Some(found);
    }
    let store = config.creds_store.as_ref().filter(|s| !s.is_empty())?;
    helpers
        .ask(store, registry, problems)
        .map(|c| (c, Source::Helper(store.clone())))
}

/// The `auths` entry for `repository` of `registry` (see [`find_key`]), decoded,
/// with where it came from. The entry chosen is the only one used: when it holds
/// no secret (docker writes `{}` when a credsStore holds the real one), this file
/// has none for the repository.
fn find_auth(
    auths: &BTreeMap<String, AuthEntry>,
    registry: &str,
    repository: &str,
    path: &Path,
    problems: &mut Vec<String>,
) -> Option<(Credentials, Source)> {
    let (key, entry) = find_key(auths, registry, repository)?;
    let source = || Source::File {
        path: path.to_path_buf(),
        key: key.to_owned(),
    };
    if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Some((Credentials::identity_token(token.clone()), source()));
    }
    if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
        if !u.is_empty() {
            return Some((Credentials::basic(u.clone(), p.clone()), source()));
        }
    }
    let auth = entry.auth.as_ref().filter(|a| !a.is_empty())?;
    let decoded = decode_base64(auth).and_then(|b| String::from_utf8(b).ok());
    match decoded.as_deref().and_then(|d| d.split_once(':')) {
        Some((u, p)) => Some((Credentials::basic(u, p), source())),
        None => {
            problems.push(format!(
                "the `auth` of entry `{}` in {} is not base64 of user:password",
                printable(key, 200),
                path.display()
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let c = Credentials::basic("alice", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credentials::identity_token("tok-123")).contains("tok-123"));
    }

    fn lookup(s: &CredentialSources, registry: &str, repository: &str) -> Lookup {
        s.lookup(registry, repository, &HelperAnswers::default(), None)
    }

    fn config(dir: &Path, json: &str) -> CredentialSources {
        std::fs::write(dir.join("config.json"), json).unwrap();
        CredentialSources {
            docker_config: Some(dir.to_path_buf()),
            ..Default::default()
        }
    }

    #[test]
    fn docker_config_auths() {
        let dir = tempfile::tempdir().unwrap();
        let s = config(
            dir.path(),
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},
                         "ghcr.io":{"username":"u","password":"p"},
                         "quay.io":{"identitytoken":"refresh"},
                         "empty.io":{}}}"#,
        );
        let hub = lookup(&s, "docker.io", "library/a").found.unwrap();
        assert_eq!(hub.0, Credentials::basic("user", "pass"));
        assert_eq!(
            hub.1,
            Source::File {
                path: dir.path().join("config.json"),
                key: "https://index.docker.io/v1/".to_owned()
            }
        );
        assert_eq!(
            lookup(&s, "ghcr.io", "o/a").found.unwrap().0,
            Credentials::basic("u", "p")
        );
        assert_eq!(
            lookup(&s, "quay.io", "o/a").found.unwrap().0,
            Credentials::identity_token("refresh")
        );
        assert!(lookup(&s, "empty.io", "o/a").found.is_none());
        assert!(lookup(&s, "other.io", "o/a").found.is_none());
    }

    #[test]
    fn credential_files_from_bytes_and_fuzz_regressions() {
        let known = br#"{"auths":{"https://registry.example:5000/v1/":{"auth":"dXNlcjpwYXNz"}},
                          "credHelpers":{"registry.example:5000":"pass"}}"#;
        assert_eq!(
            parse_credential_file(known, "registry.example:5000", "a/b"),
            Some((
                Some("pass".to_owned()),
                Some(Credentials::basic("user", "pass"))
            ))
        );
        assert_eq!(parse_credential_file(b"{\"auths\": 7}", "x", "a"), None);
        // Inputs that once crashed the fuzz target, if any were kept.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz/credentials");
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            crate::__fuzz::credentials(&std::fs::read(entry.path()).unwrap());
        }
    }

    #[test]
    fn trouble_is_recorded_not_raised() {
        let dir = tempfile::tempdir().unwrap();
        let s = config(
            dir.path(),
            r#"{"auths": {"ghcr.io": {"auth": "secret-not-base64!"}}, "#,
        );
        let l = lookup(&s, "ghcr.io", "o/a");
        assert!(l.found.is_none());
        assert!(
            l.problems[0].contains("is not valid JSON"),
            "{:?}",
            l.problems
        );
        let s = config(
            dir.path(),
            r#"{"credHelpers": {"ghcr.io": "no-such-helper-anywhere"}}"#,
        );
        let l = lookup(&s, "ghcr.io", "o/a");
        assert!(l.found.is_none());
        assert!(
            l.problems[0].contains("docker-credential-no-such-helper-anywhere"),
            "{:?}",
            l.problems
        );
    }
}
