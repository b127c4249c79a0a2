//! Scenarios that must fail, and fail well: within their timeout, naming the step,
//! with the evidence kept and no secret anywhere in the run directory. They run the
//! real runner against the tiny guest under real QEMU.

use std::path::Path;

use bootproof::report::Status;
use bootproof::scenario::Scenario;

#[path = "common/scenario.rs"]
mod scenario_run;
use scenario_run::{ready, run};

#[tokio::test]
async fn a_console_wait_that_times_out_fails_in_time_naming_the_step() {
    ready();
    let dir = tempfile::tempdir().unwrap();
    // An unknown key never reaches a VM: the error names the file, line and key.
    let file = dir.path().join("broken.toml");
    std::fs::write(&file, "name = \"x\"\nprofile = \"uefi\"\nimage = \"reference:tiny\"\nagent_note = 1\n")
        .unwrap();
    let e = Scenario::load(&file).unwrap_err().to_string();
    assert!(e.contains("broken.toml:4:1") && e.contains("unknown field `agent_note`"), "{e}");

    let r = run(
        dir.path(),
        r#"
name = "waits-forever"
profile = "uefi"
image = "reference:tiny"
timeout = "2m"

[[step]]
wait_console = "bootproof-tiny: init started"

[[step]]
wait_console = "this line never comes"
timeout = "3s"

[[step]]
run = "true"
"#,
    )
    .await;
    assert!(!r.passed);
    let f = r.failure.as_ref().expect("a failure");
    assert!(
        f.what.starts_with("step 2 (") && f.what.contains("wait_console /this line never comes/"),
        "{f:?}"
    );
    assert!(f.seen.contains("timed out after"), "{f:?}");
    let step = &r.steps[1];
    let scale = if r.accel == "tcg" { bootproof::host::accel::Accel::Tcg.timeout_scale() } else { 1.0 };
    let waited = step.ended_secs - step.started_secs;
    assert!(waited >= 3.0 * scale - 0.5 && waited < 3.0 * scale + 5.0, "waited {waited}s");
    assert_eq!(r.steps[2].status, Status::Skipped);
    // The run directory keeps the console and a summary naming the step.
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.run_dir.join("summary.json")).unwrap()).unwrap();
    assert!(summary["failure"]["what"].as_str().unwrap().contains("step 2"), "{summary}");
    assert_eq!(summary["steps"][1]["status"], "failed");
    let console = std::fs::read_to_string(r.run_dir.join("console.log")).unwrap();
    assert!(console.contains("bootproof-tiny: init started"), "{console}");
    let screen = r.failure_screen();
    assert!(screen.contains("this line never comes") && screen.contains("last console lines"), "{screen}");
}

#[tokio::test]
async fn a_failing_command_reports_exit_code_and_stderr() {
    ready();
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        r#"
name = "command-fails"
profile = "uefi"
image = "reference:tiny"
timeout = "2m"

[[step]]
run = "echo partial output; echo 'boom: no such widget' >&2; exit 3"

[[check]]
file_contains = { path = "share:report.txt", pattern = "share=ok" }
"#,
    )
    .await;
    assert!(!r.passed);
    let f = r.failure.as_ref().expect("a failure");
    assert_eq!(f.expected, "exit code 0");
    assert!(f.seen.contains("exit code 3") && f.seen.contains("boom: no such widget"), "{f:?}");
    assert!(f.seen.contains("partial output"), "{f:?}");
    // The check still ran, and passed: a failure report shows everything known.
    assert_eq!(r.checks.len(), 1);
    assert_eq!(r.checks[0].status, Status::Passed);
    let screen = r.failure_screen();
    assert!(screen.contains("exit code 3") && screen.contains("boom"), "{screen}");
}

#[tokio::test]
async fn a_secret_typed_on_the_console_appears_nowhere_in_the_run_dir() {
    ready();
    let dir = tempfile::tempdir().unwrap();
    let secret = "c0rrect-h0rse-battery";
    std::fs::write(dir.path().join("secret.txt"), format!("{secret}\n")).unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(
        input.join("hook.sh"),
        "echo 'ready for the secret'\nread -r line\necho \"got: $line\"\necho \"$line\" > /mnt/bootproof/typed.txt\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("profile.toml"),
        "firmware = \"uefi\"\ndisplay = \"std\"\n[[share]]\ntag = \"bootproof-input\"\npath = \"input\"\n",
    )
    .unwrap();
    let r = run(
        dir.path(),
        r#"
name = "secret-typed"
profile = "./profile.toml"
image = "reference:tiny"
timeout = "2m"

[secrets]
pw = { file = "secret.txt" }

[[step]]
wait_console = "ready for the secret"

[[step]]
type_console = "${secret:pw}\n"

[[step]]
wait_console = "got: "

[[step]]
run = "cat /mnt/bootproof/typed.txt | wc -c"
stdout = "22"

[[step]]
type_keys = "${secret:pw}"

[[step]]
power_off = true
"#,
    )
    .await;
    assert!(r.passed, "{}", r.failure_screen());
    // The guest really received it (the `wc -c` step counted its 22 bytes and it wrote
    // it into the share), yet no file of the run holds it: what the guest wrote into
    // the share is swept at the end of the run too.
    let typed = std::fs::read_to_string(r.run_dir.join("share/typed.txt")).unwrap();
    assert_eq!(typed.trim(), "[REDACTED]");
    let mut leaks = Vec::new();
    find_in_tree(&r.run_dir, secret.as_bytes(), &mut leaks);
    assert!(leaks.is_empty(), "the secret leaked into {leaks:?}");
    let console = std::fs::read_to_string(r.run_dir.join("console.log")).unwrap();
    assert!(console.contains("got: [REDACTED]"), "{console}");
}

#[tokio::test]
async fn a_wrong_luks_passphrase_is_reported_as_such_not_as_a_timeout() {
    ready();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wrong.txt"), "not-the-passphrase\n").unwrap();
    let r = run(
        dir.path(),
        r#"
name = "wrong-passphrase"
profile = "uefi"
image = "reference:installed"
timeout = "5m"

[secrets]
wrong = { file = "wrong.txt" }

[[step]]
wait_console = "Please unlock disk root:"
timeout = "60s"

[[step]]
type_console = "${secret:wrong}\n"

[[step]]
wait_console = "cryptsetup: root: set up successfully"
fail_on = "Please unlock disk root:|bad password"
timeout = "60s"
"#,
    )
    .await;
    assert!(!r.passed);
    let f = r.failure.as_ref().expect("a failure");
    assert!(f.what.starts_with("step 3 ("), "{f:?}");
    assert!(f.seen.contains("appeared first (fail_on)"), "{f:?}");
    assert!(f.seen.contains("bad password") || f.seen.contains("Please unlock disk root"), "{f:?}");
    // Refused within seconds of typing, far from the step's (scaled) 60 s.
    let step = &r.steps[2];
    assert!(step.ended_secs - step.started_secs < 30.0, "{step:?}");
}

fn find_in_tree(dir: &Path, needle: &[u8], hits: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        if meta.is_dir() {
            find_in_tree(&entry.path(), needle, hits);
        } else if meta.is_file() {
            let bytes = std::fs::read(entry.path()).unwrap();
            if memchr::memmem::find(&bytes, needle).is_some() {
                hits.push(entry.path());
            }
        }
    }
}

#[tokio::test]
async fn a_missing_secret_variable_is_reported_as_that_before_anything_boots() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        r#"
name = "no-secret"
profile = "uefi"
image = "reference:tiny"

[secrets]
pw = { env = "BOOTPROOF_TEST_NEVER_SET" }

[[step]]
type_console = "${secret:pw}\n"
"#,
    )
    .await;
    assert!(!r.passed);
    let f = r.failure.as_ref().unwrap();
    assert_eq!(f.what, "secret `pw`", "{f:?}");
    assert!(f.seen.contains("environment variable BOOTPROOF_TEST_NEVER_SET is not set"), "{f:?}");
    assert!(f.seen.contains("BOOTPROOF_SECRET_PW"), "the override is named too: {f:?}");
    assert!(r.vm_started_unix.is_none() && r.steps.is_empty(), "nothing booted: {r:?}");
}

#[tokio::test]
async fn a_journal_wait_fails_at_once_when_the_agent_dies_or_the_guest_has_no_systemd() {
    ready();
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        r#"
name = "agent-dies"
profile = "uefi"
image = "reference:tiny"
timeout = "5m"

[[step]]
wait_journal = { unit = "multi-user.target" }
timeout = "2m"
"#,
    )
    .await;
    let step = &r.steps[0];
    assert_eq!(step.status, Status::Failed);
    assert!(r.failure.as_ref().unwrap().seen.contains("no systemctl in the guest"), "{r:?}");
    assert!(step.ended_secs - step.started_secs < 60.0, "{step:?}");

    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        r#"
name = "agent-dies"
profile = "uefi"
image = "reference:tiny"
timeout = "5m"

[[step]]
run = "(sleep 1; poweroff -f) >/dev/null 2>&1 &"

[[step]]
wait_journal = { message = "never logged" }
timeout = "2m"
"#,
    )
    .await;
    let step = &r.steps[1];
    assert_eq!(step.status, Status::Failed, "{r:?}");
    let seen = &r.failure.as_ref().unwrap().seen;
    assert!(seen.contains("the guest agent failed"), "{seen}");
    assert!(step.ended_secs - step.started_secs < 60.0, "at once, not after the scaled 2m: {step:?}");
}

/// After a reboot, a console wait sees only what the new boot prints: the tiny guest
/// prints the same lines every boot, and the wait must end on the second boot's.
#[tokio::test]
async fn after_a_reboot_a_console_wait_matches_only_the_new_boot() {
    ready();
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        r#"
name = "reboot-wait"
profile = "uefi"
image = "reference:tiny"
timeout = "2m"

[[step]]
run = "true"

[[step]]
reboot = true

[[step]]
wait_console = "bootproof-tiny: serving the agent"

[[step]]
power_off = true
"#,
    )
    .await;
    assert!(r.passed, "{}", r.failure_screen());
    let console = std::fs::read_to_string(r.run_dir.join("console.log")).unwrap();
    let starts: Vec<f64> = console
        .lines()
        .filter(|l| l.contains("bootproof-tiny: init started"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.trim().parse().ok())
        .collect();
    assert_eq!(starts.len(), 2, "two boots:\n{console}");
    let wait = &r.steps[2];
    assert!(
        wait.ended_secs >= starts[1],
        "the wait ended at {}s, before boot 2 began at {}s",
        wait.ended_secs,
        starts[1]
    );
}

/// A `[[share]]` reaches the guest read-only under its tag; one whose directory is
/// missing fails the run as that, naming the share, before anything boots.
#[tokio::test]
async fn a_scenario_share_is_read_only_in_the_guest_and_a_missing_one_fails_before_boot() {
    ready();
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        "name = \"no-share\"\nprofile = \"uefi\"\nimage = \"reference:tiny\"\n\
         [[share]]\ntag = \"inputs\"\npath = \"missing\"\n[[step]]\nrun = \"true\"\n",
    )
    .await;
    assert!(!r.passed);
    let f = r.failure.as_ref().unwrap();
    assert_eq!(f.what, "share `inputs`", "{f:?}");
    assert!(f.seen.contains("missing is not a directory"), "{f:?}");
    assert!(r.vm_started_unix.is_none() && r.steps.is_empty(), "nothing booted: {r:?}");

    std::fs::create_dir(dir.path().join("inputs")).unwrap();
    std::fs::write(dir.path().join("inputs/given.txt"), "from the host\n").unwrap();
    let r = run(
        dir.path(),
        r#"
name = "share"
profile = "uefi"
image = "reference:tiny"
timeout = "2m"

[[share]]
tag = "inputs"
path = "inputs"

[[step]]
run = "mkdir -p /run/inputs && mount -t 9p -o trans=virtio,version=9p2000.L,ro inputs /run/inputs && cat /run/inputs/given.txt"
stdout = "^from the host$"

# Read-only at QEMU, whatever the guest's mount says (a tag mounts once at a time).
[[step]]
run = "umount /run/inputs && mount -t 9p -o trans=virtio,version=9p2000.L inputs /run/inputs && echo guest > /run/inputs/written.txt"
"#,
    )
    .await;
    assert!(!r.passed, "the guest wrote into a read-only share: {r:?}");
    assert_eq!(r.steps[0].status, bootproof::report::Status::Passed, "{r:?}");
    assert_eq!(r.steps[1].status, bootproof::report::Status::Failed, "{r:?}");
    let refused = r.steps[1].message.as_deref().unwrap_or("");
    assert!(refused.contains("Read-only file system"), "{refused}");
    assert!(!dir.path().join("inputs/written.txt").exists());
    assert_eq!(std::fs::read_to_string(dir.path().join("inputs/given.txt")).unwrap(), "from the host\n");
}

/// `suspend` and `wakeup` on the tiny guest: with `acpi_s3 = true` the kernel suspends
/// to RAM (QEMU's `SUSPEND`), `system_wakeup` brings it back (`WAKEUP`), the agent
/// answers again and the kernel logged both ends of the sleep. Without it, `suspend`
/// fails saying the guest offers no S3 and naming the profile key.
#[tokio::test]
async fn suspend_and_wakeup_round_trip_with_acpi_s3_and_fail_without_it() {
    ready();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("s3.toml"),
        "machine = \"q35\"\nmemory = \"1G\"\nfirmware = \"uefi\"\ntpm = \"none\"\nacpi_s3 = true\n",
    )
    .unwrap();
    let scenario = |profile: &str| {
        format!(
            r#"
name = "s3"
profile = "{profile}"
image = "reference:tiny"
timeout = "3m"

[[step]]
suspend = true
timeout = "30s"

[[step]]
wakeup = true
timeout = "30s"

[[step]]
run = "dmesg | grep -E 'PM: suspend (entry|exit)'"
stdout = '(?s)PM: suspend entry \(deep\).*PM: suspend exit'
"#
        )
    };
    let r = run(dir.path(), &scenario("s3.toml")).await;
    assert!(r.passed, "{r:?}");
    let qmp = std::fs::read_to_string(std::path::Path::new(&r.run_dir).join("qmp.log")).unwrap();
    assert!(qmp.contains("SUSPEND") && qmp.contains("WAKEUP"), "{qmp}");

    let r = run(dir.path(), &scenario("uefi")).await;
    assert!(!r.passed);
    assert_eq!(r.steps[0].status, bootproof::report::Status::Failed, "{r:?}");
    let seen = r.steps[0].message.as_deref().unwrap_or("");
    assert!(seen.contains("no suspend to RAM (S3)") && seen.contains("acpi_s3 = true"), "{seen}");

    // Waking a guest that is not asleep: QEMU refuses, and the step says so.
    let text = "name = \"wake\"\nprofile = \"s3.toml\"\nimage = \"reference:tiny\"\ntimeout = \"2m\"\n\
                [[step]]\nwakeup = true\ntimeout = \"3s\"\n";
    let r = run(dir.path(), text).await;
    assert!(!r.passed);
    let seen = r.steps[0].message.as_deref().unwrap_or("");
    assert!(seen.contains("guest is not in suspended state"), "{seen}");
}
