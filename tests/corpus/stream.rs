//! anaconda's log port (`logs::anaconda::stream`) on the real installs of the corpus.
//!
//! The corpus holds no capture of the port, but the port carries the messages anaconda
//! writes to its files: each check rewrites a real file into the port's form here, at
//! test time (`anaconda_syslog`'s `HH:MM:SS,mmm SEVERITY program:message`, bootproof's
//! host stamp in front), line for line, and checks that the stream finds what the
//! file's own analyzer finds. Nothing generated is kept.

use std::path::Path;

use bootproof::inspect::{SNIFF_BYTES, detect};
use bootproof::logs::anaconda::{self, dump};
use bootproof::logs::live;
use bootproof::logs::{Finding, FindingKind, LogKind, Severity};

use crate::port::{journal, main_process, module};
use crate::{Check, Corpus};

pub fn checks() -> Vec<Check> {
    checks![
        rocky_install_streamed_has_nothing_error_level,
        streamed_files_find_what_the_files_find,
        fedora43_journal_streamed_finds_the_module_tracebacks,
        no_corpus_file_is_taken_for_an_installer_stream,
    ]
}

fn stream(data: &[u8]) -> Vec<Finding> {
    let file = Path::new("virtio-log.txt");
    let mut analyzer = live::line_analyzer(LogKind::AnacondaStream, file).unwrap();
    let analysis = live::analyze(analyzer.as_mut(), &mut &data[..], file).unwrap();
    assert_eq!(analysis.records + analysis.continuation_lines + analysis.unparsed_lines, analysis.lines);
    analysis.findings
}

fn per_file(kind: LogKind, data: &[u8]) -> Vec<Finding> {
    anaconda::read_records(kind, &mut &data[..], Path::new("virtio-log.txt")).unwrap().1
}

/// The text before a summary's first `: `: the rule (or `command failed ...`) it came from.
fn rule_of(summary: &str) -> &str {
    summary.split(": ").next().unwrap_or_default()
}

/// Every finding of the file is in the stream, on the same line, with the same kind,
/// severity and summary; the stream's other findings are later repeats of the file's
/// rules (one finding each in the stream, evidence of the first in the file).
fn same_findings(name: &str, file: &[Finding], streamed: &[Finding]) {
    for f in file {
        let found = streamed
            .iter()
            .any(|s| (s.line, s.kind, s.severity, &s.summary) == (f.line, f.kind, f.severity, &f.summary));
        assert!(found, "{name}: the stream misses {f:?}");
    }
    for s in streamed {
        let from_a_rule = file
            .iter()
            .any(|f| (f.kind, f.severity, rule_of(&f.summary)) == (s.kind, s.severity, rule_of(&s.summary)));
        assert!(from_a_rule, "{name}: the stream alone finds {s:?}");
    }
}

/// Where a real log is: a file of the corpus, or a section of a crash dump (`file`,
/// section name).
type Place = (&'static str, Option<&'static str>);

/// The real logs, their kind, and the DBus module that writes them (`None`: the main
/// process). The Fedora 43 files were saved before the install failed; its crash dump
/// holds them as they were at the end.
const LOGS: &[(Place, LogKind, Option<&str>)] = &[
    (("rocky9.1-paperdragon/anaconda.log", None), LogKind::AnacondaLog, None),
    (("rocky9.1-paperdragon/program.log", None), LogKind::ProgramLog, None),
    (("rocky9.1-paperdragon/packaging.log", None), LogKind::PackagingLog, None),
    (("rocky9.1-paperdragon/storage.log", None), LogKind::StorageLog, Some("Storage")),
    (("centos7-logssrv/anaconda.log", None), LogKind::AnacondaLog, None),
    (("centos7-logssrv/program.log", None), LogKind::ProgramLog, None),
    (("centos7-logssrv/packaging.log", None), LogKind::PackagingLog, None),
    (("fedora43-bonsai-failed/anaconda-tb-yj11b8m4", Some("/tmp/anaconda.log")), LogKind::AnacondaLog, None),
    (("fedora43-bonsai-failed/anaconda-tb-yj11b8m4", Some("/tmp/program.log")), LogKind::ProgramLog, None),
    (
        ("fedora43-bonsai-failed/anaconda-tb-yj11b8m4", Some("/tmp/packaging.log")),
        LogKind::PackagingLog,
        Some("Payloads"),
    ),
    (
        ("fedora43-bonsai-failed/anaconda-tb-yj11b8m4", Some("/tmp/storage.log")),
        LogKind::StorageLog,
        Some("Storage"),
    ),
];

/// The lines of a log: a whole file, or the lines of a dump's section after its head.
fn read_log(c: &Corpus, (relative, section): Place) -> Vec<u8> {
    let data = c.read(&format!("anaconda/{relative}"));
    let Some(name) = section else {
        return data;
    };
    let sections = dump::parse(&mut &data[..], Path::new(relative)).unwrap().sections;
    let start = sections.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("{name}")).line as usize;
    let end = sections.iter().map(|s| s.line as usize).filter(|&l| l > start).min().unwrap();
    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').skip(start).take(end - start - 1).collect();
    lines.join(&b'\n')
}

/// A real log and the same lines as the port carries them.
fn streamed(c: &Corpus, place: Place, kind: LogKind, module_name: Option<&str>) -> (Vec<u8>, Vec<u8>) {
    let data = read_log(c, place);
    let port = match module_name {
        Some(name) => module(name, &data),
        None => main_process(kind, &data),
    };
    (data, port)
}

fn rocky_install_streamed_has_nothing_error_level(c: &Corpus) {
    for (place, kind, module_name) in LOGS.iter().filter(|((f, _), _, _)| f.starts_with("rocky")) {
        let (_, port) = streamed(c, *place, *kind, *module_name);
        for finding in stream(&port) {
            assert!(finding.severity < Severity::Error, "{place:?}: {finding:?}");
        }
    }
}

fn streamed_files_find_what_the_files_find(c: &Corpus) {
    let mut compared = Vec::new();
    for (place, kind, module_name) in LOGS {
        let (data, port) = streamed(c, *place, *kind, *module_name);
        let in_file = per_file(*kind, &data);
        same_findings(&format!("{place:?}"), &in_file, &stream(&port));
        compared.extend(in_file.into_iter().map(|f| f.kind));
    }
    // The failed install's tracebacks (the main process's, continued by bare lines; the
    // Payloads module's, one line per entry) and its failed downloads were compared.
    for kind in [FindingKind::InstallerTraceback, FindingKind::PayloadError] {
        assert!(compared.iter().filter(|k| **k == kind).count() >= 1, "{kind:?} in {compared:?}");
    }
}

fn fedora43_journal_streamed_finds_the_module_tracebacks(c: &Corpus) {
    let section = read_log(c, ("fedora43-bonsai-failed/anaconda-tb-yj11b8m4", Some("journalctl")));
    let tracebacks = |findings: Vec<Finding>| {
        let mut summaries: Vec<String> =
            findings.into_iter().filter(|f| f.severity == Severity::Critical).map(|f| f.summary).collect();
        summaries.sort();
        summaries
    };
    let in_journal = tracebacks(per_file(LogKind::JournalShort, &section));
    let in_stream = tracebacks(stream(&journal(&section)));
    assert_eq!(in_stream, in_journal);
    // The payload module's failed download and the Boss re-raising it, each once.
    assert!(
        in_stream.iter().any(|s| s.contains("PayloadInstallationError: Failed to download")),
        "{in_stream:?}"
    );
    assert!(in_stream.len() >= 3, "{in_stream:?}");
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The corpus has no log port capture and no Debian installer: neither stream kind may
/// claim any of its files (anaconda's own rsyslog file has the port's line format, the
/// journals d-i's time stamps), with or without their names.
fn no_corpus_file_is_taken_for_an_installer_stream(c: &Corpus) {
    let analyzers = bootproof::logs::registry();
    let mut files = Vec::new();
    files_under(c.dir(), &mut files);
    assert!(files.len() > 50);
    for path in files {
        let data = std::fs::read(&path).unwrap();
        let head = &data[..data.len().min(SNIFF_BYTES)];
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for name in [name.as_str(), ""] {
            let kind = detect(&analyzers, head, name).map(|a| a.kind());
            assert!(
                !matches!(kind, Some(LogKind::DiSyslog | LogKind::AnacondaStream)),
                "{} taken for {kind:?}",
                path.display()
            );
        }
    }
}
