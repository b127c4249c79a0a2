//! `bootproof inspect`: post-mortem of a run directory, a folder of logs or single files.

use std::path::PathBuf;
use std::process::ExitCode;

/// Runs `inspect` and returns the process exit code (0 no error-level finding,
/// 1 error-level finding, 2 unreadable input).
pub fn run_cli(paths: &[PathBuf], json: bool) -> ExitCode {
    let _ = (paths, json);
    eprintln!("bootproof inspect: not built yet");
    ExitCode::from(2)
}
