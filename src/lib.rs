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
pub use registry::UrlRefusal;

use std::path::PathBuf;

#[cfg(feature = "__fuzz")]
#[doc(hidden)]
pub mod __fuzz {
    //! What the fuzz targets in `fuzz/` call. Each function panics only on a bug:
    //! a property of the parser that must hold for any input.

    /// Parsing never panics, and what parses prints as something that parses to itself.
    pub fn reference(s: &str) {
        if let Ok(r) = s.parse::<crate::Reference>() {
            let again: crate::Reference = r
                .to_string()
                .parse()
                .unwrap_or_else(|e| panic!("{r} does not reparse: {e}"));
            assert_eq!(again, r);
        }
    }

    /// Parsing never panics, and every challenge has a lowercase scheme.
    pub fn www_authenticate(s: &str) {
        for c in crate::auth::parse_challenges(s).unwrap_or_default() {
            assert_eq!(c.scheme, c.scheme.to_ascii_lowercase());
        }
    }

    /// Parsing and selection never panic, whatever the document.
    pub fn manifest(data: &[u8]) {
        use crate::manifest::{DEFAULT_LAYER_MEDIA_TYPES, Manifest, select_layer, select_platform};
        let accepted: Vec<String> = DEFAULT_LAYER_MEDIA_TYPES
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        match Manifest::from_slice(data, None) {
            Ok(Manifest::Image(m)) => {
                if let Ok(layer) = select_layer(&m, &accepted) {
                    let _ = layer.sha256();
                }
            }
            Ok(Manifest::Index(i)) => {
                let _ = select_platform(&i, &crate::Platform::wasm_defaults());
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }

    /// Reading a credential file (docker config or podman auth.json) never panics.
    /// Helpers are never run from here.
    pub fn credentials(data: &[u8]) {
        crate::auth::parse_credential_file(data, "registry.example:5000");
        crate::auth::parse_credential_file(data, "docker.io");
    }
}

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
