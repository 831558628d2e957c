//! Every environment variable forge-oci reads, in one table. Nothing else in the
//! crate calls `std::env::var`: reads go through [`var`], which knows only the
//! names listed here, and `build::ENV_VARS` (what a build script tells cargo to
//! watch) is made from this table, so the two cannot drift apart. A test fails
//! when a read is added anywhere else.
//!
//! Self-contained (no `crate::` paths): the CLI compiles it too, for its own two.

use std::ffi::OsString;

/// One variable: its name, and whether it can change what a fetch returns (and
/// so belongs in a build script's `rerun-if-env-changed` lines).
pub(crate) struct Var {
    pub(crate) name: &'static str,
    pub(crate) changes_fetch: bool,
}

const fn fetch(name: &'static str) -> Var {
    Var {
        name,
        changes_fetch: true,
    }
}

const fn other(name: &'static str) -> Var {
    Var {
        name,
        changes_fetch: false,
    }
}

/// The table. Those read by a dependency or the system rather than by our own
/// code are marked: they change what a fetch does all the same.
pub(crate) const VARS: [Var; 23] = [
    fetch("FORGE_CACHE_DIR"),
    fetch("FORGE_OCI_INSECURE_HOSTS"),
    fetch("FORGE_OFFLINE"),
    fetch("CARGO_NET_OFFLINE"),
    // Mirrors and vendored OCI image layouts: other sources for the same references.
    fetch("FORGE_OCI_MIRRORS"),
    fetch("FORGE_OCI_LAYOUTS"),
    // TLS roots: a PEM or DER bundle that replaces the built-in ones.
    fetch("SSL_CERT_FILE"),
    // Proxies, as curl reads them (upper-case HTTP_PROXY never: httpoxy).
    fetch("https_proxy"),
    fetch("HTTPS_PROXY"),
    fetch("http_proxy"),
    fetch("all_proxy"),
    fetch("ALL_PROXY"),
    fetch("no_proxy"),
    fetch("NO_PROXY"),
    // Credentials: docker's and podman's files.
    fetch("DOCKER_CONFIG"),
    fetch("REGISTRY_AUTH_FILE"),
    fetch("XDG_RUNTIME_DIR"),
    // Read by the `dirs` crate: the home directory and the default cache root.
    fetch("HOME"),
    fetch("XDG_CACHE_HOME"),
    // Read by the system: where credential helpers are found.
    fetch("PATH"),
    // Set by cargo for a build script: where its output goes.
    other("OUT_DIR"),
    // The CLI's terminal: whether and how wide to draw a progress bar.
    other("TERM"),
    other("COLUMNS"),
];

/// How many variables can change what a fetch returns.
pub(crate) const FETCH_COUNT: usize = {
    let (mut n, mut i) = (0, 0);
    while i < VARS.len() {
        if VARS[i].changes_fetch {
            n += 1;
        }
        i += 1;
    }
    n
};

/// The names of the variables that can change what a fetch returns, in table order.
pub(crate) const FETCH_VARS: [&str; FETCH_COUNT] = {
    let mut out = [""; FETCH_COUNT];
    let (mut n, mut i) = (0, 0);
    while i < VARS.len() {
        if VARS[i].changes_fetch {
            out[n] = VARS[i].name;
            n += 1;
        }
        i += 1;
    }
    out
};

/// The value of variable `name`, which must be in [`VARS`]; `None` when unset.
/// The caller decides what an empty or non-UTF-8 value means.
pub(crate) fn var(name: &'static str) -> Option<OsString> {
    debug_assert!(
        VARS.iter().any(|v| v.name == name),
        "{name} is read but not listed in env.rs"
    );
    std::env::var_os(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Every `.rs` file under `dir`.
    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn the_environment_is_read_here_only_and_every_name_is_listed() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let reads = ["std::env::var", "use std::env", "std::env::{"];
        for file in &files {
            if file.ends_with("env.rs") {
                continue;
            }
            let text = std::fs::read_to_string(file).unwrap();
            for read in reads {
                assert!(
                    !text.contains(read),
                    "{} reads the environment ({read}) outside src/env.rs",
                    file.display()
                );
            }
            // And every name passed to env::var is in the table.
            for (i, _) in text.match_indices("env::var(\"") {
                let rest = &text[i + "env::var(\"".len()..];
                let name = &rest[..rest.find('"').unwrap()];
                assert!(
                    VARS.iter().any(|v| v.name == name),
                    "{}: {name} is not in env.rs",
                    file.display()
                );
            }
        }
        let mut names: Vec<_> = VARS.iter().map(|v| v.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), VARS.len(), "a name is listed twice");
        assert!(FETCH_VARS.iter().all(|n| !n.is_empty()));
    }
}
