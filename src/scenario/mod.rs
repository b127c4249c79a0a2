//! Scenarios: the file format, and running one against a VM.
//!
//! The shipped scenarios (`tests/scenarios/*.toml`) are built into the binary (see
//! build.rs) and addressed as `builtin:tests/scenarios` (all of them) or
//! `builtin:tests/scenarios/<file>.toml`, wherever a scenario path is accepted: so
//! `bootproof run` works away from its source tree, and messages name them by that
//! label.

pub mod budget;
pub mod model;

pub use crate::checks::CheckKind;
pub use model::{Action, Check, Scenario, ScenarioError, Step};
pub mod runner;
pub mod suite;

use std::path::{Path, PathBuf};

/// Where a scenario comes from.
enum Source {
    File(PathBuf),
    /// A shipped scenario: its `builtin:` label and its text.
    Builtin(PathBuf, &'static str),
}

/// Scenario files named directly or found in directories (`*.toml`, sorted by name),
/// and shipped ones (`builtin:` paths), each loaded or with the error that names the
/// file; a name used twice is an error.
pub fn discover(paths: &[PathBuf]) -> Vec<Result<Scenario, (String, ScenarioError)>> {
    let mut sources = Vec::new();
    let mut unreadable = Vec::new();
    for p in paths {
        if let Some(shipped) = builtin(p) {
            sources.extend(shipped);
        } else if p.is_dir() {
            // A directory that cannot be read is an error, never an empty suite.
            match read_dir_tomls(p) {
                Ok(found) => sources.extend(found.into_iter().map(Source::File)),
                Err(source) => unreadable
                    .push(Err((p.display().to_string(), ScenarioError::Read { path: p.clone(), source }))),
            }
        } else {
            sources.push(Source::File(p.clone()));
        }
    }
    let mut seen: std::collections::BTreeMap<String, PathBuf> = Default::default();
    unreadable
        .into_iter()
        .chain(sources.into_iter().map(|source| {
            let (f, loaded) = match source {
                Source::File(f) => {
                    let loaded = Scenario::load(&f);
                    (f, loaded)
                }
                Source::Builtin(label, text) => {
                    let loaded = Scenario::parse(text, &label).map(|mut s| {
                        // Its needles are shipped beside it: `builtin:tests/scenarios/needles/..`.
                        model::needles_relative_to(&mut s.steps, Path::new(BUILTIN_DIR));
                        Scenario { file: Some(label.clone()), ..s }
                    });
                    (label, loaded)
                }
            };
            let stem =
                f.file_stem().map_or_else(|| f.display().to_string(), |s| s.to_string_lossy().into_owned());
            let s = loaded.map_err(|e| (stem.clone(), e))?;
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

/// The shipped scenarios as `(file name, contents)`, sorted: `tests/scenarios/*.toml`
/// at build time (see build.rs).
const SHIPPED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/shipped_scenarios.rs"));

/// The shipped scenarios' address: what `bootproof run` and `list` use by default.
pub const BUILTIN_DIR: &str = "builtin:tests/scenarios";

/// The shipped scenarios a `builtin:` path names: all of them for [`BUILTIN_DIR`], one
/// for `BUILTIN_DIR/<file>.toml`. A `builtin:` path naming none is left to fail as a
/// file that does not exist; any other path is `None`.
fn builtin(path: &Path) -> Option<Vec<Source>> {
    let rest = path.to_str()?.strip_prefix(BUILTIN_DIR)?.trim_end_matches('/');
    let wanted = match rest.strip_prefix('/') {
        Some(file) => Some(file),
        None if rest.is_empty() => None,
        None => return None,
    };
    let shipped = SHIPPED.iter().filter(|(file, _)| wanted.is_none_or(|w| w == *file));
    let sources: Vec<Source> = shipped
        .map(|(file, text)| Source::Builtin(PathBuf::from(format!("{BUILTIN_DIR}/{file}")), text))
        .collect();
    (!sources.is_empty()).then_some(sources)
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

/// The scenarios shipped with bootproof, built into the binary: what `bootproof run`
/// runs without arguments.
pub fn builtin_dir() -> PathBuf {
    PathBuf::from(BUILTIN_DIR)
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
    fn the_builtin_suite_is_every_file_of_tests_scenarios_labelled_builtin() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
        let from_disk: Vec<Scenario> =
            discover(std::slice::from_ref(&dir)).into_iter().map(|r| r.unwrap()).collect();
        let shipped: Vec<Scenario> = discover(&[builtin_dir()]).into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(shipped.len(), from_disk.len());
        for (s, d) in shipped.iter().zip(&from_disk) {
            let file = d.file.as_ref().unwrap().file_name().unwrap().to_string_lossy().into_owned();
            assert_eq!(s.file.as_deref(), Some(Path::new(&format!("builtin:tests/scenarios/{file}"))));
            // Needles: the shipped one (by its label) has the bytes of the file on disk.
            let (mut s, mut d) = (s.clone(), d.clone());
            for (ss, ds) in s.steps.iter_mut().zip(d.steps.iter_mut()) {
                if let (Action::Screen(sm), Action::Screen(dm)) = (&mut ss.action, &mut ds.action)
                    && let (Some(sp), Some(dp)) = (sm.needle_mut(), dm.needle_mut())
                {
                    assert_eq!(
                        crate::screen::read_file(sp).unwrap(),
                        std::fs::read(&*dp).unwrap(),
                        "{}",
                        sp.display()
                    );
                    assert_eq!(sp.strip_prefix(BUILTIN_DIR).unwrap(), dp.strip_prefix(&dir).unwrap());
                    *sp = dp.clone();
                }
            }
            assert_eq!(Scenario { file: None, ..s }, Scenario { file: None, ..d });
        }
    }

    #[test]
    fn a_shipped_scenario_names_no_file_beside_it() {
        // Embedded, a shipped scenario has no directory that a relative path could be
        // relative to: profiles by name, images and discs by reference (or blank), no
        // kickstart or secret from a file.
        for s in discover(&[builtin_dir()]).into_iter().map(|r| r.unwrap()) {
            assert!(
                !s.profile.contains('/') && !s.profile.ends_with(".toml"),
                "{}: profile {}",
                s.name,
                s.profile
            );
            let spec = s.image.starts_with("reference:") || s.image.starts_with("blank:");
            assert!(spec, "{}: image {}", s.name, s.image);
            assert!(s.cdrom.as_ref().is_none_or(|c| c.starts_with("reference:")), "{}: cdrom", s.name);
            assert!(s.kickstart.is_empty(), "{}: a kickstart file", s.name);
            assert!(
                s.secrets.values().all(|src| src.clone().file_mut().is_none()),
                "{}: a secret from a file",
                s.name
            );
            // Needles are shipped too (build.rs): each one a shipped scenario names loads.
            for st in &s.steps {
                if let Action::Screen(m) = &st.action
                    && let model::ScreenTarget::Needle { path, .. } = &m.target
                {
                    assert!(
                        path.starts_with(BUILTIN_DIR),
                        "{}:{}: needle {}",
                        s.name,
                        st.line,
                        path.display()
                    );
                    crate::screen::Needle::load(path)
                        .unwrap_or_else(|e| panic!("{}:{}: {e}", s.name, st.line));
                }
            }
        }
    }

    #[test]
    fn one_shipped_scenario_by_its_label_and_an_unknown_one_fails_naming_it() {
        let one = discover(&[PathBuf::from("builtin:tests/scenarios/tiny-agent.toml")]);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].as_ref().unwrap().name, "tiny-agent");
        let none = discover(&[PathBuf::from("builtin:tests/scenarios/nope.toml")]);
        let (_, e) = none.into_iter().next().unwrap().unwrap_err();
        assert!(e.to_string().contains("builtin:tests/scenarios/nope.toml"), "{e}");
    }

    #[test]
    fn a_path_with_an_equals_sign_stays_whole_and_an_empty_target_is_refused() {
        assert_eq!(ImageOverride::parse("/srv/a=b.raw").unwrap().to, "/srv/a=b.raw");
        let err = ImageOverride::parse("reference:installed=").unwrap_err();
        assert!(err.contains("no image after `=`"), "{err}");
    }
}
