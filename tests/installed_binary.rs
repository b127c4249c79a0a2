//! The `bootproof` binary works away from its source tree, as `cargo install` leaves it:
//! copied into a temporary directory, run from an unrelated working directory with a
//! clean environment (PATH, HOME and BOOTPROOF_CACHE kept), it lists the shipped
//! scenarios, resolves shipped profiles by name, and runs a shipped scenario.
//!
//! Where this test may (root, and `unshare` can make a mount namespace) the source tree
//! is also hidden from the binary under an empty tmpfs, so that reading any file of the
//! checkout at run time fails; elsewhere it prints that the tree stayed visible and
//! checks the rest.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const SOURCE: &str = env!("CARGO_MANIFEST_DIR");

/// The binary, copied where no source tree is.
fn installed(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let copy = bin.join("bootproof");
    std::fs::copy(env!("CARGO_BIN_EXE_bootproof"), &copy).unwrap();
    copy
}

/// Whether the source tree can be hidden: `unshare` makes a private mount namespace
/// in which a tmpfs covers it; the reason when not.
fn hiding() -> &'static Result<(), String> {
    static HIDING: OnceLock<Result<(), String>> = OnceLock::new();
    HIDING.get_or_init(|| {
        let out = Command::new("unshare")
            .args([
                "--mount",
                "--",
                "sh",
                "-c",
                r#"mount -t tmpfs bootproof-hidden "$0" && [ ! -e "$0/Cargo.toml" ]"#,
                SOURCE,
            ])
            .output()
            .map_err(|e| format!("unshare: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("unshare --mount failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
        }
    })
}

/// Runs the installed binary in `cwd` with only PATH, HOME and BOOTPROOF_CACHE set,
/// inside a mount namespace that hides the source tree when [`hiding`] allows.
fn bootproof(bin: &Path, cwd: &Path, args: &[&str]) -> Output {
    let mut cmd = match hiding() {
        Ok(()) => {
            let mut c = Command::new("unshare");
            let script = r#"mount -t tmpfs bootproof-hidden "$0" && exec "$@""#;
            c.args(["--mount", "--", "sh", "-c", script, SOURCE]).arg(bin);
            c
        }
        Err(why) => {
            println!("installed_binary: the source tree {SOURCE} stays visible to the binary: {why}");
            Command::new(bin)
        }
    };
    cmd.args(args).current_dir(cwd).env_clear();
    for keep in ["PATH", "HOME", "BOOTPROOF_CACHE"] {
        if let Some(v) = std::env::var_os(keep) {
            cmd.env(keep, v);
        }
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The stems of `tests/scenarios/*.toml`, read here, while the tree is visible.
fn shipped_files() -> BTreeSet<String> {
    std::fs::read_dir(Path::new(SOURCE).join("tests/scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn list_shows_the_shipped_scenarios_by_their_builtin_names() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = installed(tmp.path());
    let out = bootproof(&bin, tmp.path(), &["list"]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let listed: BTreeSet<String> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("builtin:tests/scenarios/")))
        .map(String::from)
        .collect();
    let files = shipped_files();
    assert!(files.contains("tiny-agent.toml") && files.len() > 1, "tests/scenarios holds {files:?}");
    assert_eq!(listed, files, "{all}");
    assert!(!all.contains(SOURCE), "the binary named its source tree:\n{all}");
}

#[test]
fn an_unknown_profile_name_lists_the_shipped_profiles() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = installed(tmp.path());
    let out = bootproof(&bin, tmp.path(), &["boot", "--profile", "no-such-profile", "--image", "x.qcow2"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    // Every file of vm-profiles/, by name, in order: the binary carries them all.
    let shipped: BTreeSet<String> = std::fs::read_dir(Path::new(SOURCE).join("vm-profiles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(shipped.contains("uefi") && shipped.contains("bios"), "{shipped:?}");
    let expected = format!("shipped profiles: {}", shipped.into_iter().collect::<Vec<_>>().join(", "));
    assert!(all.contains(&expected), "{expected}\n{all}");
}

#[test]
fn run_passes_a_shipped_scenario_on_a_shipped_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = installed(tmp.path());
    let cwd = tmp.path().join("elsewhere");
    std::fs::create_dir(&cwd).unwrap();
    let artifacts = tmp.path().join("artifacts");
    let out =
        bootproof(&bin, &cwd, &["run", "--filter", "tiny-agent", "--artifacts", artifacts.to_str().unwrap()]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed, 0 failed"), "{all}");
    let summary = artifacts.join("tiny-agent");
    let runs: Vec<_> = std::fs::read_dir(&summary).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(runs[0].join("summary.json").is_file(), "{}", runs[0].display());
}
