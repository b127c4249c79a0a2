//! Reference guests built from distribution packages, cached by recipe hash.

use std::path::PathBuf;

/// Whether a built image boots as a disk or as an optical disc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Disk,
    Iso,
}

/// A reference image ready to boot.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// `reference:<name>`.
    pub reference: String,
    pub path: PathBuf,
    pub kind: ImageKind,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("unknown reference image `{0}` (known: tiny, tiny-iso, tiny-sb)")]
    Unknown(String),
}

/// Builds (or finds in the cache) the reference image `name` (`tiny`, `tiny-iso`, `tiny-sb`).
pub fn ensure(name: &str) -> Result<BuiltImage, ImageError> {
    Err(ImageError::Unknown(name.to_string()))
}

/// The reference images bootproof can build.
pub fn known() -> &'static [&'static str] {
    &["tiny", "tiny-iso", "tiny-sb"]
}
