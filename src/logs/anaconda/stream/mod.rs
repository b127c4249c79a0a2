//! anaconda's log port: the lines rsyslog writes to
//! `/dev/virtio-ports/org.fedoraproject.anaconda.log.0`, read as they arrive.
//!
//! Owns: the stream's line grammar, which process and which of anaconda's log files each
//! line stands for, and the findings kickstart-tests and lorax watch the stream for.
//! Must not: judge what the per-file rules already judge (a line of anaconda's
//! `program`, `blivet` or `packaging` logger goes through the rules of program.log,
//! storage.log or packaging.log), or judge kernel messages (the shared kernel rules do).
//!
//! # The stream
//!
//! `AnacondaLog.setupVirtio` (pyanaconda `anaconda_logging.py`) appends
//! `*.* <port>;anaconda_syslog` to rsyslog's configuration, and lorax's `rsyslog.conf`
//! defines that template as
//! `%timestamp:8:$:date-rfc3164%,%timestamp:1:3:date-subseconds% %syslogseverity-text:::uppercase% %programname%:%msg%\n`.
//! rsyslog reads the journal, so the port carries every process of the installer:
//!
//! ```text
//! line     = time " " severity " " program ":" message       no blank after the colon
//! time     = HH ":" MM ":" SS "," mmm
//! severity = EMERG | ALERT | CRIT | ERR | WARNING | NOTICE | INFO | DEBUG
//! ```
//!
//! The installer's own lines, by `program`:
//! - `anaconda` (its main process, through `AnacondaJournalHandler`): `anaconda: <prefix>:
//!   text` from the anaconda logger (anaconda.log's lines), `<logger>: text` from the
//!   others (`program: Running... mkfs.xfs`, `blivet:`, `packaging:`, `dnf:`), at the
//!   severity of the Python level. A message of several lines comes folded by rsyslog
//!   (`#012` for each newline) or, when rsyslog leaves it as it is, as lines without the
//!   prefix that continue it.
//! - `org.fedoraproject.Anaconda.Modules.Storage`, `...Payloads`, `...Boss`, ... (the DBus
//!   modules, whose standard error the journal keeps line by line, always at `WARNING`):
//!   Python's `LEVEL:logger:text`, and one line per line of a traceback.
//!
//! # When a finding fires
//!
//! A rule's finding fires with its line; a failed command at its `Return code`; a
//! traceback at its exception line (or at the first line that is not part of it); a
//! kernel report as in dmesg (its end marker, the next report, 64 lines). Unlike the
//! per-file logs, repeats of a rule are findings of their own: a finding never changes
//! after it fired.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use nom::{
    Parser,
    bytes::complete::{tag, take_while1},
    character::complete::char,
    combinator::{map_opt, rest},
};

mod monitor;
#[cfg(test)]
mod tests;

use super::entries::{Command, command_finished, command_started};
use super::grammar::{self, Entry, Level, Res};
use super::rules::{RuleSet, traceback_source};
use super::traceback::{self, Builder};
use super::traceback_summary;
use crate::logs::kernel::kernel_line;
use crate::logs::lines::{Tally, head_lines, is_text, text};
use crate::logs::live::{LineAnalyzer, strip_host_stamp};
use crate::logs::rules::{Rules, Time};
use crate::logs::{Finding, FindingKind, LogKind, Severity};

/// One line of the stream. All fields borrow from the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLine<'a> {
    /// `19:31:43,453`
    pub time: &'a [u8],
    pub severity: Level,
    /// rsyslog's `programname`: the syslog identifier without `[pid]`.
    pub program: &'a [u8],
    pub message: &'a [u8],
}

/// `%syslogseverity-text:::uppercase%`
fn severity(i: &[u8]) -> Res<'_, Level> {
    map_opt(take_while1(|b: u8| b.is_ascii_uppercase()), |name: &[u8]| {
        Some(match name {
            b"EMERG" | b"ALERT" | b"CRIT" => Level::Critical,
            b"ERR" => Level::Error,
            b"WARNING" => Level::Warning,
            b"NOTICE" => Level::Notice,
            b"INFO" => Level::Info,
            b"DEBUG" => Level::Debug,
            _ => return None,
        })
    })
    .parse(i)
}

/// `%programname%`: no blank, no colon.
fn program(i: &[u8]) -> Res<'_, &[u8]> {
    take_while1(|b: u8| b != b':' && b != b' ' && b != b'\t').parse(i)
}

/// A line of the stream (bootproof's host stamp removed), or `None` when it is not one.
pub fn stream_line(line: &[u8]) -> Option<StreamLine<'_>> {
    let parsed: Res<'_, _> =
        (grammar::timestamp, char(' '), severity, char(' '), program, char(':'), rest).parse(line);
    parsed.ok().map(|(_, (time, _, severity, _, program, _, message))| StreamLine {
        time,
        severity,
        program,
        message,
    })
}

/// `anaconda: <prefix>: text`: the anaconda logger's lines, as `ANACONDA_SYSLOG_FORMAT`
/// writes them.
fn anaconda_logger(i: &[u8]) -> Res<'_, (&[u8], &[u8])> {
    (tag(&b"anaconda: "[..]), grammar::logger, tag(&b": "[..]), rest)
        .parse(i)
        .map(|(i, (_, prefix, _, text))| (i, (prefix, text)))
}

/// `<logger>: text`: the other loggers of the main process (`AnacondaJournalHandler`
/// puts the logger's name first).
fn named_logger(i: &[u8]) -> Res<'_, (&[u8], &[u8])> {
    (grammar::logger, tag(&b": "[..]), rest).parse(i).map(|(i, (logger, _, text))| (i, (logger, text)))
}

/// Which of anaconda's log files a logger's lines go to.
fn log_of_logger(logger: &[u8]) -> LogKind {
    match logger {
        b"program" => LogKind::ProgramLog,
        b"blivet" => LogKind::StorageLog,
        b"packaging" | b"dnf" | b"yum" => LogKind::PackagingLog,
        // anaconda 21's yum payload logs as `yum.verbose.YumPlugins` and the like.
        _ if logger.starts_with(b"dnf.") || logger.starts_with(b"yum.") => LogKind::PackagingLog,
        _ => LogKind::AnacondaLog,
    }
}

const MODULES: &[u8] = b"org.fedoraproject.Anaconda.";

/// The installer's line as an entry of the log file it stands for: which file, and the
/// entry that file would hold. `None` for other programs.
fn installer_entry<'a>(line: &StreamLine<'a>) -> Option<(LogKind, Entry<'a>)> {
    let entry = |source, message| Entry { time: Some(line.time), level: line.severity, source, message };
    if line.program == b"anaconda" {
        if let Ok((_, (prefix, text))) = anaconda_logger(line.message) {
            return Some((LogKind::AnacondaLog, entry(prefix, text)));
        }
        if let Ok((_, (logger, text))) = named_logger(line.message) {
            return Some((log_of_logger(logger), entry(logger, text)));
        }
        return Some((LogKind::AnacondaLog, entry(b"", line.message)));
    }
    let module = line.program.strip_prefix(MODULES)?;
    let kind = if module.ends_with(b".Storage") {
        LogKind::StorageLog
    } else if module.ends_with(b".Payloads") {
        LogKind::PackagingLog
    } else {
        LogKind::AnacondaLog
    };
    // The modules log `LEVEL:logger:text` to standard error, which the journal keeps at
    // WARNING: the level that counts is Python's.
    let found = match grammar::python_entry(line.message) {
        Ok((_, python)) => Entry { time: Some(line.time), ..python },
        Err(_) => entry(b"", line.message),
    };
    Some((kind, found))
}

/// A traceback being read.
struct Capture {
    line: u64,
    time: String,
    program: Vec<u8>,
    builder: Builder,
    evidence: Vec<String>,
}

/// Findings kept per stream, as per file (`entries::MAX_FINDINGS`).
const MAX_FINDINGS: usize = 1000;
const MAX_EVIDENCE: usize = 40;
const MAX_EVIDENCE_LINE: usize = 400;

/// The per-file rules of the logs the stream's lines stand for, built once.
struct PerFile {
    anaconda: RuleSet,
    program: RuleSet,
    storage: RuleSet,
    packaging: RuleSet,
}

impl PerFile {
    fn new() -> Self {
        PerFile {
            anaconda: RuleSet::for_kind(LogKind::AnacondaLog),
            program: RuleSet::for_kind(LogKind::ProgramLog),
            storage: RuleSet::for_kind(LogKind::StorageLog),
            packaging: RuleSet::for_kind(LogKind::PackagingLog),
        }
    }

    fn of(&self, kind: LogKind) -> &RuleSet {
        match kind {
            LogKind::ProgramLog => &self.program,
            LogKind::StorageLog => &self.storage,
            LogKind::PackagingLog => &self.packaging,
            _ => &self.anaconda,
        }
    }
}

/// anaconda's log port read line by line (see [the module](self) for when findings
/// fire).
pub struct Stream {
    file: PathBuf,
    tally: Tally,
    rules: PerFile,
    kernel: Rules,
    capture: Option<Capture>,
    /// The commands of the main process (program.log's) and of the Storage module
    /// (storage.log's `program` logger), which run at the same time.
    commands: [Command; 2],
    /// Which of `commands` the last line's output belongs to.
    last_command: Option<usize>,
    seen_tracebacks: HashSet<String>,
    fired: usize,
}

impl Stream {
    pub fn new(file: &Path) -> Self {
        Stream {
            file: file.to_path_buf(),
            tally: Tally::default(),
            rules: PerFile::new(),
            kernel: Rules::new(file),
            capture: None,
            commands: [Command::default(), Command::default()],
            last_command: None,
            seen_tracebacks: HashSet::new(),
            fired: 0,
        }
    }

    fn entry(&mut self, number: u64, line: &StreamLine<'_>, whole: &[u8], out: &mut Vec<Finding>) {
        self.last_command = None;
        if let Some(capture) = &mut self.capture {
            if capture.program == line.program {
                if capture.builder.feed(line.message) {
                    push_evidence(&mut capture.evidence, line.message);
                    if capture.builder.complete() {
                        self.end_capture(out);
                    }
                    return;
                }
                self.end_capture(out);
            } else if !capture.program.starts_with(MODULES) {
                // The main process's traceback is one message: lines that are no entry
                // continue it, and the next entry ends it. A DBus module writes each line
                // of its traceback as an entry of its own, among other programs' lines.
                self.end_capture(out);
            }
        }
        if traceback::starts_traceback(line.message) && traceback_source(LogKind::Syslog, line.program) {
            self.start_capture(number, line, out);
            return;
        }
        if line.program == b"kernel" {
            let open_before = self.kernel.report_open();
            let before = self.kernel.found();
            let parsed = kernel_line(line.message);
            self.kernel.kernel(number, Time::Text(line.time), parsed.message, whole);
            let claimed = open_before || self.kernel.found() > before;
            out.extend(self.kernel.take_settled());
            if !claimed {
                self.stream_rules(number, line, whole, out);
            }
            return;
        }
        if let Some((kind, entry)) = installer_entry(line)
            && self.installer(number, kind, line, &entry, whole, out)
        {
            return;
        }
        self.stream_rules(number, line, whole, out);
    }

    /// A line of anaconda's own processes through the rules of its log file; true when it
    /// made a finding.
    fn installer(
        &mut self,
        number: u64,
        kind: LogKind,
        line: &StreamLine<'_>,
        entry: &Entry<'_>,
        whole: &[u8],
        out: &mut Vec<Finding>,
    ) -> bool {
        let slot = match kind {
            LogKind::ProgramLog => Some(0),
            LogKind::StorageLog if entry.source == b"program" => Some(1),
            _ => None,
        };
        if let Some(slot) = slot {
            let command = &mut self.commands[slot];
            if let Some(started) = command_started(entry.message) {
                command.start(number, entry.time, started);
                self.last_command = Some(slot);
            } else if let Some(code) = command_finished(entry.message) {
                if std::mem::take(&mut command.running)
                    && let Some(finding) = command.finding(code, number, &self.file)
                {
                    out.push(finding);
                    return true;
                }
            } else {
                command.push_output(entry.message);
                self.last_command = Some(slot);
            }
        }
        let Some((_, rule)) = self.rules.of(kind).first_match(entry) else {
            return false;
        };
        let Some((kind, severity)) = rule.outcome else {
            // Known harmless for its file: no stream rule second-guesses it.
            return true;
        };
        out.push(self.finding(
            (kind, severity),
            number,
            line.time,
            format!("{}: {}", rule.summary, text(clip(entry.message))),
            whole,
        ));
        true
    }

    fn stream_rules(&mut self, number: u64, line: &StreamLine<'_>, whole: &[u8], out: &mut Vec<Finding>) {
        let Some(rule) = monitor::first_match(line) else {
            return;
        };
        let Some(outcome) = rule.outcome else {
            return;
        };
        let summary = format!("{}: {}: {}", rule.summary, text(line.program), text(clip(line.message)));
        out.push(self.finding(outcome, number, line.time, summary, whole));
    }

    fn finding(
        &self,
        (kind, severity): (FindingKind, Severity),
        number: u64,
        time: &[u8],
        summary: String,
        whole: &[u8],
    ) -> Finding {
        Finding {
            severity,
            kind,
            file: self.file.clone(),
            line: number,
            time: Some(text(time)),
            phase: None,
            summary,
            evidence: vec![text(clip(whole))],
        }
    }

    fn start_capture(&mut self, number: u64, line: &StreamLine<'_>, out: &mut Vec<Finding>) {
        let mut capture = Capture {
            line: number,
            time: text(line.time),
            program: line.program.to_vec(),
            builder: Builder::new(line.message),
            evidence: Vec::new(),
        };
        push_evidence(&mut capture.evidence, line.message);
        // rsyslog folds a multi-line message with `#012` for each newline.
        for part in line.message.split(|b| *b == b'#').skip(1) {
            if let Some(folded) = part.strip_prefix(b"012") {
                capture.builder.feed(folded);
                push_evidence(&mut capture.evidence, folded);
            }
        }
        let complete = capture.builder.complete();
        self.capture = Some(capture);
        if complete {
            self.end_capture(out);
        }
    }

    fn end_capture(&mut self, out: &mut Vec<Finding>) {
        let Some(capture) = self.capture.take() else {
            return;
        };
        let summary = traceback_summary(&capture.builder.finish());
        // One crash shows in the module that raised it and again where it was
        // re-raised; it is reported once.
        if !self.seen_tracebacks.insert(summary.clone()) {
            return;
        }
        out.push(Finding {
            severity: Severity::Critical,
            kind: FindingKind::InstallerTraceback,
            file: self.file.clone(),
            line: capture.line,
            time: Some(capture.time),
            phase: None,
            summary,
            evidence: capture.evidence,
        });
    }

    /// A line that is no entry: the rest of the message above it.
    fn continuation(&mut self, text: &[u8], out: &mut Vec<Finding>) {
        if let Some(capture) = &mut self.capture {
            if capture.builder.feed(text) {
                push_evidence(&mut capture.evidence, text);
                if capture.builder.complete() {
                    self.end_capture(out);
                }
                return;
            }
            self.end_capture(out);
        }
        if let Some(slot) = self.last_command {
            self.commands[slot].push_output(text);
        }
    }

    fn keep(&mut self, mut found: Vec<Finding>) -> Vec<Finding> {
        found.truncate(MAX_FINDINGS.saturating_sub(self.fired));
        self.fired += found.len();
        found
    }
}

impl LineAnalyzer for Stream {
    fn kind(&self) -> LogKind {
        LogKind::AnacondaStream
    }

    fn line(&mut self, number: u64, line: &[u8]) -> Vec<Finding> {
        let (_, line) = strip_host_stamp(line);
        let mut out = Vec::new();
        match stream_line(line) {
            Some(parsed) => {
                self.tally.record();
                // Past the cap a line is only counted: nothing it could find is kept.
                if self.fired < MAX_FINDINGS {
                    self.entry(number, &parsed, line, &mut out);
                }
            }
            None if self.tally.records > 0 => {
                self.tally.continuation();
                self.continuation(line, &mut out);
            }
            None => self.tally.unparsed(),
        }
        self.keep(out)
    }

    fn skip(&mut self, _number: u64) -> Vec<Finding> {
        self.tally.unparsed();
        let mut out = Vec::new();
        self.end_capture(&mut out);
        self.last_command = None;
        self.keep(out)
    }

    fn finish(&mut self) -> Vec<Finding> {
        let mut out = Vec::new();
        self.end_capture(&mut out);
        out.extend(self.kernel.take_rest());
        self.keep(out)
    }

    fn tally(&self) -> Tally {
        self.tally
    }
}

/// Lines of the head looked at when sniffing.
const SNIFF_LINES: usize = 400;

/// 0 unless enough of the head (host stamps aside) is stream lines; 40–60 by how much;
/// 95 when anaconda's main process writes among them (`anaconda:` then its logger, no
/// blank: its own files write `anaconda: `, and its rsyslog file `/tmp/syslog` leaves
/// out its facility, local1).
pub fn sniff(head: &[u8]) -> u8 {
    if !is_text(head) {
        return 0;
    }
    let (mut total, mut parsed, mut main) = (0u32, 0u32, 0u32);
    for line in head_lines(head).take(SNIFF_LINES).filter(|l| !l.is_empty()) {
        total += 1;
        let Some(entry) = stream_line(strip_host_stamp(line).1) else {
            continue;
        };
        parsed += 1;
        let by_main = entry.program == b"anaconda" && entry.message.first().is_some_and(|b| *b != b' ');
        main += u32::from(by_main);
    }
    if total == 0 || parsed * 10 < total * 3 {
        return 0;
    }
    if main >= 3 && main * 10 >= parsed { 95 } else { (40 + parsed * 20 / total) as u8 }
}

fn clip(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.len().min(MAX_EVIDENCE_LINE)]
}

fn push_evidence(evidence: &mut Vec<String>, line: &[u8]) {
    if evidence.len() < MAX_EVIDENCE {
        evidence.push(text(clip(line)));
    }
}
