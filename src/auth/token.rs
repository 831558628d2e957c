//! Bearer tokens: the token endpoint's answer, and a store that reuses tokens
//! per (registry, scope) until they expire.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Tokens without `expires_in` live 60 seconds (distribution's token spec).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// Renew a little early so a token does not expire between check and use.
const EARLY_RENEWAL: Duration = Duration::from_secs(5);

/// The token endpoint's JSON answer. Docker's registry sends `token`, OAuth2
/// servers `access_token`; some send both.
#[derive(serde::Deserialize)]
pub(crate) struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl TokenResponse {
    /// The usable token, or `None` when the answer carries neither field.
    pub(crate) fn into_token(self) -> Option<Token> {
        let value = self
            .token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))?;
        let lifetime = self
            .expires_in
            .map_or(DEFAULT_LIFETIME, Duration::from_secs);
        Some(Token {
            value,
            expires: Instant::now() + lifetime.saturating_sub(EARLY_RENEWAL),
        })
    }
}

/// A bearer token. Its `Debug` never shows the value.
#[derive(Clone)]
pub(crate) struct Token {
    value: String,
    expires: Instant,
}

impl Token {
    /// The `Authorization` header value.
    pub(crate) fn header(&self) -> String {
        format!("Bearer {}", self.value)
    }

    fn is_fresh(&self) -> bool {
        Instant::now() < self.expires
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Tokens by (registry host, scope), shared by every clone of a `Client`.
#[derive(Debug, Default)]
pub(crate) struct TokenStore {
    tokens: Mutex<HashMap<(String, String), Token>>,
}

impl TokenStore {
    /// A fresh token for `host` and `scope`, if one is stored.
    pub(crate) fn get(&self, host: &str, scope: &str) -> Option<Token> {
        // A poisoned lock only means another thread panicked mid-insert; the map is still usable.
        let map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(host.to_owned(), scope.to_owned()))
            .filter(|t| t.is_fresh())
            .cloned()
    }

    /// Stores `token` for `host` and `scope`, replacing any older one.
    pub(crate) fn put(&self, host: &str, scope: &str, token: Token) {
        let mut map = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        map.insert((host.to_owned(), scope.to_owned()), token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_or_access_token_and_redacted_debug() {
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"s3cret"}"#).unwrap();
        let t = t.into_token().unwrap();
        assert_eq!(t.header(), "Bearer s3cret");
        assert!(!format!("{t:?}").contains("s3cret"));
        let none: TokenResponse = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert!(none.into_token().is_none());
    }

    #[test]
    fn expired_tokens_are_not_returned() {
        let store = TokenStore::default();
        let t: TokenResponse = serde_json::from_str(r#"{"token":"t","expires_in":1}"#).unwrap();
        store.put("h", "s", t.into_token().unwrap());
        assert!(
            store.get("h", "s").is_none(),
            "1 s minus early renewal is already stale"
        );
        let t: TokenResponse = serde_json::from_str(r#"{"token":"t","expires_in":300}"#).unwrap();
        store.put("h", "s", t.into_token().unwrap());
        assert!(store.get("h", "s").is_some());
        assert!(store.get("h", "other").is_none());
    }
}
