//! Promises of the public API itself: its types cross threads, and a reference
//! that does not parse is refused before any I/O.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use forge_oci::{Client, Error};

#[test]
fn invalid_references_fail_before_any_io() {
    let cache = tempfile::tempdir().unwrap();
    let c = client("127.0.0.1:1", cache.path());
    for bad in [
        "",
        "127.0.0.1:1/UPPER/case",
        "ghcr.io/a/b:-tag",
        "ghcr.io/a@sha256:123",
        "ghcr.io/a@md5:abcd",
    ] {
        let err = c.pull(bad).unwrap_err();
        assert!(
            matches!(err, Error::InvalidReference(_)),
            "{bad:?}: {err:?}"
        );
        assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
    }
    assert_eq!(
        std::fs::read_dir(cache.path()).unwrap().count(),
        0,
        "nothing was created"
    );
}

#[test]
fn client_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Client>();
    assert_send_sync::<forge_oci::Artifact>();
    assert_send_sync::<forge_oci::Reference>();
    assert_send_sync::<forge_oci::PullOptions>();
    assert_send_sync::<forge_oci::LayerSelector>();
    assert_send_sync::<forge_oci::LayerDecision>();
    fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<Error>();
    assert_error::<forge_oci::ExtractError>();
    assert_error::<forge_oci::manifest::SelectError>();
}
