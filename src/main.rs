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
        #[arg(long, conflicts_with = "exact")]
        filter: Option<String>,
        /// Only the scenario of exactly this name.
        #[arg(long)]
        exact: Option<String>,
        /// Run against another image: `PATH` or `reference:NAME` for every scenario, or
        /// `reference:installed=PATH` for those written for reference:installed only.
        /// Secrets: BOOTPROOF_SECRET_<NAME> overrides a scenario's secret NAME.
        #[arg(long, env = "BOOTPROOF_IMAGE", value_parser = bootproof::scenario::ImageOverride::parse)]
        image: Option<bootproof::scenario::ImageOverride>,
        /// Boot every scenario cold, running its checkpoint's steps first, instead of
        /// forking a saved machine (as BOOTPROOF_CHECKPOINTS=0 does).
        #[arg(long)]
        no_checkpoints: bool,
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
    /// Cut a needle for `wait_screen` out of a screenshot of a real run: the area
    /// `x,y,w,h` in pixels, saved as a PNG.
    Needle {
        screenshot: PathBuf,
        #[arg(long, value_parser = bootproof::screen::Area::parse)]
        area: bootproof::screen::Area,
        #[arg(long)]
        output: PathBuf,
    },
    /// Reference images built from distribution packages.
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
    /// Debian's installer, unattended: its local mirror and HTTP server (docs/installer.md).
    Installer {
        #[command(subcommand)]
        command: InstallerCommand,
    },
    /// Serve a directory to guests over 9P2000.L on a unix socket (docs/shares.md):
    /// confined to the directory, optionally read-only and with a quota, reporting file
    /// events as JSON lines. One session per connection; runs until killed.
    ShareServer {
        /// The directory served.
        #[arg(long)]
        shared_dir: PathBuf,
        /// The unix socket to listen on (a stale socket file there is replaced).
        #[arg(long)]
        socket_path: PathBuf,
        /// Refuse every request that would change the directory (EROFS).
        #[arg(long)]
        readonly: bool,
        /// At most this much in the directory (512K, 64M, 1G or bytes): writes past it
        /// are cut at the quota, then refused with EDQUOT.
        #[arg(long, value_parser = bootproof::share::parse_size)]
        quota: Option<u64>,
        /// Append one JSON line per file created, written, closed, removed or renamed,
        /// and per refused request, to this file.
        #[arg(long)]
        events: Option<PathBuf>,
        /// Do not confine the process with Landlock (the frame filter still applies).
        #[arg(long)]
        no_landlock: bool,
    },
    /// Join stdin/stdout to a share server's socket: the program QEMU's guestfwd `cmd:`
    /// runs for each guest connection.
    #[command(hide = true)]
    ShareRelay { socket_path: PathBuf },
}

#[derive(Subcommand)]
enum InstallerCommand {
    /// Build (or find in the cache) the local Debian mirror and print its directory;
    /// exit 1 when the archive did not serve every file the install needs.
    Mirror {
        /// Build again even when cached (tries files the archive did not serve again).
        #[arg(long)]
        rebuild: bool,
    },
    /// Serve the mirror and a rendered preseed on 127.0.0.1 until interrupted. The
    /// secrets come from BOOTPROOF_SECRET_LUKS and BOOTPROOF_SECRET_ADMIN.
    Serve {
        /// Where the rendered preseed (d-i/preseed.cfg) and the request log (http.log) go.
        #[arg(long)]
        dir: PathBuf,
        /// A preseed line appended to the template (later answers win); repeatable.
        #[arg(long = "override")]
        overrides: Vec<String>,
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
    bootproof::reporter::init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Command::Doctor { json } => doctor(json),
        Command::Inspect { paths, json } => bootproof::inspect::run_cli(&paths, json),
        Command::Needle { screenshot, area, output } => {
            match bootproof::screen::cut_needle(&screenshot, area, &output) {
                Ok(()) => {
                    println!(
                        "{}: {}x{} at {},{} of {}",
                        output.display(),
                        area.w,
                        area.h,
                        area.x,
                        area.y,
                        screenshot.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(2, e),
            }
        }
        Command::Images { command } => images(command),
        Command::Installer { command } => installer(command),
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
        Command::Run { scenarios, artifacts, junit, filter, exact, image, no_checkpoints } => {
            let filter =
                bootproof::scenario::suite::Filter { exact: exact.is_some(), name: exact.or(filter) };
            runtime_block_on(run_scenarios(scenarios, artifacts, junit, filter, image, no_checkpoints))
        }
        Command::List { scenarios } => list(scenarios),
        Command::ShareServer { shared_dir, socket_path, readonly, quota, events, no_landlock } => {
            let cfg = bootproof::share::ServerConfig {
                shared_dir,
                socket_path,
                readonly,
                quota,
                events,
                msize: bootproof::share::MAX_MSIZE,
            };
            share_server(&cfg, !no_landlock)
        }
        Command::ShareRelay { socket_path } => match bootproof::share::relay(&socket_path) {
            Ok(()) => ExitCode::SUCCESS,
            // stderr reaches the guest through guestfwd: say nothing there.
            Err(_) => ExitCode::from(2),
        },
    }
}

/// `bootproof share-server`: binds, confines itself, says how on stderr, serves.
fn share_server(cfg: &bootproof::share::ServerConfig, landlock: bool) -> ExitCode {
    let server = match bootproof::share::Server::bind(cfg, landlock) {
        Ok(s) => s,
        Err(e) => return fail(2, e),
    };
    eprintln!(
        "bootproof share-server: serving {} on {} ({}{}; confinement: {})",
        cfg.shared_dir.display(),
        cfg.socket_path.display(),
        if cfg.readonly { "read-only" } else { "read-write" },
        cfg.quota.map(|q| format!(", quota {q} bytes")).unwrap_or_default(),
        server.confinement
    );
    match server.serve() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(2, format!("accepting on {}: {e}", cfg.socket_path.display())),
    }
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("bootproof: {message}");
    ExitCode::from(code)
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
    let report = bootproof::doctor::examine();
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

fn installer(command: InstallerCommand) -> ExitCode {
    match command {
        InstallerCommand::Mirror { rebuild } => match bootproof::images::mirror::build(rebuild, &mut |l| {
            bootproof::reporter::line(format!("bootproof: {l}"))
        }) {
            Ok(mirror) => {
                println!("{}", mirror.root.display());
                if mirror.complete() { ExitCode::SUCCESS } else { ExitCode::from(1) }
            }
            Err(e) => fail(2, e),
        },
        InstallerCommand::Serve { dir, overrides } => serve_installer(&dir, overrides),
    }
}

/// `bootproof installer serve`: the mirror and a rendered preseed on loopback until
/// the process is interrupted (docs/installer.md runs an install by hand with it).
fn serve_installer(dir: &std::path::Path, overrides: Vec<String>) -> ExitCode {
    use bootproof::installer::{self, preseed, serve};
    let secret = |name: &str| std::env::var(format!("BOOTPROOF_SECRET_{name}")).ok();
    let (Some(luks_passphrase), Some(admin_password)) = (secret("LUKS"), secret("ADMIN")) else {
        return fail(
            2,
            "set BOOTPROOF_SECRET_LUKS and BOOTPROOF_SECRET_ADMIN: the preseed's LUKS passphrase and admin password",
        );
    };
    let mirror = match bootproof::images::mirror::ensure() {
        Ok(m) => m,
        Err(e) => return fail(2, e),
    };
    let secrets = preseed::Secrets { luks_passphrase, admin_password };
    let extras = preseed::Extras { overrides, ..preseed::Extras::default() };
    let files = dir.join("d-i");
    let text = match preseed::render(&secrets, &extras) {
        Ok(t) => t,
        Err(e) => return fail(2, e),
    };
    if let Err(e) =
        std::fs::create_dir_all(&files).and_then(|()| std::fs::write(files.join(preseed::FILE_NAME), text))
    {
        return fail(2, format!("{}: {e}", files.display()));
    }
    let server = match serve::Server::start(installer::roots(&mirror, &files), &dir.join("http.log")) {
        Ok(s) => s,
        Err(e) => return fail(2, e),
    };
    println!("serving {} and {} at {}", mirror.root.display(), files.display(), server.url());
    let forward = bootproof::vm::plan::Forward { port: 80, host_port: server.port() };
    println!(
        "QEMU: -netdev '{}' -device virtio-net-pci,netdev=n0,romfile=",
        bootproof::vm::argv::netdev_value("n0", &[forward])
    );
    loop {
        std::thread::park();
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

/// `bootproof run`: the suite (scenario::suite) with its live display, then the table.
async fn run_scenarios(
    given: Vec<PathBuf>,
    artifacts: PathBuf,
    junit: Option<PathBuf>,
    filter: bootproof::scenario::suite::Filter,
    image: Option<bootproof::scenario::ImageOverride>,
    no_checkpoints: bool,
) -> ExitCode {
    use bootproof::scenario::runner::{Rerun, RunnerOptions};
    use bootproof::scenario::suite;
    let selection = match suite::select(&scenario_paths(given), &filter, image.as_ref()) {
        Ok(s) => s,
        Err(e) => return fail(2, e),
    };
    for (name, why) in &selection.ignored {
        eprintln!("bootproof: skipping {name} (ignored: {why})");
    }
    if let Err(e) = host::ensure_runtime() {
        return fail(2, e);
    }
    if let Ok(info) = host::qemu::info() {
        let _ = host::accel::choose(&info.path, &info.version);
    }
    let live = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let display = suite::Display::new(selection.scenarios.len(), live);
    let mut opts = RunnerOptions { rerun: Rerun::Cli { image }, ..RunnerOptions::new(&artifacts) };
    opts.checkpoints &= !no_checkpoints;
    let reports = suite::run(&selection.scenarios, &opts, display).await;
    println!("{}", suite::table(&reports));
    let failed = reports.iter().filter(|r| !r.passed).count();
    println!("{} passed, {failed} failed; artifacts in {}", reports.len() - failed, artifacts.display());
    let index = artifacts.join(bootproof::report::html::INDEX_FILE);
    if index.is_file() {
        println!("reports: {} (each run's report.html is linked there)", index.display());
    }
    if let Some(path) = junit
        && let Err(e) = std::fs::write(&path, bootproof::report::junit_xml(&reports, "scenarios"))
    {
        return fail(2, format!("cannot write JUnit to {}: {e}", path.display()));
    }
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
