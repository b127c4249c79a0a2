//! `bootproof inspect` without the CLI front end, to measure it (time, peak memory) on
//! large inputs: `cargo run --release --example inspect -- PATH... [--json]`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut json = false;
    let mut paths = Vec::new();
    for arg in std::env::args_os().skip(1) {
        if arg == "--json" {
            json = true;
        } else {
            paths.push(PathBuf::from(arg));
        }
    }
    bootproof::inspect::run_cli(&paths, json)
}
