//! Log ports against real QEMU and the tiny guest: a guest writing numbered lines to a
//! virtio-serial log port as fast as it can, and QEMU killed with SIGKILL in the middle.
//! Every line received up to the last one is in the file, in order, with no gap.

use std::time::{Duration, Instant};

use bootproof::profile::{self, LogPort};
use bootproof::vm::boot::{host_facts, resolve_image};
use bootproof::vm::plan::Plan;
use bootproof::vm::rundir::RunLayout;
use bootproof::vm::{Vm, VmOptions};

/// The tiny guest's hook: find the port by its name in sysfs (no udev), then write
/// numbered lines to it until QEMU is killed.
const HOOK: &str = r#"
for p in /sys/class/virtio-ports/vport*; do
    [ "$(cat "$p/name")" = org.bootproof.test.log.0 ] && dev=/dev/${p##*/}
done
echo "bootproof-test: port $dev"
i=0; while :; do echo "line $i"; i=$((i+1)); done > "$dev"
"#;

#[tokio::test]
async fn a_sigkill_of_qemu_loses_no_line_already_received() {
    if let Err(e) = bootproof::host::ensure_runtime() {
        panic!("this test boots real VMs and the host lacks what they need:\n{e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("hook.sh"), HOOK).unwrap();
    let mut p = profile::resolve("uefi").unwrap();
    p.shares.push(profile::Share { tag: "bootproof-input".into(), path: input, readonly: true });
    p.log_ports.push(LogPort {
        name: "org.bootproof.test.log.0".into(),
        file: "installer/flood.log".into(),
        format: None,
    });
    let layout = RunLayout::create(&dir.path().join("run")).unwrap();
    let image = resolve_image("reference:tiny").unwrap();
    let host = host_facts(&p, &layout.share_dir()).unwrap();
    let plan = Plan::new(&p, Some(&image), &host, &layout).unwrap();
    let vm = Vm::launch(plan, VmOptions::default()).await.unwrap();
    let port = vm.log_ports()[0].clone();
    assert_eq!(port.name, "org.bootproof.test.log.0");

    // Let it flood for a while, then kill QEMU the hard way.
    let started = Instant::now();
    while port.lines() < 20_000 && started.elapsed() < Duration::from_secs(240) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = port.lines();
    assert!(before >= 20_000, "only {before} lines in 240 s; console: {:?}", vm.console().tail());
    let pid = vm.pids()[0];
    // SAFETY: a plain kill(2) of the QEMU child this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    assert!(port.closed(Duration::from_secs(10)).await, "the capture ends when QEMU is gone");

    let text = std::fs::read_to_string(&port.file).unwrap();
    let numbers: Vec<u64> = text
        .lines()
        .map(|l| {
            let body = l.split_once("] ").map(|(_, b)| b).unwrap_or_else(|| panic!("no stamp: {l:?}"));
            body.strip_prefix("line ").and_then(|n| n.parse().ok()).unwrap_or(u64::MAX)
        })
        .collect();
    let complete = &numbers[..numbers.len() - 1];
    for (i, n) in complete.iter().enumerate() {
        assert_eq!(*n, i as u64, "line {} of {} holds {n}", i + 1, numbers.len());
    }
    assert!(numbers.len() as u64 >= before, "{} lines on disk, {before} seen before the kill", numbers.len());
    assert_eq!(port.lines(), numbers.len() as u64, "every line counted is on disk");
}
