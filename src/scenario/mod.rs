//! Scenarios: the file format, and running one against a VM.

pub mod budget;
pub mod model;

pub use crate::checks::CheckKind;
pub use model::{Action, Check, Scenario, ScenarioError, Step};
pub mod runner;
pub mod suite;

use std::path::{Path, PathBuf};

/// Scenario files named directly or found in directories (`*.toml`, sorted by name),
/// each loaded or with the error that names the file; a name used twice is an error.
pub fn discover(paths: &[PathBuf]) -> Vec<Result<Scenario, (String, ScenarioError)>> {
    let mut files = Vec::new();
    let mut unreadable = Vec::new();
    for p in paths {
        if p.is_dir() {
            // A directory that cannot be read is an error, never an empty suite.
            match read_dir_tomls(p) {
                Ok(found) => files.extend(found),
                Err(source) => unreadable
                    .push(Err((p.display().to_string(), ScenarioError::Read { path: p.clone(), source }))),
            }
        } else {
            files.push(p.clone());
        }
    }
    let mut seen: std::collections::BTreeMap<String, PathBuf> = Default::default();
    unreadable
        .into_iter()
        .chain(files.into_iter().map(|f| {
            let stem =
                f.file_stem().map_or_else(|| f.display().to_string(), |s| s.to_string_lossy().into_owned());
            let s = Scenario::load(&f).map_err(|e| (stem.clone(), e))?;
            if let Some(first) = seen.insert(s.name.clone(), f.clone()) {
                let message = format!("scenario name `{}` is also used by {}", s.name, first.display());
                return Err((stem, ScenarioError::Invalid { path: f.clone(), line: 1, column: 1, message }));
            }
            Ok(s)
        }))
        .collect()
}

/// The `*.toml` files directly in `dir`, sorted by name.
fn read_dir_tomls(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "toml") && path.is_file() {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// `--image [FROM=]TO` (and `BOOTPROOF_IMAGE`): runs scenarios against another image
/// without editing them. `TO` alone replaces every scenario's image; with
/// `reference:NAME=` in front, only that of scenarios written for `reference:NAME`, so
/// `reference:installed=/srv/my-remix.qcow2` points the installed-system suite at a
/// user's own build and leaves the tiny-guest scenarios alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOverride {
    pub from: Option<String>,
    pub to: String,
}

impl ImageOverride {
    /// Parses `[reference:NAME=]TO`; a path with `=` in it stays whole.
    pub fn parse(text: &str) -> Result<ImageOverride, String> {
        let (from, to) = match text.split_once('=') {
            Some((from, to)) if from.starts_with("reference:") && !from.contains('/') => {
                (Some(from.to_string()), to)
            }
            _ => (None, text),
        };
        if to.is_empty() {
            return Err(format!("image override `{text}`: no image after `=`"));
        }
        Ok(ImageOverride { from, to: to.to_string() })
    }

    /// Points `scenario` at the override's image when it applies; a relative path is
    /// taken from the current directory, not the scenario's.
    pub fn apply(&self, scenario: &mut Scenario) {
        if self.from.as_ref().is_none_or(|f| *f == scenario.image) {
            scenario.image = if self.to.starts_with("reference:") {
                self.to.clone()
            } else {
                std::path::absolute(&self.to).map_or_else(|_| self.to.clone(), |p| p.display().to_string())
            };
        }
    }
}

/// As written on the command line.
impl std::fmt::Display for ImageOverride {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.from {
            Some(from) => write!(f, "{from}={}", self.to),
            None => f.write_str(&self.to),
        }
    }
}

/// The scenarios shipped with bootproof: what `bootproof run` runs without arguments.
pub fn builtin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(image: &str) -> Scenario {
        let text =
            format!("name = \"s\"\nprofile = \"uefi\"\nimage = \"{image}\"\n[[step]]\npower_off = true\n");
        Scenario::parse(&text, Path::new("/x/s.toml")).unwrap()
    }

    #[test]
    fn an_override_replaces_every_image_or_only_the_named_reference() {
        let all = ImageOverride::parse("/srv/remix.qcow2").unwrap();
        assert_eq!(all, ImageOverride { from: None, to: "/srv/remix.qcow2".into() });
        let mut s = scenario("reference:tiny");
        all.apply(&mut s);
        assert_eq!(s.image, "/srv/remix.qcow2");

        let only = ImageOverride::parse("reference:installed=reference:installed-broken-home").unwrap();
        assert_eq!(only.from.as_deref(), Some("reference:installed"));
        let (mut tiny, mut installed) = (scenario("reference:tiny"), scenario("reference:installed"));
        only.apply(&mut tiny);
        only.apply(&mut installed);
        assert_eq!(tiny.image, "reference:tiny");
        assert_eq!(installed.image, "reference:installed-broken-home");
    }

    #[test]
    fn a_path_with_an_equals_sign_stays_whole_and_an_empty_target_is_refused() {
        assert_eq!(ImageOverride::parse("/srv/a=b.raw").unwrap().to, "/srv/a=b.raw");
        let err = ImageOverride::parse("reference:installed=").unwrap_err();
        assert!(err.contains("no image after `=`"), "{err}");
    }
}
