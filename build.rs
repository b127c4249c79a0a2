//! Embeds the shipped machine profiles (`vm-profiles/*.toml`), scenarios
//! (`tests/scenarios/*.toml`) and checkpoints (`tests/checkpoints/*.toml`) in the
//! library, so that a `bootproof` installed with `cargo install` works wherever it is,
//! with no checkout beside it. Those directories stay the source: a file added to any
//! of them is shipped with the next build.
//!
//! Each becomes a Rust file in `OUT_DIR` holding a slice of `(file name, contents)`,
//! sorted by name, the contents by `include_str!` so that cargo tracks every file.
//! The shipped scenarios' needles (`tests/scenarios/needles/*.png`) are embedded the
//! same way, as bytes (`include_bytes!`), named by their `builtin:` label.

use std::path::{Path, PathBuf};

fn main() {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    embed(&manifest, "vm-profiles", &out.join("shipped_profiles.rs"));
    embed(&manifest, "tests/scenarios", &out.join("shipped_scenarios.rs"));
    embed(&manifest, "tests/checkpoints", &out.join("shipped_checkpoints.rs"));
    embed_needles(&manifest, "tests/scenarios/needles", &out.join("shipped_needles.rs"));
}

fn embed_needles(manifest: &Path, dir: &str, out: &Path) {
    println!("cargo::rerun-if-changed={dir}");
    let mut code = String::from("&[\n");
    for file in files(manifest, dir, "png") {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_else(|| panic!("{}: not UTF-8", file.display()));
        let path = file.to_str().unwrap_or_else(|| panic!("{}: not UTF-8", file.display()));
        code.push_str(&format!("    ({:?}, include_bytes!({path:?})),\n", format!("builtin:{dir}/{name}")));
    }
    code.push_str("]\n");
    std::fs::write(out, code).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}

/// The files of `dir` ending in `.ext`, sorted.
fn files(manifest: &Path, dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifest.join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|entry| entry.unwrap_or_else(|e| panic!("{dir}: {e}")).path())
        .filter(|p| p.extension().is_some_and(|x| x == ext) && p.is_file())
        .collect();
    files.sort();
    files
}

fn embed(manifest: &Path, dir: &str, out: &Path) {
    // A directory makes cargo rerun this script when any file in it changes, is added
    // or is removed.
    println!("cargo::rerun-if-changed={dir}");
    let mut code = String::from("&[\n");
    for file in files(manifest, dir, "toml") {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_else(|| panic!("{}: not UTF-8", file.display()));
        let path = file.to_str().unwrap_or_else(|| panic!("{}: not UTF-8", file.display()));
        code.push_str(&format!("    ({name:?}, include_str!({path:?})),\n"));
    }
    code.push_str("]\n");
    std::fs::write(out, code).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}
