//! The d-i syslog analyzer on fixtures written here in the format busybox syslogd gives
//! the installer's programs (`tests/fixtures/logs/installer/`, see its README), plain as
//! `/var/log/installer/syslog` holds it and stamped as a log port captures it; and on
//! damaged and hostile input.

use std::path::Path;

use super::*;
use crate::logs::lines::MAX_LINE;
use crate::logs::{FindingKind, Severity, fixture};

const PKGSEL: &[u8] = fixture!("installer/debian12-pkgsel/syslog");
const NOEXEC: &[u8] = fixture!("installer/debian12-noexec/syslog.txt");
const STORAGE: &[u8] = fixture!("installer/debian12-storage/syslog.txt");
const GRUB: &[u8] = fixture!("installer/debian12-grub/syslog");
const FIXTURES: [&[u8]; 4] = [PKGSEL, NOEXEC, STORAGE, GRUB];

fn analyze(data: &[u8]) -> Analysis {
    SyslogAnalyzer.analyze(&mut &data[..], Path::new("syslog")).unwrap()
}

/// Each line fed live: (line that made the finding fire, finding).
fn live(data: &[u8]) -> Vec<(u64, Finding)> {
    let mut syslog = Syslog::new(Path::new("syslog"));
    let mut fired = Vec::new();
    let mut number = 0;
    for line in data.split(|b| *b == b'\n') {
        number += 1;
        fired.extend(syslog.line(number, line).into_iter().map(|f| (number, f)));
    }
    fired.extend(syslog.finish().into_iter().map(|f| (u64::MAX, f)));
    fired
}

fn found(findings: &[Finding]) -> Vec<(u64, FindingKind, Severity)> {
    findings.iter().map(|f| (f.line, f.kind, f.severity)).collect()
}

fn summaries(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.summary.as_str()).collect()
}

#[test]
fn apt_failures_and_the_menu_verdict_of_a_failed_software_step() {
    let analysis = analyze(PKGSEL);
    assert_eq!(
        (analysis.records, analysis.continuation_lines, analysis.unparsed_lines, analysis.lines),
        (45, 0, 0, 45)
    );
    use FindingKind::*;
    use Severity::*;
    assert_eq!(
        found(&analysis.findings),
        [(40, PayloadError, Error), (41, PayloadError, Error), (42, InstallerError, Error)]
    );
    assert_eq!(
        summaries(&analysis.findings),
        [
            "package installation failed: in-target: E: Package 'bootproof-old' has no installation candidate",
            "package installation failed: in-target: E: Unable to locate package bootproof-missing",
            "installer step failed: main-menu: Configuring 'pkgsel' failed with error code 100",
        ]
    );
    let step = &analysis.findings[2];
    assert_eq!(step.time.as_deref(), Some("Nov 30 05:30:42"));
    assert_eq!(
        step.evidence,
        [
            "Nov 30 05:30:42 main-menu[238]: WARNING **: Configuring 'pkgsel' failed with error code 100",
            "Nov 30 05:30:42 main-menu[238]: WARNING **: Menu item 'pkgsel' failed.",
        ]
    );
}

#[test]
fn debootstraps_protocol_lines_are_one_finding_with_the_format_filled_in() {
    let analysis = analyze(NOEXEC);
    assert_eq!((analysis.records, analysis.unparsed_lines, analysis.lines), (18, 0, 18));
    use FindingKind::*;
    use Severity::*;
    assert_eq!(
        found(&analysis.findings),
        [
            (8, PayloadError, Warning),
            (12, PayloadError, Error),
            (14, InstallerError, Error),
            (15, InstallerError, Error)
        ]
    );
    assert_eq!(
        summaries(&analysis.findings)[..3],
        [
            "base system installation warning: debootstrap: Cannot find binary for checking sha256 checksums, falling back to sha1",
            "base system installation failed: debootstrap: Cannot install into target '/target' mounted with noexec or nodev",
            "installer error: base-installer: exiting on error base-installer/debootstrap-failed",
        ]
    );
    assert_eq!(analysis.findings[0].evidence.len(), 3);
    // The host stamp is no part of the log: the time and evidence are the installer's.
    assert_eq!(analysis.findings[1].time.as_deref(), Some("Nov 30 06:02:24"));
    assert_eq!(analysis.findings[1].evidence[0], "Nov 30 06:02:24 debootstrap: E: NOEXEC");
}

#[test]
fn storage_failures_and_a_kernel_oops_through_klogd() {
    let analysis = analyze(STORAGE);
    use FindingKind::*;
    use Severity::*;
    assert_eq!(
        found(&analysis.findings),
        [
            (4, StorageError, Warning),
            (5, StorageError, Error),
            (8, StorageError, Error),
            (12, StorageError, Error),
            (9, KernelOops, Error),
            (20, StorageError, Error),
        ]
    );
    let oops = &analysis.findings[4];
    assert_eq!(oops.summary, "BUG: kernel NULL pointer dereference, address: 0000000000000008");
    assert_eq!(oops.time.as_deref(), Some("Nov 30 07:14:37"));
    // The report's kernel lines, not partman-lvm's line among them.
    assert_eq!(oops.evidence.len(), 10);
    assert!(oops.evidence.iter().all(|l| l.contains(" kernel: ")), "{:?}", oops.evidence);
    assert!(analysis.findings[5].summary.ends_with("main-menu: No space left on device"));
}

#[test]
fn download_checksum_dpkg_tasksel_and_boot_loader_failures() {
    let analysis = analyze(GRUB);
    use FindingKind::*;
    use Severity::*;
    assert_eq!(
        found(&analysis.findings),
        [
            (5, PayloadError, Error),
            (7, PayloadError, Warning),
            (10, PayloadError, Error),
            (14, PayloadError, Error),
            (15, InstallerError, Error),
            (21, InstallerError, Error),
            (22, InstallerError, Error),
            (23, InstallerError, Error),
            (26, InstallerError, Warning),
        ]
    );
    let summaries = summaries(&analysis.findings);
    assert_eq!(summaries[0], "installer component corrupt: anna: bad sha256sum");
    assert_eq!(summaries[3], "software selection failed: in-target: tasksel: apt-get failed (100)");
    assert_eq!(
        summaries[5],
        "boot loader not installed: grub-installer: grub-install: error: cannot find EFI directory."
    );
    assert_eq!(
        summaries[6],
        "boot loader not installed: grub-installer: Running 'grub-install  --force \"/dev/vda\"' failed."
    );
}

#[test]
fn live_findings_fire_when_certain_and_equal_the_batch() {
    for data in FIXTURES {
        let fired = live(data);
        let batch = analyze(data).findings;
        let live: Vec<Finding> = fired.iter().map(|(_, f)| f.clone()).collect();
        assert_eq!(live, batch);
    }
    let at = |data, line| live(data).into_iter().find(|(_, f)| f.line == line).map(|(at, _)| at);
    // A one-line finding fires with its line.
    assert_eq!(at(PKGSEL, 40), Some(40));
    // main-menu's failed step at its verdict on the menu item, the next line.
    assert_eq!(at(PKGSEL, 42), Some(43));
    // debootstrap's error at its `EF:` line.
    assert_eq!(at(NOEXEC, 12), Some(13));
    // The Oops at its end marker, after partman-lvm's line in the middle of it fired.
    assert_eq!(at(STORAGE, 12), Some(12));
    assert_eq!(at(STORAGE, 9), Some(19));
}

#[test]
fn what_the_stream_ends_on_still_fires() {
    let cut = b"Nov 30 05:30:42 main-menu[238]: WARNING **: Configuring 'pkgsel' failed with error code 1\n\
                Nov 30 05:30:43 debootstrap: E: COULDNTDL\n\
                Nov 30 05:30:43 debootstrap: EA: http://10.0.2.100/debian/dists/bookworm/Release\n\
                Nov 30 05:30:44 kernel: [   12.000001] Oops: 0000 [#1] PREEMPT SMP NOPTI\n";
    let fired = live(cut);
    assert!(fired.iter().all(|(at, _)| *at == u64::MAX), "{fired:?}");
    assert_eq!(fired.len(), 3);
    // Without its `EF:` the code is what debootstrap said.
    assert_eq!(fired[1].1.summary, "base system installation failed: debootstrap: E: COULDNTDL");
    assert_eq!(fired[1].1.evidence.len(), 2);
}

#[test]
fn an_interrupted_protocol_or_menu_closes_on_the_next_line_of_its_program() {
    let data = b"Nov 30 05:30:43 debootstrap: E: NOGETREL\n\
                 Nov 30 05:30:43 debootstrap: plain output\n\
                 Nov 30 05:30:42 main-menu[238]: WARNING **: Configuring 'a' failed with error code 1\n\
                 Nov 30 05:30:42 main-menu[238]: INFO: Menu item 'b' selected\n";
    let fired = live(data);
    assert_eq!(fired.iter().map(|(at, f)| (*at, f.line)).collect::<Vec<_>>(), [(2, 1), (4, 3)]);
    assert_eq!(fired[1].1.evidence.len(), 1);
    // Plain debootstrap writes a sentence, not a code: one line, one finding.
    let plain = live(b"Nov 30 05:30:43 debootstrap: E: Couldn't download http://x/Release\n");
    assert_eq!(plain.iter().map(|(at, f)| (*at, f.line)).collect::<Vec<_>>(), [(1, 1)]);
}

#[test]
fn fill_format_follows_run_debootstraps_n_sprintf() {
    let args = ["a".to_owned(), "b".to_owned()];
    assert_eq!(fill_format("x %s y %s z", &args), "x a y b z");
    assert_eq!(fill_format("%s and %s and %s", &args[..1]), "a and %s and %s");
    assert_eq!(fill_format("no args", &args), "no args");
}

#[test]
fn every_fixture_is_the_installers_syslog_by_content() {
    for data in FIXTURES {
        assert_eq!(SyslogAnalyzer.sniff(data, "x"), 95);
    }
    // Kernel lines and busybox's banner alone do not make an installer.
    let dmesg = fixture!("kernel/dmesg");
    assert_eq!(SyslogAnalyzer.sniff(dmesg, "syslog"), 0);
    // journalctl's short form has a host name where d-i has its tag.
    for journal in
        [fixture!("journal/boot.short-precise.txt"), fixture!("anaconda/fedora40-failed/journal.log")]
    {
        assert_eq!(SyslogAnalyzer.sniff(journal, "syslog"), 0);
    }
    let anaconda_syslog = fixture!("anaconda/fedora40-failed/syslog");
    assert_eq!(SyslogAnalyzer.sniff(anaconda_syslog, "syslog"), 0);
}

#[test]
fn hostile_input_is_counted_never_trusted() {
    let mut data =
        b"garbage before\nNov 30 05:30:42 anna[1]: WARNING **: bad sha256sum\n\xff\xfe\x00\n".to_vec();
    data.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
    data.extend_from_slice(
        b"\nNov 30 05:30:42 main-menu[238]: WARNING **: Configuring '\xff' failed with error code 1",
    );
    let analysis = analyze(&data);
    assert_eq!(
        (analysis.records, analysis.continuation_lines, analysis.unparsed_lines, analysis.lines),
        (2, 1, 2, 5)
    );
    assert_eq!(analysis.findings.len(), 2);
    assert!(analysis.findings[1].summary.contains('\u{fffd}'));
}

#[test]
fn endless_failures_stop_at_the_findings_cap() {
    let line = b"Nov 30 05:30:40 in-target: E: Unable to locate package x\n";
    let data: Vec<u8> = line.iter().copied().cycle().take(line.len() * (MAX_FINDINGS + 5)).collect();
    assert_eq!(analyze(&data).findings.len(), MAX_FINDINGS);
}

/// A real d-i run's syslog as the port captured it (bootproof's stamps; generated here
/// by `tests/faults/installer-failure.toml`, cut to its first and last lines): it opens
/// with syslogd's banner and hundreds of kernel lines, and must not be taken for a
/// kernel log; choose-mirror's verdict on a mirror without the release is an error.
#[test]
fn a_captured_run_with_a_wrong_mirror_is_a_di_syslog_with_choose_mirrors_error() {
    let captured = b"[    78.532] Nov 30 08:09:38 syslogd started: BusyBox v1.35.0\n\
[    78.555] Nov 30 08:09:38 kernel: klogd started: BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1)\n\
[    78.556] Nov 30 08:09:38 kernel: [    0.000000] Linux version 6.1.0-50-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.176-1 (2026-07-02)\n\
[    78.557] Nov 30 08:09:38 kernel: [    0.000000] BIOS-provided physical RAM map:\n\
[    89.580] Nov 30 08:10:50 choose-mirror[2596]: INFO: mirror does not have any suite symlinks\n\
[    89.580] Nov 30 08:10:50 choose-mirror[2596]: WARNING **: mirror does not support the specified release (bookworm)\n";
    let analyzers = crate::logs::registry();
    let kind = crate::inspect::detect(&analyzers, captured, "syslog").map(|a| a.kind());
    assert_eq!(kind, Some(crate::logs::LogKind::DiSyslog));
    let analysis = analyze(captured);
    assert_eq!(found(&analysis.findings), [(6, FindingKind::InstallerError, Severity::Error)]);
    assert!(analysis.findings[0].summary.contains("does not carry the release"), "{:?}", analysis.findings);
    assert_eq!(live(captured).len(), 1);
}
