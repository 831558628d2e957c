//! The network settings taken from the environment, through the CLI as a user
//! sets them: SOCKS proxies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output};

use common::proxy::{SocksProxy, without_proxies};
use common::server::FakeRegistry;
use common::*;

/// `forge-oci pull REFERENCE -o -` with a cache of its own, `--insecure` for the
/// reference's registry, and no proxy variable but those in `env`.
fn pull(reference: &str, env: &[(&str, &str)]) -> Output {
    let cache = tempfile::tempdir().unwrap();
    let registry = reference.split('/').next().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge-oci"));
    cmd.args(["pull", reference, "-o", "-", "--insecure", registry])
        .arg("--cache-dir")
        .arg(cache.path());
    without_proxies(&mut cmd).envs(env.iter().copied());
    cmd.output().unwrap()
}

/// Each SOCKS flavour carries a pull; the `h` and `a` ones hand the host name to
/// the proxy, the others an address resolved here. A SOCKS proxy used to make
/// ureq panic (exit 101) on the first request.
#[test]
fn socks_proxies_carry_pulls() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("through socks", 30_000);
    server.artifact("via/socks", "1.0", &payload, |r| r);
    let port = server.host().rsplit(':').next().unwrap().to_owned();
    // Only the SOCKS proxy "resolves" this name (to 127.0.0.1).
    let name = format!("registry.socks.invalid:{port}");
    let ip = format!("127.0.0.1:{port}");
    for (variable, scheme, host, seen) in [
        ("ALL_PROXY", "socks5h", &name, format!("socks5 name {name}")),
        ("all_proxy", "socks5", &ip, format!("socks5 ip {ip}")),
        (
            "http_proxy",
            "socks4a",
            &name,
            format!("socks4a name {name}"),
        ),
        ("http_proxy", "socks4", &ip, format!("socks4 ip {ip}")),
    ] {
        let socks = SocksProxy::start();
        let proxy = format!("{scheme}://{}", socks.addr);
        let out = pull(&format!("{host}/via/socks:1.0"), &[(variable, &proxy)]);
        assert!(
            out.status.success(),
            "{variable}={proxy}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, payload, "{variable}={proxy}");
        let targets = socks.seen();
        assert!(
            !targets.is_empty() && targets.iter().all(|t| *t == seen),
            "{variable}={proxy}: {targets:?}"
        );
    }
}
