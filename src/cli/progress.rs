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
        let bar = match slot.as_mut() {
            Some(bar) if bar.digest == digest => bar,
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
        let elapsed = bar.started.elapsed().as_secs_f64().max(1e-3);
        let rate = (received - bar.start_bytes) as f64 / elapsed;
        let eta = if rate > 0.0 {
            (total - received) as f64 / rate
        } else {
            0.0
        };
        let short = digest.get(7..19).unwrap_or(digest);
        let mut err = std::io::stderr().lock();
        // A failed write to the terminal is not worth failing the download for.
        let _ = write!(
            err,
            "\r\x1b[2K{short} {:>3}% {} / {}  {}/s  {}",
            received * 100 / total,
            human(received),
            human(total),
            human(rate as u64),
            if done {
                "done\n".to_owned()
            } else {
                format!("ETA {eta:.0}s")
            },
        );
        let _ = err.flush();
        if done {
            *slot = None;
        }
    }
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
    fn human_sizes() {
        assert_eq!(super::human(512), "512 B");
        assert_eq!(super::human(1536), "1.5 KiB");
        assert_eq!(super::human(256 << 20), "256.0 MiB");
    }
}
