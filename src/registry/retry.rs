//! When to try again and how long to wait: which failures may pass, exponential
//! backoff with jitter, and `Retry-After`.

use std::time::Duration;

use ureq::Body;
use ureq::http::Response;

use super::MAX_RETRY_AFTER;

pub(super) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

pub(super) fn is_transient(e: &ureq::Error) -> bool {
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
pub(super) fn retry_after(resp: &Response<Body>) -> Option<Duration> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
