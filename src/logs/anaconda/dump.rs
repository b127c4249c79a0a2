//! The `anaconda-tb-*` dump anaconda writes when it crashes.
//!
//! Owns: the dump's layout — the `exception report` line, the traceback (most recent
//! call first), the locals and callback dumps, then one section per collected file
//! headed by `/path:` — and handing each section to the parser of its kind, with line
//! numbers of the dump itself. Must not: know what a section's lines mean.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::Path;

use super::entries::{Records, grammar_for};
use super::grammar::anaconda_entry;
use super::traceback::{self, Builder, Traceback};
use super::{name_kind, traceback_summary};
use crate::logs::lines::{Line, LineReader, Tally, io_error};
use crate::logs::{Finding, FindingKind, LogError, LogKind, Severity};

/// One part of the dump after the traceback.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// `/tmp/packaging.log`, `journalctl`, or the dump's own block names.
    pub name: String,
    /// Line of the dump that heads the section.
    pub line: u64,
    /// How the section was parsed; `None` = kept as opaque text.
    pub kind: Option<LogKind>,
    pub tally: Tally,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dump {
    /// `43.44` from `anaconda 43.44 exception report`.
    pub version: Option<String>,
    pub traceback: Traceback,
    pub traceback_line: u64,
    pub sections: Vec<Section>,
    pub tally: Tally,
    pub findings: Vec<Finding>,
}

enum Part {
    Head,
    Traceback(Builder),
    Body,
}

struct Reader<'f> {
    file: &'f Path,
    dump: Dump,
    part: Part,
    callbacks_seen: bool,
    /// Failures already reported (see [`same_failure`]).
    seen: HashSet<(FindingKind, String)>,
    /// Findings of the `journalctl:` section, merged after the files'.
    from_journal: Vec<Finding>,
    section: Option<(Section, Option<Records>)>,
}

/// Reads a whole dump, streaming.
pub fn parse(input: &mut dyn BufRead, file: &Path) -> Result<Dump, LogError> {
    let mut lines = LineReader::new(input);
    let mut reader = Reader {
        file,
        dump: Dump {
            version: None,
            traceback: Traceback::default(),
            traceback_line: 0,
            sections: Vec::new(),
            tally: Tally::default(),
            findings: Vec::new(),
        },
        part: Part::Head,
        callbacks_seen: false,
        seen: HashSet::new(),
        from_journal: Vec::new(),
        section: None,
    };
    while let Some(line) = lines.next_line().map_err(|e| io_error(file, e))? {
        reader.feed(line);
    }
    Ok(reader.finish())
}

impl Reader<'_> {
    fn feed(&mut self, line: Line<'_>) {
        if line.oversize {
            self.dump.tally.unparsed();
            return;
        }
        match &mut self.part {
            Part::Head => self.head(line),
            Part::Traceback(builder) => {
                if builder.feed(line.bytes) {
                    self.dump.tally.continuation();
                } else {
                    self.end_traceback();
                    self.body(line);
                }
            }
            Part::Body => self.body(line),
        }
    }

    fn head(&mut self, line: Line<'_>) {
        if let Some(version) = report_line(line.bytes) {
            self.dump.version = Some(version);
            self.dump.tally.record();
        } else if traceback::starts_traceback(line.bytes) {
            self.dump.tally.record();
            self.dump.traceback_line = line.number;
            self.part = Part::Traceback(Builder::new(line.bytes));
        } else {
            // A dump without its traceback (cut short, or hand-made) still has sections.
            self.part = Part::Body;
            self.body(line);
        }
    }

    fn end_traceback(&mut self) {
        let Part::Traceback(builder) = std::mem::replace(&mut self.part, Part::Body) else {
            return;
        };
        let traceback = builder.finish();
        let frames = traceback.frames.iter().take(40).map(|f| format!("File {f}"));
        let evidence = frames.chain(traceback.exception.clone()).collect();
        let crash = Finding {
            severity: Severity::Critical,
            kind: FindingKind::InstallerTraceback,
            file: self.file.to_path_buf(),
            line: self.dump.traceback_line,
            time: None,
            phase: None,
            summary: traceback_summary(&traceback),
            evidence,
        };
        self.seen.insert(same_failure(&crash));
        self.dump.findings.push(crash);
        self.dump.traceback = traceback;
    }

    fn body(&mut self, line: Line<'_>) {
        if let Some(name) = self.section_header(line.bytes) {
            self.start_section(name, line.number);
            self.dump.tally.record();
            return;
        }
        match &mut self.section {
            Some((_, Some(records))) => records.feed(line),
            Some((section, None)) => section.tally.continuation(),
            None => self.dump.tally.unparsed(),
        }
    }

    /// `Local variables in innermost frame:`, `Registered callbacks:`, a callback name
    /// (`journalctl:`) or a collected file (`/tmp/anaconda.log:`).
    fn section_header(&mut self, text: &[u8]) -> Option<String> {
        let name = text.strip_suffix(b":")?;
        let block = matches!(name, b"Local variables in innermost frame" | b"Registered callbacks");
        if name == b"Registered callbacks" {
            self.callbacks_seen = true;
        }
        let callback = self.callbacks_seen
            && !self.in_file_section()
            && !name.is_empty()
            && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_');
        // Tool output inside a section can hold `/dev/sda1:` on its own line; anaconda
        // only collects files, never devices.
        let file = self.callbacks_seen
            && name.first() == Some(&b'/')
            && !name.starts_with(b"/dev/")
            && !name.iter().any(|b| b.is_ascii_whitespace());
        (block || callback || file).then(|| String::from_utf8_lossy(name).into_owned())
    }

    fn in_file_section(&self) -> bool {
        self.section.as_ref().is_some_and(|(section, _)| section.name.starts_with('/'))
    }

    fn start_section(&mut self, name: String, line: u64) {
        self.end_section();
        let kind = match name.as_str() {
            "journalctl" => Some(LogKind::JournalShort),
            _ => name.rsplit('/').next().and_then(name_kind),
        };
        let records = kind
            .and_then(|kind| Some((kind, grammar_for(kind)?)))
            .map(|(kind, grammar)| Records::new(kind, grammar, self.file, Some(name.clone())));
        let kind = records.as_ref().and(kind);
        let section = Section { name, line, kind, tally: Tally::default() };
        self.section = Some((section, records));
    }

    fn end_section(&mut self) {
        let Some((mut section, records)) = self.section.take() else {
            return;
        };
        if let Some(records) = records {
            let (tally, findings) = records.finish();
            section.tally = tally;
            if section.kind == Some(LogKind::JournalShort) {
                self.from_journal.extend(findings);
            } else {
                self.merge(findings);
            }
        }
        self.dump.tally.add(section.tally);
        self.dump.sections.push(section);
    }

    /// One failure shows in the journal, in its module's log and in anaconda.log: it is
    /// reported once, from the first of the installer's own files that shows it, and
    /// from the journal only when no file does (the journal's findings come last).
    fn merge(&mut self, findings: Vec<Finding>) {
        for finding in findings {
            if self.seen.insert(same_failure(&finding)) {
                self.dump.findings.push(finding);
            }
        }
    }

    fn finish(mut self) -> Dump {
        self.end_traceback();
        self.end_section();
        let from_journal = std::mem::take(&mut self.from_journal);
        self.merge(from_journal);
        self.dump
    }
}

/// What makes two findings the same failure: a traceback's summary without the section,
/// or a rule's first line without the journal's `LEVEL:logger:` prefix.
fn same_failure(finding: &Finding) -> (FindingKind, String) {
    let text = if finding.kind == FindingKind::InstallerTraceback {
        finding.summary.split(" [in ").next().unwrap_or_default()
    } else {
        let first = finding.evidence.first().map_or("", String::as_str);
        anaconda_entry(first.as_bytes())
            .filter(|entry| entry.time.is_none())
            .and_then(|entry| std::str::from_utf8(entry.message).ok())
            .unwrap_or(first)
    };
    (finding.kind, text.to_owned())
}

/// `anaconda 43.44 exception report` → `43.44`
fn report_line(text: &[u8]) -> Option<String> {
    let version = text.strip_prefix(b"anaconda ")?.strip_suffix(b" exception report")?;
    Some(String::from_utf8_lossy(version).into_owned())
}
