//! The log-port analyzer on a capture written here in the format of anaconda 43's
//! rsyslog template (`tests/fixtures/logs/installer/fedora43-stream/`, see its README),
//! with bootproof's host stamps and without, and on the lines kickstart-tests and lorax
//! watch for.

use std::path::Path;

use super::*;
use crate::logs::lines::MAX_LINE;
use crate::logs::live::analyze as analyze_live;
use crate::logs::{Analysis, fixture};

const STREAM: &[u8] = fixture!("installer/fedora43-stream/virtio-log.txt");

fn analyze(data: &[u8]) -> Analysis {
    analyze_live(&mut Stream::new(Path::new("virtio-log.txt")), &mut &data[..], Path::new("virtio-log.txt"))
        .unwrap()
}

/// Each line fed live: (line that made the finding fire, finding).
fn live(data: &[u8]) -> Vec<(u64, Finding)> {
    let mut stream = Stream::new(Path::new("virtio-log.txt"));
    let mut fired = Vec::new();
    for (index, line) in data.strip_suffix(b"\n").unwrap_or(data).split(|b| *b == b'\n').enumerate() {
        let number = index as u64 + 1;
        fired.extend(stream.line(number, line).into_iter().map(|f| (number, f)));
    }
    fired.extend(stream.finish().into_iter().map(|f| (u64::MAX, f)));
    fired
}

/// The capture without bootproof's stamps: what the guest wrote.
fn unstamped(data: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    for line in data.split_inclusive(|b| *b == b'\n') {
        plain.extend_from_slice(strip_host_stamp(line).1);
    }
    plain
}

fn found(findings: &[Finding]) -> Vec<(u64, FindingKind, Severity)> {
    findings.iter().map(|f| (f.line, f.kind, f.severity)).collect()
}

#[test]
fn lines_as_rsyslogs_anaconda_syslog_template_writes_them() {
    let line =
        stream_line(b"09:31:43,953 INFO anaconda:anaconda: main: /usr/sbin/anaconda 43.44-3.fc43").unwrap();
    assert_eq!(
        (line.time, line.severity, line.program, line.message),
        (
            &b"09:31:43,953"[..],
            Level::Info,
            &b"anaconda"[..],
            &b"anaconda: main: /usr/sbin/anaconda 43.44-3.fc43"[..]
        )
    );
    let (kind, entry) = installer_entry(&line).unwrap();
    assert_eq!(
        (kind, entry.source, entry.message),
        (LogKind::AnacondaLog, &b"main"[..], &b"/usr/sbin/anaconda 43.44-3.fc43"[..])
    );
    let line = stream_line(
        b"09:32:05,873 WARNING org.fedoraproject.Anaconda.Modules.Storage:DEBUG:program:Return code: 1",
    )
    .unwrap();
    let (kind, entry) = installer_entry(&line).unwrap();
    assert_eq!((kind, entry.level, entry.source), (LogKind::StorageLog, Level::Debug, &b"program"[..]));
    let line = stream_line(b"09:31:43,745 DEBUG anaconda:program: Return code: 0").unwrap();
    assert_eq!(installer_entry(&line).unwrap().0, LogKind::ProgramLog);
    let line = stream_line(b"09:31:43,745 CRIT kernel:x").unwrap();
    assert_eq!((line.severity, installer_entry(&line)), (Level::Critical, None));
    for other in ["09:10:02,114 INF main: x", "  File \"x\", line 1, in y", "09:10:02,114 INFO : x", ""] {
        assert_eq!(stream_line(other.as_bytes()), None, "{other:?}");
    }
}

#[test]
fn a_failed_install_streamed_by_every_process() {
    let analysis = analyze(STREAM);
    assert_eq!(
        (analysis.records, analysis.continuation_lines, analysis.unparsed_lines, analysis.lines),
        (27, 6, 0, 33)
    );
    use FindingKind::*;
    use Severity::*;
    assert_eq!(
        found(&analysis.findings),
        [
            (10, KernelWarning, Info),
            (12, PayloadError, Error),
            (13, CommandFailed, Error),
            (16, InstallerTraceback, Critical),
            (24, InstallerTraceback, Critical),
            (32, InstallerError, Error),
            (33, InstallerError, Warning),
        ]
    );
    let summaries: Vec<&str> = analysis.findings.iter().map(|f| f.summary.as_str()).collect();
    assert_eq!(
        summaries[1],
        "package download failed: Failed to download 'vim-data-9.1.1818-1.fc43.noarch.rpm': Curl error (28): Timeout was reached"
    );
    assert_eq!(summaries[2], "command failed with code 1: mkfs.xfs -f -L root /dev/vda2");
    assert_eq!(
        summaries[3],
        "installer traceback: blivet.errors.FormatCreateError: (RuntimeError('Error creating xfs filesystem on /dev/vda2'), '/dev/vda2') (raised at /usr/lib/python3.14/site-packages/blivet/formats/__init__.py:652 in _create)"
    );
    assert!(
        summaries[4]
            .starts_with("installer traceback: pyanaconda.modules.common.errors.storage.StorageError:")
    );
    assert_eq!(
        summaries[6],
        "a program crashed: systemd-coredump: Process 2874 (spice-vdagent) of user 0 dumped core."
    );
    let command = &analysis.findings[2];
    assert_eq!(command.time.as_deref(), Some("09:32:05,852"));
    assert_eq!(
        command.evidence,
        [
            "Running... mkfs.xfs -f -L root /dev/vda2",
            "mkfs.xfs: cannot open /dev/vda2: Device or resource busy",
            "(line 15) return code 1"
        ]
    );
    // The module's traceback, without the kernel line among its lines.
    assert_eq!(analysis.findings[3].evidence.len(), 7);
    assert_eq!(analysis.findings[4].evidence.len(), 6);
}

#[test]
fn live_findings_fire_when_certain_and_equal_the_batch() {
    let fired = live(STREAM);
    let batch = analyze(STREAM).findings;
    assert_eq!(fired.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>(), batch);
    let at: Vec<(u64, u64)> = fired.iter().map(|(at, f)| (f.line, *at)).collect();
    // Rules with their line, the command at its return code, each traceback at its
    // exception line.
    assert_eq!(at, [(10, 10), (12, 12), (13, 15), (16, 23), (24, 29), (32, 32), (33, 33)]);
}

#[test]
fn the_guests_lines_without_host_stamps_read_the_same() {
    let plain = unstamped(STREAM);
    assert_eq!(analyze(&plain).findings, analyze(STREAM).findings);
    assert_eq!(sniff(&plain), 95);
    assert_eq!(sniff(STREAM), 95);
}

#[test]
fn anacondas_own_files_and_other_logs_are_not_the_stream() {
    for (name, data) in [
        ("syslog", fixture!("anaconda/fedora40-failed/syslog")),
        ("anaconda.log", fixture!("anaconda/fedora40-failed/anaconda.log")),
        ("program.log", fixture!("anaconda/fedora40-failed/program.log")),
        ("dmesg", fixture!("kernel/dmesg")),
        ("syslog", fixture!("installer/debian12-noexec/syslog.txt")),
    ] {
        assert!(sniff(data) <= 60, "{name}: {}", sniff(data));
    }
}

#[test]
fn what_kickstart_tests_and_lorax_watch_for() {
    let one = |line: &str| {
        let fired = live(line.as_bytes());
        assert!(fired.len() <= 1, "{line}: {fired:?}");
        fired.first().map(|(_, f)| (f.kind, f.severity))
    };
    use FindingKind::*;
    use Severity::*;
    assert_eq!(
        one("10:00:00,000 CRIT systemd-coredump:Process 1890 (anaconda) of user 0 dumped core."),
        Some((InstallerError, Critical))
    );
    assert_eq!(
        one("10:00:00,000 CRIT mdadm:DegradedArray event detected on md device /dev/md127"),
        Some((StorageError, Warning))
    );
    assert_eq!(one("10:00:00,000 CRIT systemd:Freezing execution."), Some((InstallerError, Error)));
    assert_eq!(
        one("10:00:00,000 INFO anaconda:anaconda: payload: Payload setup error: cannot reach the mirror"),
        Some((PayloadError, Error))
    );
    assert_eq!(
        one(
            "10:00:00,000 WARNING org.fedoraproject.Anaconda.Modules.Payloads:INFO:dnf:Error in POSTIN scriptlet in rpm package kernel-core"
        ),
        Some((PayloadError, Error))
    );
    assert_eq!(
        one(
            "10:00:00,000 WARNING org.fedoraproject.Anaconda.Modules.Payloads:INFO:dnf:Non-fatal POSTIN scriptlet failure in rpm package x"
        ),
        None
    );
    assert_eq!(
        one(
            "10:00:00,000 INFO anaconda:anaconda: ui.tui: The following problem occurred on line 12 of the kickstart file:"
        ),
        Some((InstallerError, Error))
    );
    assert_eq!(
        one(
            "10:00:00,000 INFO anaconda:anaconda: ui.tui: Would you like to ignore this and continue with installation?"
        ),
        Some((InstallerError, Error))
    );
    assert_eq!(
        one("10:00:00,000 ERR anaconda:anaconda: misc: Payload setup error: x (IGNORED)"),
        Some((InstallerError, Error))
    );
    assert_eq!(one("10:00:00,000 INFO NetworkManager:Payload setup error: x (IGNORED)"), None);
    // A kernel report goes through the kernel's rules, as in dmesg.
    assert_eq!(
        live(b"10:00:00,000 WARNING kernel:Out of memory: Killed process 2291 (anaconda) total-vm:2097152kB")
            .first()
            .map(|(_, f)| f.kind),
        Some(OomKill)
    );
}

#[test]
fn hostile_input_is_counted_never_trusted() {
    let mut data = b"before any entry\n10:00:00,000 ERR anaconda:anaconda: misc: \xff\n\x00\x01\n".to_vec();
    data.extend(std::iter::repeat_n(b'x', MAX_LINE + 1));
    data.extend_from_slice(
        b"\n10:00:01,000 CRIT anaconda:anaconda: exception: Traceback (most recent call last):",
    );
    let analysis = analyze(&data);
    assert_eq!(
        (analysis.records, analysis.continuation_lines, analysis.unparsed_lines, analysis.lines),
        (2, 1, 2, 5)
    );
    // The traceback that the stream ends in fires at its end, its exception unknown.
    assert_eq!(analysis.findings.len(), 2);
    assert!(analysis.findings[1].summary.contains("(exception line missing)"));
}
