//! A scriptable fake registry on 127.0.0.1: fixed answers per path, or per
//! request condition (a header, a query parameter), optionally slow, honouring
//! `Range` when asked to, and recording every connection and request (with its
//! headers and query) for tests to assert on. One thread per connection; each
//! answer closes the connection, or, started with
//! [`FakeRegistry::start_keep_alive`], the connection serves request after
//! request as real registries do (so reuse shows in the count).
//! [`FakeRegistry::require_bearer`] makes `/v2/` answer 401 with a Bearer
//! challenge to any request without the right token.
#![allow(dead_code)]

mod request;

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::{OCI_MANIFEST, WASM, digest, manifest};
use request::path_matches;
#[allow(unused_imports)] // each test binary uses some of them
pub use request::{Request, header_is, no_header};

/// One scripted answer.
#[derive(Clone)]
pub struct Route {
    status: u16,
    headers: Vec<(String, String)>,
    body: Arc<Vec<u8>>,
    chunk: usize,
    delay: Duration,
    ranges: bool,
    refuse_ranges: bool,
    cut_after: Option<usize>,
    content_length: Option<u64>,
    trickle_headers: Option<Duration>,
    stall_after: Option<usize>,
    endless: bool,
    /// Answers for later hits, in order; the last one repeats.
    then: Vec<Route>,
}

impl Route {
    pub fn ok(body: impl Into<Vec<u8>>) -> Route {
        Route {
            status: 200,
            headers: Vec::new(),
            body: Arc::new(body.into()),
            chunk: 64 << 10,
            delay: Duration::ZERO,
            ranges: false,
            refuse_ranges: false,
            cut_after: None,
            content_length: None,
            trickle_headers: None,
            stall_after: None,
            endless: false,
            then: Vec::new(),
        }
    }

    pub fn status(mut self, status: u16) -> Route {
        self.status = status;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Route {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sends the body `chunk` bytes at a time with `delay` between chunks.
    pub fn slow(mut self, chunk: usize, delay: Duration) -> Route {
        self.chunk = chunk;
        self.delay = delay;
        self
    }

    /// Announces this `Content-Length` whatever the body is.
    pub fn content_length(mut self, n: u64) -> Route {
        self.content_length = Some(n);
        self
    }

    /// Sends the status line and headers one byte at a time, `delay` apart.
    pub fn trickle_headers(mut self, delay: Duration) -> Route {
        self.trickle_headers = Some(delay);
        self
    }

    /// Sends `n` body bytes, then nothing for a long time (the connection stays open).
    pub fn stall_after(mut self, n: usize) -> Route {
        self.stall_after = Some(n);
        self
    }

    /// Repeats the body for ever (no Content-Length), until the client hangs up.
    pub fn endless(mut self) -> Route {
        self.endless = true;
        self
    }

    /// Answers the following hits with `next` (and so on); the last answer repeats.
    pub fn then(mut self, next: Route) -> Route {
        self.then.push(next);
        self
    }

    /// Drops the connection after `n` body bytes, as a failing network would.
    pub fn cut_after(mut self, n: usize) -> Route {
        self.cut_after = Some(n);
        self
    }

    /// Answers `Range: bytes=N-` with 206 and the rest of the body (416 when N
    /// is at or past the end).
    pub fn ranges(mut self) -> Route {
        self.ranges = true;
        self
    }

    /// Answers any `Range` with 416 Range Not Satisfiable.
    pub fn refuse_ranges(mut self) -> Route {
        self.refuse_ranges = true;
        self
    }
}

/// One request as it arrived: method, target (path and query), and the
/// `Authorization` header.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub authorization: Option<String>,
}

/// A condition on a request, for [`FakeRegistry::route_if`] and [`FakeRegistry::hits_if`].
type When = Arc<dyn Fn(&Request) -> bool + Send + Sync>;

/// A route that answers only the requests its condition accepts.
struct Rule {
    method: String,
    /// A path, or a prefix ending in `*`.
    path: String,
    when: When,
    route: Route,
}

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<String, Route>>,
    /// Tried before `routes`, the latest added first.
    rules: Mutex<Vec<Rule>>,
    /// Every request, in order.
    requests: Mutex<Vec<Request>>,
    connections: AtomicUsize,
    stop: AtomicBool,
    keep_alive: AtomicBool,
    /// The token `/v2/` requires, and the challenge sent without it.
    bearer: Mutex<Option<(String, String)>>,
}

pub struct FakeRegistry {
    host: String,
    state: Arc<State>,
}

impl FakeRegistry {
    pub fn start() -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let state = Arc::clone(&shared);
                thread::spawn(move || {
                    let _ = serve(stream, &state);
                });
            }
        });
        FakeRegistry { host, state }
    }

    /// [`FakeRegistry::start`], keeping each connection open for more requests.
    pub fn start_keep_alive() -> FakeRegistry {
        let server = FakeRegistry::start();
        server.state.keep_alive.store(true, Ordering::SeqCst);
        server
    }

    /// Answers every `/v2/` request that lacks `Authorization: Bearer {token}`
    /// with 401, `WWW-Authenticate: {challenge}` and a small JSON body.
    pub fn require_bearer(&self, token: &str, challenge: &str) {
        *self.state.bearer.lock().unwrap() = Some((token.to_owned(), challenge.to_owned()));
    }

    /// Requests of any kind so far.
    pub fn request_count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Answers requests with `method` to `path` with `route`, before any route
    /// set for the path alone.
    pub fn route_method(&self, method: &str, path: &str, route: Route) {
        self.route(&format!("{method} {path}"), route);
    }

    pub fn route(&self, path: &str, route: Route) {
        self.state
            .routes
            .lock()
            .unwrap()
            .insert(path.to_owned(), route);
    }

    /// Answers the requests with `method` to `path` (or under it, when `path` ends
    /// in `*`) that `when` accepts with `route`, before any route set with
    /// [`route`](Self::route) or [`route_method`](Self::route_method). Of two
    /// conditional routes that accept a request, the one added last answers.
    pub fn route_if(
        &self,
        method: &str,
        path: &str,
        when: impl Fn(&Request) -> bool + Send + Sync + 'static,
        route: Route,
    ) {
        self.state.rules.lock().unwrap().push(Rule {
            method: method.to_owned(),
            path: path.to_owned(),
            when: Arc::new(when),
            route,
        });
    }

    /// Serves `body` as manifest `selector` of `repo`, with its digest header.
    /// Returns the path.
    pub fn manifest(&self, repo: &str, selector: &str, body: &[u8], media_type: &str) -> String {
        let path = format!("/v2/{repo}/manifests/{selector}");
        let route = Route::ok(body.to_vec())
            .header("content-type", media_type)
            .header("docker-content-digest", &digest(body));
        self.route(&path, route);
        path
    }

    /// Serves `body` as the blob `digest(body)` of `repo`. Returns the path.
    pub fn blob(&self, repo: &str, body: &[u8]) -> String {
        let path = format!("/v2/{repo}/blobs/{}", digest(body));
        let route = Route::ok(body.to_vec()).header("content-type", "application/octet-stream");
        self.route(&path, route);
        path
    }

    /// Serves `payload` as a one-layer wasm artifact `repo:tag`, with its manifest
    /// also reachable by digest. Returns the manifest.
    pub fn artifact(
        &self,
        repo: &str,
        tag: &str,
        payload: &[u8],
        blob: impl FnOnce(Route) -> Route,
    ) -> Vec<u8> {
        let m = manifest(&[(WASM, payload)]);
        let manifest_route = Route::ok(m.clone())
            .header("content-type", OCI_MANIFEST)
            .header("docker-content-digest", &digest(&m));
        self.route(
            &format!("/v2/{repo}/manifests/{tag}"),
            manifest_route.clone(),
        );
        self.route(
            &format!("/v2/{repo}/manifests/{}", digest(&m)),
            manifest_route,
        );
        self.route(
            &format!("/v2/{repo}/blobs/{}", digest(payload)),
            blob(Route::ok(payload.to_vec())),
        );
        m
    }

    /// Requests with `method` to `path` so far.
    pub fn hits(&self, method: &str, path: &str) -> usize {
        self.hits_if(method, path, |_| true)
    }

    /// Requests with `method` to `path` (or under it, when `path` ends in `*`)
    /// that `when` accepts, so far.
    pub fn hits_if(&self, method: &str, path: &str, when: impl Fn(&Request) -> bool) -> usize {
        let requests = self.state.requests.lock().unwrap();
        requests
            .iter()
            .filter(|r| r.method == method && path_matches(path, &r.path) && when(r))
            .count()
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The `Range` starts asked for on `path`, in order (`None`: no range).
    pub fn ranges(&self, path: &str) -> Vec<Option<u64>> {
        let requests = self.state.requests.lock().unwrap();
        requests
            .iter()
            .filter(|r| r.path == path)
            .map(Request::range)
            .collect()
    }

    /// Every request so far, in order, with its query string and credentials.
    /// Every request so far as (method, target with its query, `Authorization`).
    pub fn seen(&self) -> Vec<Seen> {
        let requests = self.state.requests.lock().unwrap();
        requests
            .iter()
            .map(|r| Seen {
                method: r.method.clone(),
                target: r.target.clone(),
                authorization: r.header("authorization").map(str::to_owned),
            })
            .collect()
    }

    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.host); // wake the accept loop
    }
}

impl State {
    /// Records `request` and picks its answer: the latest conditional route that
    /// accepts it, else the route for its method and path, else for its path;
    /// on the path's n-th hit, that route's n-th answer.
    fn answer(&self, request: Request) -> Option<Route> {
        let route = {
            let rules = self.rules.lock().unwrap();
            rules
                .iter()
                .rev()
                .find(|r| {
                    r.method == request.method
                        && path_matches(&r.path, &request.path)
                        && (r.when)(&request)
                })
                .map(|r| r.route.clone())
        }
        .or_else(|| {
            let routes = self.routes.lock().unwrap();
            routes
                .get(&format!("{} {}", request.method, request.path))
                .or_else(|| routes.get(&request.path))
                .cloned()
        });
        let mut requests = self.requests.lock().unwrap();
        let hit = requests.iter().filter(|r| r.path == request.path).count();
        requests.push(request);
        route.map(|r| match hit {
            0 => r,
            n => r.then.get(n - 1).or(r.then.last()).cloned().unwrap_or(r),
        })
    }
}

fn serve(stream: TcpStream, state: &State) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        if !serve_one(&mut reader, &mut out, state)? || !state.keep_alive.load(Ordering::SeqCst) {
            return Ok(());
        }
    }
}

/// Answers one request; `false` when the connection must close (the client
/// closed it, or the route breaks it on purpose).
fn serve_one(
    reader: &mut BufReader<TcpStream>,
    out: &mut TcpStream,
    state: &State,
) -> std::io::Result<bool> {
    let close = if state.keep_alive.load(Ordering::SeqCst) {
        ""
    } else {
        "Connection: close\r\n"
    };
    let Some(request) = Request::read(reader)? else {
        return Ok(false);
    };
    let (method, range) = (request.method.clone(), request.range());
    let authorized = request.header("authorization").map(str::to_owned);
    let on_v2 = request.path.starts_with("/v2/");
    let route = state.answer(request);
    let bearer = state.bearer.lock().unwrap().clone();
    if let Some((token, challenge)) = bearer {
        if on_v2 && authorized != Some(format!("Bearer {token}")) {
            let body =
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
            write!(
                out,
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {challenge}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{close}\r\n",
                body.len()
            )?;
            if method != "HEAD" {
                out.write_all(body)?;
            }
            return Ok(true);
        }
    }
    let Some(route) = route else {
        let body = br#"{"errors":[{"code":"NAME_UNKNOWN","message":"no such path"}]}"#;
        write!(
            out,
            "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n{close}\r\n",
            body.len()
        )?;
        if method != "HEAD" {
            out.write_all(body)?;
        }
        return Ok(true);
    };
    let full = route.body.len() as u64;
    let (status, start) = match range {
        // As real registries do, a range starting at or past the end is refused.
        Some(start) if route.refuse_ranges || (route.ranges && start >= full) => {
            write!(
                out,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{full}\r\nContent-Length: 0\r\n{close}\r\n"
            )?;
            return Ok(true);
        }
        Some(start) if route.ranges && start < full => (206, start),
        _ => (route.status, 0),
    };
    let mut body = &route.body[start as usize..];
    let mut head = format!("HTTP/1.1 {status} X\r\n{close}");
    if !route.endless {
        head += &format!(
            "Content-Length: {}\r\n",
            route.content_length.unwrap_or(body.len() as u64)
        );
    }
    let scripted_range = route
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-range"));
    if status == 206 && !scripted_range {
        head += &format!("Content-Range: bytes {start}-{}/{full}\r\n", full - 1);
    }
    for (name, value) in &route.headers {
        head += &format!("{name}: {value}\r\n");
    }
    head += "\r\n";
    match route.trickle_headers {
        Some(delay) => {
            for b in head.bytes() {
                out.write_all(&[b])?;
                out.flush()?;
                thread::sleep(delay);
            }
        }
        None => out.write_all(head.as_bytes())?,
    }
    if route.endless {
        loop {
            out.write_all(&route.body)?;
        }
    }
    if let Some(n) = route.stall_after {
        out.write_all(&body[..n.min(body.len())])?;
        out.flush()?;
        thread::sleep(Duration::from_secs(30));
        return Ok(false);
    }
    if method == "HEAD" {
        return Ok(true);
    }
    let cut = route.cut_after.is_some();
    if let Some(n) = route.cut_after {
        body = &body[..n.min(body.len())];
    }
    for chunk in body.chunks(route.chunk.max(1)) {
        out.write_all(chunk)?;
        out.flush()?;
        if !route.delay.is_zero() {
            thread::sleep(route.delay);
        }
    }
    Ok(!cut && route.content_length.is_none() && route.trickle_headers.is_none())
}
