//! Against Debian's `docker-registry` (`common/registry.rs`): cold then warm with
//! the registry stopped, token auth with a JWT service, htpasswd; and a read-only
//! cache serving hits.
//!
//! Without `/usr/bin/docker-registry` (Debian package `docker-registry`) these
//! tests are skipped with a loud message, except under CI, where they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::registry::Registry;
use common::server::FakeRegistry;
use common::token_service::{ALICE_PASSWORD, TokenService};
use common::*;
use forge_oci::{Client, Credentials, Error, Network};

#[test]
fn real_registry_cold_then_warm_with_registry_stopped() {
    let registry = match Registry::start() {
        Ok(r) => r,
        Err(why) => return skip("real_registry_cold_then_warm_with_registry_stopped", &why),
    };
    let payload = wasm_payload("one mebibyte of plugin", 1 << 20);
    let m = registry.push_wasm("plugins/hello", "1.0", &payload);
    let cache = tempfile::tempdir().unwrap();
    let reference = format!("{}/plugins/hello:1.0", registry.host);
    let client = client(&registry.host, cache.path());

    let cold = client.pull(&reference).unwrap();
    assert!(!cold.from_cache());
    assert_eq!(cold.read().unwrap(), payload);
    assert_eq!(cold.manifest_digest().to_string(), digest(&m));
    assert_eq!(verified_blobs(cache.path()).len(), 2);

    // Pinned by the digest the registry computed for our manifest.
    let pinned = format!("{}/plugins/hello@{}", registry.host, digest(&m));
    assert_eq!(client.pull(&pinned).unwrap().read().unwrap(), payload);

    drop(registry);
    for r in [&reference, &pinned] {
        let warm = client.pull(r).unwrap();
        assert!(warm.from_cache(), "{r}");
        assert_eq!(warm.read().unwrap(), payload);
    }
    let offline = Client::builder()
        .cache_dir(cache.path())
        .network(Network::Offline)
        .build()
        .unwrap();
    assert!(offline.pull(&reference).unwrap().from_cache());
}

/// docker-registry in `auth: token` mode with a token service that signs JWTs with
/// a key made now: a public repository pulls anonymously; a private one with
/// credentials from a docker config file and from a credential helper; wrong
/// credentials are refused on the private one and fall back to anonymous on the
/// public one.
#[test]
fn token_auth_registry_public_private_config_helper_and_refusal() {
    let work = tempfile::tempdir().unwrap();
    let tokens = match TokenService::start(work.path()) {
        Ok(t) => t,
        Err(why) => {
            return skip(
                "token_auth_registry_public_private_config_helper_and_refusal",
                &why,
            );
        }
    };
    let registry = match Registry::start_with(&tokens.registry_config()) {
        Ok(r) => r,
        Err(why) => {
            return skip(
                "token_auth_registry_public_private_config_helper_and_refusal",
                &why,
            );
        }
    };
    let host = registry.host.clone();
    let public = wasm_payload("public plugin", 100_000);
    let private = wasm_payload("private plugin", 100_000);
    registry.push_wasm_as(
        "public/plugin",
        "1.0",
        &public,
        Some(&tokens.push_token("public/plugin")),
    );
    registry.push_wasm_as(
        "private/plugin",
        "1.0",
        &private,
        Some(&tokens.push_token("private/plugin")),
    );
    let (public_ref, private_ref) = (
        format!("{host}/public/plugin:1.0"),
        format!("{host}/private/plugin:1.0"),
    );
    // The token service is plain HTTP on its own port: credentials go there only
    // once it too is marked insecure (checked first, then marked).
    let strict = isolated(&host, &work.path().join("strict"))
        .credentials(&host, Credentials::basic("alice", ALICE_PASSWORD))
        .build()
        .unwrap();
    let err = strict
        .pull(&format!("{host}/private/plugin:1.0"))
        .unwrap_err();
    assert!(
        err.to_string().contains("were not sent") && err.to_string().contains(&tokens.host),
        "{err}"
    );
    let client =
        |cache: &str| isolated(&host, &work.path().join(cache)).insecure_host(&tokens.host);

    assert_eq!(
        client("anon")
            .build()
            .unwrap()
            .pull(&public_ref)
            .unwrap()
            .read()
            .unwrap(),
        public
    );
    let err = client("anon")
        .build()
        .unwrap()
        .pull(&private_ref)
        .unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { .. } | Error::Denied { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!("docker login {host}")),
        "{err}"
    );

    // Credentials from a docker config file.
    let docker = work.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let auth = basic_auth("alice", ALICE_PASSWORD);
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths":{{"{host}":{{"auth":"{}"}}}}}}"#,
            auth.trim_start_matches("Basic ")
        ),
    )
    .unwrap();
    let c = client("config").docker_config_dir(&docker).build().unwrap();
    assert_eq!(c.pull(&private_ref).unwrap().read().unwrap(), private);

    // Credentials from a helper on PATH, through the CLI as a user would run it.
    let bin = work.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-testhelper");
    std::fs::write(
        &helper,
        format!("#!/bin/sh\nread server\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"{ALICE_PASSWORD}\"}}' \"$server\"\n"),
    )
    .unwrap();
    set_mode(&helper, 0o755);
    let helper_config = work.path().join("helper-config");
    std::fs::create_dir_all(&helper_config).unwrap();
    std::fs::write(
        helper_config.join("config.json"),
        format!(r#"{{"credHelpers":{{"{host}":"testhelper"}}}}"#),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_forge-oci"))
        .args([
            "pull",
            &private_ref,
            "-o",
            "-",
            "--insecure",
            &host,
            "--insecure",
            &tokens.host,
            "--cache-dir",
        ])
        .arg(work.path().join("helper-cache"))
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("DOCKER_CONFIG", &helper_config)
        .env("REGISTRY_AUTH_FILE", work.path().join("none.json"))
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert_eq!(succeeded(&out), private);

    // Wrong credentials: refused on the private repository, naming their source;
    // the public one still pulls (anonymously).
    let wrong =
        || client("wrong").credentials(&host, Credentials::basic("alice", "not-the-password"));
    let err = wrong().build().unwrap().pull(&private_ref).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("ClientBuilder::credentials") && msg.contains("rejected"),
        "{msg}"
    );
    assert!(!msg.contains("not-the-password"), "{msg}");
    assert_eq!(
        wrong()
            .build()
            .unwrap()
            .pull(&public_ref)
            .unwrap()
            .read()
            .unwrap(),
        public
    );
    assert!(tokens.requests() > 0);
}

/// A bcrypt htpasswd line: `htpasswd` (apache2-utils, which CI installs) when
/// present, else Python's crypt module.
fn htpasswd_line(user: &str, password: &str) -> Result<String, String> {
    if let Ok(out) = Command::new("htpasswd")
        .args(["-nbB", user, password])
        .output()
    {
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned());
        }
    }
    let script = format!(
        "import crypt; print(crypt.crypt({password:?}, crypt.mksalt(crypt.METHOD_BLOWFISH)))"
    );
    let out = Command::new("python3")
        .args(["-W", "ignore", "-c", &script])
        .output()
        .map_err(|e| format!("no htpasswd and no python3: {e}"))?;
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || !hash.starts_with("$2") {
        return Err("cannot make a bcrypt hash: install apache2-utils".into());
    }
    Ok(format!("{user}:{hash}"))
}

/// docker-registry with `auth: htpasswd`: a Basic challenge. No credentials is a
/// refusal with login advice; the right ones pull; wrong ones are rejected, named.
#[test]
fn htpasswd_registry_basic_challenge() {
    let work = tempfile::tempdir().unwrap();
    let line = match htpasswd_line("bob", "bob-s3cret-password") {
        Ok(l) => l,
        Err(why) => {
            return skip("htpasswd_registry_basic_challenge", &why);
        }
    };
    let file = work.path().join("htpasswd");
    std::fs::write(&file, format!("{line}\n")).unwrap();
    let config = format!(
        "auth:\n  htpasswd:\n    realm: forge-test\n    path: {}\n",
        file.display()
    );
    let registry = match Registry::start_with(&config) {
        Ok(r) => r,
        Err(why) => return skip("htpasswd_registry_basic_challenge", &why),
    };
    let host = registry.host.clone();
    let payload = wasm_payload("behind htpasswd", 50_000);
    registry.push_wasm_as(
        "team/plugin",
        "1.0",
        &payload,
        Some(&basic_auth("bob", "bob-s3cret-password")),
    );
    let reference = format!("{host}/team/plugin:1.0");
    let client = |credentials: Option<Credentials>| {
        let mut b = isolated(&host, &work.path().join("cache"));
        if let Some(c) = credentials {
            b = b.credentials(&host, c);
        }
        b.build().unwrap()
    };
    let err = client(None).pull(&reference).unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { .. }) && err.to_string().contains("docker login"),
        "{err}"
    );
    let wrong = client(Some(Credentials::basic("bob", "wrong")))
        .pull(&reference)
        .unwrap_err();
    assert!(
        wrong
            .to_string()
            .contains("ClientBuilder::credentials were rejected"),
        "{wrong}"
    );
    let right = client(Some(Credentials::basic("bob", "bob-s3cret-password")));
    assert_eq!(right.pull(&reference).unwrap().read().unwrap(), payload);
}

/// A cache this user cannot write still serves what it holds, with no lock, and a
/// miss says the cache is read-only. As root (CI), the reader is `nobody` via
/// setpriv; otherwise the cache is made read-only with chmod.
#[test]
fn read_only_cache_serves_hits_and_names_misses() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("read only", 100_000);
    server.artifact("ro/plugin", "1.0", &payload, |r| r);
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("cache");
    let host = server.host().to_owned();
    let hit = format!("{host}/ro/plugin:1.0");
    let miss = format!("{host}/ro/plugin:2.0");
    client(&host, &root).pull(&hit).unwrap();
    let before = server.connections();

    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    if is_root && Command::new("setpriv").arg("--version").output().is_err() {
        return skip(
            "read_only_cache_serves_hits_and_names_misses",
            "running as root without setpriv (util-linux)",
        );
    }
    // As nobody: the temp dir (0700) must be enterable, and the binary reachable
    // wherever CI cloned the repository (maybe under a 0700 home): run a copy.
    set_mode(work.path(), 0o755);
    let exe = work.path().join("forge-oci");
    std::fs::copy(env!("CARGO_BIN_EXE_forge-oci"), &exe).unwrap();
    set_mode(&exe, 0o755);
    if !is_root {
        chmod_tree(&root, false);
    }
    let run = |reference: &str| {
        let mut cmd = if is_root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(["pull", reference, "-o", "-", "--cache-dir"])
            .arg(&root)
            .args(["--insecure", &host]);
        cmd.output().unwrap()
    };
    let got = run(&hit);
    assert!(
        got.status.success(),
        "hit failed: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(got.stdout, payload);
    let missed = run(&miss);
    let stderr = String::from_utf8_lossy(&missed.stderr);
    assert_eq!(missed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{miss} is not in the cache and the cache is read-only"
        )),
        "{stderr}"
    );
    assert_eq!(
        server.connections(),
        before,
        "a read-only miss fails before any request"
    );
    if !is_root {
        chmod_tree(&root, true);
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chmod_tree(dir: &Path, writable: bool) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            chmod_tree(&path, writable);
        } else {
            set_mode(&path, if writable { 0o644 } else { 0o444 });
        }
    }
    set_mode(dir, if writable { 0o755 } else { 0o555 });
}
