//! When QEMU goes away, the error says what QEMU said: its exit status and the last
//! lines of its log (`qemu.log` in the run directory), not only that a connection
//! closed. Both cases use a real QEMU through the public API: one that refuses a device
//! after it has connected the console and QMP (as it refused the installer's clashing
//! boot index), and one that leaves after start-up while QMP and the console are used.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use bootproof::profile::Profile;
use bootproof::vm::boot::host_facts;
use bootproof::vm::plan::Plan;
use bootproof::vm::rundir::RunLayout;
use bootproof::vm::{Vm, VmError, VmOptions};

/// One QEMU at a time: the host is shared.
static ONE_VM: Mutex<()> = Mutex::new(());

/// A plan for `profile_text` with no image, in a run directory under `dir`.
fn plan(profile_text: &str, dir: &Path) -> Plan {
    bootproof::host::ensure_runtime().unwrap_or_else(|e| panic!("{e}"));
    let profile = Profile::parse(profile_text, Path::new("exit.toml")).unwrap();
    let layout = RunLayout::create(&dir.join("run")).unwrap();
    let host = host_facts(&profile, &layout.share_dir()).unwrap_or_else(|e| panic!("{e}"));
    Plan::new(&profile, None, &host, &layout).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// QEMU connects its sockets first and creates devices afterwards, so this QEMU is
/// gone only once bootproof is already talking QMP.
#[test]
fn a_device_qemu_refuses_at_start_up_is_quoted_with_the_exit_status() {
    let _one = ONE_VM.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let plan = plan("extra_args = [\"-device\", \"virtio-blk-pci,drive=nosuchdrive\"]\n", tmp.path());
    let err = match runtime().block_on(Vm::launch(plan, VmOptions::default())) {
        Ok(_) => panic!("QEMU started with a device whose drive does not exist"),
        Err(e) => e,
    };
    let text = err.to_string();
    assert!(matches!(err, VmError::EarlyExit { .. }), "{text}");
    assert!(text.contains("Property 'virtio-blk-device.drive' can't find value 'nosuchdrive'"), "{text}");
    assert!(text.contains("exit status: 1"), "{text}");
}

/// QEMU ends after start-up (here on SIGTERM, as an OOM killer or an operator would
/// end it, and it prints why); QMP and the console, which only see their sockets
/// close, say how QEMU ended and quote its log.
#[test]
fn qmp_and_the_console_say_how_qemu_ended_after_start_up() {
    let _one = ONE_VM.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let plan = plan("extra_args = [\"-S\"]\n", tmp.path());
    runtime().block_on(async {
        let vm = Vm::launch(plan, VmOptions::default()).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(vm.qmp().query_status().await.unwrap(), "prelaunch");
        let qemu = vm.pids()[0];
        // SAFETY: a signal to our own child.
        assert_eq!(unsafe { libc::kill(qemu as i32, libc::SIGTERM) }, 0);
        assert!(vm.console().closed(Duration::from_secs(20)).await, "QEMU did not leave on SIGTERM");

        let qmp = vm.qmp().query_status().await.expect_err("QMP answered after QEMU left").to_string();
        let console = vm
            .console()
            .wait_for(&regex::bytes::Regex::new("never printed").unwrap(), Duration::from_secs(5))
            .await
            .expect_err("the console matched after QEMU left")
            .to_string();
        for text in [qmp, console] {
            assert!(text.contains("exit status: 0"), "{text}");
            assert!(text.contains("terminating on signal 15"), "QEMU's own line is missing:\n{text}");
        }
    });
}
