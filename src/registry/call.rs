//! The vocabulary every request of the registry client shares: what a call is
//! for and by when, the limits on what is read, and the typed errors a request
//! turns its failures into.

use std::time::{Duration, Instant};

use super::url::{self, UrlError};
use crate::error::Error;

/// Redirects followed for one request (ureq's default, and what docker allows).
pub(super) const MAX_REDIRECTS: usize = 10;
/// Token answers are a few KiB; anything near this is not a token.
pub(super) const MAX_TOKEN_RESPONSE: u64 = 128 << 10;
/// How much of an error body is read to explain a failure.
pub(super) const MAX_ERROR_BODY: u64 = 64 << 10;
/// The longest wait a `Retry-After` header may impose.
pub(super) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The longest timeout handed to ureq, which adds timeouts to instants unchecked:
/// a longer one (such as `Duration::MAX`) means no timeout. A century fits any clock.
pub(super) const MAX_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 86_400);

/// What a request is for (for messages), and when the whole pull must be done by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call<'a> {
    pub(crate) action: &'a str,
    pub(crate) deadline: Option<Instant>,
    /// Sent once, never retried: a mirror's request, with the next source
    /// waiting (a 503 with `Retry-After: 60` would hold the pull for minutes).
    pub(crate) once: bool,
}

/// Gives a request no more than `remaining`, body included.
pub(super) fn limited<B>(
    req: ureq::RequestBuilder<B>,
    remaining: Option<Duration>,
) -> ureq::RequestBuilder<B> {
    match remaining {
        Some(t) => req.config().timeout_global(finite(t)).build(),
        None => req,
    }
}

/// `t` as a timeout for ureq: `None` (no timeout) when longer than [`MAX_TIMEOUT`].
pub(super) fn finite(t: Duration) -> Option<Duration> {
    (t <= MAX_TIMEOUT).then_some(t)
}

/// The error for a URL refused before any request: `raw` is shown redacted.
pub(super) fn refused(registry: &str, what: &'static str, raw: &str, e: UrlError) -> Error {
    Error::RefusedUrl {
        registry: registry.to_owned(),
        what,
        host: e.host,
        url: url::redact(raw),
        reason: e.refusal,
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Method {
    Get,
    Head,
}

pub(super) fn transport(
    host: &str,
    action: &str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::Transport {
        host: host.to_owned(),
        action: action.to_owned(),
        source: Box::new(e),
    }
}

pub(super) fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_timeouts_mean_none() {
        assert_eq!(finite(Duration::MAX), None);
        assert_eq!(finite(MAX_TIMEOUT + Duration::from_nanos(1)), None);
        assert_eq!(
            finite(Duration::from_secs(30)),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn host_without_port_handles_ipv6() {
        assert_eq!(host_without_port("[::1]:5000"), "[::1]");
        assert_eq!(host_without_port("localhost:5000"), "localhost");
        assert_eq!(host_without_port("ghcr.io"), "ghcr.io");
    }
}
