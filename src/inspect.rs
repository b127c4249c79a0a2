//! `bootproof inspect`: post-mortem of a run directory, a folder of logs or single files.
//!
//! Owns: finding the files (walking folders without following symlinks), telling each
//! file's kind by its content, running its analyzer, and rendering the findings for a
//! person (one screen) or a program (`--json`).
//! Must not: parse any log format itself (that is `logs`), or read a whole file into
//! memory: files are streamed, and only their first 64 KiB are held for detection.
//!
//! The pure parts (`inspect_paths` returns a [`Report`]; `render_text`, `render_json` and
//! `exit_code` read it) are what the tests use; [`run_cli`] only prints.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::logs::{self, Analyzer, Finding, LogError, LogKind, Phase, Severity};

/// How much of a file detection looks at.
pub const SNIFF_BYTES: usize = 64 * 1024;
/// Below this sniff score a file is `unknown`: no analyzer is sure enough.
const MIN_SNIFF_SCORE: u8 = 40;
/// What the text report shows before saying how many more there are.
const FINDINGS_SHOWN: usize = 6;
const EVIDENCE_SHOWN: usize = 3;
const OTHER_SUMMARIES_SHOWN: usize = 2;
const EVIDENCE_CHARS: usize = 120;

/// What `inspect` learnt from one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    pub path: PathBuf,
    pub kind: LogKind,
    pub records: u64,
    pub unparsed_lines: u64,
    pub lines: u64,
}

/// An input `inspect` could not read.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{path}: cannot read: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Everything `inspect` found, files in walk order and findings most severe first.
#[derive(Debug, Default)]
pub struct Report {
    pub files: Vec<FileReport>,
    pub findings: Vec<Finding>,
    pub errors: Vec<InspectError>,
    /// Symlinks met inside folders, which are never followed (a guest could point
    /// one anywhere on the host).
    pub skipped_symlinks: Vec<PathBuf>,
}

/// Inspects files and folders (recursively). Paths named directly are followed even
/// if they are symlinks: the user chose them.
pub fn inspect_paths(paths: &[PathBuf]) -> Report {
    let analyzers = logs::registry();
    let mut report = Report::default();
    let mut files = Vec::new();
    for path in paths {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => walk(path, &mut files, &mut report),
            Ok(_) => files.push(path.clone()),
            Err(source) => report.errors.push(InspectError::Unreadable { path: path.clone(), source }),
        }
    }
    for path in files {
        match inspect_file(&analyzers, &path) {
            Ok((file, findings)) => {
                report.files.push(file);
                report.findings.extend(findings);
            }
            Err(e) => report.errors.push(e),
        }
    }
    sort_findings(&mut report.findings);
    report
}

/// Collects the regular files under `dir`, sorted, without following symlinks.
fn walk(dir: &Path, files: &mut Vec<PathBuf>, report: &mut Report) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(source) => {
            let path = dir.to_path_buf();
            report.errors.push(InspectError::Unreadable { path, source });
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let run_dir = paths.iter().any(|p| p.file_name().is_some_and(|n| n == "qemu-command.sh"));
    for path in paths {
        if run_dir && is_run_artifact(&path) {
            continue;
        }
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => report.skipped_symlinks.push(path),
            Ok(meta) if meta.is_dir() => walk(&path, files, report),
            // FIFOs and devices would block or never end.
            Ok(meta) if meta.is_file() => files.push(path),
            Ok(_) => {}
            Err(source) => report.errors.push(InspectError::Unreadable { path, source }),
        }
    }
}

/// Files of a bootproof run directory that are not logs: the VM's disks and firmware
/// variables, pictures and the text OCR read in them (`screen-*.txt`), bootproof's own
/// records and pages (`report.html`, `index.html`, which show the logs again), and
/// `console.raw`, whose text `console.log` already holds without the terminal escapes.
fn is_run_artifact(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let by_name =
        ["console.raw", "OVMF_VARS.fd", "qemu-command.sh", "summary.json", "result.json", "sockets"];
    let by_ending = [".qcow2", ".png", ".ppm", ".sock", ".html"];
    let ocr_text = name.starts_with("screen-") && name.ends_with(".txt");
    by_name.contains(&name.as_str())
        || by_ending.iter().any(|e| name.ends_with(e))
        || name == "tpm"
        || ocr_text
}

/// Most severe first, then by file and line, so the cause tends to come first.
pub fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.severity.cmp(&a.severity).then_with(|| a.file.cmp(&b.file)).then_with(|| a.line.cmp(&b.line))
    });
}

fn inspect_file(
    analyzers: &[Box<dyn Analyzer>],
    path: &Path,
) -> Result<(FileReport, Vec<Finding>), InspectError> {
    let unreadable = |source| InspectError::Unreadable { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(unreadable)?;
    inspect_reader(analyzers, file, path)
}

/// Detects the kind of `input` and analyses it; `path` labels the results.
pub fn inspect_reader(
    analyzers: &[Box<dyn Analyzer>],
    mut input: impl Read,
    path: &Path,
) -> Result<(FileReport, Vec<Finding>), InspectError> {
    let unreadable = |source| InspectError::Unreadable { path: path.to_path_buf(), source };
    let head = read_head(&mut input).map_err(unreadable)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let analyzer = detect(analyzers, &head, &name);
    let mut reader = BufReader::with_capacity(SNIFF_BYTES, Cursor::new(head).chain(input));
    let Some(analyzer) = analyzer else {
        let lines = count_lines(&mut reader).map_err(unreadable)?;
        let file = FileReport {
            path: path.to_path_buf(),
            kind: LogKind::Unknown,
            records: 0,
            unparsed_lines: lines,
            lines,
        };
        return Ok((file, Vec::new()));
    };
    let analysis = analyzer.analyze(&mut reader, path)?;
    let file = FileReport {
        path: path.to_path_buf(),
        kind: analyzer.kind(),
        records: analysis.records,
        unparsed_lines: analysis.unparsed_lines,
        lines: analysis.lines,
    };
    Ok((file, analysis.findings))
}

/// The analyzer most sure that `head` is its format, if any is sure enough; the first
/// registered wins a tie.
pub fn detect<'a>(
    analyzers: &'a [Box<dyn Analyzer>],
    head: &[u8],
    file_name: &str,
) -> Option<&'a dyn Analyzer> {
    let mut best: Option<(u8, &dyn Analyzer)> = None;
    for analyzer in analyzers {
        let score = analyzer.sniff(head, file_name);
        if score >= MIN_SNIFF_SCORE && best.is_none_or(|(top, _)| score > top) {
            best = Some((score, analyzer.as_ref()));
        }
    }
    best.map(|(_, analyzer)| analyzer)
}

fn read_head(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    input.take(SNIFF_BYTES as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// Lines of an unrecognised file, streamed.
fn count_lines(reader: &mut impl BufRead) -> io::Result<u64> {
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let chunk = reader.fill_buf()?;
        let Some(&end) = chunk.last() else {
            break;
        };
        lines += memchr::memchr_iter(b'\n', chunk).count() as u64;
        last = end;
        let n = chunk.len();
        reader.consume(n);
    }
    Ok(lines + u64::from(last != b'\n'))
}

/// 0: no error-level finding; 1: at least one; 2: an input could not be read.
pub fn exit_code(report: &Report) -> u8 {
    if !report.errors.is_empty() {
        2
    } else if report.findings.iter().any(|f| f.severity >= Severity::Error) {
        1
    } else {
        0
    }
}

/// The report for a person: the most severe findings with a little evidence, then one
/// line per file. Meant to fit one screen, so findings of one kind in one file are
/// shown once, with where the others are.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    out.push_str(&headline(report));
    let groups = group_findings(&report.findings);
    for group in groups.iter().take(FINDINGS_SHOWN) {
        out.push('\n');
        render_group(&mut out, group);
    }
    let hidden: usize = groups.iter().skip(FINDINGS_SHOWN).map(|g| g.len()).sum();
    if hidden > 0 {
        out.push_str(&format!("\n{hidden} more findings (bootproof inspect --json lists them all)\n"));
    }
    out.push_str("\nfiles:\n");
    for file in &report.files {
        out.push_str(&file_line(file));
    }
    if !report.skipped_symlinks.is_empty() {
        out.push_str(&format!("  ({} symlinks not followed)\n", report.skipped_symlinks.len()));
    }
    for error in &report.errors {
        out.push_str(&format!("error: {error}\n"));
    }
    out
}

/// Sorted findings gathered by (severity, kind, file, whether at shutdown), in order of
/// first appearance: a finding judged by its shutdown is not listed under one that is not.
fn group_findings(findings: &[Finding]) -> Vec<Vec<&Finding>> {
    let mut groups: Vec<Vec<&Finding>> = Vec::new();
    for finding in findings {
        let key = |f: &Finding| (f.severity, f.kind, f.file.clone(), at_shutdown(f));
        let same = |g: &&mut Vec<&Finding>| key(g[0]) == key(finding);
        match groups.iter_mut().find(same) {
            Some(group) => group.push(finding),
            None => groups.push(vec![finding]),
        }
    }
    groups
}

/// The group's first finding in full; up to [`OTHER_SUMMARIES_SHOWN`] other distinct
/// summaries (a display-server failure must not hide behind the helper crash before
/// it); then where the rest are.
fn render_group(out: &mut String, group: &[&Finding]) {
    let first = group[0];
    render_finding(out, first);
    let mut shown = vec![first];
    for finding in &group[1..] {
        if shown.len() > OTHER_SUMMARIES_SHOWN {
            break;
        }
        if shown.iter().all(|s| s.summary != finding.summary) {
            out.push_str(&format!("    also line {}: {}\n", finding.line, finding.summary));
            shown.push(finding);
        }
    }
    let rest: Vec<&&Finding> =
        group.iter().filter(|f| !shown.iter().any(|s| std::ptr::eq(*s, **f))).collect();
    if rest.is_empty() {
        return;
    }
    let lines: Vec<String> = rest.iter().take(8).map(|f| f.line.to_string()).collect();
    let etc = if rest.len() > 8 { ", ..." } else { "" };
    out.push_str(&format!(
        "    and {} more like it in this file, lines {}{etc}\n",
        rest.len(),
        lines.join(", ")
    ));
}

/// Whether a finding was logged while its system shut down, which the text report says:
/// it is why the same message may be judged milder than at other times.
fn at_shutdown(finding: &Finding) -> bool {
    finding.phase == Some(Phase::Shutdown)
}

fn headline(report: &Report) -> String {
    let count = |s: Severity| report.findings.iter().filter(|f| f.severity == s).count();
    let (critical, errors, warnings, info) =
        (count(Severity::Critical), count(Severity::Error), count(Severity::Warning), count(Severity::Info));
    if report.findings.is_empty() {
        return format!("no findings in {} files\n", report.files.len());
    }
    let info = if info > 0 { format!(", {info} info") } else { String::new() };
    format!(
        "{critical} critical, {errors} errors, {warnings} warnings{info} in {} files\n",
        report.files.len()
    )
}

fn render_finding(out: &mut String, finding: &Finding) {
    let severity = format!("{:?}", finding.severity).to_uppercase();
    let kind = kind_name(finding.kind);
    let time = finding.time.as_deref().map(|t| format!("  [{t}]")).unwrap_or_default();
    let phase = if at_shutdown(finding) { "  at shutdown" } else { "" };
    out.push_str(&format!(
        "{severity} {kind}  {}:{}{time}{phase}\n  {}\n",
        finding.file.display(),
        finding.line,
        finding.summary
    ));
    let shown = telling_evidence(&finding.evidence);
    for line in &shown {
        let line: String = line.chars().take(EVIDENCE_CHARS).collect();
        out.push_str(&format!("    | {line}\n"));
    }
    let more = finding.evidence.len() - shown.len();
    if more > 0 {
        out.push_str(&format!("    | ({more} more lines of evidence)\n"));
    }
}

/// The evidence lines that tell most: the first, then the top of a call trace when
/// there is one (registers and module lists say less to a person).
fn telling_evidence(evidence: &[String]) -> Vec<&str> {
    let first = evidence.iter().take(1);
    let trace = evidence.iter().position(|l| l.contains("Call Trace:"));
    let rest = match trace {
        Some(at) => evidence.iter().skip(at + 1),
        None => evidence.iter().skip(1),
    };
    first.chain(rest).take(EVIDENCE_SHOWN).map(String::as_str).collect()
}

fn file_line(file: &FileReport) -> String {
    let note = match (file.kind, file.lines) {
        (LogKind::Unknown, 0) => "  (empty)",
        (LogKind::Unknown, _) => "  (not recognised)",
        _ => "",
    };
    format!(
        "  {:<22} {:>8} records {:>8} not understood  {}{note}\n",
        file.kind.as_str(),
        file.records,
        file.unparsed_lines,
        file.path.display()
    )
}

/// The `--json` name of a finding kind.
pub fn kind_name(kind: logs::FindingKind) -> String {
    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

#[derive(serde::Serialize)]
struct JsonReport<'a> {
    files: Vec<JsonFile<'a>>,
    findings: Vec<JsonFinding<'a>>,
}

#[derive(serde::Serialize)]
struct JsonFile<'a> {
    path: String,
    kind: &'a str,
    records: u64,
    unparsed_lines: u64,
}

/// A [`Finding`] with its path as (lossy) text: JSON cannot carry a non-UTF-8 path.
#[derive(serde::Serialize)]
struct JsonFinding<'a> {
    severity: Severity,
    kind: logs::FindingKind,
    file: String,
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phase: Option<Phase>,
    summary: &'a str,
    evidence: &'a [String],
}

/// The report for a program: `{"files":[...],"findings":[...]}`, every finding.
pub fn render_json(report: &Report) -> String {
    let json = JsonReport {
        files: report
            .files
            .iter()
            .map(|f| JsonFile {
                path: f.path.to_string_lossy().into_owned(),
                kind: f.kind.as_str(),
                records: f.records,
                unparsed_lines: f.unparsed_lines,
            })
            .collect(),
        findings: report
            .findings
            .iter()
            .map(|f| JsonFinding {
                severity: f.severity,
                kind: f.kind,
                file: f.file.to_string_lossy().into_owned(),
                line: f.line,
                time: f.time.as_deref(),
                phase: f.phase,
                summary: &f.summary,
                evidence: &f.evidence,
            })
            .collect(),
    };
    serde_json::to_string(&json).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// Runs `inspect` and returns the process exit code (0 no error-level finding,
/// 1 error-level finding, 2 unreadable input).
pub fn run_cli(paths: &[PathBuf], json: bool) -> ExitCode {
    let report = inspect_paths(paths);
    if json {
        print_out(&format!("{}\n", render_json(&report)));
        for error in &report.errors {
            eprintln!("bootproof inspect: {error}");
        }
    } else {
        print_out(&render_text(&report));
    }
    ExitCode::from(exit_code(&report))
}

/// Writes to stdout; a reader that went away (`| head`) is not an error worth a panic.
fn print_out(text: &str) {
    let mut stdout = io::stdout().lock();
    if let Err(e) = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush())
        && e.kind() != io::ErrorKind::BrokenPipe
    {
        eprintln!("bootproof inspect: cannot write the report: {e}");
    }
}
