//! OCI image layouts (image-spec 1.0 `oci-layout`, `index.json`, `blobs/`): read
//! as a source of artifacts before the network and when offline ([`read`]), and
//! written by vendoring ([`write`]). A layout is outside the cache's trust
//! boundary: everything read from one is verified against its digest.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::reference::Reference;

pub(crate) mod read;
pub(crate) mod write;

/// The annotation the image spec names an index entry with.
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd (`ctr export`, nerdctl save) names an entry with.
pub(crate) const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// The largest `index.json` read: thousands of entries fit many times over.
pub(crate) const MAX_INDEX_SIZE: u64 = 16 << 20;

/// `DIR/index.json`.
pub(crate) fn index_path(dir: &Path) -> PathBuf {
    dir.join("index.json")
}

/// `DIR/blobs/<algorithm>/<hex>`.
pub(crate) fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs")
        .join(digest.algorithm())
        .join(digest.hex())
}

/// Opens a file of a layout for reading. Links are followed (what is read is
/// verified anyway), but only a regular file is opened: a FIFO would block the
/// open until some writer came, and a device (`/dev/zero`, a terminal) is never
/// content. Anything else is refused with [`io::ErrorKind::InvalidInput`].
pub(crate) fn open_file(path: &Path) -> io::Result<File> {
    let not_regular = || io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
    // Checked before opening, so that no device is ever opened...
    if !fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // ...and without waiting, should a FIFO take its place in between.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    if file.metadata()?.is_file() {
        Ok(file)
    } else {
        Err(not_regular())
    }
}

/// Whether an index entry with these annotations is `r`: one of the two name
/// annotations is its canonical form, or a full reference that means the same
/// (skopeo's `oci:DIR:REF` stores REF as it was typed: `127.0.0.1:5000/a` for
/// `127.0.0.1:5000/a:latest`). A bare tag (`v1`, the spec's own example) names
/// no registry or repository and so never matches.
pub(crate) fn names(annotations: &HashMap<String, String>, r: &Reference) -> bool {
    let canonical = r.to_string();
    [REF_NAME, CONTAINERD_NAME]
        .iter()
        .filter_map(|key| annotations.get(*key))
        .any(|name| {
            *name == canonical
                || (name.contains('/') && name.parse::<Reference>().is_ok_and(|n| n == *r))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_canonically_never_by_bare_tag() {
        let r: Reference = "127.0.0.1:5000/plugins/a:v1".parse().unwrap();
        let with = |k: &str, v: &str| HashMap::from([(k.to_owned(), v.to_owned())]);
        assert!(names(&with(REF_NAME, "127.0.0.1:5000/plugins/a:v1"), &r));
        assert!(names(
            &with(CONTAINERD_NAME, "127.0.0.1:5000/plugins/a:v1"),
            &r
        ));
        assert!(!names(&with(REF_NAME, "v1"), &r));
        assert!(!names(&with(REF_NAME, "127.0.0.1:5000/plugins/a:v2"), &r));
        let hub: Reference = "docker.io/library/x:1".parse().unwrap();
        assert!(!names(&with(REF_NAME, "x:1"), &"x:1".parse().unwrap()));
        assert!(names(&with(REF_NAME, "docker.io/x:1"), &hub));
        let latest: Reference = "127.0.0.1:5000/a".parse().unwrap();
        assert!(names(&with(REF_NAME, "127.0.0.1:5000/a"), &latest));
    }
}
