//! Checkpoints with real QEMU and the tiny guest: a checkpoint is built once, forks
//! restore it with their own disks, shares, clock and TPM, a change to its steps builds
//! it anew, checkpoints off runs the same steps cold, and a machine QEMU cannot save
//! fails naming the device.
//!
//! Every test writes a fresh nonce into its checkpoint's steps, so the first run always
//! builds (the cache is the user's, shared with earlier runs of these tests).

use std::path::PathBuf;

use bootproof::report::ScenarioReport;
use bootproof::scenario::{Scenario, runner};

fn ready() {
    if let Err(e) = bootproof::host::ensure_runtime() {
        panic!("this test boots real VMs and the host lacks what they need:\n{e}");
    }
}

fn nonce() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    format!("{}-{}", std::process::id(), t.as_nanos())
}

/// A suite directory: `scenarios/` and `checkpoints/` side by side, as in the repository.
struct Suite {
    dir: tempfile::TempDir,
}

impl Suite {
    fn new() -> Suite {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("scenarios")).unwrap();
        std::fs::create_dir_all(dir.path().join("checkpoints")).unwrap();
        Suite { dir }
    }

    fn checkpoint(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join("checkpoints").join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn scenario(&self, name: &str, text: &str) -> Scenario {
        let path = self.dir.path().join("scenarios").join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    fn opts(&self, checkpoints: bool) -> runner::RunnerOptions {
        runner::RunnerOptions { checkpoints, ..runner::RunnerOptions::new(self.dir.path().join("artifacts")) }
    }
}

fn passed(r: &ScenarioReport) {
    assert!(r.passed, "{} failed:\n{}", r.scenario, r.failure_screen());
}

/// An unused stretch of the tiny disk: after the GPT, before the first partition.
const OFFSET: u64 = 524_288;

fn read_disk(len: usize) -> String {
    format!("echo 3 > /proc/sys/vm/drop_caches && dd if=/dev/vda bs=1 skip={OFFSET} count={len} 2>/dev/null")
}

fn write_disk(text: &str) -> String {
    format!(
        "printf {text} | dd of=/dev/vda bs=1 seek={OFFSET} conv=notrunc 2>/dev/null && sync && {}",
        read_disk(text.len())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forks_of_one_checkpoint_see_only_their_own_writes() {
    ready();
    let suite = Suite::new();
    let base = format!("base-{}", nonce());
    suite.checkpoint(
        "tiny-written",
        &format!(
            r#"
description = "the tiny guest booted, with a TPM, a word on its disk"
timeout = "2m"

[[step]]
wait_console = "bootproof-tiny: efi=1 secureboot=0 tpm=2 share=ok"

[[step]]
run = "{}"
stdout = "^{base}$"
"#,
            write_disk(&base)
        ),
    );
    // Each fork reads the checkpoint's word, writes its own over it and reads that
    // back from the disk (page cache dropped), and writes a file into its share: the
    // share the checkpoint had mounted is mounted again, as this run's own.
    let fork = |name: &str, word: &str| {
        let text = format!(
            r#"
name = "{name}"
profile = "uefi-tpm"
image = "reference:tiny"
start = "tiny-written"
timeout = "90s"

[[step]]
run = "{read}"
stdout = "^{base}$"

[[step]]
run = "{write}"
stdout = "^{word}$"

[[step]]
run = "echo {word} > /mnt/bootproof/who && grep -c ' /mnt/bootproof 9p ' /proc/mounts"
stdout = "^1$"

[[step]]
# OVMF measured the firmware into PCR 0 before the checkpoint; the TPM came along.
run = "cat /sys/class/tpm/tpm0/pcr-sha256/0"
stdout = "^[0-9A-F]*[1-9A-F][0-9A-F]*$"

[[step]]
# The guest's clock, for the test to compare with the host's.
run = "date +%s > /mnt/bootproof/clock"

[[check]]
file_contains = {{ path = "share:who", pattern = "^{word}$" }}
"#,
            read = read_disk(base.len()),
            write = write_disk(word),
        );
        (name.to_string(), text)
    };
    // Two forks at once: one builds the checkpoint, the other waits for it.
    let (a_name, a_text) = fork("fork-a", "written-by-a");
    let (b_name, b_text) = fork("fork-b", "written-by-b");
    let now =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    let a = suite.scenario(&a_name, &a_text.replace("HOSTNOW", &now()));
    let b = suite.scenario(&b_name, &b_text.replace("HOSTNOW", &now()));
    let opts = suite.opts(true);
    let (ra, rb) = tokio::join!(runner::run(&a, &opts), runner::run(&b, &opts));
    passed(&ra);
    passed(&rb);
    let (ca, cb) = (ra.checkpoint.as_ref().unwrap(), rb.checkpoint.as_ref().unwrap());
    assert_eq!(ca.key, cb.key, "one machine, one key");
    assert!(
        ca.built != cb.built,
        "exactly one of two concurrent forks builds: a {} b {}",
        ca.built,
        cb.built
    );
    let builder = if ca.built { &ra } else { &rb };
    let built = builder.checkpoint.as_ref().unwrap();
    assert_eq!(built.steps.len(), 2, "the build's steps are in the report of the run that built it");
    assert!(built.build_run_dir.as_ref().unwrap().join("console.log").is_file());
    for r in [&ra, &rb] {
        let console = std::fs::read_to_string(r.run_dir.join("checkpoint-console.log")).unwrap();
        assert!(
            console.contains("bootproof-tiny: init started"),
            "the checkpoint's boot is in the fork's run dir"
        );
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(r.run_dir.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["checkpoint"]["name"], "tiny-written");
        assert_eq!(summary["checkpoint"]["key"], ca.key.as_str());
    }
    let junit = bootproof::report::junit_xml(std::slice::from_ref(&ra), "checkpoints");
    assert!(junit.contains(&format!("<property name=\"checkpoint.key\" value=\"{}\"", ca.key)), "{junit}");

    // A third fork, after both wrote: the checkpoint's disk still holds its word. It
    // starts well after the save, so a clock left at the checkpoint's would be behind.
    tokio::time::sleep(std::time::Duration::from_secs(15)).await;
    let (c_name, c_text) = fork("fork-c", "written-by-c");
    let c = suite.scenario(&c_name, &c_text);
    let rc = runner::run(&c, &opts).await;
    passed(&rc);
    // The guest's clock was set to the host's when it was restored, not left at the
    // checkpoint's, 15 s and more behind.
    let clock = std::fs::read_to_string(rc.run_dir.join("share/clock")).unwrap();
    let clock: f64 = clock.trim().parse().unwrap();
    let (from, to) = (rc.vm_started_unix.unwrap() - 2.0, rc.vm_ended_unix.unwrap() + 2.0);
    assert!(from <= clock && clock <= to, "guest clock {clock}, the fork ran from {from} to {to}");
    let cc = rc.checkpoint.as_ref().unwrap();
    assert!(!cc.built && cc.key == ca.key, "the third fork restores the cached checkpoint");
    // The tiny guest has no journalctl: the fork ends with the power button after all.
    let ended = cc.ended.as_deref().unwrap_or("");
    assert!(ended.starts_with("power button (exporting the journal: exit code"), "{ended}");
    assert!(rc.elapsed_secs < built.build_secs.unwrap(), "a fork's run is shorter than the boot it skips");
}

const TINY_FORK: &str = r#"
name = "tiny-fork"
profile = "uefi"
image = "reference:tiny"
start = "tiny-marked"
timeout = "90s"

[[step]]
run = "cat /marker"
stdout = "^MARK$"
"#;

fn marked(word: &str, extra: &str) -> String {
    format!(
        r#"
timeout = "2m"

[[step]]
wait_console = "bootproof-tiny: init started"

[[step]]
run = "echo {word} > /marker{extra}"
"#
    )
}

#[tokio::test]
async fn changing_the_checkpoint_steps_builds_it_anew_and_checkpoints_off_boots_cold() {
    ready();
    let suite = Suite::new();
    let word = format!("m{}", nonce().replace('-', ""));
    suite.checkpoint("tiny-marked", &marked(&word, ""));
    let s = suite.scenario("tiny-fork", &TINY_FORK.replace("MARK", &word));
    let opts = suite.opts(true);

    let first = runner::run(&s, &opts).await;
    passed(&first);
    let k1 = first.checkpoint.clone().unwrap();
    assert!(k1.built, "a new checkpoint is built");
    let second = runner::run(&s, &opts).await;
    passed(&second);
    let k2 = second.checkpoint.clone().unwrap();
    assert!(!k2.built && k2.key == k1.key, "unchanged, it comes from the cache");

    // A comment is not a change; a step is.
    suite.checkpoint("tiny-marked", &format!("# a comment\n{}", marked(&word, "")));
    let third = runner::run(&s, &opts).await;
    assert_eq!(third.checkpoint.as_ref().unwrap().key, k1.key, "a comment changes nothing");
    suite.checkpoint("tiny-marked", &marked(&word, " && sync"));
    let fourth = runner::run(&s, &opts).await;
    passed(&fourth);
    let k4 = fourth.checkpoint.clone().unwrap();
    assert!(k4.built && k4.key != k1.key, "changed steps build a new checkpoint");
    let entry = |key: &str| {
        bootproof::vm::checkpoint::entry_dir(&bootproof::vm::checkpoint::root(), "tiny-marked", key)
    };
    assert!(entry(&k4.key).is_dir());
    assert!(!entry(&k1.key).exists(), "the replaced entry of the same image is removed");

    // Checkpoints off: a cold boot that runs the checkpoint's steps, then the scenario's.
    let cold = runner::run(&s, &suite.opts(false)).await;
    passed(&cold);
    assert!(cold.checkpoint.is_none());
    let steps: Vec<&str> = cold.steps.iter().map(|st| st.action).collect();
    assert_eq!(steps, ["wait_console", "run", "run"], "{steps:?}");
    let console = std::fs::read_to_string(cold.run_dir.join("console.log")).unwrap();
    assert!(console.contains("bootproof-tiny: init started"), "a real boot");
    assert!(!cold.run_dir.join("checkpoint-console.log").exists());
}

/// An `nvme` disk cannot be migrated (QEMU 7.2 marks it unmigratable): the build fails
/// at once, naming the device, and the fork never starts.
#[tokio::test]
async fn a_machine_qemu_cannot_save_fails_naming_the_device() {
    ready();
    let suite = Suite::new();
    let disk = suite.dir.path().join("extra.qcow2");
    let qemu_img = bootproof::host::setup::find_command("qemu-img").expect("qemu-img");
    let made = std::process::Command::new(qemu_img)
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&disk)
        .arg("16M")
        .status();
    assert!(made.unwrap().success());
    let profile = suite.dir.path().join("nvme.toml");
    std::fs::write(
        &profile,
        format!(
            "machine = \"q35\"\nfirmware = \"uefi\"\nmemory = \"1G\"\n\n[[disk]]\npath = \"{}\"\ninterface = \"nvme\"\n",
            disk.display()
        ),
    )
    .unwrap();
    suite.checkpoint("tiny-nvme", "[[step]]\nwait_console = \"bootproof-tiny: init started\"\n");
    let s = suite.scenario(
        "nvme-fork",
        &format!(
            "name = \"nvme-fork\"\nprofile = \"{}\"\nimage = \"reference:tiny\"\nstart = \"tiny-nvme\"\ntimeout = \"90s\"\n\n[[step]]\nrun = \"true\"\n",
            profile.display()
        ),
    );
    let t0 = std::time::Instant::now();
    let r = runner::run(&s, &suite.opts(true)).await;
    assert!(!r.passed);
    let f = r.failure.as_ref().unwrap();
    assert!(f.what.contains("checkpoint `tiny-nvme`") && f.what.contains("save"), "{f:?}");
    assert!(f.seen.contains("non-migratable device") && f.seen.contains("nvme"), "{f:?}");
    assert!(r.steps.is_empty(), "the fork's steps never ran");
    assert!(t0.elapsed().as_secs() < 120, "no hang: {:?}", t0.elapsed());
    let root = bootproof::vm::checkpoint::root();
    let key = &r.checkpoint.as_ref().unwrap().key;
    assert!(
        !bootproof::vm::checkpoint::entry_dir(&root, "tiny-nvme", key).exists(),
        "nothing half-saved is kept"
    );
}

/// A checkpoint whose guest keeps a secret in memory is not kept: the cache would hold
/// the secret. The build fails saying so, and no entry is left.
#[tokio::test]
async fn a_checkpoint_holding_a_secret_is_refused() {
    ready();
    let suite = Suite::new();
    let secret = format!("Kept{}", nonce().replace('-', "x"));
    std::fs::write(suite.dir.path().join("checkpoints/secret.txt"), &secret).unwrap();
    suite.checkpoint(
        "tiny-secret",
        r#"
[secrets]
pin = { file = "secret.txt" }

[[step]]
wait_console = "bootproof-tiny: init started"

[[step]]
run = "echo ${secret:pin} > /kept"
"#,
    );
    let s = suite.scenario(
        "secret-fork",
        "name = \"secret-fork\"\nprofile = \"uefi\"\nimage = \"reference:tiny\"\nstart = \"tiny-secret\"\ntimeout = \"90s\"\n\n[[step]]\nrun = \"true\"\n",
    );
    let r = runner::run(&s, &suite.opts(true)).await;
    assert!(!r.passed);
    let f = r.failure.as_ref().unwrap();
    assert!(f.seen.contains("holds a secret of this run"), "{f:?}");
    let key = &r.checkpoint.as_ref().unwrap().key;
    let root = bootproof::vm::checkpoint::root();
    assert!(!bootproof::vm::checkpoint::entry_dir(&root, "tiny-secret", key).exists(), "nothing kept");
    let leftovers: Vec<_> = std::fs::read_dir(root.join("tiny-secret"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".staging"))
        .collect();
    assert!(leftovers.is_empty(), "no staging directory left behind");
}

/// `bootproof run --no-checkpoints` and `BOOTPROOF_CHECKPOINTS=0` both boot cold: the
/// checkpoint's steps run first, and the summary names no checkpoint.
#[test]
fn the_cli_flag_and_the_variable_boot_cold() {
    ready();
    let suite = Suite::new();
    let word = format!("m{}", nonce().replace('-', ""));
    suite.checkpoint("tiny-marked", &marked(&word, ""));
    suite.scenario("tiny-fork", &TINY_FORK.replace("MARK", &word));
    let file = suite.dir.path().join("scenarios/tiny-fork.toml");
    for (how, flag, var) in [("flag", Some("--no-checkpoints"), None), ("variable", None, Some("0"))] {
        let artifacts = suite.dir.path().join(format!("artifacts-{how}"));
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_bootproof"));
        cmd.arg("run").arg(&file).arg("--artifacts").arg(&artifacts).args(flag).env_remove("BOOTPROOF_IMAGE");
        match var {
            Some(v) => cmd.env("BOOTPROOF_CHECKPOINTS", v),
            None => cmd.env_remove("BOOTPROOF_CHECKPOINTS"),
        };
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{how}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let run = std::fs::read_dir(artifacts.join("tiny-fork")).unwrap().next().unwrap().unwrap().path();
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
        assert!(summary["checkpoint"].is_null(), "{how}: {}", summary["checkpoint"]);
        let actions: Vec<&str> =
            summary["steps"].as_array().unwrap().iter().map(|s| s["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["wait_console", "run", "run"], "{how}");
        assert!(!run.join("checkpoint").exists(), "{how}: nothing was built");
    }
}
