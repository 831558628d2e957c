//! Anonymous Bearer tokens kept across processes, and each registry's challenge
//! (realm, service), in `<root>/tokens/`: a second process pulling from a
//! registry within a token's lifetime skips the 401 and the token request, and
//! one whose token expired goes straight to the token service.
//!
//! Only tokens the registry gives anyone are kept: the registry decides which
//! (never one asked for with credentials). Even so a token is a bearer secret
//! for its lifetime, so each file is created `0600` and written whole (a temp
//! file renamed into place). Reading is as careful as the rest of the cache:
//! never through a link, only a regular file of ours that nobody else can read,
//! of a bounded size, that parses and names the very realm, service and scope
//! asked for; anything else is ignored (the 401 dance still works without it).
//! Everything here is best effort: a cache that cannot be written keeps nothing.

use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::files::{ensure_dir, ensure_root, is_own_file, open_regular};
use super::layout::Layout;
use crate::digest::Digest;

/// A token file is a few hundred bytes; anything near this is not ours.
const MAX_FILE: u64 = 64 << 10;
/// However long a file claims a token lives, it is trusted for at most this long.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// A challenge is asked ahead with for this long after the registry sent it.
/// Whatever answered at that address once (a stand-in while the registry was
/// down, say) is then no longer told, pull after pull, which repositories are
/// pulled; a registry that still challenges says so again at the next 401.
const MAX_CHALLENGE_AGE: Duration = Duration::from_secs(24 * 3600);

/// The token files of one cache.
#[derive(Debug, Clone)]
pub(crate) struct TokenFiles {
    root: PathBuf,
    dir: PathBuf,
}

/// A registry's Bearer challenge, as remembered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct RememberedChallenge {
    pub(crate) realm: String,
    pub(crate) service: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ChallengeFile {
    host: String,
    #[serde(flatten)]
    challenge: RememberedChallenge,
    /// When the registry sent it, in seconds since the Unix epoch.
    #[serde(default)]
    seen: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct TokenFile {
    realm: String,
    service: Option<String>,
    scope: String,
    token: String,
    /// Seconds since the Unix epoch.
    expires: u64,
}

impl TokenFiles {
    pub(crate) fn new(layout: &Layout) -> TokenFiles {
        TokenFiles {
            root: layout.root().to_path_buf(),
            dir: layout.tokens_dir(),
        }
    }

    /// The challenge `host` answered with last, if one is kept.
    pub(crate) fn challenge(&self, host: &str) -> Option<RememberedChallenge> {
        let file: ChallengeFile = self.read(&self.challenge_path(host))?;
        let seen = UNIX_EPOCH.checked_add(Duration::from_secs(file.seen))?;
        let age = SystemTime::now().duration_since(seen).ok()?;
        (file.host == host && age <= MAX_CHALLENGE_AGE).then_some(file.challenge)
    }

    /// Forgets the challenge kept for `host` (its token service failed); best effort.
    pub(crate) fn forget_challenge(&self, host: &str) {
        let _ = std::fs::remove_file(self.challenge_path(host));
    }

    /// Remembers that `host` challenges with `challenge`.
    pub(crate) fn remember_challenge(&self, host: &str, challenge: &RememberedChallenge) {
        if self.challenge(host).as_ref() == Some(challenge) {
            return;
        }
        let seen = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let file = ChallengeFile {
            host: host.to_owned(),
            challenge: challenge.clone(),
            seen,
        };
        self.write(&self.challenge_path(host), &file);
    }

    /// A token for `scope` from this realm and service and when it expires,
    /// if one is kept that has not.
    pub(crate) fn token(
        &self,
        challenge: &RememberedChallenge,
        scope: &str,
    ) -> Option<(String, SystemTime)> {
        let file: TokenFile = self.read(&self.token_path(challenge, scope))?;
        let same = file.realm == challenge.realm
            && file.service == challenge.service
            && file.scope == scope;
        let expires = UNIX_EPOCH.checked_add(Duration::from_secs(file.expires))?;
        let latest = SystemTime::now().checked_add(MAX_LIFETIME)?;
        (same && !file.token.is_empty() && expires > SystemTime::now())
            .then(|| (file.token, expires.min(latest)))
    }

    /// Keeps an anonymous token for `scope` until `expires`.
    pub(crate) fn keep_token(
        &self,
        challenge: &RememberedChallenge,
        scope: &str,
        token: &str,
        expires: SystemTime,
    ) {
        let Ok(expires) = expires.duration_since(UNIX_EPOCH) else {
            return;
        };
        let file = TokenFile {
            realm: challenge.realm.clone(),
            service: challenge.service.clone(),
            scope: scope.to_owned(),
            token: token.to_owned(),
            expires: expires.as_secs(),
        };
        self.write(&self.token_path(challenge, scope), &file);
    }

    /// Removes what a killed writer left (`.token-*` temporary files) and
    /// token files that expired or are not ours to read, keeping challenges
    /// and live tokens. Best effort; returns how many files went. A pull
    /// writes tokens outside the cache-wide lock, so one being written now may
    /// lose its file: it is then simply not kept.
    pub(crate) fn prune(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let stale = if name.starts_with(".token-") {
                true
            } else if name.starts_with("token-") {
                self.read::<TokenFile>(&path).is_none_or(|file| {
                    UNIX_EPOCH
                        .checked_add(Duration::from_secs(file.expires))
                        .is_none_or(|expires| expires <= SystemTime::now())
                })
            } else {
                false
            };
            // remove_file never follows a link: a planted one goes, not its target.
            if stale && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    fn challenge_path(&self, host: &str) -> PathBuf {
        let key = Digest::of(format!("challenge\n{host}").as_bytes());
        self.dir.join(format!("challenge-{}.json", key.hex()))
    }

    fn token_path(&self, challenge: &RememberedChallenge, scope: &str) -> PathBuf {
        // Newlines cannot occur in a realm URL, a service or a scope we send.
        let service = challenge.service.as_deref().unwrap_or("");
        let key = Digest::of(format!("token\n{}\n{service}\n{scope}", challenge.realm).as_bytes());
        self.dir.join(format!("token-{}.json", key.hex()))
    }

    /// A file of ours that parses, or nothing.
    fn read<T: serde::de::DeserializeOwned>(&self, path: &std::path::Path) -> Option<T> {
        let file = open_regular(path).ok()??;
        if !is_own_file(&file).unwrap_or(false) || !is_private(&file) {
            return None;
        }
        let mut bytes = Vec::new();
        file.take(MAX_FILE + 1).read_to_end(&mut bytes).ok()?;
        if bytes.len() as u64 > MAX_FILE {
            return None;
        }
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes `value` to `path` whole, `0600`; best effort.
    fn write(&self, path: &std::path::Path, value: &impl serde::Serialize) {
        let Ok(bytes) = serde_json::to_vec(value) else {
            return;
        };
        if ensure_root(&self.root).is_err() || ensure_dir(&self.dir).is_err() {
            return;
        }
        // tempfile creates 0600 files with names nobody can guess, never
        // through a link; the rename replaces whatever was planted at `path`
        // (a link included, without following it).
        let Ok(mut tmp) = tempfile::Builder::new()
            .prefix(".token-")
            .tempfile_in(&self.dir)
        else {
            return;
        };
        if tmp.write_all(&bytes).is_ok() {
            let _ = tmp.persist(path);
        }
    }
}

/// Whether nobody but its owner may read `file`.
fn is_private(file: &File) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.metadata()
            .is_ok_and(|m| m.permissions().mode() & 0o077 == 0)
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        true
    }
}

/// Removes every token file; best effort (for tests of expiry).
#[cfg(test)]
fn remove_all(files: &TokenFiles) {
    let _ = std::fs::remove_dir_all(&files.dir);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::fs;

    fn files() -> (tempfile::TempDir, TokenFiles) {
        let dir = tempfile::tempdir().unwrap();
        let files = TokenFiles::new(&Layout::new(dir.path().join("cache")));
        (dir, files)
    }

    fn challenge() -> RememberedChallenge {
        RememberedChallenge {
            realm: "https://auth.example/token".into(),
            service: Some("registry.example".into()),
        }
    }

    #[test]
    fn a_token_is_kept_per_realm_service_and_scope_until_it_expires() {
        let (_dir, files) = files();
        let c = challenge();
        let later = SystemTime::now() + Duration::from_secs(300);
        files.keep_token(&c, "repository:a:pull", "t0k3n", later);
        let (token, expires) = files.token(&c, "repository:a:pull").unwrap();
        assert_eq!(token, "t0k3n");
        assert!(expires <= later);
        assert!(files.token(&c, "repository:b:pull").is_none());
        let other = RememberedChallenge {
            service: Some("other".into()),
            ..c.clone()
        };
        assert!(files.token(&other, "repository:a:pull").is_none());
        files.keep_token(
            &c,
            "repository:a:pull",
            "old",
            SystemTime::now() - Duration::from_secs(1),
        );
        assert!(files.token(&c, "repository:a:pull").is_none(), "expired");
        files.keep_token(&c, "repository:b:pull", "fresh", later);
        files.remember_challenge("registry.example", &c);
        assert_eq!(files.prune(), 1, "the expired one only");
        assert_eq!(files.token(&c, "repository:b:pull").unwrap().0, "fresh");
        assert_eq!(files.challenge("registry.example"), Some(c.clone()));
        assert_eq!(fs::read_dir(&files.dir).unwrap().count(), 2);
        remove_all(&files);
        assert!(files.token(&c, "repository:a:pull").is_none());
    }

    #[cfg(unix)]
    #[test]
    fn files_are_private_and_planted_links_or_readable_files_are_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, files) = files();
        let c = challenge();
        let later = SystemTime::now() + Duration::from_secs(300);
        files.keep_token(&c, "s", "secret", later);
        let path = files.token_path(&c, "s");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        // A link to a file that would parse is not followed.
        let elsewhere = dir.path().join("elsewhere.json");
        fs::rename(&path, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert!(files.token(&c, "s").is_none());
        // Writing replaces the link; it never writes through it.
        files.keep_token(&c, "s", "fresh", later);
        assert!(
            !fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(fs::read_to_string(&elsewhere).unwrap().contains("secret"));
        assert_eq!(files.token(&c, "s").unwrap().0, "fresh");
        // Readable by others: not ours to trust.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(files.token(&c, "s").is_none());
        // Garbage is ignored, and so is a file too large to be ours.
        fs::write(&path, b"{not json").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(files.token(&c, "s").is_none());
        files.keep_token(&c, "s", &"x".repeat(MAX_FILE as usize), later);
        assert!(files.token(&c, "s").is_none());
        // Another user's file (only root can make one here) is not trusted.
        files.keep_token(&c, "s", "fresh", later);
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
            assert!(files.token(&c, "s").is_none());
        }
    }

    #[test]
    fn prune_removes_leftovers_and_expired_tokens_and_keeps_the_rest() {
        let (_dir, files) = files();
        let c = challenge();
        let later = SystemTime::now() + Duration::from_secs(300);
        files.keep_token(&c, "live", "t", later);
        files.keep_token(&c, "old", "t", SystemTime::now() - Duration::from_secs(1));
        files.remember_challenge("r.example", &c);
        // What a writer killed between writing and renaming leaves.
        fs::write(files.dir.join(".token-aBc123"), b"{\"token\":\"secret\"}").unwrap();
        assert_eq!(files.prune(), 2);
        let mut left: Vec<String> = fs::read_dir(&files.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(files.token(&c, "live").is_some());
        assert_eq!(files.challenge("r.example"), Some(c));
    }

    #[test]
    fn a_challenge_is_remembered_per_host() {
        let (_dir, files) = files();
        assert!(files.challenge("r.example").is_none());
        files.remember_challenge("r.example", &challenge());
        assert_eq!(files.challenge("r.example"), Some(challenge()));
        assert!(files.challenge("other.example").is_none());
        files.forget_challenge("r.example");
        assert!(files.challenge("r.example").is_none());
    }

    #[test]
    fn a_challenge_older_than_a_day_or_from_the_future_is_not_asked_ahead_with() {
        let (_dir, files) = files();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        for (seen, kept) in [
            (now - 3600, true),
            (now - 2 * 86400, false),
            (now + 3600, false),
            (0, false),
        ] {
            let file = ChallengeFile {
                host: "r.example".into(),
                challenge: challenge(),
                seen,
            };
            files.write(&files.challenge_path("r.example"), &file);
            assert_eq!(files.challenge("r.example").is_some(), kept, "seen {seen}");
        }
    }
}
