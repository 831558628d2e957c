//! Cold and warm pull of a large blob from a loopback server, with peak memory.
//!
//! ```sh
//! cargo run --release --example pull_bench -- 256    # blob size in MiB (default 64)
//! ```
//!
//! The server is a few lines of std on 127.0.0.1 that generates the blob on the
//! fly, so the process's peak RSS (`VmHWM`, Linux) is the client's: it should stay
//! flat whatever the size, because the blob is streamed to disk while hashed.
//!
//! It also times what a hit would cost if every hit re-hashed its blob (it does
//! not: the store is trusted and `Cache::verify` finds corruption on demand).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Instant;

use forge_oci::{Client, Digest};
use sha2::Digest as _;

const CHUNK: usize = 64 << 10;

/// Deterministic, incompressible-looking bytes: chunk `i` of the blob.
fn chunk(i: u64) -> Vec<u8> {
    let mut state = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..CHUNK)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let mib: u64 = std::env::args()
        .nth(1)
        .map_or(64, |a| a.parse().expect("size in MiB"));
    let chunks = mib * (1 << 20) / CHUNK as u64;
    let size = chunks * CHUNK as u64;
    let mut hasher = sha2::Sha256::new();
    for i in 0..chunks {
        hasher.update(chunk(i));
    }
    let layer = format!("sha256:{}", hex::encode(hasher.finalize()));
    let config = format!("{}", Digest::of(b"{}"));
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/wasm","digest":"{layer}","size":{size}}}]}}"#
    );

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut request_line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            reader.read_line(&mut request_line).unwrap();
            // Skip the headers.
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            if request_line.contains("/manifests/") {
                write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{manifest}",
                    manifest.len()
                )
                .unwrap();
            } else {
                write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
                for i in 0..chunks {
                    if stream.write_all(&chunk(i)).is_err() {
                        break;
                    }
                }
            }
        }
    });

    let cache = tempfile::tempdir().unwrap();
    let client = Client::builder()
        .cache_dir(cache.path())
        .insecure_host(&host)
        .build()
        .unwrap();
    let reference = format!("{host}/bench/blob:1");
    let rss_before = peak_rss_mib();

    let t = Instant::now();
    let cold = client.pull(&reference).unwrap();
    let cold_s = t.elapsed().as_secs_f64();
    assert_eq!(cold.size(), size);

    let t = Instant::now();
    let warm = client.pull(&reference).unwrap();
    let warm_us = t.elapsed().as_secs_f64() * 1e6;
    assert!(warm.from_cache());

    // What verify-on-read would add to every hit: read and hash the cached file.
    let t = Instant::now();
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut std::fs::File::open(warm.path()).unwrap(), &mut hasher).unwrap();
    assert_eq!(format!("sha256:{}", hex::encode(hasher.finalize())), layer);
    let rehash_ms = t.elapsed().as_secs_f64() * 1e3;

    println!("blob size:          {mib} MiB");
    println!(
        "cold pull:          {cold_s:.2} s ({:.0} MiB/s, download + sha256 + fsync)",
        mib as f64 / cold_s
    );
    println!("warm pull:          {warm_us:.0} µs (cache hit, no network)");
    println!("re-hash on a hit:   {rehash_ms:.1} ms (what verify-on-read would add to every hit)");
    match (rss_before, peak_rss_mib()) {
        (Some(before), Some(after)) => {
            println!("peak RSS:           {after:.1} MiB (was {before:.1} MiB before the pulls)");
        }
        _ => println!("peak RSS:           unavailable on this platform"),
    }
}
