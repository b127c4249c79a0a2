//! Each property scenario fails for its own property, and only for it.
//!
//! Three variants of the installed reference system each lack one property
//! (`reference:installed-broken-sysctl`: the hardening sysctl file is missing;
//! `-home`: `/home` is a plain directory, not subvolume `home`; `-sddm`: SDDM is not
//! enabled). The shipped scenarios `hardening-sysctls`, `btrfs-layout` and `sddm-login`
//! run against every variant (`reference:installed=<variant>`, as `bootproof run
//! --image` does), nine runs: the matching scenario must fail with a message naming the
//! property, the other two must pass — a scenario that passed on a broken system, or
//! failed on a property it does not test, would show here.
//!
//! The luks and clean-boot scenarios are left out of the matrix: none of the three
//! breaks touches what they check, and each would add three boots (about 3.5 minutes
//! under TCG) to the suite.
//!
//! `kernel-cmdline-hardening`, `skel-populated`, `kernel-upgrade-reboot` and
//! `suspend-resume` run only against `installed-broken-cmdline`, `-skel`, `-grub` and
//! `-modules` (see [`SINGLES`]), and
//! `first-login-password-change` against `installed`, whose password never expired.
//!
//! Needs root on first use (the variants are built like reference:installed).

use std::path::PathBuf;

use bootproof::images::installed::{Broken, Variant};
use bootproof::report::{ScenarioReport, Status};
use bootproof::scenario::{ImageOverride, Scenario, runner};

/// Scenario, the property it proves, and what its failure must name.
const MATRIX: [(&str, Broken, &[&str]); 3] = [
    ("hardening-sysctls", Broken::Sysctl, &["sysctl", "kernel.kptr_restrict: expected 2"]),
    ("btrfs-layout", Broken::Home, &["btrfs_subvolumes", "home"]),
    ("sddm-login", Broken::Sddm, &["sddm.service"]),
];

/// Scenarios added after the matrix, each run only against the variant lacking its
/// property (the suite shows that it passes on `reference:installed`): one boot each
/// instead of a row and a column more of the matrix.
const SINGLES: [(&str, Broken, &[&str]); 4] = [
    (
        "kernel-cmdline-hardening",
        Broken::Cmdline,
        &["kernel_cmdline", "missing: lockdown=integrity", "missing: vsyscall=none", "missing: slab_nomerge"],
    ),
    ("skel-populated", Broken::Skel, &["/etc/skel", ".bashrc"]),
    // The grub drift: the first grub.cfg had the arguments, /etc/default/grub does not,
    // so the kernel the upgrade boots has lost them (and everything else holds).
    (
        "kernel-upgrade-reboot",
        Broken::Grub,
        &[
            "kernel_cmdline",
            "missing: lockdown=integrity",
            "missing: init_on_free=1",
            "missing: fbcon=nodefer",
        ],
    ),
    // The wifi death: modules locked once the system is up, so the sleep hook's unload
    // is refused and the NIC it unbound is gone after resume.
    (
        "suspend-resume",
        Broken::Modules,
        &[
            "no NIC after resume",
            "virtio_net is loaded, bound to nothing",
            "refused to unload module virtio_net",
        ],
    ),
];

/// The image a single is written for: `reference:installed`, the grub variant for the
/// kernel upgrade (whose broken twin differs from it in /etc/default/grub alone), or
/// the laptop variant for suspend and resume (its twin locks modules once up).
fn written_for(scenario: &str) -> &'static str {
    match scenario {
        "kernel-upgrade-reboot" => "reference:installed-grub",
        "suspend-resume" => "reference:installed-laptop",
        _ => "reference:installed",
    }
}

/// `first-login-password-change` is written for `installed-first-login`; the system
/// lacking its property (an expired password) is `installed` itself, on which it must
/// fail waiting for pam_unix's refusal.
const FIRST_LOGIN: (&str, &str, &[&str]) =
    ("first-login-password-change", "reference:installed-first-login", &["expired password for user admin"]);

/// What a report says failed: the failure, then each failed step and check.
fn failed_text(r: &ScenarioReport) -> String {
    let mut text = String::new();
    if let Some(f) = &r.failure {
        text += &format!("{}\nexpected: {}\nseen: {}\n", f.what, f.expected, f.seen);
    }
    for s in r.steps.iter().filter(|s| s.status == Status::Failed) {
        text += &format!("step {}: {}\n", s.description, s.message.as_deref().unwrap_or(""));
    }
    for c in r.checks.iter().filter(|c| c.status == Status::Failed) {
        text += &format!("{}: {}\n", c.kind, c.message);
    }
    text
}

#[test]
fn each_property_scenario_fails_only_on_the_variant_lacking_its_property() {
    if let Err(e) = bootproof::host::ensure_runtime() {
        panic!("this test boots real VMs and the host lacks what they need:\n{e}");
    }
    for (_, broken, _) in MATRIX.iter().chain(&SINGLES) {
        let name = Variant::Broken(*broken).name();
        if let Err(e) = bootproof::images::ensure(name) {
            panic!("building reference:{name}: {e}");
        }
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let load = |name: &str| {
        Scenario::load(&dir.join(format!("{name}.toml"))).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let artifacts = std::env::var_os("BOOTPROOF_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("artifacts"))
        .join("broken-properties");
    let opts = runner::RunnerOptions {
        rerun: runner::Rerun::CargoTest { test: "broken_properties".into() },
        ..runner::RunnerOptions::new(artifacts)
    };

    // Every run starts at once; the VM budget lets as many boot as the host can take.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let local = tokio::task::LocalSet::new();
    let runs: (Vec<(&str, Broken, ScenarioReport)>, ScenarioReport) = local.block_on(&rt, async {
        // `scenario`, written for image `from`, started on image `to`.
        let start = |scenario: &str, from: &str, to: String| {
            let mut s = load(scenario);
            ImageOverride::parse(&format!("{from}={to}")).unwrap().apply(&mut s);
            assert_eq!(s.image, to, "{scenario} is written for {from}");
            let opts = opts.clone();
            tokio::task::spawn_local(async move { runner::run(&s, &opts).await })
        };
        let broken_image = |broken| format!("reference:{}", Variant::Broken(broken).name());
        let mut handles = Vec::new();
        for (_, broken, _) in MATRIX {
            for (scenario, _, _) in MATRIX {
                handles.push((
                    scenario,
                    broken,
                    start(scenario, "reference:installed", broken_image(broken)),
                ));
            }
        }
        for (scenario, broken, _) in SINGLES {
            handles.push((scenario, broken, start(scenario, written_for(scenario), broken_image(broken))));
        }
        let (scenario, written_for, _) = FIRST_LOGIN;
        let first_login = start(scenario, written_for, "reference:installed".into());
        let mut runs = Vec::new();
        for (scenario, broken, handle) in handles {
            runs.push((scenario, broken, handle.await.expect("the run finished")));
        }
        (runs, first_login.await.expect("the run finished"))
    });
    let (runs, first_login) = runs;

    let mut wrong = Vec::new();
    for (scenario, broken, report) in &runs {
        let (_, property, names) = MATRIX.iter().chain(&SINGLES).find(|(s, _, _)| s == scenario).unwrap();
        let image = Variant::Broken(*broken).name();
        let line = format!("{scenario} on {image}");
        if broken == property {
            let text = failed_text(report);
            if report.passed {
                wrong.push(format!("{line}: passed, but the system lacks its property"));
            } else if let Some(missing) = names.iter().find(|n| !text.contains(*n)) {
                wrong.push(format!("{line}: failed without naming `{missing}`:\n{text}"));
            }
        } else if !report.passed {
            wrong.push(format!(
                "{line}: failed, though {image} lacks only what another scenario proves:\n{}",
                report.failure_screen()
            ));
        }
    }
    let (scenario, _, names) = FIRST_LOGIN;
    let text = failed_text(&first_login);
    if first_login.passed {
        wrong.push(format!("{scenario} on installed: passed, but admin's password never expired there"));
    } else if let Some(missing) = names.iter().find(|n| !text.contains(*n)) {
        wrong.push(format!("{scenario} on installed: failed without naming `{missing}`:\n{text}"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}
