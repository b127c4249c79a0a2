//! The p9 share backend with a real guest: the tiny reference guest mounts its shares
//! from `bootproof share-server` over 9P on TCP (no virtio-9p device in QEMU's command
//! line), the server reports the files it writes, and a guest writing past
//! `share_quota` gets "Disk quota exceeded" while the host file stops at the quota.
//! (`BOOTPROOF_SHARE_BACKEND=p9 cargo test --test runtime` runs the runtime tests on
//! this backend too.)

use std::path::Path;

use bootproof::profile::{self, Profile, ShareBackend};
use bootproof::vm::boot::{BootReport, BootRequest, Outcome, boot};

#[path = "common/scenario.rs"]
mod scenario_run;
use scenario_run::{ready, run as run_scenario};

fn p9_profile(hook: &str, input: &Path) -> Profile {
    std::fs::write(input.join("hook.sh"), hook).unwrap();
    let mut p = profile::resolve("uefi").unwrap();
    p.share_backend = ShareBackend::P9;
    p.shares.push(profile::Share {
        tag: "bootproof-input".into(),
        path: input.to_path_buf(),
        readonly: true,
    });
    p
}

async fn run(profile: Profile, dir: &Path) -> BootReport {
    let req = BootRequest {
        profile,
        image: Some("reference:tiny".into()),
        until: None,
        timeout: None,
        run_dir: dir.join("run"),
        echo_console: false,
    };
    let r = boot(req).await.unwrap_or_else(|e| panic!("boot failed to start: {e}"));
    assert_eq!(r.outcome, Outcome::PoweredOff, "{}\n{:#?}", r.summary(), r.last_console_lines);
    r
}

fn events(r: &BootReport, tag: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(r.run_dir.join(format!("share-{tag}.events.jsonl")))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn the_tiny_guest_mounts_its_shares_from_bootproofs_own_server() {
    ready();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("given.txt"), "from the host\n").unwrap();
    let hook = "grep -E ' /mnt/(bootproof|input) ' /proc/mounts\n\
                cat /mnt/input/given.txt > /mnt/bootproof/copied.txt\n\
                umount /mnt/input\n\
                mount -t 9p -o trans=tcp,port=565,version=9p2000.L 10.0.2.100 /mnt/input\n\
                echo more > /mnt/input/nope.txt || echo read-only refused\n";
    let r = run(p9_profile(hook, &input), dir.path()).await;
    let console = std::fs::read_to_string(r.run_dir.join("console.log")).unwrap();
    assert!(console.contains("bootproof-tiny: efi=1 secureboot=0 tpm=0 share=ok"), "{console}");
    assert!(console.contains("hook exit=0") && console.contains("read-only refused"), "{console}");
    // Both mounts are 9P over TCP to the server's address.
    assert!(console.contains("10.0.2.100 /mnt/bootproof 9p") && console.contains("trans=tcp"), "{console}");
    assert!(console.contains("10.0.2.100 /mnt/input 9p"), "{console}");
    let share = r.run_dir.join("share");
    assert_eq!(std::fs::read_to_string(share.join("copied.txt")).unwrap(), "from the host\n");
    assert!(!input.join("nope.txt").exists());
    // QEMU had no virtio-9p device: the shares went through the servers.
    let argv = std::fs::read_to_string(r.run_dir.join("qemu-command.sh")).unwrap();
    assert!(!argv.contains("virtio-9p") && !argv.contains("-fsdev"), "{argv}");
    assert!(argv.contains("opt/org.bootproof/shares") && argv.contains("share-relay"), "{argv}");
    // The server saw each file made and closed, and refused the write into the
    // read-only share even when the guest mounted it read-write.
    let ev = events(&r, "bootproof");
    let closed: Vec<_> = ev.iter().filter(|e| e["event"] == "closed").map(|e| e["path"].clone()).collect();
    assert!(closed.contains(&"report.txt".into()) && closed.contains(&"copied.txt".into()), "{ev:#?}");
    let refused = events(&r, "bootproof-input");
    assert!(refused.iter().any(|e| e["event"] == "refused" && e["errno"] == libc::EROFS), "{refused:#?}");
}

#[tokio::test]
async fn a_guest_writing_past_the_quota_gets_an_error_and_the_host_disk_does_not_fill() {
    ready();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir(&input).unwrap();
    let hook = "dd if=/dev/zero of=/mnt/bootproof/fill bs=1M count=64\necho \"dd exit=$?\"\n";
    let mut p = p9_profile(hook, &input);
    p.share_quota = Some(8 << 20);
    let r = run(p, dir.path()).await;
    let console = std::fs::read_to_string(r.run_dir.join("console.log")).unwrap();
    assert!(console.contains("Disk quota exceeded"), "{console}");
    assert!(console.contains("dd exit=1"), "{console}");
    let size = std::fs::metadata(r.run_dir.join("share/fill")).unwrap().len();
    assert!(size <= 8 << 20 && size > 7 << 20, "the share's file is {size} bytes against an 8 MiB quota");
    let ev = events(&r, "bootproof");
    assert!(ev.iter().any(|e| e["event"] == "refused" && e["errno"] == libc::EDQUOT), "{ev:#?}");
}

/// `mount_share` mounts through whichever backend the plan chose; an unknown tag fails
/// naming the run's shares.
#[tokio::test]
async fn a_mount_share_step_mounts_through_the_p9_backend_and_an_unknown_tag_fails() {
    ready();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("inputs")).unwrap();
    std::fs::write(dir.path().join("inputs/given.txt"), "from the host\n").unwrap();
    std::fs::write(
        dir.path().join("p9.toml"),
        "firmware = \"uefi\"\nagent = \"shell\"\nshare_backend = \"p9\"\n",
    )
    .unwrap();
    let r = run_scenario(
        dir.path(),
        r#"
name = "mount-share-p9"
profile = "p9.toml"
image = "reference:tiny"
timeout = "2m"

[[share]]
tag = "inputs"
path = "inputs"

[[step]]
mount_share = { tag = "inputs", path = "/run/inputs" }

[[step]]
run = "grep ' /run/inputs ' /proc/mounts; cat /run/inputs/given.txt"
stdout = '(?m)^10\.0\.2\.100 /run/inputs 9p ro,.*trans=tcp.*\nfrom the host$'

[[step]]
mount_share = { tag = "elsewhere", path = "/run/x" }
"#,
    )
    .await;
    assert!(!r.passed, "{r:?}");
    use bootproof::report::Status;
    assert_eq!(r.steps[0].status, Status::Passed, "{r:?}");
    assert_eq!(r.steps[1].status, Status::Passed, "{r:?}");
    assert_eq!(r.steps[2].status, Status::Failed, "{r:?}");
    let f = r.failure.as_ref().unwrap();
    assert!(f.what.contains("mount_share elsewhere at /run/x"), "{f:?}");
    assert_eq!(f.expected, "a share tagged `elsewhere`", "{f:?}");
    assert_eq!(f.seen, "this run's shares are bootproof, inputs", "{f:?}");
}

/// A Debian installer syslog (a fixture written here in d-i's format) written line by
/// line into the share under the p9 backend: the server's events make the runner read
/// it as it grows, and its first error ends the run at once, naming the file and line,
/// as a virtio log port's would.
#[tokio::test]
async fn an_installer_log_growing_in_the_share_ends_the_run_on_its_first_error() {
    ready();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("inputs")).unwrap();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/logs/installer/debian12-grub/syslog");
    std::fs::copy(fixture, dir.path().join("inputs/syslog")).unwrap();
    std::fs::write(
        dir.path().join("p9.toml"),
        "firmware = \"uefi\"\nagent = \"shell\"\nshare_backend = \"p9\"\n",
    )
    .unwrap();
    let r = run_scenario(
        dir.path(),
        r#"
name = "share-live-findings"
profile = "p9.toml"
image = "reference:tiny"
timeout = "10m"

[[share]]
tag = "inputs"
path = "inputs"

[[step]]
mount_share = { tag = "inputs", path = "/run/inputs" }

[[step]]
run = "mkdir -p /mnt/bootproof/installer && (while IFS= read -r l; do echo \"$l\" >> /mnt/bootproof/installer/syslog; sleep 0.2; done < /run/inputs/syslog) >/dev/null 2>&1 & echo started"

[[step]]
wait_console = "this line never comes"
timeout = "8m"
"#,
    )
    .await;
    assert!(!r.passed, "{r:?}");
    let f = r.failure.as_ref().unwrap();
    assert_eq!(f.what, "installer log share/installer/syslog:5", "{f:?}");
    assert!(f.seen.contains("installer component corrupt: anna: bad sha256sum"), "{f:?}");
    let waited = r.steps[2].ended_secs - r.steps[2].started_secs;
    assert!(waited < 120.0, "the run waited {waited:.0} s of an 8 min step instead of ending on the finding");
}
