//! A docker-style token service on 127.0.0.1 for `docker-registry` in `auth: token`
//! mode. It signs RS256 JWTs with a key made at start (by the `openssl` CLI, so the
//! project needs no crypto crate of its own) and names its certificate in `x5c`,
//! which the registry checks against `rootcertbundle`.
//!
//! Accounts: `alice`/`ALICE_PASSWORD` may pull `private/*`; `pusher`/`PUSHER_PASSWORD`
//! may pull and push anything; anyone may pull `public/*`. A wrong password is 401.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

pub const SERVICE: &str = "forge-test";
pub const ISSUER: &str = "forge-test-issuer";
pub const ALICE_PASSWORD: &str = "alice-s3cret-password";
pub const PUSHER_PASSWORD: &str = "pusher-s3cret-password";

pub struct TokenService {
    pub host: String,
    pub cert: PathBuf,
    requests: Arc<AtomicUsize>,
}

struct Signer {
    dir: PathBuf,
    key: PathBuf,
    cert_der: Vec<u8>,
    counter: AtomicUsize,
}

impl TokenService {
    /// Starts one with its key and certificate in `dir`, or says why it cannot.
    pub fn start(dir: &Path) -> Result<TokenService, String> {
        let key = dir.join("token-key.pem");
        let cert = dir.join("token-cert.pem");
        super::self_signed(
            dir,
            "forge-oci test token signer",
            "token-key.pem",
            "token-cert.pem",
        )?;
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .map_err(|e| format!("cannot run openssl: {e}"))?;
        let signer = Arc::new(Signer {
            dir: dir.to_path_buf(),
            key,
            cert_der: der.stdout,
            counter: AtomicUsize::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&requests);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                let signer = Arc::clone(&signer);
                thread::spawn(move || {
                    let _ = serve(stream, &signer);
                });
            }
        });
        Ok(TokenService {
            host,
            cert,
            requests,
        })
    }

    /// The `auth:` section of a docker-registry config that trusts this service.
    pub fn registry_config(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: http://{}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.host,
            self.cert.display()
        )
    }

    /// A token for `pusher` with push access to `repo`, for the test to upload with.
    pub fn push_token(&self, repo: &str) -> String {
        let resp = ureq::Agent::new_with_defaults()
            .get(format!("http://{}/token", self.host))
            .query("service", SERVICE)
            .query("scope", format!("repository:{repo}:pull,push"))
            .header(
                "authorization",
                super::basic_auth("pusher", PUSHER_PASSWORD),
            )
            .call()
            .unwrap();
        let body: serde_json::Value =
            serde_json::from_slice(&resp.into_body().read_to_vec().unwrap()).unwrap();
        format!("Bearer {}", body["token"].as_str().unwrap())
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn serve(stream: std::net::TcpStream, signer: &Signer) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let target = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let mut authorization = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_owned());
            }
        }
    }
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let scopes: Vec<String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "scope")
        .map(|(_, v)| percent_decode(v))
        .collect();
    let account = match authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Basic "))
    {
        None => Some("anonymous"),
        Some(b64) => match super::decode_base64(b64)
            .and_then(|b| String::from_utf8(b).ok())
            .as_deref()
        {
            Some(s) if s == format!("alice:{ALICE_PASSWORD}") => Some("alice"),
            Some(s) if s == format!("pusher:{PUSHER_PASSWORD}") => Some("pusher"),
            _ => None,
        },
    };
    let mut out = stream;
    let Some(account) = account else {
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
        return write!(
            out,
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|scope| {
            let mut parts = scope.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            let allowed: Vec<&str> = actions
                .split(',')
                .filter(|a| match (account, *a) {
                    ("pusher", _) => true,
                    ("alice", "pull") => {
                        name.starts_with("private/") || name.starts_with("public/")
                    }
                    (_, "pull") => name.starts_with("public/"),
                    _ => false,
                })
                .collect();
            Some(serde_json::json!({"type": kind, "name": name, "actions": allowed}))
        })
        .collect();
    let token = signer.jwt(account, &access);
    let body = format!(r#"{{"token":"{token}","expires_in":300}}"#);
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

impl Signer {
    fn jwt(&self, subject: &str, access: &[serde_json::Value]) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [super::base64(&self.cert_der)]});
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": subject, "aud": SERVICE,
            "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("forge-test-{n}"),
            "access": access,
        });
        let input = format!(
            "{}.{}",
            base64url(header.to_string().as_bytes()),
            base64url(claims.to_string().as_bytes())
        );
        let file = self.dir.join(format!("signing-input-{n}"));
        std::fs::write(&file, &input).unwrap();
        let signature = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.key)
            .arg(&file)
            .output()
            .unwrap();
        assert!(signature.status.success(), "openssl dgst failed");
        format!("{input}.{}", base64url(&signature.stdout))
    }
}

fn base64url(bytes: &[u8]) -> String {
    super::base64(bytes)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("20");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b' '));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
