//! `inspect` end to end through its library functions: detection over the real corpus,
//! the report's shape and exit codes, and hostile input.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use bootproof::inspect::{detect, exit_code, inspect_paths, inspect_reader, render_json, render_text};
use bootproof::logs::{self, FindingKind, LogKind, Severity};

/// The corpus folder; fails with directions when it is absent, never passes silently.
fn corpus() -> PathBuf {
    let dir = std::env::var_os("BOOTPROOF_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    assert!(
        dir.is_dir(),
        "the real-log corpus is missing at {}: put it at ../shared/corpus beside the crate, \
         or set BOOTPROOF_CORPUS to its folder",
        dir.display()
    );
    dir
}

/// Every corpus file of the kinds this crate's journal, kernel, audit, systemctl, SDDM
/// and firmware parsers own, with the kind it must be detected as.
const MINE: &[(&str, LogKind)] = &[
    (
        "journal/derived-by-journalctl-252/fedora37-rpi4-nortc-boot-4c708e1fd0744336be16f3931aa861fb.export",
        LogKind::JournalExport,
    ),
    (
        "journal/derived-by-journalctl-252/fedora37-rpi4-nortc-boot-4c708e1fd0744336be16f3931aa861fb.json",
        LogKind::JournalJson,
    ),
    (
        "journal/derived-by-journalctl-252/fedora37-rpi4-nortc-boot-4c708e1fd0744336be16f3931aa861fb.short-monotonic.txt",
        LogKind::JournalShort,
    ),
    (
        "journal/derived-by-journalctl-252/fedora37-rpi4-nortc-boot-4c708e1fd0744336be16f3931aa861fb.short-precise.txt",
        LogKind::JournalShort,
    ),
    ("journal/export/fuzz-seed-semisynthetic/systemd-fuzz-journal-remote-sample.txt", LogKind::JournalExport),
    ("journal/export/kjournald-journalexportformat_binary_example.export", LogKind::JournalExport),
    ("journal/export/kjournald-journalexportformat_example.export", LogKind::JournalExport),
    ("journal/export/systemd-test-journal-data-journal-2.txt", LogKind::JournalExport),
    ("journal/short/rhcos-sosreport-journalctl_--no-pager_--catalog_--boot_-1", LogKind::JournalShort),
    ("anaconda/centos7-logssrv/journal.log", LogKind::JournalShort),
    ("anaconda/rocky9.1-paperdragon/journal.log", LogKind::JournalShort),
    ("sddm/kjournald-rpi4-sddm.journal.export", LogKind::JournalExport),
    ("sddm/kjournald-rpi4-sddm.journal.json", LogKind::JournalJson),
    ("sddm/kjournald-rpi4-sddm.journal.short-precise.txt", LogKind::JournalShort),
    ("kernel/dmesg-centos6-rh_taint-warning-ygh", LogKind::Dmesg),
    ("kernel/dmesg-centos7-php_aws", LogKind::Dmesg),
    ("kernel/vmcore-dmesg-skomra.txt", LogKind::Dmesg),
    ("kernel/vmcore-dmesg-windxrunner.txt", LogKind::Dmesg),
    ("anaconda/fedora10-thebetjr/dmesg", LogKind::Dmesg),
    ("selinux/audit.log-centos7-php_aws", LogKind::Audit),
    ("systemctl/check_systemd-systemctl-list-units_failed.txt", LogKind::SystemctlListUnits),
    ("systemctl/check_systemd-systemctl-list-units_multiple-failure.txt", LogKind::SystemctlListUnits),
    ("systemctl/check_systemd-systemctl-list-units_ok.txt", LogKind::SystemctlListUnits),
    ("systemctl/check_systemd-systemctl-list-units_v246.txt", LogKind::SystemctlListUnits),
    ("firmware/ovmf-debug-TobleMiner-KVMGT.log", LogKind::Firmware),
    ("firmware/seabios-debug-gaberger-qemu-test.log", LogKind::Firmware),
];

/// Files of another parser's kind that these parsers may still read without being
/// wrong: Fedora 10's anaconda.syslog is mostly the kernel ring buffer (`<6>...`), so
/// dmesg fits it when no syslog parser scores higher.
const SHARED: &[&str] = &["anaconda/fedora10-thebetjr/anaconda.syslog"];

const MY_KINDS: &[LogKind] = &[
    LogKind::JournalExport,
    LogKind::JournalJson,
    LogKind::JournalShort,
    LogKind::Dmesg,
    LogKind::Audit,
    LogKind::SystemctlListUnits,
    LogKind::SddmLog,
    LogKind::Firmware,
];

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
        } else if !path.file_name().unwrap().to_string_lossy().starts_with('.') {
            out.push(path);
        }
    }
}

#[test]
fn every_corpus_file_of_these_kinds_is_detected_by_content() {
    let analyzers = logs::registry();
    for (name, kind) in MINE {
        let path = corpus().join(name);
        // The name is withheld: detection must work on content alone.
        let found = detect(&analyzers, &head_of(&path), "").map(|a| a.kind());
        assert_eq!(found, Some(*kind), "{name}");
    }
}

#[test]
fn other_corpus_files_are_not_claimed_by_these_parsers() {
    let analyzers = logs::registry();
    let mut files = Vec::new();
    all_files(&corpus(), &mut files);
    for path in files {
        let relative = path.strip_prefix(corpus()).unwrap().to_string_lossy().into_owned();
        let ours = MINE.iter().any(|(n, _)| *n == relative) || SHARED.contains(&relative.as_str());
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let found = detect(&analyzers, &head_of(&path), &name).map(|a| a.kind());
        if !ours && let Some(kind) = found {
            assert!(!MY_KINDS.contains(&kind), "{relative} taken for {kind:?}");
        }
    }
}

#[test]
fn a_run_folder_report() {
    let kernel = corpus().join("kernel");
    let report = inspect_paths(&[kernel.clone(), corpus().join("systemctl")]);
    assert!(report.errors.is_empty());
    assert_eq!(report.files.len(), 8);
    for file in &report.files {
        // Kernel lines are one record each; a systemctl legend belongs to its table.
        let accounted = file.records + file.unparsed_lines;
        match file.kind {
            LogKind::Dmesg => assert_eq!(accounted, file.lines, "{}", file.path.display()),
            kind => assert_eq!(kind, LogKind::SystemctlListUnits),
        }
    }
    let severities: Vec<Severity> = report.findings.iter().map(|f| f.severity).collect();
    assert!(severities.windows(2).all(|w| w[0] >= w[1]), "most severe first");
    assert!(report.findings.iter().any(|f| f.kind == FindingKind::SoftLockup));
    assert!(report.findings.iter().any(|f| f.kind == FindingKind::FailedUnit));
    assert_eq!(exit_code(&report), 1);

    let text = render_text(&report);
    assert!(text.lines().count() <= 50, "one screen:\n{text}");
    assert!(text.contains("more findings (bootproof inspect --json lists them all)"));
    let windxrunner = std::fs::read(kernel.join("vmcore-dmesg-windxrunner.txt")).unwrap();
    let lockups = memchr::memmem::find_iter(&windxrunner, b"BUG: soft lockup").count();
    // The first lockup in full, two others (each on another CPU) by summary, the rest
    // by line.
    assert!(text.contains("also line 1355: BUG: soft lockup - CPU#1 stuck"), "{text}");
    let rest = format!("and {} more like it in this file", lockups - 3);
    assert!(text.contains(&rest), "{text}");
    let first = &report.findings[0];
    assert!(text.contains(&format!("{}:{}", first.file.display(), first.line)));
    assert!(text.contains("systemctl-list-units"));
}

#[test]
fn a_display_server_failure_is_not_hidden_behind_the_helper_crash() {
    let report = inspect_paths(&[corpus().join("sddm/kjournald-rpi4-sddm.journal.export")]);
    let text = render_text(&report);
    assert!(text.contains("SDDM: Auth: sddm-helper crashed (exit code 15)"), "{text}");
    assert!(text.contains("SDDM: Display server failed to start. Exiting"), "{text}");
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
    let report = inspect_paths(&[corpus().join("systemctl/check_systemd-systemctl-list-units_failed.txt")]);
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
    assert_eq!(file["records"], 4);
    let finding = &json["findings"][0];
    assert_eq!(keys(finding), ["evidence", "file", "kind", "line", "severity", "summary"]);
    assert_eq!(finding["kind"], "failed-unit");
    assert_eq!(finding["severity"], "error");
    assert_eq!(finding["line"], 4);
    assert!(finding["evidence"][0].as_str().unwrap().starts_with("smartd.service"));
}

#[test]
fn exit_codes() {
    let clean = inspect_paths(&[corpus().join("systemctl/check_systemd-systemctl-list-units_ok.txt")]);
    assert_eq!(exit_code(&clean), 0);
    let missing = inspect_paths(&[corpus().join("no-such-file")]);
    assert_eq!(exit_code(&missing), 2);
    assert!(render_text(&missing).contains("no-such-file: cannot read"));
}

#[test]
fn symlinks_inside_folders_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("var/log");
    std::fs::create_dir_all(&nested).unwrap();
    std::os::unix::fs::symlink(corpus().join("kernel/vmcore-dmesg-skomra.txt"), nested.join("dmesg"))
        .unwrap();
    std::os::unix::fs::symlink("/", dir.path().join("root")).unwrap();
    std::fs::write(nested.join("empty.log"), b"").unwrap();
    let report = inspect_paths(&[dir.path().to_path_buf()]);
    assert_eq!(report.skipped_symlinks.len(), 2);
    assert_eq!(report.files.len(), 1);
    assert_eq!(report.files[0].kind, LogKind::Unknown);
    assert!(render_text(&report).contains("(empty)"));
    assert_eq!(exit_code(&report), 0);
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
fn a_2_gb_sparse_file_is_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.export");
    let head =
        std::fs::read(corpus().join("journal/export/kjournald-journalexportformat_example.export")).unwrap();
    std::fs::write(&path, &head).unwrap();
    // The rest reads as NUL bytes: one endless garbage line after two good entries.
    std::fs::File::options().write(true).open(&path).unwrap().set_len(2 << 30).unwrap();
    let before = max_rss_kib();
    let report = inspect_paths(&[path]);
    assert!(max_rss_kib() - before < 64 * 1024, "memory grew with the file");
    let file = &report.files[0];
    assert_eq!(file.kind, LogKind::JournalExport);
    assert_eq!(file.records, 2);
    assert_eq!(file.unparsed_lines, 1);
    let head_lines = memchr::memchr_iter(b'\n', &head).count() as u64;
    assert_eq!(file.lines, head_lines + 1);
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
    let report = bootproof::inspect::inspect_paths(&[d.to_path_buf()]);
    let names: Vec<String> =
        report.files.iter().map(|f| f.path.strip_prefix(d).unwrap().display().to_string()).collect();
    assert_eq!(names, ["console.log", "share/report.txt"]);
    // Outside a run directory nothing is skipped.
    std::fs::remove_file(d.join("qemu-command.sh")).unwrap();
    let report = bootproof::inspect::inspect_paths(&[d.to_path_buf()]);
    assert!(report.files.iter().any(|f| f.path.ends_with("console.raw")));
}
