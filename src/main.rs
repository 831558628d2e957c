//! `forge-oci`, the command-line front end. Argument parsing is hand-written to
//! keep the dependency list as it is.

// The library never prints; the CLI's job is to.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use forge_oci::{Client, Network};

const USAGE: &str = "\
usage: forge-oci pull REF [-o FILE | -o -] [--offline] [--insecure HOST]... [--cache-dir DIR]

Pull an OCI artifact (a wasm plugin) into the cache and print its path,
or copy it to FILE (`-` for standard output).

options:
  -o, --output FILE    copy the artifact to FILE (`-`: standard output)
      --offline        use only the cache (also FORGE_OFFLINE=1, CARGO_NET_OFFLINE=true)
      --insecure HOST  reach HOST[:PORT] over plain HTTP (also FORGE_OCI_INSECURE_HOSTS)
      --cache-dir DIR  cache root (default: $FORGE_CACHE_DIR/openapi-forge/plugins)
  -h, --help           print this help
  -V, --version        print the version";

struct Pull {
    reference: String,
    output: Option<String>,
    offline: bool,
    insecure: Vec<String>,
    cache_dir: Option<PathBuf>,
}

enum Command {
    Help,
    Version,
    Pull(Pull),
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter();
    match args.next().as_deref() {
        None => return Err("missing command".into()),
        Some("-h" | "--help" | "help") => return Ok(Command::Help),
        Some("-V" | "--version") => return Ok(Command::Version),
        Some("pull") => {}
        Some(other) => return Err(format!("unknown command `{other}`")),
    }
    let mut pull = Pull {
        reference: String::new(),
        output: None,
        offline: false,
        insecure: Vec::new(),
        cache_dir: None,
    };
    let value = |flag: &str, v: Option<String>| v.ok_or_else(|| format!("`{flag}` needs a value"));
    let mut reference = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-o" | "--output" => pull.output = Some(value(&arg, args.next())?),
            "--offline" => pull.offline = true,
            "--insecure" => pull.insecure.push(value(&arg, args.next())?),
            "--cache-dir" => pull.cache_dir = Some(value(&arg, args.next())?.into()),
            a if a.starts_with('-') && a != "-" => return Err(format!("unknown option `{a}`")),
            _ if reference.is_some() => return Err(format!("unexpected argument `{arg}`")),
            _ => reference = Some(arg),
        }
    }
    pull.reference = reference.ok_or("missing REF")?;
    Ok(Command::Pull(pull))
}

fn run(p: Pull) -> Result<(), forge_oci::Error> {
    let mut builder = Client::builder().on_event(|e| eprintln!("{e}"));
    if let Some(dir) = p.cache_dir {
        builder = builder.cache_dir(dir);
    }
    if p.offline {
        builder = builder.network(Network::Offline);
    }
    for h in p.insecure {
        builder = builder.insecure_host(h);
    }
    let artifact = builder.build()?.pull(&p.reference)?;
    let copy_err = |path: &str, e| forge_oci::Error::Io {
        action: "write",
        path: path.into(),
        source: e,
    };
    match p.output.as_deref() {
        None => println!("{}", artifact.path().display()),
        Some("-") => std::io::stdout()
            .write_all(&artifact.read()?)
            .map_err(|e| copy_err("<stdout>", e))?,
        Some(file) => {
            std::fs::copy(artifact.path(), file).map_err(|e| copy_err(file, e))?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match parse_args(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("forge-oci {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::Pull(p)) => match run(p) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    eprintln!("caused by: {cause}");
                    source = cause.source();
                }
                ExitCode::from(1)
            }
        },
        Err(msg) => {
            eprintln!("error: {msg}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
