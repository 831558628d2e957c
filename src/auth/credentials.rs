//! Where credentials come from, in the order docker, podman, oras and crane users
//! expect: the builder; `$DOCKER_CONFIG/config.json` (`credHelpers`, `auths`, then
//! `credsStore`, each helper run as `docker-credential-<name> get`); podman's
//! `auth.json`. The only I/O here is reading those files and running helpers.
//!
//! Trouble with a source (a malformed file, a missing helper) is recorded, not
//! raised: a public pull must not fail because of local credential trouble.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

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
    File(PathBuf),
    Helper(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Builder => f.write_str("credentials given to ClientBuilder::credentials"),
            Source::File(p) => write!(f, "credentials from {}", p.display()),
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
#[derive(Debug, Clone, Default)]
pub(crate) struct CredentialSources {
    pub(crate) given: HashMap<String, Credentials>,
    pub(crate) docker_config: Option<PathBuf>,
    pub(crate) auth_files: Vec<PathBuf>,
}

impl CredentialSources {
    /// The defaults from the environment: `$DOCKER_CONFIG` (else `~/.docker`), and
    /// podman's `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
    /// `~/.config/containers/auth.json`.
    pub(crate) fn from_env() -> CredentialSources {
        let env = |k: &str| {
            std::env::var_os(k)
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
            given: HashMap::new(),
            docker_config,
            auth_files,
        }
    }

    /// Finds credentials for `registry` (`host[:port]`, as in references).
    pub(crate) fn lookup(&self, registry: &str) -> Lookup {
        let mut lookup = Lookup::default();
        if let Some(c) = self.given.get(registry) {
            lookup.found = Some((c.clone(), Source::Builder));
            return lookup;
        }
        if let Some(dir) = &self.docker_config {
            let path = dir.join("config.json");
            match read_config(&path) {
                Ok(Some(config)) => {
                    if let Some(found) =
                        from_docker_config(&config, &path, registry, &mut lookup.problems)
                    {
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
                    if let Some(c) = find_auth(&config.auths, registry, path, &mut lookup.problems)
                    {
                        lookup.found = Some((c, Source::File(path.clone())));
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

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
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

/// The credentials a credential file's bytes hold for `registry` (`auths` only:
/// helpers are not run). For the fuzz target and its regression inputs.
#[cfg(any(feature = "__fuzz", test))]
pub(crate) fn parse_credential_file(data: &[u8], registry: &str) -> Option<Credentials> {
    let config: ConfigFile = serde_json::from_slice(data).ok()?;
    let _helper = config
        .cred_helpers
        .iter()
        .find(|(k, _)| key_matches(k, registry));
    find_auth(
        &config.auths,
        registry,
        Path::new("fuzz-input"),
        &mut Vec::new(),
    )
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

fn from_docker_config(
    config: &ConfigFile,
    path: &Path,
    registry: &str,
    problems: &mut Vec<String>,
) -> Option<(Credentials, Source)> {
    let helper = config
        .cred_helpers
        .iter()
        .find(|(key, _)| key_matches(key, registry))
        .map(|(_, name)| name);
    if let Some(name) = helper {
        return run_helper(name, registry, problems).map(|c| (c, Source::Helper(name.clone())));
    }
    if let Some(c) = find_auth(&config.auths, registry, path, problems) {
        return Some((c, Source::File(path.to_path_buf())));
    }
    let store = config.creds_store.as_ref().filter(|s| !s.is_empty())?;
    run_helper(store, registry, problems).map(|c| (c, Source::Helper(store.clone())))
}

/// The `auths` entry for `registry`, decoded. Entries with no secret (docker writes
/// `{}` when a credsStore holds the real one) are skipped.
fn find_auth(
    auths: &HashMap<String, AuthEntry>,
    registry: &str,
    path: &Path,
    problems: &mut Vec<String>,
) -> Option<Credentials> {
    let entry = auths
        .iter()
        .filter(|(key, _)| key_matches(key, registry))
        // Prefer the exact spelling when several keys normalise to the same host.
        .max_by_key(|(key, _)| key.as_str() == registry)
        .map(|(_, e)| e)?;
    if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Some(Credentials::identity_token(token.clone()));
    }
    if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
        if !u.is_empty() {
            return Some(Credentials::basic(u.clone(), p.clone()));
        }
    }
    let auth = entry.auth.as_ref().filter(|a| !a.is_empty())?;
    let decoded = decode_base64(auth).and_then(|b| String::from_utf8(b).ok());
    match decoded.as_deref().and_then(|d| d.split_once(':')) {
        Some((u, p)) => Some(Credentials::basic(u, p)),
        None => {
            problems.push(format!(
                "the `auth` for {registry} in {} is not base64 of user:password",
                path.display()
            ));
            None
        }
    }
}

/// Docker's matching: a key may carry a scheme and a path (`https://index.docker.io/v1/`);
/// only its host counts. Docker Hub answers to several names.
fn key_matches(key: &str, registry: &str) -> bool {
    let host = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = host.split('/').next().unwrap_or(host);
    let hub = |h: &str| matches!(h, "docker.io" | "index.docker.io" | "registry-1.docker.io");
    host == registry || (hub(host) && hub(registry))
}

/// Runs `docker-credential-<name> get` with the server on stdin.
fn run_helper(name: &str, registry: &str, problems: &mut Vec<String>) -> Option<Credentials> {
    let program = format!("docker-credential-{name}");
    let server = if matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        "https://index.docker.io/v1/"
    } else {
        registry
    };
    let child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            problems.push(format!("cannot run {program}: {e}"));
            return None;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is judged by its exit status below.
        let _ = stdin.write_all(server.as_bytes());
    }
    let output = match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => {
            problems.push(format!("{program} failed: {e}"));
            return None;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // "credentials not found" is how helpers say they hold nothing for this server.
        let said = format!(
            "{} {}",
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        if !said.to_ascii_lowercase().contains("not found") {
            problems.push(format!(
                "{program} get failed ({}): {}",
                output.status,
                said.trim()
            ));
        }
        return None;
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct HelperAnswer {
        username: String,
        secret: String,
    }
    match serde_json::from_slice::<HelperAnswer>(&output.stdout) {
        Ok(a) if a.username == "<token>" => Some(Credentials::identity_token(a.secret)),
        Ok(a) => Some(Credentials::basic(a.username, a.secret)),
        Err(_) => {
            problems.push(format!(
                "{program} get did not print {{\"Username\",\"Secret\"}} JSON"
            ));
            None
        }
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding; small enough not to need a crate.
pub(crate) fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim().trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "user:p@ss:word", "ünïcödé"] {
            assert_eq!(
                decode_base64(&base64(s.as_bytes())).unwrap(),
                s.as_bytes(),
                "{s}"
            );
        }
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }

    #[test]
    fn keys_match_as_docker_matches_them() {
        assert!(key_matches("https://index.docker.io/v1/", "docker.io"));
        assert!(key_matches("ghcr.io", "ghcr.io"));
        assert!(key_matches("https://ghcr.io/v2/", "ghcr.io"));
        assert!(key_matches("localhost:5000", "localhost:5000"));
        assert!(!key_matches("localhost:5000", "localhost"));
        assert!(!key_matches("evil.ghcr.io", "ghcr.io"));
    }

    #[test]
    fn debug_is_redacted() {
        let c = Credentials::basic("alice", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credentials::identity_token("tok-123")).contains("tok-123"));
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
        let hub = s.lookup("docker.io").found.unwrap();
        assert_eq!(hub.0, Credentials::basic("user", "pass"));
        assert_eq!(hub.1, Source::File(dir.path().join("config.json")));
        assert_eq!(
            s.lookup("ghcr.io").found.unwrap().0,
            Credentials::basic("u", "p")
        );
        assert_eq!(
            s.lookup("quay.io").found.unwrap().0,
            Credentials::identity_token("refresh")
        );
        assert!(s.lookup("empty.io").found.is_none());
        assert!(s.lookup("other.io").found.is_none());
    }

    #[test]
    fn credential_files_from_bytes_and_fuzz_regressions() {
        let known = br#"{"auths":{"https://registry.example:5000/v1/":{"auth":"dXNlcjpwYXNz"}}}"#;
        assert_eq!(
            parse_credential_file(known, "registry.example:5000"),
            Some(Credentials::basic("user", "pass"))
        );
        assert_eq!(parse_credential_file(b"{\"auths\": 7}", "x"), None);
        // Inputs that once crashed the fuzz target, if any were kept.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz/credentials");
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let _ = parse_credential_file(&std::fs::read(entry.path()).unwrap(), "docker.io");
        }
    }

    #[test]
    fn trouble_is_recorded_not_raised() {
        let dir = tempfile::tempdir().unwrap();
        let s = config(
            dir.path(),
            r#"{"auths": {"ghcr.io": {"auth": "secret-not-base64!"}}, "#,
        );
        let l = s.lookup("ghcr.io");
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
        let l = s.lookup("ghcr.io");
        assert!(l.found.is_none());
        assert!(
            l.problems[0].contains("docker-credential-no-such-helper-anywhere"),
            "{:?}",
            l.problems
        );
    }
}
