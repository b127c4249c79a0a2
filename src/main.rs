//! The `bootproof` command line: one clear message and an exit code per outcome.
//! Exit codes: 0 success, 1 a guest or check failed, 2 bad input or a host problem.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use bootproof::host;
use bootproof::vm::boot::{BootRequest, boot};

#[derive(Parser)]
#[command(name = "bootproof", version, about = "Boot OS images in QEMU and prove they work")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenarios (files or directories); without any, the built-in reference suite.
    Run {
        /// Scenario files or directories of them.
        scenarios: Vec<PathBuf>,
        /// Where run directories go.
        #[arg(long, default_value = "artifacts")]
        artifacts: PathBuf,
        /// Also write JUnit XML here.
        #[arg(long, env = "BOOTPROOF_JUNIT")]
        junit: Option<PathBuf>,
        /// Only scenarios whose name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Run against another image: `PATH` or `reference:NAME` for every scenario, or
        /// `reference:installed=PATH` for those written for reference:installed only.
        /// Secrets: BOOTPROOF_SECRET_<NAME> overrides a scenario's secret NAME.
        #[arg(long, env = "BOOTPROOF_IMAGE", value_parser = bootproof::scenario::ImageOverride::parse)]
        image: Option<bootproof::scenario::ImageOverride>,
    },
    /// List the scenarios (files or directories; without any, the built-in suite).
    List { scenarios: Vec<PathBuf> },
    /// Boot one VM, stream its console, stop at a pattern or at power-off.
    Boot {
        /// A shipped profile name (see vm-profiles/) or a path to a profile file.
        #[arg(long, default_value = "uefi")]
        profile: String,
        /// A disk image or ISO path, or reference:tiny / tiny-iso / tiny-sb / installed.
        #[arg(long)]
        image: Option<String>,
        /// Stop successfully when this regex appears on the serial console.
        #[arg(long)]
        until: Option<String>,
        /// Overall timeout as under KVM (e.g. 90s, 5m); scaled under TCG.
        #[arg(long, value_parser = bootproof::profile::parse_duration)]
        timeout: Option<std::time::Duration>,
        /// Where the run directory goes (artifacts/boot/<run-id> by default).
        #[arg(long)]
        artifacts: Option<PathBuf>,
        /// Do not print console lines as they arrive.
        #[arg(long)]
        quiet: bool,
    },
    /// Show what this host offers (QEMU, acceleration, firmware, swtpm, image tools).
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Explain what went wrong, from a run directory, a folder of logs, or files.
    Inspect {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Reference images built from distribution packages.
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
}

#[derive(Subcommand)]
enum ImagesCommand {
    /// Build (or find in the cache) a reference image and print its path.
    Build { name: String },
    /// List the reference images.
    List,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("BOOTPROOF_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Doctor { json } => doctor(json),
        Command::Inspect { paths, json } => bootproof::inspect::run_cli(&paths, json),
        Command::Images { command } => images(command),
        Command::Boot { profile, image, until, timeout, artifacts, quiet } => {
            let until = match until.as_deref().map(regex::bytes::Regex::new).transpose() {
                Ok(u) => u,
                Err(e) => return fail(2, format!("--until: not a valid regex: {e}")),
            };
            let dir = artifacts
                .unwrap_or_else(|| PathBuf::from("artifacts").join("boot"))
                .join(bootproof::vm::rundir::new_run_id());
            runtime_block_on(boot_one(profile, image, until, timeout, dir, !quiet))
        }
        Command::Run { scenarios, artifacts, junit, filter, image } => {
            runtime_block_on(run_scenarios(scenarios, artifacts, junit, filter, image))
        }
        Command::List { scenarios } => list(scenarios),
    }
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("bootproof: {message}");
    ExitCode::from(code)
}

/// `[  12.3s] a: step 2/5 ... · b: booting`, cut to fit a terminal line.
fn live_line(elapsed: f64, doing: &[(String, String)]) -> String {
    let parts: Vec<String> = doing.iter().map(|(name, what)| format!("{name}: {what}")).collect();
    format!("[{elapsed:>6.1}s] {}", parts.join(" · ")).chars().take(150).collect()
}

fn runtime_block_on(fut: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    // One thread: children are spawned from the main thread, which lives as long as
    // the process, so PR_SET_PDEATHSIG fires exactly when bootproof dies.
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt.block_on(fut),
        Err(e) => fail(2, format!("cannot start the async runtime: {e}")),
    }
}

fn doctor(json: bool) -> ExitCode {
    let report = host::doctor::examine();
    if json {
        println!("{}", serde_json::to_string_pretty(&report).expect("serialisable"));
    } else {
        print!("{}", report.render());
    }
    if report.missing_required() { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

fn images(command: ImagesCommand) -> ExitCode {
    match command {
        ImagesCommand::List => {
            for name in bootproof::images::known() {
                println!("reference:{name}");
            }
            ExitCode::SUCCESS
        }
        ImagesCommand::Build { name } => match bootproof::images::ensure(&name) {
            Ok(img) => {
                println!("{}", img.path.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(2, e),
        },
    }
}

async fn boot_one(
    profile: String,
    image: Option<String>,
    until: Option<regex::bytes::Regex>,
    timeout: Option<std::time::Duration>,
    run_dir: PathBuf,
    echo: bool,
) -> ExitCode {
    if let Err(e) = host::ensure_runtime() {
        return fail(2, e);
    }
    let profile = match bootproof::profile::resolve(&profile) {
        Ok(p) => p,
        Err(e) => return fail(2, e),
    };
    let req = BootRequest { profile, image, until, timeout, run_dir, echo_console: echo };
    match boot(req).await {
        Ok(report) => {
            println!("{}", report.summary());
            if !report.success && !report.last_console_lines.is_empty() {
                println!("last console lines:");
                for l in &report.last_console_lines {
                    println!("  | {l}");
                }
            }
            if report.success { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(e) => fail(2, e),
    }
}

fn scenario_paths(given: Vec<PathBuf>) -> Vec<PathBuf> {
    if given.is_empty() { vec![bootproof::scenario::builtin_dir()] } else { given }
}

fn list(scenarios: Vec<PathBuf>) -> ExitCode {
    let mut bad = false;
    for found in bootproof::scenario::discover(&scenario_paths(scenarios)) {
        match found {
            Ok(s) => {
                let file = s.file.as_ref().map(|f| f.display().to_string()).unwrap_or_default();
                let ignored = s.ignore.as_ref().map(|r| format!(" (ignored: {r})")).unwrap_or_default();
                println!("{:<28} {:<20} {:<22} {file}{ignored}", s.name, s.profile, s.image);
            }
            Err((_, e)) => {
                bad = true;
                eprintln!("bootproof: {e}");
            }
        }
    }
    if bad { ExitCode::from(2) } else { ExitCode::SUCCESS }
}

/// Builds the reference images the scenarios need, then runs the scenarios side by side
/// as the VM budget allows, with a live progress line on a terminal (plain lines
/// otherwise), each failure's one-screen report as it ends, then a summary table and
/// where the artifacts are.
async fn run_scenarios(
    given: Vec<PathBuf>,
    artifacts: PathBuf,
    junit: Option<PathBuf>,
    filter: Option<String>,
    image: Option<bootproof::scenario::ImageOverride>,
) -> ExitCode {
    use bootproof::scenario::runner::{self, Progress, RunnerOptions};
    if let Err(e) = host::ensure_runtime() {
        return fail(2, e);
    }
    if let Ok(info) = host::qemu::info() {
        let _ = host::accel::choose(&info.path, &info.version);
    }
    let mut scenarios = Vec::new();
    for found in bootproof::scenario::discover(&scenario_paths(given)) {
        match found {
            Ok(mut s)
                if s.ignore.is_none() && filter.as_ref().is_none_or(|f| s.name.contains(f.as_str())) =>
            {
                if let Some(o) = &image {
                    o.apply(&mut s);
                }
                scenarios.push(s)
            }
            Ok(s) => eprintln!(
                "bootproof: skipping {}{}",
                s.name,
                s.ignore.map(|r| format!(" (ignored: {r})")).unwrap_or_default()
            ),
            Err((_, e)) => return fail(2, e),
        }
    }
    // Reference images first, one at a time with their own progress: a build inside a
    // run would stall the other scenarios' VMs sharing this thread.
    // A scenario whose image did not build is reported failed without running: its
    // run would only try the build again.
    let known = bootproof::images::known();
    let needs: Vec<Vec<String>> = scenarios
        .iter()
        .map(|s| {
            let secrets = s.secrets.values().filter_map(|src| src.reference.as_deref());
            let secret_images =
                secrets.filter_map(|r| bootproof::images::secret_name(r).ok().map(|(i, _)| i));
            std::iter::once(s.image.strip_prefix("reference:").unwrap_or(&s.image))
                .chain(secret_images)
                .filter(|bare| known.contains(bare))
                .map(str::to_string)
                .collect()
        })
        .collect();
    let mut built: std::collections::BTreeMap<String, Result<(), String>> = Default::default();
    for image in needs.iter().flatten().cloned() {
        if let std::collections::btree_map::Entry::Vacant(slot) = built.entry(image) {
            let result = bootproof::images::ensure(slot.key()).map(drop).map_err(|e| e.to_string());
            if let Err(e) = &result {
                eprintln!("bootproof: reference:{}: {e}", slot.key());
            }
            slot.insert(result);
        }
    }
    let unbuilt = |index: usize| needs[index].iter().find_map(|i| Some((i, built[i].clone().err()?)));

    let live = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let started = std::time::Instant::now();
    // What each running scenario is doing, for the live line.
    let doing: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>> = Default::default();
    let shown = doing.clone();
    let progress: runner::ProgressFn = std::sync::Arc::new(move |name: &str, p: Progress| {
        let what = match p {
            Progress::WaitingForSlot { max_vms } => format!("waiting for a VM slot ({max_vms} at once)"),
            Progress::Booting => "booting".into(),
            Progress::Step { index, total, description } => format!("step {index}/{total} {description}"),
            Progress::Checks { total } => format!("{total} checks"),
            Progress::ShuttingDown => "shutting down".into(),
        };
        let elapsed = started.elapsed().as_secs_f64();
        if live {
            let mut doing = shown.lock().unwrap_or_else(|p| p.into_inner());
            match doing.iter_mut().find(|(n, _)| n == name) {
                Some(entry) => entry.1 = what,
                None => doing.push((name.to_string(), what)),
            }
            eprint!("\r\x1b[K{}", live_line(elapsed, &doing));
        } else {
            eprintln!("[{elapsed:>6.1}s] {name}: {what}");
        }
    });
    let opts = RunnerOptions { artifacts: artifacts.clone(), echo_console: false, progress: Some(progress) };
    // All scenarios start together; the VM budget (scenario::budget) decides how many
    // VMs run at once, so on a 2-core host two guests boot side by side.
    let local = tokio::task::LocalSet::new();
    let mut reports: Vec<Option<bootproof::report::ScenarioReport>> = Vec::new();
    local
        .run_until(async {
            let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
            for (index, s) in scenarios.iter().enumerate() {
                reports.push(None);
                if let Some((image, e)) = unbuilt(index) {
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
                let s = &scenarios[index];
                doing.lock().unwrap_or_else(|p| p.into_inner()).retain(|(n, _)| *n != s.name);
                if live {
                    eprint!("\r\x1b[K");
                }
                if !report.passed {
                    eprintln!(
                        "{}",
                        report.failure_screen(&format!(
                            "bootproof run {}",
                            s.file.as_ref().map_or(s.name.clone(), |f| f.display().to_string())
                        ))
                    );
                }
                eprintln!("{}", report.one_line());
                reports[index] = Some(report);
            }
        })
        .await;
    let reports: Vec<_> = reports.into_iter().flatten().collect();
    // `time` is the scenario's own (from its VM slot on); `queued` the wait for a slot.
    println!("{:<28} {:<8} {:>8} {:>8}  {:<5} run dir", "scenario", "result", "time", "queued", "accel");
    for r in &reports {
        let verdict = if r.passed { "ok" } else { "FAILED" };
        println!(
            "{:<28} {:<8} {:>7.1}s {:>7.1}s  {:<5} {}",
            r.scenario,
            verdict,
            r.elapsed_secs,
            r.queued_secs,
            r.accel,
            r.run_dir.display()
        );
    }
    let failed = reports.iter().filter(|r| !r.passed).count();
    println!("{} passed, {failed} failed; artifacts in {}", reports.len() - failed, artifacts.display());
    if let Some(path) = junit {
        let xml = bootproof::report::junit(&reports, "scenarios").to_string().expect("serialisable");
        if let Err(e) = std::fs::write(&path, xml) {
            return fail(2, format!("cannot write JUnit to {}: {e}", path.display()));
        }
    }
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
