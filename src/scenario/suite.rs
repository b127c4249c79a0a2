//! A suite run, shared by `bootproof run` and the cargo-test harness: selecting the
//! scenarios, building the reference images they need first, running them side by
//! side as the VM budget allows with live progress, and the summary table.
//!
//! Owns: what a selection means (a filter that selects nothing, or a directory that
//! cannot be read, is an error, never an empty suite that passes), the image
//! pre-build, the live display (indicatif on a terminal, plain lines otherwise) and
//! the table (comfy-table, as wide as the terminal). Must not: parse arguments or
//! decide exit codes (the CLI does).

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::runner::{self, Progress, RunnerOptions};
use super::{ImageOverride, Scenario, ScenarioError};
use crate::report::ScenarioReport;

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("no scenario selected: {why}")]
    NothingSelected { why: String },
}

/// Which scenarios of the given files and directories run.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only scenarios whose name contains this (equals it, with `exact`).
    pub name: Option<String>,
    pub exact: bool,
}

impl Filter {
    fn selects(&self, name: &str) -> bool {
        match &self.name {
            None => true,
            Some(f) if self.exact => name == f,
            Some(f) => name.contains(f.as_str()),
        }
    }
}

/// The scenarios to run, and those passed over with why.
#[derive(Debug)]
pub struct Selection {
    pub scenarios: Vec<Scenario>,
    pub ignored: Vec<(String, String)>,
}

/// Loads the scenarios under `paths`, keeps those the filter selects and that are not
/// ignored, and points them at `image` when given. A file that does not load fails the
/// whole selection (its error names file, line and column); so does a selection that
/// is empty.
pub fn select(
    paths: &[PathBuf],
    filter: &Filter,
    image: Option<&ImageOverride>,
) -> Result<Selection, SuiteError> {
    let mut selection = Selection { scenarios: Vec::new(), ignored: Vec::new() };
    let mut seen = Vec::new();
    for found in super::discover(paths) {
        let mut s = found.map_err(|(_, e)| e)?;
        seen.push(s.name.clone());
        if !filter.selects(&s.name) {
            continue;
        }
        if let Some(why) = &s.ignore {
            selection.ignored.push((s.name.clone(), why.clone()));
            continue;
        }
        if let Some(o) = image {
            o.apply(&mut s);
        }
        selection.scenarios.push(s);
    }
    if selection.scenarios.is_empty() {
        let place = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        let why = match (&filter.name, seen.is_empty(), selection.ignored.is_empty()) {
            (_, true, _) => format!("{place} holds no scenario file (*.toml)"),
            (Some(f), false, true) => format!(
                "{} `{f}` matches none of the {} scenarios in {place} ({})",
                if filter.exact { "--exact" } else { "--filter" },
                seen.len(),
                seen.join(", ")
            ),
            _ => format!("every selected scenario in {place} is ignored"),
        };
        return Err(SuiteError::NothingSelected { why });
    }
    Ok(selection)
}

/// The reference images `scenario` needs: its image and those its secrets come from.
pub fn images_needed(scenario: &Scenario) -> Vec<String> {
    let known = crate::images::known();
    let secrets = scenario.secrets.values().filter_map(|src| src.reference());
    let secret_images = secrets.filter_map(|r| crate::images::secret_name(r).ok().map(|(i, _)| i));
    std::iter::once(scenario.image.strip_prefix("reference:").unwrap_or(&scenario.image))
        .chain(secret_images)
        .filter(|bare| known.contains(bare))
        .map(str::to_string)
        .collect()
}

/// Builds (or finds in the cache) every reference image the scenarios need, one at a
/// time before any VM starts: a build inside a run would stall the other scenarios'
/// VMs sharing the thread. Each image's result, by name.
pub fn build_images(scenarios: &[Scenario]) -> BTreeMap<String, Result<(), String>> {
    let mut built: BTreeMap<String, Result<(), String>> = BTreeMap::new();
    for image in scenarios.iter().flat_map(images_needed) {
        if let std::collections::btree_map::Entry::Vacant(slot) = built.entry(image) {
            let result = crate::images::ensure(slot.key()).map(drop).map_err(|e| e.to_string());
            if let Err(e) = &result {
                crate::reporter::line(format!("bootproof: reference:{}: {e}", slot.key()));
            }
            slot.insert(result);
        }
    }
    built
}

/// What the person running the suite sees while it runs: a spinner per running
/// scenario and a bar for the suite on a terminal, plain stamped lines otherwise;
/// each failure's one-screen report as it ends.
pub struct Display {
    multi: MultiProgress,
    overall: ProgressBar,
    running: Mutex<BTreeMap<String, ProgressBar>>,
    live: bool,
    started: Instant,
}

impl Display {
    /// `live`: draw bars (a terminal); else print plain lines.
    pub fn new(total: usize, live: bool) -> Arc<Display> {
        let target = if live { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let multi = MultiProgress::with_draw_target(target);
        let overall = multi.add(ProgressBar::new(total as u64));
        overall.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise:.dim} [{bar:30}] {pos}/{len} scenarios done {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        if live {
            overall.enable_steady_tick(Duration::from_millis(500));
        }
        Arc::new(Display { multi, overall, running: Mutex::default(), live, started: Instant::now() })
    }

    /// Prints lines above the bars (or plainly).
    pub fn println(&self, text: &str) {
        let text = crate::redact::text(text);
        if self.live {
            let _ = self.multi.println(text.as_ref());
        } else {
            eprintln!("{text}");
        }
    }

    fn progress(&self, name: &str, p: Progress) {
        let what = match p {
            Progress::WaitingForSlot { max_vms } => format!("waiting for a VM slot ({max_vms} at once)"),
            Progress::Booting => "booting".into(),
            Progress::Step { index, total, description } => format!("step {index}/{total} {description}"),
            Progress::Checks { total } => format!("{total} checks"),
            Progress::ShuttingDown => "shutting down".into(),
        };
        if !self.live {
            self.println(&format!("[{:>6.1}s] {name}: {what}", self.started.elapsed().as_secs_f64()));
            return;
        }
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let bar = running.entry(name.to_string()).or_insert_with(|| {
            let bar = self.multi.insert_before(&self.overall, ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix:.bold} {elapsed:>4} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(name.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        bar.set_message(crate::redact::text(&what).into_owned());
    }

    fn finished(&self, report: &ScenarioReport) {
        if let Some(bar) = self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&report.scenario) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        if !report.passed {
            self.println(&report.failure_screen());
        }
        self.println(&report.one_line());
        self.overall.inc(1);
    }

    /// Removes the bars; what was printed stays.
    pub fn finish(&self) {
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }
}

/// Runs the scenarios side by side (the VM budget decides how many VMs at once),
/// after building the reference images they need; a scenario whose image did not
/// build is reported failed without a VM. Reports come back in the scenarios' order.
pub async fn run(scenarios: &[Scenario], opts: &RunnerOptions, display: Arc<Display>) -> Vec<ScenarioReport> {
    let _sink = {
        let display = display.clone();
        crate::reporter::install(move |line| display.println(line))
    };
    let built = build_images(scenarios);
    let unbuilt = |s: &Scenario| {
        images_needed(s).into_iter().find_map(|i| built.get(&i).and_then(|r| r.clone().err()).map(|e| (i, e)))
    };
    let shown = display.clone();
    let progress: runner::ProgressFn = Arc::new(move |name: &str, p: Progress| shown.progress(name, p));
    let opts = RunnerOptions { progress: Some(progress), ..opts.clone() };
    let local = tokio::task::LocalSet::new();
    let mut reports: Vec<Option<ScenarioReport>> = (0..scenarios.len()).map(|_| None).collect();
    local
        .run_until(async {
            let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
            for (index, s) in scenarios.iter().enumerate() {
                if let Some((image, e)) = unbuilt(s) {
                    let what = format!("building reference:{image}");
                    let _ = done_tx.send((index, runner::not_run(s, &opts, &what, e)));
                    continue;
                }
                let (s, opts, done_tx) = (s.clone(), opts.clone(), done_tx.clone());
                tokio::task::spawn_local(async move {
                    let _ = done_tx.send((index, runner::run(&s, &opts).await));
                });
            }
            drop(done_tx);
            while let Some((index, report)) = done_rx.recv().await {
                display.finished(&report);
                reports[index] = Some(report);
            }
        })
        .await;
    display.finish();
    reports.into_iter().flatten().collect()
}

/// The summary table: scenario, result, its own time (from its VM's start), time
/// queued for a VM slot, acceleration, run directory; as wide as the terminal.
pub fn table(reports: &[ScenarioReport]) -> String {
    use comfy_table::{Cell, CellAlignment, ContentArrangement, Table, presets};
    let mut table = Table::new();
    table.load_style(presets::NOTHING).set_content_arrangement(ContentArrangement::Dynamic);
    table.set_header(["scenario", "result", "time", "queued", "accel", "run dir"]);
    for r in reports {
        table.add_row(vec![
            Cell::new(&r.scenario),
            Cell::new(if r.passed { "ok" } else { "FAILED" }),
            Cell::new(format!("{:.1}s", r.elapsed_secs)).set_alignment(CellAlignment::Right),
            Cell::new(format!("{:.1}s", r.queued_secs)).set_alignment(CellAlignment::Right),
            Cell::new(&r.accel),
            Cell::new(r.run_dir.display()),
        ]);
    }
    // Rows start with the scenario's name, as people and scripts read them.
    table.column_iter_mut().for_each(|c| {
        c.set_padding((0, 2));
    });
    crate::redact::text(&table.trim_fmt()).into_owned()
}
