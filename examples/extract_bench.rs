//! What extracting a wasm module from a container image layer costs: a cold pull
//! of an Istio "compat" image (download + gunzip + untar + hash + fsync), a warm
//! pull (a hit on the extracted module: no extraction, no network), and an
//! extraction alone (the module removed, re-extracted offline from the cached layer).
//!
//! ```sh
//! cargo run --release --example extract_bench -- 64    # module size in MiB (default 16)
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use forge_oci::{Client, Digest, Network};

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .map_or(16, |a| a.parse().expect("size in MiB"));
    // Incompressible-looking bytes, as a compiled module mostly is.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let module: Vec<u8> = (0..mib << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(module.len() as u64);
    h.set_mode(0o644);
    tar.append_data(&mut h, "plugin.wasm", &module[..]).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar.into_inner().unwrap()).unwrap();
    let layer = gz.finish().unwrap();
    let config = br#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}]}}"#,
        Digest::of(&config),
        config.len(),
        Digest::of(&layer),
        layer.len()
    )
    .into_bytes();
    let mut routes: HashMap<String, Vec<u8>> = HashMap::new();
    routes.insert("/v2/bench/istio/manifests/1".into(), manifest);
    routes.insert(
        format!("/v2/bench/istio/blobs/{}", Digest::of(&config)),
        config,
    );
    routes.insert(
        format!("/v2/bench/istio/blobs/{}", Digest::of(&layer)),
        layer,
    );
    let routes = Arc::new(routes);

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or_default();
            match routes.get(path) {
                Some(body) => {
                    let kind = if path.contains("/manifests/") {
                        "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"
                    } else {
                        ""
                    };
                    let head = format!(
                        "HTTP/1.1 200 OK\r\n{kind}Content-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(body);
                }
                None => {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
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
    let reference = format!("{host}/bench/istio:1");

    let t = Instant::now();
    let cold = client.pull(&reference).unwrap();
    let cold_s = t.elapsed().as_secs_f64();
    assert_eq!(cold.read().unwrap(), module);

    let t = Instant::now();
    let warm = client.pull(&reference).unwrap();
    let warm_us = t.elapsed().as_secs_f64() * 1e6;
    assert!(warm.from_cache());

    std::fs::remove_dir_all(cache.path().join("derived")).unwrap();
    let offline = Client::builder()
        .cache_dir(cache.path())
        .network(Network::Offline)
        .build()
        .unwrap();
    let t = Instant::now();
    let again = offline.pull(&reference).unwrap();
    let extract_s = t.elapsed().as_secs_f64();
    assert_eq!(again.size(), module.len() as u64);

    println!("module size:        {mib} MiB (layer: tar+gzip)");
    println!("cold pull:          {cold_s:.2} s (download, gunzip, untar, sha256, fsync)");
    println!("warm pull:          {warm_us:.0} µs (hit on the extracted module)");
    println!(
        "extraction alone:   {extract_s:.2} s ({:.0} MiB/s, offline, from the cached layer)",
        mib as f64 / extract_s
    );
}
