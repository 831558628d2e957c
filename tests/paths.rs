//! Paths a caller hands the library: where the cache is, and where
//! `build::fetch_to_out_dir` writes. A bad one is refused before any I/O.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use forge_oci::{Client, Error};

#[test]
fn an_empty_cache_dir_is_a_configuration_error_not_the_current_directory() {
    let err = Client::builder().cache_dir("").build().unwrap_err();
    assert!(
        matches!(&err, Error::Config { setting: "ClientBuilder::cache_dir", value, .. } if value.is_empty()),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "cannot use ClientBuilder::cache_dir ``: an empty path would mean the current directory; name a directory"
    );
    // `.` says the current directory on purpose.
    assert!(Client::builder().cache_dir(".").build().is_ok());
}
