//! Where bootproof keeps what it builds or probes once per host: reference images
//! (by recipe hash), downloaded packages, VM slot locks and the acceleration verdict.
//!
//! The preferred place is `$BOOTPROOF_CACHE`, else `$XDG_CACHE_HOME/bootproof`, else
//! `~/.cache/bootproof`. A CI runner often restores a cache read-only (or mounts the
//! home directory so), and a run must not fail for it: when the preferred directory
//! cannot be written, bootproof says so once on stderr and
//!
//! - writes into `$TMPDIR/bootproof-cache-<uid>` instead ([`cache_dir`]), and
//! - still reads complete builds and checked downloads from the read-only directory
//!   ([`read_only_dirs`]): a restored cache is used, not thrown away.
//!
//! Whether a directory can be written is found out by writing to it (a probe file
//! created and removed), not from permission bits: root passes every mode check and
//! still gets `EROFS` from a read-only mount. The verdict is remembered per path for
//! the life of the process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The preferred cache directory, whether or not it can be written.
pub fn preferred_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BOOTPROOF_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("bootproof");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache").join("bootproof")
}

/// The directory bootproof writes its cache into: [`preferred_dir`] when it can be
/// written, else the fallback under the temporary directory (module docs).
pub fn cache_dir() -> PathBuf {
    let preferred = preferred_dir();
    match resolve(&preferred) {
        Ok(()) => preferred,
        Err(_) => fallback_dir(),
    }
}

/// Cache directories to read complete builds and downloads from but never write:
/// the preferred directory when it exists and cannot be written.
pub fn read_only_dirs() -> Vec<PathBuf> {
    let preferred = preferred_dir();
    match resolve(&preferred) {
        Ok(()) => Vec::new(),
        Err(_) if preferred.is_dir() => vec![preferred],
        Err(_) => Vec::new(),
    }
}

/// Where the cache goes when the preferred directory is read-only.
pub fn fallback_dir() -> PathBuf {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("bootproof-cache-{uid}"))
}

/// Whether `dir` can be written, probed once per path and process; the first
/// read-only verdict is reported on stderr with the fallback in use.
fn resolve(dir: &Path) -> Result<(), String> {
    static VERDICTS: Mutex<Option<HashMap<PathBuf, Result<(), String>>>> = Mutex::new(None);
    let mut verdicts = VERDICTS.lock().unwrap_or_else(|e| e.into_inner());
    let verdicts = verdicts.get_or_insert_with(HashMap::new);
    if let Some(verdict) = verdicts.get(dir) {
        return verdict.clone();
    }
    let verdict = probe_writable(dir).map_err(|e| e.to_string());
    if let Err(why) = &verdict {
        let fallback = fallback_dir();
        let readable = if dir.is_dir() { "; complete builds found there are still used" } else { "" };
        crate::reporter::line(format!(
            "bootproof: cache {} cannot be written ({why}); writing to {} instead{readable} \
             (set BOOTPROOF_CACHE to choose)",
            dir.display(),
            fallback.display()
        ));
        if let Err(e) = std::fs::create_dir_all(&fallback) {
            crate::reporter::line(format!("bootproof: cannot create {}: {e}", fallback.display()));
        }
    }
    verdicts.insert(dir.to_path_buf(), verdict.clone());
    verdict
}

/// Creates `dir` if needed and writes and removes a probe file in it.
pub fn probe_writable(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&probe)?;
    std::fs::remove_file(&probe)
}

/// `relative` in the first cache directory that has it (writable first, then the
/// read-only ones), if any `accept`s it.
pub fn find(relative: &Path, accept: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    std::iter::once(cache_dir())
        .chain(read_only_dirs())
        .map(|dir| dir.join(relative))
        .find(|path| accept(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_that_cannot_be_created_is_not_writable() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        let err = probe_writable(&file.join("cache")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR), "{err}");
        probe_writable(&tmp.path().join("cache")).unwrap();
        assert!(tmp.path().join("cache").is_dir());
        assert_eq!(std::fs::read_dir(tmp.path().join("cache")).unwrap().count(), 0, "probe left behind");
    }
}
