//! When to try again and how long to wait: which failures may pass, exponential
//! backoff with jitter, and `Retry-After`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ureq::Body;
use ureq::http::Response;

use super::call::MAX_RETRY_AFTER;

pub(super) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Whether a failure to get an answer may pass: a connection that failed, broke
/// or timed out. Not a TLS failure: rustls reports a certificate that is not
/// trusted, has expired or names another host (and any other failed handshake)
/// as an I/O error of kind `InvalidData`, and it fails the same way every time.
/// Nor a refusal the next attempt would meet again (`PermissionDenied`: a SOCKS
/// password refused, a connection the system forbids; `InvalidInput`: a request
/// a SOCKS proxy cannot carry).
pub(super) fn is_transient(e: &ureq::Error) -> bool {
    use std::io::ErrorKind::{InvalidData, InvalidInput, PermissionDenied};
    match e {
        ureq::Error::Io(e) => !matches!(e.kind(), InvalidData | InvalidInput | PermissionDenied),
        ureq::Error::ConnectionFailed | ureq::Error::Timeout(_) => true,
        _ => false,
    }
}

/// 200 ms doubling per attempt (capped at 6.4 s), half of it jittered so that a
/// fleet of clients failing together does not retry together.
pub(super) fn backoff(attempt: u32) -> Duration {
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
    let value = resp.headers().get("retry-after")?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

/// A `Retry-After` value read at `now`: the wait it asks for, capped at
/// [`MAX_RETRY_AFTER`]; a date already past asks for none. `None` when the value
/// is neither a number of seconds nor an IMF-fixdate.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits but too many for a u64: a very long wait.
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
        Duration::from_secs(parse_http_date(value)?.saturating_sub(now))
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) as seconds since the epoch.
/// Each field must be in its range (years 1970 to 9999, seconds up to 60 for a
/// leap second), so nothing computed from them can overflow.
fn parse_http_date(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = u64::try_from(MONTHS.iter().position(|m| m == month)?).ok()? + 1;
    let field = |s: &str, digits: usize, max: u64| {
        let ok = s.len() == digits && s.bytes().all(|b| b.is_ascii_digit());
        ok.then(|| s.parse::<u64>().ok())
            .flatten()
            .filter(|&v| v <= max)
    };
    let day = field(day, 2, 31).filter(|&d| d >= 1)?;
    let year = field(year, 4, 9999).filter(|&y| y >= 1970)?;
    let [h, m, sec] = time.split(':').collect::<Vec<_>>()[..] else {
        return None;
    };
    let (h, m, sec) = (field(h, 2, 23)?, field(m, 2, 59)?, field(sec, 2, 60)?);
    // Days from the civil date (Howard Hinnant's algorithm), for years >= 1970 only,
    // so every intermediate is positive and small.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y % 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let days = (era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy).checked_sub(719_468)?;
    days.checked_mul(86_400)?
        .checked_add(h * 3600 + m * 60 + sec)
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
        assert_eq!(
            parse_http_date("Fri, 31 Dec 9999 23:59:60 GMT"),
            Some(253_402_300_800)
        );
        assert_eq!(parse_http_date("tomorrow"), None);
        assert_eq!(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"), None);
    }

    #[test]
    fn absurd_dates_are_refused_not_overflowed() {
        for bad in [
            "Sun, 06 Nov 99999999999999999 08:49:37 GMT",
            "Sun, 06 Nov -9223372036854775808 08:49:37 GMT",
            "Sun, 06 Nov 1994 9223372036854775807:00:00 GMT",
            "Sun, 06 Nov 1994 -1:00:00 GMT",
            "Sun, 99 Nov 1994 08:49:37 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn retry_after_is_capped_whatever_it_asks() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let wait = |v: &str| parse_retry_after(v, now);
        assert_eq!(wait("7"), Some(Duration::from_secs(7)));
        assert_eq!(wait(" 120 "), Some(MAX_RETRY_AFTER));
        assert_eq!(wait("99999999999999999999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(
            wait("Sun, 06 Nov 1994 08:49:47 GMT"),
            Some(Duration::from_secs(10))
        );
        assert_eq!(wait("Sun, 06 Nov 1994 08:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(wait("Fri, 31 Dec 9999 23:59:59 GMT"), Some(MAX_RETRY_AFTER));
        assert_eq!(wait("-1"), None);
        assert_eq!(wait("+5"), None);
        assert_eq!(wait(""), None);
        assert_eq!(wait("Sun, 06 Nov 99999999999999999 08:49:37 GMT"), None);
        // A clock before 1970 is no reason to panic.
        assert_eq!(
            wait_at(
                "Sun, 06 Nov 1994 08:49:47 GMT",
                UNIX_EPOCH - Duration::from_secs(1)
            ),
            None
        );
    }

    fn wait_at(v: &str, now: SystemTime) -> Option<Duration> {
        parse_retry_after(v, now)
    }

    #[test]
    fn tls_failures_and_refusals_are_final() {
        use std::io::{Error as IoError, ErrorKind};
        let io = |kind| ureq::Error::Io(IoError::new(kind, "x"));
        assert!(is_transient(&io(ErrorKind::ConnectionReset)));
        assert!(is_transient(&io(ErrorKind::UnexpectedEof)));
        assert!(is_transient(&io(ErrorKind::ConnectionRefused)));
        assert!(is_transient(&ureq::Error::ConnectionFailed));
        // What rustls returns for an untrusted, expired or misnamed certificate.
        assert!(!is_transient(&io(ErrorKind::InvalidData)));
        assert!(!is_transient(&io(ErrorKind::PermissionDenied)));
        assert!(!is_transient(&io(ErrorKind::InvalidInput)));
        assert!(!is_transient(&ureq::Error::HostNotFound));
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
