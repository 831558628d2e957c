//! Round trips and connections per scenario, counted by the fake registry
//! (keeping connections open as real registries do, and requiring a Bearer
//! token from its own `/token`), so that a regression shows as a number:
//! a 401's body is read so its connection is reused, anonymous tokens are kept
//! in the cache for the next process, and a registry's remembered challenge
//! sends a request with no fresh token straight to the token service.
//!
//! A "second process" is a second `Client` on the same cache (clients share
//! nothing in memory, so all it can reuse is what the cache kept), and once the
//! `forge-oci` binary itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(unix)]

mod common;

use std::fs;
use std::path::Path;

use common::server::{FakeRegistry, Route};
use common::*;
use forge_oci::{Client, Credentials, TagPolicy};

const REPO: &str = "counted/plugin";

struct Setup {
    server: FakeRegistry,
    manifest: Vec<u8>,
    cache: tempfile::TempDir,
}

/// A registry on one keep-alive server whose token service answers `tokens`
/// in turn (each `(value, expires_in)`), requiring the first token.
fn setup(tokens: &[(&str, u64)]) -> Setup {
    let server = FakeRegistry::start_keep_alive();
    let manifest = server.artifact(REPO, "v1", &wasm_payload("counted", 40_000), |r| r);
    server.artifact(REPO, "v2", &wasm_payload("counted 2", 40_000), |r| r);
    let answer = |(t, e): &(&str, u64)| Route::ok(format!(r#"{{"token":"{t}","expires_in":{e}}}"#));
    let mut route = answer(&tokens[0]);
    for t in &tokens[1..] {
        route = route.then(answer(t));
    }
    server.route("/token", route);
    let host = server.host().to_owned();
    server.require_bearer(
        tokens[0].0,
        &format!(r#"Bearer realm="http://{host}/token",service="fake""#),
    );
    Setup {
        server,
        manifest,
        cache: tempfile::tempdir().unwrap(),
    }
}

impl Setup {
    fn client(&self) -> Client {
        client(self.server.host(), self.cache.path())
    }

    fn reference(&self, tag: &str) -> String {
        format!("{}/{REPO}:{tag}", self.server.host())
    }

    /// (requests, connections) that `f` caused.
    fn count(&self, f: impl FnOnce()) -> (usize, usize) {
        let (requests, connections) = (self.server.request_count(), self.server.connections());
        f();
        (
            self.server.request_count() - requests,
            self.server.connections() - connections,
        )
    }
}

fn token_files(cache: &Path) -> Vec<std::path::PathBuf> {
    fs::read_dir(cache.join("tokens"))
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("token-")
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn cold_tag_and_cold_pin_take_four_requests_on_one_connection() {
    let s = setup(&[("T", 300)]);
    // 401, token, manifest, blob: the 401's body is read, so all four share one.
    let tag = s.count(|| {
        s.client().pull(&s.reference("v1")).unwrap();
    });
    assert_eq!(tag, (4, 1), "cold tag: (requests, connections)");

    let pin = setup(&[("T", 300)]);
    let reference = format!("{}/{REPO}@{}", pin.server.host(), digest(&pin.manifest));
    let counted = pin.count(|| {
        pin.client().pull(&reference).unwrap();
    });
    assert_eq!(counted, (4, 1), "cold pin: (requests, connections)");
}

#[test]
fn a_second_process_within_the_token_lifetime_skips_the_401_and_the_token_request() {
    let s = setup(&[("T", 300)]);
    s.client().pull(&s.reference("v1")).unwrap();
    assert_eq!(
        token_files(s.cache.path()).len(),
        1,
        "the anonymous token is kept"
    );
    let mode = fs::metadata(&token_files(s.cache.path())[0]).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    // Revalidating the cached tag: one HEAD with the kept token.
    let revalidate = s.count(|| {
        let client = isolated(s.server.host(), s.cache.path())
            .tag_policy(TagPolicy::Revalidate)
            .build()
            .unwrap();
        assert!(client.pull(&s.reference("v1")).unwrap().from_cache());
    });
    assert_eq!(revalidate, (1, 1), "revalidate: (requests, connections)");

    // A new tag of the known repository: its manifest and its blob.
    let new_tag = s.count(|| {
        s.client().pull(&s.reference("v2")).unwrap();
    });
    assert_eq!(new_tag, (2, 1), "new tag: (requests, connections)");
    assert_eq!(s.server.hits("GET", "/token"), 1);

    // And a process of its own (the CLI, on the same cache) pulling a third tag.
    s.server
        .artifact(REPO, "v3", &wasm_payload("counted 3", 40_000), |r| r);
    let cli = s.count(|| {
        let reference = s.reference("v3");
        let out = cli_command(s.cache.path(), s.server.host(), &["pull", &reference])
            .env("HOME", s.cache.path())
            .output()
            .unwrap();
        succeeded(&out);
    });
    assert_eq!(
        cli,
        (2, 1),
        "new tag in another process: (requests, connections)"
    );
    assert_eq!(s.server.hits("GET", "/token"), 1);
}

#[test]
fn an_expired_token_is_not_used_and_the_remembered_challenge_goes_straight_to_the_token_service() {
    // The first token is renewed a second after it is given (5 s early, as
    // every token); then the registry wants the second.
    let s = setup(&[("T1", 6), ("T2", 300)]);
    s.client().pull(&s.reference("v1")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let host = s.server.host().to_owned();
    s.server.require_bearer(
        "T2",
        &format!(r#"Bearer realm="http://{host}/token",service="fake""#),
    );
    // No 401: token, manifest, blob.
    let counted = s.count(|| {
        s.client().pull(&s.reference("v2")).unwrap();
    });
    assert_eq!(counted, (3, 1), "(requests, connections)");
    assert_eq!(s.server.hits("GET", "/token"), 2);
}

#[test]
fn a_token_asked_for_with_credentials_is_never_written() {
    let s = setup(&[("T", 300)]);
    let client = isolated(s.server.host(), s.cache.path())
        .credentials(s.server.host(), Credentials::basic("alice", "pw"))
        .build()
        .unwrap();
    client.pull(&s.reference("v1")).unwrap();
    assert!(token_files(s.cache.path()).is_empty());
    // Nothing on disk holds it.
    for entry in fs::read_dir(s.cache.path().join("tokens")).unwrap() {
        let text = fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains("\"T\""), "{text}");
    }
}

#[test]
fn a_planted_link_in_place_of_a_token_file_is_not_followed() {
    use std::os::unix::fs::PermissionsExt;
    let s = setup(&[("T", 300), ("T", 300)]);
    s.client().pull(&s.reference("v1")).unwrap();
    let kept = token_files(s.cache.path()).remove(0);
    // A file that would parse, with a token the registry refuses, behind a link.
    let text = fs::read_to_string(&kept)
        .unwrap()
        .replace("\"T\"", "\"EVIL\"");
    let elsewhere = s.cache.path().join("elsewhere.json");
    fs::write(&elsewhere, &text).unwrap();
    fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(&kept).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &kept).unwrap();

    // Not followed: the remembered challenge gets a token (no 401, no EVIL).
    let counted = s.count(|| {
        s.client().pull(&s.reference("v2")).unwrap();
    });
    assert_eq!(counted, (3, 1), "(requests, connections)");
    assert_eq!(
        fs::read_to_string(&elsewhere).unwrap(),
        text,
        "written through"
    );
    assert!(
        !fs::symlink_metadata(&kept)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn credentials_never_go_to_a_realm_only_remembered_from_an_earlier_process() {
    // Once, something else answered at the registry's address (a port on
    // localhost squatted while the real registry was down, a hostile network
    // in front of a plain-HTTP registry), with a challenge whose realm is its
    // own: an anonymous pull then kept that challenge in the cache. (Its realm
    // is marked insecure here only to stand in for an https one: a squatter
    // can have a certificate for a host of its own.)
    let registry = FakeRegistry::start_keep_alive();
    registry.artifact(REPO, "v1", &wasm_payload("squatted", 40_000), |r| r);
    registry.artifact(REPO, "v2", &wasm_payload("real", 40_000), |r| r);
    registry.route("/token", Route::ok(r#"{"token":"T","expires_in":300}"#));
    let squatter = FakeRegistry::start();
    squatter.route("/token", Route::ok(r#"{"token":"S","expires_in":300}"#));
    let challenge =
        |realm_host: &str| format!(r#"Bearer realm="http://{realm_host}/token",service="fake""#);
    registry.require_bearer("S", &challenge(squatter.host()));
    let cache = tempfile::tempdir().unwrap();
    let reference = |tag: &str| format!("{}/{REPO}:{tag}", registry.host());
    isolated(registry.host(), cache.path())
        .insecure_host(squatter.host())
        .build()
        .unwrap()
        .pull(&reference("v1"))
        .unwrap();
    let asked = squatter.seen().len();
    assert!(asked > 0);

    // The real registry is back, and the user now has credentials for it: no
    // later process may send them to the realm the squatter named, before the
    // registry itself has challenged it to.
    registry.require_bearer("T", &challenge(registry.host()));
    let with_credentials = isolated(registry.host(), cache.path())
        .insecure_host(squatter.host())
        .credentials(registry.host(), Credentials::basic("alice", "s3cret"))
        .build()
        .unwrap();
    with_credentials.pull(&reference("v2")).unwrap();
    let leaked: Vec<_> = squatter.seen()[asked..]
        .iter()
        .filter_map(|s| s.authorization.clone())
        .collect();
    assert!(
        leaked.is_empty(),
        "credentials sent to the remembered realm: {leaked:?}"
    );
}
