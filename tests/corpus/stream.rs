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
        a_guest_streaming_a_real_failed_install_to_the_port_ends_the_run_on_its_traceback,
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

/// The tiny guest's hook: find anaconda's port by its name in sysfs (no udev), write
/// the input file's lines to it, then stay up.
const STREAM_HOOK: &str = r#"
for p in /sys/class/virtio-ports/vport*; do
    [ "$(cat "$p/name")" = org.fedoraproject.anaconda.log.0 ] && dev=/dev/${p##*/}
done
cat /mnt/input/anaconda.stream > "$dev"
echo "bootproof-test: stream written"
sleep 3600
"#;

/// A real failed Fedora 43 install's journal, rewritten into the port's lines here, is
/// written by a guest into a port named `org.fedoraproject.anaconda.log.0`, as
/// anaconda's rsyslog would: the run ends at once on the first traceback the live
/// parser finds, long before its step's timeout, naming the installer log's line. The
/// install's SELinux denials come first in the journal: the scenario's allow-list lets
/// them pass (without it the first denial ends the run, as seen when this was written).
/// This proves the capture and the live parser on real anaconda text; it is not an
/// anaconda run.
fn a_guest_streaming_a_real_failed_install_to_the_port_ends_the_run_on_its_traceback(c: &Corpus) {
    if let Err(e) = bootproof::host::ensure_runtime() {
        panic!("this check boots a real VM and the host lacks what it needs:\n{e}");
    }
    let section = read_log(c, ("fedora43-bonsai-failed/anaconda-tb-yj11b8m4", Some("journalctl")));
    // The port carries the lines without bootproof's stamp: bootproof adds it.
    let lines: Vec<String> = String::from_utf8_lossy(&journal(&section))
        .lines()
        .map(|l| l.split_once("] ").map_or(l, |(_, rest)| rest).to_string())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("input")).unwrap();
    std::fs::write(d.join("input/hook.sh"), STREAM_HOOK).unwrap();
    std::fs::write(d.join("input/anaconda.stream"), lines.join("\n") + "\n").unwrap();
    std::fs::write(
        d.join("profile.toml"),
        "firmware = \"uefi\"\n[[share]]\ntag = \"bootproof-input\"\npath = \"input\"\n\
         [[log_port]]\nname = \"org.fedoraproject.anaconda.log.0\"\nfile = \"installer/virtio-log.txt\"\n",
    )
    .unwrap();
    std::fs::write(
        d.join("s.toml"),
        "name = \"anaconda-port\"\nprofile = \"./profile.toml\"\nimage = \"reference:tiny\"\ntimeout = \"10m\"\n\
         allow_findings = [\"^SELinux denied\"]\n[[step]]\nwait_console = \"this line never comes\"\ntimeout = \"5m\"\n",
    )
    .unwrap();
    let s = bootproof::scenario::Scenario::load(&d.join("s.toml")).unwrap();
    let opts = bootproof::scenario::runner::RunnerOptions::new(d.join("artifacts"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let r = rt.block_on(bootproof::scenario::runner::run(&s, &opts));
    assert!(!r.passed);
    let f = r.failure.as_ref().expect("a failure");
    assert!(f.what.starts_with("installer log installer/virtio-log.txt:"), "{f:?}");
    assert!(f.seen.contains("Traceback (most recent call last)"), "{f:?}");
    assert!(!f.seen.contains("SELinux denied"), "allowed findings do not end the run: {f:?}");
    let step = &r.steps[0];
    // The step may wait 5 minutes (scaled under TCG): the traceback ended it first.
    assert!(step.ended_secs - step.started_secs < 300.0, "ended early, not at its timeout: {step:?}");
    let kept = std::fs::read_to_string(r.run_dir.join("installer/virtio-log.txt")).unwrap();
    assert!(kept.lines().count() > 10, "{kept}");
    assert!(kept.lines().all(|l| l.starts_with('[')), "every line stamped with the host's time");
}
