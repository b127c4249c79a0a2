//! Runs one scenario: a VM for its profile and image, its steps in order (each with
//! its own timeout, scaled under TCG, logged with start and end), its checks (even
//! when a step failed, where they still can), then a report with everything known.
//!
//! Owns: the order of things and turning each outcome into a [`StepReport`],
//! [`CheckReport`] or [`Failure`]; what goes wrong before the steps is a [`RunError`].
//! Must not: print (the caller renders the report), or hold a VM outside the host's
//! VM budget. Every value spliced into a guest command is quoted
//! ([`crate::agent::quote`]); guest output is read with the parsers of
//! [`crate::logs`].
//!
//! `wait_journal` polls the journal through the guest agent (`systemctl is-active`,
//! `journalctl -o json --cursor-file`) rather than a live virtio journal port as
//! DESIGN.md sketches: it needs no guest-side unit and works on any systemd image
//! that has an agent; the streaming port can replace it without changing the format.
//!
//! A scenario with `start` runs on a fork of its checkpoint ([`crate::vm::checkpoint`]):
//! built first, in `checkpoint/` of the run directory, when the cache lacks it; with
//! checkpoints off, the checkpoint's steps run first on a cold boot instead. A fork whose
//! profile ends with the power button ends differently from a cold run (a departure
//! from "every run ends as its profile says"): its machine is thrown away, so the
//! journal is exported into the share through the agent and QEMU is quit, instead of a
//! guest shutdown that takes 10 s and more under TCG (see `end_fork`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::agent::{Agent, AgentError, quote};
use crate::checks::{self, CheckContext, Verdict};
use crate::host::accel::Accel;
use crate::logs::Finding;
use crate::profile::{self, Profile};
use crate::report::{CheckReport, CheckpointReport, Failure, ScenarioReport, Status, StepReport};
use crate::vm::boot::{host_facts, resolve_image};
use crate::vm::plan::Plan;
use crate::vm::rundir::{RunLayout, new_run_id};
use crate::vm::{Ending, Vm, VmOptions, checkpoint};

use super::model::{Action, Checkpoint, JournalWait, Scenario, SecretSource, Step, UnitState};
use super::{ImageOverride, budget};
use crate::pattern::{BytePattern, Pattern};

/// What kept a scenario from reaching its steps.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "secret `{name}`: environment variable {var} is not set; set it (or {override_var}) to the secret"
    )]
    SecretUnset { name: String, var: String, override_var: String },
    #[error("secret `{name}`: cannot read {}: {source}", path.display())]
    SecretFile {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret `{name}`: {source}")]
    SecretReference {
        name: String,
        #[source]
        source: Box<crate::images::ImageError>,
    },
    #[error("scenario `{0}` has no steps and no checks: it would pass without checking anything")]
    NothingToCheck(String),
    #[error(transparent)]
    Profile(#[from] crate::profile::ProfileError),
    #[error("run directory {}: {source}", path.display())]
    RunDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Boot(#[from] Box<crate::vm::boot::BootError>),
    #[error(transparent)]
    Plan(#[from] crate::vm::plan::PlanError),
    #[error("waiting for a VM slot: {0}")]
    Slot(#[source] std::io::Error),
    #[error("cdrom `{spec}` is not an ISO 9660 disc image")]
    NotADisc { spec: String },
    #[error("kickstart {}: {source}", path.display())]
    Kickstart {
        path: PathBuf,
        #[source]
        source: crate::installer::oemdrv::OemdrvError,
    },
    #[error("the Debian installer run: {0}")]
    Installer(String),
    #[error("kickstart {}: cannot read it: {source}", path.display())]
    KickstartRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Vm(#[from] Box<crate::vm::VmError>),
    #[error("share `{tag}`: {message}")]
    Share { tag: String, message: String },
    #[error("bootproof's server for the restricted network: {0}")]
    Server(String),
    #[error(transparent)]
    CheckpointFile(crate::scenario::ScenarioError),
    #[error("checkpoint `{name}`: {message}")]
    Checkpoint { name: String, message: String },
    #[error("OCR for the scenario's text steps: {0}")]
    Ocr(#[source] crate::screen::ocr::OcrError),
    #[error("checkpoint `{name}` could not be built (its run: {}): {}: {}", run_dir.display(), failure.what, failure.seen)]
    CheckpointBuild { name: String, run_dir: PathBuf, failure: Box<Failure> },
}

impl RunError {
    /// The failure as the report shows it: what failed and what was expected of it.
    fn failure(&self) -> Failure {
        let (what, expected) = match self {
            RunError::SecretUnset { name, .. }
            | RunError::SecretFile { name, .. }
            | RunError::SecretReference { name, .. } => (format!("secret `{name}`"), "the secret's value"),
            RunError::NothingToCheck(_) => ("scenario".into(), "at least one step or check"),
            RunError::Profile(_) => ("profile".into(), "a valid profile"),
            RunError::RunDir { .. } => ("run directory".into(), "a writable run directory"),
            RunError::Boot(_) | RunError::Plan(_) => {
                ("setup".into(), "an image, firmware and QEMU to run it")
            }
            RunError::Slot(_) => ("VM slot".into(), "a free VM slot"),
            RunError::NotADisc { .. } => ("cdrom".into(), "an ISO image"),
            RunError::Installer(_) => {
                ("preseed".into(), "the mirror, the preseed and the server that shows them")
            }
            RunError::Kickstart { .. } | RunError::KickstartRead { .. } => {
                ("kickstart".into(), "a kickstart on an OEMDRV disk")
            }
            RunError::Vm(_) => ("VM start".into(), "a running VM"),
            RunError::Share { tag, .. } => (format!("share `{tag}`"), "a directory to hand the guest"),
            RunError::Server(_) => ("server".into(), "bootproof's HTTP server on loopback"),
            RunError::CheckpointFile(_) => ("checkpoint file".into(), "a checkpoint file `start` names"),
            RunError::Checkpoint { name, .. } => (format!("checkpoint `{name}`"), "the checkpoint cache"),
            RunError::Ocr(_) => ("setup".into(), "tesseract, for the `wait_screen = { text }` steps"),
            RunError::CheckpointBuild { name, run_dir, failure } => {
                // The build's own failure is the reason: say it as the build said it.
                return Failure {
                    what: format!("checkpoint `{name}` (built in {}): {}", run_dir.display(), failure.what),
                    expected: failure.expected.clone(),
                    seen: failure.seen.clone(),
                };
            }
        };
        Failure { what, expected: expected.into(), seen: self.to_string() }
    }
}

/// Progress, for a live display; the runner itself prints nothing.
#[derive(Debug, Clone)]
pub enum Progress {
    WaitingForSlot { max_vms: usize },
    Booting,
    Step { index: usize, total: usize, description: String },
    Checks { total: usize },
    ShuttingDown,
}

pub type ProgressFn = std::sync::Arc<dyn Fn(&str, Progress) + Send + Sync>;

#[derive(Clone)]
pub struct RunnerOptions {
    /// Run directories go to `<artifacts>/<scenario>/<run-id>/`.
    pub artifacts: PathBuf,
    pub echo_console: bool,
    pub progress: Option<ProgressFn>,
    /// How the report tells the user to rerun the scenario alone.
    pub rerun: Rerun,
    /// Scenarios with `start` fork their checkpoint (built once, cached); `false` boots
    /// each cold, running the checkpoint's steps first (`BOOTPROOF_CHECKPOINTS=0`,
    /// `bootproof run --no-checkpoints`).
    pub checkpoints: bool,
}

/// `BOOTPROOF_CHECKPOINTS`: `0`, `false`, `no` or `off` turn checkpoints off.
pub fn checkpoints_from_env() -> bool {
    checkpoints_on(std::env::var("BOOTPROOF_CHECKPOINTS").ok().as_deref())
}

fn checkpoints_on(value: Option<&str>) -> bool {
    value.is_none_or(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "0" | "false" | "no" | "off"))
}

impl RunnerOptions {
    /// Run directories under `artifacts`, no console echo, no progress, reruns with
    /// `bootproof run`.
    pub fn new(artifacts: impl Into<PathBuf>) -> RunnerOptions {
        RunnerOptions {
            artifacts: artifacts.into(),
            echo_console: false,
            progress: None,
            rerun: Rerun::Cli { image: None },
            checkpoints: checkpoints_from_env(),
        }
    }
}

/// The command that reruns one scenario alone, as reports print it: it works when
/// pasted into a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rerun {
    /// `bootproof run FILE` (or `--exact NAME` for a shipped scenario without a file
    /// on disk), with the `--image` override the run had.
    Cli { image: Option<ImageOverride> },
    /// `cargo test --test NAME -- --exact SCENARIO`.
    CargoTest { test: String },
}

impl Rerun {
    pub fn command(&self, scenario: &Scenario) -> String {
        match self {
            Rerun::CargoTest { test } => {
                format!("cargo test --test {} -- --exact {}", quote(test), quote(&scenario.name))
            }
            Rerun::Cli { image } => {
                let what = match scenario.file.as_ref().filter(|f| f.is_file()) {
                    Some(f) => {
                        let abs = std::path::absolute(f).unwrap_or_else(|_| f.clone());
                        quote(&abs.display().to_string())
                    }
                    None => format!("--exact {}", quote(&scenario.name)),
                };
                let image =
                    image.as_ref().map(|o| format!(" --image {}", quote(&o.to_string()))).unwrap_or_default();
                format!("bootproof run {what}{image}")
            }
        }
    }
}

/// A step that did not do what it should, with what was expected and what was seen.
#[derive(Debug)]
struct StepError {
    expected: String,
    seen: String,
}

impl StepError {
    fn new(expected: impl Into<String>, seen: impl Into<String>) -> StepError {
        StepError { expected: expected.into(), seen: seen.into() }
    }
}

/// The whole scenario, whatever happens: setup errors become a failed report too.
pub async fn run(scenario: &Scenario, opts: &RunnerOptions) -> ScenarioReport {
    let (run_dir, mut report) = new_report(scenario, opts);
    let mut vm_start = None;
    let outcome = match Checkpoint::locate(scenario) {
        Err(e) => Err(RunError::CheckpointFile(e)),
        Ok(None) => execute(scenario, opts, &run_dir, &mut vm_start, &mut report, Boot::Cold).await,
        // Checkpoints off: the same machine, reached by a cold boot and the steps.
        Ok(Some(cp)) if !opts.checkpoints => {
            execute(&cp.prepend_to(scenario), opts, &run_dir, &mut vm_start, &mut report, Boot::Cold).await
        }
        Ok(Some(cp)) => execute(scenario, opts, &run_dir, &mut vm_start, &mut report, Boot::Fork(&cp)).await,
    };
    if let Err(e) = outcome {
        report.failure.get_or_insert(e.failure());
    }
    finish(&run_dir, &mut report, vm_start);
    let _ = crate::report::html::write_index(&opts.artifacts);
    report
}

/// Findings, the verdict, the times, and `summary.json`.
fn finish(run_dir: &Path, report: &mut ScenarioReport, vm_start: Option<Instant>) {
    report.findings = findings(run_dir);
    // Something must have been checked: a step that ran or a check that looked.
    let checked = report.steps.iter().any(|s| s.status == Status::Passed) || !report.checks.is_empty();
    report.passed = report.failure.is_none()
        && checked
        && report.steps.iter().all(|s| s.status == Status::Passed)
        && report.checks.iter().all(|c| c.status == Status::Passed);
    report.elapsed_secs = vm_start.map_or(0.0, |t: Instant| t.elapsed().as_secs_f64());
    report.ended_unix = unix_now();
    write_summary(run_dir, report);
}

/// A scenario that never got a VM because `what` failed before it (e.g. building its
/// reference image), reported and written like any failed run.
pub fn not_run(scenario: &Scenario, opts: &RunnerOptions, what: &str, seen: String) -> ScenarioReport {
    let (run_dir, mut report) = new_report(scenario, opts);
    report.failure = Some(Failure { what: what.into(), expected: "a running VM".into(), seen });
    write_summary(&run_dir, &mut report);
    let _ = crate::report::html::write_index(&opts.artifacts);
    report
}

fn new_report(scenario: &Scenario, opts: &RunnerOptions) -> (PathBuf, ScenarioReport) {
    let started_unix = unix_now();
    let run_dir = opts.artifacts.join(&scenario.name).join(new_run_id());
    let report = ScenarioReport {
        scenario: scenario.name.clone(),
        file: scenario.file.clone(),
        passed: false,
        profile: scenario.profile.clone(),
        image: scenario.image.clone(),
        accel: "unknown".into(),
        run_dir: run_dir.clone(),
        started_unix,
        ended_unix: started_unix,
        vm_started_unix: None,
        vm_ended_unix: None,
        elapsed_secs: 0.0,
        queued_secs: 0.0,
        timeout_secs: scenario.timeout.as_secs_f64(),
        agent: None,
        steps: Vec::new(),
        checks: Vec::new(),
        findings: Vec::new(),
        failure: None,
        last_console_lines: Vec::new(),
        rerun: opts.rerun.command(scenario),
        checkpoint: None,
    };
    (run_dir, report)
}

/// Redacts the report, sweeps what others wrote into the run directory (QEMU's log,
/// the guest's share) for secrets, and writes `summary.json` and `report.html`.
fn write_summary(run_dir: &Path, report: &mut ScenarioReport) {
    report.redact();
    // The kickstart disk holds the secrets as the guest needed them; the redacted
    // kickstart stays as installer/ks.cfg.
    let _ = std::fs::remove_file(run_dir.join(OEMDRV_IMAGE));
    if run_dir.is_dir() {
        let _ = crate::redact::sweep(run_dir);
    }
    if std::fs::create_dir_all(run_dir).is_ok() {
        // Whole or not at all: another process may be rebuilding the index from it.
        let _ = crate::report::html::write_atomic(&run_dir.join("summary.json"), &report.to_json());
        let _ = crate::report::html::write_report(run_dir, report);
    }
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

fn tell(opts: &RunnerOptions, scenario: &Scenario, p: Progress) {
    if let Some(f) = &opts.progress {
        f(&scenario.name, p);
    }
}

/// How a run's machine comes to be.
enum Boot<'a> {
    /// Firmware, bootloader, kernel: the image as it is.
    Cold,
    /// A fork of this checkpoint, built first when the cache lacks it.
    Fork(&'a Checkpoint),
    /// Building a checkpoint: the checkpoint's steps on a cold boot with the forks'
    /// profile, then the machine saved into `staging` as the cache entry for `key`.
    Build { checkpoint: &'a Checkpoint, profile: Box<Profile>, key: String, staging: PathBuf },
}

async fn execute(
    scenario: &Scenario,
    opts: &RunnerOptions,
    run_dir: &Path,
    vm_start: &mut Option<Instant>,
    report: &mut ScenarioReport,
    boot: Boot<'_>,
) -> Result<(), RunError> {
    if scenario.steps.is_empty() && scenario.checks.is_empty() {
        return Err(RunError::NothingToCheck(scenario.name.clone()));
    }
    // Secrets first: a missing one is reported as that, before anything is built or boots.
    let secrets = resolve_secrets(scenario)?;
    for secret in secrets.values() {
        crate::redact::register(secret);
    }
    if let Boot::Fork(cp) = &boot {
        // The fork never types them, but its guest may still show them.
        for (name, src) in &cp.secrets {
            crate::redact::register(&secret_value(name, src)?);
        }
    }
    let profile = match &boot {
        Boot::Build { profile, .. } => (**profile).clone(),
        Boot::Fork(_) | Boot::Cold => profile_for(scenario)?,
    };
    let layout = RunLayout::create(run_dir)
        .map_err(|source| RunError::RunDir { path: run_dir.to_path_buf(), source })?;
    let image = resolve_image(&scenario.image).map_err(Box::new)?;
    let host = host_facts(&profile, &layout.share_dir()).map_err(Box::new)?;
    report.accel = host.accel.as_str().into();
    // Text steps read the screen with tesseract: installed (or its absence reported)
    // now, before anything boots.
    let reads_text = scenario.steps.iter().any(|st| {
        matches!(&st.action, Action::Screen(m) if matches!(m.target, super::model::ScreenTarget::Text(_)))
    });
    if reads_text {
        let lost = |e: tokio::task::JoinError| {
            Err(crate::screen::ocr::OcrError::Run { program: "tesseract".into(), what: e.to_string() })
        };
        tokio::task::spawn_blocking(crate::screen::ocr::ensure)
            .await
            .unwrap_or_else(lost)
            .map_err(RunError::Ocr)?;
    }
    let mut plan = Plan::new(&profile, Some(&image), &host, &layout)?;
    installer_media(scenario, &secrets, &mut plan)?;
    // Lives as long as the run: the server and the preseed it shows.
    let _served = match &scenario.preseed {
        Some(run) => Some(debian_installer(run, &secrets, &mut plan)?),
        None if plan.network.is_some() => Some(restricted_server(scenario, &profile, &mut plan)?),
        None => None,
    };
    let saved = match &boot {
        Boot::Fork(cp) => {
            let saved = ensure_checkpoint(cp, scenario, opts, &profile, &plan, run_dir, report).await?;
            saved.apply(&mut plan);
            Some(saved)
        }
        _ => None,
    };
    let queued = Instant::now();
    let _slot = budget::acquire(profile.memory, |max| {
        tell(opts, scenario, Progress::WaitingForSlot { max_vms: max })
    })
    .await
    .map_err(RunError::Slot)?;
    report.queued_secs = queued.elapsed().as_secs_f64();
    // The scenario's time limit counts from its VM's start: time spent waiting for a
    // slot is reported apart (queued_secs), never taken from the scenario.
    let started = Instant::now();
    *vm_start = Some(started);
    let deadline = started + host.accel.scale(scenario.timeout);
    report.timeout_secs = host.accel.scale(scenario.timeout).as_secs_f64();
    tell(opts, scenario, Progress::Booting);
    report.vm_started_unix = Some(unix_now());
    let options = VmOptions { echo_console: opts.echo_console };
    let mut vm = match &saved {
        Some(saved) => {
            let _ = std::fs::copy(saved.console(), layout.dir.join(checkpoint::FORK_CONSOLE));
            Vm::restore(plan, options, &saved.incoming()).await
        }
        None => Vm::launch(plan, options).await,
    }
    .map_err(Box::new)?;
    let live = Live::watch(&vm, &scenario.allow_findings);
    let mut ctx = StepCtx {
        vm: &mut vm,
        live,
        resets_seen: 0,
        accel: host.accel,
        deadline,
        secrets: &secrets,
        agent: None,
        transport: None,
        powered_off: false,
        agent_failed: false,
        kept: Vec::new(),
    };
    if let Some(saved) = &saved {
        let restored = resume_fork(&mut ctx, saved).await;
        if let Some(c) = &mut report.checkpoint {
            c.restore_secs = Some(started.elapsed().as_secs_f64());
        }
        if let Err(e) = restored {
            report.failure = Some(Failure {
                what: format!("checkpoint `{}` restore", saved.meta.name),
                expected: e.expected,
                seen: e.seen,
            });
            ctx.vm.quit().await;
            report.last_console_lines = ctx.vm.console().tail();
            return Ok(());
        }
    }
    let (checks_at, total) = (checks_position(&scenario.steps), scenario.steps.len());
    for (i, step) in scenario.steps.iter().enumerate() {
        if i == checks_at {
            run_checks(scenario, opts, &mut ctx, report, true).await;
        }
        tell(opts, scenario, Progress::Step { index: i + 1, total, description: step.action.describe() });
        // A failed step skips the steps after it; a failed check does not: the checks
        // before a final power_off are assertions, and the power-off still drives the
        // guest to write what the later checks read.
        let step_failed = report.steps.iter().any(|s| s.status != Status::Passed);
        let step_report = if step_failed {
            skipped(i, step, started)
        } else {
            run_step(i, step, &mut ctx, scenario, started, report).await
        };
        report.steps.push(step_report);
    }
    if let Boot::Build { checkpoint: cp, key, staging, .. } = &boot {
        report.agent = ctx.transport.take();
        if report.failure.is_none() {
            let build_secs = started.elapsed().as_secs_f64();
            if let Err(e) = save_checkpoint(&mut ctx, cp, scenario, key, staging, run_dir, build_secs).await {
                report.failure = Some(Failure {
                    what: format!("checkpoint `{}` save", cp.name),
                    expected: e.expected,
                    seen: e.seen,
                });
            }
        }
        ctx.vm.quit().await;
        report.vm_ended_unix = Some(unix_now());
        report.last_console_lines = ctx.vm.console().tail();
        return Ok(());
    }
    if checks_at == scenario.steps.len() {
        run_checks(scenario, opts, &mut ctx, report, true).await;
    }
    report.agent = ctx.transport.take();
    tell(opts, scenario, Progress::ShuttingDown);
    let fork_ended = match &saved {
        Some(saved) if !ctx.powered_off && ctx.vm.plan().end == crate::profile::End::PowerButton => {
            let ended = end_fork(&mut ctx, saved).await;
            if let Some(c) = &mut report.checkpoint {
                c.ended = Some(ended.to_string());
            }
            matches!(ended, ForkEnd::Quit)
        }
        _ => false,
    };
    if !ctx.powered_off && !fork_ended {
        match ctx.vm.plan().end {
            crate::profile::End::PowerButton => {
                let grace = host.accel.scale(profile.timeouts.shutdown).min(Duration::from_secs(60));
                ctx.vm.shutdown(grace).await;
            }
            crate::profile::End::Kill => {
                ctx.vm.quit().await;
            }
        }
    }
    // What the guest left in the share is complete only now that the VM is gone (the
    // journal is exported as it powers off), and reading it needs no running guest.
    run_checks(scenario, opts, &mut ctx, report, false).await;
    report.vm_ended_unix = Some(unix_now());
    report.last_console_lines = ctx.vm.console().tail();
    Ok(())
}

/// The checkpoint's steps (actions and timeouts, not their lines: a comment changes
/// nothing) and secret sources, as text for its cache key.
fn steps_text(cp: &Checkpoint) -> String {
    let steps: Vec<_> = cp.steps.iter().map(|s| (&s.action, s.timeout)).collect();
    format!("{steps:?}\n{:?}", cp.secrets)
}

/// The saved machine for `cp` on this scenario's image and profile: from the cache, or
/// built now (its run directory is `checkpoint/` inside this run's, its steps in this
/// run's report). Concurrent runs needing the same key wait for one build.
async fn ensure_checkpoint(
    cp: &Checkpoint,
    scenario: &Scenario,
    opts: &RunnerOptions,
    profile: &Profile,
    plan: &Plan,
    run_dir: &Path,
    report: &mut ScenarioReport,
) -> Result<checkpoint::Saved, RunError> {
    let key = checkpoint::key(plan, &format!("{profile:?}"), &steps_text(cp));
    report.checkpoint = Some(CheckpointReport {
        name: cp.name.clone(),
        key: key.clone(),
        file: cp.file.clone(),
        built: false,
        build_secs: None,
        build_run_dir: None,
        restore_secs: None,
        steps: Vec::new(),
        ended: None,
    });
    let root = checkpoint::root();
    let cp_err = |e: checkpoint::CheckpointError| RunError::Checkpoint {
        name: cp.name.clone(),
        message: e.to_string(),
    };
    let _lock = checkpoint::lock(&root, &cp.name, &key).await.map_err(cp_err)?;
    if let Some(saved) = checkpoint::lookup(&root, &cp.name, &key) {
        return Ok(saved);
    }
    let build_dir = run_dir.join("checkpoint");
    let staging = root.join(&cp.name).join(format!(".staging-{}-{}", std::process::id(), new_run_id()));
    std::fs::create_dir_all(&staging).map_err(|source| RunError::RunDir { path: staging.clone(), source })?;
    let build = Scenario {
        name: format!("{} (checkpoint {})", scenario.name, cp.name),
        timeout: cp.timeout,
        secrets: cp.secrets.clone(),
        steps: cp.steps.clone(),
        checks: Vec::new(),
        start: None,
        file: Some(cp.file.clone()),
        ..scenario.clone()
    };
    let (_, mut build_report) = new_report(&build, opts);
    build_report.run_dir = build_dir.clone();
    let mut build_start = None;
    let boot = Boot::Build {
        checkpoint: cp,
        profile: Box::new(profile.clone()),
        key: key.clone(),
        staging: staging.clone(),
    };
    let t0 = Instant::now();
    let outcome =
        Box::pin(execute(&build, opts, &build_dir, &mut build_start, &mut build_report, boot)).await;
    if let Err(e) = outcome {
        build_report.failure.get_or_insert(e.failure());
    }
    finish(&build_dir, &mut build_report, build_start);
    let _ = std::fs::remove_dir_all(&staging);
    if let Some(c) = &mut report.checkpoint {
        c.built = true;
        c.build_secs = Some(t0.elapsed().as_secs_f64());
        c.build_run_dir = Some(build_dir.clone());
        c.steps = build_report.steps.clone();
    }
    match checkpoint::lookup(&root, &cp.name, &key) {
        Some(saved) if build_report.passed => Ok(saved),
        _ => {
            let f = build_report.failure.unwrap_or_else(|| Failure {
                what: "checkpoint".into(),
                expected: "the checkpoint saved".into(),
                seen: "no cache entry after the build".into(),
            });
            Err(RunError::CheckpointBuild { name: cp.name.clone(), run_dir: build_dir, failure: Box::new(f) })
        }
    }
}

/// After the checkpoint's steps: the guest's 9P mounts taken down (a mounted
/// virtio-9p export blocks migration, and a fork mounts its own share), its writes
/// flushed, the state saved, QEMU quit, and the entry committed to the cache.
async fn save_checkpoint(
    ctx: &mut StepCtx<'_>,
    cp: &Checkpoint,
    scenario: &Scenario,
    key: &str,
    staging: &Path,
    run_dir: &Path,
    build_secs: f64,
) -> Result<(), StepError> {
    let limit = ctx.accel.scale(Duration::from_secs(60));
    let mut mounts = Vec::new();
    if ctx.vm.plan().agent != crate::vm::plan::AgentPlan::default() {
        const BEFORE: &str = "before saving";
        let listed = ctx.agent_ok("cat /proc/mounts", limit, BEFORE).await?;
        mounts = checkpoint::GuestMount::parse_proc_mounts(&String::from_utf8_lossy(&listed.stdout));
        for m in mounts.iter().rev() {
            ctx.agent_ok(&m.umount_command(), limit, BEFORE).await?;
        }
        ctx.agent_ok("sync", limit, BEFORE).await?;
    }
    let state = staging.join("state");
    let saving =
        checkpoint::save_state(ctx.vm.qmp(), &state, ctx.accel.scale(Duration::from_secs(120))).await;
    if let Err(e) = saving {
        return Err(StepError::new("the machine saved to a file", e.to_string()));
    }
    ctx.vm.quit().await;
    let meta = checkpoint::Meta {
        name: cp.name.clone(),
        key: key.to_string(),
        file: cp.file.clone(),
        image: scenario.image.clone(),
        qemu_version: checkpoint::qemu_version(&ctx.vm.plan().qemu),
        created_unix: unix_now(),
        build_secs,
        build_run_dir: run_dir.to_path_buf(),
        mounts,
        disks: Vec::new(),
        vars: false,
        tpm: false,
    };
    let console = ctx.vm.plan().layout.console_log();
    checkpoint::commit(ctx.vm.plan(), staging, &console, meta)
        .map_err(|e| StepError::new("the checkpoint kept in the cache", e.to_string()))?;
    Ok(())
}

/// How a fork ends when its profile says "power button": the machine is thrown away,
/// so instead of its shutdown (10 s and more under TCG) the journal is exported into
/// the per-run share as `journal.export`, as the shipped images do while powering off
/// (the findings and share checks read it), and QEMU is quit. A guest without
/// `journalctl`, or without the share mounted, gets the power button after all.
/// Returns what happened, for the report.
async fn end_fork(ctx: &mut StepCtx<'_>, saved: &checkpoint::Saved) -> ForkEnd {
    let Some(share) = saved.meta.mounts.iter().find(|m| m.source == crate::vm::plan::SHARE_TAG) else {
        return ForkEnd::PowerButton("the checkpoint had no `bootproof` share mounted".into());
    };
    let limit = ctx.limit(Some(Duration::from_secs(30)));
    let dir = quote(&share.target);
    let cmd = format!(
        "journalctl -b -o export --no-pager > {dir}/.journal.export.tmp && mv {dir}/.journal.export.tmp {dir}/journal.export"
    );
    match ctx.agent_ok(&cmd, limit, "to export the journal").await {
        Ok(_) => {
            ctx.vm.quit().await;
            ForkEnd::Quit
        }
        Err(e) => ForkEnd::PowerButton(format!("exporting the journal: {}", e.seen)),
    }
}

/// How a fork's machine ended (`summary.json`'s `checkpoint.ended`).
enum ForkEnd {
    /// QEMU quit after the journal was exported into the share.
    Quit,
    /// The power button after all, and why.
    PowerButton(String),
}

impl std::fmt::Display for ForkEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForkEnd::Quit => {
                f.write_str("quit after exporting the journal to the share (a fork's machine is thrown away)")
            }
            ForkEnd::PowerButton(why) => write!(f, "power button ({why})"),
        }
    }
}

/// A fork's first moments: its agent answers, its clock is set to now (the saved one
/// stopped when the checkpoint was saved), and the 9P shares the checkpoint had
/// mounted are mounted again, now the fork's own.
async fn resume_fork(ctx: &mut StepCtx<'_>, saved: &checkpoint::Saved) -> Result<(), StepError> {
    let limit = ctx.limit(Some(Duration::from_secs(30)));
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
    let mut commands = vec![format!("date -u -s @{now} >/dev/null")];
    commands.extend(saved.meta.mounts.iter().map(checkpoint::GuestMount::mount_command));
    for cmd in commands {
        ctx.agent_ok(&cmd, limit, "in the restored guest").await?;
    }
    Ok(())
}

/// Checks that ask the guest look at the running system: before a final `power_off`
/// (which may be followed by `wait_file` steps for what the guest writes to the share
/// as it goes down, such as the journal export), else after all steps. Checks of share
/// files run after every step.
fn checks_position(steps: &[Step]) -> usize {
    let tail = steps.iter().rev().take_while(|s| matches!(s.action, Action::WaitFile { .. })).count();
    match steps.len().checked_sub(tail + 1).map(|i| (i, &steps[i].action)) {
        Some((i, Action::PowerOff)) => i,
        _ => steps.len(),
    }
}

/// The scenario's installer disc (first in the boot order) and kickstart disk. The
/// kickstart, secrets filled in, goes onto an OEMDRV image in the run directory (which
/// the run removes when it ends: it holds the secrets), and a redacted copy is kept
/// as `installer/ks.cfg`.
fn installer_media(
    scenario: &Scenario,
    secrets: &BTreeMap<String, String>,
    plan: &mut Plan,
) -> Result<(), RunError> {
    use crate::vm::plan::{Drive, Image};
    if let Some(spec) = &scenario.cdrom {
        match resolve_image(spec).map_err(Box::new)? {
            Image::Iso { path } => plan.drives.insert(0, Drive::Cdrom { path }),
            _ => return Err(RunError::NotADisc { spec: spec.clone() }),
        }
    }
    if let Some(first) = scenario.kickstart.first() {
        let mut text = String::new();
        for ks in &scenario.kickstart {
            let part = std::fs::read_to_string(ks)
                .map_err(|source| RunError::KickstartRead { path: ks.clone(), source })?;
            text.push_str(&part);
            if !text.ends_with('\n') {
                text.push('\n');
            }
        }
        let text = expand(&text, secrets);
        let layout = plan.layout.clone();
        let image = layout.dir.join(OEMDRV_IMAGE);
        let kickstart_err = |source| RunError::Kickstart { path: first.clone(), source };
        crate::installer::oemdrv::make(&text, &image).map_err(kickstart_err)?;
        let kept = layout.dir.join("installer/ks.cfg");
        let kept_err = |source| RunError::RunDir { path: kept.clone(), source };
        std::fs::create_dir_all(layout.dir.join("installer")).map_err(kept_err)?;
        std::fs::write(&kept, crate::redact::text(&text).as_bytes()).map_err(kept_err)?;
        plan.drives.push(Drive::Disk {
            overlay: layout.overlay(plan.drives.len()),
            base: image,
            base_format: Some(crate::profile::DiskFormat::Raw),
            interface: crate::profile::DiskInterface::Virtio,
        });
    }
    Ok(())
}

/// What a Debian installer run keeps alive: bootproof's server, and the directory of
/// the rendered preseed (outside the run directory: it holds the secrets).
struct Served {
    _server: crate::installer::serve::Server,
    _files: tempfile::TempDir,
}

/// The Debian installer's side of a run: the local mirror, the preseed rendered with
/// the scenario's secrets and bootproof's log capture (a redacted copy kept as
/// `installer/preseed.cfg`), bootproof's server showing both on loopback (its request
/// log in `installer/http.log`), and the guest's way there (port 80 of the server
/// address).
fn debian_installer(
    run: &super::model::PreseedRun,
    secrets: &BTreeMap<String, String>,
    plan: &mut Plan,
) -> Result<Served, RunError> {
    use crate::installer::{self, preseed, serve};
    let fail = |what: String| RunError::Installer(what);
    let Some(network) = plan.network.as_mut() else {
        return Err(fail(format!(
            "profile `{}` has no network; the installer reaches bootproof's mirror through `network = \"restricted\"`",
            plan.name
        )));
    };
    let mirror = crate::images::mirror::ensure().map_err(|e| fail(e.to_string()))?;
    if !mirror.complete() {
        crate::reporter::line(format!(
            "bootproof: warning: the installer mirror lacks {} files the archive did not serve ({}); \
             the install stops where it needs them",
            mirror.missing.len(),
            mirror.missing.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let secret = |name: &String| secrets.get(name).cloned().unwrap_or_default();
    let answers = preseed::Secrets { luks_passphrase: secret(&run.luks), admin_password: secret(&run.admin) };
    let capture = installer::capture::for_ports(&plan.log_ports);
    let extras = preseed::Extras {
        early_commands: capture.early.into_iter().chain(run.early_command.iter().cloned()).collect(),
        late_commands: capture.late.into_iter().chain(run.late_command.iter().cloned()).collect(),
        overrides: run.set.clone(),
    };
    let text = preseed::render(&answers, &extras).map_err(|e| fail(e.to_string()))?;
    let files =
        tempfile::Builder::new().prefix("bootproof-d-i-").tempdir().map_err(|e| fail(e.to_string()))?;
    let io = |e: std::io::Error| fail(e.to_string());
    std::fs::write(files.path().join(preseed::FILE_NAME), &text).map_err(io)?;
    let kept = plan.layout.dir.join("installer");
    std::fs::create_dir_all(&kept).map_err(io)?;
    std::fs::write(kept.join(preseed::FILE_NAME), crate::redact::text(&text).as_bytes()).map_err(io)?;
    let server = serve::Server::start(installer::roots(&mirror, files.path()), &kept.join("http.log"))
        .map_err(|e| fail(e.to_string()))?;
    network.forwards.push(crate::vm::plan::Forward { port: 80, host_port: server.port() });
    Ok(Served { _server: server, _files: files })
}

/// Under `network = "restricted"` (not an installer run): bootproof's HTTP server at
/// `http://10.0.2.100/`, so a guest can show that its network reaches bootproof and
/// nothing else. `/bootproof/run` answers `bootproof <scenario>`; each read-only share
/// (the profile's and the scenario's `[[share]]`s) is served at `/shares/<tag>/`. Requests are logged to `http.log`.
fn restricted_server(scenario: &Scenario, profile: &Profile, plan: &mut Plan) -> Result<Served, RunError> {
    use crate::installer::serve;
    let fail = |e: String| RunError::Server(e);
    let files =
        tempfile::Builder::new().prefix("bootproof-serve-").tempdir().map_err(|e| fail(e.to_string()))?;
    std::fs::write(files.path().join("run"), format!("bootproof {}\n", scenario.name))
        .map_err(|e| fail(e.to_string()))?;
    let mut roots = vec![serve::Root::new("/bootproof", files.path())];
    roots.extend(profile.shares.iter().map(|s| serve::Root::new(&format!("/shares/{}", s.tag), &s.path)));
    let server =
        serve::Server::start(roots, &plan.layout.dir.join("http.log")).map_err(|e| fail(e.to_string()))?;
    let network = plan.network.as_mut().expect("a restricted network");
    network.forwards.push(crate::vm::plan::Forward { port: 80, host_port: server.port() });
    Ok(Served { _server: server, _files: files })
}

/// The kickstart disk in the run directory, removed when the run ends.
const OEMDRV_IMAGE: &str = "oemdrv.img";

fn profile_for(scenario: &Scenario) -> Result<Profile, RunError> {
    let mut p = profile::resolve(&scenario.profile)?;
    // A fork (`start`) sets its clock and mounts its shares through the agent.
    let needs_agent = scenario.start.is_some()
        || scenario.steps.iter().any(|s| matches!(s.action, Action::Run { .. } | Action::WaitJournal(_)))
        || scenario.checks.iter().any(|c| checks::needs_agent(&c.kind));
    if needs_agent && p.agent == profile::AgentKind::None {
        p.agent = profile::AgentKind::Auto;
    }
    if scenario.steps.iter().any(|s| matches!(s.action, Action::Reboot | Action::WaitReset)) {
        p.allow_reboot = true;
    }
    for share in &scenario.shares {
        let path = match share.path.strip_prefix("reference:") {
            Some(_) => crate::images::reference_dir(&share.path)
                .map_err(|e| RunError::Share { tag: share.tag.clone(), message: e.to_string() })?,
            None => PathBuf::from(&share.path),
        };
        if !path.is_dir() {
            let message = format!("{} is not a directory", path.display());
            return Err(RunError::Share { tag: share.tag.clone(), message });
        }
        p.shares.push(profile::Share { tag: share.tag.clone(), path, readonly: true });
    }
    Ok(p)
}

fn resolve_secrets(scenario: &Scenario) -> Result<BTreeMap<String, String>, RunError> {
    scenario.secrets.iter().map(|(name, src)| secret_value(name, src).map(|v| (name.clone(), v))).collect()
}

/// `BOOTPROOF_SECRET_<NAME>` (upper case, `-` as `_`): overrides where any scenario's
/// secret `NAME` comes from, so the shipped scenarios run against a user's own image
/// (`--image`) with that image's passphrase.
pub fn secret_override_var(name: &str) -> String {
    let upper: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("BOOTPROOF_SECRET_{upper}")
}

fn secret_value(name: &str, src: &SecretSource) -> Result<String, RunError> {
    let override_var = secret_override_var(name);
    if let Ok(v) = std::env::var(&override_var) {
        return Ok(v);
    }
    let file = match src {
        SecretSource::Env { var, fallback } => match (std::env::var(var), fallback) {
            (Ok(v), _) => return Ok(v),
            (Err(_), Some(file)) => file.clone(),
            (Err(_), None) => {
                return Err(RunError::SecretUnset { name: name.into(), var: var.clone(), override_var });
            }
        },
        SecretSource::File(file) => file.clone(),
        SecretSource::Reference(r) => crate::images::secret_file(r)
            .map_err(|source| RunError::SecretReference { name: name.into(), source: Box::new(source) })?,
        SecretSource::Generate(len) => {
            return generated_secret(*len).map_err(|source| RunError::SecretFile {
                name: name.into(),
                path: "/dev/urandom".into(),
                source,
            });
        }
    };
    let v = std::fs::read_to_string(&file).map_err(|source| RunError::SecretFile {
        name: name.into(),
        path: file.clone(),
        source,
    })?;
    Ok(v.strip_suffix('\n').unwrap_or(&v).to_string())
}

/// `len` letters and digits from the kernel's random source, with at least one
/// lower-case letter, one upper-case letter and one digit (what password policies
/// commonly ask), by rejection sampling so every character is uniform.
fn generated_secret(len: usize) -> std::io::Result<String> {
    use std::io::Read;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut random = std::fs::File::open("/dev/urandom")?;
    loop {
        let mut out = String::with_capacity(len);
        let mut buf = [0u8; 64];
        while out.len() < len {
            random.read_exact(&mut buf)?;
            // 248 = 4 × 62: bytes above it would favour the first characters.
            out.extend(
                buf.iter()
                    .filter(|b| **b < 248)
                    .map(|b| ALPHABET[(*b % 62) as usize] as char)
                    .take(len - out.len()),
            );
        }
        let has = |f: fn(&char) -> bool| out.chars().any(|c| f(&c));
        if has(char::is_ascii_lowercase) && has(char::is_ascii_uppercase) && has(char::is_ascii_digit) {
            return Ok(out);
        }
    }
}

/// Replaces `${secret:NAME}` with the secret's value.
fn expand(text: &str, secrets: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for (name, value) in secrets {
        out = out.replace(&format!("${{secret:{name}}}"), value);
    }
    out
}

fn has_secret(text: &str) -> bool {
    text.contains("${secret:")
}

/// What the live installer logs (the profile's log ports) have said so far: every
/// finding, and the first error-level one the scenario does not allow, which ends the
/// run.
#[derive(Clone)]
pub(crate) struct Live {
    findings: Arc<Mutex<Vec<Finding>>>,
    count: tokio::sync::watch::Receiver<usize>,
    fatal: tokio::sync::watch::Receiver<Option<Finding>>,
    /// Follows the share's logs while any copy of this is alive.
    _tail: Option<Arc<AbortOnDrop>>,
}

/// Ends a task when the last holder lets go.
pub(crate) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Text lines in, findings out, for one log port (see [`live_analyzer`]).
pub(crate) type LineFindings = Box<dyn FnMut(u64, &[u8]) -> Vec<Finding> + Send>;

impl Live {
    /// Watches every log port of the VM that a live analyzer understands, and under the
    /// p9 share backend the logs the guest writes into its `bootproof` share.
    fn watch(vm: &Vm, allow: &[Pattern]) -> Live {
        let findings: Arc<Mutex<Vec<Finding>>> = Arc::default();
        let (count_tx, count) = tokio::sync::watch::channel(0usize);
        let (fatal_tx, fatal) = tokio::sync::watch::channel(None::<Finding>);
        let record = {
            let (findings, allow) = (findings.clone(), allow.to_vec());
            Arc::new(move |f: Finding| {
                let allowed =
                    allow.iter().any(|a| a.is_match(&f.summary) || f.evidence.iter().any(|e| a.is_match(e)));
                if f.severity >= crate::logs::Severity::Error && !allowed {
                    fatal_tx.send_if_modified(|first| first.is_none() && first.replace(f.clone()).is_none());
                }
                let mut all = findings.lock().unwrap_or_else(|p| p.into_inner());
                all.push(f);
                count_tx.send_replace(all.len());
            })
        };
        for port in vm.log_ports() {
            let Some(mut analyze) = live_analyzer(vm, port) else { continue };
            let file = port.file.strip_prefix(vm.run_dir()).unwrap_or(&port.file).to_path_buf();
            let record = record.clone();
            port.watch(Box::new(move |number, line| {
                for mut f in analyze(number, line) {
                    f.file = file.clone();
                    record(f);
                }
            }));
        }
        let tail = vm.plan().share_server.as_ref().map(|_| {
            let layout = &vm.plan().layout;
            let share_dir = layout.share_dir();
            let shown = share_dir.strip_prefix(&layout.dir).unwrap_or(&share_dir).to_path_buf();
            let events = layout.share_events(crate::vm::plan::SHARE_TAG);
            let record = record.clone();
            let tail = crate::share::tail::Tail::new(events, share_dir, shown, Box::new(move |f| record(f)));
            Arc::new(AbortOnDrop(tokio::spawn(tail.run())))
        });
        Live { findings, count, fatal, _tail: tail }
    }

    /// Resolves with the first fatal finding (never, if none comes).
    async fn fatal(&mut self) -> Finding {
        loop {
            if let Some(f) = self.fatal.borrow_and_update().clone() {
                return f;
            }
            if self.fatal.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The live analyzer for a log port whose format the profile names (or anaconda's
/// port): `logs::live`, fed each line as it arrives.
fn live_analyzer(vm: &Vm, port: &crate::vm::logport::LogPortHandle) -> Option<LineFindings> {
    use crate::profile::LogPortFormat;
    let planned = vm.plan().log_ports.iter().find(|p| p.name == port.name)?;
    let kind = match planned.format? {
        LogPortFormat::AnacondaStream => crate::logs::LogKind::AnacondaStream,
        LogPortFormat::DiSyslog => crate::logs::LogKind::DiSyslog,
    };
    let mut analyzer = crate::logs::live::line_analyzer(kind, &port.file)?;
    Some(Box::new(move |number, line| analyzer.line(number, line)))
}

struct StepCtx<'a> {
    vm: &'a mut Vm,
    live: Live,
    /// Resets the steps have accounted for (`reboot`, `wait_reset`).
    resets_seen: u64,
    accel: Accel,
    deadline: Instant,
    secrets: &'a BTreeMap<String, String>,
    agent: Option<Agent>,
    /// The transport of the first agent that answered: the report names it even when
    /// a `power_off` dropped the agent before the end.
    transport: Option<String>,
    powered_off: bool,
    /// A step already waited for an agent that never answered: the checks then try
    /// briefly instead of waiting minutes more for the same silence.
    agent_failed: bool,
    /// Files the running step kept in the run directory, for its report.
    kept: Vec<PathBuf>,
}

impl StepCtx<'_> {
    /// Records that the running step left `path` in the run directory.
    fn keep(&mut self, path: &Path) {
        let rel = path.strip_prefix(&self.vm.plan().layout.dir).unwrap_or(path);
        self.kept.push(rel.to_path_buf());
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// A step's limit: its own (scaled) or what is left of the scenario's budget.
    fn limit(&self, own: Option<Duration>) -> Duration {
        own.map_or(self.remaining(), |t| self.accel.scale(t).min(self.remaining()))
    }

    async fn agent(&mut self, limit: Duration) -> Result<Agent, StepError> {
        if let Some(a) = &self.agent {
            return Ok(a.clone());
        }
        if self.powered_off {
            return Err(StepError::new(
                "a running guest with an agent",
                "the VM was powered off by an earlier step",
            ));
        }
        let agent = self.vm.agent(limit).await.map_err(|e| {
            self.agent_failed = true;
            StepError::new(format!("a guest agent answering within {limit:.0?}"), e.to_string())
        })?;
        self.transport.get_or_insert_with(|| agent.transport().to_string());
        self.agent = Some(agent.clone());
        Ok(agent)
    }
}

impl StepCtx<'_> {
    /// `command` through the agent within `limit`, the wait for the agent included;
    /// `failed` says what an agent error means to the caller.
    async fn agent_run(
        &mut self,
        command: &str,
        limit: Duration,
        failed: impl FnOnce(AgentError, Duration) -> StepError,
    ) -> Result<crate::agent::CommandOutput, StepError> {
        let started = Instant::now();
        let agent = self.agent(limit).await?;
        let left = limit.saturating_sub(started.elapsed());
        agent.run(command, left).await.map_err(|e| failed(e, left))
    }

    /// `command` through the agent, which must exit 0; `context` ends the messages
    /// ("in the restored guest").
    async fn agent_ok(
        &mut self,
        command: &str,
        limit: Duration,
        context: &str,
    ) -> Result<crate::agent::CommandOutput, StepError> {
        let out = self
            .agent_run(command, limit, |e, _| StepError::new(format!("`{command}` {context}"), e.to_string()))
            .await?;
        if out.exit_code != 0 {
            let seen = format!("exit code {}: {}", out.exit_code, shown(&out.stderr));
            return Err(StepError::new(format!("`{command}` to succeed {context}"), seen));
        }
        Ok(out)
    }
}

fn skipped(i: usize, step: &Step, started: Instant) -> StepReport {
    let now = started.elapsed().as_secs_f64();
    StepReport {
        index: i + 1,
        line: step.line,
        action: step.action.key(),
        description: step.action.describe(),
        status: Status::Skipped,
        started_secs: now,
        ended_secs: now,
        message: Some("skipped: an earlier step failed".into()),
        files: Vec::new(),
    }
}

async fn run_step(
    i: usize,
    step: &Step,
    ctx: &mut StepCtx<'_>,
    scenario: &Scenario,
    started: Instant,
    report: &mut ScenarioReport,
) -> StepReport {
    let t0 = started.elapsed().as_secs_f64();
    let limit = ctx.limit(step.timeout);
    let mut live = ctx.live.clone();
    let mut fatal = None;
    let result = tokio::select! {
        r = tokio::time::timeout(limit + Duration::from_secs(5), perform(&step.action, ctx, limit)) => match r {
            Ok(r) => r,
            Err(_) => Err(StepError::new(format!("done within {limit:.1?}"), "the step did not finish")),
        },
        f = live.fatal() => {
            let seen = format!("the run ended early: {} ({}:{})", f.summary, f.file.display(), f.line);
            fatal = Some(f);
            Err(StepError::new("the step to finish", seen))
        }
    };
    let mut sr = StepReport {
        index: i + 1,
        line: step.line,
        action: step.action.key(),
        description: step.action.describe(),
        status: Status::Passed,
        started_secs: t0,
        ended_secs: started.elapsed().as_secs_f64(),
        message: None,
        files: std::mem::take(&mut ctx.kept),
    };
    if let Err(e) = result {
        sr.status = Status::Failed;
        sr.message = Some(format!("expected {}; seen {}", e.expected, e.seen));
        let file = scenario.file.as_ref().map_or_else(|| scenario.name.clone(), |f| f.display().to_string());
        report.failure = Some(match fatal {
            // The installer's own words are the reason, not the step it interrupted.
            Some(f) => Failure {
                what: format!("installer log {}:{}", f.file.display(), f.line),
                expected: "no error-level finding in the installer's logs (allow_findings lets known-harmless ones pass)"
                    .into(),
                seen: std::iter::once(f.summary.clone()).chain(f.evidence.iter().take(8).cloned()).collect::<Vec<_>>().join("\n"),
            },
            None => Failure {
                what: format!("step {} ({file}:{}) {}", i + 1, step.line, step.action.describe()),
                expected: e.expected,
                seen: e.seen,
            },
        });
    }
    sr
}

async fn perform(action: &Action, ctx: &mut StepCtx<'_>, limit: Duration) -> Result<(), StepError> {
    match action {
        Action::WaitConsole { pattern, fail_on } => wait_console(ctx, pattern, fail_on.as_ref(), limit).await,
        Action::TypeConsole { text } => {
            let text = expand(text, ctx.secrets);
            ctx.vm
                .console()
                .send(text.as_bytes())
                .await
                .map_err(|e| StepError::new("console input accepted", e.to_string()))
        }
        Action::SendKeys { chord } => ctx
            .vm
            .qmp()
            .send_qcodes(&chord.qcodes)
            .await
            .map_err(|e| StepError::new(format!("keys {} sent", chord.text), e.to_string())),
        Action::TypeKeys { text } => {
            let expanded = expand(text, ctx.secrets);
            let sent = if has_secret(text) {
                ctx.vm.qmp().type_secret(&expanded).await
            } else {
                ctx.vm.qmp().type_text(&expanded).await
            };
            sent.map_err(|e| StepError::new("keystrokes accepted", e.to_string()))
        }
        Action::Screenshot { name } => {
            let path = ctx.vm.plan().layout.screenshot(name);
            ctx.vm
                .qmp()
                .screendump(&path)
                .await
                .map_err(|e| StepError::new(format!("{} saved", path.display()), e.to_string()))?;
            ctx.keep(&path);
            Ok(())
        }
        Action::Run { command, exit, stdout, stderr } => {
            run_command(ctx, command, *exit, stdout, stderr, limit).await
        }
        Action::WaitJournal(w) => wait_journal(ctx, w, limit).await,
        Action::WaitFile { path } => wait_file(ctx, path, limit).await,
        Action::PowerOff => power_off(ctx, limit).await,
        Action::Reboot => reboot(ctx, limit).await,
        Action::WaitReset => wait_reset(ctx, limit).await,
        Action::Eject => eject(ctx).await,
        Action::Suspend => suspend(ctx, limit).await,
        Action::Wakeup => wakeup(ctx, limit).await,
        Action::MountShare { tag, path } => mount_share(ctx, tag, path, limit).await,
        Action::WaitFinding { pattern } => wait_finding(ctx, pattern, limit).await,
        Action::Sleep { duration, .. } => {
            tokio::time::sleep(ctx.accel.scale(*duration).min(limit)).await;
            Ok(())
        }
        Action::Screen(m) => screen(ctx, m, limit).await,
    }
}

/// How often `wait_screen` looks again.
const SCREEN_POLL: Duration = Duration::from_millis(500);

/// `wait_screen` / `assert_screen`: screenshots over QMP, each searched for a needle or
/// read by OCR on a blocking thread (it is CPU work). The screenshot that matched stays
/// in the run directory as `screen-<name>.png` (with `screen-<name>.txt`, the text
/// read, for a text step); on a miss, the evidence is kept beside it and named in the
/// failure: the last screenshot, and the needle with the best match seen and its
/// score, or the text read.
async fn screen(
    ctx: &mut StepCtx<'_>,
    m: &super::model::ScreenMatch,
    limit: Duration,
) -> Result<(), StepError> {
    use super::model::ScreenTarget;
    let area = m.area.map_or_else(String::new, |a| format!(" in {a}"));
    let expected = match &m.target {
        ScreenTarget::Needle { path, threshold } => {
            format!("{} on screen{area} with a score of at least {threshold}", path.display())
        }
        ScreenTarget::Text(p) => format!("text matching /{p}/ on screen{area} (OCR)"),
    };
    if ctx.vm.plan().display == crate::profile::Display::None {
        return Err(StepError::new(expected, "the profile has no display (display = \"none\")"));
    }
    match &m.target {
        ScreenTarget::Needle { path, threshold } => {
            screen_needle(ctx, m, path, *threshold, expected, limit).await
        }
        ScreenTarget::Text(p) => screen_text(ctx, m, p, expected, limit).await,
    }
}

/// Takes a screenshot into `shot` and runs `look` on it on a blocking thread.
async fn look_at_screen<T: Send + 'static>(
    ctx: &mut StepCtx<'_>,
    shot: &Path,
    expected: &str,
    look: impl FnOnce(&Path) -> Result<T, String> + Send + 'static,
) -> Result<T, StepError> {
    ctx.vm
        .qmp()
        .screendump(shot)
        .await
        .map_err(|e| StepError::new(expected, format!("no screenshot: {e}")))?;
    let path = shot.to_path_buf();
    tokio::task::spawn_blocking(move || look(&path))
        .await
        .map_err(|e| StepError::new(expected, e.to_string()))?
        .map_err(|e| StepError::new(expected, e))
}

async fn screen_needle(
    ctx: &mut StepCtx<'_>,
    m: &super::model::ScreenMatch,
    needle_path: &Path,
    threshold: f32,
    expected: String,
    limit: Duration,
) -> Result<(), StepError> {
    use crate::screen::{Gray, Needle};
    let stem = needle_path.file_stem().map_or_else(|| "needle".into(), |s| s.to_string_lossy().into_owned());
    let needle =
        Arc::new(Needle::load(needle_path).map_err(|e| StepError::new(expected.clone(), e.to_string()))?);
    let layout = ctx.vm.plan().layout.clone();
    let shot = layout.screenshot(&format!("screen-{stem}"));
    let deadline = Instant::now() + limit;
    // The best match seen, with the picture it was seen in.
    let mut best: Option<(crate::screen::Match, image::DynamicImage)> = None;
    let mut looks = 0;
    loop {
        looks += 1;
        let (n, area) = (needle.clone(), m.area);
        let (found, img) = look_at_screen(ctx, &shot, &expected, move |path| {
            let img = crate::screen::open(path).map_err(|e| e.to_string())?;
            let found = n.find(&Gray::from_image(&img), area).map_err(|e| e.to_string())?;
            Ok((found, img))
        })
        .await?;
        if found.score >= threshold {
            ctx.keep(&shot);
            return Ok(());
        }
        if best.as_ref().is_none_or(|(b, _)| found.score > b.score) {
            best = Some((found, img));
        }
        if !m.wait || Instant::now() + SCREEN_POLL >= deadline {
            break;
        }
        tokio::time::sleep(SCREEN_POLL).await;
    }
    // The evidence: the last screenshot, the needle, and the best match seen.
    let last = layout.screenshot(&format!("screen-{stem}-last"));
    let _ = std::fs::rename(&shot, &last);
    ctx.keep(&last);
    let kept_needle = layout.screenshot(&format!("screen-{stem}-needle"));
    if crate::screen::read_file(needle_path).and_then(|b| std::fs::write(&kept_needle, b)).is_ok() {
        ctx.keep(&kept_needle);
    }
    let (b, img) = best.expect("looked at least once");
    let best_file = layout.screenshot(&format!("screen-{stem}-best"));
    let best_note =
        match img.crop_imm(b.x, b.y, b.w, b.h).save_with_format(&best_file, image::ImageFormat::Png) {
            Ok(()) => {
                ctx.keep(&best_file);
                format!(", the best match cut out as {}", best_file.display())
            }
            Err(e) => format!(" (the best match could not be kept: {e})"),
        };
    let how = if m.wait { format!("{looks} screenshots in {limit:.0?}") } else { "one screenshot".into() };
    Err(StepError::new(
        expected,
        format!(
            "best score {:.3} at {},{} over {how}; kept the last screenshot {}, the needle {}{best_note}",
            b.score,
            b.x,
            b.y,
            last.display(),
            kept_needle.display()
        ),
    ))
}

async fn screen_text(
    ctx: &mut StepCtx<'_>,
    m: &super::model::ScreenMatch,
    pattern: &crate::pattern::Pattern,
    expected: String,
    limit: Duration,
) -> Result<(), StepError> {
    use crate::screen::ocr;
    let program = tokio::task::spawn_blocking(ocr::ensure)
        .await
        .map_err(|e| StepError::new(expected.clone(), e.to_string()))?
        .map_err(|e| StepError::new(expected.clone(), e.to_string()))?;
    let name = text_file_name(pattern.as_str());
    let layout = ctx.vm.plan().layout.clone();
    let shot = layout.screenshot(&format!("screen-{name}"));
    let read_file = layout.dir.join(format!("screen-{name}.txt"));
    let deadline = Instant::now() + limit;
    let mut looks = 0;
    let text = loop {
        looks += 1;
        let (program, area) = (program.clone(), m.area);
        let text = look_at_screen(ctx, &shot, &expected, move |path| {
            ocr::read(&program, path, area).map_err(|e| e.to_string())
        })
        .await?;
        // What was read, beside the screenshot it was read from (swept for secrets
        // with the rest of the run directory).
        let _ = std::fs::write(&read_file, crate::redact::text(&text).as_bytes());
        if pattern.is_match(&text) {
            ctx.keep(&shot);
            ctx.keep(&read_file);
            return Ok(());
        }
        if !m.wait || Instant::now() + SCREEN_POLL >= deadline {
            break text;
        }
        tokio::time::sleep(SCREEN_POLL).await;
    };
    let last = layout.screenshot(&format!("screen-{name}-last"));
    let last_text = layout.dir.join(format!("screen-{name}-last.txt"));
    let _ = std::fs::rename(&shot, &last);
    let _ = std::fs::rename(&read_file, &last_text);
    ctx.keep(&last);
    ctx.keep(&last_text);
    let how = if m.wait { format!("{looks} looks in {limit:.0?}") } else { "one look".into() };
    let read = if text.is_empty() { "nothing".to_string() } else { format!("\n{}", shown(text.as_bytes())) };
    Err(StepError::new(
        expected,
        format!(
            "over {how}, OCR read {read}\n(kept the last screenshot {} and its text {})",
            last.display(),
            last_text.display()
        ),
    ))
}

/// A file name for a text step's screenshot: its regex's words, lower case, joined by
/// dashes (`Login failed` → `login-failed`), at most 40 characters.
fn text_file_name(regex: &str) -> String {
    let words: Vec<String> = regex
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let mut name = String::new();
    for w in words {
        if name.len() + w.len() + 1 > 40 {
            break;
        }
        if !name.is_empty() {
            name.push('-');
        }
        name.push_str(&w);
    }
    if name.is_empty() { "text".into() } else { format!("text-{name}") }
}

async fn wait_console(
    ctx: &mut StepCtx<'_>,
    pattern: &BytePattern,
    fail_on: Option<&BytePattern>,
    limit: Duration,
) -> Result<(), StepError> {
    let mut patterns = vec![pattern.regex()];
    patterns.extend(fail_on.map(BytePattern::regex));
    let expected = match fail_on {
        Some(f) => format!("/{pattern}/ on the serial console within {limit:.1?}, before any /{f}/"),
        None => format!("/{pattern}/ on the serial console within {limit:.1?}"),
    };
    match ctx.vm.console().wait_for_any(&patterns, limit).await {
        Ok((0, _)) => Ok(()),
        Ok((_, seen)) => {
            let tail = ctx.vm.console().tail();
            let last = tail.iter().rev().take(5).rev().cloned().collect::<Vec<_>>().join("\n");
            Err(StepError::new(expected, format!("{seen:?} appeared first (fail_on)\n{last}")))
        }
        Err(e) => Err(StepError::new(expected, e.to_string())),
    }
}

/// Output shown in messages: enough to see what happened, not a flood.
fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(10);
    let mut s = lines[skip..].join("\n");
    if skip > 0 {
        s = format!("... ({skip} lines before)\n{s}");
    }
    s
}

/// `mount_share`: the mount command for the backend the plan chose, run through the
/// agent. The guest kernel's 9P pieces are loaded and checked first, so a kernel
/// without them fails naming the missing module instead of mount's bare "No such device".
async fn mount_share(ctx: &mut StepCtx<'_>, tag: &str, path: &str, limit: Duration) -> Result<(), StepError> {
    let plan = ctx.vm.plan();
    let Some(share) = plan.shares.iter().find(|s| s.tag == tag) else {
        let tags: Vec<&str> = plan.shares.iter().map(|s| s.tag.as_str()).collect();
        return Err(StepError::new(
            format!("a share tagged `{tag}`"),
            format!("this run's shares are {}", tags.join(", ")),
        ));
    };
    let command = crate::share::guest_mount_command(share, plan.share_server.is_some(), path);
    let expected = format!("`{tag}` mounted at {path}");
    let out = ctx.agent_run(&command, limit, |e, _| StepError::new(expected.clone(), e.to_string())).await?;
    if out.exit_code != 0 {
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string()
            + " "
            + String::from_utf8_lossy(&out.stderr).trim();
        return Err(StepError::new(expected, format!("exit code {}: {}", out.exit_code, said.trim())));
    }
    Ok(())
}

async fn run_command(
    ctx: &mut StepCtx<'_>,
    command: &str,
    exit: i32,
    stdout: &Option<Pattern>,
    stderr: &Option<Pattern>,
    limit: Duration,
) -> Result<(), StepError> {
    let expanded = expand(command, ctx.secrets);
    let mut expected = format!("exit code {exit}");
    for (name, re) in [("stdout", stdout), ("stderr", stderr)] {
        if let Some(re) = re {
            expected.push_str(&format!(", {name} matching /{re}/"));
        }
    }
    let out = ctx
        .agent_run(&expanded, limit, |e, left| match e {
            AgentError::Timeout { .. } => {
                StepError::new(format!("{expected} within {left:.1?}"), e.to_string())
            }
            other => StepError::new(expected.clone(), other.to_string()),
        })
        .await?;
    let seen = || {
        format!("exit code {}\nstdout: {}\nstderr: {}", out.exit_code, shown(&out.stdout), shown(&out.stderr))
    };
    if out.exit_code != exit {
        return Err(StepError::new(expected, seen()));
    }
    for (re, bytes) in [(stdout, &out.stdout), (stderr, &out.stderr)] {
        if let Some(re) = re
            && !re.is_match(&String::from_utf8_lossy(bytes))
        {
            return Err(StepError::new(expected, seen()));
        }
    }
    Ok(())
}

const POLL: Duration = Duration::from_millis(1000);

/// Runs a command for a wait: the guest's answer, or the step's failure at once when
/// the agent itself failed (its channel broke, the guest went away) rather than
/// polling on until the timeout. A single slow command only costs its own time.
async fn poll(
    agent: &Agent,
    cmd: &str,
    left: Duration,
    expected: &str,
) -> Result<Option<crate::agent::CommandOutput>, StepError> {
    match agent.run(cmd, left).await {
        Ok(out) => Ok(Some(out)),
        Err(AgentError::Timeout { .. }) => Ok(None),
        Err(e) => Err(StepError::new(expected, format!("the guest agent failed: {e}"))),
    }
}

fn stdout_line(out: &crate::agent::CommandOutput) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn wait_journal(ctx: &mut StepCtx<'_>, w: &JournalWait, limit: Duration) -> Result<(), StepError> {
    let start = Instant::now();
    let agent = ctx.agent(limit).await?;
    let expected = format!("journal: {} within {limit:.1?}", w.describe());
    // journalctl keeps its place in this file between polls, so each poll reads only
    // what is new.
    let cursor_file = format!("/run/bootproof-wait-{:x}", crate::agent::marker::random_id());
    let mut last = String::from("nothing yet");
    while start.elapsed() < limit {
        let left = limit.saturating_sub(start.elapsed()).min(Duration::from_secs(30));
        match w {
            JournalWait::Unit { name, state } => {
                let cmd = format!("systemctl is-active -- {}", quote(name));
                let Some(out) = poll(&agent, &cmd, left, &expected).await? else { continue };
                if out.exit_code == 127 {
                    let why =
                        format!("no systemctl in the guest: {}", String::from_utf8_lossy(&out.stderr).trim());
                    return Err(StepError::new(expected, why));
                }
                let seen = stdout_line(&out);
                if seen == state.as_str() {
                    return Ok(());
                }
                if seen == "failed" && *state == UnitState::Active {
                    let status = format!("systemctl status --no-pager -n 10 -- {}", quote(name));
                    let detail = poll(&agent, &status, left, &expected).await?.map(|o| shown(&o.stdout));
                    return Err(StepError::new(
                        expected,
                        format!("{name} failed\n{}", detail.unwrap_or_default()),
                    ));
                }
                if seen == "inactive"
                    && *state == UnitState::Active
                    && let Some(why) = never_started(&agent, name, left).await
                {
                    return Err(StepError::new(expected, why));
                }
                last = format!("{name} is {}", if seen.is_empty() { "(no answer)" } else { &seen });
            }
            JournalWait::Message { pattern, identifier } => {
                let mut cmd =
                    format!("journalctl -b -o json --no-pager --cursor-file={}", quote(&cursor_file));
                if let Some(id) = identifier {
                    cmd.push_str(&format!(" -t {}", quote(id)));
                }
                let Some(out) = poll(&agent, &cmd, left, &expected).await? else { continue };
                if journal_has(&out.stdout, pattern) {
                    return Ok(());
                }
                last = "no matching journal message".into();
            }
        }
        tokio::time::sleep(POLL).await;
    }
    Err(StepError::new(expected, last))
}

/// Whether a message of `journalctl -o json` output (one entry per line, read with the
/// journal JSON parser) matches.
fn journal_has(output: &[u8], pattern: &Pattern) -> bool {
    output
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| crate::logs::journal::json::json_entry(l).ok())
        .any(|e| e.message.bytes().is_some_and(|m| pattern.is_match(&String::from_utf8_lossy(m))))
}

/// Why an inactive `unit` will not start by itself: the boot has finished and the unit
/// is disabled, masked or missing. A wait for it then fails at once, naming the unit,
/// instead of running out its timeout. None while the boot is still going or the unit
/// could still be started (enabled, static, or pulled in some other way).
async fn never_started(agent: &Agent, unit: &str, limit: Duration) -> Option<String> {
    let text = |o: crate::agent::CommandOutput| String::from_utf8_lossy(&o.stdout).trim().to_string();
    let system = agent.run("systemctl is-system-running", limit).await.map(text).ok()?;
    if !matches!(system.as_str(), "running" | "degraded") {
        return None;
    }
    let enabled =
        agent.run(&format!("systemctl is-enabled -- {}", quote(unit)), limit).await.map(text).ok()?;
    let why = match enabled.as_str() {
        "disabled" | "masked" | "masked-runtime" => enabled.clone(),
        "" | "not-found" => "not found".to_string(),
        _ => return None,
    };
    Some(format!(
        "{unit} is inactive and {why}, and the boot has finished (system {system}): nothing will start it"
    ))
}

async fn wait_file(ctx: &mut StepCtx<'_>, path: &str, limit: Duration) -> Result<(), StepError> {
    let share = ctx.vm.plan().layout.share_dir();
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < limit {
        match crate::vm::share::read_file(&share, path, 64 << 20) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(StepError::new(format!("{path} in the share within {limit:.1?}"), last))
}

async fn power_off(ctx: &mut StepCtx<'_>, limit: Duration) -> Result<(), StepError> {
    ctx.agent = None;
    ctx.powered_off = true;
    match ctx.vm.shutdown(limit).await {
        Ending::Exited { status: Some(0), reason } if reason.as_deref() != Some("guest-reset") => Ok(()),
        other => Err(StepError::new(
            format!("the guest powers off within {limit:.1?} of the power button"),
            format!("{other:?}"),
        )),
    }
}

/// Asks the guest to reboot and returns once QEMU reset the machine and the console
/// marked it, so the next console wait sees only the new boot.
async fn reboot(ctx: &mut StepCtx<'_>, limit: Duration) -> Result<(), StepError> {
    let resets = ctx.vm.console().resets();
    let reset = ctx.vm.qmp().watch("RESET");
    let agent = match ctx.agent.take() {
        Some(a) => Some(a),
        None => ctx.vm.agent(ctx.accel.scale(Duration::from_secs(15)).min(limit)).await.ok(),
    };
    ctx.vm.forget_agent();
    if let Some(agent) = agent {
        // systemd's orderly reboot where there is one; a bare busybox init ignores
        // `reboot`'s signal, so there the kernel is asked directly. The reboot cuts the
        // connection: the answer never comes, which is fine.
        let cmd = "if command -v systemctl >/dev/null; then systemctl reboot; else reboot -f; fi";
        let _ = tokio::time::timeout(Duration::from_secs(5), agent.run(cmd, Duration::from_secs(5))).await;
    } else {
        ctx.vm
            .qmp()
            .send_keys("ctrl-alt-delete")
            .await
            .map_err(|e| StepError::new("ctrl-alt-delete sent", e.to_string()))?;
    }
    let started = Instant::now();
    if !reset.wait(ctx.vm.qmp(), limit).await {
        return Err(StepError::new(format!("a RESET event within {limit:.1?}"), "no reset"));
    }
    let left = limit.saturating_sub(started.elapsed()).max(Duration::from_secs(2));
    if ctx.vm.console().wait_reset_after(resets, left).await {
        ctx.resets_seen = ctx.vm.console().resets();
        Ok(())
    } else {
        Err(StepError::new("the console marking the reset", "QEMU reported a reset the console did not see"))
    }
}

/// Asks the guest to suspend to RAM (S3) and waits for QEMU's `SUSPEND` event. The
/// command returns before the guest sleeps (`--no-block`, or in the background), so
/// no answer is left pending over the sleep; the agent connection is dropped and made
/// anew by the next step that needs it. A guest whose kernel offers no S3 (`deep` in
/// /sys/power/mem_sleep: the profile lacks `acpi_s3 = true`, or the kernel cannot)
/// fails here, saying so: `s2idle` would idle without the machine ever suspending.
async fn suspend(ctx: &mut StepCtx<'_>, limit: Duration) -> Result<(), StepError> {
    const SUSPEND: &str = "grep -qw deep /sys/power/mem_sleep 2>/dev/null || \
        { echo \"no suspend to RAM (S3): /sys/power/mem_sleep offers '$(cat /sys/power/mem_sleep 2>/dev/null)'\" >&2; exit 3; }
        if command -v systemctl >/dev/null; then systemctl --no-block suspend
        else (sleep 1; echo deep > /sys/power/mem_sleep; echo mem > /sys/power/state) >/dev/null 2>&1 & fi";
    let suspended = ctx.vm.qmp().watch("SUSPEND");
    let agent = match ctx.agent.take() {
        Some(a) => a,
        None => ctx
            .vm
            .agent(limit)
            .await
            .map_err(|e| StepError::new("a guest agent to ask for the suspend", e.to_string()))?,
    };
    let out = agent
        .run(SUSPEND, limit)
        .await
        .map_err(|e| StepError::new("the guest agent asking for the suspend", e.to_string()))?;
    ctx.vm.forget_agent();
    if out.exit_code != 0 {
        let mut seen = format!("exit code {}: {}", out.exit_code, shown(&out.stderr));
        if !ctx.vm.plan().acpi_s3 {
            seen += "\n  the profile has no `acpi_s3 = true`: QEMU's ACPI tables offer the guest no S3";
        }
        return Err(StepError::new("the guest suspending to RAM (S3)", seen));
    }
    if suspended.wait(ctx.vm.qmp(), limit).await {
        Ok(())
    } else {
        Err(StepError::new(format!("a SUSPEND event within {limit:.1?}"), "the guest did not suspend"))
    }
}

/// Wakes the guest (`system_wakeup`) and waits for QEMU's `WAKEUP` event.
async fn wakeup(ctx: &mut StepCtx<'_>, limit: Duration) -> Result<(), StepError> {
    let woken = ctx.vm.qmp().watch("WAKEUP");
    ctx.vm
        .qmp()
        .execute("system_wakeup", None)
        .await
        .map_err(|e| StepError::new("QEMU accepting system_wakeup", e.to_string()))?;
    if woken.wait(ctx.vm.qmp(), limit).await {
        Ok(())
    } else {
        Err(StepError::new(
            format!("a WAKEUP event within {limit:.1?}"),
            "no wake-up (was the guest suspended? a `suspend` step comes first)",
        ))
    }
}

/// Waits for the guest to reset the machine by itself (a reset since the last step
/// that accounted for one counts), and for the console to mark it.
async fn wait_reset(ctx: &mut StepCtx<'_>, limit: Duration) -> Result<(), StepError> {
    let seen = ctx.resets_seen;
    if !ctx.vm.console().wait_reset_after(seen, limit).await {
        let why = if ctx.vm.console().is_closed() { "QEMU exited without a reset" } else { "no reset" };
        return Err(StepError::new(format!("the guest resets the machine within {limit:.1?}"), why));
    }
    ctx.resets_seen = ctx.vm.console().resets();
    // The agent that answered before belongs to the old boot.
    ctx.agent = None;
    ctx.vm.forget_agent();
    Ok(())
}

/// Takes the disc out (QMP `eject`, forced: an installer may have locked the tray).
async fn eject(ctx: &mut StepCtx<'_>) -> Result<(), StepError> {
    let drive = ctx.vm.plan().drives.iter().position(|d| matches!(d, crate::vm::plan::Drive::Cdrom { .. }));
    let Some(index) = drive else {
        return Err(StepError::new("a disc to eject", "the machine has no disc drive"));
    };
    let device = format!("drive{index}");
    ctx.vm
        .qmp()
        .eject(&device)
        .await
        .map_err(|e| StepError::new(format!("the disc in {device} ejected"), e.to_string()))
}

/// Waits for a live installer finding whose summary matches.
async fn wait_finding(ctx: &mut StepCtx<'_>, pattern: &Pattern, limit: Duration) -> Result<(), StepError> {
    let expected = format!("a finding matching /{pattern}/ in the installer's logs within {limit:.1?}");
    let mut count = ctx.live.count.clone();
    let found = async {
        loop {
            let hit = ctx
                .live
                .findings
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|f| pattern.is_match(&f.summary));
            if hit {
                return true;
            }
            if count.changed().await.is_err() {
                return false;
            }
        }
    };
    match tokio::time::timeout(limit, found).await {
        Ok(true) => Ok(()),
        _ => {
            let n = ctx.live.findings.lock().unwrap_or_else(|p| p.into_inner()).len();
            let ports = ctx.vm.log_ports().len();
            Err(StepError::new(expected, format!("{n} findings from {ports} log ports, none matching")))
        }
    }
}

/// Runs the scenario's checks that ask the guest (`live`) or the others.
async fn run_checks(
    scenario: &Scenario,
    opts: &RunnerOptions,
    ctx: &mut StepCtx<'_>,
    report: &mut ScenarioReport,
    live: bool,
) {
    let selected: Vec<_> = scenario.checks.iter().filter(|c| checks::needs_agent(&c.kind) == live).collect();
    if selected.is_empty() {
        return;
    }
    tell(opts, scenario, Progress::Checks { total: selected.len() });
    // Checks read console.log: let the lines the guest just printed (a panic that
    // ended a wait mid-flood) reach it first.
    ctx.vm.console().settle(Duration::from_millis(300), Duration::from_secs(2)).await;
    let agent = if live && !ctx.powered_off && !ctx.vm.console().is_closed() {
        let patience = if ctx.agent_failed { 15 } else { 120 };
        let limit = ctx.remaining().min(ctx.accel.scale(Duration::from_secs(patience)));
        ctx.agent(limit).await.map_err(|e| e.seen)
    } else {
        Err("the VM is not running".to_string())
    };
    let layout = ctx.vm.plan().layout.clone();
    let check_ctx = CheckContext {
        agent: agent.as_ref().ok(),
        agent_error: agent.as_ref().err().cloned(),
        run_dir: &layout.dir,
        share: &layout.share_dir(),
        timeout: ctx.accel.scale(Duration::from_secs(60)),
    };
    for c in selected {
        let outcome = checks::builtin(&c.kind).run(&check_ctx).await;
        let status = match outcome.verdict {
            Verdict::Passed => Status::Passed,
            Verdict::Failed => Status::Failed,
            Verdict::NotChecked => Status::NotChecked,
        };
        if !outcome.passed() && report.failure.is_none() {
            let file =
                scenario.file.as_ref().map_or_else(|| scenario.name.clone(), |f| f.display().to_string());
            report.failure = Some(Failure {
                what: format!("check {} ({file}:{})", c.kind.key(), c.line),
                expected: outcome.expected.clone(),
                seen: outcome.message.clone(),
            });
        }
        report.checks.push(CheckReport {
            kind: c.kind.key(),
            line: c.line,
            status,
            message: outcome.message,
        });
    }
}

/// What `bootproof inspect` finds in the run directory (the same call).
fn findings(run_dir: &Path) -> Vec<crate::logs::Finding> {
    if !run_dir.is_dir() {
        return Vec::new();
    }
    crate::inspect::inspect_paths(&[run_dir.to_path_buf()]).findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(actions: Vec<Action>) -> Vec<Step> {
        actions.into_iter().map(|action| Step { action, timeout: None, line: 1 }).collect()
    }

    #[test]
    fn checks_come_before_the_final_power_off_and_the_files_it_leaves() {
        let wait = || Action::WaitFile { path: "journal.export".into() };
        let run = || Action::Run { command: "true".into(), exit: 0, stdout: None, stderr: None };
        assert_eq!(checks_position(&steps(vec![run(), Action::PowerOff])), 1);
        assert_eq!(checks_position(&steps(vec![run(), Action::PowerOff, wait(), wait()])), 1);
        assert_eq!(checks_position(&steps(vec![run(), wait()])), 2);
        assert_eq!(checks_position(&steps(vec![Action::PowerOff, run()])), 2);
        assert_eq!(checks_position(&[]), 0);
    }

    #[test]
    fn checkpoints_are_on_unless_the_variable_says_off() {
        for off in ["0", "false", "no", "off", " OFF "] {
            assert!(!checkpoints_on(Some(off)), "{off}");
        }
        for on in [None, Some("1"), Some("yes"), Some("")] {
            assert!(checkpoints_on(on), "{on:?}");
        }
    }

    #[test]
    fn the_override_variable_is_the_upper_case_name() {
        assert_eq!(secret_override_var("luks"), "BOOTPROOF_SECRET_LUKS");
        assert_eq!(secret_override_var("admin-pw.2"), "BOOTPROOF_SECRET_ADMIN_PW_2");
    }

    #[test]
    fn generated_secrets_are_fresh_mixed_and_as_long_as_asked() {
        let a = secret_value("new", &SecretSource::Generate(20)).unwrap();
        let b = secret_value("new", &SecretSource::Generate(20)).unwrap();
        assert_ne!(a, b);
        for v in [&a, &b] {
            assert_eq!(v.len(), 20);
            assert!(v.chars().all(|c| c.is_ascii_alphanumeric()), "{v}");
            assert!(
                v.chars().any(|c| c.is_ascii_digit()) && v.chars().any(|c| c.is_ascii_uppercase()),
                "{v}"
            );
        }
        assert_eq!(generated_secret(256).unwrap().len(), 256);
    }

    #[test]
    fn a_reference_secret_outside_the_images_list_fails_before_any_build() {
        let src = SecretSource::Reference("installed/build.log".into());
        let err = secret_value("luks", &src).unwrap_err().to_string();
        assert!(err.starts_with("secret `luks`: unknown reference secret `installed/build.log`"), "{err}");
    }
}
