//! Every scenario is one test: each `tests/scenarios/*.toml` becomes a trial named
//! after the scenario, run by libtest-mimic, so libtest's flags behave as users expect
//! (`--list`, filters, `--exact`, `--ignored`, `--include-ignored`, `--test-threads`)
//! and `cargo nextest` can list and partition them (one test per process).
//!
//! However many threads run, VMs start only as the host's VM budget allows
//! (`BOOTPROOF_MAX_VMS`, else memory and cores; see `scenario::budget`). A failed
//! scenario's message is its one-screen report. `BOOTPROOF_JUNIT=path` writes JUnit XML
//! for the scenarios this process ran (under nextest, use nextest's own JUnit output).
//! `BOOTPROOF_IMAGE=[reference:NAME=]IMAGE` runs them against another image and
//! `BOOTPROOF_SECRET_<NAME>` overrides a secret, as `bootproof run --image` does.

use libtest_mimic::{Arguments, Failed, Trial};
use std::path::PathBuf;
use std::sync::Mutex;

use bootproof::report::{ScenarioReport, junit};
use bootproof::scenario::{Scenario, runner};

static REPORTS: Mutex<Vec<ScenarioReport>> = Mutex::new(Vec::new());

fn main() {
    let args = Arguments::from_args();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let image = std::env::var("BOOTPROOF_IMAGE").ok().map(|text| {
        bootproof::scenario::ImageOverride::parse(&text).unwrap_or_else(|e| panic!("BOOTPROOF_IMAGE: {e}"))
    });
    let trials = bootproof::scenario::discover(&[dir])
        .into_iter()
        .map(|found| match found {
            Ok(mut s) => {
                if let Some(o) = &image {
                    o.apply(&mut s);
                }
                let ignored = s.ignore.is_some();
                Trial::test(s.name.clone(), move || run_one(&s)).with_ignored_flag(ignored)
            }
            Err((name, e)) => Trial::test(name, move || Err(Failed::from(e.to_string()))),
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if let Some(path) = std::env::var_os("BOOTPROOF_JUNIT") {
        let reports = REPORTS.lock().unwrap_or_else(|p| p.into_inner());
        let xml = junit(&reports, "scenarios").to_string().expect("serialisable");
        if let Err(e) = std::fs::write(&path, xml) {
            eprintln!("bootproof: cannot write JUnit to {}: {e}", PathBuf::from(path).display());
        }
    }
    conclusion.exit();
}

fn run_one(s: &Scenario) -> Result<(), Failed> {
    bootproof::host::ensure_runtime().map_err(|e| Failed::from(format!("host set-up: {e}")))?;
    let artifacts = std::env::var_os("BOOTPROOF_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("artifacts"));
    let opts = runner::RunnerOptions { artifacts, echo_console: false, progress: None };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failed::from(e.to_string()))?;
    let report = rt.block_on(runner::run(s, &opts));
    let result = if report.passed {
        Ok(())
    } else {
        Err(Failed::from(
            report.failure_screen(&format!("cargo test --test scenarios -- --exact {}", s.name)),
        ))
    };
    REPORTS.lock().unwrap_or_else(|p| p.into_inner()).push(report);
    result
}
