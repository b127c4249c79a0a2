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
    /// The main job: boot the reference guest on every reference profile and report.
    Run {
        /// Where run directories go.
        #[arg(long, default_value = "artifacts")]
        artifacts: PathBuf,
    },
    /// Boot one VM, stream its console, stop at a pattern or at power-off.
    Boot {
        /// A shipped profile name (see vm-profiles/) or a path to a profile file.
        #[arg(long, default_value = "uefi")]
        profile: String,
        /// A disk image or ISO path, or reference:tiny / reference:tiny-iso / reference:tiny-sb.
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
        Command::Run { artifacts } => runtime_block_on(run_reference(artifacts)),
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

/// Until scenarios land, the main job boots the tiny reference guest on each reference
/// profile and checks its report line.
async fn run_reference(artifacts: PathBuf) -> ExitCode {
    if let Err(e) = host::ensure_runtime() {
        return fail(2, e);
    }
    let cases = [
        ("uefi-tpm", "reference:tiny", "efi=1 secureboot=0 tpm=2 share=ok"),
        ("uefi-tpm", "reference:tiny-iso", "efi=1 secureboot=0 tpm=2 share=ok"),
        ("uefi-secureboot", "reference:tiny-sb", "efi=1 secureboot=1 tpm=0 share=ok"),
    ];
    // Say which acceleration the table's times were taken under before the table starts.
    if let Ok(info) = host::qemu::info() {
        let _ = host::accel::choose(&info.path, &info.version);
    }
    let run_id = bootproof::vm::rundir::new_run_id();
    let mut failures = 0;
    let report_line =
        regex::bytes::Regex::new(r"bootproof-tiny: efi=\S+ secureboot=\S+ tpm=\S+ share=\S+").expect("valid");
    println!("{:<18} {:<20} {:<7} {:>7}  detail", "profile", "image", "result", "time");
    for (profile_name, image, expected) in cases {
        let profile = match bootproof::profile::resolve(profile_name) {
            Ok(p) => p,
            Err(e) => return fail(2, e),
        };
        let name = format!("{profile_name}-{}", image.trim_start_matches("reference:"));
        let run_dir = artifacts.join("run").join(&run_id).join(&name);
        let req = BootRequest {
            profile,
            image: Some(image.into()),
            until: Some(report_line.clone()),
            timeout: None,
            run_dir,
            echo_console: false,
        };
        let (ok, time, detail) = match boot(req).await {
            Ok(r) => {
                let seen = match &r.outcome {
                    bootproof::vm::boot::Outcome::Reached { matched } => {
                        matched.trim_start_matches("bootproof-tiny: ").to_string()
                    }
                    _ => r.summary(),
                };
                (seen == expected, format!("{:.1}s", r.elapsed_secs), seen)
            }
            Err(e) => (false, "-".into(), e.to_string()),
        };
        failures += usize::from(!ok);
        println!(
            "{:<18} {:<20} {:<7} {:>7}  {detail}",
            profile_name,
            image,
            if ok { "ok" } else { "FAILED" },
            time
        );
    }
    println!("artifacts: {}", artifacts.join("run").join(&run_id).display());
    if failures == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
