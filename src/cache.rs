//! Where bootproof keeps what it builds or probes once per host: reference images
//! (by recipe hash) and the acceleration verdict.

use std::path::PathBuf;

/// `$BOOTPROOF_CACHE`, else `$XDG_CACHE_HOME/bootproof`, else `~/.cache/bootproof`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BOOTPROOF_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("bootproof");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache").join("bootproof")
}
