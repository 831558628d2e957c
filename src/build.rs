//! Fetching artifacts from a build script (`build.rs`).
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), forge_oci::build::BuildError> {
//!     let wasm = forge_oci::build::fetch_to_out_dir("ghcr.io/owner/plugin:1.0", "plugin.wasm")?;
//!     println!("cargo:rustc-env=PLUGIN_WASM={}", wasm.display());
//!     Ok(())
//! }
//! ```
//!
//! # Change detection: read this if your script reads files
//!
//! Cargo reruns a build script whose package changed in any way, until the script
//! prints its first `cargo:rerun-if-…` line; from then on cargo watches only what
//! such lines name. These functions print `rerun-if-env-changed` lines (below), so
//! **a file your script reads, say a list of plugins, is no longer watched unless
//! you say so**, and editing it would leave a stale build. Name each such file
//! with [`rerun_if_changed`] (or print `cargo:rerun-if-changed=FILE` yourself):
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), forge_oci::build::BuildError> {
//!     forge_oci::build::rerun_if_changed("plugins.txt");
//!     for line in std::fs::read_to_string("plugins.txt").unwrap_or_default().lines() {
//!         let (name, reference) = line.split_once(' ').unwrap_or((line, line));
//!         forge_oci::build::fetch_to_out_dir(reference, &format!("{name}.wasm"))?;
//!     }
//!     Ok(())
//! }
//! ```
//!
//! The script itself (`build.rs` and what it includes) is always watched by cargo.
//!
//! What these functions do for a build script:
//! - print `cargo:rerun-if-env-changed=` for every variable that can change the
//!   result ([`ENV_VARS`]), so cargo reruns the script when one changes and not
//!   otherwise;
//! - honour cargo's offline mode: cargo does not tell build scripts about
//!   `--offline`, but `CARGO_NET_OFFLINE=true` (the variable behind cargo's own
//!   `net.offline` setting) reaches them, and with it nothing is fetched (a
//!   vendored OCI image layout in `FORGE_OCI_LAYOUTS` is still read: that is how
//!   air-gapped builds get their plugins);
//! - report a wait for another build's download lock, and a mirror or layout
//!   passed over for the next source, as a `cargo:warning`;
//! - on failure, return a [`BuildError`] whose `Debug` is the readable message, so
//!   `fn main() -> Result<(), BuildError>` stops the build with what failed, why,
//!   and what to try.
//!
//! This is the one module that writes to standard output: in a build script that
//! is how one talks to cargo.
#![allow(clippy::print_stdout)]

use std::fmt;
use std::path::{Component, Path, PathBuf};

use crate::client::Client;
use crate::config::ClientBuilder;
use crate::error::Error;
use crate::event::Event;
use crate::results::Artifact;
use crate::untrusted::printable;

/// Every environment variable that can change what a fetch returns: the cache
/// root, offline mode, insecure hosts, TLS roots, the proxy variables as curl
/// reads them, where credentials are found (`DOCKER_CONFIG`, `REGISTRY_AUTH_FILE`,
/// `XDG_RUNTIME_DIR`, `HOME`, and `PATH` for credential helpers), and
/// `XDG_CACHE_HOME`. Made from the one table of variables the crate reads, so
/// it lists every one.
pub const ENV_VARS: [&str; crate::env::FETCH_COUNT] = crate::env::FETCH_VARS;

/// Tells cargo to rerun the build script when the file (or directory) at `path`
/// changes: call it for every file your script reads besides its own source, since
/// the `rerun-if-env-changed` lines the fetch functions print switch off cargo's
/// default of rerunning on any change (see the [module docs](self)). A relative
/// path is relative to the package's root, as cargo reads it.
///
/// A path cargo could not read back from one line (one holding a newline or
/// another control character) is not printed; a `cargo:warning` says so.
pub fn rerun_if_changed(path: impl AsRef<Path>) {
    let path = path.as_ref().to_string_lossy();
    if crate::untrusted::is_printable(&path) {
        println!("cargo:rerun-if-changed={path}");
    } else {
        println!(
            "cargo:warning=forge-oci: cannot watch `{}`: cargo reads one path per line",
            printable(&path, 400)
        );
    }
}

/// Fetches `reference` and returns the path of the cached blob (shared: do not
/// modify it). See the [module docs](self) for what it tells cargo.
///
/// # Errors
/// A [`BuildError`] explaining the failure.
pub fn fetch(reference: &str) -> Result<PathBuf, BuildError> {
    Ok(fetch_with(Client::builder(), reference)?
        .path()
        .to_path_buf())
}

/// Fetches `reference` and copies it to `$OUT_DIR/<file_name>`, returning that path.
/// The copy replaces any file there whole, as [`Artifact::copy_to`] does; a
/// download is written there as it arrives ([`Client::pull_to`]), not copied after.
///
/// `file_name` is a plain file name such as `plugin.wasm`: one path component,
/// not empty, without `/` or `\`, and neither `.` nor `..`, so the copy stays in
/// `OUT_DIR`. Anything else is refused before any I/O (nothing is fetched).
///
/// # Errors
/// A [`BuildError`] explaining the failure, including a `file_name` that is not a
/// plain file name and a missing `OUT_DIR` (not running under cargo), both found
/// before anything is fetched.
pub fn fetch_to_out_dir(reference: &str, file_name: &str) -> Result<PathBuf, BuildError> {
    if !is_plain_file_name(file_name) {
        return Err(BuildError::new(
            reference,
            Kind::NotAFileName(file_name.to_owned()),
        ));
    }
    let out_dir =
        crate::env::var("OUT_DIR").ok_or_else(|| BuildError::new(reference, Kind::NoOutDir))?;
    let dest = Path::new(&out_dir).join(file_name);
    build_client(Client::builder(), reference)?
        .pull_to(reference, &dest)
        .map_err(|e| BuildError::new(reference, Kind::Pull(e)))?;
    Ok(dest)
}

/// Whether `name` is exactly one normal path component, so that joined to a
/// directory it names a file in that directory. Both separators are refused on
/// every platform, so a build script behaves the same everywhere.
fn is_plain_file_name(name: &str) -> bool {
    let mut components = Path::new(name).components();
    // Comparing the component with the whole name also refuses what `components`
    // would quietly normalise away: `a/`, `a/.`, `./a`.
    matches!(
        (components.next(), components.next()),
        (Some(Component::Normal(c)), None) if c == name
    ) && !name.contains(['/', '\\'])
}

/// [`fetch`] with a builder of your own (platforms, media types, cache directory…).
/// The builder's event callback is replaced by one that talks to cargo.
///
/// # Errors
/// A [`BuildError`] explaining the failure.
pub fn fetch_with(builder: ClientBuilder, reference: &str) -> Result<Artifact, BuildError> {
    build_client(builder, reference)?
        .pull(reference)
        .map_err(|e| BuildError::new(reference, Kind::Pull(e)))
}

/// The client of [`fetch_with`]: cargo hears which variables to watch, and
/// the events a person should see.
fn build_client(builder: ClientBuilder, reference: &str) -> Result<Client, BuildError> {
    for var in ENV_VARS {
        println!("cargo:rerun-if-env-changed={var}");
    }
    builder
        .on_event(|event| match event {
            Event::WaitingForLock { .. }
            | Event::UsingCachedTag { .. }
            | Event::SourceSkipped { .. } => {
                println!("{}", cargo_warning(event));
            }
            _ => {}
        })
        .build()
        .inspect(|client| {
            // Vendoring again changes what a tag means offline: rerun then.
            for index in client.layout_index_files() {
                rerun_if_changed(index);
            }
        })
        .map_err(|error| BuildError::new(reference, Kind::Pull(error)))
}

/// A failed fetch, worded for the person reading cargo's output. Its `Debug` is
/// its `Display`, so returning it from `main` prints the message, not a struct.
pub struct BuildError {
    // Boxed: a build script's Result should stay small.
    inner: Box<(String, Kind)>,
}

enum Kind {
    Pull(Error),
    NoOutDir,
    /// The `file_name` given to [`fetch_to_out_dir`].
    NotAFileName(String),
}

impl BuildError {
    fn new(reference: &str, kind: Kind) -> BuildError {
        BuildError {
            inner: Box::new((reference.to_owned(), kind)),
        }
    }

    /// The library error behind the failure, if it came from a pull.
    pub fn error(&self) -> Option<&Error> {
        match &self.inner.1 {
            Kind::Pull(e) => Some(e),
            Kind::NoOutDir | Kind::NotAFileName(_) => None,
        }
    }

    fn hint(&self) -> &'static str {
        match &self.inner.1 {
            Kind::NoOutDir => "call it from a build script: cargo sets OUT_DIR there",
            Kind::NotAFileName(_) => {
                "pass a plain file name such as `plugin.wasm`; it is created in OUT_DIR"
            }
            Kind::Pull(Error::NotCached { .. }) => {
                "build once with network access (unset CARGO_NET_OFFLINE / FORGE_OFFLINE) to fill the cache"
            }
            Kind::Pull(Error::ReadOnlyCache { .. }) => {
                "point FORGE_CACHE_DIR at a writable directory"
            }
            Kind::Pull(Error::Transport { .. }) => {
                "check the network and the registry host; for a registry over plain HTTP, add it to FORGE_OCI_INSECURE_HOSTS"
            }
            Kind::Pull(Error::NotFound { .. }) => {
                "check the reference: registry, repository and tag"
            }
            Kind::Pull(Error::Unauthorized { .. } | Error::Denied { .. }) => {
                "check that the repository is public, or log in to the registry"
            }
            Kind::Pull(_) => {
                "rerun with the reference pinned by digest, or report the error to the plugin's publisher"
            }
        }
    }
}

/// A `cargo:warning=` line: one line, escaped, since a newline in it would be
/// read by cargo as a new instruction (`cargo:rustc-link-arg=…`).
fn cargo_warning(event: &Event<'_>) -> String {
    format!("cargo:warning={}", printable(&event.to_string(), 4000))
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |text: &dyn fmt::Display| printable(&text.to_string(), 4000);
        writeln!(f, "forge-oci could not fetch `{}`", shown(&self.inner.0))?;
        match &self.inner.1 {
            Kind::Pull(e) => {
                writeln!(f, "  error: {}", shown(e))?;
                let mut source = std::error::Error::source(e);
                while let Some(cause) = source {
                    writeln!(f, "  caused by: {}", shown(cause))?;
                    source = cause.source();
                }
            }
            Kind::NoOutDir => writeln!(f, "  error: OUT_DIR is not set")?,
            Kind::NotAFileName(name) => writeln!(
                f,
                "  error: `{}` is not a plain file name (one path component, not `.` or `..`): the copy would not stay in OUT_DIR",
                shown(name)
            )?,
        }
        write!(f, "  help: {}", self.hint())
    }
}

impl fmt::Debug for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// No `source()`: the message already carries the whole cause chain, and a
/// reporter that walks sources would print it twice. Use [`BuildError::error`].
impl std::error::Error for BuildError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_is_one_line_whatever_the_registry_said() {
        let r: crate::Reference = "example.com/a/b:1".parse().unwrap();
        let d = crate::Digest::of(b"m");
        let error = Error::Registry {
            registry: "example.com".into(),
            url: "https://example.com/v2/a/b/manifests/1".into(),
            status: 503,
            code: None,
            detail: Some("down\ncargo:rustc-link-arg=-Wl,--evil\x1b]0;title\x07".into()),
        };
        let event = Event::UsingCachedTag {
            reference: &r,
            digest: &d,
            error: &error,
        };
        let line = cargo_warning(&event);
        assert!(
            line.starts_with("cargo:warning=could not revalidate"),
            "{line}"
        );
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(line.contains("\\x0acargo:rustc-link-arg"), "{line}");
    }

    #[test]
    fn plain_file_names() {
        for good in [
            "plugin.wasm",
            "a",
            "..a",
            "a..",
            ".hidden",
            "with space.wasm",
        ] {
            assert!(is_plain_file_name(good), "{good:?}");
        }
        for bad in [
            "", ".", "..", "../x", "../../x", "/abs", "a/b", "a/", "a/.", "./a", "/", "a\\b",
            "..\\x",
        ] {
            assert!(!is_plain_file_name(bad), "{bad:?}");
        }
    }
}
