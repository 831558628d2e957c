//! Proxies on 127.0.0.1 that record what passes through them: an HTTP proxy
//! (absolute-form requests such as `GET http://host/path` are forwarded, `CONNECT`
//! is tunnelled) and a SOCKS4/4a/5 server.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

/// Every variable curl or forge-oci reads for proxies, in both cases: tests
/// that start a client in a child process remove them all first.
pub const PROXY_VARS: [&str; 8] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// `cmd` without any proxy variable from the test's own environment.
pub fn without_proxies(cmd: &mut std::process::Command) -> &mut std::process::Command {
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd
}

pub struct RecordingProxy {
    pub url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl RecordingProxy {
    pub fn start() -> RecordingProxy {
        let (addr, seen) = serve_recording(handle);
        RecordingProxy {
            url: format!("http://{addr}"),
            seen,
        }
    }

    /// The request lines seen so far (`GET http://…` or `CONNECT host:port`).
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn handle(client: TcpStream, log: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        headers.push(h);
    }
    log.lock().unwrap().push(line.trim().to_owned());
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let mut client = client;
    if method == "CONNECT" {
        let upstream = TcpStream::connect(target)?;
        client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
        let (mut up_read, mut up_write) = (upstream.try_clone()?, upstream);
        let mut down_write = client.try_clone()?;
        let t = thread::spawn(move || std::io::copy(&mut up_read, &mut down_write));
        std::io::copy(&mut reader, &mut up_write)?;
        let _ = t.join();
        return Ok(());
    }
    let rest = target.strip_prefix("http://").unwrap_or(target);
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut upstream = TcpStream::connect(authority)?;
    write!(
        upstream,
        "{method} {} HTTP/1.1\r\n",
        if path.is_empty() { "/" } else { path }
    )?;
    for h in headers.iter().filter(|h| {
        let name = h.split(':').next().unwrap_or_default().to_ascii_lowercase();
        !name.starts_with("proxy-") && name != "connection"
    }) {
        upstream.write_all(h.as_bytes())?;
    }
    upstream.write_all(b"Connection: close\r\n\r\n")?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response)?;
    client.write_all(&response)
}

/// A SOCKS server on 127.0.0.1 speaking SOCKS4, SOCKS4a and SOCKS5 (no
/// authentication), CONNECT only. It records each target as the client named it
/// (`socks5 name host:port`, `socks5 ip 127.0.0.1:port`, `socks4 ip …`,
/// `socks4a name …`) and connects every target on 127.0.0.1 at the port asked:
/// a host name only the proxy can "resolve" still reaches the test's server.
pub struct SocksProxy {
    /// `127.0.0.1:port`, to put after `socks5h://` and the like.
    pub addr: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl SocksProxy {
    pub fn start() -> SocksProxy {
        let (addr, seen) = serve_recording(socks);
        SocksProxy { addr, seen }
    }

    /// The targets asked for so far.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn socks(mut client: TcpStream, log: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let byte = |s: &mut TcpStream| -> std::io::Result<u8> {
        let mut b = [0];
        s.read_exact(&mut b)?;
        Ok(b[0])
    };
    let until_nul = |s: &mut TcpStream| -> std::io::Result<String> {
        let mut v = Vec::new();
        loop {
            match byte(s)? {
                0 => return Ok(String::from_utf8_lossy(&v).into_owned()),
                b => v.push(b),
            }
        }
    };
    let (target, port, granted) = match byte(&mut client)? {
        4 => {
            let mut req = [0; 7]; // command, port, address
            client.read_exact(&mut req)?;
            let port = u16::from_be_bytes([req[1], req[2]]);
            let ip = std::net::Ipv4Addr::new(req[3], req[4], req[5], req[6]);
            until_nul(&mut client)?; // user id
            // 0.0.0.x (x != 0): SOCKS4a, a host name follows.
            let target = if req[3..6] == [0, 0, 0] && req[6] != 0 {
                format!("socks4a name {}:{port}", until_nul(&mut client)?)
            } else {
                format!("socks4 ip {ip}:{port}")
            };
            (target, port, vec![0, 90, 0, 0, 0, 0, 0, 0])
        }
        5 => {
            let n = byte(&mut client)?;
            let mut methods = vec![0; usize::from(n)];
            client.read_exact(&mut methods)?;
            if !methods.contains(&0) {
                return client.write_all(&[5, 0xff]);
            }
            client.write_all(&[5, 0])?;
            let mut req = [0; 4]; // version, command, reserved, address type
            client.read_exact(&mut req)?;
            let host = match req[3] {
                1 => {
                    let mut a = [0; 4];
                    client.read_exact(&mut a)?;
                    format!("ip {}", std::net::Ipv4Addr::from(a))
                }
                3 => {
                    let mut name = vec![0; usize::from(byte(&mut client)?)];
                    client.read_exact(&mut name)?;
                    format!("name {}", String::from_utf8_lossy(&name))
                }
                _ => return client.write_all(&[5, 8, 0, 1, 0, 0, 0, 0, 0, 0]),
            };
            let mut p = [0; 2];
            client.read_exact(&mut p)?;
            let port = u16::from_be_bytes(p);
            let reply = vec![5, 0, 0, 1, 127, 0, 0, 1, 0, 0];
            (format!("socks5 {host}:{port}"), port, reply)
        }
        _ => return Ok(()),
    };
    log.lock().unwrap().push(target);
    let upstream = TcpStream::connect(("127.0.0.1", port))?;
    client.write_all(&granted)?;
    let (mut up_read, mut up_write) = (upstream.try_clone()?, upstream);
    let mut down_write = client.try_clone()?;
    let t = thread::spawn(move || {
        let _ = std::io::copy(&mut up_read, &mut down_write);
        let _ = down_write.shutdown(std::net::Shutdown::Write);
    });
    std::io::copy(&mut client, &mut up_write)?;
    let _ = t.join();
    Ok(())
}

/// A listener on 127.0.0.1 that only records how each connection began, to tell
/// which way a client went, and answers so the client gives up at once without
/// retrying: `direct` (an origin-form request: 404), `proxy` (an absolute-form
/// request or `CONNECT`: 403), `socks4` or `socks5` (a greeting: a reply of the
/// wrong version), `tls` (a TLS hello: plain text).
pub struct Witness {
    pub port: u16,
    seen: Arc<Mutex<Vec<&'static str>>>,
}

impl Witness {
    pub fn start() -> Witness {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let log = Arc::clone(&log);
                thread::spawn(move || {
                    let _ = witness(client, &log);
                });
            }
        });
        Witness { port, seen }
    }

    /// How each connection so far began.
    pub fn seen(&self) -> Vec<&'static str> {
        self.seen.lock().unwrap().clone()
    }
}

fn witness(mut client: TcpStream, log: &Mutex<Vec<&'static str>>) -> std::io::Result<()> {
    let mut first = [0];
    client.peek(&mut first)?;
    let (kind, answer): (_, &[u8]) = match first[0] {
        4 => ("socks4", &[1, 91, 0, 0, 0, 0, 0, 0]),
        5 => ("socks5", &[0, 0]),
        0x16 => (
            "tls",
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
        ),
        _ => {
            let mut line = String::new();
            BufReader::new(client.try_clone()?).read_line(&mut line)?;
            let target = line.split_whitespace().nth(1).unwrap_or_default();
            if line.starts_with("CONNECT ") || target.contains("://") {
                (
                    "proxy",
                    b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
                )
            } else {
                (
                    "direct",
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                )
            }
        }
    };
    log.lock().unwrap().push(kind);
    client.write_all(answer)?;
    // Read what the client sent until it closes: closing with unread bytes would
    // reset the connection, and the client might lose the answer.
    client.shutdown(std::net::Shutdown::Write)?;
    client.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    std::io::copy(&mut client, &mut std::io::sink()).map(drop)
}

/// Listens on 127.0.0.1, running `serve` on a thread per connection with a shared
/// log of what clients asked for; returns the address and the log.
fn serve_recording(
    serve: fn(TcpStream, &Mutex<Vec<String>>) -> std::io::Result<()>,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                let _ = serve(client, &log);
            });
        }
    });
    (addr, seen)
}
