//! `Content-Range` of a partial answer (RFC 9110 §14.4), read strictly: the
//! numbers come from a server and nothing is computed from them unchecked.

/// `bytes first-last/complete` of a 206 answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ContentRange {
    /// The first byte's offset.
    pub(crate) first: u64,
    /// The last byte's offset (inclusive), never below `first`.
    pub(crate) last: u64,
    /// The whole representation's length, when the server knows it; always above `last`.
    pub(crate) complete: Option<u64>,
}

/// Parses `bytes 0-499/1234` or `bytes 0-499/*`; `None` for anything else,
/// including the unsatisfied form `bytes */1234` (not a partial answer) and
/// ranges that end before they start or past the complete length.
pub(crate) fn parse_content_range(value: &str) -> Option<ContentRange> {
    let value = value.trim();
    let (unit, rest) = value.split_once(' ')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (range, complete) = rest.trim_start().split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let first = number(first)?;
    let last = number(last)?;
    let complete = match complete {
        "*" => None,
        n => Some(number(n)?),
    };
    let ordered = first <= last && complete.is_none_or(|c| last < c);
    ordered.then_some(ContentRange {
        first,
        last,
        complete,
    })
}

/// A non-empty run of ASCII digits that fits a `u64` (no sign, no spaces).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        let r = parse_content_range("bytes 100-199/1000").unwrap();
        assert_eq!((r.first, r.last, r.complete), (100, 199, Some(1000)));
        assert_eq!(
            parse_content_range("Bytes 5-5/*").map(|r| (r.first, r.complete)),
            Some((5, None))
        );
        let max = u64::MAX;
        assert!(parse_content_range(&format!("bytes 0-{max}/*")).is_some());
        assert!(parse_content_range(&format!("bytes 0-{max}/{max}")).is_none());
        for bad in [
            "bytes */1000",
            "bytes 200-100/1000",
            "bytes 0-1000/1000",
            "bytes -1-5/10",
            "bytes +1-5/10",
            "bytes 1 -5/10",
            "bytes 1-/10",
            "bytes 0-18446744073709551616/*",
            "items 0-1/2",
            "bytes=0-1/2",
            "",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }
}
