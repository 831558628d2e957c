//! `forge-oci`, the command-line front end. See `forge-oci --help`.

// The library never prints; the CLI's job is to.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
// The library's table of environment variables: the CLI reads its own two
// through it too, so the table lists every read.
#[allow(dead_code)]
#[path = "env.rs"]
mod env;
// The library's own escaping of outside text, compiled here too: whatever a
// server managed to put in an error or an event is escaped before it is printed.
#[allow(dead_code)]
#[path = "untrusted.rs"]
mod untrusted;

/// `println!` that does not panic when the reader goes away: `forge-oci … | head`
/// or `| grep -q` close the pipe early, and that is not an error.
macro_rules! out {
    ($($arg:tt)*) => {
        write_stdout(format_args!($($arg)*))
    };
}

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use cli::args::{CacheCommand, Command, Output, RefArgs};
use cli::progress::{Progress, Style, human};
use forge_oci::{Client, ClientBuilder, Error, Event, Network, PruneOptions};

fn main() -> ExitCode {
    let command = match cli::args::parse(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(usage) => {
            eprintln!("error: {}\n\n{}", usage.message, usage.usage);
            return ExitCode::from(2);
        }
    };
    match run(command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", shown(&e));
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                eprintln!("caused by: {}", shown(cause));
                source = cause.source();
            }
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> Result<ExitCode, Error> {
    match command {
        Command::Help(text) => out!("{text}"),
        Command::Version => out!("forge-oci {}", env!("CARGO_PKG_VERSION")),
        Command::Pull { args, output, jobs } => {
            if !args.more_references.is_empty() {
                return pull_many(&args, jobs);
            }
            pull(&args, output.as_ref())?;
        }
        Command::Resolve(args) => {
            let resolution = client(&args)?.resolve(&args.reference)?;
            if args.json {
                print_json(&resolution);
            } else {
                out!("{}", resolution.manifest_digest());
            }
        }
        Command::Inspect(args) => print_json(&client(&args)?.inspect(&args.reference)?),
        Command::Vendor { args, to } => vendor(&args, &to)?,
        Command::Cache { command, cache_dir } => {
            let mut builder = Client::builder().on_event(|e| eprintln!("{}", shown(e)));
            if let Some(dir) = cache_dir {
                builder = builder.cache_dir(dir);
            }
            // `ls` shows the layer a pull would return: the same selection applies.
            if let CacheCommand::Ls {
                platforms,
                media_types,
                ..
            } = &command
            {
                if !platforms.is_empty() {
                    builder = builder.platforms(platforms.clone());
                }
                if !media_types.is_empty() {
                    builder = builder.layer_media_types(media_types.clone());
                }
            }
            return cache(builder.build()?, command);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn client(args: &RefArgs) -> Result<Client, Error> {
    client_with(args, true)?.build()
}

/// The builder for a command's client; `bar`: whether a progress bar may be
/// drawn (one download at a time).
fn client_with(args: &RefArgs, bar: bool) -> Result<ClientBuilder, Error> {
    // TERM and COLUMNS are read only for a terminal: nothing else draws.
    let progress = if bar && !args.quiet && std::io::stderr().is_terminal() {
        let style = Style::from_env(env::var("TERM"), env::var("COLUMNS"))?;
        Progress::new(style, &args.reference)
    } else {
        Progress::silent()
    };
    let quiet = args.quiet;
    let mut b: ClientBuilder = Client::builder().on_event(move |event| match event {
        Event::Downloading {
            digest,
            received,
            total,
        } => progress.update(&digest.to_string(), *received, *total),
        Event::UsingCachedTag { .. } | Event::SourceSkipped { .. } if !quiet => {
            eprintln!("warning: {}", shown(event))
        }
        _ if !quiet => eprintln!("{}", shown(event)),
        _ => {}
    });
    if let Some(dir) = &args.cache_dir {
        b = b.cache_dir(dir);
    }
    if args.offline {
        b = b.network(Network::Offline);
    }
    for host in &args.insecure {
        b = b.insecure_host(host);
    }
    if !args.platforms.is_empty() {
        b = b.platforms(args.platforms.clone());
    }
    if !args.media_types.is_empty() {
        b = b.layer_media_types(args.media_types.clone());
    }
    if let Some(layer) = &args.layer {
        b = b.layer(layer.clone());
    }
    if let Some(policy) = args.tag_policy {
        b = b.tag_policy(policy);
    }
    for (registry, mirror) in &args.mirrors {
        b = b.mirror(registry, mirror);
    }
    for dir in &args.layouts {
        b = b.oci_layout(dir);
    }
    Ok(b)
}

/// `vendor --to DIR REF...`: one line per reference (its canonical name and
/// digest), or one JSON object listing them.
fn vendor(args: &RefArgs, to: &Path) -> Result<(), Error> {
    let refs: Vec<&str> = std::iter::once(args.reference.as_str())
        .chain(args.more_references.iter().map(String::as_str))
        .collect();
    let vendored = client(args)?.vendor(to, &refs)?;
    if args.json {
        let list: Vec<_> = vendored
            .iter()
            .map(|v| {
                serde_json::json!({
                    "reference": v.reference().to_string(),
                    "manifest_digest": v.manifest_digest(),
                    "blobs": v.blobs(),
                })
            })
            .collect();
        print_json(&serde_json::json!({ "layout": to.to_string_lossy(), "vendored": list }));
    } else {
        for v in &vendored {
            out!("{} {}", v.reference(), v.manifest_digest());
        }
    }
    Ok(())
}

fn pull(args: &RefArgs, output: Option<&Output>) -> Result<(), Error> {
    let client = client(args)?;
    // A file is written as the bytes arrive, and renamed into place once they verify.
    let artifact = match output {
        Some(Output::File(file)) => client.pull_to(&args.reference, file)?,
        _ => client.pull(&args.reference)?,
    };
    match output {
        Some(Output::Stdout) => match std::io::stdout().lock().write_all(&artifact.read()?) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.map_err(|e| Error::Io {
                action: "write",
                path: "<stdout>".into(),
                source: e,
            })?,
        },
        Some(Output::File(_)) => {}
        None if !args.json => out_path(artifact.path()),
        None => {}
    }
    if args.json {
        print_json(&artifact_json(&args.reference, &artifact));
    }
    Ok(())
}

/// `pull REF REF...`: all at once on `jobs` threads. One line per reference
/// pulled, `REF PATH`, in the order given (`--json`: an array of the objects a
/// single pull prints, with `{"reference", "error"}` for a failure); every
/// failure on stderr; exit 1 if any failed.
fn pull_many(args: &RefArgs, jobs: Option<usize>) -> Result<ExitCode, Error> {
    let mut builder = client_with(args, false)?;
    if let Some(jobs) = jobs {
        builder = builder.jobs(jobs);
    }
    let refs: Vec<&str> = std::iter::once(&args.reference)
        .chain(&args.more_references)
        .map(String::as_str)
        .collect();
    let results = builder.build()?.pull_all(&refs);
    let mut failed = false;
    let mut rows = Vec::new();
    for (r, result) in refs.iter().zip(&results) {
        match result {
            Ok(artifact) if args.json => rows.push(artifact_json(r, artifact)),
            Ok(artifact) => {
                let line = [r.as_bytes(), b" "].concat();
                #[cfg(unix)]
                {
                    use std::os::unix::ffi::OsStrExt;
                    let path = artifact.path().as_os_str().as_bytes();
                    write_line(|out| out.write_all(&[&line[..], path].concat()));
                }
                #[cfg(not(unix))]
                out!(
                    "{}{}",
                    String::from_utf8_lossy(&line),
                    artifact.path().display()
                );
            }
            Err(e) => {
                failed = true;
                eprintln!("error: {}: {}", shown(r), shown(e));
                let mut source = std::error::Error::source(e);
                while let Some(cause) = source {
                    eprintln!("caused by: {}", shown(cause));
                    source = cause.source();
                }
                if args.json {
                    rows.push(serde_json::json!({"reference": r, "error": e.to_string()}));
                }
            }
        }
    }
    if args.json {
        print_json(&rows);
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// What `pull --json` prints for one artifact.
fn artifact_json(reference: &str, artifact: &forge_oci::Artifact) -> serde_json::Value {
    let mut json = serde_json::json!({
        "reference": reference,
        "path": artifact.path().to_string_lossy(),
        "layer_digest": artifact.layer_digest(),
        "manifest_digest": artifact.manifest_digest(),
        "media_type": artifact.media_type(),
        "size": artifact.size(),
        "from_cache": artifact.from_cache(),
    });
    if let Some(title) = artifact.title() {
        json["title"] = title.into();
    }
    if let Some(module) = artifact.extracted_module() {
        json["extracted_module"] = module.to_string().into();
    }
    if let Some(bytes) = path_bytes(artifact.path()) {
        json["path_bytes"] = bytes.into();
    }
    json
}

/// The bytes of a path that is not UTF-8, for `--json`: JSON strings are Unicode,
/// so `path` holds it with U+FFFD for each byte that is not, and `path_bytes` the
/// exact bytes for a tool that must open it. `None` for a UTF-8 path (and, off
/// Unix, always: a path there is not bytes).
fn path_bytes(path: &Path) -> Option<Vec<u8>> {
    if path.to_str().is_some() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Some(path.as_os_str().as_bytes().to_vec())
    }
    #[cfg(not(unix))]
    None
}

/// Runs a cache command; `verify` exits 1 when it found (and removed) damage,
/// as `fsck` does when it corrected errors, so a cron job can alert.
fn cache(client: Client, command: CacheCommand) -> Result<ExitCode, Error> {
    let cache = client.cache();
    match command {
        CacheCommand::Path => out_path(cache.root()),
        CacheCommand::Ls { json, .. } => {
            let entries = cache.list()?;
            let unix = |t: SystemTime| {
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            };
            if json {
                let rows: Vec<_> = entries
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "reference": e.reference().to_string(),
                            "manifest_digest": e.manifest_digest(),
                            "layer_digest": e.layer_digest(),
                            "size": e.size(),
                            "missing_layer": e.missing_layer().map(ToString::to_string),
                            "resolved_at": unix(e.resolved_at()),
                            "resolved_at_utc": rfc3339(e.resolved_at()),
                        })
                    })
                    .collect();
                print_json(&rows);
            } else {
                for e in &entries {
                    let age = e.resolved_at().elapsed().map_or(0, |d| d.as_secs());
                    let size = match (e.size(), e.missing_layer()) {
                        (Some(size), _) => human(size),
                        (None, Some(missing)) => shown(missing),
                        (None, None) => "no layer".to_owned(),
                    };
                    out!(
                        "{}  {}  {}  resolved {} ({} ago)",
                        e.reference(),
                        e.manifest_digest(),
                        size,
                        rfc3339(e.resolved_at()),
                        ago(age)
                    );
                }
            }
        }
        CacheCommand::Prune { older_than } => {
            let mut options = PruneOptions::default();
            if let Some(age) = older_than {
                options = options.older_than(age);
            }
            let r = cache.prune(&options)?;
            out!(
                "removed {} references, {} blobs, {} extracted modules and {} temporary files; freed {}",
                r.refs_removed(),
                r.blobs_removed(),
                r.derived_removed(),
                r.temp_files_removed(),
                human(r.bytes_freed())
            );
        }
        CacheCommand::Verify => {
            let r = cache.verify()?;
            for c in r.corrupt() {
                match c.actual() {
                    Some(actual) => out!(
                        "corrupt: {} (content hashes to {actual}); removed",
                        shown(&c.path().display())
                    ),
                    None => out!(
                        "corrupt: {} (not a readable regular file); removed",
                        shown(&c.path().display())
                    ),
                }
            }
            out!(
                "checked {} blobs ({}); {} corrupt",
                r.blobs_checked(),
                human(r.bytes_checked()),
                r.corrupt().len()
            );
            if !r.corrupt().is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
        CacheCommand::Clear => {
            cache.clear()?;
            out!("cleared {}", cache.root().display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `2026-12-01T17:35:00Z`: a time as RFC 3339 in UTC, to the second. Times
/// before 1970 (a clock gone wrong) show as the epoch.
fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01: Howard Hinnant's
/// `civil_from_days`, for days since the epoch (never negative here).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn ago(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

fn write_stdout(args: std::fmt::Arguments<'_>) {
    write_line(|out| out.write_fmt(args));
}

/// Prints a path and a newline, as its bytes on Unix (so `$(forge-oci pull …)` is
/// the path even when it is not UTF-8), with U+FFFD for what is not Unicode elsewhere.
fn out_path(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        write_line(|out| out.write_all(path.as_os_str().as_bytes()));
    }
    #[cfg(not(unix))]
    out!("{}", path.display());
}

/// Writes with `f` and a newline to standard output; a closed pipe ends the
/// process quietly, any other failure with exit code 1.
fn write_line(f: impl FnOnce(&mut std::io::StdoutLock<'static>) -> std::io::Result<()>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = f(&mut stdout).and_then(|()| stdout.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

fn print_json(value: &impl serde::Serialize) {
    // Serialising our own plain data cannot fail; if it somehow did, say so rather than panic.
    match serde_json::to_string_pretty(value) {
        Ok(text) => out!("{}", json_for_terminal(&text)),
        Err(e) => eprintln!("error: cannot render JSON: {e}"),
    }
}

/// JSON text with the characters serde_json leaves raw but a terminal would act
/// on (DEL, C1 controls, bidirectional-text controls) written as `\uXXXX`
/// escapes: the same JSON value, safe to print. Only strings can hold them.
fn json_for_terminal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\n' || untrusted::is_printable(c.encode_utf8(&mut [0; 4])) {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        }
    }
    out
}

/// A message for the terminal, one line, with anything a terminal would act on
/// escaped.
fn shown(message: &dyn std::fmt::Display) -> String {
    untrusted::printable(&message.to_string(), 4000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_dates_match_known_instants() {
        let at = |secs: u64| rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z"); // a leap day of a leap century
        assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(at(4_107_542_400), "2100-03-01T00:00:00Z"); // 2100 is not a leap year
        assert_eq!(at(1_796_146_496), "2026-12-01T17:34:56Z");
    }
}
