//! `inspect` end to end over the real corpus: detection by content of every file, a
//! run folder's report, the JSON shape and exit codes on real logs, and a 2 GB file
//! whose head is a real export.

use std::io::Read;
use std::path::{Path, PathBuf};

use bootproof::inspect::{detect, exit_code, inspect_paths, render_json, render_text};
use bootproof::logs::{self, FindingKind, LogKind, Severity};

use crate::{Check, Corpus};

pub fn checks() -> Vec<Check> {
    checks![
        every_corpus_file_of_these_kinds_is_detected_by_content,
        other_corpus_files_are_not_claimed_by_these_parsers,
        a_run_folder_report,
        a_display_server_failure_is_not_hidden_behind_the_helper_crash,
        json_report_has_the_documented_shape,
        exit_codes,
        a_2_gb_sparse_file_is_streamed,
    ]
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

fn max_rss_kib() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    usage.ru_maxrss
}

fn every_corpus_file_of_these_kinds_is_detected_by_content(c: &Corpus) {
    let analyzers = logs::registry();
    for (name, kind) in MINE {
        let path = c.dir().join(name);
        // The name is withheld: detection must work on content alone.
        let found = detect(&analyzers, &head_of(&path), "").map(|a| a.kind());
        assert_eq!(found, Some(*kind), "{name}");
    }
}

fn other_corpus_files_are_not_claimed_by_these_parsers(c: &Corpus) {
    let analyzers = logs::registry();
    let mut files = Vec::new();
    all_files(c.dir(), &mut files);
    for path in files {
        let relative = path.strip_prefix(c.dir()).unwrap().to_string_lossy().into_owned();
        let ours = MINE.iter().any(|(n, _)| *n == relative) || SHARED.contains(&relative.as_str());
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let found = detect(&analyzers, &head_of(&path), &name).map(|a| a.kind());
        if !ours && let Some(kind) = found {
            assert!(!MY_KINDS.contains(&kind), "{relative} taken for {kind:?}");
        }
    }
}

fn a_run_folder_report(c: &Corpus) {
    let kernel = c.dir().join("kernel");
    let report = inspect_paths(&[kernel.clone(), c.dir().join("systemctl")]);
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

fn a_display_server_failure_is_not_hidden_behind_the_helper_crash(c: &Corpus) {
    let report = inspect_paths(&[c.dir().join("sddm/kjournald-rpi4-sddm.journal.export")]);
    let text = render_text(&report);
    assert!(text.contains("SDDM: Auth: sddm-helper crashed (exit code 15)"), "{text}");
    assert!(text.contains("SDDM: Display server failed to start. Exiting"), "{text}");
    assert_eq!(exit_code(&report), 1);
}

fn json_report_has_the_documented_shape(c: &Corpus) {
    let report = inspect_paths(&[c.dir().join("systemctl/check_systemd-systemctl-list-units_failed.txt")]);
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

fn exit_codes(c: &Corpus) {
    let clean = inspect_paths(&[c.dir().join("systemctl/check_systemd-systemctl-list-units_ok.txt")]);
    assert_eq!(exit_code(&clean), 0);
    let missing = inspect_paths(&[c.dir().join("no-such-file")]);
    assert_eq!(exit_code(&missing), 2);
    assert!(render_text(&missing).contains("no-such-file: cannot read"));
}

fn a_2_gb_sparse_file_is_streamed(c: &Corpus) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.export");
    let head =
        std::fs::read(c.dir().join("journal/export/kjournald-journalexportformat_example.export")).unwrap();
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
