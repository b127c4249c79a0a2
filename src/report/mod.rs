//! What a scenario run produced, and its renderings: `summary.json`, the one-screen
//! failure message, JUnit XML, and the HTML pages ([`html`]: `report.html` per run,
//! `index.html` over all runs).
//!
//! Owns: the report data and its formatting. Must not: run anything; the runner
//! fills a [`ScenarioReport`], the harness and the CLI print or write it ([`html`]
//! reads the run directory for its pages and writes them).

pub mod html;

use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

use crate::logs::{Finding, Severity};

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub scenario: String,
    pub file: Option<PathBuf>,
    pub passed: bool,
    pub profile: String,
    pub image: String,
    pub accel: String,
    pub run_dir: PathBuf,
    /// Unix time when the scenario started and ended.
    pub started_unix: f64,
    pub ended_unix: f64,
    /// When the VM ran (unix seconds), for the concurrency budget's record.
    pub vm_started_unix: Option<f64>,
    pub vm_ended_unix: Option<f64>,
    /// Seconds from the VM's start to the end of the run (0 when no VM started); the
    /// scenario's `timeout` counts from the same moment.
    pub elapsed_secs: f64,
    /// Seconds spent waiting for a VM slot before that (see `scenario::budget`).
    pub queued_secs: f64,
    pub timeout_secs: f64,
    /// The guest agent's transport, when one answered.
    pub agent: Option<String>,
    pub steps: Vec<StepReport>,
    pub checks: Vec<CheckReport>,
    /// What `inspect` found in the run directory, most severe first.
    pub findings: Vec<Finding>,
    /// The first thing that failed.
    pub failure: Option<Failure>,
    pub last_console_lines: Vec<String>,
    /// The command that reruns this scenario alone (it works when pasted).
    pub rerun: String,
    /// The checkpoint this run was forked from; `None` for a cold boot (also for a
    /// scenario with `start` run with checkpoints off: its steps then include the
    /// checkpoint's).
    pub checkpoint: Option<CheckpointReport>,
}

/// Where a forked run started: `summary.json`'s `"checkpoint": {"name", "key", ...}`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointReport {
    pub name: String,
    /// The cache key (SHA-256, hex) of the saved machine the run restored.
    pub key: String,
    pub file: PathBuf,
    /// This run built the checkpoint (its steps below); else it came from the cache.
    pub built: bool,
    pub build_secs: Option<f64>,
    /// The build's own run directory (inside this run's), when this run built it.
    pub build_run_dir: Option<PathBuf>,
    /// Seconds from QEMU's start to the restored guest answering its agent.
    pub restore_secs: Option<f64>,
    /// The build's steps, when this run built it.
    pub steps: Vec<StepReport>,
    /// How the fork ended, when not by its own steps (see the runner's `end_fork`).
    pub ended: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// 1-based.
    pub index: usize,
    pub line: usize,
    pub action: &'static str,
    pub description: String,
    pub status: Status,
    /// Seconds since the VM started.
    pub started_secs: f64,
    pub ended_secs: f64,
    pub message: Option<String>,
    /// Files the step left in the run directory (screenshots, a needle's evidence),
    /// relative to it, in the order written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub kind: &'static str,
    pub line: usize,
    pub status: Status,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Passed,
    Failed,
    Skipped,
    /// A check that could not look (no agent, nothing to read): a failure, with why.
    NotChecked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::NotChecked => "not-checked",
        }
    }
}

/// What failed first, with what was expected and what was seen.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// e.g. `step 3 (tests/scenarios/x.toml:12) run "false"` or `setup`.
    pub what: String,
    pub expected: String,
    pub seen: String,
}

/// How many findings and console lines the failure screen shows.
const SCREEN_FINDINGS: usize = 5;
const SCREEN_CONSOLE: usize = 10;

impl ScenarioReport {
    /// Removes every registered secret from the report's text (see [`crate::redact`]):
    /// the runner calls it before anything is written or shown, and each rendering
    /// redacts its own output once more.
    pub fn redact(&mut self) {
        use crate::redact::in_place;
        for st in &mut self.steps {
            in_place(&mut st.description);
            st.message.iter_mut().for_each(in_place);
        }
        for c in &mut self.checks {
            in_place(&mut c.message);
        }
        for f in &mut self.findings {
            in_place(&mut f.summary);
            f.evidence.iter_mut().for_each(in_place);
            f.time.iter_mut().for_each(in_place);
        }
        if let Some(f) = &mut self.failure {
            in_place(&mut f.what);
            in_place(&mut f.expected);
            in_place(&mut f.seen);
        }
        self.last_console_lines.iter_mut().for_each(in_place);
        self.agent.iter_mut().for_each(in_place);
    }

    /// `summary.json`'s text.
    pub fn to_json(&self) -> String {
        let json = serde_json::to_string_pretty(self).expect("a report serialises");
        crate::redact::text(&json).into_owned()
    }

    /// The failure message that fits one screen: what failed, expected vs seen, failed
    /// checks, the last console lines, the top findings, where everything is, and the
    /// command that reruns this scenario alone.
    pub fn failure_screen(&self) -> String {
        let rerun = &self.rerun;
        let mut s = format!(
            "scenario `{}` FAILED after {:.1}s under {} ({} on {})\n",
            self.scenario, self.elapsed_secs, self.accel, self.image, self.profile
        );
        if let Some(c) = &self.checkpoint {
            let how = if c.built { "built by this run" } else { "from the cache" };
            s.push_str(&format!("  started:  from checkpoint `{}` ({how}, key {:.16})\n", c.name, c.key));
        }
        if let Some(f) = &self.failure {
            s.push_str(&format!("  failed:   {}\n", f.what));
            s.push_str(&indent_after_label("expected: ", &f.expected));
            s.push_str(&indent_after_label("seen:     ", &f.seen));
        }
        let failed: Vec<&CheckReport> = self.checks.iter().filter(|c| c.status != Status::Passed).collect();
        let passed = self.checks.len() - failed.len();
        let unchecked = failed.iter().filter(|c| c.status == Status::NotChecked).count();
        if !self.checks.is_empty() {
            let of_which = if unchecked > 0 { format!(" ({unchecked} not checked)") } else { String::new() };
            s.push_str(&format!("  checks:   {passed} passed, {} failed{of_which}\n", failed.len()));
            for c in failed {
                s.push_str(&format!("    {} (line {}): {}\n", c.kind, c.line, first_lines(&c.message, 3)));
            }
        }
        if !self.last_console_lines.is_empty() {
            s.push_str("  last console lines:\n");
            let skip = self.last_console_lines.len().saturating_sub(SCREEN_CONSOLE);
            for l in &self.last_console_lines[skip..] {
                s.push_str(&format!("    | {}\n", truncate(l, 160)));
            }
        }
        let serious: Vec<&Finding> =
            self.findings.iter().filter(|f| f.severity >= Severity::Warning).collect();
        if !serious.is_empty() {
            s.push_str("  findings:\n");
            for f in serious.iter().take(SCREEN_FINDINGS) {
                s.push_str(&format!(
                    "    {:8} {}:{}: {}\n",
                    format!("{:?}", f.severity).to_lowercase(),
                    f.file.display(),
                    f.line,
                    truncate(&f.summary, 120)
                ));
            }
            if serious.len() > SCREEN_FINDINGS {
                s.push_str(&format!(
                    "    ... {} more: bootproof inspect {}\n",
                    serious.len() - SCREEN_FINDINGS,
                    self.run_dir.display()
                ));
            }
        }
        s.push_str(&format!("  run dir:  {}\n", self.run_dir.display()));
        s.push_str(&format!("  rerun:    {rerun}\n"));
        crate::redact::text(&s).into_owned()
    }

    /// One line for progress output and tables.
    pub fn one_line(&self) -> String {
        let verdict = if self.passed { "ok" } else { "FAILED" };
        let detail = self.failure.as_ref().map(|f| format!(": {}", f.what)).unwrap_or_default();
        let line =
            format!("{verdict} {} in {:.1}s ({}){detail}", self.scenario, self.elapsed_secs, self.accel);
        crate::redact::text(&line).into_owned()
    }
}

fn indent_after_label(label: &str, text: &str) -> String {
    let mut out = String::new();
    for (i, line) in text.lines().take(8).enumerate() {
        let head = if i == 0 { label.to_string() } else { " ".repeat(label.len()) };
        out.push_str(&format!("  {head}{}\n", truncate(line, 160)));
    }
    if text.lines().count() > 8 {
        out.push_str(&format!("  {}...\n", " ".repeat(label.len())));
    }
    if text.is_empty() {
        out.push_str(&format!("  {label}(nothing)\n"));
    }
    out
}

fn first_lines(text: &str, n: usize) -> String {
    text.lines().take(n).collect::<Vec<_>>().join(" / ")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max).collect();
    format!("{cut}…")
}

/// JUnit XML that CI systems read: one testsuite, one testcase per scenario, each step
/// a property, the console tail as system-out on failure; redacted like every output.
pub fn junit_xml(reports: &[ScenarioReport], suite_name: &str) -> String {
    let xml = junit(reports, suite_name).to_string().expect("JUnit serialises");
    crate::redact::text(&xml).into_owned()
}

fn junit(reports: &[ScenarioReport], suite_name: &str) -> quick_junit::Report {
    use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};
    let mut suite = TestSuite::new(suite_name);
    for r in reports {
        let status = if r.passed {
            TestCaseStatus::success()
        } else {
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
            let what = r.failure.as_ref().map_or_else(|| "failed".to_string(), |f| f.what.clone());
            st.set_message(what);
            st.set_description(r.failure_screen());
            st
        };
        let mut case = TestCase::new(r.scenario.clone(), status);
        case.set_classname("bootproof.scenarios");
        case.set_time(Duration::from_secs_f64(r.elapsed_secs.max(0.0)));
        case.add_property(Property::new("accel", r.accel.clone()));
        case.add_property(Property::new("run_dir", r.run_dir.display().to_string()));
        case.add_property(Property::new("rerun", r.rerun.clone()));
        if let Some(c) = &r.checkpoint {
            case.add_property(Property::new("checkpoint", c.name.clone()));
            case.add_property(Property::new("checkpoint.key", c.key.clone()));
        }
        for st in &r.steps {
            let value = format!(
                "{} {} ({:.1}s)",
                st.status.as_str(),
                st.description,
                st.ended_secs - st.started_secs
            );
            case.add_property(Property::new(format!("step.{}", st.index), value));
        }
        if !r.passed {
            case.set_system_out_lossy(r.last_console_lines.join("\n"));
        }
        suite.add_test_case(case);
    }
    let mut report = quick_junit::Report::new("bootproof");
    report.add_test_suite(suite);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(passed: bool) -> ScenarioReport {
        ScenarioReport {
            scenario: "tiny-run".into(),
            file: None,
            passed,
            profile: "uefi".into(),
            image: "reference:tiny".into(),
            accel: "tcg".into(),
            run_dir: "artifacts/tiny-run/1".into(),
            started_unix: 0.0,
            ended_unix: 12.0,
            vm_started_unix: Some(0.5),
            vm_ended_unix: Some(11.0),
            elapsed_secs: 12.0,
            queued_secs: 0.5,
            timeout_secs: 600.0,
            agent: Some("shell".into()),
            steps: vec![StepReport {
                index: 1,
                line: 5,
                action: "run",
                description: "run \"false\"".into(),
                status: if passed { Status::Passed } else { Status::Failed },
                started_secs: 1.0,
                ended_secs: 2.5,
                message: None,
                files: Vec::new(),
            }],
            checks: vec![],
            findings: vec![],
            failure: (!passed).then(|| Failure {
                what: "step 1 (s.toml:5) run \"false\"".into(),
                expected: "exit code 0".into(),
                seen: "exit code 1\nstderr: boom".into(),
            }),
            last_console_lines: vec!["bootproof-tiny: init started".into()],
            rerun: "cargo test --test scenarios -- --exact tiny-run".into(),
            checkpoint: None,
        }
    }

    #[test]
    fn the_failure_screen_says_what_where_and_how_to_rerun() {
        let screen = sample(false).failure_screen();
        for needle in [
            "FAILED",
            "run \"false\"",
            "expected: exit code 0",
            "seen:     exit code 1",
            "stderr: boom",
            "| bootproof-tiny: init started",
            "run dir:  artifacts/tiny-run/1",
            "--exact tiny-run",
        ] {
            assert!(screen.contains(needle), "{needle:?} missing from:\n{screen}");
        }
        assert!(screen.lines().count() < 30);
    }

    #[test]
    fn junit_has_the_shape_ci_systems_read() {
        let xml = junit_xml(&[sample(true), sample(false)], "scenarios");
        assert!(xml.contains("<testsuites name=\"bootproof\" tests=\"2\""), "{xml}");
        assert!(xml.contains("<testsuite name=\"scenarios\" tests=\"2\""), "{xml}");
        assert!(xml.contains("<testcase name=\"tiny-run\" classname=\"bootproof.scenarios\""), "{xml}");
        assert!(xml.contains("<failure message=\"step 1 (s.toml:5) run &quot;false&quot;\""), "{xml}");
        assert!(xml.contains("<property name=\"step.1\""), "{xml}");
        assert!(xml.contains("<system-out>bootproof-tiny: init started</system-out>"), "{xml}");
    }
}
