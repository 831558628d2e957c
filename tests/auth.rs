//! Authentication against scripted registries: every token flow, every
//! credential source, the fallbacks, the safety rules, and that no secret ever
//! shows in an error or a Debug.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::server::{FakeRegistry, Request, Route, header_is, no_header};
use common::*;
use forge_oci::{Credentials, Error};

const REPO: &str = "private/plugin";
const PASSWORD: &str = "hunter2-very-secret";
const TOKEN: &str = "tok-secret-0123456789";

fn basic(user: &str, pass: &str) -> String {
    basic_auth(user, pass)
}

/// Requests without an `Authorization` header.
fn anonymous() -> impl Fn(&Request) -> bool + Clone + Send + Sync + use<> {
    no_header("authorization")
}

/// Requests whose `Authorization` header is exactly `value`.
fn authorized(value: &str) -> impl Fn(&Request) -> bool + Clone + Send + Sync + use<> {
    header_is("authorization", value)
}

/// Requests carrying Bearer `token`.
fn bearer(token: &str) -> impl Fn(&Request) -> bool + Clone + Send + Sync + use<> {
    authorized(&format!("Bearer {token}"))
}

/// Requests carrying an `Authorization` header, whatever it says.
fn with_authorization(r: &Request) -> bool {
    r.header("authorization").is_some()
}

/// Requests carrying Basic credentials, whoever's.
fn any_basic(r: &Request) -> bool {
    r.header("authorization")
        .is_some_and(|a| a.starts_with("Basic "))
}

/// A 401 with this `WWW-Authenticate` challenge.
fn challenge(www_authenticate: &str) -> Route {
    Route::ok(Vec::new())
        .status(401)
        .header("www-authenticate", www_authenticate)
}

/// Requests to `host` that carried an `Authorization` header, on any path.
fn authorized_requests(host: &FakeRegistry) -> usize {
    host.requests()
        .iter()
        .filter(|r| with_authorization(r))
        .count()
}

/// A registry that demands a Bearer token `TOKEN` for REPO and serves one artifact.
/// Returns the payload.
fn private_registry(server: &FakeRegistry) -> Vec<u8> {
    let payload = private_manifest(server);
    server.route_if(
        "GET",
        &format!("/v2/{REPO}/blobs/{}", digest(&payload)),
        bearer(TOKEN),
        Route::ok(payload.clone()),
    );
    payload
}

/// [`private_registry`] without the blob route.
fn private_manifest(server: &FakeRegistry) -> Vec<u8> {
    let host = server.host();
    let payload = wasm_payload("private plugin", 2000);
    let m = manifest(&[(WASM, &payload)]);
    server.route_if(
        "GET",
        &format!("/v2/{REPO}/*"),
        anonymous(),
        challenge(&format!(
            r#"Bearer realm="http://{host}/token",service="test",scope="repository:{REPO}:pull""#
        )),
    );
    server.route_if(
        "GET",
        &format!("/v2/{REPO}/manifests/1.0"),
        bearer(TOKEN),
        Route::ok(m).header("content-type", OCI_MANIFEST),
    );
    payload
}

/// Answers the requests to the token service at `/token` (whatever their query)
/// that `when` accepts with `route`.
fn token_route(
    server: &FakeRegistry,
    when: impl Fn(&Request) -> bool + Send + Sync + 'static,
    route: Route,
) {
    server.route_if("GET", "/token", when, route);
}

fn token_body() -> String {
    format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#)
}

#[test]
fn basic_credentials_are_sent_to_the_token_realm() {
    let server = FakeRegistry::start();
    let payload = private_registry(&server);
    let alice = authorized(&basic("alice", PASSWORD));
    token_route(&server, alice.clone(), Route::ok(token_body()));
    let cache = tempfile::tempdir().unwrap();
    let host = server.host().to_owned();
    let c = isolated(&host, cache.path())
        .credentials(&host, Credentials::basic("alice", PASSWORD))
        .build()
        .unwrap();
    assert_eq!(
        c.pull(&format!("{host}/{REPO}:1.0"))
            .unwrap()
            .read()
            .unwrap(),
        payload
    );
    assert_eq!(server.hits_if("GET", "/token", alice), 1);
}

#[test]
fn an_identity_token_is_exchanged_by_the_oauth2_post() {
    let server = FakeRegistry::start();
    let payload = private_registry(&server);
    let scope = format!("repository:{REPO}:pull");
    let exchange = move |r: &Request| {
        r.header("content-type") == Some("application/x-www-form-urlencoded")
            && r.form("grant_type").as_deref() == Some("refresh_token")
            && r.form("refresh_token").as_deref() == Some("refresh-secret")
            && r.form("service").as_deref() == Some("test")
            && r.form("scope") == Some(scope.clone())
            && r.form("client_id").as_deref() == Some("forge-oci")
    };
    server.route_if(
        "POST",
        "/token",
        exchange.clone(),
        Route::ok(format!(r#"{{"access_token":"{TOKEN}","expires_in":300}}"#)),
    );
    let cache = tempfile::tempdir().unwrap();
    let host = server.host().to_owned();
    let c = isolated(&host, cache.path())
        .credentials(&host, Credentials::identity_token("refresh-secret"))
        .build()
        .unwrap();
    assert_eq!(
        c.pull(&format!("{host}/{REPO}:1.0"))
            .unwrap()
            .read()
            .unwrap(),
        payload
    );
    assert_eq!(server.hits_if("POST", "/token", exchange), 1);
}

#[test]
fn a_refused_oauth2_post_falls_back_to_get() {
    let server = FakeRegistry::start();
    let payload = private_registry(&server);
    server.route_method("POST", "/token", Route::ok(Vec::new()).status(404));
    let refresh = authorized(&basic("<token>", "refresh-secret"));
    token_route(&server, refresh.clone(), Route::ok(token_body()));
    let cache = tempfile::tempdir().unwrap();
    let host = server.host().to_owned();
    let c = isolated(&host, cache.path())
        .credentials(&host, Credentials::identity_token("refresh-secret"))
        .build()
        .unwrap();
    assert_eq!(
        c.pull(&format!("{host}/{REPO}:1.0"))
            .unwrap()
            .read()
            .unwrap(),
        payload
    );
    assert_eq!(server.hits_if("GET", "/token", refresh), 1);
}

#[test]
fn a_basic_challenge_gets_basic_credentials() {
    let server = FakeRegistry::start();
    let host = server.host().to_owned();
    let payload = wasm_payload("basic", 500);
    let m = manifest(&[(WASM, &payload)]);
    let bob = authorized(&basic("bob", PASSWORD));
    server.route_if(
        "GET",
        &format!("/v2/{REPO}/*"),
        anonymous(),
        challenge(r#"Basic realm="Registry Realm""#),
    );
    server.route_if(
        "GET",
        &format!("/v2/{REPO}/manifests/1.0"),
        bob.clone(),
        Route::ok(m).header("content-type", OCI_MANIFEST),
    );
    server.route_if(
        "GET",
        &format!("/v2/{REPO}/blobs/{}", digest(&payload)),
        bob,
        Route::ok(payload.clone()),
    );
    let cache = tempfile::tempdir().unwrap();
    let c = isolated(&host, cache.path())
        .credentials(&host, Credentials::basic("bob", PASSWORD))
        .build()
        .unwrap();
    assert_eq!(
        c.pull(&format!("{host}/{REPO}:1.0"))
            .unwrap()
            .read()
            .unwrap(),
        payload
    );
}

/// Writes a docker config.json with `auths` for `host`.
fn docker_config(dir: &Path, host: &str, user: &str, pass: &str) -> PathBuf {
    let auth = basic(user, pass);
    let encoded = auth.trim_start_matches("Basic ");
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        format!(r#"{{"auths":{{"https://{host}/v1/":{{"auth":"{encoded}"}}}}}}"#),
    )
    .unwrap();
    path
}

#[test]
fn docker_config_and_podman_auth_files_are_read() {
    let server = FakeRegistry::start();
    let payload = private_registry(&server);
    let host = server.host().to_owned();
    let (carol, dave) = (basic("carol", PASSWORD), basic("dave", PASSWORD));
    let carol_or_dave = move |r: &Request| {
        r.header("authorization")
            .is_some_and(|a| a == carol || a == dave)
    };
    token_route(&server, carol_or_dave.clone(), Route::ok(token_body()));
    let cache = tempfile::tempdir().unwrap();
    let docker = cache.path().join("docker");
    docker_config(&docker, &host, "carol", PASSWORD);
    let c = isolated(&host, cache.path())
        .docker_config_dir(&docker)
        .build()
        .unwrap();
    assert_eq!(
        c.pull(&format!("{host}/{REPO}:1.0"))
            .unwrap()
            .read()
            .unwrap(),
        payload
    );

    let podman = cache.path().join("podman-auth.json");
    std::fs::write(
        &podman,
        format!(r#"{{"auths":{{"{host}":{{"username":"dave","password":"{PASSWORD}"}}}}}}"#),
    )
    .unwrap();
    let cache2 = tempfile::tempdir().unwrap();
    let c = isolated(&host, cache2.path())
        .auth_files([podman])
        .build()
        .unwrap();
    assert_eq!(
        c.pull(&format!("{host}/{REPO}:1.0"))
            .unwrap()
            .read()
            .unwrap(),
        payload
    );
    assert_eq!(server.hits_if("GET", "/token", carol_or_dave), 2);
}

/// A public repository: the registry challenges, and the token service hands
/// anonymous tokens but refuses the (stale) credentials.
fn public_registry_refusing_credentials(server: &FakeRegistry) -> Vec<u8> {
    let payload = private_registry(server);
    token_route(server, anonymous(), Route::ok(token_body()));
    token_route(
        server,
        any_basic,
        Route::ok(r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#)
            .status(401),
    );
    payload
}

#[test]
fn credential_trouble_never_breaks_a_public_pull() {
    let server = FakeRegistry::start();
    let payload = public_registry_refusing_credentials(&server);
    let host = server.host().to_owned();
    let reference = format!("{host}/{REPO}:1.0");

    // Stale credentials the token service rejects.
    let cache = tempfile::tempdir().unwrap();
    let c = isolated(&host, cache.path())
        .credentials(&host, Credentials::basic("old", PASSWORD))
        .build()
        .unwrap();
    assert_eq!(c.pull(&reference).unwrap().read().unwrap(), payload);

    // A malformed config file.
    let cache = tempfile::tempdir().unwrap();
    let docker = cache.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        format!(r#"{{"auths": {{"{host}": {{"auth": "{PASSWORD}""#),
    )
    .unwrap();
    let c = isolated(&host, cache.path())
        .docker_config_dir(&docker)
        .build()
        .unwrap();
    assert_eq!(c.pull(&reference).unwrap().read().unwrap(), payload);

    // A credential helper that does not exist.
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(
        docker.join("config.json"),
        format!(r#"{{"credHelpers": {{"{host}": "absent-helper"}}}}"#),
    )
    .unwrap();
    let c = isolated(&host, cache.path())
        .docker_config_dir(&docker)
        .build()
        .unwrap();
    assert_eq!(c.pull(&reference).unwrap().read().unwrap(), payload);
}

#[test]
fn refusals_say_what_to_do_and_name_the_source() {
    let server = FakeRegistry::start();
    let host = server.host().to_owned();
    let realm = format!("http://{host}/token");
    server.route_if(
        "GET",
        &format!("/v2/{REPO}/*"),
        |_| true,
        Route::ok(r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#)
            .status(401)
            .header(
                "www-authenticate",
                &format!(r#"Bearer realm="{realm}",service="test""#),
            ),
    );
    token_route(&server, anonymous(), Route::ok(token_body()));
    token_route(&server, any_basic, Route::ok(Vec::new()).status(401));
    server.route_method(
        "GET",
        "/v2/forbidden/plugin/manifests/1.0",
        Route::ok(r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#)
            .status(403),
    );
    let reference = format!("{host}/{REPO}:1.0");

    // Anonymous: how to log in.
    let cache = tempfile::tempdir().unwrap();
    let err = isolated(&host, cache.path())
        .build()
        .unwrap()
        .pull(&reference)
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("docker login {host}")) && msg.contains(&reference),
        "{msg}"
    );

    // Rejected credentials name where they came from.
    let docker = cache.path().join("docker");
    let config = docker_config(&docker, &host, "erin", PASSWORD);
    let err = isolated(&host, cache.path())
        .docker_config_dir(&docker)
        .build()
        .unwrap()
        .pull(&reference)
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("credentials from {}", config.display())) && msg.contains("rejected"),
        "{msg}"
    );
    let err = isolated(&host, cache.path())
        .credentials(&host, Credentials::basic("erin", PASSWORD))
        .build()
        .unwrap()
        .pull(&reference)
        .unwrap_err();
    assert!(
        err.to_string().contains("ClientBuilder::credentials"),
        "{err}"
    );

    // 403 names the repository.
    let err = isolated(&host, cache.path())
        .build()
        .unwrap()
        .pull(&format!("{host}/forbidden/plugin:1.0"))
        .unwrap_err();
    assert!(matches!(err, Error::Denied { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("{host}/forbidden/plugin:1.0"))
            && err.to_string().contains("DENIED"),
        "{err}"
    );
}

#[test]
fn credentials_never_cross_plain_http_to_a_host_not_marked_insecure() {
    let registry = FakeRegistry::start();
    let auth = FakeRegistry::start(); // a plain-HTTP token service on another port, not marked insecure
    let host = registry.host().to_owned();
    registry.route_if(
        "GET",
        &format!("/v2/{REPO}/*"),
        |_| true,
        challenge(&format!(
            r#"Bearer realm="http://{}/token",service="s""#,
            auth.host()
        )),
    );
    token_route(&auth, anonymous(), Route::ok(token_body()));
    let cache = tempfile::tempdir().unwrap();
    let c = isolated(&host, cache.path())
        .credentials(&host, Credentials::basic("frank", PASSWORD))
        .build()
        .unwrap();
    let _ = c.pull(&format!("{host}/{REPO}:1.0"));
    assert_eq!(auth.hits_if("GET", "/token", anonymous()), 1);
    assert_eq!(
        authorized_requests(&auth),
        0,
        "a credential reached the token service"
    );
}

#[test]
fn authorization_is_not_forwarded_on_a_redirect_to_another_host() {
    let server = FakeRegistry::start();
    let storage = FakeRegistry::start(); // a CDN or S3 bucket that records what it is sent
    let payload = private_manifest(&server);
    let host = server.host().to_owned();
    token_route(&server, |_| true, Route::ok(token_body()));
    // The blob is redirected off-host.
    server.route_if(
        "GET",
        &format!("/v2/{REPO}/blobs/{}", digest(&payload)),
        bearer(TOKEN),
        Route::ok(Vec::new()).status(307).header(
            "location",
            &format!("http://{}/bucket/blob", storage.host()),
        ),
    );
    storage.route_if(
        "GET",
        "/bucket/blob",
        anonymous(),
        Route::ok(payload.clone()),
    );
    let cache = tempfile::tempdir().unwrap();
    let c = isolated(&host, cache.path())
        .credentials(&host, Credentials::basic("grace", PASSWORD))
        .build()
        .unwrap();
    assert_eq!(
        c.pull(&format!("{host}/{REPO}:1.0"))
            .unwrap()
            .read()
            .unwrap(),
        payload
    );
    assert_eq!(storage.hits_if("GET", "/bucket/blob", anonymous()), 1);
    assert_eq!(
        authorized_requests(&storage),
        0,
        "a credential reached the storage"
    );
}

#[test]
fn credential_helpers_run_from_path_and_their_trouble_is_reported() {
    let server = FakeRegistry::start();
    let payload = private_registry(&server);
    let host = server.host().to_owned();
    let helper_user = authorized(&basic("helper-user", PASSWORD));
    token_route(&server, helper_user.clone(), Route::ok(token_body()));
    token_route(&server, anonymous(), Route::ok(Vec::new()).status(401));
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = work.path().join("helper.log");
    let helper = |name: &str, body: &str| {
        use std::os::unix::fs::PermissionsExt;
        let path = bin.join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    helper(
        "good",
        &format!(
            r#"[ "$1" = get ] || exit 3; read server; echo "$server" >> {}; printf '{{"ServerURL":"%s","Username":"helper-user","Secret":"{PASSWORD}"}}' "$server""#,
            log.display()
        ),
    );
    helper("locked", "echo 'keychain is locked' >&2; exit 1");
    let docker = work.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let path_var = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let pull = |config: &str, reference: &str| {
        std::fs::write(docker.join("config.json"), config).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_forge-oci"))
            .args([
                "pull",
                reference,
                "-o",
                "-",
                "--insecure",
                &host,
                "--cache-dir",
            ])
            .arg(work.path().join("cache"))
            .env("PATH", &path_var)
            .env("DOCKER_CONFIG", &docker)
            .env("REGISTRY_AUTH_FILE", work.path().join("none.json"))
            .env_remove("XDG_RUNTIME_DIR")
            .output()
            .unwrap()
    };
    let reference = format!("{host}/{REPO}:1.0");
    let out = pull(
        &format!(r#"{{"credHelpers":{{"{host}":"good"}}}}"#),
        &reference,
    );
    assert_eq!(succeeded(&out), payload);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().trim(),
        host,
        "the helper is asked for the server"
    );
    assert_eq!(server.hits_if("GET", "/token", helper_user), 1);

    // credsStore as the default; a failing helper: the pull of a private repo fails,
    // and the error carries what the helper said.
    let out = pull(r#"{"credsStore":"locked"}"#, &format!("{host}/{REPO}:2.0"));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("docker-credential-locked") && stderr.contains("keychain is locked"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}

#[test]
fn no_secret_appears_in_any_error_or_debug_output() {
    let server = FakeRegistry::start();
    let host = server.host().to_owned();
    public_registry_refusing_credentials(&server);
    server.route_method(
        "GET",
        "/v2/forbidden/plugin/manifests/1.0",
        Route::ok(r#"{"errors":[{"code":"DENIED","message":"denied"}]}"#).status(403),
    );
    let cache = tempfile::tempdir().unwrap();
    let docker = cache.path().join("docker");
    docker_config(&docker, &host, "heidi", PASSWORD);
    let mut rendered = Vec::new();
    let builders = [
        isolated(&host, cache.path()).credentials(&host, Credentials::basic("heidi", PASSWORD)),
        isolated(&host, cache.path()).credentials(&host, Credentials::identity_token(TOKEN)),
        isolated(&host, cache.path()).docker_config_dir(&docker),
    ];
    for builder in builders {
        rendered.push(format!("{builder:?}"));
        let client = builder.build().unwrap();
        rendered.push(format!("{client:?}"));
        for reference in [
            format!("{host}/{REPO}:9.9"),
            format!("{host}/forbidden/plugin:1.0"),
            format!("{host}/{REPO}:1.0"),
        ] {
            match client.pull(&reference) {
                Ok(a) => rendered.push(format!("{a:?}")),
                Err(e) => {
                    rendered.push(format!("{e}"));
                    rendered.push(format!("{e:?}"));
                    let mut source = std::error::Error::source(&e);
                    while let Some(s) = source {
                        rendered.push(format!("{s} {s:?}"));
                        source = s.source();
                    }
                }
            }
        }
        rendered.push(format!("{client:?}"));
    }
    rendered.push(format!("{:?}", Credentials::basic("heidi", PASSWORD)));
    let all = rendered.join("\n");
    assert!(
        all.contains("heidi") || all.contains("denied"),
        "the test rendered nothing useful"
    );
    for secret in [PASSWORD, TOKEN, &basic("heidi", PASSWORD)[6..]] {
        assert!(!all.contains(secret), "a secret leaked:\n{all}");
    }
}

#[test]
fn a_redirect_target_that_challenges_gets_its_own_anonymous_token() {
    let server = FakeRegistry::start();
    let storage = FakeRegistry::start();
    let payload = private_manifest(&server);
    let host = server.host().to_owned();
    let storage_url = format!("http://{}", storage.host());
    token_route(&server, |_| true, Route::ok(token_body()));
    server.route_method(
        "GET",
        &format!("/v2/{REPO}/blobs/{}", digest(&payload)),
        Route::ok(Vec::new())
            .status(307)
            .header("location", &format!("{storage_url}/bucket/blob")),
    );
    // The storage host wants a token of its own, from its own realm.
    storage.route_if(
        "GET",
        "/bucket/blob",
        anonymous(),
        challenge(&format!(
            r#"Bearer realm="{storage_url}/token",service="storage""#
        )),
    );
    token_route(
        &storage,
        anonymous(),
        Route::ok(r#"{"token":"storage-only-token"}"#),
    );
    storage.route_if(
        "GET",
        "/bucket/blob",
        bearer("storage-only-token"),
        Route::ok(payload.clone()),
    );
    let cache = tempfile::tempdir().unwrap();
    let c = isolated(&host, cache.path())
        .insecure_host(storage.host())
        .credentials(&host, Credentials::basic("ivan", PASSWORD))
        .build()
        .unwrap();
    assert_eq!(
        c.pull(&format!("{host}/{REPO}:1.0"))
            .unwrap()
            .read()
            .unwrap(),
        payload
    );
    assert_eq!(storage.hits_if("GET", "/token", anonymous()), 1);
    assert_eq!(
        storage.hits_if("GET", "/token", with_authorization),
        0,
        "credentials reached the storage's token service"
    );
}

#[test]
fn a_same_origin_redirect_keeps_authorization_and_loops_end() {
    let server = FakeRegistry::start();
    let payload = private_manifest(&server);
    let host = server.host().to_owned();
    token_route(&server, |_| true, Route::ok(token_body()));
    server.route_if(
        "GET",
        &format!("/v2/{REPO}/blobs/{}", digest(&payload)),
        bearer(TOKEN),
        Route::ok(Vec::new())
            .status(302)
            .header("location", "/internal/storage/blob"),
    );
    server.route_if(
        "GET",
        "/internal/storage/blob",
        bearer(TOKEN),
        Route::ok(payload.clone()),
    );
    let cache = tempfile::tempdir().unwrap();
    let c = isolated(&host, cache.path()).build().unwrap();
    assert_eq!(
        c.pull(&format!("{host}/{REPO}:1.0"))
            .unwrap()
            .read()
            .unwrap(),
        payload
    );
    assert_eq!(
        server.hits_if("GET", "/internal/storage/blob", bearer(TOKEN)),
        1
    );

    // A redirect loop ends with an error naming it, and nothing is cached.
    let looping = FakeRegistry::start();
    let lhost = looping.host().to_owned();
    let m = manifest(&[(WASM, b"never")]);
    looping.manifest(REPO, "1.0", &m, OCI_MANIFEST);
    let blob = format!("/v2/{REPO}/blobs/{}", digest(b"never"));
    looping.route_method(
        "GET",
        &blob,
        Route::ok(Vec::new()).status(301).header("location", &blob),
    );
    let cache = tempfile::tempdir().unwrap();
    let err = isolated(&lhost, cache.path())
        .build()
        .unwrap()
        .pull(&format!("{lhost}/{REPO}:1.0"))
        .unwrap_err();
    assert!(err.to_string().contains("more than 10 redirects"), "{err}");
    assert!(verified_blobs(cache.path()).is_empty());
}

/// A registry where every repository needs a token, and the token service hands
/// `tok-<user>` to each user of `users` (password `<user>-password`) and nothing to
/// anyone else; manifest `repo:1.0` is served for the token of the user in `repos`
/// only. So an artifact resolves exactly when the right user's credentials were sent.
fn registry_per_user(server: &FakeRegistry, users: &[&str], repos: &[(&str, &str)]) {
    let host = server.host();
    let m = manifest(&[(WASM, &wasm_payload("per user", 100))]);
    server.route_if(
        "GET",
        "/v2/*",
        anonymous(),
        challenge(&format!(
            r#"Bearer realm="http://{host}/token",service="test""#
        )),
    );
    for user in users {
        token_route(
            server,
            authorized(&basic(user, &format!("{user}-password"))),
            Route::ok(format!(r#"{{"token":"tok-{user}"}}"#)),
        );
    }
    for (repo, user) in repos {
        server.route_if(
            "GET",
            &format!("/v2/{repo}/manifests/1.0"),
            bearer(&format!("tok-{user}")),
            Route::ok(m.clone()).header("content-type", OCI_MANIFEST),
        );
    }
}

/// An `auth.json` entry for `user`, as podman writes it.
fn entry(user: &str) -> String {
    format!(
        r#"{{"auth":"{}"}}"#,
        base64(format!("{user}:{user}-password").as_bytes())
    )
}

#[test]
fn namespaced_keys_pick_the_most_specific_entry_every_time() {
    let server = FakeRegistry::start();
    let host = server.host().to_owned();
    let users = ["alice", "bob", "carol", "dave", "erin"];
    let repos = [
        ("team-a/app", "dave"), // host/team-a/app: the exact key beats its namespace
        ("team-a/other", "alice"), // host/team-a
        ("team-a/sub/app", "erin"), // host/team-a/sub: the longest namespace wins
        ("team-b/app", "bob"),  // host/team-b
        ("team-c/app", "carol"), // host: a namespace beats the host, the host is the last resort
        ("team-ab/app", "carol"), // host/team-a is no prefix of team-ab
    ];
    registry_per_user(&server, &users, &repos);
    let work = tempfile::tempdir().unwrap();
    let auth_file = work.path().join("auth.json");
    let resolve_all = |repos: &[(&str, &str)]| {
        for run in 0..20 {
            for (repo, user) in repos {
                let cache = tempfile::tempdir().unwrap();
                let client = isolated(&host, cache.path())
                    .auth_files([auth_file.clone()])
                    .build()
                    .unwrap();
                if let Err(e) = client.resolve(&format!("{host}/{repo}:1.0")) {
                    panic!("run {run}: {repo} should have been pulled as {user}: {e}");
                }
            }
        }
    };

    // The issue's case: two namespaces of one host and no key for the host.
    std::fs::write(
        &auth_file,
        format!(
            r#"{{"auths":{{"{host}/team-a":{},"{host}/team-b":{}}}}}"#,
            entry("alice"),
            entry("bob")
        ),
    )
    .unwrap();
    resolve_all(&[("team-a/other", "alice"), ("team-b/app", "bob")]);

    // Every level at once, with docker's noisy host keys too (never chosen
    // while an exact key applies).
    std::fs::write(
        &auth_file,
        format!(
            r#"{{"auths":{{"https://{host}/v1/":{},"{host}/team-a":{},"{host}/team-b":{},
                "{host}/team-a/app":{},"{host}/team-a/sub":{},"{host}":{},"http://{host}":{}}}}}"#,
            entry("mallory"),
            entry("alice"),
            entry("bob"),
            entry("dave"),
            entry("erin"),
            entry("carol"),
            entry("mallory"),
        ),
    )
    .unwrap();
    resolve_all(&repos);
}

/// The variable that tells a re-run test it is the child of [`with_helpers_on_path`].
const HELPERS_VAR: &str = "FORGE_OCI_TEST_HELPER_DIR";

/// Credential helpers run from PATH, which is the whole process's: a test that
/// sets it would race every other test of this binary. So the test `name` calls
/// this first: in the test process, it writes the helper scripts (`(name, shell
/// body)`, as `docker-credential-<name>`) into a new directory, runs the same test
/// again in a child process of this binary with that directory first on PATH,
/// checks that it passed, and returns `None`. In the child it returns the
/// directory, and the test does its work.
fn with_helpers_on_path(name: &str, helpers: &[(&str, &str)]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = std::env::var_os(HELPERS_VAR) {
        return Some(PathBuf::from(dir));
    }
    let dir = tempfile::tempdir().unwrap();
    for (helper, body) in helpers {
        let path = dir.path().join(format!("docker-credential-{helper}"));
        let body = body.replace("$DIR", &dir.path().display().to_string());
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(HELPERS_VAR, dir.path())
        .env(
            "PATH",
            format!(
                "{}:{}",
                dir.path().display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the test failed in its child process:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    None
}

/// A docker config directory whose `credHelpers` maps each host to a helper.
fn helper_config(dir: &Path, helpers: &[(&str, &str)]) -> PathBuf {
    let map: serde_json::Map<String, serde_json::Value> = helpers
        .iter()
        .map(|(host, helper)| ((*host).to_owned(), (*helper).into()))
        .collect();
    let docker = dir.join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        serde_json::json!({ "credHelpers": map }).to_string(),
    )
    .unwrap();
    docker
}

#[test]
fn a_helper_that_never_answers_is_stopped_and_holds_up_nothing_else() {
    let Some(bin) = with_helpers_on_path(
        "a_helper_that_never_answers_is_stopped_and_holds_up_nothing_else",
        &[
            // The shell waits for `sleep`, which keeps the helper's output open
            // after the shell is killed, as a keychain prompt would.
            ("slow", "touch $DIR/slow-started; sleep 12"),
            (
                "fast",
                &format!(r#"printf '{{"Username":"fast-user","Secret":"{PASSWORD}"}}'"#),
            ),
        ],
    ) else {
        return;
    };
    let started = bin.join("slow-started");

    // A public repository behind a helper that never answers, and a private
    // one on another registry whose helper answers at once.
    let public = FakeRegistry::start();
    let payload = public_registry_refusing_credentials(&public);
    let public_host = public.host().to_owned();
    let private = FakeRegistry::start();
    let private_payload = private_registry(&private);
    let private_host = private.host().to_owned();
    token_route(
        &private,
        authorized(&basic("fast-user", PASSWORD)),
        Route::ok(token_body()),
    );
    let work = tempfile::tempdir().unwrap();
    let docker = helper_config(
        work.path(),
        &[(&public_host, "slow"), (&private_host, "fast")],
    );
    let client = isolated(&public_host, work.path())
        .insecure_host(&private_host)
        .docker_config_dir(&docker)
        .credential_helper_timeout(std::time::Duration::from_secs(2))
        .build()
        .unwrap();

    let pinned = std::thread::scope(|s| {
        let slow = s.spawn(|| {
            let t = std::time::Instant::now();
            let got = client.pull(&format!("{public_host}/{REPO}:1.0"));
            (got, t.elapsed())
        });
        // Once the slow helper runs, the same client pulls from the other registry.
        let t = std::time::Instant::now();
        while !started.exists() {
            assert!(t.elapsed().as_secs() < 10, "the slow helper never started");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let other = client.pull(&format!("{private_host}/{REPO}:1.0"));
        assert_eq!(other.unwrap().read().unwrap(), private_payload);
        assert!(
            !slow.is_finished(),
            "a pull from another registry waited for the slow helper"
        );
        // No cache lock is held while a helper runs: prune does not wait for it.
        client
            .cache()
            .prune(&forge_oci::PruneOptions::default())
            .unwrap();
        assert!(!slow.is_finished(), "prune waited for the slow helper");
        let (got, took) = slow.join().unwrap();
        let got = got.unwrap();
        assert_eq!(got.read().unwrap(), payload, "anonymously");
        assert!(
            took.as_secs_f64() >= 1.9 && took.as_secs() < 6,
            "the public pull took {took:?} with a 2 s helper timeout"
        );
        got
    });

    // A pin whose manifests are cached but whose layer is gone: its first request
    // is the blob's, which would meet the 401 under the cache lock. A new client
    // (no token, no helper answer kept) must still run the helper outside it.
    std::fs::remove_file(pinned.path()).unwrap();
    std::fs::remove_file(&started).unwrap();
    public.route_if(
        "HEAD",
        &format!("/v2/{REPO}/*"),
        anonymous(),
        challenge(&format!(
            r#"Bearer realm="http://{public_host}/token",service="test""#
        )),
    );
    let client = isolated(&public_host, work.path())
        .docker_config_dir(&docker)
        .credential_helper_timeout(std::time::Duration::from_secs(2))
        .build()
        .unwrap();
    let reference = format!("{public_host}/{REPO}@{}", pinned.manifest_digest());
    std::thread::scope(|s| {
        let slow = s.spawn(|| client.pull(&reference));
        let t = std::time::Instant::now();
        while !started.exists() {
            assert!(t.elapsed().as_secs() < 10, "the slow helper never started");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        client
            .cache()
            .prune(&forge_oci::PruneOptions::default())
            .unwrap();
        assert!(
            !slow.is_finished(),
            "prune waited for the helper of a pinned pull"
        );
        assert_eq!(slow.join().unwrap().unwrap().read().unwrap(), payload);
    });

    // The pull's deadline bounds a helper too, whatever the helper timeout.
    let cache = tempfile::tempdir().unwrap();
    let client = isolated(&public_host, cache.path())
        .docker_config_dir(&docker)
        .pull_timeout(std::time::Duration::from_secs(1))
        .build()
        .unwrap();
    let t = std::time::Instant::now();
    let err = client
        .pull(&format!("{public_host}/{REPO}:1.0"))
        .unwrap_err();
    assert!(matches!(err, Error::Deadline { .. }), "{err:?}");
    assert!(t.elapsed().as_secs() < 4, "took {:?}", t.elapsed());

    // Where anonymous access is refused, the error says what the helper did.
    let refusing = FakeRegistry::start();
    private_registry(&refusing);
    token_route(&refusing, |_| true, Route::ok(Vec::new()).status(401));
    let refusing_host = refusing.host().to_owned();
    let docker = helper_config(cache.path(), &[(&refusing_host, "slow")]);
    let err = isolated(&refusing_host, cache.path())
        .docker_config_dir(&docker)
        .credential_helper_timeout(std::time::Duration::from_millis(500))
        .build()
        .unwrap()
        .pull(&format!("{refusing_host}/{REPO}:1.0"))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("docker-credential-slow get did not answer within 0.5 s and was stopped"),
        "{err}"
    );
}

#[test]
fn a_failing_helper_shows_one_escaped_line_of_stderr_and_never_its_stdout() {
    let Some(_) = with_helpers_on_path(
        "a_failing_helper_shows_one_escaped_line_of_stderr_and_never_its_stdout",
        &[
            (
                "flood",
                &format!(
                    r#"printf '{{"ServerURL":"x","Username":"flood-user","Secret":"{PASSWORD}"}}\n'
printf '\n\033]0;owned\007 keychain exploded\nsecond line\n' >&2
head -c 3000000 /dev/zero | tr '\0' e >&2
head -c 3000000 /dev/zero | tr '\0' o
exit 1"#
                ),
            ),
            (
                "chatty",
                r#"printf '{"Username":"u","Secret":"'; head -c 3000000 /dev/zero | tr '\0' s; printf '"}'"#,
            ),
        ],
    ) else {
        return;
    };
    let server = FakeRegistry::start();
    private_registry(&server);
    let host = server.host().to_owned();
    token_route(&server, |_| true, Route::ok(Vec::new()).status(401));
    let work = tempfile::tempdir().unwrap();
    let pull = |helper: &str| {
        let docker = helper_config(work.path(), &[(&host, helper)]);
        let err = isolated(&host, work.path())
            .docker_config_dir(&docker)
            .build()
            .unwrap()
            .pull(&format!("{host}/{REPO}:1.0"))
            .unwrap_err();
        assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.len() < 1000 && !msg.contains('\n') && !msg.contains('\x1b'),
            "{} bytes: {}",
            msg.len(),
            &msg[..msg.len().min(2000)]
        );
        assert!(
            !msg.contains(PASSWORD) && !msg.contains("flood-user"),
            "{msg}"
        );
        msg
    };
    let msg = pull("flood");
    assert!(
        msg.contains(
            r"docker-credential-flood get failed (exit status 1): \x1b]0;owned\x07 keychain exploded"
        ) && !msg.contains("second line"),
        "{msg}"
    );
    let msg = pull("chatty");
    assert!(
        msg.contains("docker-credential-chatty get printed more than 64 KiB"),
        "{msg}"
    );
}

#[test]
fn one_token_request_serves_two_pulls() {
    let server = FakeRegistry::start();
    let host = server.host().to_owned();
    let realm = format!("http://{host}/token");
    let challenge =
        format!(r#"Bearer realm="{realm}",service="test-registry",scope="repository:{REPO}:pull""#);
    let scope = format!("repository:{REPO}:pull");
    let for_this_scope = move |r: &Request| {
        r.query("service") == Some("test-registry") && r.query("scope") == Some(scope.as_str())
    };
    token_route(
        &server,
        for_this_scope.clone(),
        Route::ok(r#"{"token":"anon-token-123","expires_in":300}"#),
    );
    // Without the token everything is 401; with it the registry answers.
    let repo_paths = format!("/v2/{REPO}/*");
    server.route_if(
        "GET",
        &repo_paths,
        anonymous(),
        Route::ok(r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#)
            .status(401)
            .header("www-authenticate", &challenge),
    );
    let mut authorized_paths = Vec::new();
    for (tag, seed) in [("v1", "one"), ("v2", "two")] {
        let payload = wasm_payload(seed, 500);
        let m = manifest(&[(WASM, &payload)]);
        let manifest_path = format!("/v2/{REPO}/manifests/{tag}");
        let blob_path = format!("/v2/{REPO}/blobs/{}", digest(&payload));
        server.route_if(
            "GET",
            &manifest_path,
            bearer("anon-token-123"),
            Route::ok(m).header("content-type", OCI_MANIFEST),
        );
        server.route_if(
            "GET",
            &blob_path,
            bearer("anon-token-123"),
            Route::ok(payload),
        );
        authorized_paths.extend([manifest_path, blob_path]);
    }
    let cache = tempfile::tempdir().unwrap();
    let client = client(&host, cache.path());
    assert_eq!(
        client
            .pull(&format!("{host}/{REPO}:v1"))
            .unwrap()
            .read()
            .unwrap(),
        wasm_payload("one", 500)
    );
    assert_eq!(
        client
            .pull(&format!("{host}/{REPO}:v2"))
            .unwrap()
            .read()
            .unwrap(),
        wasm_payload("two", 500)
    );
    assert_eq!(server.hits_if("GET", "/token", for_this_scope), 1);
    assert_eq!(server.hits_if("GET", &repo_paths, anonymous()), 1);
    for path in &authorized_paths {
        assert_eq!(
            server.hits_if("GET", path, bearer("anon-token-123")),
            1,
            "{path}"
        );
    }
    // The token never leaks into the client's Debug output.
    assert!(!format!("{client:?}").contains("anon-token-123"));
}
