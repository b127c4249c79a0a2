use super::*;

/// Feeds `(identifier, pid, message)` journal messages; returns the phase after each.
fn phases_of(messages: &[(&str, &str, &str)]) -> Vec<Option<Phase>> {
    let mut phases = Phases::default();
    messages
        .iter()
        .map(|(identifier, pid, text)| {
            let pid = (!pid.is_empty()).then_some(pid.as_bytes());
            phases.journal(identifier.as_bytes(), pid, text.as_bytes());
            phases.current()
        })
        .collect()
}

use Phase::{Running, Shutdown, Startup};

#[test]
fn a_boot_from_its_kernel_banner_to_power_off() {
    // Messages of the installed reference system's journal, in their order.
    let seen = phases_of(&[
        ("kernel", "", "Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org)"),
        ("systemd", "1", "Reached target multi-user.target - Multi-User System."),
        ("systemd", "1", "Startup finished in 11.455s (kernel) + 32.499s (userspace) = 43.955s."),
        ("systemd-logind", "397", "Power key pressed short."),
        ("systemd-logind", "397", "System is powering down."),
        ("systemd", "1", "Stopping session-1.scope - Session 1 of User sddm..."),
    ]);
    assert_eq!(
        seen,
        [Some(Startup), Some(Startup), Some(Running), Some(Running), Some(Shutdown), Some(Shutdown)]
    );
}

#[test]
fn pid_1_stopping_the_boot_targets_is_a_shutdown_without_logind() {
    let up = ("systemd", "1", "Startup finished in 4.858s (kernel) + 27.927s (userspace) = 43.327s.");
    // systemd 239 names the target by its description only.
    let old = phases_of(&[up, ("systemd", "1", "Stopped target Multi-User System.")]);
    assert_eq!(old[1], Some(Shutdown));
    let new = phases_of(&[up, ("systemd", "1", "Stopped target timers.target - Timer Units.")]);
    assert_eq!(new[1], Some(Shutdown));
    let reached = phases_of(&[("systemd", "1", "Reached target shutdown.target - System Shutdown.")]);
    assert_eq!(reached[0], Some(Shutdown));
}

#[test]
fn what_is_no_shutdown() {
    let seen = phases_of(&[
        ("kernel", "", "Linux version 6.0.5-300.fc37.aarch64"),
        // The initrd stops its targets for the switch to the real root (fedora37).
        ("systemd", "1", "Stopped target basic.target - Basic System."),
        (
            "systemd",
            "1",
            "Startup finished in 4.858s (kernel) + 10.540s (initrd) + 27.927s (userspace) = 43.327s.",
        ),
        // A user manager ends with a logout, in the words of PID 1's shutdown.
        ("systemd", "1084", "Stopped target default.target - Main User Target."),
        ("systemd", "1084", "Reached target shutdown.target - Shutdown."),
        // A device-bound target stops when its device goes.
        ("systemd", "1", "Stopped target bluetooth.target - Bluetooth Support."),
        // A service restarted while the system runs.
        ("systemd", "1", "Stopping sddm.service - Simple Desktop Display Manager..."),
        ("systemd-logind", "396", "Removed session 1."),
    ]);
    assert_eq!(seen[1], Some(Startup));
    assert!(seen[2..].iter().all(|p| *p == Some(Running)), "{seen:?}");
}

#[test]
fn each_boot_starts_unknown_until_its_markers() {
    let mut phases = Phases::default();
    phases.boot_id(b"03eab083adb64e81b11eccc0b7e52eea");
    phases.journal(b"systemd-logind", Some(b"397"), b"System is rebooting.");
    assert_eq!(phases.current(), Some(Shutdown));
    phases.boot_id(b"03eab083adb64e81b11eccc0b7e52eea");
    assert_eq!(phases.current(), Some(Shutdown));
    phases.boot_id(b"ea7567e5b1b34034840dc90b7656705e");
    assert_eq!(phases.current(), None);
    phases.journal(b"kernel", None, b"Linux version 6.1.0-57-amd64");
    assert_eq!(phases.current(), Some(Startup));
}

#[test]
fn a_kernel_log_shows_only_the_shutdown() {
    let mut phases = Phases::default();
    let mut after = |message: &str| {
        phases.kernel_log(message.as_bytes());
        phases.current()
    };
    assert_eq!(after("Linux version 6.1.0-57-amd64"), None);
    // PID 1's lines before journald runs (a vmcore-dmesg of the corpus has them).
    assert_eq!(after("systemd[1]: systemd 222 running in system mode. (+PAM +AUDIT +SELINUX)"), None);
    assert_eq!(after("systemd[1]: Running in initial RAM disk."), None);
    assert_eq!(after("[  OK  ] Stopped target timers.target - Timer Units."), None);
    assert_eq!(after("[  OK  ] Reached target shutdown.target - System Shutdown."), Some(Shutdown));
    assert_eq!(after("Linux version 6.1.0-57-amd64"), None);
    assert_eq!(after("systemd-shutdown[1]: Syncing filesystems and block devices."), Some(Shutdown));
    assert_eq!(after("Linux version 6.1.0-57-amd64"), None);
    assert_eq!(after("reboot: Power down"), Some(Shutdown));
}

/// Whole logs in their real formats, through the analyzers that carry them to the rules.
mod through_the_analyzers {
    use std::io::{BufReader, Cursor};
    use std::path::Path;

    use crate::logs::journal::{JournalExport, JournalJson, JournalShort};
    use crate::logs::{Analyzer, Finding, FindingKind, Phase, Severity};

    const BOOT_A: &str = "03eab083adb64e81b11eccc0b7e52eea";
    const BOOT_B: &str = "ea7567e5b1b34034840dc90b7656705e";
    const BANNER: &str = "Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian \
        12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian \
        6.1.192-3 (2026-11-26)";

    /// `(boot, identifier, pid, message)`: two boots of the installed reference system, in
    /// the words its journal has. The first is powered off with a session open: SDDM's
    /// helper dies of the shutdown's SIGTERM, a unit does not stop in time, a mount does
    /// not unmount, and the kernel oopses as it goes down. In the second, a unit fails
    /// while the system starts and the helper crashes while it runs.
    const TWO_BOOTS: &[(&str, &str, &str, &str)] = &[
        (BOOT_A, "kernel", "", BANNER),
        (BOOT_A, "systemd", "1", "Reached target graphical.target - Graphical Interface."),
        (BOOT_A, "systemd", "1", "Startup finished in 13.982s (kernel) + 47.086s (userspace) = 1min 1.069s."),
        (BOOT_A, "sddm", "406", "Session started"),
        (BOOT_A, "systemd-logind", "396", "Power key pressed short."),
        (BOOT_A, "systemd-logind", "396", "Powering off..."),
        (BOOT_A, "systemd-logind", "396", "System is powering down."),
        (BOOT_A, "systemd", "1", "Stopping session-3.scope - Session 3 of User admin..."),
        (BOOT_A, "sddm", "406", "Auth: sddm-helper crashed (exit code 15)"),
        (BOOT_A, "sddm", "406", "Auth: sddm-helper exited with 15"),
        (BOOT_A, "systemd", "1", "Stopped target graphical.target - Graphical Interface."),
        (BOOT_A, "systemd", "1", "qemu-guest-agent.service: State 'stop-sigterm' timed out. Killing."),
        (BOOT_A, "systemd", "1", "qemu-guest-agent.service: Failed with result 'timeout'."),
        (BOOT_A, "systemd", "1", "Failed unmounting home.mount - /home."),
        (BOOT_A, "kernel", "", "BUG: kernel NULL pointer dereference, address: 0000000000000008"),
        (BOOT_A, "kernel", "", "#PF: supervisor read access in kernel mode"),
        (BOOT_A, "kernel", "", "Oops: 0000 [#1] PREEMPT SMP NOPTI"),
        (BOOT_A, "kernel", "", "Call Trace:"),
        (BOOT_A, "kernel", "", "---[ end trace 0000000000000000 ]---"),
        (BOOT_B, "kernel", "", BANNER),
        (
            BOOT_B,
            "systemd",
            "1",
            "Failed to start systemd-networkd-wait-online.service - Wait for Network to be Configured.",
        ),
        (BOOT_B, "systemd", "1", "Startup finished in 14.102s (kernel) + 46.870s (userspace) = 1min 972ms."),
        (BOOT_B, "sddm", "405", "Auth: sddm-helper crashed (exit code 15)"),
    ];

    /// What the rules must make of [`TWO_BOOTS`], in order of their first line.
    fn expected() -> Vec<(FindingKind, Severity, Option<Phase>, &'static str)> {
        use FindingKind::{DisplayManagerFailure, FailedUnit, KernelOops};
        use Phase::{Running, Shutdown, Startup};
        use Severity::{Error, Info, Warning};
        vec![
            (DisplayManagerFailure, Info, Some(Shutdown), "SDDM: Auth: sddm-helper crashed (exit code 15)"),
            (DisplayManagerFailure, Info, Some(Shutdown), "SDDM: Auth: sddm-helper exited with 15"),
            (
                FailedUnit,
                Warning,
                Some(Shutdown),
                "unit qemu-guest-agent.service failed: qemu-guest-agent.service: Failed with result 'timeout'.",
            ),
            (
                FailedUnit,
                Warning,
                Some(Shutdown),
                "unit home.mount failed: Failed unmounting home.mount - /home.",
            ),
            (
                KernelOops,
                Error,
                Some(Shutdown),
                "BUG: kernel NULL pointer dereference, address: 0000000000000008",
            ),
            (
                FailedUnit,
                Error,
                Some(Startup),
                "unit systemd-networkd-wait-online.service failed: Failed to start systemd-networkd-wait-online.service - Wait for Network to be Configured.",
            ),
            (DisplayManagerFailure, Error, Some(Running), "SDDM: Auth: sddm-helper crashed (exit code 15)"),
        ]
    }

    /// Microseconds since the epoch of the `i`th message: one every 10 ms from the
    /// first boot's start.
    fn realtime_us(i: usize) -> u64 {
        1_796_017_634_000_000 + i as u64 * 10_000
    }

    /// [`TWO_BOOTS`] as `journalctl -o export` writes it: journald's own fields, then the
    /// sender's; a kernel message has no `_PID`.
    fn export() -> Vec<u8> {
        let mut out = String::new();
        for (i, (boot, identifier, pid, message)) in TWO_BOOTS.iter().enumerate() {
            let us = realtime_us(i);
            out.push_str(&format!(
                "__CURSOR=s=d88df5149d9340b3aa0a24657b61e479;i={i:x};b={boot};m={i:x};t={us:x};x={i:x}\n\
                 __REALTIME_TIMESTAMP={us}\n__MONOTONIC_TIMESTAMP={i}\n_BOOT_ID={boot}\n\
                 _MACHINE_ID=a89dd8366ec34e429740e0610a9c95b2\n_HOSTNAME=bootproof-installed\nPRIORITY=6\n"
            ));
            if *identifier == "kernel" {
                out.push_str("_TRANSPORT=kernel\nSYSLOG_FACILITY=0\nSYSLOG_IDENTIFIER=kernel\n");
            } else {
                out.push_str(&format!(
                    "_TRANSPORT=journal\n_UID=0\n_GID=0\n_PID={pid}\n_COMM={identifier}\n\
                     SYSLOG_IDENTIFIER={identifier}\n"
                ));
            }
            out.push_str(&format!("MESSAGE={message}\n\n"));
        }
        out.into_bytes()
    }

    /// [`TWO_BOOTS`] as `journalctl -o json` writes it, one object a line.
    fn json() -> Vec<u8> {
        let mut out = Vec::new();
        for (i, (boot, identifier, pid, message)) in TWO_BOOTS.iter().enumerate() {
            let mut entry = serde_json::json!({
                "__REALTIME_TIMESTAMP": realtime_us(i).to_string(),
                "_BOOT_ID": boot,
                "PRIORITY": "6",
                "SYSLOG_IDENTIFIER": identifier,
                "MESSAGE": message,
                "_TRANSPORT": if *identifier == "kernel" { "kernel" } else { "journal" },
            });
            if !pid.is_empty() {
                entry["_PID"] = serde_json::json!(pid);
            }
            serde_json::to_writer(&mut out, &entry).unwrap();
            out.push(b'\n');
        }
        out
    }

    /// [`TWO_BOOTS`] as `journalctl -o short-precise` writes it, with the line
    /// journalctl puts between two boots.
    fn short() -> Vec<u8> {
        let mut out = String::new();
        let mut last_boot = BOOT_A;
        for (i, (boot, identifier, pid, message)) in TWO_BOOTS.iter().enumerate() {
            if *boot != last_boot {
                out.push_str(&format!("-- Boot {boot} --\n"));
                last_boot = boot;
            }
            let pid = if pid.is_empty() { String::new() } else { format!("[{pid}]") };
            let time = format!("Nov 30 05:47:{:02}.{:06}", 10 + i / 100, i * 10_000 % 1_000_000);
            out.push_str(&format!("{time} bootproof-installed {identifier}{pid}: {message}\n"));
        }
        out.into_bytes()
    }

    fn findings_of(analyzer: &dyn Analyzer, data: &[u8]) -> Vec<Finding> {
        let mut reader = BufReader::new(Cursor::new(data));
        let analysis = analyzer.analyze(&mut reader, Path::new("journal")).unwrap();
        assert_eq!(analysis.unparsed_lines, 0);
        analysis.findings
    }

    fn judged(findings: &[Finding]) -> Vec<(FindingKind, Severity, Option<Phase>, &str)> {
        let mut findings: Vec<&Finding> = findings.iter().collect();
        findings.sort_by_key(|f| f.line);
        findings.iter().map(|f| (f.kind, f.severity, f.phase, f.summary.as_str())).collect()
    }

    #[test]
    fn two_boots_each_judged_by_their_own_phases_in_every_journal_form() {
        for (form, analyzer, data) in [
            ("export", &JournalExport as &dyn Analyzer, export()),
            ("json", &JournalJson, json()),
            ("short", &JournalShort, short()),
        ] {
            let findings = findings_of(analyzer, &data);
            assert_eq!(judged(&findings), expected(), "{form}");
            let oops = findings.iter().find(|f| f.kind == FindingKind::KernelOops).unwrap();
            assert!(oops.evidence.iter().any(|e| e.starts_with("Oops: 0000")), "{form}");
        }
    }

    #[test]
    fn the_helper_crash_is_an_error_where_the_log_shows_no_phase() {
        // An excerpt of SDDM's own lines, like the corpus's: nothing says the system was
        // going down, so nothing excuses the crash.
        let excerpt =
            b"Mar 13 15:36:56.244631 raspberrypi4 sddm[245]: Auth: sddm-helper crashed (exit code 15)\n";
        let findings = findings_of(&JournalShort, excerpt);
        assert_eq!(findings.len(), 1);
        assert_eq!((findings[0].severity, findings[0].phase), (Severity::Error, None));
    }

    #[test]
    fn a_logout_of_a_user_manager_is_no_shutdown() {
        let mut data = String::new();
        for line in [
            "Nov 30 05:47:10.000000 bootproof-installed systemd[1]: Startup finished in 13.982s (kernel) + 47.086s (userspace) = 1min 1.069s.",
            "Nov 30 05:47:20.000000 bootproof-installed systemd[452]: Stopped target default.target - Main User Target.",
            "Nov 30 05:47:20.100000 bootproof-installed systemd[452]: Reached target shutdown.target - Shutdown.",
            "Nov 30 05:47:21.000000 bootproof-installed sddm[406]: Auth: sddm-helper crashed (exit code 15)",
        ] {
            data.push_str(line);
            data.push('\n');
        }
        let findings = findings_of(&JournalShort, data.as_bytes());
        assert_eq!((findings[0].severity, findings[0].phase), (Severity::Error, Some(Phase::Running)));
    }

    /// bootproof's console.log: the host's time, then the kernel's, and systemd's status
    /// lines. An Oops as the system goes down is still an error, and says when it came.
    #[test]
    fn an_oops_at_shutdown_on_the_console() {
        let console = "\
[     3.744] BdsDxe: loading Boot0001 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x2,0x0)
[     7.253] [    0.000000] Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org)
[     7.253] [    0.000000] Command line: root=/dev/mapper/root rootflags=subvol=/root ro console=ttyS0
[    61.898] [  OK  ] Stopped systemd-remount-fs…ount Root and Kernel File Systems.
[    61.914] [  OK  ] Reached target shutdown.target - System Shutdown.
[    67.355] [   60.322395] systemd-shutdown[1]: Syncing filesystems and block devices.
[    67.601] [   60.569448] BUG: kernel NULL pointer dereference, address: 0000000000000008
[    67.601] [   60.569500] #PF: supervisor read access in kernel mode
[    67.602] [   60.569601] Oops: 0000 [#1] PREEMPT SMP NOPTI
[    67.602] [   60.569700] Call Trace:
[    67.603] [   60.569800]  <TASK>
[    67.603] [   60.569900] ---[ end trace 0000000000000000 ]---
[    67.887] [   60.862899] reboot: Power down
";
        let analyzers = crate::logs::registry();
        let (file, findings) =
            crate::inspect::inspect_reader(&analyzers, console.as_bytes(), Path::new("console.log")).unwrap();
        assert_eq!(file.kind, crate::logs::LogKind::Dmesg);
        assert_eq!(findings.len(), 1, "{findings:?}");
        let oops = &findings[0];
        assert_eq!(
            (oops.kind, oops.severity, oops.phase),
            (FindingKind::KernelOops, Severity::Error, Some(Phase::Shutdown))
        );
        assert_eq!((oops.line, oops.time.as_deref()), (7, Some("67.601")));
        assert_eq!(oops.evidence.len(), 6);
    }

    /// A console captured without host times (OVMF's output, then the kernel's), read as
    /// firmware output: the firmware's findings carry no phase, and systemd's status
    /// lines, which have no `[seconds]` either, still mark the shutdown.
    #[test]
    fn a_console_without_host_times() {
        let console = "\
BdsDxe: loading Boot0001 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x2,0x0)
BdsDxe: failed to load Boot0002 \"UEFI PXEv4 (MAC:525400123456)\" from PciRoot(0x0)/Pci(0x3,0x0): Not Found
BdsDxe: starting Boot0001 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x2,0x0)
[    0.000000] Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org)
[  OK  ] Reached target shutdown.target - System Shutdown.
[  OK  ] Finished systemd-poweroff.service - System Power Off.
[   60.569448] BUG: kernel NULL pointer dereference, address: 0000000000000008
";
        let analyzers = crate::logs::registry();
        let firmware = analyzers.iter().find(|a| a.kind() == crate::logs::LogKind::Firmware).unwrap();
        let findings = findings_of(firmware.as_ref(), console.as_bytes());
        let judged: Vec<_> = findings.iter().map(|f| (f.kind, f.severity, f.phase)).collect();
        assert_eq!(
            judged,
            [
                (FindingKind::BootFailure, Severity::Warning, None),
                (FindingKind::KernelOops, Severity::Error, Some(Phase::Shutdown)),
            ]
        );
    }
}
