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
//!
//! A scenario passes only if `bootproof inspect` agrees: its run directory must hold
//! no error-level finding (the same call `inspect` makes), so a green suite and
//! `inspect` never disagree. And its `report.html` shows every screenshot its steps
//! kept, in step order (`sddm-login`: the greeter, then the session).
//! `BOOTPROOF_LOG=debug` shows bootproof's tracing.

use libtest_mimic::{Arguments, Failed, Trial};
use std::path::PathBuf;
use std::sync::Mutex;

use bootproof::report::{ScenarioReport, junit_xml};
use bootproof::scenario::{Scenario, runner};

static REPORTS: Mutex<Vec<ScenarioReport>> = Mutex::new(Vec::new());

fn main() {
    bootproof::reporter::init_tracing();
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
        let xml = junit_xml(&reports, "scenarios");
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
    let opts = runner::RunnerOptions {
        rerun: runner::Rerun::CargoTest { test: "scenarios".into() },
        ..runner::RunnerOptions::new(artifacts)
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failed::from(e.to_string()))?;
    let report = rt.block_on(runner::run(s, &opts));
    let result = if !report.passed {
        Err(Failed::from(report.failure_screen()))
    } else {
        inspect_agrees(&report).and_then(|()| report_shows_screenshots(&report))
    };
    REPORTS.lock().unwrap_or_else(|p| p.into_inner()).push(report);
    result
}

/// A passing scenario's run directory holds no error-level finding: `inspect` on it
/// would exit 0.
fn inspect_agrees(report: &ScenarioReport) -> Result<(), Failed> {
    let inspected = bootproof::inspect::inspect_paths(std::slice::from_ref(&report.run_dir));
    let errors: Vec<String> = inspected
        .findings
        .iter()
        .filter(|f| f.severity >= bootproof::logs::Severity::Error)
        .map(|f| format!("  {}:{}: {}", f.file.display(), f.line, f.summary))
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    Err(Failed::from(format!(
        "scenario `{}` passed, but `bootproof inspect {}` reports error-level findings:\n{}",
        report.scenario,
        report.run_dir.display(),
        errors.join("\n")
    )))
}

/// The run's `report.html` embeds each PNG its steps kept (its bytes, as the page's
/// base64 `data:` URI), in the order of the steps.
fn report_shows_screenshots(report: &ScenarioReport) -> Result<(), Failed> {
    use base64::Engine;
    let page_path = report.run_dir.join("report.html");
    let page = std::fs::read_to_string(&page_path)
        .map_err(|e| Failed::from(format!("{}: {e}", page_path.display())))?;
    // The template escapes `/` in attribute values, as in base64.
    let page = page.replace("&#x2f;", "/");
    let mut after = 0;
    for step in &report.steps {
        for file in step.files.iter().filter(|f| f.extension().is_some_and(|x| x == "png")) {
            let bytes = std::fs::read(report.run_dir.join(file))
                .map_err(|e| Failed::from(format!("{}: {e}", file.display())))?;
            let uri =
                format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(&bytes));
            match page[after..].find(&uri) {
                Some(at) => after += at + uri.len(),
                None => {
                    return Err(Failed::from(format!(
                        "{}: step {} kept {}, which the page does not show after the steps before it",
                        page_path.display(),
                        step.index,
                        file.display()
                    )));
                }
            }
        }
    }
    Ok(())
}
