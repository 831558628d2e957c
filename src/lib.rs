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
//! The rest of this page is the project's README.
#![doc = include_str!("../README.md")]

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

pub use auth::Credentials;
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
