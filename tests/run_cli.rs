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

/// What a run selects must check something: an empty scenario is bad input (exit 2,
/// the file named), and a filter or a directory that selects nothing fails instead of
/// passing an empty suite.
#[test]
fn nothing_selected_or_nothing_to_check_is_an_error_not_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let empty = d.join("empty.toml");
    std::fs::write(&empty, "name = \"empty\"\nprofile = \"uefi\"\nimage = \"reference:tiny\"\n").unwrap();
    let out = run(&[empty.to_str().unwrap()], &d.join("artifacts"));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains(&format!("{}:1:1", empty.display())), "{stderr}");
    assert!(stderr.contains("no [[step]] and no [[check]]"), "{stderr}");

    // The shipped suite, filtered to nothing.
    let out = run(&["--filter", "no-such-scenario"], &d.join("artifacts"));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("no scenario selected: --filter `no-such-scenario` matches none"), "{stderr}");
    assert!(stderr.contains("tiny-agent"), "the message lists what there is: {stderr}");

    // A directory with no scenario in it, and one that does not exist.
    std::fs::create_dir(d.join("none")).unwrap();
    let out = run(&[d.join("none").to_str().unwrap()], &d.join("artifacts"));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("holds no scenario file"), "{stderr}");
    let out = run(&[d.join("missing").to_str().unwrap()], &d.join("artifacts"));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{}: cannot read scenario", d.join("missing").display())), "{stderr}");
    assert!(!d.join("artifacts").exists(), "nothing ran");
}

/// The rerun command a failure report prints (and summary.json and JUnit carry) works
/// when pasted: run as printed, it runs the same scenario, which fails the same way.
#[test]
fn the_printed_rerun_command_reruns_the_scenario() {
    if let Err(e) = bootproof::host::ensure_runtime() {
        panic!("this test boots real VMs and the host lacks what they need:\n{e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("my scenarios");
    std::fs::create_dir(&d).unwrap();
    let file = d.join("fails.toml");
    std::fs::write(
        &file,
        "name = \"fails\"\nprofile = \"uefi\"\nimage = \"reference:tiny\"\n[[step]]\nrun = \"exit 3\"\n",
    )
    .unwrap();
    let junit = dir.path().join("junit.xml");
    let out = run(&[file.to_str().unwrap(), "--junit", junit.to_str().unwrap()], &dir.path().join("first"));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let first = only_summary(&dir.path().join("first/fails"));
    let rerun = first["rerun"].as_str().expect("summary.json names the rerun command").to_string();
    assert!(stderr.contains(&format!("rerun:    {rerun}")), "{stderr}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("name=\"rerun\""), "{xml}");

    let words = shlex::split(&rerun).expect("a shell command");
    assert_eq!(words[0], "bootproof", "{rerun}");
    let again = Command::new(env!("CARGO_BIN_EXE_bootproof"))
        .args(&words[1..])
        .arg("--artifacts")
        .arg(dir.path().join("again"))
        .current_dir(std::env::temp_dir())
        .env_remove("BOOTPROOF_IMAGE")
        .output()
        .expect("bootproof runs");
    let (stdout, stderr) = text(&again);
    assert_eq!(again.status.code(), Some(1), "{stdout}\n{stderr}");
    let second = only_summary(&dir.path().join("again/fails"));
    assert_eq!(second["failure"]["what"], first["failure"]["what"]);
    assert!(second["failure"]["seen"].as_str().unwrap().contains("exit code 3"), "{second}");
}

fn only_summary(dir: &Path) -> serde_json::Value {
    let runs: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    serde_json::from_slice(&std::fs::read(runs[0].join("summary.json")).unwrap()).unwrap()
}
