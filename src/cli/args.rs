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

pub const MAIN_USAGE: &str = "\
forge-oci: pull WebAssembly plugins and other single-blob OCI artifacts into a shared cache

usage:
  forge-oci pull REF [-o FILE | -o -] [OPTIONS]   fetch into the cache; print the path or copy it
  forge-oci pull REF REF... [-j N] [OPTIONS]      fetch several at once; print their paths in order
  forge-oci resolve REF [--json] [OPTIONS]        print the digest REF resolves to
  forge-oci inspect REF [OPTIONS]                 print the manifest (and index) as JSON
  forge-oci vendor --to DIR REF... [OPTIONS]      write REFs into an OCI image layout at DIR
  forge-oci cache path|ls|prune|verify|clear      look after the cache

Run `forge-oci COMMAND --help` for a command's options.";

const REF_OPTIONS: &str = "
options:
      --offline            use only the cache (also FORGE_OFFLINE=1, CARGO_NET_OFFLINE=true)
      --insecure HOST      reach HOST[:PORT] over plain HTTP (repeatable; also FORGE_OCI_INSECURE_HOSTS)
      --cache-dir DIR      the cache root (default: $FORGE_CACHE_DIR/openapi-forge/plugins)
      --mirror REG=MIRROR  ask MIRROR (HOST[:PORT][/PREFIX]) before registry REG (repeatable; FORGE_OCI_MIRRORS)
      --layout DIR         read the OCI image layout DIR first, also offline (repeatable; FORGE_OCI_LAYOUTS)
      --platform OS/ARCH   pick this platform from an index (repeatable, best first; default wasip2/wasm …)
      --media-type TYPE    accept only this layer media type (repeatable, best first; no fallback)
      --layer TITLE|DIGEST take the layer with this org.opencontainers.image.title or sha256: digest
      --tag-policy POLICY  cache-first (default), revalidate, or max-age=DURATION (30s, 10m, 12h, 7d)
      --json               print the result as one JSON object
  -q, --quiet              no progress bar, no notices on stderr
  -h, --help               print this help";

pub const PULL_USAGE: &str = "\
usage: forge-oci pull REF [-o FILE | -o -] [OPTIONS]
       forge-oci pull REF REF... [-j N] [OPTIONS]

Pull REF into the cache and print the cached file's path, or write it to FILE as
it downloads (`-`: standard output). Several REFs are pulled at once: a `REF PATH`
line each (--json: an array), every failure reported, exit 1 if any failed; `-o`
takes one REF. A progress bar is drawn on a terminal for one download, as wide as
COLUMNS (default 80); with TERM=dumb, a line at its start and end.

  -o, --output FILE        write the artifact to FILE (`-`: standard output)
  -j, --jobs N             pull at most N references at once (default 4)";

pub const RESOLVE_USAGE: &str = "\
usage: forge-oci resolve REF [--json] [OPTIONS]

Print the digest REF resolves to (pin it as NAME@DIGEST). A tag is asked of the
registry; --json adds the layer's digest, media type, size, title and why it is the
one. Nothing is downloaded but manifests.";

pub const INSPECT_USAGE: &str = "\
usage: forge-oci inspect REF [OPTIONS]

Print, as JSON, the manifest REF leads to, the index it was selected from, and
`layer`: the layer a pull with the same options would take and why, or why none.";

pub const VENDOR_USAGE: &str = "\
usage: forge-oci vendor --to DIR REF... [OPTIONS]

Write each REF (manifests, config, layers) into the OCI image layout at DIR, named
by its full reference in index.json; a REF vendored before is replaced. Commit DIR,
then build with FORGE_OCI_LAYOUTS=DIR and CARGO_NET_OFFLINE=true.

      --to DIR             the layout directory";

pub const CACHE_USAGE: &str = "\
usage: forge-oci cache COMMAND [--cache-dir DIR]

commands:
  path                     print the cache root
  ls [--json] [--platform OS/ARCH] [--media-type TYPE]
                           list cached references: digest, layer, size, when resolved (UTC);
                           the layer is chosen as pull chooses it, with these options
  prune [--older-than D]   remove unreferenced blobs and leftovers (and references older than D: 30d, 12h)
  verify                   re-hash every blob; remove corrupt ones
  clear                    remove everything

options:
      --cache-dir DIR      the cache root (default: $FORGE_CACHE_DIR/openapi-forge/plugins)
  -h, --help               print this help";

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
                    jobs = Some(value.filter(|&n| n > 0).ok_or_else(|| UsageError {
                        message: format!("`{flag}` needs a number of at least 1"),
                        usage: usage.clone(),
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
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert!(parse_duration("7y").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn pull_with_everything() {
        let cmd = parse(args(
            "pull r:1 -o out.wasm --offline --insecure a:5000 --insecure b --platform wasip1/wasm \
             --media-type application/wasm --tag-policy max-age=12h --cache-dir /c -q \
             --layer plugin.wasm",
        ))
        .unwrap();
        let Command::Pull { args, output, .. } = cmd else {
            panic!("{cmd:?}")
        };
        assert_eq!(output, Some(Output::File("out.wasm".into())));
        assert_eq!(args.reference, "r:1");
        assert!(args.offline && args.quiet && !args.json);
        assert_eq!(args.insecure, ["a:5000", "b"]);
        assert_eq!(args.platforms, [Platform::new("wasip1", "wasm")]);
        assert_eq!(
            args.tag_policy,
            Some(TagPolicy::MaxAge(Duration::from_secs(43_200)))
        );
        assert_eq!(args.cache_dir, Some(PathBuf::from("/c")));
        assert_eq!(args.layer, Some(LayerSelector::Title("plugin.wasm".into())));
    }

    #[test]
    fn layer_takes_a_title_or_a_valid_digest() {
        let layer = |s: &str| match parse(args(s)) {
            Ok(Command::Pull { args, .. }) => Ok(args.layer),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.message),
        };
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(
            layer(&format!("pull r --layer {d}")),
            Ok(Some(LayerSelector::Digest(_)))
        ));
        assert!(
            layer("pull r --layer sha256:abc")
                .unwrap_err()
                .contains("--layer")
        );
        assert!(
            layer("pull r --layer")
                .unwrap_err()
                .contains("needs a value")
        );
    }

    #[test]
    fn usage_errors_name_the_problem() {
        let msg = |s: &str| parse(args(s)).unwrap_err().message;
        assert_eq!(msg("pull"), "missing REF");
        assert_eq!(msg("pull r --bogus"), "unknown option `--bogus`");
        assert_eq!(msg("pull r -o"), "`-o` needs a value");
        assert!(msg("pull r --platform wasm").contains("OS/ARCH"));
        assert!(msg("pull r --tag-policy sometimes").contains("cache-first"));
        assert!(msg("pull r --json -o -").contains("standard output"));
        assert!(msg("pull r s -o out.wasm").starts_with("`-o` takes one REF"));
        assert_eq!(
            msg("pull r s --jobs 0"),
            "`--jobs` needs a number of at least 1"
        );
        assert_eq!(msg("resolve r s"), "unexpected argument `s`");
        assert_eq!(msg("inspect r s t"), "unexpected argument `s`");
        assert_eq!(msg("cache"), "missing cache command");
        assert!(msg("cache verify --json").contains("--json"));
        assert!(msg("cache prune --platform wasip1/wasm").contains("--platform"));
        assert!(msg("cache ls --media-type").contains("needs a value"));
        assert_eq!(msg("frobnicate"), "unknown command `frobnicate`");
        let empty = |v: &[&str]| parse(v.iter().map(OsString::from)).unwrap_err().message;
        for (line, flag) in [
            (&["pull", "r", "--cache-dir", ""][..], "--cache-dir"),
            (&["resolve", "r", "--cache-dir", ""], "--cache-dir"),
            (&["inspect", "--cache-dir", "", "r"], "--cache-dir"),
            (&["pull", "r", "-o", ""], "-o"),
            (&["pull", "r", "--output", ""], "--output"),
            (&["cache", "clear", "--cache-dir", ""], "--cache-dir"),
        ] {
            assert_eq!(
                empty(line),
                format!("`{flag}` needs a path, not an empty string"),
                "{line:?}"
            );
        }
    }

    #[test]
    fn cache_ls_takes_the_selection_of_a_pull() {
        let cmd = parse(args(
            "cache ls --platform wasip1/wasm --media-type application/x-plugin --json",
        ))
        .unwrap();
        let Command::Cache {
            command:
                CacheCommand::Ls {
                    json,
                    platforms,
                    media_types,
                },
            ..
        } = cmd
        else {
            panic!("{cmd:?}")
        };
        assert!(json);
        assert_eq!(platforms, [Platform::new("wasip1", "wasm")]);
        assert_eq!(media_types, ["application/x-plugin"]);
    }

    #[test]
    fn help_everywhere() {
        for s in [
            "--help",
            "pull --help",
            "resolve -h",
            "inspect --help",
            "cache --help",
            "cache ls --help",
        ] {
            assert!(matches!(parse(args(s)).unwrap(), Command::Help(_)), "{s}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn bytes_that_are_not_utf8() {
        use std::os::unix::ffi::OsStrExt;
        let bad = || OsStr::from_bytes(b"caf\xe9").to_owned();
        let parse_with = |before: &[&str], after: &[&str]| {
            let line: Vec<OsString> = before
                .iter()
                .map(OsString::from)
                .chain([bad()])
                .chain(after.iter().map(OsString::from))
                .collect();
            parse(line)
        };
        // Paths are taken as they are.
        let Command::Pull { args, output, .. } = parse_with(&["pull", "r", "-o"], &[]).unwrap()
        else {
            panic!()
        };
        assert_eq!(output, Some(Output::File(PathBuf::from(bad()))));
        assert_eq!(args.reference, "r");
        let cmd = parse_with(&["pull", "r", "--cache-dir"], &[]).unwrap();
        let Command::Pull { args, .. } = cmd else {
            panic!()
        };
        assert_eq!(args.cache_dir, Some(PathBuf::from(bad())));
        let cmd = parse_with(&["cache", "path", "--cache-dir"], &[]).unwrap();
        let Command::Cache { cache_dir, .. } = cmd else {
            panic!()
        };
        assert_eq!(cache_dir, Some(PathBuf::from(bad())));
        // Anything else is a usage error that names the option.
        let msg = |before: &[&str], after: &[&str]| parse_with(before, after).unwrap_err().message;
        assert_eq!(
            msg(&["pull"], &[]),
            "REF `caf\u{fffd}` is not valid UTF-8 (references are ASCII)"
        );
        for flag in ["--platform", "--media-type", "--insecure", "--tag-policy"] {
            assert_eq!(
                msg(&["resolve", "r", flag], &[]),
                format!("`{flag}` needs UTF-8 text; `caf\u{fffd}` is not")
            );
        }
        assert!(msg(&["cache", "prune", "--older-than"], &[]).starts_with("`--older-than`"));
        assert_eq!(
            msg(&["pull", "r"], &[]),
            "unexpected argument `caf\u{fffd}`"
        );
        assert_eq!(msg(&[], &[]), "unknown command `caf\u{fffd}`");
        assert_eq!(msg(&["cache"], &[]), "unknown cache command `caf\u{fffd}`");
    }
}
