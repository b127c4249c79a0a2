//! Debian's installer (reference:installer) failing and hanging, under bootproof: the
//! two fault scenarios of `tests/faults/`, run by `bootproof run` as a user would.
//!
//! - installer-failure: a preseed with a wrong mirror directory; choose-mirror's own
//!   line in d-i's syslog, read live from its port, ends the run long before the
//!   step's timeout, and `bootproof inspect` on the run directory lists it first.
//! - installer-hang: an early command that never returns; the run fails on its step's
//!   timeout, and the syslog the installer wrote before the hang is in the run
//!   directory, each line stamped as it arrived.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bootproof(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bootproof")).args(args).env_remove("BOOTPROOF_IMAGE").output().unwrap()
}

fn run_dir(artifacts: &Path, name: &str) -> PathBuf {
    let runs: Vec<PathBuf> =
        std::fs::read_dir(artifacts.join(name)).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

fn fault(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/faults")
        .join(format!("{name}.toml"))
        .display()
        .to_string()
}

#[test]
fn a_failing_install_ends_early_on_the_installers_own_line() {
    if let Err(e) = bootproof::host::ensure_runtime() {
        panic!("this test boots real VMs and the host lacks what they need:\n{e}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let artifacts = tmp.path().join("artifacts");
    let out = bootproof(&["run", &fault("installer-failure"), "--artifacts", artifacts.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let dir = run_dir(&artifacts, "installer-failure");
    let s = summary(&dir);
    let what = s["failure"]["what"].as_str().unwrap();
    assert!(what.starts_with("installer log installer/syslog:"), "{s}");
    let seen = s["failure"]["seen"].as_str().unwrap();
    assert!(seen.contains("mirror does not support the specified release (bookworm)"), "{s}");
    // The step may wait 25 minutes (scaled under TCG); the installer's line ended it.
    let step = &s["steps"][0];
    let waited = step["ended_secs"].as_f64().unwrap() - step["started_secs"].as_f64().unwrap();
    assert!(waited < 600.0, "ended early, not at the step's timeout: {step}");

    let inspect = bootproof(&["inspect", "--json", dir.to_str().unwrap()]);
    assert_eq!(inspect.status.code(), Some(1), "an error-level finding");
    let report: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let first = &report["findings"][0];
    assert!(first["summary"].as_str().unwrap().contains("mirror does not support"), "{report}");
    assert!(first["file"].as_str().unwrap().ends_with("installer/syslog"), "{first}");
    // What the guest fetched is in the server's log, and no secret anywhere.
    let http = std::fs::read_to_string(dir.join("installer/http.log")).unwrap();
    assert!(http.contains("GET /d-i/preseed.cfg 200"), "{http}");
    let preseed = std::fs::read_to_string(dir.join("installer/preseed.cfg")).unwrap();
    assert!(preseed.contains("partman-crypto/passphrase password [REDACTED]"), "{preseed}");
}

#[test]
fn a_hanging_install_fails_on_its_timeout_with_the_log_written_before_the_hang() {
    if let Err(e) = bootproof::host::ensure_runtime() {
        panic!("this test boots real VMs and the host lacks what they need:\n{e}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let artifacts = tmp.path().join("artifacts");
    let out = bootproof(&["run", &fault("installer-hang"), "--artifacts", artifacts.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let dir = run_dir(&artifacts, "installer-hang");
    let s = summary(&dir);
    assert!(s["failure"]["what"].as_str().unwrap().contains("wait_reset"), "{s}");
    assert!(s["failure"]["seen"].as_str().unwrap().contains("no reset"), "{s}");
    let syslog = std::fs::read_to_string(dir.join("installer/syslog")).unwrap();
    // d-i got as far as running the preseed's early command, and its lines came home
    // while it ran: stamped before the run's end.
    assert!(syslog.contains("preseed"), "{syslog}");
    let last: f64 = syslog
        .lines()
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.trim().parse().ok())
        .fold(0.0, f64::max);
    assert!(last > 0.0 && last < s["elapsed_secs"].as_f64().unwrap(), "stamps up to {last}s");
}
