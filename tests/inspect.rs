//! `inspect` end to end through its library functions, on the log fixtures written here
//! (`tests/fixtures/logs/`, see its README): detection by content, a folder's report,
//! the report's shape and exit codes, and hostile input. The same checks over the real
//! corpus are in `tests/corpus`.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use bootproof::inspect::{detect, exit_code, inspect_paths, inspect_reader, render_json, render_text};
use bootproof::logs::{self, FindingKind, LogKind, Severity};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/logs")
}

/// Every fixture, with the kind `inspect` must detect it as. Files whose format only
/// their name tells (a kickstart script's output) are detected by name.
const FIXTURES: &[(&str, LogKind)] = &[
    ("anaconda/fedora40-failed/anaconda.log", LogKind::AnacondaLog),
    ("anaconda/fedora40-failed/program.log", LogKind::ProgramLog),
    ("anaconda/fedora40-failed/storage.log", LogKind::StorageLog),
    ("anaconda/fedora40-failed/packaging.log", LogKind::PackagingLog),
    ("anaconda/fedora40-failed/dnf.log", LogKind::DnfLog),
    ("anaconda/fedora40-failed/dnf.librepo.log", LogKind::DnfLibrepoLog),
    ("anaconda/fedora40-failed/syslog", LogKind::Syslog),
    ("anaconda/fedora40-failed/journal.log", LogKind::JournalShort),
    ("anaconda/fedora40-failed/X.log", LogKind::XorgLog),
    ("anaconda/fedora40-failed/ks-script-3lp1kx9w.log", LogKind::KsScriptLog),
    ("anaconda/fedora40-failed/anaconda-tb-q7x1k0ze", LogKind::AnacondaTraceback),
    ("anaconda/rhel6/anaconda.log", LogKind::AnacondaLog),
    ("anaconda/rhel6/anaconda.program.log", LogKind::ProgramLog),
    ("anaconda/rhel6/anaconda.storage.log", LogKind::StorageLog),
    ("anaconda/rhel6/anaconda.yum.log", LogKind::PackagingLog),
    ("anaconda/fedora10/anaconda.log", LogKind::AnacondaLog),
    // Anaconda 11's syslog is the kernel ring buffer (`<6>...`): dmesg reads it best.
    ("anaconda/fedora10/anaconda.syslog", LogKind::Dmesg),
    ("installer/debian12-pkgsel/syslog", LogKind::DiSyslog),
    ("installer/debian12-noexec/syslog.txt", LogKind::DiSyslog),
    ("installer/debian12-storage/syslog.txt", LogKind::DiSyslog),
    ("installer/debian12-grub/syslog", LogKind::DiSyslog),
    ("installer/fedora43-stream/virtio-log.txt", LogKind::AnacondaStream),
    ("journal/boot.export", LogKind::JournalExport),
    ("journal/boot.json", LogKind::JournalJson),
    ("journal/boot.short-precise.txt", LogKind::JournalShort),
    ("journal/boot.short-monotonic.txt", LogKind::JournalShort),
    ("kernel/dmesg", LogKind::Dmesg),
    ("kernel/vmcore-dmesg.txt", LogKind::Dmesg),
    ("selinux/audit.log", LogKind::Audit),
    ("firmware/ovmf-console.log", LogKind::Firmware),
    ("firmware/seabios-debug.log", LogKind::Firmware),
    ("systemctl/list-units.txt", LogKind::SystemctlListUnits),
    ("systemctl/list-units-failed-ascii.txt", LogKind::SystemctlListUnits),
    ("sddm/sddm.log", LogKind::SddmLog),
    ("sysctl/sysctl-a.txt", LogKind::Sysctl),
    ("btrfs/subvolume-list-a-puq.txt", LogKind::BtrfsSubvolumeList),
    ("luks/luksDump-luks2.txt", LogKind::LuksDump),
    ("luks/luksDump-luks1.txt", LogKind::LuksDump),
    ("lsblk/lsblk.txt", LogKind::Lsblk),
    ("lsblk/lsblk-f-l.txt", LogKind::Lsblk),
    ("lsblk/lsblk-t.txt", LogKind::Lsblk),
    ("lsblk/lsblk-J.json", LogKind::LsblkJson),
];

/// Files only their name tells apart: a kickstart script's output is any text.
const NAMED_ONLY: &[&str] = &["anaconda/fedora40-failed/ks-script-3lp1kx9w.log"];

fn head_of(path: &Path) -> Vec<u8> {
    let mut head = Vec::new();
    std::fs::File::open(path).unwrap().take(64 * 1024).read_to_end(&mut head).unwrap();
    head
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all_files(&path, out);
        } else if path.extension().is_none_or(|e| e != "md") {
            out.push(path);
        }
    }
}

#[test]
fn every_fixture_is_detected_as_its_kind() {
    let analyzers = logs::registry();
    for (name, kind) in FIXTURES {
        let path = fixtures().join(name);
        let file_name = path.file_name().unwrap().to_string_lossy().into_owned();
        let found = detect(&analyzers, &head_of(&path), &file_name).map(|a| a.kind());
        assert_eq!(found, Some(*kind), "{name}");
        if !NAMED_ONLY.contains(name) {
            // The name is withheld: detection must work on content alone.
            let found = detect(&analyzers, &head_of(&path), "").map(|a| a.kind());
            assert_eq!(found, Some(*kind), "{name} without its name");
        }
    }
    // Every file of the folder is in the table.
    let mut files = Vec::new();
    all_files(&fixtures(), &mut files);
    assert_eq!(files.len(), FIXTURES.len());
}

#[test]
fn a_folder_report() {
    let report = inspect_paths(&[fixtures().join("kernel"), fixtures().join("systemctl")]);
    assert!(report.errors.is_empty());
    let files: Vec<_> = report
        .files
        .iter()
        .map(|f| {
            (
                f.path.strip_prefix(fixtures()).unwrap().display().to_string(),
                f.kind,
                f.records,
                f.unparsed_lines,
                f.lines,
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            ("kernel/dmesg".to_owned(), LogKind::Dmesg, 18, 0, 18),
            ("kernel/vmcore-dmesg.txt".to_owned(), LogKind::Dmesg, 16, 0, 16),
            ("systemctl/list-units-failed-ascii.txt".to_owned(), LogKind::SystemctlListUnits, 3, 0, 8),
            ("systemctl/list-units.txt".to_owned(), LogKind::SystemctlListUnits, 8, 0, 14),
        ]
    );
    let severities: Vec<Severity> = report.findings.iter().map(|f| f.severity).collect();
    assert!(severities.windows(2).all(|w| w[0] >= w[1]), "most severe first");
    // The panic comes first; 4 kernel findings, 3 of vmcore-dmesg, 3 failed units.
    assert_eq!(report.findings[0].kind, FindingKind::KernelPanic);
    assert_eq!(report.findings.len(), 10);
    assert_eq!(exit_code(&report), 1);

    let text = render_text(&report);
    assert!(text.lines().count() <= 50, "one screen:\n{text}");
    assert!(text.contains("more findings (bootproof inspect --json lists them all)"), "{text}");
    let first = &report.findings[0];
    assert!(text.contains(&format!("{}:{}", first.file.display(), first.line)), "{text}");
    assert!(text.contains("Kernel panic - not syncing: Fatal exception"), "{text}");
    assert!(text.contains("systemctl-list-units"));
}

#[test]
fn a_display_server_failure_is_not_hidden_behind_the_segfault() {
    let report = inspect_paths(&[fixtures().join("journal/boot.export")]);
    let text = render_text(&report);
    assert!(text.contains("SDDM: Display server failed to start. Exiting"), "{text}");
    assert!(text.contains("unit sddm.service failed"), "{text}");
    assert!(text.contains("sddm-greeter[812]: segfault at 0"), "{text}");
    assert_eq!(exit_code(&report), 1);
}

/// The installed reference system's journal around its power-off with a session open,
/// in journalctl's short-precise form, ending with the same crash while a second boot
/// runs.
const POWER_OFF: &str = "\
Nov 30 05:47:52.610233 bootproof-installed systemd[1]: Startup finished in 13.982s (kernel) + 47.086s (userspace) = 1min 1.069s.
Nov 30 05:48:14.861202 bootproof-installed systemd-logind[396]: Power key pressed short.
Nov 30 05:48:14.866410 bootproof-installed systemd-logind[396]: System is powering down.
Nov 30 05:48:14.871135 bootproof-installed systemd[1]: Stopping session-3.scope - Session 3 of User admin...
Nov 30 05:48:14.877353 bootproof-installed sddm[406]: Auth: sddm-helper crashed (exit code 15)
Nov 30 05:48:14.877401 bootproof-installed sddm[406]: Auth: sddm-helper exited with 15
Nov 30 05:48:14.902777 bootproof-installed systemd[1]: Stopped target graphical.target - Graphical Interface.
";
const NEXT_BOOT: &str = "\
-- Boot ea7567e5b1b34034840dc90b7656705e --
Nov 30 05:50:01.102931 bootproof-installed systemd[1]: Startup finished in 14.102s (kernel) + 46.870s (userspace) = 1min 972ms.
Nov 30 05:50:20.004410 bootproof-installed sddm[405]: Auth: sddm-helper crashed (exit code 15)
";

#[test]
fn what_shutdown_kills_is_not_a_failure_and_says_when_it_came() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.txt");
    std::fs::write(&path, POWER_OFF).unwrap();
    let report = inspect_paths(std::slice::from_ref(&path));
    assert_eq!(exit_code(&report), 0);
    let text = render_text(&report);
    assert!(text.starts_with("0 critical, 0 errors, 0 warnings, 2 info in 1 files\n"), "{text}");
    assert!(text.contains("journal.txt:5  [Nov 30 05:48:14.877353]  at shutdown\n"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&render_json(&report)).unwrap();
    let finding = &json["findings"][0];
    assert_eq!((finding["severity"].as_str(), finding["phase"].as_str()), (Some("info"), Some("shutdown")));

    std::fs::write(&path, format!("{POWER_OFF}{NEXT_BOOT}")).unwrap();
    let report = inspect_paths(&[path]);
    assert_eq!(exit_code(&report), 1);
    let text = render_text(&report);
    assert!(text.contains("journal.txt:10  [Nov 30 05:50:20.004410]\n"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&render_json(&report)).unwrap();
    let finding = &json["findings"][0];
    assert_eq!((finding["severity"].as_str(), finding["phase"].as_str()), (Some("error"), Some("running")));
}

#[test]
fn json_report_has_the_documented_shape() {
    let report = inspect_paths(&[fixtures().join("systemctl/list-units.txt")]);
    let json: serde_json::Value = serde_json::from_str(&render_json(&report)).unwrap();
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&json), ["files", "findings"]);
    let file = &json["files"][0];
    assert_eq!(keys(file), ["kind", "path", "records", "unparsed_lines"]);
    assert_eq!(file["kind"], "systemctl-list-units");
    assert_eq!(file["records"], 8);
    assert_eq!(file["unparsed_lines"], 0);
    let finding = &json["findings"][0];
    assert_eq!(keys(finding), ["evidence", "file", "kind", "line", "severity", "summary"]);
    assert_eq!(finding["kind"], "failed-unit");
    assert_eq!(finding["severity"], "error");
    assert_eq!(finding["line"], 5);
    assert!(finding["evidence"][0].as_str().unwrap().starts_with("\u{25cf} sddm.service"));
    // A finding with a time has one.
    let report = inspect_paths(&[fixtures().join("kernel/dmesg")]);
    let json: serde_json::Value = serde_json::from_str(&render_json(&report)).unwrap();
    assert_eq!(json["findings"][0]["time"], "12.772010");
}

#[test]
fn exit_codes() {
    let clean = inspect_paths(&[fixtures().join("firmware/seabios-debug.log")]);
    assert!(clean.findings.is_empty());
    assert_eq!(exit_code(&clean), 0);
    let missing = inspect_paths(&[fixtures().join("no-such-file")]);
    assert_eq!(exit_code(&missing), 2);
    assert!(render_text(&missing).contains("no-such-file: cannot read"));
}

#[test]
fn symlinks_inside_folders_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("var/log");
    std::fs::create_dir_all(&nested).unwrap();
    // A real log outside the folder: reading it would add a file and findings.
    std::os::unix::fs::symlink(fixtures().join("kernel/vmcore-dmesg.txt"), nested.join("dmesg")).unwrap();
    std::os::unix::fs::symlink("/", dir.path().join("root")).unwrap();
    std::fs::write(nested.join("empty.log"), b"").unwrap();
    let report = inspect_paths(&[dir.path().to_path_buf()]);
    assert_eq!(report.skipped_symlinks.len(), 2);
    assert_eq!(report.files.len(), 1);
    assert_eq!(report.files[0].kind, LogKind::Unknown);
    assert!(report.findings.is_empty());
    assert!(render_text(&report).contains("(empty)"));
    assert_eq!(exit_code(&report), 0);
}

#[test]
fn a_2_gb_sparse_file_is_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.export");
    let head = std::fs::read(fixtures().join("journal/boot.export")).unwrap();
    std::fs::write(&path, &head).unwrap();
    // The rest reads as NUL bytes: one endless garbage line after nine good entries.
    std::fs::File::options().write(true).open(&path).unwrap().set_len(2 << 30).unwrap();
    let before = max_rss_kib();
    let report = inspect_paths(&[path]);
    assert!(max_rss_kib() - before < 64 * 1024, "memory grew with the file");
    let file = &report.files[0];
    assert_eq!(file.kind, LogKind::JournalExport);
    assert_eq!(file.records, 9);
    assert_eq!(file.unparsed_lines, 1);
    let head_lines = memchr::memchr_iter(b'\n', &head).count() as u64;
    assert_eq!(file.lines, head_lines + 1);
}

/// Produces `len` bytes of `pattern` repeated, without storing them.
struct Generated {
    pattern: &'static [u8],
    at: usize,
    left: u64,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = usize::try_from(self.left.min(buf.len() as u64)).unwrap();
        for b in &mut buf[..n] {
            *b = self.pattern[self.at];
            self.at = (self.at + 1) % self.pattern.len();
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn inspect_generated(head: &[u8], pattern: &'static [u8], len: u64) -> bootproof::inspect::FileReport {
    let analyzers = logs::registry();
    let body = Generated { pattern, at: 0, left: len };
    let (file, _) = inspect_reader(&analyzers, head.chain(body), Path::new("generated")).unwrap();
    file
}

fn max_rss_kib() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    usage.ru_maxrss
}

#[test]
fn a_100_mb_line_without_newline_after_a_journal_head() {
    let before = max_rss_kib();
    let head = b"__CURSOR=s=1\n__REALTIME_TIMESTAMP=1\nMESSAGE=ok\n\nMESSAGE=";
    let file = inspect_generated(head, b"x", 100 << 20);
    assert_eq!(file.kind, LogKind::JournalExport);
    assert_eq!((file.records, file.unparsed_lines, file.lines), (1, 1, 5));
    assert!(max_rss_kib() - before < 64 * 1024, "memory grew with the line");
}

#[test]
fn binary_non_utf8_and_empty_inputs() {
    let analyzers = logs::registry();
    let binary: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    let (file, findings) = inspect_reader(&analyzers, binary.as_slice(), Path::new("blob")).unwrap();
    assert_eq!(file.kind, LogKind::Unknown);
    assert_eq!(file.records, 0);
    assert_eq!(file.unparsed_lines, file.lines);
    assert!(findings.is_empty());

    let (file, _) = inspect_reader(&analyzers, &b""[..], Path::new("empty")).unwrap();
    assert_eq!((file.kind, file.lines), (LogKind::Unknown, 0));

    // A dmesg with one line of Latin-1 bytes: understood as a record, text made lossy.
    let dmesg = b"[    0.000000] Linux version 6.0\n[    1.000000] caf\xe9 \xff\n[    2.000000] Oops: 0002 [#1] SMP\n";
    let (file, findings) = inspect_reader(&analyzers, &dmesg[..], Path::new("dmesg")).unwrap();
    assert_eq!((file.kind, file.records, file.unparsed_lines), (LogKind::Dmesg, 3, 0));
    assert_eq!(findings[0].kind, FindingKind::KernelOops);
}

#[test]
fn a_run_directory_is_read_for_its_logs_not_its_disks() {
    let run = tempfile::tempdir().unwrap();
    let d = run.path();
    std::fs::write(d.join("qemu-command.sh"), "#!/bin/sh\nqemu-system-x86_64 -nodefaults\n").unwrap();
    std::fs::write(d.join("console.raw"), b"\x1b[2J\x1b[01;01HBdsDxe: loading Boot0001\r\n").unwrap();
    std::fs::write(d.join("console.log"), "[     0.500] BdsDxe: loading Boot0001 \"UEFI Misc Device\"\n")
        .unwrap();
    std::fs::write(d.join("OVMF_VARS.fd"), vec![0xffu8; 4096]).unwrap();
    std::fs::write(d.join("disk0.qcow2"), b"QFI\xfb\0\0\0\x03").unwrap();
    std::fs::write(d.join("summary.json"), "{\"passed\": true}\n").unwrap();
    std::fs::create_dir_all(d.join("tpm")).unwrap();
    std::fs::write(d.join("tpm/tpm2-00.permall"), vec![0u8; 64]).unwrap();
    std::fs::create_dir_all(d.join("share")).unwrap();
    std::fs::write(d.join("share/report.txt"), "bootproof-tiny: efi=1\n").unwrap();
    // bootproof's pages show the console again, OCR's text is read off a screenshot:
    // neither is a log, whatever it says.
    let panic = "[     2.000] [    1.000000] Kernel panic - not syncing: VFS: Unable to mount root fs\n";
    std::fs::write(d.join("report.html"), format!("<pre>{panic}</pre>")).unwrap();
    // A checkpoint's build inside the run that built it: a run directory of its own.
    std::fs::create_dir_all(d.join("checkpoint")).unwrap();
    std::fs::copy(d.join("qemu-command.sh"), d.join("checkpoint/qemu-command.sh")).unwrap();
    std::fs::write(d.join("checkpoint/report.html"), panic).unwrap();
    std::fs::write(d.join("screen-text-kernel-panic.txt"), panic).unwrap();
    let report = bootproof::inspect::inspect_paths(&[d.to_path_buf()]);
    let names: Vec<String> =
        report.files.iter().map(|f| f.path.strip_prefix(d).unwrap().display().to_string()).collect();
    assert_eq!(names, ["console.log", "share/report.txt"]);
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    // Outside a run directory nothing is skipped.
    std::fs::remove_file(d.join("qemu-command.sh")).unwrap();
    let report = bootproof::inspect::inspect_paths(&[d.to_path_buf()]);
    assert!(report.files.iter().any(|f| f.path.ends_with("console.raw")));
}

#[test]
fn an_installer_runs_log_ports_are_told_from_its_console_by_content() {
    let run = tempfile::tempdir().unwrap();
    let d = run.path();
    std::fs::write(d.join("qemu-command.sh"), "#!/bin/sh\nqemu-system-x86_64 -nodefaults\n").unwrap();
    // The console of the same run: host stamps, then the kernel's.
    std::fs::write(
        d.join("console.log"),
        "[     0.801] [    0.000000] Linux version 6.1.0-50-amd64 (debian-kernel@lists.debian.org)\n\
         [     0.802] [    0.000000] Command line: auto=true priority=critical console=ttyS0\n\
         [     0.950] [    0.112410] x86/fpu: x87 FPU will use FXSAVE\n",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("installer")).unwrap();
    for (from, to) in [
        ("installer/debian12-noexec/syslog.txt", "installer/syslog"),
        ("installer/fedora43-stream/virtio-log.txt", "installer/virtio-log.txt"),
    ] {
        std::fs::copy(fixtures().join(from), d.join(to)).unwrap();
    }
    let report = inspect_paths(&[d.to_path_buf()]);
    let kinds: Vec<(String, LogKind)> = report
        .files
        .iter()
        .map(|f| (f.path.strip_prefix(d).unwrap().display().to_string(), f.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("console.log".to_owned(), LogKind::Dmesg),
            ("installer/syslog".to_owned(), LogKind::DiSyslog),
            ("installer/virtio-log.txt".to_owned(), LogKind::AnacondaStream),
        ]
    );
    assert_eq!(exit_code(&report), 1);
    let text = render_text(&report);
    // The installer's own time, not the host stamp.
    assert!(text.contains("installer/syslog:12  [Nov 30 06:02:24]\n"), "{text}");
    assert!(
        text.contains("debootstrap: Cannot install into target '/target' mounted with noexec or nodev"),
        "{text}"
    );
    assert!(text.contains("di-syslog"), "{text}");
    assert!(text.contains("anaconda-stream"), "{text}");
}
