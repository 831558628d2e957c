//! Progress on stderr for large downloads, naming the reference being pulled.
//!
//! On a terminal it is a one-line bar (percentage, bytes, rate, time left) redrawn
//! in place and fitted to the terminal's width, so it never wraps. A `TERM=dumb`
//! terminal cannot erase a line, so there it is two plain lines instead: one when
//! the download starts, one when it ends.
//!
//! The width is `COLUMNS` when it is set, else 80. Asking the terminal for its size
//! takes an ioctl (unsafe code, which the crate forbids) or running `stty`; shells
//! keep `COLUMNS` up to date but most do not export it, so run
//! `COLUMNS=$COLUMNS forge-oci …` (or `export COLUMNS`) on a narrower terminal.

use std::ffi::OsString;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use forge_oci::{Error, SettingProblem};

/// Downloads smaller than this finish before a bar would be worth reading.
const MIN_SIZE: u64 = 4 << 20;
const REDRAW: Duration = Duration::from_millis(100);
/// The width when `COLUMNS` is not set.
const DEFAULT_WIDTH: usize = 80;
/// The fewest columns of the reference a bar keeps before it drops figures.
const MIN_LABEL: usize = 12;

/// How progress is shown on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A bar redrawn in place, at most this many columns wide.
    Bar { width: usize },
    /// Plain lines, for a terminal that cannot redraw (`TERM=dumb`).
    Lines,
}

impl Style {
    /// The style for a terminal with these `TERM` and `COLUMNS` values.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable when one is not UTF-8, or `COLUMNS` is
    /// not a positive whole number: a variable that cannot be used is not skipped.
    pub fn from_env(term: Option<OsString>, columns: Option<OsString>) -> Result<Style, Error> {
        let text = |setting: &'static str, value: OsString| {
            value.into_string().map_err(|value| Error::Config {
                setting,
                value: value.to_string_lossy().into_owned(),
                reason: SettingProblem::NotUtf8,
            })
        };
        if let Some(term) = term {
            if text("TERM", term)? == "dumb" {
                return Ok(Style::Lines);
            }
        }
        let width = match columns {
            None => DEFAULT_WIDTH,
            Some(v) => {
                let v = text("COLUMNS", v)?;
                match v.trim() {
                    "" => DEFAULT_WIDTH,
                    n => n
                        .parse()
                        .ok()
                        .filter(|w| *w > 0)
                        .ok_or_else(|| Error::Config {
                            setting: "COLUMNS",
                            value: v.clone(),
                            reason: SettingProblem::NotANumber {
                                expected: "the terminal's width in columns",
                            },
                        })?,
                }
            }
        };
        Ok(Style::Bar { width })
    }
}

pub struct Progress {
    /// `None`: show nothing.
    style: Option<Style>,
    /// What is being pulled: the reference as given.
    label: String,
    bar: Mutex<Option<Bar>>,
}

struct Bar {
    digest: String,
    started: Instant,
    start_bytes: u64,
    drawn: Option<Instant>,
}

impl Progress {
    /// Shows nothing (`--quiet`, or stderr is not a terminal).
    pub fn silent() -> Progress {
        Progress {
            style: None,
            label: String::new(),
            bar: Mutex::new(None),
        }
    }

    /// Shows the progress of pulling `label` on a terminal, in `style`.
    pub fn new(style: Style, label: &str) -> Progress {
        Progress {
            style: Some(style),
            label: label.to_owned(),
            bar: Mutex::new(None),
        }
    }

    pub fn update(&self, digest: &str, received: u64, total: u64) {
        let Some(style) = self.style else { return };
        if total < MIN_SIZE {
            return;
        }
        let mut slot = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        // A download that starts over (the server ignored the range, or sent 416)
        // counts down from where it was: start a new bar rather than subtract.
        let (bar, new) = match slot.as_mut() {
            Some(bar) if bar.digest == digest && received >= bar.start_bytes => (bar, false),
            _ => (
                slot.insert(Bar {
                    digest: digest.to_owned(),
                    started: Instant::now(),
                    start_bytes: received,
                    drawn: None,
                }),
                true,
            ),
        };
        let done = received >= total;
        let elapsed = bar.started.elapsed().as_secs_f64().max(1e-3);
        let rate = received.saturating_sub(bar.start_bytes) as f64 / elapsed;
        // A failed write to the terminal is not worth failing the download for.
        let mut err = std::io::stderr().lock();
        match style {
            Style::Lines if new && !done => {
                let _ = writeln!(err, "downloading {} ({})", self.label, human(total));
            }
            Style::Lines if done => {
                let _ = writeln!(
                    err,
                    "downloaded {}: {} in {elapsed:.1}s",
                    self.label,
                    human(total)
                );
            }
            Style::Lines => {}
            Style::Bar { width } => {
                if !done && bar.drawn.is_some_and(|t| t.elapsed() < REDRAW) {
                    return;
                }
                bar.drawn = Some(Instant::now());
                let frame = render(&self.label, received, total, rate, width);
                let _ = write!(err, "\r\x1b[2K{frame}{}", if done { "\n" } else { "" });
            }
        }
        let _ = err.flush();
        if done {
            *slot = None;
        }
    }
}

/// One frame of the bar: `label`, percentage, bytes, rate and time left (or
/// `done`), in at most `width - 1` columns (writing the last column makes some
/// terminals wrap). When they do not all fit, the figures go first (rate, then
/// time left, then bytes), down to `MIN_LABEL` columns of the label; then the label
/// loses its start, so the end of the reference, with its tag, stays in view.
pub fn render(label: &str, received: u64, total: u64, rate: f64, width: usize) -> String {
    let room = width.saturating_sub(1);
    let done = received >= total;
    let percent = format!(
        "{:>3}%",
        // In u128: a size is the registry's number, and may be near u64::MAX.
        (u128::from(received.min(total)) * 100)
            .checked_div(u128::from(total))
            .unwrap_or(100)
    );
    let bytes = format!("{} / {}", human(received), human(total));
    let speed = format!("{}/s", human(rate as u64));
    let end = if done {
        "done".to_owned()
    } else if rate > 0.0 {
        format!("ETA {:.0}s", (total - received) as f64 / rate)
    } else {
        "ETA ?".to_owned()
    };
    let candidates: [&[&str]; 5] = [
        &[&percent, &bytes, &speed, &end],
        &[&percent, &bytes, &end],
        &[&percent, &bytes],
        &[&percent, &end],
        &[&percent],
    ];
    let label_len = label.chars().count();
    let figures = candidates
        .iter()
        .map(|parts| parts.join("  "))
        .find(|f| label_len.min(MIN_LABEL) + 1 + f.chars().count() <= room)
        .unwrap_or_else(|| percent.clone());
    let label_room = room.saturating_sub(figures.chars().count() + 1);
    let line = match label_room {
        0 => figures,
        n => format!("{} {figures}", keep_end(label, n)),
    };
    line.chars().take(room).collect()
}

/// `s` in at most `n` columns: whole, or `…` and its last `n - 1` characters.
fn keep_end(s: &str, n: usize) -> String {
    let len = s.chars().count();
    if len <= n {
        return s.to_owned();
    }
    let tail: String = s.chars().skip(len - (n - 1)).collect();
    format!("…{tail}")
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
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(256 << 20), "256.0 MiB");
    }

    const REF: &str = "ghcr.io/bytecodealliance/sample-wasi-http-rust/sample-wasi-http-rust:0.1.6";
    const MIB: u64 = 1 << 20;

    #[test]
    fn a_wide_terminal_gets_everything() {
        let frame = render("ghcr.io/o/p:1.0", 5 * MIB, 20 * MIB, MIB as f64, 80);
        assert_eq!(
            frame,
            "ghcr.io/o/p:1.0  25%  5.0 MiB / 20.0 MiB  1.0 MiB/s  ETA 15s"
        );
        let frame = render("ghcr.io/o/p:1.0", 20 * MIB, 20 * MIB, MIB as f64, 80);
        assert_eq!(
            frame,
            "ghcr.io/o/p:1.0 100%  20.0 MiB / 20.0 MiB  1.0 MiB/s  done"
        );
    }

    #[test]
    fn every_frame_fits_and_keeps_the_end_of_the_reference() {
        for width in 0..=120 {
            for received in [0, 7 * MIB, 20 * MIB] {
                let frame = render(REF, received, 20 * MIB, 2.5 * MIB as f64, width);
                let columns = frame.chars().count();
                assert!(
                    columns < width.max(1),
                    "{width}: {columns} columns: {frame:?}"
                );
                // Wide enough for the shortest label and the percentage: both shown.
                if width > MIN_LABEL + 6 {
                    assert!(frame.contains("%"), "{width}: {frame:?}");
                    let label = frame.split(' ').next().unwrap();
                    assert!(label.starts_with('…') || label == REF, "{frame:?}");
                    let kept = label.trim_start_matches('…');
                    assert!(
                        REF.ends_with(kept) && kept.len() >= MIN_LABEL - 1,
                        "{frame:?}"
                    );
                }
            }
        }
        // Figures go before the reference does: rate first, then time left, then bytes.
        let frame = |width| render(REF, 7 * MIB, 20 * MIB, 2.5 * MIB as f64, width);
        assert_eq!(
            frame(60),
            "…ttp-rust:0.1.6  35%  7.0 MiB / 20.0 MiB  2.5 MiB/s  ETA 5s"
        );
        assert_eq!(
            frame(50),
            "…http-rust:0.1.6  35%  7.0 MiB / 20.0 MiB  ETA 5s"
        );
        assert_eq!(frame(40), "…tp-rust:0.1.6  35%  7.0 MiB / 20.0 MiB");
        assert_eq!(frame(24), "…i-http-rust:0.1.6  35%");
        assert_eq!(frame(4), " 35");
    }

    #[test]
    fn sizes_near_the_limit_do_not_overflow() {
        let frame = render("r", u64::MAX / 2, u64::MAX, 1.0, 200);
        assert!(frame.starts_with("r  49%"), "{frame}");
        assert!(render("r", 0, 0, 0.0, 80).starts_with("r 100%"));
    }

    #[test]
    fn dumb_terminals_and_the_width_come_from_the_environment() {
        let os = |s: &str| Some(OsString::from(s));
        assert_eq!(Style::from_env(os("dumb"), os("40")).unwrap(), Style::Lines);
        assert_eq!(
            Style::from_env(os("xterm-256color"), os("40")).unwrap(),
            Style::Bar { width: 40 }
        );
        assert_eq!(
            Style::from_env(None, None).unwrap(),
            Style::Bar { width: 80 }
        );
        assert_eq!(
            Style::from_env(os("xterm"), os(" ")).unwrap(),
            Style::Bar { width: 80 }
        );
        for columns in ["0", "wide", "-3"] {
            let e = Style::from_env(os("xterm"), os(columns)).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with(&format!("cannot use COLUMNS `{columns}`")),
                "{e}"
            );
        }
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            let bad = || Some(OsString::from_vec(b"xterm\xff".to_vec()));
            let e = Style::from_env(bad(), None).unwrap_err();
            assert_eq!(
                e.to_string(),
                "cannot use TERM `xterm\u{fffd}`: the value is not valid UTF-8"
            );
            let e = Style::from_env(os("xterm"), bad()).unwrap_err();
            assert!(e.to_string().starts_with("cannot use COLUMNS"), "{e}");
        }
    }
}
