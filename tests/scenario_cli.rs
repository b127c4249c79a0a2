//! The scenarios harness behaves like libtest for people and for CI: `--list` (also in
//! the terse format nextest reads) names every scenario, `--exact NAME` runs just that
//! one, and `BOOTPROOF_JUNIT` writes JUnit XML that a JUnit reader accepts.

use std::path::PathBuf;
use std::process::Command;

/// The `scenarios` test binary cargo built next to this one.
fn scenarios_binary() -> PathBuf {
    let me = std::env::current_exe().unwrap();
    let deps = me.parent().unwrap();
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(deps)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("scenarios-") && p.extension().is_none()
        })
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .expect("cargo builds the scenarios test binary with the other tests; run `cargo test`")
}

fn shipped_scenarios() -> Vec<String> {
    bootproof::scenario::discover(&[bootproof::scenario::builtin_dir()])
        .into_iter()
        .map(|s| s.map(|s| s.name).unwrap_or_else(|(name, e)| panic!("{name}: {e}")))
        .collect()
}

#[test]
fn list_names_every_scenario_in_both_formats() {
    let names = shipped_scenarios();
    assert!(!names.is_empty());
    let out = Command::new(scenarios_binary()).arg("--list").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let terse = Command::new(scenarios_binary()).args(["--list", "--format", "terse"]).output().unwrap();
    let terse = String::from_utf8_lossy(&terse.stdout);
    for name in &names {
        assert!(text.contains(name.as_str()), "{name} missing from --list:\n{text}");
        assert!(
            terse.lines().any(|l| l == format!("{name}: test")),
            "{name} missing from terse list:\n{terse}"
        );
    }
}

#[test]
fn exact_runs_one_scenario_and_junit_has_the_ci_shape() {
    if let Err(e) = bootproof::host::ensure_runtime() {
        panic!("this test boots real VMs and the host lacks what they need:\n{e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let out = Command::new(scenarios_binary())
        .args(["--exact", "tiny-agent"])
        .env("BOOTPROOF_JUNIT", &junit)
        .env("BOOTPROOF_ARTIFACTS", dir.path().join("artifacts"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let filtered_out = shipped_scenarios().len() - 1;
    assert!(
        stdout.contains(&format!("1 passed; 0 failed; 0 ignored; 0 measured; {filtered_out} filtered out")),
        "{stdout}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    let report = quick_junit::Report::deserialize_from_str(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    assert_eq!(report.test_suites.len(), 1);
    let suite = &report.test_suites[0];
    assert_eq!(suite.test_cases.len(), 1);
    let case = &suite.test_cases[0];
    assert_eq!(case.name.as_str(), "tiny-agent");
    assert!(matches!(case.status, quick_junit::TestCaseStatus::Success { .. }));
    assert!(case.properties.iter().any(|p| p.name.as_str() == "step.1"), "{xml}");
    assert_eq!(report.failures, 0);
}
