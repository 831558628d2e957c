//! The pieces of the `forge-oci` command: argument parsing and the progress bar.

pub mod args;
pub mod progress;
pub mod usage;
