//! The kernel, audit and firmware analyzers over real dmesg and vmcore-dmesg files, a
//! CentOS 7 audit.log, and OVMF and SeaBIOS debug output.

use std::io::{BufReader, Cursor};
use std::path::Path;

use bootproof::logs::{Analysis, Analyzer, FindingKind, LogKind};

use crate::{Check, Corpus};

pub fn checks() -> Vec<Check> {
    checks![
        null_pointer_oops_with_its_trace,
        warning_evidence_includes_its_call_trace_and_ends_with_it,
        every_soft_lockup_and_the_paging_oops_of_windxrunner,
        kernel_files_are_recognised,
        every_avc_denial_of_the_centos7_audit_log,
        successful_boots_have_no_finding,
        kernel_panic_on_a_serial_console_after_the_firmware,
    ]
}

/// The analyzer of `kind`.
fn analyzer(kind: LogKind) -> Box<dyn Analyzer> {
    bootproof::logs::registry().into_iter().find(|a| a.kind() == kind).unwrap()
}

fn analyze_file(kind: LogKind, path: &Path) -> Analysis {
    let mut reader = BufReader::new(std::fs::File::open(path).unwrap());
    analyzer(kind).analyze(&mut reader, path).unwrap()
}

/// Lines as `inspect` counts them: `\n`-terminated, plus a last unterminated one.
fn count_lines(path: &Path) -> u64 {
    let data = std::fs::read(path).unwrap();
    memchr::memchr_iter(b'\n', &data).count() as u64 + u64::from(!data.is_empty() && !data.ends_with(b"\n"))
}

fn null_pointer_oops_with_its_trace(c: &Corpus) {
    let path = c.file("kernel/vmcore-dmesg-skomra.txt");
    let analysis = analyze_file(LogKind::Dmesg, &path);
    assert_eq!(analysis.lines, count_lines(&path));
    assert_eq!(analysis.records + analysis.unparsed_lines, analysis.lines);
    let oops: Vec<_> = analysis.findings.iter().filter(|f| f.kind == FindingKind::KernelOops).collect();
    assert_eq!(oops.len(), 1);
    assert_eq!(oops[0].line, 1062);
    assert_eq!(oops[0].time.as_deref(), Some("181.012541"));
    assert!(oops[0].summary.contains("NULL pointer dereference"));
    assert!(oops[0].evidence.iter().any(|e| e.contains("Oops: 0010 [#1] SMP")));
    assert!(oops[0].evidence.iter().any(|e| e.contains("Call Trace:")));
    let warnings: Vec<u64> =
        analysis.findings.iter().filter(|f| f.kind == FindingKind::KernelWarning).map(|f| f.line).collect();
    assert_eq!(warnings, vec![994, 1032]);
}

fn warning_evidence_includes_its_call_trace_and_ends_with_it(c: &Corpus) {
    let path = c.file("kernel/dmesg-centos6-rh_taint-warning-ygh");
    let analysis = analyze_file(LogKind::Dmesg, &path);
    let warning = &analysis.findings[0];
    assert_eq!(warning.kind, FindingKind::KernelWarning);
    assert_eq!(warning.line, 324);
    assert!(warning.summary.starts_with("WARNING: at kernel/rh_taint.c:13"));
    let trace = warning.evidence.iter().position(|e| e == "Call Trace:").unwrap();
    assert!(warning.evidence[trace + 1].contains("warn_slowpath_common"));
    assert!(warning.evidence.last().unwrap().starts_with("---[ end trace"));
}

fn every_soft_lockup_and_the_paging_oops_of_windxrunner(c: &Corpus) {
    let path = c.file("kernel/vmcore-dmesg-windxrunner.txt");
    let text = std::fs::read(&path).unwrap();
    let expected = memchr::memmem::find_iter(&text, b"BUG: soft lockup").count();
    let analysis = analyze_file(LogKind::Dmesg, &path);
    let lockups: Vec<_> = analysis.findings.iter().filter(|f| f.kind == FindingKind::SoftLockup).collect();
    assert_eq!(lockups.len(), expected);
    assert_eq!(lockups[0].line, 39);
    assert!(lockups[0].summary.contains("CPU#20 stuck for 67s"));
    let oops = analysis.findings.iter().find(|f| f.kind == FindingKind::KernelOops).unwrap();
    assert_eq!(oops.line, 9481);
    assert!(oops.summary.contains("paging request"));
}

fn kernel_files_are_recognised(c: &Corpus) {
    let kernel = analyzer(LogKind::Dmesg);
    for name in [
        "kernel/dmesg-centos6-rh_taint-warning-ygh",
        "kernel/dmesg-centos7-php_aws",
        "kernel/vmcore-dmesg-skomra.txt",
        "kernel/vmcore-dmesg-windxrunner.txt",
        "anaconda/fedora10-thebetjr/dmesg",
    ] {
        let path = c.file(name);
        let head = std::fs::read(&path).unwrap();
        let head = &head[..head.len().min(64 * 1024)];
        let score = kernel.sniff(head, &path.file_name().unwrap().to_string_lossy());
        assert!(score >= 50, "{name}: {score}");
    }
}

fn every_avc_denial_of_the_centos7_audit_log(c: &Corpus) {
    let path = c.file("selinux/audit.log-centos7-php_aws");
    let text = std::fs::read(&path).unwrap();
    let expected: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"type=AVC ") && memchr::memmem::find(l, b"denied").is_some())
        .collect();
    let analysis = analyze_file(LogKind::Audit, &path);
    let avcs: Vec<_> = analysis.findings.iter().filter(|f| f.kind == FindingKind::AvcDenial).collect();
    assert_eq!(avcs.len(), expected.len());
    assert_eq!(avcs.len(), 48);
    assert_eq!(analysis.unparsed_lines, 0);
    assert_eq!(analysis.records, analysis.lines);
    let first = avcs[0];
    assert_eq!(first.time.as_deref(), Some("1550015492.576"));
    assert!(first.summary.contains("{ write }"), "{}", first.summary);
    assert!(first.summary.contains("httpd"), "{}", first.summary);
    assert!(first.summary.contains("tclass=dir"), "{}", first.summary);
    assert_eq!(first.evidence[0].as_bytes(), expected[0]);
}

fn successful_boots_have_no_finding(c: &Corpus) {
    let firmware = analyzer(LogKind::Firmware);
    for name in ["firmware/ovmf-debug-TobleMiner-KVMGT.log", "firmware/seabios-debug-gaberger-qemu-test.log"]
    {
        let path = c.file(name);
        let head = std::fs::read(&path).unwrap();
        assert!(firmware.sniff(&head[..head.len().min(65536)], name) >= 90, "{name}");
        let analysis = analyze_file(LogKind::Firmware, &path);
        assert_eq!(analysis.lines, count_lines(&path), "{name}");
        assert_eq!(analysis.records + analysis.unparsed_lines, analysis.lines);
        // OVMF's "Image ... start failed: Unsupported" lines are drivers declining
        // hardware that is not there: normal, not findings.
        assert!(analysis.findings.is_empty(), "{name}: {:?}", analysis.findings);
    }
}

fn kernel_panic_on_a_serial_console_after_the_firmware(c: &Corpus) {
    let firmware = analyzer(LogKind::Firmware);
    let ovmf = c.read("firmware/ovmf-debug-TobleMiner-KVMGT.log");
    let mut console = ovmf[..ovmf.len().min(4096)].to_vec();
    console.truncate(memchr::memrchr(b'\n', &console).unwrap() + 1);
    let firmware_lines = memchr::memchr_iter(b'\n', &console).count() as u64;
    // The panic line the corpus README quotes from a vmcore-dmesg, as a console
    // prints it.
    console.extend_from_slice(
        b"[   12.345678] Kernel panic - not syncing: Out of memory: system-wide panic_on_oom is enabled\n",
    );
    assert!(firmware.sniff(&console, "console.log") >= 90);
    let analysis = firmware.analyze(&mut Cursor::new(console), Path::new("console.log")).unwrap();
    assert_eq!(analysis.findings.len(), 1);
    let panic = &analysis.findings[0];
    assert_eq!(panic.kind, FindingKind::KernelPanic);
    assert_eq!(panic.line, firmware_lines + 1);
    assert_eq!(panic.time.as_deref(), Some("12.345678"));
}
