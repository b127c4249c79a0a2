//! The record engine behind every line-oriented installer log.
//!
//! Owns: grouping lines into records (an entry line and its continuation lines),
//! following tracebacks and program.log commands across lines, and applying `rules`.
//! Must not: read files (it is fed lines, so the `anaconda-tb-*` dump can feed it one
//! embedded section at a time) or keep more than a bounded amount of evidence.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};

use super::grammar::{self, Entry, Level};
use super::rules::{self, Rule, RuleSet};
use super::traceback::{self, Builder};
use super::traceback_summary;
use crate::logs::lines::{Line, Tally};
use crate::logs::{Finding, FindingKind, LogKind, Severity};

/// Evidence lines kept per finding; the rest of a long traceback is only counted.
const MAX_EVIDENCE: usize = 40;
/// Output lines kept per running command (the last ones: they hold the error).
const MAX_OUTPUT: usize = 8;
/// Findings kept per log: far more than a person reads, few enough that a log of
/// millions of failing lines cannot exhaust memory. Repeats of a rule are already one
/// finding; this bounds distinct tracebacks and failed commands.
const MAX_FINDINGS: usize = 1000;
/// Longest evidence line kept, in bytes.
const MAX_EVIDENCE_LINE: usize = 400;

pub type Grammar = for<'a> fn(&'a [u8]) -> Option<Entry<'a>>;

/// The entry grammar of each line-oriented installer log.
pub fn grammar_for(kind: LogKind) -> Option<Grammar> {
    Some(match kind {
        LogKind::AnacondaLog | LogKind::StorageLog | LogKind::PackagingLog | LogKind::DnfLibrepoLog => {
            grammar::anaconda_entry
        }
        LogKind::ProgramLog => program_entry,
        LogKind::Syslog => grammar::syslog_entry,
        LogKind::DnfLog => grammar::dnf_entry,
        LogKind::XorgLog => grammar::xorg_entry,
        LogKind::JournalShort => grammar::journal_entry,
        LogKind::KsScriptLog => grammar::script_entry,
        _ => return None,
    })
}

fn program_entry(line: &[u8]) -> Option<Entry<'_>> {
    grammar::anaconda_entry(line).or_else(|| grammar::loader_entry(line))
}

/// A traceback being read.
struct Capture {
    line: u64,
    time: Option<String>,
    source: Vec<u8>,
    builder: Builder,
    evidence: Vec<String>,
}

/// The command program.log last started, kept in buffers reused from one command to
/// the next: program.log is mostly commands and their output, and allocating for each
/// line would dominate reading it.
#[derive(Default)]
pub(super) struct Command {
    pub(super) running: bool,
    line: u64,
    time: Vec<u8>,
    text: Vec<u8>,
    /// The last [`MAX_OUTPUT`] output lines.
    output: VecDeque<Vec<u8>>,
    spare: Vec<Vec<u8>>,
}

impl Command {
    pub(super) fn start(&mut self, line: u64, time: Option<&[u8]>, text: &[u8]) {
        self.running = true;
        self.line = line;
        self.time.clear();
        self.time.extend_from_slice(time.unwrap_or_default());
        self.text.clear();
        self.text.extend_from_slice(clip(text));
        self.spare.extend(self.output.drain(..));
    }

    /// The finding for this command ending with `code` at line `number`, when the code
    /// says it failed and the command matters (`rules::command_failure`).
    pub(super) fn finding(&self, code: i64, number: u64, file: &Path) -> Option<Finding> {
        if code == 0 {
            return None;
        }
        let text = lossy(&self.text);
        let severity = rules::command_failure(&text)?;
        let mut evidence = vec![format!("Running... {text}")];
        evidence.extend(self.output.iter().map(|line| lossy(line)));
        evidence.push(format!("(line {number}) return code {code}"));
        Some(Finding {
            severity,
            kind: FindingKind::CommandFailed,
            file: file.to_path_buf(),
            line: self.line,
            time: (!self.time.is_empty()).then(|| lossy(&self.time)),
            phase: None,
            summary: format!("command failed with code {code}: {text}"),
            evidence,
        })
    }

    pub(super) fn push_output(&mut self, text: &[u8]) {
        if !self.running {
            return;
        }
        let mut slot =
            if self.output.len() == MAX_OUTPUT { self.output.pop_front() } else { self.spare.pop() }
                .unwrap_or_default();
        slot.clear();
        slot.extend_from_slice(clip(text));
        self.output.push_back(slot);
    }
}

/// One log (or one section of a tb dump) being read.
pub struct Records {
    kind: LogKind,
    grammar: Grammar,
    file: PathBuf,
    /// Set for a section of a tb dump: the path of the embedded file.
    section: Option<String>,
    rules: RuleSet,
    tally: Tally,
    findings: Vec<Finding>,
    in_record: bool,
    capture: Option<Capture>,
    command: Command,
    tracks_commands: bool,
    /// (rule index, finding index): repeats of a rule add evidence to one finding.
    aggregated: Vec<(usize, usize)>,
    seen_tracebacks: HashSet<String>,
}

impl Records {
    pub fn new(kind: LogKind, grammar: Grammar, file: &Path, section: Option<String>) -> Self {
        Records {
            kind,
            grammar,
            file: file.to_path_buf(),
            section,
            rules: RuleSet::for_kind(kind),
            tally: Tally::default(),
            findings: Vec::new(),
            in_record: false,
            capture: None,
            command: Command::default(),
            tracks_commands: matches!(kind, LogKind::ProgramLog | LogKind::StorageLog),
            aggregated: Vec::new(),
            seen_tracebacks: HashSet::new(),
        }
    }

    pub fn feed(&mut self, line: Line<'_>) {
        if line.oversize {
            self.end_capture();
            self.tally.unparsed();
            return;
        }
        match (self.grammar)(line.bytes) {
            Some(entry) => {
                self.tally.record();
                self.in_record = true;
                self.on_entry(line.number, entry);
            }
            None if self.in_record => {
                self.tally.continuation();
                self.on_continuation(line.number, line.bytes);
            }
            None => self.tally.unparsed(),
        }
    }

    pub fn finish(mut self) -> (Tally, Vec<Finding>) {
        self.end_capture();
        (self.tally, self.findings)
    }

    fn on_entry(&mut self, number: u64, entry: Entry<'_>) {
        if let Some(capture) = &mut self.capture {
            // In the journal and syslog each traceback line is an entry of the process.
            if capture.source == entry.source && capture.builder.feed(entry.message) {
                push_evidence(&mut capture.evidence, entry.message);
                return;
            }
            self.end_capture();
        }
        if traceback::starts_traceback(entry.message) && rules::traceback_source(self.kind, entry.source) {
            self.start_capture(number, &entry);
            return;
        }
        if self.tracks_commands && (self.kind == LogKind::ProgramLog || entry.source == b"program") {
            self.on_program(number, &entry);
        }
        if let Some((index, rule)) = self.rules.first_match(&entry) {
            self.apply(index, rule, number, &entry);
        }
    }

    fn on_continuation(&mut self, number: u64, text: &[u8]) {
        if let Some(capture) = &mut self.capture {
            if capture.builder.feed(text) {
                push_evidence(&mut capture.evidence, text);
                return;
            }
            self.end_capture();
        }
        self.command.push_output(text);
        if self.kind == LogKind::XorgLog {
            // The X server prints `Fatal server error:` on a line of its own, without
            // its uptime stamp.
            let entry = Entry { time: None, level: Level::Info, source: b"", message: text };
            if let Some((index, rule)) = self.rules.first_match(&entry) {
                self.apply(index, rule, number, &entry);
            }
        }
    }

    fn start_capture(&mut self, number: u64, entry: &Entry<'_>) {
        let mut capture = Capture {
            line: number,
            time: entry.time.map(lossy),
            source: entry.source.to_vec(),
            builder: Builder::new(entry.message),
            evidence: Vec::new(),
        };
        push_evidence(&mut capture.evidence, entry.message);
        // rsyslog folds a multi-line message into one line with `#012` for each newline.
        let mut parts = entry.message.split(|b| *b == b'#');
        parts.next();
        for part in parts {
            if let Some(text) = part.strip_prefix(b"012") {
                capture.builder.feed(text);
                push_evidence(&mut capture.evidence, text);
            }
        }
        self.capture = Some(capture);
    }

    fn end_capture(&mut self) {
        let Some(capture) = self.capture.take() else {
            return;
        };
        let summary = traceback_summary(&capture.builder.finish());
        if self.findings.len() >= MAX_FINDINGS || !self.seen_tracebacks.insert(summary.clone()) {
            return;
        }
        self.keep(Finding {
            severity: Severity::Critical,
            kind: FindingKind::InstallerTraceback,
            file: self.file.clone(),
            line: capture.line,
            time: capture.time,
            phase: None,
            summary: self.in_section(summary),
            evidence: capture.evidence,
        });
    }

    fn on_program(&mut self, number: u64, entry: &Entry<'_>) {
        let message = entry.message;
        if let Some(text) = command_started(message) {
            self.command.start(number, entry.time, text);
        } else if let Some(code) = command_finished(message) {
            if std::mem::take(&mut self.command.running) {
                self.command_done(code, number);
            }
        } else {
            self.command.push_output(message);
        }
    }

    fn command_done(&mut self, code: i64, number: u64) {
        if let Some(mut finding) = self.command.finding(code, number, &self.file) {
            finding.summary = self.in_section(finding.summary);
            self.keep(finding);
        }
    }

    fn apply(&mut self, index: usize, rule: &Rule, number: u64, entry: &Entry<'_>) {
        let Some((kind, severity)) = rule.outcome else {
            return;
        };
        let earlier = self.aggregated.iter().find(|(r, _)| *r == index);
        if let Some(finding) = earlier.and_then(|&(_, at)| self.findings.get_mut(at)) {
            push_evidence(&mut finding.evidence, entry.message);
            return;
        }
        if self.findings.len() >= MAX_FINDINGS {
            return;
        }
        self.aggregated.push((index, self.findings.len()));
        let summary = format!("{}: {}", rule.summary, lossy(clip(entry.message)));
        self.keep(Finding {
            severity,
            kind,
            file: self.file.clone(),
            line: number,
            time: entry.time.map(lossy),
            phase: None,
            summary: self.in_section(summary),
            evidence: vec![lossy(clip(entry.message))],
        });
    }

    fn keep(&mut self, finding: Finding) {
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(finding);
        }
    }

    fn in_section(&self, summary: String) -> String {
        match &self.section {
            Some(section) => format!("{summary} [in {section}]"),
            None => summary,
        }
    }
}

/// `Running... cmd`, `Running in chroot '/mnt/sysroot'... cmd`, `Running [2] cmd ...`.
pub(super) fn command_started(message: &[u8]) -> Option<&[u8]> {
    let rest = message.strip_prefix(b"Running")?;
    if let Some(cmd) = rest.strip_prefix(b"... ") {
        return Some(cmd);
    }
    if rest.starts_with(b" in chroot ") {
        let at = memchr::memmem::find(rest, b"... ")?;
        return Some(&rest[at + 4..]);
    }
    let rest = rest.strip_prefix(b" [")?;
    let at = memchr::memchr(b']', rest)?;
    let cmd = rest[at + 1..].trim_ascii();
    Some(cmd.strip_suffix(b" ...").unwrap_or(cmd))
}

/// `Return code: N` or `...done [2] (exit code: N)`.
pub(super) fn command_finished(message: &[u8]) -> Option<i64> {
    let digits = if let Some(code) = message.strip_prefix(b"Return code: ") {
        code
    } else if message.starts_with(b"...done [") {
        let at = memchr::memmem::find(message, b"(exit code: ")?;
        message[at + 12..].strip_suffix(b")")?
    } else {
        return None;
    };
    std::str::from_utf8(digits.trim_ascii()).ok()?.parse().ok()
}

fn clip(text: &[u8]) -> &[u8] {
    &text[..text.len().min(MAX_EVIDENCE_LINE)]
}

fn lossy(text: &[u8]) -> String {
    String::from_utf8_lossy(text).into_owned()
}

fn push_evidence(evidence: &mut Vec<String>, text: &[u8]) {
    if evidence.len() < MAX_EVIDENCE {
        evidence.push(lossy(clip(text)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_of_every_generation() {
        assert_eq!(command_started(b"Running... losetup --list"), Some(&b"losetup --list"[..]));
        assert_eq!(
            command_started(b"Running in chroot '/mnt/sysroot'... /bin/sh /tmp/ks-script-x"),
            Some(&b"/bin/sh /tmp/ks-script-x"[..])
        );
        assert_eq!(command_started(b"Running [2] lvm version ..."), Some(&b"lvm version"[..]));
        assert_eq!(command_finished(b"Return code: 8"), Some(8));
        assert_eq!(command_finished(b"...done [2] (exit code: 3)"), Some(3));
        assert_eq!(command_finished(b"Returned"), None);
    }
}
