// Reads the reference from a file, as a script reading a plugin list would, and
// names that file for cargo: forge_oci's rerun-if-env-changed lines switch off
// cargo's default of rerunning on any change in the package.
fn main() -> Result<(), forge_oci::build::BuildError> {
    forge_oci::build::rerun_if_changed("plugin.ref");
    let reference = std::fs::read_to_string("plugin.ref").unwrap_or_default();
    forge_oci::build::fetch_to_out_dir(reference.trim(), "plugin.wasm")?;
    Ok(())
}
