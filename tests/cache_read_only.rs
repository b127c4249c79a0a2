//! A cache that cannot be written (a CI runner's restored cache, mounted read-only)
//! must not fail a run: bootproof writes into its fallback under `$TMPDIR` and still
//! boots the complete builds the read-only cache holds, without rebuilding them.
//!
//! The read-only cache is the real one, bind-mounted read-only in a private mount
//! namespace (`unshare --mount`), so nothing outside the test sees the mount and
//! root's permission bypass does not hide it: writes get `EROFS`, as on the runner.

use std::path::Path;
use std::process::Command;

#[test]
fn a_read_only_cache_is_read_and_the_run_writes_to_the_fallback() {
    if let Err(e) = bootproof::host::ensure_runtime() {
        panic!("this test boots a real VM and the host lacks what it needs:\n{e}");
    }
    let tiny = bootproof::images::ensure("tiny").expect("reference:tiny builds");
    // <cache>/images/tiny-<hash>/<file>
    let cache = tiny.path.ancestors().nth(3).expect("a cache root").to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let (ro, tmp, artifacts) = (dir.path().join("ro"), dir.path().join("tmp"), dir.path().join("artifacts"));
    for d in [&ro, &tmp] {
        std::fs::create_dir(d).unwrap();
    }
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/tiny-agent.toml");
    let out = bootproof_over_read_only(&cache, &ro, &tmp)
        .arg("run")
        .arg(&scenario)
        .arg("--artifacts")
        .arg(&artifacts)
        .env_remove("BOOTPROOF_IMAGE")
        .output()
        .expect("unshare runs (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(97),
        "this test needs root with CAP_SYS_ADMIN to make a read-only cache in a private \
         mount namespace (run cargo test as root):\n{stderr}"
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");
    // Said once, naming both places and the reason.
    let said: Vec<&str> = stderr.lines().filter(|l| l.contains("cannot be written")).collect();
    assert_eq!(said.len(), 1, "{stderr}");
    assert!(
        said[0].contains(&ro.display().to_string()) && said[0].contains("Read-only file system"),
        "{stderr}"
    );
    // SAFETY: getuid cannot fail.
    let fallback = tmp.join(format!("bootproof-cache-{}", unsafe { libc::getuid() }));
    assert!(said[0].contains(&fallback.display().to_string()), "{stderr}");
    // The VM slot lock lives in the fallback; the image came from the read-only cache.
    assert!(fallback.join("vm-slots").is_dir(), "{stderr}");
    assert!(!stderr.contains("building reference:tiny"), "rebuilt instead of reading the cache:\n{stderr}");
    let images = fallback.join("images");
    let rebuilt = images.is_dir()
        && std::fs::read_dir(&images).unwrap().flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("tiny-") && !name.ends_with(".lock")
        });
    assert!(!rebuilt, "reference:tiny was rebuilt into the fallback");
    let run = std::fs::read_dir(artifacts.join("tiny-agent")).unwrap().next().unwrap().unwrap();
    // The run's disk is an overlay whose backing file is the image it booted.
    let overlay = find(&run.path(), "disk0.qcow2").expect("the run keeps its disk overlay");
    let info = Command::new("qemu-img").args(["info", "-U", "--output=json"]).arg(&overlay).output().unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("qemu-img info prints JSON");
    let backing = info["backing-filename"].as_str().unwrap_or_default();
    assert!(
        backing.starts_with(&format!("{}/images/tiny-", ro.display())),
        "the VM did not boot the read-only cache's build: {info}"
    );
}

/// `bootproof` (arguments to follow) in a private mount namespace where `cache` is
/// bind-mounted read-only at `ro` and is its cache, `tmp` its `TMPDIR`. Exits 97 when
/// the mount cannot be made, 98 when the mount accepts writes.
fn bootproof_over_read_only(cache: &Path, ro: &Path, tmp: &Path) -> Command {
    let script = r#"mount --bind -o ro "$1" "$2" || { echo "cannot bind-mount the cache read-only" >&2; exit 97; }
touch "$2/.bootproof-test-write" 2>/dev/null && { echo "the read-only mount accepts writes" >&2; exit 98; }
shift 2; exec "$@""#;
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(cache)
        .arg(ro)
        .arg(env!("CARGO_BIN_EXE_bootproof"))
        .env("BOOTPROOF_CACHE", ro)
        .env("TMPDIR", tmp);
    cmd
}

fn find(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if entry.file_name() == name {
            return Some(path);
        }
        if path.is_dir()
            && let Some(found) = find(&path, name)
        {
            return Some(found);
        }
    }
    None
}

/// `doctor` finds vhost-device-vsock where a run would: also in a cache restored
/// read-only (the same lookup as `host::setup::ensure_cargo_tool`).
#[test]
fn doctor_finds_a_tool_in_a_read_only_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, ro, tmp) = (dir.path().join("cache"), dir.path().join("ro"), dir.path().join("tmp"));
    for d in [&cache.join("tools/bin"), &ro, &tmp] {
        std::fs::create_dir_all(d).unwrap();
    }
    let tool = cache.join("tools/bin/vhost-device-vsock");
    std::fs::write(&tool, "#!/bin/sh\nexit 0\n").unwrap();
    Command::new("chmod").arg("755").arg(&tool).status().unwrap();
    let out = bootproof_over_read_only(&cache, &ro, &tmp)
        .args(["doctor", "--json"])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .expect("unshare runs (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(97), "needs root in a private mount namespace:\n{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let row = report["checks"].as_array().unwrap().iter().find(|c| c["item"] == "vsock").unwrap();
    let detail = row["detail"].as_str().unwrap();
    if Path::new("/dev/vhost-vsock").exists() {
        assert!(detail.contains("kernel vhost-vsock"), "{detail}");
    } else {
        let expected = ro.join("tools/bin/vhost-device-vsock");
        assert_eq!(row["status"], "ok", "{detail}");
        assert!(detail.contains(&expected.display().to_string()), "{detail}");
    }
}
