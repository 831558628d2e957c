//! The network settings taken from the environment, through the CLI as a user
//! sets them: which proxy each request goes through, compared with curl; SOCKS
//! proxies; TLS with a private CA against Debian's `docker-registry` (skipped
//! loudly without it, except under CI, where it fails).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::proxy::{RecordingProxy, SocksProxy, Witness, without_proxies};
use common::registry::Registry;
use common::server::FakeRegistry;
use common::*;
use forge_oci::{Client, Error};

/// `forge-oci pull REFERENCE -o -` with a cache of its own, `--insecure` for the
/// reference's registry, and no proxy variable but those in `env`.
fn pull<V: AsRef<OsStr>>(reference: &str, env: &[(&str, V)]) -> Output {
    let cache = tempfile::tempdir().unwrap();
    let registry = reference.split('/').next().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge-oci"));
    cmd.args(["pull", reference, "-o", "-", "--insecure", registry])
        .arg("--cache-dir")
        .arg(cache.path());
    without_proxies(&mut cmd).envs(env.iter().map(|(k, v)| (k, v)));
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

/// One way of setting the environment, and where a request should go: `direct`
/// (the origin saw an HTTP request), `direct tls`, `A` or `B` (that proxy saw a
/// proxy request), `A socks4`/`A socks5` (a SOCKS greeting), `none` (a direct
/// attempt at a name that does not resolve). `{A}`, `{B}` and `{PORT}` in values
/// are the two proxies' `127.0.0.1:port` and the origin's port.
struct Case {
    env: &'static [(&'static str, &'static str)],
    /// `scheme://host`; the origin's port is added.
    url: &'static str,
    expect: &'static str,
}

const fn case(
    url: &'static str,
    env: &'static [(&'static str, &'static str)],
    expect: &'static str,
) -> Case {
    Case { env, url, expect }
}

const LOCAL: &str = "http://127.0.0.1";
const NAME: &str = "http://localhost";
const NOWHERE: &str = "http://registry.example.invalid";

const CASES: &[Case] = &[
    // Which variable, for which scheme.
    case(LOCAL, &[("http_proxy", "{A}")], "A"),
    case(LOCAL, &[("HTTP_PROXY", "{A}")], "direct"),
    case(LOCAL, &[("http_proxy", "{A}"), ("HTTP_PROXY", "{B}")], "A"),
    case(LOCAL, &[("HTTPS_PROXY", "{A}")], "direct"),
    case(LOCAL, &[("all_proxy", "{A}")], "A"),
    case(LOCAL, &[("ALL_PROXY", "{A}")], "A"),
    case(LOCAL, &[("all_proxy", "{A}"), ("ALL_PROXY", "{B}")], "A"),
    case(LOCAL, &[("http_proxy", "{B}"), ("all_proxy", "{A}")], "B"),
    case(LOCAL, &[("http_proxy", ""), ("all_proxy", "{A}")], "A"),
    case(LOCAL, &[("http_proxy", "http://{A}")], "A"),
    case(LOCAL, &[("http_proxy", "HTTP://{A}/")], "A"),
    case(LOCAL, &[("http_proxy", "socks5h://{A}")], "A socks5"),
    case(LOCAL, &[("http_proxy", "SOCKS5://{A}")], "A socks5"),
    case(LOCAL, &[("http_proxy", "socks4a://{A}")], "A socks4"),
    case(LOCAL, &[("http_proxy", "socks://{A}")], "A socks4"),
    case("https://127.0.0.1", &[("HTTPS_PROXY", "{A}")], "A"),
    case(
        "https://127.0.0.1",
        &[("https_proxy", "{A}"), ("HTTPS_PROXY", "{B}")],
        "A",
    ),
    case(
        "https://127.0.0.1",
        &[("https_proxy", ""), ("HTTPS_PROXY", "{A}")],
        "A",
    ),
    case(
        "https://127.0.0.1",
        &[("HTTPS_PROXY", "{B}"), ("ALL_PROXY", "{A}")],
        "B",
    ),
    case("https://127.0.0.1", &[("ALL_PROXY", "{A}")], "A"),
    case("https://127.0.0.1", &[("http_proxy", "{A}")], "direct tls"),
    // Which no_proxy, and how it matches.
    case(
        LOCAL,
        &[("http_proxy", "{A}"), ("no_proxy", "127.0.0.1")],
        "direct",
    ),
    case(
        LOCAL,
        &[("http_proxy", "{A}"), ("NO_PROXY", "127.0.0.1")],
        "direct",
    ),
    case(
        LOCAL,
        &[
            ("http_proxy", "{A}"),
            ("no_proxy", "example.invalid"),
            ("NO_PROXY", "127.0.0.1"),
        ],
        "A",
    ),
    case(
        LOCAL,
        &[
            ("http_proxy", "{A}"),
            ("no_proxy", ""),
            ("NO_PROXY", "127.0.0.1"),
        ],
        "direct",
    ),
    case(LOCAL, &[("http_proxy", "{A}"), ("no_proxy", "*")], "direct"),
    case(
        LOCAL,
        &[("http_proxy", "{A}"), ("no_proxy", "*,example.invalid")],
        "A",
    ),
    case(LOCAL, &[("http_proxy", "{A}"), ("no_proxy", " *")], "A"),
    case(
        LOCAL,
        &[
            ("http_proxy", "{A}"),
            ("no_proxy", "example.invalid, 127.0.0.1"),
        ],
        "direct",
    ),
    case(
        LOCAL,
        &[("http_proxy", "{A}"), ("no_proxy", "127.0.0.0/8")],
        "direct",
    ),
    case(
        LOCAL,
        &[("http_proxy", "{A}"), ("no_proxy", "127.0.0.1/32")],
        "direct",
    ),
    case(
        LOCAL,
        &[("http_proxy", "{A}"), ("no_proxy", "127.0.0.0/33")],
        "A",
    ),
    case(
        LOCAL,
        &[("http_proxy", "{A}"), ("no_proxy", "127.0.0.0/0")],
        "A",
    ),
    case(
        LOCAL,
        &[("http_proxy", "{A}"), ("no_proxy", "127.0.0.2")],
        "A",
    ),
    case(
        LOCAL,
        &[("http_proxy", "{A}"), ("no_proxy", "127.0.0.1:{PORT}")],
        "A",
    ),
    case(
        LOCAL,
        &[("http_proxy", "{A}"), ("no_proxy", "localhost")],
        "A",
    ),
    case(
        NAME,
        &[("http_proxy", "{A}"), ("no_proxy", "localhost")],
        "direct",
    ),
    case(
        NAME,
        &[("http_proxy", "{A}"), ("no_proxy", ".localhost")],
        "direct",
    ),
    case(
        NAME,
        &[("http_proxy", "{A}"), ("no_proxy", "LOCALHOST.")],
        "direct",
    ),
    case(NAME, &[("http_proxy", "{A}"), ("no_proxy", "calhost")], "A"),
    case(
        NAME,
        &[("http_proxy", "{A}"), ("no_proxy", "localhost:{PORT}")],
        "A",
    ),
    case(
        NAME,
        &[("http_proxy", "{A}"), ("no_proxy", "127.0.0.1")],
        "A",
    ),
    case(
        NOWHERE,
        &[("http_proxy", "{A}"), ("no_proxy", "example.invalid")],
        "none",
    ),
    case(
        NOWHERE,
        &[("http_proxy", "{A}"), ("no_proxy", ".Example.Invalid")],
        "none",
    ),
    case(
        NOWHERE,
        &[("http_proxy", "{A}"), ("no_proxy", "*.example.invalid")],
        "A",
    ),
    case(
        NOWHERE,
        &[("http_proxy", "{A}"), ("no_proxy", "ample.invalid")],
        "A",
    ),
    case(
        NOWHERE,
        &[("http_proxy", "{A}"), ("no_proxy", "registry.example")],
        "A",
    ),
];

#[derive(Clone, Copy, Debug)]
enum Tool {
    Curl,
    ForgeOci,
}

/// Where `tool` sends a request for the case's URL, with the case's environment.
fn route(tool: Tool, case: &Case) -> String {
    let (origin, a, b) = (Witness::start(), Witness::start(), Witness::start());
    let fill = |s: &str| {
        s.replace("{A}", &format!("127.0.0.1:{}", a.port))
            .replace("{B}", &format!("127.0.0.1:{}", b.port))
            .replace("{PORT}", &origin.port.to_string())
    };
    let (scheme, host) = case.url.split_once("://").unwrap();
    let authority = format!("{host}:{}", origin.port);
    let cache = tempfile::tempdir().unwrap();
    let mut cmd = match tool {
        Tool::Curl => {
            let mut cmd = Command::new("curl");
            let url = format!("{scheme}://{authority}/v2/side/by-side/manifests/1");
            cmd.args(["-q", "-s", "-o", "/dev/null", "--max-time", "20", &url]);
            cmd
        }
        Tool::ForgeOci => {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge-oci"));
            cmd.args(["pull", &format!("{authority}/side/by-side:1"), "-o", "-"])
                .arg("--cache-dir")
                .arg(cache.path());
            if scheme == "http" {
                cmd.args(["--insecure", &authority]);
            }
            cmd
        }
    };
    without_proxies(&mut cmd).envs(case.env.iter().map(|(k, v)| (k, fill(v))));
    cmd.output().unwrap();
    for (name, witness) in [("direct", &origin), ("A", &a), ("B", &b)] {
        if let Some(kind) = witness.seen().first() {
            return match *kind {
                "direct" | "proxy" => name.to_owned(),
                kind => format!("{name} {kind}"),
            };
        }
    }
    "none".to_owned()
}

/// Proxy variables and `no_proxy` are read as curl reads them: each case is run
/// by curl and by forge-oci with the same environment against the same kind of
/// listeners, and both must go the same way, the way the case says.
#[test]
fn proxy_variables_route_as_curl_routes() {
    if Command::new("curl").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must compare proxy routing with curl's"
        );
        eprintln!("\n*** SKIPPED: curl is not installed ***\n");
        return;
    }
    let mut wrong = Vec::new();
    for case in CASES {
        let curl = route(Tool::Curl, case);
        let ours = route(Tool::ForgeOci, case);
        if curl != case.expect || ours != case.expect {
            wrong.push(format!(
                "{} {:?}: expected {}, curl went {curl}, forge-oci {ours}",
                case.url, case.env, case.expect
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

/// A proxy variable that is not UTF-8 is an error naming it, as `FORGE_OFFLINE`'s
/// is, where it used to be skipped as if unset; `HTTP_PROXY` is not read at all.
#[cfg(unix)]
#[test]
fn a_proxy_variable_that_is_not_utf8_is_refused_by_name() {
    use std::os::unix::ffi::OsStrExt;
    let server = FakeRegistry::start();
    let payload = wasm_payload("not utf-8", 1000);
    server.artifact("bad/env", "1.0", &payload, |r| r);
    let reference = format!("{}/bad/env:1.0", server.host());
    let bad = OsStr::from_bytes(b"http://user:hunter2@proxy\xff.example:3128");
    for variable in [
        "http_proxy",
        "ALL_PROXY",
        "https_proxy",
        "no_proxy",
        "NO_PROXY",
    ] {
        let out = pull(&reference, &[(variable, bad)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{variable}: {stderr}");
        assert!(
            stderr.contains(&format!("cannot use {variable} `"))
                && stderr.contains("not valid UTF-8")
                && !stderr.contains("hunter2"),
            "{variable}: {stderr}"
        );
    }
    assert_eq!(server.connections(), 0);
    let out = pull(&reference, &[("HTTP_PROXY", bad)]);
    assert!(
        out.status.success(),
        "HTTP_PROXY is never read: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One read before it in curl's order wins, and the bad one is not looked at.
    let out = pull(
        &reference,
        &[("no_proxy", OsStr::new("*")), ("NO_PROXY", bad)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A proxy setting that cannot be used fails the pull with an error naming the
/// variable, and its password is never shown, whether or not the value parses
/// as a URL (it used to be printed whole when there was no scheme).
#[test]
fn an_unusable_proxy_is_named_and_its_password_never_shown() {
    let server = FakeRegistry::start();
    let reference = format!("{}/bad/proxy:1.0", server.host());
    for value in [
        "user:hunter2@[bad",
        "http://user:hunter2@[bad",
        "user:hun/ter2@[bad",
        "ftp://user:hunter2@proxy",
        "socks5h://user:hun?ter2@[bad",
    ] {
        let out = pull(&reference, &[("all_proxy", value)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{value}: {stderr}");
        assert!(
            stderr.contains("cannot use all_proxy `") && stderr.contains("<credentials>@"),
            "{value}: {stderr}"
        );
        assert!(!stderr.contains("hun"), "{value}: {stderr}");
    }
    assert_eq!(server.connections(), 0);
}

/// An `SSL_CERT_FILE` that holds no certificate is an error naming it and saying
/// why, before any connection; it used to be taken for one DER certificate that
/// rustls then skipped, leaving no trusted root (`UnknownIssuer`, retried).
#[test]
fn an_unusable_ssl_cert_file_is_named_before_any_connection() {
    let server = FakeRegistry::start();
    let reference = format!("{}/certs/bad:1.0", server.host());
    let dir = tempfile::tempdir().unwrap();
    let noise: Vec<u8> = (0..2048u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    for (name, content, why) in [
        ("empty.pem", &b""[..], "it is empty"),
        ("noise.der", &noise, "it is neither PEM"),
        (
            "notes.txt",
            b"see the wiki for our CA\n",
            "it is neither PEM",
        ),
        (
            "key.pem",
            b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
            "it holds no certificate",
        ),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, content).unwrap();
        let out = pull(&reference, &[("SSL_CERT_FILE", &file)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "cannot use SSL_CERT_FILE `{}`: {why}",
                file.display()
            )),
            "{name}: {stderr}"
        );
    }
    let missing = dir.path().join("missing.pem");
    let out = pull(&reference, &[("SSL_CERT_FILE", &missing)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot use SSL_CERT_FILE `{}`", missing.display())),
        "{stderr}"
    );
    assert_eq!(server.connections(), 0);
}

/// A test CA and a certificate for 127.0.0.1 signed by it, made now.
fn make_ca(dir: &Path) -> Result<(), String> {
    let subj = |cn: &str| format!("/CN={cn}");
    common::self_signed(dir, "forge-oci test CA", "ca.key", "ca.pem")?;
    common::openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &subj("127.0.0.1"),
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    )?;
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    common::openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ],
    )
}

/// docker-registry over HTTPS with a certificate from a CA made now: trusted through
/// ClientBuilder::root_certificate and through SSL_CERT_FILE; refused otherwise.
#[test]
fn tls_registry_with_a_private_ca() {
    let work = tempfile::tempdir().unwrap();
    if let Err(why) = make_ca(work.path()) {
        return skip("tls_registry_with_a_private_ca", &why);
    }
    let data = work.path().join("data");
    let payload = wasm_payload("over tls", 40_000);
    {
        // Push over plain HTTP, then serve the same storage over TLS.
        let plain = match Registry::start_in(Some(&data), "") {
            Ok(r) => r,
            Err(why) => return skip("tls_registry_with_a_private_ca", &why),
        };
        plain.push_wasm("secure/plugin", "1.0", &payload);
    }
    let tls = format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        work.path().join("server.pem").display(),
        work.path().join("server.key").display()
    );
    let registry = Registry::start_in(Some(&data), &tls).unwrap();
    let reference = format!("{}/secure/plugin:1.0", registry.host);
    let ca = std::fs::read(work.path().join("ca.pem")).unwrap();
    let client = |cache: &str| {
        Client::builder()
            .cache_dir(work.path().join(cache))
            .retries(0)
    };

    let err = client("untrusted")
        .build()
        .unwrap()
        .pull(&reference)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Transport { host, .. } if *host == registry.host),
        "{err:?}"
    );

    // A certificate that does not verify fails at once, retries allowed or not:
    // trying again cannot change it. A proxy counts the connections.
    let proxy = RecordingProxy::start();
    let tunnels = |host: &str| {
        let connect = format!("CONNECT {host} ");
        proxy
            .seen()
            .iter()
            .filter(|l| l.starts_with(&connect))
            .count()
    };
    let by_name = reference.replacen("127.0.0.1", "localhost", 1);
    let localhost = registry.host.replacen("127.0.0.1", "localhost", 1);
    for (cache, trusted, reference, host, why) in [
        (
            "unknown-issuer",
            None,
            &reference,
            &registry.host,
            "UnknownIssuer",
        ),
        // The certificate names 127.0.0.1, not localhost.
        (
            "misnamed",
            Some(ca.clone()),
            &by_name,
            &localhost,
            "not valid for name",
        ),
    ] {
        let mut builder = client(cache).retries(3).proxy(Some(&proxy.url));
        if let Some(ca) = trusted {
            builder = builder.root_certificate(ca);
        }
        let started = Instant::now();
        let err = builder.build().unwrap().pull(reference).unwrap_err();
        let cause = std::error::Error::source(&err).map(ToString::to_string);
        assert!(
            matches!(&err, Error::Transport { host: h, .. } if h == host)
                && cause.as_deref().is_some_and(|c| c.contains(why)),
            "{err:?}"
        );
        assert_eq!(tunnels(host), 1, "{cache}: {:?}", proxy.seen());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{cache}: retried"
        );
    }

    let trusted = client("trusted").root_certificate(ca).build().unwrap();
    assert_eq!(trusted.pull(&reference).unwrap().read().unwrap(), payload);

    let out = Command::new(env!("CARGO_BIN_EXE_forge-oci"))
        .args(["pull", &reference, "-o", "-", "--cache-dir"])
        .arg(work.path().join("env-cache"))
        .env("SSL_CERT_FILE", work.path().join("ca.pem"))
        .env_remove("FORGE_OCI_INSECURE_HOSTS")
        .output()
        .unwrap();
    assert_eq!(succeeded(&out), payload);
}

/// http_proxy carries http:// requests (through a proxy that records them);
/// NO_PROXY bypasses it; an HTTPS_PROXY does not capture http:// requests (ureq
/// alone would send them there). Which variable wins where is compared with curl
/// in tests/network.rs.
#[test]
fn proxies_per_scheme_and_no_proxy() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("proxied", 20_000);
    server.artifact("via/proxy", "1.0", &payload, |r| r);
    let proxy = RecordingProxy::start();
    let host = server.host().to_owned();
    let work = tempfile::tempdir().unwrap();
    let pull = |cache: &str, env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge-oci"));
        cmd.args([
            "pull",
            &format!("{host}/via/proxy:1.0"),
            "-o",
            "-",
            "--insecure",
            &host,
            "--cache-dir",
        ])
        .arg(work.path().join(cache));
        without_proxies(&mut cmd).envs(env.iter().copied());
        cmd.output().unwrap()
    };

    let out = pull("proxied", &[("http_proxy", &proxy.url)]);
    assert_eq!(succeeded(&out), payload);
    // ureq tunnels through the proxy with CONNECT even for http:// URLs: one tunnel
    // per connection (manifest, blob).
    let seen = proxy.seen();
    let tunnels = seen
        .iter()
        .filter(|l| **l == format!("CONNECT {host} HTTP/1.1"))
        .count();
    assert!(tunnels >= 2, "{seen:?}");

    let before = proxy.seen().len();
    let out = pull(
        "bypassed",
        &[
            ("http_proxy", &proxy.url),
            ("NO_PROXY", "localhost,127.0.0.1"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(proxy.seen().len(), before, "NO_PROXY must bypass the proxy");

    let dead = format!("http://127.0.0.1:{}", common::registry::free_port());
    let out = pull("https-proxy-only", &[("HTTPS_PROXY", &dead)]);
    assert!(
        out.status.success(),
        "an https proxy must not carry http requests: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, payload);
}

#[test]
fn unreachable_registry_is_a_transport_error_naming_the_host() {
    // Bind then drop a listener to get a port with nothing behind it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let cache = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let err = client(&host, cache.path())
        .pull(&format!("{host}/test/repo:v1"))
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    match &err {
        Error::Transport { host: h, .. } => assert_eq!(h, &host),
        other => panic!("expected Transport, got {other:?}"),
    }
    assert!(std::error::Error::source(&err).is_some());
}
