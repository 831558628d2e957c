//! Command-line parsing, by hand: the dependency list is a feature.
//!
//! Arguments arrive as `OsString`s (`std::env::args_os`): path values (`-o`,
//! `--cache-dir`) are taken as they are, bytes that are not UTF-8 included; any
//! other value, and the reference, must be UTF-8, else it is a usage error naming
//! the option.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use forge_oci::manifest::Platform;
use forge_oci::{LayerSelector, TagPolicy};

use super::usage::{
    CACHE_USAGE, INSPECT_USAGE, MAIN_USAGE, PULL_USAGE, REF_OPTIONS, RESOLVE_USAGE, VENDOR_USAGE,
};

/// Settings shared by the commands that take a reference.
#[derive(Debug, Default)]
pub struct RefArgs {
    pub reference: String,
    /// References after the first: `pull` and `vendor` take several.
    pub more_references: Vec<String>,
    pub offline: bool,
    pub insecure: Vec<String>,
    pub cache_dir: Option<PathBuf>,
    pub platforms: Vec<Platform>,
    pub media_types: Vec<String>,
    pub layer: Option<LayerSelector>,
    pub tag_policy: Option<TagPolicy>,
    /// `--mirror REGISTRY=MIRROR`, in order.
    pub mirrors: Vec<(String, String)>,
    pub layouts: Vec<PathBuf>,
    pub json: bool,
    pub quiet: bool,
}

#[derive(Debug)]
pub enum CacheCommand {
    Path,
    /// `platforms` and `media_types` choose the layer shown, as they do for a pull.
    Ls {
        json: bool,
        platforms: Vec<Platform>,
        media_types: Vec<String>,
    },
    Prune {
        older_than: Option<Duration>,
    },
    Verify,
    Clear,
}

/// Where `pull -o` copies the artifact.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// `-o -`.
    Stdout,
    /// `-o FILE`.
    File(PathBuf),
}

#[derive(Debug)]
pub enum Command {
    Help(String),
    Version,
    Pull {
        args: RefArgs,
        output: Option<Output>,
        /// `--jobs`, for several references.
        jobs: Option<usize>,
    },
    Resolve(RefArgs),
    Inspect(RefArgs),
    Vendor {
        args: RefArgs,
        to: PathBuf,
    },
    Cache {
        command: CacheCommand,
        cache_dir: Option<PathBuf>,
    },
}

/// A usage error: the message, and the help of the command it concerns.
#[derive(Debug)]
pub struct UsageError {
    pub message: String,
    pub usage: String,
}

pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut args = args.into_iter();
    let main = |message: String| UsageError {
        message,
        usage: MAIN_USAGE.to_owned(),
    };
    let command = args.next();
    match command.as_deref().map(OsStr::to_string_lossy).as_deref() {
        None => Err(main("no command given".into())),
        Some("-h" | "--help" | "help") => Ok(Command::Help(MAIN_USAGE.into())),
        Some("-V" | "--version") => Ok(Command::Version),
        Some("pull") => {
            let usage = format!("{PULL_USAGE}\n{REF_OPTIONS}");
            let mut output = None;
            let mut jobs = None;
            let parsed = parse_ref_args(args, &usage, &mut |flag, next| match flag {
                "-j" | "--jobs" => {
                    let value = text(flag, next(flag)?).ok().and_then(|v| v.parse().ok());
                    jobs = Some(value.filter(|&n| (1..=64).contains(&n)).ok_or_else(|| {
                        UsageError {
                            message: format!("`{flag}` needs a number from 1 to 64"),
                            usage: usage.clone(),
                        }
                    })?);
                    Ok(true)
                }
                "-o" | "--output" => {
                    let value = next(flag)?;
                    output = Some(if value == "-" {
                        Output::Stdout
                    } else {
                        Output::File(non_empty_path(flag, value).map_err(|message| UsageError {
                            message,
                            usage: usage.clone(),
                        })?)
                    });
                    Ok(true)
                }
                _ => Ok(false),
            })?;
            Ok(match parsed {
                Some(args) => {
                    if args.json && output == Some(Output::Stdout) {
                        return Err(UsageError {
                            message: "`--json` and `-o -` both want standard output".into(),
                            usage,
                        });
                    }
                    if output.is_some() && !args.more_references.is_empty() {
                        return Err(UsageError {
                            message: "`-o` takes one REF; without it, several REFs are pulled \
                                      into the cache and their paths printed"
                                .into(),
                            usage,
                        });
                    }
                    Command::Pull { args, output, jobs }
                }
                None => Command::Help(usage),
            })
        }
        Some("resolve") => {
            let usage = format!("{RESOLVE_USAGE}\n{REF_OPTIONS}");
            Ok(
                one_ref(parse_ref_args(args, &usage, &mut |_, _| Ok(false))?, &usage)?
                    .map_or(Command::Help(usage), Command::Resolve),
            )
        }
        Some("inspect") => {
            let usage = format!("{INSPECT_USAGE}\n{REF_OPTIONS}");
            Ok(
                one_ref(parse_ref_args(args, &usage, &mut |_, _| Ok(false))?, &usage)?
                    .map_or(Command::Help(usage), Command::Inspect),
            )
        }
        Some("vendor") => {
            let usage = format!("{VENDOR_USAGE}\n{REF_OPTIONS}");
            let mut to = None;
            let parsed = parse_ref_args(args, &usage, &mut |flag, next| match flag {
                "--to" => {
                    to = Some(
                        non_empty_path(flag, next(flag)?).map_err(|message| UsageError {
                            message,
                            usage: usage.clone(),
                        })?,
                    );
                    Ok(true)
                }
                _ => Ok(false),
            })?;
            match (parsed, to) {
                (None, _) => Ok(Command::Help(usage)),
                (Some(args), Some(to)) => Ok(Command::Vendor { args, to }),
                (Some(_), None) => Err(UsageError {
                    message: "missing `--to DIR`".into(),
                    usage,
                }),
            }
        }
        Some("cache") => parse_cache(args),
        Some(other) => Err(main(format!("unknown command `{other}`"))),
    }
}

/// The arguments of a command that takes one reference: a second is a usage error.
fn one_ref(args: Option<RefArgs>, usage: &str) -> Result<Option<RefArgs>, UsageError> {
    match args.as_ref().and_then(|a| a.more_references.first()) {
        Some(extra) => Err(UsageError {
            message: format!("unexpected argument `{extra}`"),
            usage: usage.to_owned(),
        }),
        None => Ok(args),
    }
}

/// The value after an option: `next(flag)`.
type Next<'a> = dyn FnMut(&str) -> Result<OsString, UsageError> + 'a;

/// The value of an option that takes text: UTF-8, or a usage error naming `flag`.
fn text(flag: &str, value: OsString) -> Result<String, String> {
    value.into_string().map_err(|value| {
        format!(
            "`{flag}` needs UTF-8 text; `{}` is not",
            value.to_string_lossy()
        )
    })
}

/// Parses the options of a command that takes one reference. `extra` handles the
/// command's own flags. `None` means help was asked for.
fn parse_ref_args(
    args: impl Iterator<Item = OsString>,
    usage: &str,
    extra: &mut dyn FnMut(&str, &mut Next<'_>) -> Result<bool, UsageError>,
) -> Result<Option<RefArgs>, UsageError> {
    let err = |message: String| UsageError {
        message,
        usage: usage.to_owned(),
    };
    let mut args = args.peekable();
    let mut out = RefArgs::default();
    let mut reference = None;
    while let Some(arg) = args.next() {
        let mut next = |flag: &str| {
            args.next()
                .ok_or_else(|| err(format!("`{flag}` needs a value")))
        };
        // An option is UTF-8; bytes that are not can only be a (bad) reference or
        // an unknown option, and are shown with U+FFFD in their place.
        let flag = arg.to_string_lossy();
        match &*flag {
            "-h" | "--help" => return Ok(None),
            "--offline" => out.offline = true,
            "--json" => out.json = true,
            "-q" | "--quiet" => out.quiet = true,
            "--insecure" => out.insecure.push(text(&flag, next(&flag)?).map_err(err)?),
            "--cache-dir" => {
                out.cache_dir = Some(non_empty_path(&flag, next(&flag)?).map_err(err)?)
            }
            "--layout" => out
                .layouts
                .push(non_empty_path(&flag, next(&flag)?).map_err(err)?),
            "--mirror" => {
                let value = text(&flag, next(&flag)?).map_err(err)?;
                let (registry, mirror) = value
                    .split_once('=')
                    .ok_or_else(|| err(format!("`--mirror {value}`: expected REGISTRY=MIRROR")))?;
                out.mirrors.push((registry.to_owned(), mirror.to_owned()));
            }
            "--media-type" => out
                .media_types
                .push(text(&flag, next(&flag)?).map_err(err)?),
            "--platform" => {
                let value = text(&flag, next(&flag)?).map_err(err)?;
                out.platforms.push(parse_platform(&value).map_err(err)?);
            }
            "--layer" => {
                let value = text(&flag, next(&flag)?).map_err(err)?;
                if value.is_empty() {
                    return Err(err("`--layer` needs a title or a sha256: digest".into()));
                }
                out.layer = Some(
                    value
                        .parse()
                        .map_err(|e| err(format!("`--layer {value}`: {e}")))?,
                );
            }
            "--tag-policy" => {
                let value = text(&flag, next(&flag)?).map_err(err)?;
                out.tag_policy = Some(match value.as_str() {
                    "cache-first" => TagPolicy::CacheFirst,
                    "revalidate" => TagPolicy::Revalidate,
                    v => match v.strip_prefix("max-age=") {
                        Some(d) => TagPolicy::MaxAge(parse_duration(d).map_err(err)?),
                        None => {
                            return Err(err(format!(
                                "`--tag-policy {value}`: expected cache-first, revalidate or max-age=DURATION"
                            )));
                        }
                    },
                });
            }
            f if f.starts_with('-') && f != "-" => {
                if !extra(f, &mut next)? {
                    return Err(err(format!("unknown option `{f}`")));
                }
            }
            _ if arg.to_str().is_none() && reference.is_some() => {
                return Err(err(format!("unexpected argument `{flag}`")));
            }
            _ if arg.to_str().is_none() => {
                return Err(err(format!(
                    "REF `{flag}` is not valid UTF-8 (references are ASCII)"
                )));
            }
            _ if reference.is_some() => out.more_references.push(flag.into_owned()),
            _ => reference = Some(flag.into_owned()),
        }
    }
    out.reference = reference.ok_or_else(|| err("missing REF".into()))?;
    Ok(Some(out))
}

/// `OS/ARCH`, both parts non-empty.
fn parse_platform(value: &str) -> Result<Platform, String> {
    let (os, arch) = value
        .split_once('/')
        .filter(|(os, arch)| !os.is_empty() && !arch.is_empty())
        .ok_or_else(|| format!("`--platform {value}`: expected OS/ARCH, e.g. wasip2/wasm"))?;
    Ok(Platform::new(os, arch))
}

fn parse_cache(args: impl Iterator<Item = OsString>) -> Result<Command, UsageError> {
    let err = |message: String| UsageError {
        message,
        usage: CACHE_USAGE.to_owned(),
    };
    let mut args = args.peekable();
    let mut sub = None;
    let (mut cache_dir, mut json, mut older_than) = (None, false, None);
    let (mut platforms, mut media_types) = (Vec::new(), Vec::new());
    while let Some(arg) = args.next() {
        let mut next = |flag: &str| {
            args.next()
                .ok_or_else(|| err(format!("`{flag}` needs a value")))
        };
        let flag = arg.to_string_lossy();
        match &*flag {
            "-h" | "--help" => return Ok(Command::Help(CACHE_USAGE.into())),
            "--cache-dir" => cache_dir = Some(non_empty_path(&flag, next(&flag)?).map_err(err)?),
            "--json" => json = true,
            "--platform" => {
                let value = text(&flag, next(&flag)?).map_err(err)?;
                platforms.push(parse_platform(&value).map_err(err)?);
            }
            "--media-type" => media_types.push(text(&flag, next(&flag)?).map_err(err)?),
            "--older-than" => {
                let value = text(&flag, next(&flag)?).map_err(err)?;
                older_than = Some(parse_duration(&value).map_err(err)?);
            }
            f if f.starts_with('-') => return Err(err(format!("unknown option `{f}`"))),
            _ if sub.is_some() => return Err(err(format!("unexpected argument `{flag}`"))),
            _ => sub = Some(flag.into_owned()),
        }
    }
    let selection = !platforms.is_empty() || !media_types.is_empty();
    let command = match sub.as_deref() {
        Some("path") => CacheCommand::Path,
        Some("ls") => CacheCommand::Ls {
            json,
            platforms,
            media_types,
        },
        Some("prune") => CacheCommand::Prune { older_than },
        Some("verify") => CacheCommand::Verify,
        Some("clear") => CacheCommand::Clear,
        Some(other) => return Err(err(format!("unknown cache command `{other}`"))),
        None => return Err(err("missing cache command".into())),
    };
    let misplaced = match &command {
        CacheCommand::Ls { .. } => older_than.is_some(),
        CacheCommand::Prune { .. } => json || selection,
        _ => json || selection || older_than.is_some(),
    };
    if misplaced {
        return Err(err(
            "`--json`, `--platform` and `--media-type` go with `ls`, `--older-than` with `prune`"
                .into(),
        ));
    }
    Ok(Command::Cache { command, cache_dir })
}

/// The value of an option that takes a path, taken as it is (it need not be
/// UTF-8). An empty one is a usage error: the file system would take it as the
/// current directory (and `cache clear` would empty that), or fail with a message
/// that names no option.
fn non_empty_path(flag: &str, value: OsString) -> Result<PathBuf, String> {
    if value.is_empty() {
        Err(format!("`{flag}` needs a path, not an empty string"))
    } else {
        Ok(value.into())
    }
}

/// `90`, `90s`, `15m`, `12h`, `7d` or `2w`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 30s, 10m, 12h, 7d)"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => {
            return Err(format!(
                "`{s}`: unknown unit `{unit}` (use s, m, h, d or w)"
            ));
        }
    };
    Ok(Duration::from_secs(n.saturating_mul(seconds)))
}

#[cfg(test)]
mod tests;
