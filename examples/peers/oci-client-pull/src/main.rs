//! `oci-client-pull REF FILE`: pulls the first layer of the artifact REF over
//! plain HTTP with oci-client and writes it to FILE.
//!
//! The peer examples/bench.sh times against `forge-oci pull REF -o FILE`. Written
//! as the crate's documentation shows it used (`#[tokio::main]`, anonymous auth,
//! `pull_image_manifest` then `pull_blob`, which checks the layer's digest as
//! the bytes arrive and flushes FILE before returning).

use std::process::ExitCode;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, reference, out] = args.as_slice() else {
        eprintln!("usage: oci-client-pull REF FILE");
        return ExitCode::from(2);
    };
    match pull(reference, out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oci-client-pull {reference}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn pull(reference: &str, out: &str) -> Result<(), Box<dyn std::error::Error>> {
    let reference: Reference = reference.parse()?;
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let (manifest, _digest) = client
        .pull_image_manifest(&reference, &RegistryAuth::Anonymous)
        .await?;
    let layer = manifest.layers.first().ok_or("the manifest has no layer")?;
    let file = tokio::fs::File::create(out).await?;
    client.pull_blob(&reference, layer, file).await?;
    Ok(())
}
