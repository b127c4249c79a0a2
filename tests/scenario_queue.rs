//! A scenario's time limit counts from its VM's start, never from when it began to wait
//! for a VM slot: three scenarios with `BOOTPROOF_MAX_VMS=1`, whose timeouts are shorter
//! than the time the last of them queues, all pass, and each reports its wait apart
//! (`queued_secs`). Alone in its binary because it sets the variable for the process.

use bootproof::scenario::{Scenario, budget, runner};
use std::time::Duration;

const SCENARIO: &str = r#"
profile = "uefi"
image = "reference:tiny"
timeout = "6s"

[[step]]
wait_console = "bootproof-tiny: efi=1"
"#;

#[test]
fn time_spent_waiting_for_a_vm_slot_is_not_taken_from_the_scenario() {
    // SAFETY: set before this binary's only test starts any other thread.
    unsafe { std::env::set_var("BOOTPROOF_MAX_VMS", "1") };
    if let Err(e) = bootproof::host::ensure_runtime() {
        panic!("this test boots real VMs and the host lacks what they need:\n{e}");
    }
    bootproof::images::ensure("tiny").expect("reference:tiny builds");
    let qemu = bootproof::host::qemu::info().expect("QEMU");
    let accel = bootproof::host::accel::choose(&qemu.path, &qemu.version).expect("an accelerator").accel;
    let limit = accel.scale(Duration::from_secs(6));

    let dir = tempfile::tempdir().unwrap();
    let load = |name: &str| {
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, format!("name = \"{name}\"\n{SCENARIO}")).unwrap();
        Scenario::load(&file).unwrap()
    };
    let (a, b, c) = (load("first"), load("second"), load("third"));
    let opts = runner::RunnerOptions::new(dir.path().join("artifacts"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let reports = rt.block_on(async {
        // The only slot is taken for longer than any scenario may run, so even the
        // first one queues past its own limit; the others wait for each other too.
        let held = budget::acquire(1024, |_| {}).await.unwrap();
        let release = async move {
            tokio::time::sleep(limit + Duration::from_secs(2)).await;
            drop(held);
        };
        let (_, ra, rb, rc) =
            tokio::join!(release, runner::run(&a, &opts), runner::run(&b, &opts), runner::run(&c, &opts));
        [ra, rb, rc]
    });
    for r in &reports {
        assert!(r.passed, "{}", r.failure_screen());
        assert!(r.queued_secs > limit.as_secs_f64(), "{} queued only {:.1}s", r.scenario, r.queued_secs);
        assert!(r.elapsed_secs <= r.timeout_secs, "{}: {} of {}", r.scenario, r.elapsed_secs, r.timeout_secs);
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(r.run_dir.join("summary.json")).unwrap()).unwrap();
        // serde_json's default float parsing may be one ulp off what was written.
        let close = |key: &str, want: f64| {
            let got = summary[key].as_f64().unwrap_or_else(|| panic!("{key} missing: {summary}"));
            assert!((got - want).abs() < 1e-6, "{key}: {got} in summary.json, {want} reported");
        };
        close("queued_secs", r.queued_secs);
        close("elapsed_secs", r.elapsed_secs);
    }
    let last = reports.iter().map(|r| r.queued_secs).fold(0.0, f64::max);
    assert!(last > 2.0 * limit.as_secs_f64() * 0.9, "the last one queued {last:.1}s");
}
