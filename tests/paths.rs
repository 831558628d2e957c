//! Paths a caller hands the library: where the cache is, and where
//! `build::fetch_to_out_dir` writes. A bad one is refused before any I/O.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::server::FakeRegistry;
use common::*;
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

/// Bad names are refused before any client is built or any connection opened:
/// the registry here counts every connection, and sees none.
#[test]
fn fetch_to_out_dir_refuses_anything_but_a_plain_file_name_before_any_io() {
    let server = FakeRegistry::start();
    let payload = wasm_payload("stays in OUT_DIR", 1000);
    server.artifact("build/plugin", "1.0", &payload, |r| r);
    let reference = format!("{}/build/plugin:1.0", server.host());
    for name in ["../x", "../../x", "/abs", "a/b", "..", ".", "", "a/", "./a"] {
        let err = forge_oci::build::fetch_to_out_dir(&reference, name).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&format!("error: `{name}` is not a plain file name")),
            "{name:?}: {message}"
        );
        assert!(
            message.contains("help: pass a plain file name"),
            "{message}"
        );
        assert!(err.error().is_none(), "{name:?}");
    }
    // A good name outside a build script stops at the missing OUT_DIR, also
    // before the network.
    if std::env::var_os("OUT_DIR").is_none() {
        let err = forge_oci::build::fetch_to_out_dir(&reference, "plugin.wasm").unwrap_err();
        assert!(err.to_string().contains("OUT_DIR is not set"), "{err}");
    }
    assert_eq!(server.connections(), 0);
}
