//! Two scenarios started together with `BOOTPROOF_MAX_VMS=1` run one after the other:
//! the VM budget holds across tasks (and processes) whatever the thread count. Alone
//! in its binary because it sets the variable for the whole process.

use bootproof::scenario::{Scenario, runner};

const SCENARIO: &str = r#"
profile = "uefi"
image = "reference:tiny"
timeout = "2m"

[[step]]
wait_console = "bootproof-tiny: efi=1"
"#;

#[test]
fn with_one_slot_two_scenarios_never_overlap() {
    // SAFETY: set before this binary's only test starts any other thread.
    unsafe { std::env::set_var("BOOTPROOF_MAX_VMS", "1") };
    if let Err(e) = bootproof::host::ensure_runtime() {
        panic!("this test boots real VMs and the host lacks what they need:\n{e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let load = |name: &str| {
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, format!("name = \"{name}\"\n{SCENARIO}")).unwrap();
        Scenario::load(&file).unwrap()
    };
    let (a, b) = (load("first"), load("second"));
    let opts = runner::RunnerOptions::new(dir.path().join("artifacts"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (ra, rb) = rt.block_on(async { tokio::join!(runner::run(&a, &opts), runner::run(&b, &opts)) });
    for r in [&ra, &rb] {
        assert!(r.passed, "{}", r.failure_screen());
    }
    let window =
        |r: &bootproof::report::ScenarioReport| (r.vm_started_unix.unwrap(), r.vm_ended_unix.unwrap());
    let ((a0, a1), (b0, b1)) = (window(&ra), window(&rb));
    assert!(a1 <= b0 || b1 <= a0, "VMs overlapped: {a0}..{a1} and {b0}..{b1}");
    // Both were started together: the later one really waited for the slot.
    assert!((ra.started_unix - rb.started_unix).abs() < 2.0);
}
