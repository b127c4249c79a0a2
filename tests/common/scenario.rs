//! Running a scenario written inline by a test: the text is saved as
//! `<dir>/scenario.toml`, loaded as a file (so relative paths and errors are a file's),
//! and run by the real runner with its run directories under `<dir>/artifacts`.
//! Included with `#[path = "common/scenario.rs"] mod scenario_run;` by the tests that
//! need it.

use std::path::Path;

use bootproof::report::ScenarioReport;
use bootproof::scenario::{Scenario, runner};

/// Fails the test, saying what the host lacks, when it cannot boot real VMs.
pub fn ready() {
    if let Err(e) = bootproof::host::ensure_runtime() {
        panic!("this test boots real VMs and the host lacks what they need:\n{e}");
    }
}

pub async fn run(dir: &Path, text: &str) -> ScenarioReport {
    let file = dir.join("scenario.toml");
    std::fs::write(&file, text).unwrap();
    let scenario = Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
    runner::run(&scenario, &runner::RunnerOptions::new(dir.join("artifacts"))).await
}
