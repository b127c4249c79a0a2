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
    for (dir, file) in [
        ("vm-profiles", "shipped_profiles.rs"),
        ("tests/scenarios", "shipped_scenarios.rs"),
        ("tests/checkpoints", "shipped_checkpoints.rs"),
    ] {
        embed(&manifest, dir, "toml", "include_str", str::to_string, &out.join(file));
    }
    let needles = "tests/scenarios/needles";
    let label = |name: &str| format!("builtin:{needles}/{name}");
    embed(&manifest, needles, "png", "include_bytes", label, &out.join("shipped_needles.rs"));
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

/// Writes `out`: a slice of `(name, contents)` for the files of `dir` ending in `.ext`,
/// each read by `include` (`include_str` or `include_bytes`) and named by `name` from
/// its file name.
fn embed(manifest: &Path, dir: &str, ext: &str, include: &str, name: impl Fn(&str) -> String, out: &Path) {
    // A directory makes cargo rerun this script when any file in it changes, is added
    // or is removed.
    println!("cargo::rerun-if-changed={dir}");
    let mut code = String::from("&[\n");
    for file in files(manifest, dir, ext) {
        let file_name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_else(|| panic!("{}: not UTF-8", file.display()));
        let path = file.to_str().unwrap_or_else(|| panic!("{}: not UTF-8", file.display()));
        code.push_str(&format!("    ({:?}, {include}!({path:?})),\n", name(file_name)));
    }
    code.push_str("]\n");
    std::fs::write(out, code).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}
