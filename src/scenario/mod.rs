//! Scenarios: the file format, and running one against a VM.

pub mod budget;
pub mod model;

pub use model::{Action, Check, CheckKind, Scenario, ScenarioError, Step};
pub mod runner;

use std::path::{Path, PathBuf};

/// Scenario files named directly or found in directories (`*.toml`, sorted by name),
/// each loaded or with the error that names the file; a name used twice is an error.
pub fn discover(paths: &[PathBuf]) -> Vec<Result<Scenario, (String, ScenarioError)>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|f| f.extension().is_some_and(|x| x == "toml") && f.is_file())
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    let mut seen: std::collections::BTreeMap<String, PathBuf> = Default::default();
    files
        .into_iter()
        .map(|f| {
            let stem =
                f.file_stem().map_or_else(|| f.display().to_string(), |s| s.to_string_lossy().into_owned());
            let s = Scenario::load(&f).map_err(|e| (stem.clone(), e))?;
            if let Some(first) = seen.insert(s.name.clone(), f.clone()) {
                let message = format!("scenario name `{}` is also used by {}", s.name, first.display());
                return Err((stem, ScenarioError::Invalid { path: f.clone(), line: 1, column: 1, message }));
            }
            Ok(s)
        })
        .collect()
}

/// The scenarios shipped with bootproof: what `bootproof run` runs without arguments.
pub fn builtin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}
