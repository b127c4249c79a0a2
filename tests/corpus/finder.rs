//! Where the real-log corpus is, for the tests and benchmarks that read it.
//!
//! Owns: the one answer to "where is the corpus": the folder named by
//! `BOOTPROOF_CORPUS`, else `../shared/corpus` beside the crate. Must not: copy the
//! corpus anywhere (its README forbids it), or decide what a missing corpus means for a
//! caller beyond saying why and how to fix it.
//!
//! Not part of the library: `tests/corpus` uses it as a module, the benchmarks include
//! this file with `#[path]`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The variable naming the corpus folder.
pub const ENV: &str = "BOOTPROOF_CORPUS";

/// Where the corpus was looked for, and what was found there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The corpus folder.
    Found(PathBuf),
    /// `BOOTPROOF_CORPUS` names a folder that is not there. Whoever set it expects the
    /// corpus to be read, so everything that needs it fails.
    Missing(PathBuf),
    /// `BOOTPROOF_CORPUS` is not set and nothing is at the default place (a plain clone):
    /// what needs the corpus cannot run, and says so.
    Absent(PathBuf),
}

/// The corpus as this process's environment and the crate's place say.
pub fn locate() -> Location {
    locate_from(std::env::var_os(ENV), Path::new(env!("CARGO_MANIFEST_DIR")))
}

/// The corpus for a value of `BOOTPROOF_CORPUS` (a relative path is taken from
/// `crate_dir`, where cargo runs tests and benchmarks) and the crate's folder.
pub fn locate_from(variable: Option<OsString>, crate_dir: &Path) -> Location {
    match variable {
        // Set but empty: a script that meant to name the corpus and failed to.
        Some(dir) if dir.is_empty() => Location::Missing(PathBuf::new()),
        Some(dir) => {
            let dir = crate_dir.join(dir);
            if dir.is_dir() { Location::Found(dir) } else { Location::Missing(dir) }
        }
        None => {
            let dir = crate_dir.join("../shared/corpus");
            if dir.is_dir() { Location::Found(dir) } else { Location::Absent(dir) }
        }
    }
}

impl Location {
    /// The corpus folder, or why there is none and how to get one.
    pub fn dir(&self) -> Result<PathBuf, String> {
        match self {
            Location::Found(dir) => Ok(dir.clone()),
            Location::Missing(dir) => Err(format!(
                "{ENV}={} is not a folder: set it to the real-log corpus, or unset it to use \
                 ../shared/corpus beside the checkout",
                dir.display()
            )),
            Location::Absent(dir) => Err(format!(
                "the real-log corpus is not at {} and {ENV} is not set: run \
                 `{ENV}=/path/to/corpus cargo test --test corpus`, or put the corpus at \
                 ../shared/corpus beside the checkout",
                dir.display()
            )),
        }
    }
}
