fn main() -> Result<(), forge_oci::build::BuildError> {
    println!("cargo:rerun-if-env-changed=PLUGIN_REF");
    let reference = std::env::var("PLUGIN_REF").unwrap_or_default();
    forge_oci::build::fetch_to_out_dir(&reference, "plugin.wasm")?;
    Ok(())
}
