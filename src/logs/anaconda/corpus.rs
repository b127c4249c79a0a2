//! Where the tests find the real-log corpus (never copied into the repository).

use std::path::PathBuf;

/// `BOOTPROOF_CORPUS`, or `../shared/corpus` beside the crate. Panics with the fix when
/// neither exists, so a test can never pass without having read the real files.
pub fn dir() -> PathBuf {
    let dir = std::env::var_os("BOOTPROOF_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    assert!(
        dir.join("anaconda").is_dir(),
        "real-log corpus not found at {}: put the shared corpus at ../shared/corpus beside \
         the crate, or set BOOTPROOF_CORPUS to its folder",
        dir.display()
    );
    dir
}

pub fn file(relative: &str) -> PathBuf {
    let path = dir().join(relative);
    assert!(path.is_file(), "corpus file missing: {}", path.display());
    path
}

pub fn read(relative: &str) -> Vec<u8> {
    std::fs::read(file(relative)).expect("readable corpus file")
}
