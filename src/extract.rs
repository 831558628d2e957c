//! The wasm module inside a container image's filesystem layer, found the way
//! the runtimes that consume these images find it:
//! - Istio "compat" WasmPlugin images: `plugin.wasm`, else the only `*.wasm` file;
//! - Docker `wasi/wasm` images (image config `os` `wasi*` or architecture `wasm*`):
//!   the file the config's `Entrypoint` (else `Cmd`) names, else the only `*.wasm` file.
//!
//! The layer is read as a stream (gzip through flate2's pure-Rust backend, tar
//! through the `tar` crate without its file-system features): an entry's path is
//! only ever compared, never opened, and the chosen entry's bytes are streamed
//! into a file the caller makes (the cache's own temporary file). Entry count and
//! decompressed size are bounded, so a gzip bomb is an error, not a full disk.
//! Pure apart from the reader and the caller's files.

use std::cell::Cell;
use std::fmt;
use std::io::{self, Read};
use std::rc::Rc;

use flate2::read::MultiGzDecoder;

use crate::manifest::essence;

/// The most tar entries read from one layer.
pub(crate) const MAX_TAR_ENTRIES: u64 = 10_000;

/// The most bytes of headers before one entry: its PAX records and GNU long
/// name and link, which tar holds in memory (real ones are a few hundred bytes).
pub(crate) const MAX_HEADER_BYTES: u64 = 1 << 20;

/// Which file of the layer is the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Istio: `plugin.wasm` (by file name, in any directory), else the only `*.wasm`.
    Istio,
    /// Docker `wasi/wasm`: the entrypoint's file, else the only `*.wasm`.
    Entrypoint(Option<String>),
}

impl Rule {
    /// The rule for an image with this config (JSON): Docker's for a `wasi`/`wasm`
    /// platform, Istio's for anything else.
    ///
    /// # Errors
    /// [`ExtractError::BadConfig`] when the config is not an image config.
    pub(crate) fn for_config(config: &[u8]) -> Result<Rule, ExtractError> {
        #[derive(serde::Deserialize)]
        struct ImageConfig {
            #[serde(default)]
            os: String,
            #[serde(default)]
            architecture: String,
            #[serde(default)]
            config: Option<RunConfig>,
        }
        #[derive(serde::Deserialize)]
        struct RunConfig {
            #[serde(rename = "Entrypoint", default)]
            entrypoint: Option<Vec<String>>,
            #[serde(rename = "Cmd", default)]
            cmd: Option<Vec<String>>,
            #[serde(rename = "WorkingDir", default)]
            working_dir: Option<String>,
        }
        let c: ImageConfig =
            serde_json::from_slice(config).map_err(|e| ExtractError::BadConfig {
                reason: e.to_string(),
            })?;
        let wasi = c.os.starts_with("wasi") || c.architecture.starts_with("wasm");
        if !wasi {
            return Ok(Rule::Istio);
        }
        let Some(run) = c.config else {
            return Ok(Rule::Entrypoint(None));
        };
        let dir = run.working_dir.unwrap_or_default();
        // A relative entrypoint is found from the working directory, as a runtime
        // starting the image would find it.
        // A container runs Entrypoint + Cmd: the program is the first word of
        // that, Cmd's first when there is no Entrypoint.
        let first = |words: Option<Vec<String>>| words.and_then(|w| w.into_iter().next());
        let entrypoint = first(run.entrypoint).or_else(|| first(run.cmd)).map(|e| {
            // runwasi reads `path#function` (`/app.wasm#run`): the file is the path.
            let e = e
                .rsplit_once('#')
                .map_or(e.as_str(), |(path, _)| path)
                .to_owned();
            if e.starts_with('/') || dir.is_empty() {
                e
            } else {
                format!("{}/{e}", dir.trim_end_matches('/'))
            }
        });
        Ok(Rule::Entrypoint(entrypoint))
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Istio => f.write_str("Istio's rule: plugin.wasm, else the only *.wasm file"),
            Rule::Entrypoint(Some(e)) => write!(
                f,
                "the Docker wasi/wasm rule: the entrypoint {}",
                crate::untrusted::printable(e, 200)
            ),
            Rule::Entrypoint(None) => {
                f.write_str("the Docker wasi/wasm rule: no entrypoint, so the only *.wasm file")
            }
        }
    }
}

/// Why no module could be extracted from a layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum ExtractError {
    /// The layer is compressed in a way forge-oci does not read (zstd).
    UnsupportedCompression {
        /// The layer's media type.
        media_type: String,
    },
    /// The layer holds more tar entries than allowed.
    TooManyEntries {
        /// The limit.
        limit: u64,
    },
    /// The layer decompresses to more bytes than allowed (a gzip bomb, or an
    /// image far larger than a plugin).
    TooLarge {
        /// The limit in bytes ([`ClientBuilder::max_extracted_size`](crate::ClientBuilder::max_extracted_size)).
        limit: u64,
    },
    /// The headers before one entry (PAX records, a GNU long name) are larger
    /// than allowed: tar would hold them all in memory.
    HeadersTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// An entry's path climbs out of the layer (`../`).
    UnsafePath {
        /// The path as the tar gives it (lossily, escaped when shown).
        path: String,
    },
    /// The file that would be the module is a symbolic or hard link.
    Link {
        /// Its path in the layer.
        path: String,
    },
    /// The module's path in the layer is a directory or a device, not a file.
    NotAFile {
        /// Its path in the layer.
        path: String,
    },
    /// A candidate module is stored as a PAX sparse file, whose hole map `tar`
    /// does not expand.
    SparseFile {
        /// Its path in the layer.
        path: String,
    },
    /// No file in the layer is a module by the rule.
    NoModule {
        /// The rule applied, said in words.
        rule: String,
    },
    /// Several files could be the module and the rule does not choose.
    SeveralModules {
        /// Their paths in the layer.
        paths: Vec<String>,
    },
    /// The image config's entrypoint names a file the layer does not hold.
    EntrypointMissing {
        /// The entrypoint.
        entrypoint: String,
        /// The `*.wasm` files the layer does hold.
        found: Vec<String>,
    },
    /// The image config is not JSON of an image config.
    BadConfig {
        /// The parser's message.
        reason: String,
    },
    /// The layer is not a readable (gzip-compressed) tar.
    Corrupt(io::Error),
}

impl fmt::Display for ExtractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |s: &str| crate::untrusted::printable(s, 300);
        let list = |v: &[String]| v.iter().map(|p| shown(p)).collect::<Vec<_>>().join(", ");
        match self {
            ExtractError::UnsupportedCompression { media_type } => write!(
                f,
                "layers of media type {} cannot be read (gzip and uncompressed tar can)",
                shown(media_type)
            ),
            ExtractError::TooManyEntries { limit } => {
                write!(f, "the layer holds more than {limit} tar entries")
            }
            ExtractError::TooLarge { limit } => write!(
                f,
                "the layer decompresses to more than {limit} bytes (ClientBuilder::max_extracted_size)"
            ),
            ExtractError::HeadersTooLarge { limit } => write!(
                f,
                "the headers of one tar entry (PAX records, a long name) exceed {limit} bytes"
            ),
            ExtractError::UnsafePath { path } => {
                write!(f, "entry {} climbs out of the layer", shown(path))
            }
            ExtractError::Link { path } => write!(
                f,
                "{} is a link, not a file: a module is never read through a link",
                shown(path)
            ),
            ExtractError::NotAFile { path } => write!(
                f,
                "{} is the module's name but not a file (a directory or a device)",
                shown(path)
            ),
            ExtractError::SparseFile { path } => write!(
                f,
                "{} is stored as a PAX sparse file, which cannot be read as a module",
                shown(path)
            ),
            ExtractError::NoModule { rule } => {
                write!(f, "no file in the layer is the module by {rule}")
            }
            ExtractError::SeveralModules { paths } => write!(
                f,
                "{} files could be the module ({}); the image should hold one",
                paths.len(),
                list(paths)
            ),
            ExtractError::EntrypointMissing { entrypoint, found } => write!(
                f,
                "the image's entrypoint {} is not in the layer (it holds {})",
                shown(entrypoint),
                if found.is_empty() {
                    "no *.wasm file".to_owned()
                } else {
                    list(found)
                }
            ),
            ExtractError::BadConfig { reason } => {
                write!(f, "the image config cannot be read: {}", shown(reason))
            }
            // tar's messages quote entry names, which the registry chose: escaped.
            ExtractError::Corrupt(e) => {
                write!(
                    f,
                    "the layer is not a readable tar: {}",
                    shown(&e.to_string())
                )
            }
        }
    }
}

impl std::error::Error for ExtractError {}

/// Where an extracted file's bytes go: the cache's own temporary file.
pub(crate) trait Stage {
    /// Why writing failed.
    type Error;

    /// Appends bytes.
    ///
    /// # Errors
    /// When the file cannot be written.
    fn write_all(&mut self, buf: &[u8]) -> Result<(), Self::Error>;
}

/// Why [`extract`] stopped.
#[derive(Debug)]
pub(crate) enum Failed<E> {
    /// The layer holds no usable module.
    Layer(ExtractError),
    /// Writing the cache's file failed.
    Cache(E),
}

impl<E> From<ExtractError> for Failed<E> {
    fn from(e: ExtractError) -> Self {
        Failed::Layer(e)
    }
}

/// How the layer's tar is compressed, from its media type.
///
/// # Errors
/// [`ExtractError::UnsupportedCompression`] for zstd and anything unknown.
fn decompressed<'a>(
    media_type: &str,
    layer: impl Read + 'a,
) -> Result<Box<dyn Read + 'a>, ExtractError> {
    let t = essence(media_type);
    if t.ends_with(".tar") {
        Ok(Box::new(layer))
    } else if t.ends_with("+gzip") || t.ends_with(".tar.gzip") {
        Ok(Box::new(MultiGzDecoder::new(layer)))
    } else {
        Err(ExtractError::UnsupportedCompression {
            media_type: media_type.to_owned(),
        })
    }
}

/// Finds the module in `layer` (of `media_type`) by `rule`, streaming each
/// candidate into a file `new_file` makes; returns the module's path in the layer
/// and its file. Reads at most `max_bytes` decompressed bytes and
/// [`MAX_TAR_ENTRIES`] entries.
///
/// # Errors
/// [`Failed::Layer`] with the reason no module can be taken; [`Failed::Cache`]
/// when a file cannot be written.
pub(crate) fn extract<S: Stage>(
    layer: impl Read,
    media_type: &str,
    rule: &Rule,
    max_bytes: u64,
    new_file: &mut dyn FnMut() -> Result<S, S::Error>,
) -> Result<(String, S), Failed<S::Error>> {
    let headers_left = Rc::new(Cell::new(None));
    let bounded = Bounded {
        inner: decompressed(media_type, layer)?,
        left: max_bytes,
        headers_left: Rc::clone(&headers_left),
    };
    let classify = |e: io::Error| {
        if caused_by_limit(&e) {
            ExtractError::TooLarge { limit: max_bytes }
        } else if caused_by::<HeadersTooLarge>(&e) {
            ExtractError::HeadersTooLarge {
                limit: MAX_HEADER_BYTES,
            }
        } else {
            ExtractError::Corrupt(e)
        }
    };
    let entrypoint = match rule {
        Rule::Entrypoint(Some(e)) => Some(normalize(e.as_bytes())?),
        _ => None,
    };
    let mut archive = tar::Archive::new(bounded);
    let mut primary: Vec<(String, S)> = Vec::new();
    let mut others: Vec<String> = Vec::new();
    let mut first_other: Option<(String, S)> = None;
    let mut count = 0u64;
    let mut entries = archive.entries().map_err(classify)?;
    loop {
        // What tar reads to find the next entry is headers, and the PAX records
        // and GNU long names it keeps in memory: bounded apart, as the data of
        // every entry is read here (below), not skipped by tar.
        headers_left.set(Some(MAX_HEADER_BYTES));
        let next = entries.next();
        headers_left.set(None);
        let Some(entry) = next else { break };
        let mut entry = entry.map_err(classify)?;
        'consider: {
            count += 1;
            if count > MAX_TAR_ENTRIES {
                return Err(ExtractError::TooManyEntries {
                    limit: MAX_TAR_ENTRIES,
                }
                .into());
            }
            let name = normalize(&entry.path_bytes())?;
            let base = name.rsplit('/').next().unwrap_or_default();
            if base.starts_with(".wh.") {
                break 'consider; // an overlay whiteout, not a file
            }
            let is_primary = match (rule, &entrypoint) {
                (Rule::Istio, _) => base == "plugin.wasm",
                (Rule::Entrypoint(_), Some(e)) => name == *e,
                (Rule::Entrypoint(_), None) => false,
            };
            if !is_primary && !base.ends_with(".wasm") {
                break 'consider;
            }
            match entry.header().entry_type() {
                // A GNU sparse file is a file: tar expands its holes as it is read,
                // as Go's archive/tar does for Istio.
                tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse => {}
                tar::EntryType::Symlink | tar::EntryType::Link if is_primary => {
                    return Err(ExtractError::Link { path: name }.into());
                }
                // A link elsewhere is refused only if it would be the module (the
                // only *.wasm): beside plugin.wasm it is no reason to refuse.
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    others.retain(|n| *n != name);
                    others.push(name.clone());
                    if first_other.as_ref().is_some_and(|(n, _)| *n == name) {
                        first_other = None;
                    }
                    break 'consider;
                }
                // The module's own name on a directory or a device: the runtime would
                // not load another file instead, so neither does a pull.
                _ if is_primary => return Err(ExtractError::NotAFile { path: name }.into()),
                _ => break 'consider, // a directory or a device named *.wasm
            }
            // A PAX sparse file (GNU tar --sparse --format=posix) stores a map of its
            // holes before the data, which `tar` does not expand: its bytes are not
            // the file's.
            let pax_sparse = entry
                .pax_extensions()
                .map_err(classify)?
                .is_some_and(|exts| {
                    exts.flatten()
                        .any(|e| e.key_bytes().starts_with(b"GNU.sparse."))
                });
            if pax_sparse {
                return Err(ExtractError::SparseFile { path: name }.into());
            }
            // A later entry of the same path replaces an earlier one, as when a tar is
            // unpacked (what a Docker wasi/wasm runtime does), except for Istio, which
            // reads the layer as a stream and loads the first plugin.wasm it meets.
            if is_primary && *rule == Rule::Istio && primary.iter().any(|(n, _)| *n == name) {
                break 'consider;
            }
            if is_primary {
                primary.retain(|(n, _)| *n != name);
                let file = copy(&mut entry, new_file, &classify)?;
                primary.push((name, file));
            } else {
                others.retain(|n| *n != name);
                others.push(name.clone());
                if first_other.as_ref().is_none_or(|(n, _)| *n == name) {
                    first_other = Some((name.clone(), copy(&mut entry, new_file, &classify)?));
                }
            }
        }
        io::copy(&mut entry, &mut io::sink()).map_err(classify)?;
    }
    let only_wasm = |first_other: Option<(String, S)>, mut others: Vec<String>| match others.len() {
        // The only *.wasm, and no file kept for it: it is a link.
        1 => first_other.ok_or_else(|| {
            Failed::Layer(ExtractError::Link {
                path: others.pop().unwrap_or_default(),
            })
        }),
        0 => Err(Failed::Layer(ExtractError::NoModule {
            rule: rule.to_string(),
        })),
        _ => Err(Failed::Layer(ExtractError::SeveralModules {
            paths: others,
        })),
    };
    match (rule, entrypoint) {
        (Rule::Entrypoint(_), Some(e)) => primary.pop().ok_or_else(|| {
            Failed::Layer(ExtractError::EntrypointMissing {
                entrypoint: e,
                found: others,
            })
        }),
        (Rule::Entrypoint(_), None) => only_wasm(first_other, others),
        (Rule::Istio, _) => match primary.len() {
            0 => only_wasm(first_other, others),
            1 => primary.pop().ok_or_else(|| {
                Failed::Layer(ExtractError::NoModule {
                    rule: rule.to_string(),
                })
            }),
            _ => Err(Failed::Layer(ExtractError::SeveralModules {
                paths: primary.into_iter().map(|(n, _)| n).collect(),
            })),
        },
    }
}

/// Streams one entry into a new file.
fn copy<S: Stage>(
    entry: &mut impl Read,
    new_file: &mut dyn FnMut() -> Result<S, S::Error>,
    classify: &dyn Fn(io::Error) -> ExtractError,
) -> Result<S, Failed<S::Error>> {
    let mut file = new_file().map_err(Failed::Cache)?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => return Ok(file),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failed::Layer(classify(e))),
        };
        file.write_all(&buf[..n]).map_err(Failed::Cache)?;
    }
}

/// `./a//b/c.wasm` → `a/b/c.wasm`; a leading `/` is dropped, as tar does.
/// A path that is not UTF-8 is kept with its bytes escaped (`\\xff`): Istio
/// compares only the base name, so `<not UTF-8>/plugin.wasm` is plugin.wasm.
///
/// # Errors
/// [`ExtractError::UnsafePath`] for a `..` component.
fn normalize(raw: &[u8]) -> Result<String, ExtractError> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                return Err(ExtractError::UnsafePath {
                    path: String::from_utf8_lossy(raw).into_owned(),
                });
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join(&b'/');
    Ok(String::from_utf8(joined).unwrap_or_else(|e| e.into_bytes().escape_ascii().to_string()))
}

/// A reader that fails once more than `left` bytes would come out of it, or
/// more than `headers_left` while that is set.
struct Bounded<R> {
    inner: R,
    left: u64,
    headers_left: Rc<Cell<Option<u64>>>,
}

/// The error a [`Bounded`] reader fails with past [`MAX_HEADER_BYTES`].
#[derive(Debug)]
struct HeadersTooLarge;

impl fmt::Display for HeadersTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tar header size limit reached")
    }
}

impl std::error::Error for HeadersTooLarge {}

/// The error a [`Bounded`] reader fails with.
#[derive(Debug)]
struct LimitReached;

impl fmt::Display for LimitReached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("decompressed size limit reached")
    }
}

impl std::error::Error for LimitReached {}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // At the limit: only the end of the stream is acceptable.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(LimitReached)),
            };
        }
        let headers_left = self.headers_left.get();
        if headers_left == Some(0) {
            return Err(io::Error::other(HeadersTooLarge));
        }
        let max = usize::try_from(self.left.min(headers_left.unwrap_or(u64::MAX)))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(&mut buf[..max])?;
        self.left = self.left.saturating_sub(n as u64);
        if let Some(h) = headers_left {
            self.headers_left.set(Some(h.saturating_sub(n as u64)));
        }
        Ok(n)
    }
}

/// Whether `e`, or any error behind it (tar wraps what it reads), is [`LimitReached`].
fn caused_by_limit(e: &io::Error) -> bool {
    caused_by::<LimitReached>(e)
}

/// Whether `e`, or any error behind it, is a `T`.
fn caused_by<T: std::error::Error + 'static>(e: &io::Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = e
        .get_ref()
        .map(|inner| inner as &(dyn std::error::Error + 'static));
    while let Some(err) = current {
        if err.is::<T>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if let Some(inner) = io.get_ref() {
                current = Some(inner as &(dyn std::error::Error + 'static));
                continue;
            }
        }
        current = err.source();
    }
    false
}

#[cfg(test)]
mod tests;
