//! A manifest document: its bytes, their digest, and what they parse to; and the
//! checks a document fetched from a registry passes before anything trusts it.

use super::{Manifest, ParseManifestError};
use crate::digest::{Digest, VerifyError};

/// A manifest document checked against its digest, with its bytes.
pub(crate) struct Document {
    pub(crate) digest: Digest,
    pub(crate) bytes: Vec<u8>,
    pub(crate) manifest: Manifest,
}

/// Why a fetched document was not accepted.
#[derive(Debug)]
pub(crate) enum Rejected {
    /// The bytes are not what was asked for or announced.
    Verify {
        /// The digest the bytes had to have (the pin, the descriptor's, or the
        /// registry's own claim), or their own when nothing was claimed.
        expected: Digest,
        reason: VerifyError,
    },
    /// The bytes verify but are not a manifest we can use.
    Invalid {
        digest: Digest,
        reason: ParseManifestError,
    },
}

impl Document {
    /// A document read back from a content-addressed store, whose bytes already
    /// hashed to `digest`. `None` when they no longer parse.
    pub(crate) fn stored(digest: Digest, bytes: Vec<u8>) -> Option<Document> {
        let manifest = Manifest::from_slice(&bytes, None).ok()?;
        Some(Document {
            digest,
            bytes,
            manifest,
        })
    }

    /// A document as a registry served it, checked: against `expected` (a pin or a
    /// descriptor's digest) when given, else against the registry's own claim
    /// (`Docker-Content-Digest`, when it is a sha256 digest); against
    /// `expected_size` when a descriptor gave one; then parsed with the served
    /// `content_type`.
    pub(crate) fn fetched(
        bytes: Vec<u8>,
        content_type: Option<&str>,
        expected: Option<&Digest>,
        claimed: Option<&str>,
        expected_size: Option<u64>,
    ) -> Result<Document, Rejected> {
        let actual = Digest::of(&bytes);
        let want = match expected {
            Some(d) => Some(d.clone()),
            None => claimed.and_then(|h| h.trim().parse().ok()),
        };
        let mismatch = |reason| Rejected::Verify {
            expected: want.clone().unwrap_or_else(|| actual.clone()),
            reason,
        };
        if let Some(want) = &want {
            if *want != actual {
                return Err(mismatch(VerifyError::DigestMismatch {
                    expected: want.clone(),
                    actual: actual.clone(),
                }));
            }
        }
        let len = bytes.len() as u64;
        match expected_size {
            Some(size) if len < size => {
                return Err(mismatch(VerifyError::TooShort {
                    expected: size,
                    actual: len,
                }));
            }
            Some(size) if len > size => {
                return Err(mismatch(VerifyError::TooLong { expected: size }));
            }
            _ => {}
        }
        match Manifest::from_slice(&bytes, content_type) {
            Ok(manifest) => Ok(Document {
                digest: actual,
                bytes,
                manifest,
            }),
            Err(reason) => Err(Rejected::Invalid {
                digest: actual,
                reason,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_INDEX: &[u8] =
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;

    #[test]
    fn a_fetched_document_is_checked_against_the_pin_the_claim_and_the_size() {
        let d = Digest::of(EMPTY_INDEX);
        let ok = |expected, claimed, size| {
            Document::fetched(EMPTY_INDEX.to_vec(), None, expected, claimed, size)
        };
        assert_eq!(ok(Some(&d), None, None).unwrap().digest, d);
        let claim = d.to_string();
        assert_eq!(ok(None, Some(&claim), None).unwrap().digest, d);
        // A claim in another algorithm, or none, is not a check.
        assert!(ok(None, Some("sha512:abc"), None).is_ok());
        let other = Digest::of(b"other");
        let other_claim = other.to_string();
        for result in [
            ok(Some(&other), Some(&claim), None),
            ok(None, Some(&other_claim), None),
        ] {
            assert!(matches!(
                result,
                Err(Rejected::Verify { expected, reason: VerifyError::DigestMismatch { .. } })
                    if expected == other
            ));
        }
        let n = EMPTY_INDEX.len() as u64;
        assert!(matches!(
            ok(Some(&d), None, Some(n + 1)),
            Err(Rejected::Verify {
                reason: VerifyError::TooShort { .. },
                ..
            })
        ));
        assert!(matches!(
            ok(Some(&d), None, Some(n - 1)),
            Err(Rejected::Verify {
                reason: VerifyError::TooLong { .. },
                ..
            })
        ));
        let junk = Document::fetched(b"{}".to_vec(), None, None, None, None);
        assert!(matches!(junk, Err(Rejected::Invalid { .. })));
    }
}
