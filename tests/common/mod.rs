//! Helpers shared by the integration tests: artifacts built in memory, the
//! credential-isolated client, and cache inspection. The fake registry is
//! [`server`]; a real one is [`registry`].
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod proxy;
pub mod registry;
pub mod server;
pub mod token_service;

use std::path::{Path, PathBuf};

use forge_oci::{Client, ClientBuilder, Digest};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const WASM: &str = "application/wasm";
pub const EMPTY_CONFIG: &[u8] = b"{}";
/// Where extracted modules live under a cache's root (the rules' version included).
pub const DERIVED: &str = "derived/rules-1/sha256";

pub fn digest(bytes: &[u8]) -> String {
    Digest::of(bytes).to_string()
}

/// Some bytes that start like a wasm module, distinct per `seed`.
pub fn wasm_payload(seed: &str, len: usize) -> Vec<u8> {
    let mut v = b"\0asm\x01\0\0\0".to_vec();
    v.extend(seed.bytes().cycle().take(len.saturating_sub(8)));
    v
}

/// An OCI image manifest with an empty config and the given layers.
pub fn manifest(layers: &[(&str, &[u8])]) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|(mt, content)| {
            serde_json::json!({"mediaType": mt, "digest": digest(content), "size": content.len()})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest(EMPTY_CONFIG), "size": 2},
        "layers": layers,
    }))
    .unwrap()
}

/// An OCI index with one entry per (manifest bytes, os, architecture).
pub fn index(entries: &[(&[u8], &str, &str)]) -> Vec<u8> {
    let manifests: Vec<_> = entries
        .iter()
        .map(|(m, os, arch)| {
            serde_json::json!({"mediaType": OCI_MANIFEST, "digest": digest(m), "size": m.len(),
                               "platform": {"os": os, "architecture": arch}})
        })
        .collect();
    serde_json::to_vec(
        &serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}),
    )
    .unwrap()
}

/// The `forge-oci` CLI with `args`, `--cache-dir cache`, `host` marked insecure,
/// and, as [`isolated`] does for the library, no credential file or offline
/// setting of the machine's.
pub fn cli_command(cache: &Path, host: &str, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_forge-oci"));
    cmd.args(args)
        .args(["--cache-dir".as_ref(), cache.as_os_str()])
        .env_remove("FORGE_OFFLINE")
        .env_remove("CARGO_NET_OFFLINE")
        .env("FORGE_OCI_INSECURE_HOSTS", host)
        .env("DOCKER_CONFIG", cache.join("no-docker-config"))
        .env("REGISTRY_AUTH_FILE", cache.join("no-auth.json"))
        .stdin(std::process::Stdio::null());
    cmd
}

/// A builder for `host` over plain HTTP with its own cache and no retries, that
/// reads no credential file of the machine's (docker config, podman `auth.json`):
/// only the credentials a test gives reach a registry.
pub fn isolated(host: &str, cache: &Path) -> ClientBuilder {
    Client::builder()
        .cache_dir(cache)
        .insecure_host(host)
        .retries(0)
        .docker_config_dir(cache.join("no-docker-config"))
        .auth_files([])
}

/// [`isolated`], built.
pub fn client(host: &str, cache: &Path) -> Client {
    isolated(host, cache).build().unwrap()
}

/// Says loudly, past the test harness's capture of `eprintln!`, that `test` is
/// skipped and why. Under CI (`CI` set) it panics instead: CI runs every test.
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run {test}: {why}"
    );
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED {test}: {why} ***\n");
}

/// Every file under `<cache>/blobs/sha256`, each checked to hash to its name.
pub fn verified_blobs(cache: &Path) -> Vec<PathBuf> {
    let dir = cache.join("blobs").join("sha256");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .inspect(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            let actual = Digest::of(&std::fs::read(p).unwrap());
            assert_eq!(
                actual.hex(),
                name,
                "{} does not hash to its name",
                p.display()
            );
        })
        .collect()
}

/// Files left in `<cache>/tmp`.
pub fn temp_files(cache: &Path) -> usize {
    std::fs::read_dir(cache.join("tmp")).map_or(0, |d| d.count())
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding: the tests' own, so the library's is checked
/// against something it did not write.
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                char::from(BASE64[(n >> (18 - 6 * i)) as usize & 63])
            } else {
                '='
            });
        }
    }
    out
}

pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.trim().trim_end_matches('=').bytes() {
        acc = (acc << 6) | BASE64.iter().position(|&a| a == c)? as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// `Basic base64(user:pass)`.
pub fn basic_auth(user: &str, pass: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{pass}").as_bytes()))
}

/// Runs `openssl` in `dir`; its stderr becomes the error.
pub fn openssl(dir: &std::path::Path, args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `openssl req -x509` for a new RSA key and a self-signed certificate named `cn`,
/// written as `key` and `cert` in `dir`.
pub fn self_signed(dir: &std::path::Path, cn: &str, key: &str, cert: &str) -> Result<(), String> {
    let subject = format!("/CN={cn}");
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &subject,
            "-keyout", key, "-out", cert,
        ],
    )
}

/// A child process's stdout, once it is known to have exited 0 (its stderr is
/// the failure message otherwise).
pub fn succeeded(out: &std::process::Output) -> &[u8] {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    &out.stdout
}
