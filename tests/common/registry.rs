//! Debian's `docker-registry` started on a free loopback port, for tests that need
//! the real thing. Without the binary the caller skips loudly, except under CI.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{EMPTY_CONFIG, OCI_MANIFEST, WASM, digest, manifest};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A `docker-registry` process on a free loopback port with temporary storage,
/// killed on drop.
pub struct Registry {
    child: Child,
    pub host: String,
    _storage: tempfile::TempDir,
    /// Where its output goes when started with [`Registry::start_logging`].
    log: Option<std::path::PathBuf>,
}

impl Registry {
    /// Starts one, or says why the test must be skipped.
    pub fn start() -> Result<Registry, String> {
        Registry::start_with("")
    }

    /// Starts one with `extra` appended to its YAML config (an `auth:` section, say).
    pub fn start_with(extra: &str) -> Result<Registry, String> {
        Registry::start_in(None, extra)
    }

    /// Starts one storing its data in `data` (to restart on the same content with
    /// another config), with `extra` appended to its config; lines indented two
    /// spaces land under `http:` (a `tls:` section).
    pub fn start_in(data: Option<&Path>, extra: &str) -> Result<Registry, String> {
        Registry::launch(data, extra, false)
    }

    /// Starts one with its access log on (`extra` appended to its config, as for
    /// [`Registry::start_with`]); read it with [`Registry::access_log`].
    pub fn start_logging(extra: &str) -> Result<Registry, String> {
        Registry::launch(None, extra, true)
    }

    /// The access log so far: one line per request, in Apache's combined format
    /// (method, path, status, size, referrer, user agent).
    pub fn access_log(&self) -> Vec<String> {
        let log = self.log.as_ref().expect("started with start_logging");
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"GET ") || l.contains("\"HEAD "))
            .map(str::to_owned)
            .collect()
    }

    fn launch(data: Option<&Path>, extra: &str, logged: bool) -> Result<Registry, String> {
        if !Path::new(REGISTRY_BIN).exists() {
            let why =
                format!("{REGISTRY_BIN} is not installed (apt-get install -y docker-registry)");
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the real-registry tests: {why}"
            );
            return Err(why);
        }
        let storage = tempfile::tempdir().unwrap();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let config = storage.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: {}\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n{extra}",
                !logged,
                data.map_or_else(|| storage.path().join("data"), Path::to_path_buf).display()
            ),
        )
        .unwrap();
        let log = logged.then(|| storage.path().join("access.log"));
        let output = || match &log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap(),
            ),
            None => Stdio::null(),
        };
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdout(output())
            .stderr(output())
            .spawn()
            .unwrap();
        let registry = Registry {
            child,
            host,
            _storage: storage,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        // Any HTTP answer means it is up: with auth on, `/v2/` answers 401.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        while agent
            .get(format!("http://{}/v2/", registry.host))
            .call()
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start on {}",
                registry.host
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(registry)
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.host)
    }

    /// Monolithic upload: POST to open an upload, PUT the whole blob with its digest.
    pub fn push_blob(&self, repo: &str, bytes: &[u8]) {
        self.push_blob_as(repo, bytes, None);
    }

    /// [`Registry::push_blob`] with an `Authorization` header.
    pub fn push_blob_as(&self, repo: &str, bytes: &[u8], auth: Option<&str>) {
        let agent = ureq::Agent::new_with_defaults();
        let mut post = agent.post(format!("{}/v2/{repo}/blobs/uploads/", self.base()));
        if let Some(a) = auth {
            post = post.header("authorization", a);
        }
        let resp = post.send_empty().unwrap();
        assert_eq!(resp.status(), 202);
        let location = resp
            .headers()
            .get("location")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base())
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let mut put = agent
            .put(format!("{location}{sep}digest={}", digest(bytes)))
            .header("content-type", "application/octet-stream");
        if let Some(a) = auth {
            put = put.header("authorization", a);
        }
        let resp = put.send(bytes).unwrap();
        assert_eq!(resp.status(), 201, "blob upload refused");
    }

    pub fn push_manifest(&self, repo: &str, tag: &str, manifest: &[u8]) {
        self.push_manifest_as(repo, tag, manifest, None);
    }

    /// [`Registry::push_manifest`] with an `Authorization` header.
    pub fn push_manifest_as(&self, repo: &str, tag: &str, manifest: &[u8], auth: Option<&str>) {
        let mut put = ureq::Agent::new_with_defaults()
            .put(format!("{}/v2/{repo}/manifests/{tag}", self.base()))
            .header("content-type", OCI_MANIFEST);
        if let Some(a) = auth {
            put = put.header("authorization", a);
        }
        let resp = put.send(manifest).unwrap();
        assert_eq!(resp.status(), 201, "manifest push refused");
    }

    /// Pushes a manifest or index of `media_type` under `reference` (a tag or a digest).
    pub fn push_manifest_typed(
        &self,
        repo: &str,
        reference: &str,
        manifest: &[u8],
        media_type: &str,
    ) {
        let resp = ureq::Agent::new_with_defaults()
            .put(format!("{}/v2/{repo}/manifests/{reference}", self.base()))
            .header("content-type", media_type)
            .send(manifest)
            .unwrap();
        assert_eq!(resp.status(), 201, "manifest push refused");
    }

    /// Pushes a one-layer wasm artifact; returns its manifest.
    pub fn push_wasm(&self, repo: &str, tag: &str, payload: &[u8]) -> Vec<u8> {
        self.push_wasm_as(repo, tag, payload, None)
    }

    /// [`Registry::push_wasm`] with an `Authorization` header.
    pub fn push_wasm_as(
        &self,
        repo: &str,
        tag: &str,
        payload: &[u8],
        auth: Option<&str>,
    ) -> Vec<u8> {
        let m = manifest(&[(WASM, payload)]);
        self.push_blob_as(repo, EMPTY_CONFIG, auth);
        self.push_blob_as(repo, payload, auth);
        self.push_manifest_as(repo, tag, &m, auth);
        m
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
