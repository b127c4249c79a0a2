//! Every check kind fails for the right reason: against a real guest that lacks the
//! property, each check fails with a message naming the property and what was seen,
//! and a check that cannot look fails as "not checked" with why, never passes.

use bootproof::report::{CheckReport, ScenarioReport, Status};

#[path = "common/scenario.rs"]
mod scenario_run;
use scenario_run::{ready, run};

fn check<'a>(r: &'a ScenarioReport, kind: &str) -> &'a CheckReport {
    r.checks.iter().find(|c| c.kind == kind).unwrap_or_else(|| panic!("no {kind} check in {:?}", r.checks))
}

fn failed_with(r: &ScenarioReport, kind: &str, status: Status, needles: &[&str]) {
    let c = check(r, kind);
    assert_eq!(c.status, status, "{kind}: {c:?}");
    for n in needles {
        assert!(c.message.contains(n), "{kind}: {n:?} missing from {:?}", c.message);
    }
}

/// One boot of the installed system with a failed unit, checked for properties it does
/// not have: each check fails on its own evidence.
#[tokio::test]
async fn checks_of_properties_the_installed_system_lacks_fail_naming_them() {
    ready();
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        r#"
name = "lacking"
profile = "uefi"
image = "reference:installed"
timeout = "4m"

[secrets]
luks = { reference = "installed/luks-passphrase" }

[[step]]
wait_console = "Please unlock disk root:"
timeout = "60s"

[[step]]
type_console = "${secret:luks}\n"

[[step]]
wait_journal = { unit = "multi-user.target" }
timeout = "90s"

# A unit that fails, as a broken service would.
[[step]]
run = "systemd-run --unit=bootproof-broken.service /bin/false; sleep 1; systemctl is-failed bootproof-broken.service"
stdout = "^failed$"

[[step]]
power_off = true
timeout = "60s"

[[step]]
wait_file = "journal.export"
timeout = "10s"

[[check]]
no_failed_units = true

[[check]]
journal_lacks = "bootproof-broken.service: Main process exited"

[[check]]
journal_contains = "no such line was ever logged"

[[check]]
mounts = { "/" = "^/dev/vda2 ext4" }

[[check]]
luks = { cipher = "serpent-xts-plain64", pbkdf = "pbkdf2" }

[[check]]
btrfs_subvolumes = ["root", "home", "var"]

[[check]]
file_contains = { path = "/etc/bootproof-absent", pattern = "x" }

[[check]]
secure_boot = true

[[check]]
no_selinux_denials = true

[[check]]
no_error_findings = true
"#,
    )
    .await;
    assert!(!r.passed);
    let all_ran = r.steps.iter().all(|s| s.status == Status::Passed);
    assert!(all_ran, "every step passes; only checks fail: {}", r.failure_screen());
    failed_with(&r, "no_failed_units", Status::Failed, &["failed: bootproof-broken.service"]);
    failed_with(&r, "journal_lacks", Status::Failed, &["bootproof-broken.service: Main process exited"]);
    failed_with(&r, "journal_contains", Status::Failed, &["none among"]);
    failed_with(&r, "mounts", Status::Failed, &["/: expected /^/dev/vda2 ext4/, seen ", "btrfs"]);
    failed_with(
        &r,
        "luks",
        Status::Failed,
        &[
            "cipher: expected serpent-xts-plain64, seen aes-xts-plain64",
            "pbkdf of every keyslot: expected pbkdf2, seen argon2id",
        ],
    );
    failed_with(&r, "btrfs_subvolumes", Status::Failed, &["missing: var", "present: "]);
    failed_with(&r, "file_contains", Status::Failed, &["/etc/bootproof-absent", "No such file"]);
    failed_with(&r, "secure_boot", Status::Failed, &["SecureBoot = 0"]);
    failed_with(&r, "no_selinux_denials", Status::NotChecked, &["not checked: SELinux is not enabled"]);
    failed_with(&r, "no_error_findings", Status::Failed, &["bootproof-broken.service"]);
    let screen = r.failure_screen();
    assert!(screen.contains("checks:   0 passed, 10 failed (1 not checked)"), "{screen}");
}

/// The installed system with Debian's SELinux policy, permissive: the real kernel logs
/// the accesses the policy does not allow, and `no_selinux_denials` fails naming them.
/// An allow-list that covers each of them, and nothing wider, makes the same check pass.
#[tokio::test]
async fn no_selinux_denials_fails_on_what_a_real_selinux_kernel_denied_and_its_allow_list_passes() {
    ready();
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        r#"
name = "selinux-denials"
profile = "uefi"
image = "reference:installed-selinux"
timeout = "5m"

[secrets]
luks = { reference = "installed-selinux/luks-passphrase" }

[[step]]
wait_console = "Please unlock disk root:"
timeout = "60s"

[[step]]
type_console = "${secret:luks}\n"

[[step]]
wait_journal = { unit = "multi-user.target" }
timeout = "90s"

[[step]]
run = "sestatus"
stdout = '^Loaded policy name:\s+default$(?s:.*)^Current mode:\s+permissive$'

[[step]]
run = "cat /sys/fs/selinux/enforce"
stdout = '^0$'

[[check]]
no_selinux_denials = true

# What Debian's reference policy denies on this system, each named by the domain that
# was denied and what it was denied on.
[[check]]
no_selinux_denials = true
allow = [
    # mnt-bootproof.mount: the 9p share carries no labels.
    'comm="mount" .*scontext=system_u:system_r:mount_t:s0 tcontext=system_u:object_r:unlabeled_t:s0 tclass=filesystem ',
    # systemd-udevd reads fs.nr_open and raises its own file limit.
    'comm="systemd-udevd" .*scontext=system_u:system_r:udev_t:s0 tcontext=system_u:(object_r:sysctl_fs_t|system_r:udev_t):s0 ',
    # systemd-tmpfiles relabels /etc/mtab, /root and /root/.ssh.
    '\{ relabel(from|to) \} for  pid=\d+ comm="systemd-tmpfile" .*scontext=system_u:system_r:systemd_tmpfiles_t:s0 ',
    # agetty trips a CAP_CHECKPOINT_RESTORE check, which getty_t is not granted.
    '\{ checkpoint_restore \} for  pid=\d+ comm="agetty" ',
    # Xorg and the Qt greeter make writable memory executable (JIT compilers).
    '\{ execmem \} for  pid=\d+ comm="(Xorg|sddm-greeter)" scontext=\S+:(xserver_t|xdm_t):s0 ',
    # systemd's user environment generator looks into SDDM's home, /var/lib/sddm.
    'comm="30-systemd-envi" .*tcontext=system_u:object_r:xkb_var_lib_t:s0 tclass=dir ',
]
"#,
    )
    .await;
    let all_ran = r.steps.iter().all(|s| s.status == Status::Passed);
    assert!(all_ran, "the guest boots, unlocks and answers under SELinux: {}", r.failure_screen());
    let checks: Vec<&CheckReport> = r.checks.iter().filter(|c| c.kind == "no_selinux_denials").collect();
    let [denied, allowed] = checks.as_slice() else { panic!("two checks: {:?}", r.checks) };

    assert_eq!(denied.status, Status::Failed, "{denied:?}");
    let (count, shown) = denied.message.split_once(" denials in ").unwrap_or_else(|| panic!("{denied:?}"));
    let count: usize = count.parse().unwrap_or_else(|_| panic!("a count first: {denied:?}"));
    assert!(
        shown.starts_with("/var/log/audit/audit.log and the journal (SELinux permissive):\navc:  denied  { "),
        "{denied:?}"
    );
    let first = shown.lines().nth(1).unwrap();
    assert!(first.contains(" } for  pid=") && first.contains(" comm=\""), "{first}");
    assert!(first.ends_with(" permissive=1"), "{first}");
    // The earliest denials come before auditd runs: only the kernel log and the journal
    // have them, and the check counts them.
    assert!(
        ["\"mount\"", "\"systemd-udevd\""].iter().any(|comm| first.contains(&format!(" comm={comm} "))),
        "{first}"
    );
    assert!(count >= 10, "{denied:?}");

    assert_eq!(allowed.status, Status::Passed, "every denial in the allow-list: {allowed:?}");
    assert!(allowed.message.ends_with("(SELinux permissive), all in the allow-list"), "{allowed:?}");
    assert!(!allowed.message.starts_with("none"), "{allowed:?}");
}

/// On the tiny guest (busybox, no systemd, no SELinux) checks that cannot look say so
/// and fail; a real kernel panic fails `no_kernel_oops` from the console alone.
#[tokio::test]
async fn checks_that_cannot_look_fail_as_not_checked_and_a_kernel_panic_fails_no_kernel_oops() {
    ready();
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        r#"
name = "cannot-look"
profile = "uefi"
image = "reference:tiny"
timeout = "2m"

[[step]]
run = "uname -s"
stdout = "^Linux$"

[[check]]
no_failed_units = true

[[check]]
no_selinux_denials = true

[[check]]
sysctl = { "kernel.ostype" = "Linux" }

[[check]]
kernel_cmdline = ["console=ttyS0", "lockdown=integrity"]
"#,
    )
    .await;
    assert!(!r.passed, "{}", r.failure_screen());
    failed_with(&r, "no_failed_units", Status::NotChecked, &["not checked: ", "systemctl", "exited 127"]);
    failed_with(&r, "no_selinux_denials", Status::NotChecked, &["not checked: SELinux is not enabled"]);
    failed_with(&r, "sysctl", Status::Passed, &["1 values as expected"]);
    // The tiny guest boots with console=ttyS0 and without lockdown=: only that is named.
    failed_with(&r, "kernel_cmdline", Status::Failed, &["missing: lockdown=integrity"]);
    assert!(!check(&r, "kernel_cmdline").message.contains("console"), "{:?}", check(&r, "kernel_cmdline"));
    let f = r.failure.as_ref().unwrap();
    assert!(f.what.starts_with("check no_failed_units"), "{f:?}");

    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        r#"
name = "panics"
profile = "uefi"
image = "reference:tiny"
timeout = "2m"

# The kernel's own crash trigger: a real panic, after the command has answered.
[[step]]
run = "(sleep 1; echo c > /proc/sysrq-trigger) >/dev/null 2>&1 &"

[[step]]
wait_console = "Kernel panic - not syncing"

[[check]]
no_kernel_oops = true
"#,
    )
    .await;
    assert!(!r.passed);
    failed_with(&r, "no_kernel_oops", Status::Failed, &["console.log:", "sysrq"]);
}
