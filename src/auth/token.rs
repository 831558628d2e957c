//! Bearer tokens: the token endpoint's answer, and a store that reuses tokens
//! per (registry, scope) until they expire.

use crate::error::TokenFailure;
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Tokens without `expires_in` live 60 seconds (distribution's token spec).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// However long a service says a token lives, it is reused for at most this long.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Renew a little early so a token does not expire between check and use.
const EARLY_RENEWAL: Duration = Duration::from_secs(5);

/// The token endpoint's JSON answer. Docker's registry sends `token`, OAuth2
/// servers `access_token`; some send both.
#[derive(serde::Deserialize)]
pub(crate) struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    #[serde(default, deserialize_with = "lifetime")]
    expires_in: Option<Duration>,
}

/// `expires_in` as any JSON number of seconds: negative is none, a fraction is
/// rounded down, beyond `u64` is `u64::MAX`. Anything else (a string, `null`)
/// means the service did not say.
fn lifetime<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    use serde::Deserialize;
    let value = serde_json::Value::deserialize(d)?;
    let serde_json::Value::Number(n) = value else {
        return Ok(None);
    };
    let secs = match (n.as_u64(), n.as_i64(), n.as_f64()) {
        (Some(secs), _, _) => secs,
        (None, Some(_), _) => 0, // negative
        // `as` saturates: NaN and negatives to 0, beyond u64 to u64::MAX.
        (None, None, Some(f)) => f as u64,
        (None, None, None) => return Ok(None),
    };
    Ok(Some(Duration::from_secs(secs)))
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
            .unwrap_or(DEFAULT_LIFETIME)
            .min(MAX_LIFETIME)
            .saturating_sub(EARLY_RENEWAL);
        let now = Instant::now();
        Some(Token {
            value,
            // Cannot fail with a lifetime this short; were it to, the token would
            // serve this request and not be reused.
            expires: now.checked_add(lifetime).unwrap_or(now),
        })
    }
}

/// The token in a token endpoint's answer body.
pub(crate) fn parse_token_answer(body: &[u8]) -> Result<Token, TokenFailure> {
    // serde's message could quote part of the body: keep the position only.
    let parsed: TokenResponse =
        serde_json::from_slice(body).map_err(|e| TokenFailure::NotJson {
            line: e.line(),
            column: e.column(),
        })?;
    parsed.into_token().ok_or(TokenFailure::NoToken)
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

    /// The token itself, to keep it in a file of the cache.
    pub(crate) fn secret(&self) -> &str {
        &self.value
    }

    /// When it expires, on the wall clock (to keep it across processes).
    pub(crate) fn expires_at(&self) -> SystemTime {
        let left = self.expires.saturating_duration_since(Instant::now());
        SystemTime::now()
            .checked_add(left)
            .unwrap_or_else(SystemTime::now)
    }

    /// A token kept until `expires` on the wall clock; `None` when it has.
    pub(crate) fn until(value: String, expires: SystemTime) -> Option<Token> {
        let left = expires.duration_since(SystemTime::now()).ok()?;
        let left = left.min(MAX_LIFETIME);
        Some(Token {
            value,
            expires: Instant::now().checked_add(left)?,
        })
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
    fn any_expires_in_gives_a_token_without_overflow() {
        for (answer, reusable) in [
            (r#"{"token":"t","expires_in":18446744073709551615}"#, true),
            (r#"{"token":"t","expires_in":1e300}"#, true),
            (r#"{"token":"t","expires_in":300.7}"#, true),
            (r#"{"token":"t","expires_in":-9223372036854775808}"#, false),
            (r#"{"token":"t","expires_in":-1.5}"#, false),
            (r#"{"token":"t","expires_in":"300"}"#, true),
            (r#"{"token":"t","expires_in":null}"#, true),
        ] {
            let store = TokenStore::default();
            store.put("h", "s", parse_token_answer(answer.as_bytes()).unwrap());
            assert_eq!(store.get("h", "s").is_some(), reusable, "{answer}");
        }
        let long =
            parse_token_answer(br#"{"token":"t","expires_in":18446744073709551615}"#).unwrap();
        assert!(long.expires <= Instant::now() + MAX_LIFETIME);
    }

    #[test]
    fn bad_answers_say_why_without_quoting_the_body() {
        let e = parse_token_answer(br#"{"token": secret-value"#).unwrap_err();
        assert!(matches!(e, TokenFailure::NotJson { line: 1, .. }), "{e:?}");
        assert!(!e.to_string().contains("secret"), "{e}");
        assert_eq!(
            parse_token_answer(br#"{"access_token":""}"#).unwrap_err(),
            TokenFailure::NoToken
        );
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
