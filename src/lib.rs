//! Pull WebAssembly plugins, or any single-blob OCI artifact, from OCI registries
//! synchronously, into an on-disk cache that many processes can share.
//!
//! ```
//! use forge_oci::{Client, Error, Network, Reference};
//!
//! // References follow the distribution grammar, Docker Hub names included.
//! let r: Reference = "ghcr.io/owner/plugin:1.0".parse()?;
//! assert_eq!((r.registry(), r.repository(), r.tag()), ("ghcr.io", "owner/plugin", Some("1.0")));
//!
//! // A client that may not touch the network answers from the cache or says why not.
//! let cache = std::env::temp_dir().join("forge-oci-doc-example");
//! let client = Client::builder().cache_dir(&cache).network(Network::Offline).build()?;
//! match client.pull_reference(&r) {
//!     Ok(artifact) => println!("cached at {}", artifact.path().display()),
//!     Err(Error::NotCached { reference, .. }) => assert_eq!(reference, "ghcr.io/owner/plugin:1.0"),
//!     Err(e) => return Err(e),
//! }
//! # Ok::<(), Error>(())
//! ```
//!
//! The one-liner, for a build script or a small tool:
//!
//! ```no_run
//! let wasm: Vec<u8> = forge_oci::fetch_to_bytes("ghcr.io/owner/plugin:1.0")?;
//! # Ok::<(), forge_oci::Error>(())
//! ```
//!
//! # What a pull does
//! 1. Parses the reference (`ubuntu` → `docker.io/library/ubuntu:latest`).
//! 2. Answers from the cache when it can: a digest-pinned reference, or a tag
//!    pulled before, whose manifest and layer are on disk, needs no network.
//! 3. Otherwise GETs the manifest (anonymous Bearer tokens are fetched and reused),
//!    resolves an index to a wasm platform (`wasip2`, `wasip1`, `wasi` on
//!    `wasm`/`wasm32`), and picks the layer by media type.
//! 4. Downloads the layer once across all processes (a per-blob file lock),
//!    hashing and counting while streaming, and renames it into place only when
//!    digest and size match. Memory stays bounded whatever the size.
//!
//! # Cache
//! `$FORGE_CACHE_DIR/openapi-forge/plugins`, else `<user cache dir>/openapi-forge/plugins`,
//! or [`ClientBuilder::cache_dir`]. Files under `blobs/sha256/` always hash to their
//! name; a crash leaves at most a partial download, which the next pull resumes; a
//! read-only cache still serves hits. Cached tags follow the client's [`TagPolicy`].
//! [`Client::cache`] lists, measures, prunes, verifies and clears the cache.
//!
//! # Configuration from the environment
//! | variable | effect |
//! |---|---|
//! | `FORGE_CACHE_DIR` | cache root is `$FORGE_CACHE_DIR/openapi-forge/plugins` |
//! | `FORGE_OCI_INSECURE_HOSTS` | comma-separated `host[:port]` reached over plain HTTP |
//! | `FORGE_OFFLINE`, `CARGO_NET_OFFLINE` | any value but `0`/`false`: no network |
//!
//! # Errors
//! Every failure is an [`Error`] whose message names the reference, registry,
//! digest or path involved; network and file-system causes are in `source()`.
//! Credentials and tokens never appear in errors or `Debug` output.

mod auth;
pub mod build;
mod cache;
mod client;
mod config;
pub mod digest;
mod error;
mod event;
pub mod manifest;
mod reference;
mod registry;

pub use cache::{Cache, CacheEntry, CorruptBlob, PruneOptions, PruneReport, VerifyReport};
pub use client::{Artifact, Client, Inspection, Resolution};
pub use config::{ClientBuilder, Network, TagPolicy};
pub use digest::{Digest, ParseDigestError, VerifyingReader};
pub use error::{Error, Result};
pub use event::Event;
pub use manifest::Platform;
pub use reference::{ParseReferenceError, Reference, ReferenceErrorKind};

use std::path::PathBuf;

/// Pulls `reference` with a default [`Client`] and returns the blob's bytes.
///
/// # Errors
/// As [`Client::pull`], plus [`Error::Io`] when the cached file cannot be read.
pub fn fetch_to_bytes(reference: &str) -> Result<Vec<u8>> {
    Client::new()?.pull(reference)?.read()
}

/// Pulls `reference` with a default [`Client`] and returns the cached blob's path.
///
/// # Errors
/// As [`Client::pull`].
pub fn fetch_to_path(reference: &str) -> Result<PathBuf> {
    Ok(Client::new()?.pull(reference)?.path().to_path_buf())
}
