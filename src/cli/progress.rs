//! A one-line progress bar on stderr: bytes, rate and time left.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Downloads smaller than this finish before a bar would be worth reading.
const MIN_SIZE: u64 = 4 << 20;
const REDRAW: Duration = Duration::from_millis(100);

pub struct Progress {
    enabled: bool,
    bar: Mutex<Option<Bar>>,
}

struct Bar {
    digest: String,
    started: Instant,
    start_bytes: u64,
    drawn: Option<Instant>,
}

impl Progress {
    /// A bar that draws only when `enabled` (stderr is a terminal and not `--quiet`).
    pub fn new(enabled: bool) -> Progress {
        Progress {
            enabled,
            bar: Mutex::new(None),
        }
    }

    pub fn update(&self, digest: &str, received: u64, total: u64) {
        if !self.enabled || total < MIN_SIZE {
            return;
        }
        let mut slot = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        // A download that starts over (the server ignored the range, or sent 416)
        // counts down from where it was: start a new bar rather than subtract.
        let bar = match slot.as_mut() {
            Some(bar) if bar.digest == digest && received >= bar.start_bytes => bar,
            _ => slot.insert(Bar {
                digest: digest.to_owned(),
                started: Instant::now(),
                start_bytes: received,
                drawn: None,
            }),
        };
        let done = received >= total;
        if !done && bar.drawn.is_some_and(|t| t.elapsed() < REDRAW) {
            return;
        }
        bar.drawn = Some(Instant::now());
        let line = status_line(
            digest,
            received - bar.start_bytes,
            received,
            total,
            bar.started,
        );
        let mut err = std::io::stderr().lock();
        // A failed write to the terminal is not worth failing the download for.
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        if done {
            *slot = None;
        }
    }
}

/// The bar's text: `new` bytes arrived since `started`, `received` of `total` in
/// all. `total` comes from the registry's manifest and may be anything: no
/// arithmetic on it may overflow, and `received` may exceed it.
fn status_line(digest: &str, new: u64, received: u64, total: u64, started: Instant) -> String {
    let elapsed = started.elapsed().as_secs_f64().max(1e-3);
    let rate = new as f64 / elapsed;
    let eta = if rate > 0.0 {
        total.saturating_sub(received) as f64 / rate
    } else {
        0.0
    };
    let percent = u128::from(received.min(total)) * 100 / u128::from(total.max(1));
    let short = digest.get(7..19).unwrap_or(digest);
    format!(
        "{short} {percent:>3}% {} / {}  {}/s  {}",
        human(received),
        human(total),
        human(rate as u64),
        if received >= total {
            "done\n".to_owned()
        } else {
            format!("ETA {eta:.0}s")
        },
    )
}

/// `1536` -> `1.5 KiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn absurd_sizes_draw_without_overflowing() {
        let now = std::time::Instant::now();
        let line = |received, total| {
            super::status_line("sha256:0123456789abcdef", 0, received, total, now)
        };
        assert!(line(u64::MAX / 2, u64::MAX).starts_with("0123456789ab  49%"));
        assert!(line(u64::MAX, u64::MAX).contains("100%"));
        assert!(
            line(9 << 20, 5 << 20).contains("100%"),
            "more than announced"
        );
        assert!(line(1, 0).contains("done"));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(super::human(512), "512 B");
        assert_eq!(super::human(1536), "1.5 KiB");
        assert_eq!(super::human(256 << 20), "256.0 MiB");
    }
}
