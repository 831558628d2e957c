//! Every path in the cache, and the mapping between references and ref files
//! in both directions. Nothing else in the crate joins a name onto the root.
//!
//! ```text
//! <root>/blobs/sha256/<hex>                            immutable content: manifests and layers
//! <root>/derived/<rules>/sha256/<layer>/<config>/<hex>
//!                                                      a module extracted from layer <layer> by
//!                                                      the rule image config <config> implies,
//!                                                      <rules> naming their version (`rules-1`);
//!                                                      immutable, hashes to its name <hex>
//! <root>/refs/<registry>/<repository>/_tags/<tag>      "sha256:<hex>\n": the manifest a tag resolved to
//! <root>/refs/<registry>/<repository>/_digests/<hex>   the same for a digest pin (keeps it from prune)
//! <root>/tmp/                                          writers' own files; <hex>.partial to resume
//! <root>/locks/<hex>.lock                              per-blob download lock
//! <root>/.lock                                         cache-wide: shared by pulls, exclusive for prune/clear
//! <root>/tokens/<hex>.json                             anonymous Bearer tokens and registries' challenges (0600)
//! ```
//!
//! Refs live under `_tags/` and `_digests/` because a repository may have
//! sub-repositories: `a/b:c` and `a/b/c:d` would otherwise need `a/b/c` to be both
//! a file and a directory. No repository component can start with `_`, so they
//! never collide.
//!
//! Tags are case-sensitive but macOS and Windows file systems are not, so a tag's
//! file name spells each upper-case letter as `+` and its lower-case form (`V1` is
//! stored as `+v1`). `+` cannot occur in a tag, so the spelling is unambiguous, and
//! the tags almost everyone uses (lower case) keep the names older versions gave
//! them. A tag with upper-case letters written by an older version (`V1`) is still
//! read, where the directory lists that exact name.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::reference::Reference;

/// The version of the extraction rules, in the derived files' path: see
/// [`Layout::derived_rules_dir`].
pub(crate) const EXTRACTION_RULES: &str = "rules-1";

/// The cache's paths, from its root.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: PathBuf,
}

impl Layout {
    pub(crate) fn new(root: PathBuf) -> Layout {
        Layout { root }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The directories a pull writes into, parents first.
    pub(crate) fn writable_dirs(&self) -> [PathBuf; 4] {
        [
            self.tmp_dir(),
            self.locks_dir(),
            self.root.join("blobs"),
            self.blob_dir(),
        ]
    }

    /// The top-level directories `clear` removes.
    pub(crate) fn content_dirs(&self) -> [PathBuf; 6] {
        ["blobs", "refs", "tmp", "locks", "tokens", "derived"].map(|d| self.root.join(d))
    }

    /// Anonymous tokens and remembered challenges, see [`tokens`](super::tokens).
    pub(crate) fn tokens_dir(&self) -> PathBuf {
        self.root.join("tokens")
    }

    /// Where files derived from layers live: one directory per source layer,
    /// under the version of the rules that chose them.
    pub(crate) fn derived_root(&self) -> PathBuf {
        self.derived_rules_dir().join("sha256")
    }

    /// `derived/<rules>`: a module is keyed by its layer and image config, but
    /// which file of the layer is the module is the extraction rules' answer.
    /// Rules that change (a fix, a runtime's new convention) get a new name, so
    /// a module chosen by older rules is never served; prune removes the others.
    pub(crate) fn derived_rules_dir(&self) -> PathBuf {
        self.root.join("derived").join(EXTRACTION_RULES)
    }

    /// `derived/`, holding one directory per version of the extraction rules.
    pub(crate) fn derived_dir_all(&self) -> PathBuf {
        self.root.join("derived")
    }

    /// The components below [`Layout::derived_root`] of the directory holding what
    /// was extracted from `layer` by the rule image config `config` implies. Both
    /// are hex digests: no separator, no `..`.
    pub(crate) fn derived_components(layer: &Digest, config: &Digest) -> [String; 2] {
        [layer.hex().to_owned(), config.hex().to_owned()]
    }

    /// The directory holding what was extracted from `layer` under `config`.
    pub(crate) fn derived_dir(&self, layer: &Digest, config: &Digest) -> PathBuf {
        let mut p = self.derived_root();
        p.extend(Layout::derived_components(layer, config));
        p
    }

    pub(crate) fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    pub(crate) fn blob(&self, digest: &Digest) -> PathBuf {
        self.blob_dir().join(digest.hex())
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where an interrupted download of `digest` is left for the next writer.
    pub(crate) fn partial(&self, digest: &Digest) -> PathBuf {
        self.tmp_dir().join(format!("{}.partial", digest.hex()))
    }

    pub(crate) fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }

    pub(crate) fn blob_lock(&self, digest: &Digest) -> PathBuf {
        self.locks_dir().join(format!("{}.lock", digest.hex()))
    }

    pub(crate) fn cache_lock(&self) -> PathBuf {
        self.root.join(".lock")
    }

    pub(crate) fn refs_dir(&self) -> PathBuf {
        self.root.join("refs")
    }

    /// The directory components below `refs/` and the file name that record `r`:
    /// its digest pin if it has one, else its tag.
    pub(crate) fn ref_components(r: &Reference) -> (Vec<String>, String) {
        // The grammar already excludes `/`, `..` and NUL; `:` (host:port) is the
        // one character some file systems refuse, and `_` never occurs in a host.
        let mut dirs = vec![r.registry().replace(':', "_")];
        dirs.extend(r.repository().split('/').map(str::to_owned));
        let name = match (r.digest(), r.tag()) {
            (Some(d), _) => {
                dirs.push("_digests".into());
                d.hex().to_owned()
            }
            (None, tag) => {
                dirs.push("_tags".into());
                tag_file_name(tag.unwrap_or("latest"))
            }
        };
        (dirs, name)
    }

    /// Where `r` is recorded.
    pub(crate) fn ref_file(&self, r: &Reference) -> PathBuf {
        let (dirs, name) = Layout::ref_components(r);
        let mut p = self.refs_dir();
        p.extend(dirs);
        p.join(name)
    }

    /// Where an older version recorded tag `r`, when that differs from
    /// [`Layout::ref_file`] (the tag has upper-case letters).
    pub(crate) fn legacy_ref_file(&self, r: &Reference) -> Option<PathBuf> {
        let tag = r
            .tag()
            .filter(|t| r.digest().is_none() && t.bytes().any(|b| b.is_ascii_uppercase()))?;
        Some(self.ref_file(r).with_file_name(tag))
    }

    /// The reference a ref file under `refs/` records: the inverse of [`Layout::ref_file`].
    pub(crate) fn reference_of(&self, path: &Path) -> Option<Reference> {
        let rel = path.strip_prefix(self.refs_dir()).ok()?;
        let parts: Vec<&str> = rel.iter().map(OsStr::to_str).collect::<Option<_>>()?;
        let [registry, repo @ .., kind, name] = parts.as_slice() else {
            return None;
        };
        let registry = registry.replace('_', ":");
        let text = match *kind {
            "_tags" => format!("{registry}/{}:{}", repo.join("/"), tag_of_file_name(name)?),
            "_digests" => format!("{registry}/{}@sha256:{name}", repo.join("/")),
            _ => return None,
        };
        text.parse().ok()
    }
}

/// `V1.0-RC` → `+v1.0-+r+c`: no two tags share a name on a case-insensitive file system.
fn tag_file_name(tag: &str) -> String {
    let mut name = String::with_capacity(tag.len());
    for c in tag.chars() {
        if c.is_ascii_uppercase() {
            name.push('+');
            name.push(c.to_ascii_lowercase());
        } else {
            name.push(c);
        }
    }
    name
}

/// The inverse of [`tag_file_name`]; a name without `+` is read as it is, which
/// also reads the names older versions wrote. `None` for a stray `+`.
fn tag_of_file_name(name: &str) -> Option<String> {
    let mut tag = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        if c == '+' {
            let next = chars.next().filter(char::is_ascii_lowercase)?;
            tag.push(next.to_ascii_uppercase());
        } else {
            tag.push(c);
        }
    }
    Some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_and_ref_paths() {
        let l = Layout::new(PathBuf::from("/c"));
        let d = Digest::of(b"hello");
        assert_eq!(
            l.blob(&d),
            PathBuf::from(format!("/c/blobs/sha256/{}", d.hex()))
        );
        let r: Reference = "localhost:5000/owner/repo:1.0.0".parse().unwrap();
        assert_eq!(
            l.ref_file(&r),
            PathBuf::from("/c/refs/localhost_5000/owner/repo/_tags/1.0.0")
        );
        let pinned: Reference = format!("ghcr.io/o/r:1.0@{d}").parse().unwrap();
        assert_eq!(
            l.ref_file(&pinned),
            PathBuf::from(format!("/c/refs/ghcr.io/o/r/_digests/{}", d.hex()))
        );
        let config = Digest::of(b"config");
        assert_eq!(
            l.derived_dir(&d, &config),
            PathBuf::from(format!(
                "/c/derived/{EXTRACTION_RULES}/sha256/{}/{}",
                d.hex(),
                config.hex()
            ))
        );
        let parent: Reference = "ghcr.io/a/b:c".parse().unwrap();
        let child: Reference = "ghcr.io/a/b/c:d".parse().unwrap();
        let (p, ch) = (l.ref_file(&parent), l.ref_file(&child));
        assert!(!ch.starts_with(&p), "{p:?} vs {ch:?}");
    }

    #[test]
    fn tags_differing_in_case_never_share_a_file_name_even_folded() {
        let l = Layout::new(PathBuf::from("/c"));
        let tags = ["v1", "V1", "v_1", "V_1", "vV", "Vv", "VV", "vv", "A.b-C_d"];
        let mut names: Vec<String> = tags
            .iter()
            .map(|t| {
                let r: Reference = format!("ghcr.io/o/r:{t}").parse().unwrap();
                l.ref_file(&r).to_str().unwrap().to_ascii_lowercase()
            })
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), tags.len(), "{names:?}");
        let r: Reference = "ghcr.io/o/r:V1".parse().unwrap();
        assert!(l.ref_file(&r).ends_with("_tags/+v1"));
        assert!(l.legacy_ref_file(&r).unwrap().ends_with("_tags/V1"));
        let lower: Reference = "ghcr.io/o/r:v1".parse().unwrap();
        assert_eq!(l.legacy_ref_file(&lower), None);
    }

    #[test]
    fn reference_of_round_trips_ref_paths_and_reads_old_names() {
        let l = Layout::new(PathBuf::from("/c"));
        for s in [
            "localhost:5000/a/b/c:1.0",
            "ghcr.io/o/r:latest",
            "ghcr.io/o/r:Release-V2_x",
            "[::1]:5000/x:y",
            "ghcr.io/o/r@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            let r: Reference = s.parse().unwrap();
            assert_eq!(l.reference_of(&l.ref_file(&r)).unwrap(), r, "{s}");
        }
        let old = Path::new("/c/refs/ghcr.io/o/r/_tags/V1");
        assert_eq!(l.reference_of(old).unwrap().tag(), Some("V1"));
        for stray in ["+", "a+", "+V", "+1"] {
            let p = Path::new("/c/refs/ghcr.io/o/r/_tags").join(stray);
            assert_eq!(l.reference_of(&p), None, "{stray}");
        }
    }
}
