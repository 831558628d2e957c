//! Credential helpers (`docker-credential-<name> get`), run within bounds. A helper
//! is someone else's program: it may wait for ever (a keychain waiting for a
//! click), flood its output, or print its secret next to an error. None of that
//! may hold a pull, grow without limit, or reach an error message.
//!
//! - A run lasts at most the helper timeout (`ClientBuilder::credential_helper_timeout`,
//!   [`DEFAULT_TIMEOUT`] by default) and never past the pull's deadline; then the
//!   helper is killed and reaped. Processes the helper started itself are not
//!   killed (that needs a process group, and so unsafe code); if one keeps the
//!   helper's output open, the pull does not wait for it (see [`EXIT_GRACE`]).
//! - Its stdout and stderr are read on two threads, which keep the first
//!   [`MAX_OUTPUT`] bytes of each and drop the rest, so a chatty helper never
//!   blocks on a full pipe and never fills memory.
//! - What it printed is judged by [`judge`], which does no I/O: stdout is parsed
//!   and never shown; of stderr, the first line that is not blank, escaped and cut
//!   to 200 characters.
//! - No lock is held while a helper runs: answers are kept per (helper, server) in
//!   [`HelperAnswers`], which is only locked to look up and to insert.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::Credentials;
use crate::untrusted::printable;

/// How long a helper may run when the builder does not say.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a helper's stdout, and of its stderr, that is kept. Answers are a
/// few hundred bytes.
pub(crate) const MAX_OUTPUT: usize = 64 << 10;
/// The longest piece of a helper's stderr shown in a message, in characters.
const MAX_SHOWN: usize = 200;
/// How long the output of a helper that has exited may stay open (held by a
/// process it started) before what was read is judged as it stands.
const EXIT_GRACE: Duration = Duration::from_millis(500);
/// The longest pause between two looks at a running helper.
const MAX_POLL: Duration = Duration::from_millis(50);

/// How a helper's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// It exited with this status code (0: success).
    Code(i32),
    /// It ended without a status code: a signal it did not get from us.
    Signal,
    /// It was still running after the helper timeout, and was killed.
    TimedOut(Duration),
    /// It was still running at the pull's deadline, after this long, and was killed.
    Deadline(Duration),
}

/// What asking a helper gave.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Credentials for the server.
    Found(Credentials),
    /// The helper holds nothing for the server (it said "credentials not found").
    NotFound,
    /// Why the helper gave nothing usable: one printable line that quotes no stdout.
    Failed(String),
    /// [`Answer::Failed`] because the pull's deadline came first: not kept for
    /// the next pull, which may have more time.
    Cut(String),
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Found(c) => write!(f, "Found({c:?})"),
            Answer::NotFound => f.write_str("NotFound"),
            Answer::Failed(why) => write!(f, "Failed({why:?})"),
            Answer::Cut(why) => write!(f, "Cut({why:?})"),
        }
    }
}

/// The JSON a helper prints on success.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// Judges what `program` printed and how it ended; no I/O. `stdout` and `stderr`
/// are what was kept of them: more than [`MAX_OUTPUT`] bytes means the helper
/// printed too much.
pub(crate) fn judge(program: &str, ended: Ended, stdout: &[u8], stderr: &[u8]) -> Answer {
    let program = printable(program, MAX_SHOWN);
    let said = first_line(stderr);
    let why = |reason: String| match &said {
        Some(line) => format!("{reason}: {line}"),
        None => reason,
    };
    match ended {
        Ended::TimedOut(t) => {
            return Answer::Failed(why(format!(
                "{program} get did not answer within {} and was stopped",
                seconds(t)
            )));
        }
        Ended::Deadline(t) => {
            return Answer::Cut(why(format!(
                "{program} get was stopped after {}, at the pull's deadline",
                seconds(t)
            )));
        }
        Ended::Signal => return Answer::Failed(why(format!("{program} get was killed"))),
        // Helpers say "credentials not found in native keychain" (on stdout, for
        // docker's own) when they hold nothing for the server.
        Ended::Code(code) if code != 0 => {
            return if says_not_found(stdout) || says_not_found(stderr) {
                Answer::NotFound
            } else {
                Answer::Failed(why(format!("{program} get failed (exit status {code})")))
            };
        }
        Ended::Code(_) => {}
    }
    if stdout.len() > MAX_OUTPUT {
        return Answer::Failed(why(format!(
            "{program} get printed more than {} KiB",
            MAX_OUTPUT >> 10
        )));
    }
    // serde's message could quote the answer, secret included: the position only.
    match serde_json::from_slice::<HelperAnswer>(stdout) {
        Ok(a) if a.username.is_empty() && a.secret.is_empty() => Answer::NotFound,
        Ok(a) if a.username == "<token>" => Answer::Found(Credentials::identity_token(a.secret)),
        Ok(a) => Answer::Found(Credentials::basic(a.username, a.secret)),
        Err(e) => Answer::Failed(why(format!(
            "{program} get did not print {{\"Username\",\"Secret\"}} JSON (line {}, column {})",
            e.line(),
            e.column()
        ))),
    }
}

fn says_not_found(output: &[u8]) -> bool {
    String::from_utf8_lossy(output)
        .to_ascii_lowercase()
        .contains("not found")
}

/// The first line of `stderr` that is not blank, escaped and cut short.
fn first_line(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&stderr[..stderr.len().min(MAX_OUTPUT)]);
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| printable(l, MAX_SHOWN))
}

/// `10 s`, `1.5 s`.
fn seconds(t: Duration) -> String {
    if t.subsec_millis() == 0 {
        format!("{} s", t.as_secs())
    } else {
        format!("{:.1} s", t.as_secs_f64())
    }
}

/// Helper answers by (helper, server), so that a helper runs once per client and
/// server, not per request. The map is locked only to look up and to insert, never
/// while a helper runs: a slow helper holds up no other lookup, and two threads
/// that ask at once may both run it (the first answer is kept).
#[derive(Default)]
pub(crate) struct HelperAnswers(Mutex<HashMap<(String, String), Answer>>);

impl fmt::Debug for HelperAnswers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut servers: Vec<String> = self
            .lock()
            .keys()
            .map(|(name, server)| format!("{name} for {server}"))
            .collect();
        servers.sort();
        f.debug_tuple("HelperAnswers").field(&servers).finish()
    }
}

impl HelperAnswers {
    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Answer>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The answer of helper `name` for `server`: the one kept, or a new run
    /// bounded by `timeout` and `deadline`.
    pub(crate) fn get(
        &self,
        name: &str,
        server: &str,
        timeout: Duration,
        deadline: Option<Instant>,
    ) -> Answer {
        let key = (name.to_owned(), server.to_owned());
        if let Some(answer) = self.lock().get(&key) {
            return answer.clone();
        }
        let answer = run(name, server, timeout, deadline);
        if !matches!(answer, Answer::Cut(_)) {
            self.lock().entry(key).or_insert_with(|| answer.clone());
        }
        answer
    }
}

/// Runs `docker-credential-<name> get` with `server` on its stdin, for at most
/// `timeout` and never past `deadline`.
fn run(name: &str, server: &str, timeout: Duration, deadline: Option<Instant>) -> Answer {
    let program = format!("docker-credential-{name}");
    let start = Instant::now();
    let by_timeout = start.checked_add(timeout);
    let (end, at_deadline) = match (by_timeout, deadline) {
        (Some(t), Some(d)) if d < t => (Some(d), true),
        (None, Some(d)) => (Some(d), true),
        (t, _) => (t, false),
    };
    if at_deadline && end.is_some_and(|d| d <= start) {
        return Answer::Cut(format!(
            "{} get was not run: the pull's deadline had passed",
            printable(&program, MAX_SHOWN)
        ));
    }
    let child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return Answer::Failed(format!(
                "cannot run {}: {e}",
                printable(&program, MAX_SHOWN)
            ));
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A host name fits in any pipe's buffer, so this cannot block. A helper
        // that exits without reading it is judged by how it ended.
        let _ = stdin.write_all(server.as_bytes());
    }
    let (stdout, stderr) = match (
        Capture::start(child.stdout.take(), "stdout"),
        Capture::start(child.stderr.take(), "stderr"),
    ) {
        (Ok(out), Ok(err)) => (out, err),
        (Err(e), _) | (_, Err(e)) => {
            stop(&mut child);
            return Answer::Failed(format!(
                "cannot read the output of {}: {e}",
                printable(&program, MAX_SHOWN)
            ));
        }
    };
    let ended = match wait(&mut child, &stdout, &stderr, end) {
        Ok(Some(status)) => match status.code() {
            Some(code) => Ended::Code(code),
            None => Ended::Signal,
        },
        Ok(None) if at_deadline => Ended::Deadline(start.elapsed()),
        Ok(None) => Ended::TimedOut(timeout),
        Err(e) => {
            stop(&mut child);
            return Answer::Failed(format!(
                "cannot wait for {}: {e}",
                printable(&program, MAX_SHOWN)
            ));
        }
    };
    judge(&program, ended, &stdout.bytes(), &stderr.bytes())
}

/// Waits until the helper has exited and its output is closed (or [`EXIT_GRACE`]
/// after it exited), or until `end`, when it is killed: `Ok(None)`.
fn wait(
    child: &mut Child,
    stdout: &Capture,
    stderr: &Capture,
    end: Option<Instant>,
) -> io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_millis(1);
    let mut exited: Option<(ExitStatus, Instant)> = None;
    loop {
        let now = Instant::now();
        if exited.is_none() {
            exited = child.try_wait()?.map(|status| (status, now));
        }
        let past_end = end.is_some_and(|e| now >= e);
        match exited {
            Some((status, at)) => {
                let closed = stdout.done() && stderr.done();
                if closed || past_end || now.saturating_duration_since(at) >= EXIT_GRACE {
                    return Ok(Some(status));
                }
            }
            None if past_end => {
                stop(child);
                return Ok(None);
            }
            None => {}
        }
        let left = end.map_or(pause, |e| e.saturating_duration_since(now));
        thread::sleep(pause.min(left));
        pause = (pause * 2).min(MAX_POLL);
    }
}

/// Kills the helper and reaps it, whatever state it is in.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// One of a helper's output pipes, read on its own thread into a buffer that keeps
/// [`MAX_OUTPUT`] + 1 bytes (the one more says there was more). The thread ends
/// when the pipe closes; nobody waits for it past the helper's bounds.
struct Capture {
    kept: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl Capture {
    fn start(pipe: Option<impl Read + Send + 'static>, name: &str) -> io::Result<Capture> {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let Some(mut pipe) = pipe else {
            return Ok(Capture { kept, reader: None });
        };
        let into = Arc::clone(&kept);
        let reader = thread::Builder::new()
            .name(format!("forge-oci credential helper {name}"))
            .spawn(move || {
                let mut chunk = [0u8; 8192];
                loop {
                    match pipe.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => {
                            let mut kept = into.lock().unwrap_or_else(|p| p.into_inner());
                            let room = (MAX_OUTPUT + 1).saturating_sub(kept.len());
                            kept.extend_from_slice(&chunk[..n.min(room)]);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
            })?;
        Ok(Capture {
            kept,
            reader: Some(reader),
        })
    }

    /// Whether the pipe is closed and everything in it read.
    fn done(&self) -> bool {
        self.reader.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// What was kept so far.
    fn bytes(&self) -> Vec<u8> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "docker-credential-test";

    fn failed(a: Answer) -> String {
        match a {
            Answer::Failed(why) | Answer::Cut(why) => why,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn answers_are_parsed() {
        let ok = |out: &str| judge(P, Ended::Code(0), out.as_bytes(), b"");
        assert_eq!(
            ok(r#"{"ServerURL":"s","Username":"u","Secret":"p"}"#),
            Answer::Found(Credentials::basic("u", "p"))
        );
        assert_eq!(
            ok(r#"{"Username":"<token>","Secret":"refresh"}"#),
            Answer::Found(Credentials::identity_token("refresh"))
        );
        assert_eq!(ok(r#"{"Username":"","Secret":""}"#), Answer::NotFound);
        let why = failed(ok(r#"{"Username":"u","Secret":7}"#));
        assert!(why.contains("did not print"), "{why}");
        assert_eq!(
            judge(
                P,
                Ended::Code(1),
                b"credentials not found in native keychain",
                b""
            ),
            Answer::NotFound
        );
    }

    #[test]
    fn failures_say_one_escaped_line_of_stderr_and_nothing_of_stdout() {
        let secret = r#"{"Username":"u","Secret":"hunter2-secret"}"#;
        let mut stderr = b"\n  \x1b]0;owned\x07 keychain is locked\nsecond line\n".to_vec();
        stderr.extend(std::iter::repeat_n(b'x', 3 << 20));
        let why = failed(judge(P, Ended::Code(1), secret.as_bytes(), &stderr));
        assert_eq!(
            why,
            "docker-credential-test get failed (exit status 1): \\x1b]0;owned\\x07 keychain is locked"
        );
        let long = "y".repeat(5000);
        let why = failed(judge(P, Ended::Code(2), b"", long.as_bytes()));
        assert!(why.chars().count() < 300 && why.ends_with('…'), "{why}");
        let why = failed(judge(
            P,
            Ended::TimedOut(DEFAULT_TIMEOUT),
            secret.as_bytes(),
            b"",
        ));
        assert_eq!(
            why,
            "docker-credential-test get did not answer within 10 s and was stopped"
        );
        let why = failed(judge(
            P,
            Ended::Deadline(Duration::from_millis(1500)),
            b"",
            b"",
        ));
        assert!(why.contains("after 1.5 s, at the pull's deadline"), "{why}");
        let flood = vec![b' '; MAX_OUTPUT + 1];
        let why = failed(judge(P, Ended::Code(0), &flood, b""));
        assert!(why.contains("printed more than 64 KiB"), "{why}");
    }
}
