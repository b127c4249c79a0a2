//! `bootproof run`: scenarios side by side, the summary table, `--image`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios").join(format!("{name}.toml"))
}

fn run(args: &[&str], artifacts: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bootproof"))
        .arg("run")
        .args(args)
        .arg("--artifacts")
        .arg(artifacts)
        .env_remove("BOOTPROOF_IMAGE")
        .output()
        .expect("bootproof runs")
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn two_scenarios_run_and_the_table_lists_both_with_their_accel() {
    if let Err(e) = bootproof::host::ensure_runtime() {
        panic!("this test boots real VMs and the host lacks what they need:\n{e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let (agent, reboot) = (scenario("tiny-agent"), scenario("tiny-reboot"));
    // The override names reference:installed only: the tiny scenarios keep their image.
    let out = run(
        &[
            agent.to_str().unwrap(),
            reboot.to_str().unwrap(),
            "--image",
            "reference:installed=/nonexistent/remix.qcow2",
        ],
        dir.path(),
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for name in ["tiny-agent", "tiny-reboot"] {
        let row = stdout.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}:\n{stdout}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[1], "ok", "{row}");
        for secs in [cols[2], cols[3]] {
            let secs: f64 = secs.strip_suffix('s').and_then(|t| t.parse().ok()).unwrap_or(-1.0);
            assert!(secs >= 0.0, "{row}");
        }
        assert!(["tcg", "kvm"].contains(&cols[4]), "{row}");
        assert!(Path::new(cols[5]).join("summary.json").is_file(), "{row}");
    }
    assert!(stdout.contains("2 passed, 0 failed"), "{stdout}");
}

#[test]
fn an_image_override_to_a_missing_file_fails_naming_it_without_booting() {
    let dir = tempfile::tempdir().unwrap();
    let agent = scenario("tiny-agent");
    let out = run(&[agent.to_str().unwrap(), "--image", "/nonexistent/remix.qcow2"], dir.path());
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("/nonexistent/remix.qcow2"), "{stderr}");
    let summary = std::fs::read_dir(dir.path().join("tiny-agent")).unwrap().next().unwrap().unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(summary.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(report["image"], "/nonexistent/remix.qcow2");
    assert!(report["vm_started_unix"].is_null(), "no VM for a missing image: {report}");
}

#[test]
fn a_reference_image_that_cannot_be_built_fails_its_scenarios_without_booting() {
    // A host without apt-cache cannot build reference:tiny: PATH holds everything of
    // /usr/bin but it, and an empty cache forces a build.
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for entry in std::fs::read_dir("/usr/bin").unwrap().flatten() {
        if entry.file_name() != "apt-cache" {
            let _ = std::os::unix::fs::symlink(entry.path(), bin.join(entry.file_name()));
        }
    }
    let (agent, reboot) = (scenario("tiny-agent"), scenario("tiny-reboot"));
    let out = Command::new(env!("CARGO_BIN_EXE_bootproof"))
        .args(["run", agent.to_str().unwrap(), reboot.to_str().unwrap(), "--artifacts"])
        .arg(dir.path().join("artifacts"))
        .env("PATH", &bin)
        .env("BOOTPROOF_CACHE", dir.path().join("cache"))
        .env("BOOTPROOF_AUTO_INSTALL", "0")
        .env_remove("BOOTPROOF_IMAGE")
        .output()
        .expect("bootproof runs");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    // One build attempt, reported once, and both scenarios failed naming it.
    assert_eq!(stderr.matches("bootproof: reference:tiny: ").count(), 1, "{stderr}");
    assert!(stderr.contains("apt-cache"), "{stderr}");
    assert_eq!(stderr.matches("failed:   building reference:tiny").count(), 2, "{stderr}");
    assert!(stdout.contains("0 passed, 2 failed"), "{stdout}");
    for name in ["tiny-agent", "tiny-reboot"] {
        let run =
            std::fs::read_dir(dir.path().join("artifacts").join(name)).unwrap().next().unwrap().unwrap();
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.path().join("summary.json")).unwrap()).unwrap();
        assert!(report["vm_started_unix"].is_null(), "{report}");
        assert_eq!(report["failure"]["what"], "building reference:tiny", "{report}");
    }
}
