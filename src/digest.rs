//! Content digests and verification while streaming.
//!
//! Only `sha256` is supported. go-digest and the OCI image spec also register
//! `sha512` (and `blake3`), but no public registry serves them for the artifacts
//! forge-oci pulls, and accepting a digest we cannot verify would defeat the point
//! of checking it. Other algorithms are rejected with an error that names them.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

const SHA256_HEX_LEN: usize = 64;

/// A validated `sha256` content digest such as `sha256:e3b0c442…`.
///
/// The hex part is always 64 lowercase hexadecimal characters, so a `Digest` can be
/// used in a file name without further checks.
///
/// ```
/// let d: forge_oci::Digest =
///     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse()?;
/// assert_eq!(d, forge_oci::Digest::of(b""));
/// assert_eq!(d.algorithm(), "sha256");
/// # Ok::<(), forge_oci::ParseDigestError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The sha256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest {
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }

    /// The algorithm, always `"sha256"`.
    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }

    /// The 64 lowercase hexadecimal characters after `sha256:`.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    fn from_hasher(hasher: Sha256) -> Digest {
        Digest {
            hex: hex::encode(hasher.finalize()),
        }
    }
}

/// A sha256 that bytes can be `io::copy`'d into (files re-hashed from disk).
#[derive(Default, Clone)]
pub(crate) struct Hasher(Sha256);

impl Hasher {
    pub(crate) fn finish(self) -> Digest {
        Digest::from_hasher(self.0)
    }
}

impl io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = ParseDigestError;

    /// Parses `algorithm:encoded` following go-digest's order of checks, so the
    /// error says what a person needs to fix first.
    fn from_str(s: &str) -> Result<Digest, ParseDigestError> {
        let err = |kind| ParseDigestError {
            input: s.to_owned(),
            kind,
        };
        let Some((algorithm, encoded)) = s.split_once(':') else {
            return Err(err(DigestErrorKind::MissingSeparator));
        };
        if algorithm.is_empty() || encoded.is_empty() {
            return Err(err(DigestErrorKind::InvalidFormat));
        }
        if algorithm != "sha256" {
            if !is_algorithm_grammar(algorithm) || !is_encoded_grammar(encoded) {
                return Err(err(DigestErrorKind::InvalidFormat));
            }
            return Err(err(DigestErrorKind::UnsupportedAlgorithm(
                algorithm.to_owned(),
            )));
        }
        if encoded.len() != SHA256_HEX_LEN {
            return Err(err(DigestErrorKind::InvalidLength(encoded.len())));
        }
        if !encoded
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(err(DigestErrorKind::InvalidHex));
        }
        Ok(Digest {
            hex: encoded.to_owned(),
        })
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `[a-z0-9]+([+._-][a-z0-9]+)*`, the image-spec algorithm grammar.
fn is_algorithm_grammar(s: &str) -> bool {
    s.split(['+', '.', '_', '-']).all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// `[a-zA-Z0-9=_-]+`, the image-spec encoded grammar.
fn is_encoded_grammar(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
}

/// Why a string is not a usable digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseDigestError {
    input: String,
    kind: DigestErrorKind,
}

impl ParseDigestError {
    /// The string that failed to parse.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What was wrong with it.
    pub fn kind(&self) -> &DigestErrorKind {
        &self.kind
    }
}

impl fmt::Display for ParseDigestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The input may come from a layout's index.json or a server: shown
        // escaped and bounded, never raw.
        let shown = crate::untrusted::printable(&self.input, 200);
        write!(f, "invalid digest `{shown}`: {}", self.kind)
    }
}

impl std::error::Error for ParseDigestError {}

/// The ways a digest string can be wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DigestErrorKind {
    /// No `:` between algorithm and hex.
    MissingSeparator,
    /// Empty algorithm or hex, or characters outside the digest grammar.
    InvalidFormat,
    /// A well-formed digest with an algorithm other than `sha256`.
    UnsupportedAlgorithm(String),
    /// A sha256 hex part that is not 64 characters long; holds the length seen.
    InvalidLength(usize),
    /// A sha256 hex part with characters other than `0-9a-f`.
    InvalidHex,
}

impl fmt::Display for DigestErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DigestErrorKind::MissingSeparator => {
                f.write_str("expected `algorithm:hex`, found no `:`")
            }
            DigestErrorKind::InvalidFormat => f.write_str("not of the form `algorithm:hex`"),
            DigestErrorKind::UnsupportedAlgorithm(a) => {
                write!(f, "unsupported algorithm `{a}` (only sha256 is supported)")
            }
            DigestErrorKind::InvalidLength(n) => {
                write!(f, "sha256 needs 64 hex characters, found {n}")
            }
            DigestErrorKind::InvalidHex => {
                f.write_str("sha256 hex must be lowercase `0-9a-f` only")
            }
        }
    }
}

/// A size or digest check that failed while streaming, carried inside the
/// [`io::Error`] that [`VerifyingReader`] returns (`get_ref()` + `downcast_ref`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// The stream held more bytes than expected; reading stopped at the first extra byte.
    TooLong {
        /// The size promised.
        expected: u64,
    },
    /// The stream ended early.
    TooShort {
        /// The size promised.
        expected: u64,
        /// The bytes received.
        actual: u64,
    },
    /// All bytes arrived but they hash to something else.
    DigestMismatch {
        /// The digest promised.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::TooLong { expected } => {
                write!(f, "content is longer than the expected {expected} bytes")
            }
            VerifyError::TooShort { expected, actual } => {
                write!(f, "content ended after {actual} of {expected} bytes")
            }
            VerifyError::DigestMismatch { expected, actual } => {
                write!(f, "content hashes to {actual}, expected {expected}")
            }
        }
    }
}

impl std::error::Error for VerifyError {}

/// Hashes and counts bytes as they are read, and fails as soon as the stream
/// proves wrong: on the first byte past `expected_size`, or at end of stream when
/// the size or the digest differs. Memory use is constant whatever the size.
///
/// ```
/// use std::io::Read;
/// use forge_oci::{Digest, VerifyingReader};
///
/// let data = b"\0asm\x01\0\0\0";
/// let mut r = VerifyingReader::new(&data[..], Digest::of(data), data.len() as u64);
/// let mut out = Vec::new();
/// r.read_to_end(&mut out)?;
/// assert_eq!(out, data);
///
/// let mut bad = VerifyingReader::new(&data[..], Digest::of(b"other"), data.len() as u64);
/// assert!(bad.read_to_end(&mut Vec::new()).is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Sha256,
    expected_digest: Digest,
    expected_size: u64,
    count: u64,
    verified: bool,
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`, expecting exactly `expected_size` bytes that hash to `expected_digest`.
    pub fn new(inner: R, expected_digest: Digest, expected_size: u64) -> Self {
        VerifyingReader {
            inner,
            hasher: Sha256::new(),
            expected_digest,
            expected_size,
            count: 0,
            verified: false,
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.count
    }

    fn fail(e: VerifyError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    fn check_end(&mut self) -> io::Result<()> {
        if self.verified {
            return Ok(());
        }
        if self.count != self.expected_size {
            return Err(Self::fail(VerifyError::TooShort {
                expected: self.expected_size,
                actual: self.count,
            }));
        }
        let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
        if actual != self.expected_digest {
            return Err(Self::fail(VerifyError::DigestMismatch {
                expected: self.expected_digest.clone(),
                actual,
            }));
        }
        self.verified = true;
        Ok(())
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Ask for one byte more than remains, so an over-long stream is caught
        // on its first extra byte instead of after the whole of it.
        let remaining = self.expected_size.saturating_sub(self.count);
        let want = buf.len().min(
            usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .saturating_add(1),
        );
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            self.check_end()?;
            return Ok(0);
        }
        if n as u64 > remaining {
            return Err(Self::fail(VerifyError::TooLong {
                expected: self.expected_size,
            }));
        }
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn empty_input_digest() {
        assert_eq!(Digest::of(b"").to_string(), EMPTY);
        assert_eq!(EMPTY.parse::<Digest>().unwrap(), Digest::of(b""));
    }

    #[test]
    fn non_sha256_names_the_algorithm() {
        let e = format!("sha512:{}", "a".repeat(128))
            .parse::<Digest>()
            .unwrap_err();
        assert_eq!(
            e.kind(),
            &DigestErrorKind::UnsupportedAlgorithm("sha512".into())
        );
        assert!(e.to_string().contains("sha512"), "{e}");
        let e = "no-colon".parse::<Digest>().unwrap_err();
        assert_eq!(e.kind(), &DigestErrorKind::MissingSeparator);
    }

    #[test]
    fn uppercase_and_short_hex_rejected() {
        let upper = EMPTY.to_uppercase().replacen("SHA256", "sha256", 1);
        assert_eq!(
            upper.parse::<Digest>().unwrap_err().kind(),
            &DigestErrorKind::InvalidHex
        );
        assert_eq!(
            "sha256:abc".parse::<Digest>().unwrap_err().kind(),
            &DigestErrorKind::InvalidLength(3)
        );
    }

    fn read_all(data: &[u8], digest: Digest, size: u64) -> Result<Vec<u8>, VerifyError> {
        let mut out = Vec::new();
        VerifyingReader::new(data, digest, size)
            .read_to_end(&mut out)
            .map(|_| out)
            .map_err(|e| {
                e.get_ref()
                    .and_then(|e| e.downcast_ref::<VerifyError>())
                    .cloned()
                    .unwrap()
            })
    }

    #[test]
    fn verifying_reader_checks_size_and_digest() {
        let data = b"hello world";
        assert_eq!(read_all(data, Digest::of(data), 11).unwrap(), data);
        assert_eq!(
            read_all(data, Digest::of(data), 5),
            Err(VerifyError::TooLong { expected: 5 })
        );
        assert_eq!(
            read_all(data, Digest::of(data), 20),
            Err(VerifyError::TooShort {
                expected: 20,
                actual: 11
            })
        );
        assert!(matches!(
            read_all(data, Digest::of(b"x"), 11),
            Err(VerifyError::DigestMismatch { .. })
        ));
    }

    #[test]
    fn too_long_is_caught_at_first_extra_byte() {
        let data = vec![7u8; 1 << 20];
        let mut r = VerifyingReader::new(io::Cursor::new(&data), Digest::of(&data[..10]), 10);
        let mut buf = vec![0u8; 1 << 16];
        assert!(r.read(&mut buf).is_err());
        assert_eq!(
            r.inner.position(),
            11,
            "read one byte past the promised size, no more"
        );
    }
}
