//! The systemd journal in the forms a run brings home: export (lossless, streamed live),
//! JSON, and the short text forms.
//!
//! Owns: recognising each form, counting its records, and carrying each entry's message
//! to the findings rules with who wrote it (identifier, transport, unit) and when.
//! Must not: hold more than one entry in memory, or judge messages itself: the rules for
//! kernel, audit, SDDM and systemd messages live in `rules`, shared with the standalone
//! logs.

pub mod export;
pub mod json;
pub mod short;

use std::io::BufRead;
use std::path::Path;

use self::export::{Entry, ExportParser};
use super::lines::{self, LineClass, LineReader, Tally};
use super::rules::{JournalMessage, Rules, Time};
use super::{Analysis, Analyzer, Finding, FindingKind, LogError, LogKind, Severity};

pub fn analyzers() -> Vec<Box<dyn Analyzer>> {
    vec![Box::new(JournalExport), Box::new(JournalJson), Box::new(JournalShort)]
}

/// The fields of an entry that say what its message means, in any journal form.
#[derive(Debug, Default, Clone, Copy)]
pub struct CarriedFields<'a> {
    pub message: Option<&'a [u8]>,
    /// `SYSLOG_IDENTIFIER`, else `_COMM`.
    pub identifier: Option<&'a [u8]>,
    pub transport: Option<&'a [u8]>,
    /// `UNIT`, else `USER_UNIT`: the unit a systemd message is about.
    pub unit: Option<&'a [u8]>,
    /// `_PID` (set by journald), else `SYSLOG_PID` (what the sender said, all there is for
    /// PID 1's early messages that came through the kernel log).
    pub pid: Option<&'a [u8]>,
    /// `_BOOT_ID`: a change starts another boot.
    pub boot: Option<&'a [u8]>,
    /// `_SOURCE_REALTIME_TIMESTAMP` (when the message was made), else
    /// `__REALTIME_TIMESTAMP` (when journald got it); journalctl shows the same choice.
    pub realtime: Option<&'a [u8]>,
}

/// Hands one entry's message to the rules.
fn carry(rules: &mut Rules, line: u64, fields: &CarriedFields) {
    let Some(text) = fields.message else {
        return;
    };
    let time = fields.realtime.and_then(decimal).map_or(Time::Unknown, Time::RealtimeUs);
    rules.journal_message(&JournalMessage {
        line,
        time,
        identifier: fields.identifier.unwrap_or_default(),
        kernel: fields.transport == Some(b"kernel"),
        pid: fields.pid,
        boot: fields.boot,
        unit: fields.unit,
        text,
    });
}

/// A decimal `u64`, as the journal writes its timestamps.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

fn export_fields<'a>(entry: &Entry<'a>) -> CarriedFields<'a> {
    let mut carried = CarriedFields::default();
    let mut comm = None;
    let mut user_unit = None;
    let mut source_time = None;
    let mut syslog_pid = None;
    for field in &entry.fields {
        let slot = match field.name {
            b"MESSAGE" => &mut carried.message,
            b"SYSLOG_IDENTIFIER" => &mut carried.identifier,
            b"_COMM" => &mut comm,
            b"_TRANSPORT" => &mut carried.transport,
            b"UNIT" => &mut carried.unit,
            b"USER_UNIT" => &mut user_unit,
            b"__REALTIME_TIMESTAMP" => &mut carried.realtime,
            b"_SOURCE_REALTIME_TIMESTAMP" => &mut source_time,
            b"_PID" => &mut carried.pid,
            b"SYSLOG_PID" => &mut syslog_pid,
            b"_BOOT_ID" => &mut carried.boot,
            _ => continue,
        };
        // A repeated field: the first value speaks for the entry.
        slot.get_or_insert(field.value);
    }
    carried.identifier = carried.identifier.or(comm);
    carried.unit = carried.unit.or(user_unit);
    carried.realtime = source_time.or(carried.realtime);
    carried.pid = carried.pid.or(syslog_pid);
    carried
}

/// Fields that every journal entry written by journald or journalctl carries.
const JOURNAL_FIELD_NAMES: &[&[u8]] =
    &[b"__CURSOR", b"__REALTIME_TIMESTAMP", b"MESSAGE", b"_BOOT_ID", b"PRIORITY", b"SYSLOG_IDENTIFIER"];

/// `journalctl -o export`.
pub struct JournalExport;

impl JournalExport {
    /// Streams `input` through the export parser; the tally counts a field-less entry
    /// and stray empty lines as not understood.
    pub fn tally(&self, input: &mut dyn BufRead, file: &Path) -> Result<(Tally, Vec<Finding>), LogError> {
        let mut parser = ExportParser::new();
        let mut rules = Rules::new(file);
        let mut tally = Tally::default();
        let mut truncated = Vec::new();
        loop {
            let chunk = input.fill_buf().map_err(|e| lines::io_error(file, e))?;
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len();
            for entry in parser.feed(chunk) {
                count_entry(&entry, &mut tally, &mut rules, &mut truncated);
            }
            input.consume(n);
        }
        for entry in parser.finish() {
            count_entry(&entry, &mut tally, &mut rules, &mut truncated);
        }
        tally.count(LineClass::Unparsed, parser.stray_lines());
        let mut findings = rules.finish();
        findings.extend(truncated.into_iter().map(|line| truncated_finding(file, line)));
        Ok((tally, findings))
    }
}

/// An entry is one record whose first line starts it; its other fields and its closing
/// empty line continue it, and lines in it that are no field are unparsed.
fn count_entry(entry: &Entry, tally: &mut Tally, rules: &mut Rules, truncated: &mut Vec<u64>) {
    if entry.truncated {
        truncated.push(entry.line);
    }
    if entry.fields.is_empty() {
        tally.count(LineClass::Unparsed, entry.lines);
        return;
    }
    tally.record();
    tally.count(LineClass::Unparsed, entry.unparsed_lines);
    tally.count(LineClass::Continuation, entry.lines - entry.unparsed_lines - 1);
    carry(rules, entry.line, &export_fields(entry));
}

fn truncated_finding(file: &Path, line: u64) -> Finding {
    Finding {
        severity: Severity::Warning,
        kind: FindingKind::TruncatedLog,
        file: file.to_path_buf(),
        line,
        time: None,
        phase: None,
        summary: format!(
            "journal entry at line {line} is cut short: the export ended inside it \
             (or it exceeds {} MiB)",
            export::MAX_ENTRY >> 20
        ),
        evidence: Vec::new(),
    }
}

impl Analyzer for JournalExport {
    fn kind(&self) -> LogKind {
        LogKind::JournalExport
    }

    fn sniff(&self, head: &[u8], _file_name: &str) -> u8 {
        let mut parser = ExportParser::new();
        let complete: Vec<(bool, bool)> = parser.feed(head).map(|e| judge(&e)).collect();
        let judged = match complete.first() {
            Some(&first) => first,
            None => match parser.finish().next() {
                Some(e) => judge(&e),
                None => return 0,
            },
        };
        match judged {
            (true, true) => 95,
            (true, false) => 30,
            _ => 0,
        }
    }

    fn analyze(&self, input: &mut dyn BufRead, file: &Path) -> Result<Analysis, LogError> {
        let (tally, findings) = self.tally(input, file)?;
        Ok(tally.into_analysis(findings))
    }
}

/// Whether an entry is well formed, and whether it has the fields journald writes.
fn judge(entry: &Entry) -> (bool, bool) {
    let clean = !entry.fields.is_empty() && entry.unparsed_lines == 0;
    let journal = entry.fields.iter().any(|f| JOURNAL_FIELD_NAMES.contains(&f.name));
    (clean, journal)
}

/// `journalctl -o json`.
pub struct JournalJson;

impl JournalJson {
    pub fn tally(&self, input: &mut dyn BufRead, file: &Path) -> Result<(Tally, Vec<Finding>), LogError> {
        let mut reader = LineReader::new(input);
        let mut rules = Rules::new(file);
        let mut tally = Tally::default();
        while let Some(line) = reader.next_line().map_err(|e| lines::io_error(file, e))? {
            match json::json_entry(line.bytes) {
                Ok(entry) if !line.oversize => {
                    tally.record();
                    carry(&mut rules, line.number, &entry.carried());
                }
                _ => tally.unparsed(),
            }
        }
        Ok((tally, rules.finish()))
    }
}

impl Analyzer for JournalJson {
    fn kind(&self) -> LogKind {
        LogKind::JournalJson
    }

    fn sniff(&self, head: &[u8], _file_name: &str) -> u8 {
        let Some(first) = lines::head_lines(head).next() else {
            return 0;
        };
        let has_journal_key = JOURNAL_FIELD_NAMES.iter().any(|name| {
            let key = [&b"\""[..], name, b"\""].concat();
            memchr::memmem::find(first, &key).is_some()
        });
        match json::json_entry(first) {
            Ok(_) if has_journal_key => 95,
            _ => 0,
        }
    }

    fn analyze(&self, input: &mut dyn BufRead, file: &Path) -> Result<Analysis, LogError> {
        let (tally, findings) = self.tally(input, file)?;
        Ok(tally.into_analysis(findings))
    }
}

/// `journalctl` short, short-precise, short-iso and short-monotonic text.
pub struct JournalShort;

impl JournalShort {
    pub fn tally(&self, input: &mut dyn BufRead, file: &Path) -> Result<(Tally, Vec<Finding>), LogError> {
        let mut reader = LineReader::new(input);
        let mut rules = Rules::new(file);
        let mut tally = Tally::default();
        let mut in_record = false;
        while let Some(line) = reader.next_line().map_err(|e| lines::io_error(file, e))? {
            if line.oversize {
                tally.unparsed();
                in_record = false;
            } else if let Ok((_, parsed)) = short::short_line(line.bytes) {
                tally.record();
                in_record = true;
                carry_short(&mut rules, line.number, &parsed);
            } else if let Ok((_, marker)) = short::marker_line(line.bytes) {
                tally.record();
                in_record = false;
                if short::is_boot_boundary(marker) {
                    rules.new_boot();
                }
            } else if in_record && short::is_continuation(line.bytes) {
                tally.continuation();
            } else {
                tally.unparsed();
                in_record = false;
            }
        }
        Ok((tally, rules.finish()))
    }
}

fn carry_short(rules: &mut Rules, line: u64, parsed: &short::ShortLine) {
    rules.journal_message(&JournalMessage {
        line,
        time: Time::Text(parsed.time),
        identifier: parsed.identifier,
        kernel: false,
        pid: parsed.pid,
        boot: None,
        unit: None,
        text: parsed.message,
    });
}

impl Analyzer for JournalShort {
    fn kind(&self) -> LogKind {
        LogKind::JournalShort
    }

    /// Short lines, most of them from one host: a kernel log whose messages happen to
    /// read `word word: text` does not have one host word on every line.
    fn sniff(&self, head: &[u8], _file_name: &str) -> u8 {
        let mut hosts: Vec<&[u8]> = Vec::new();
        let share = lines::share_of_lines(head, 2, |l| match short::short_line(l) {
            Ok((_, parsed)) => {
                hosts.push(parsed.host);
                true
            }
            Err(_) => short::marker_line(l).is_ok(),
        });
        let Some(first_host) = hosts.first() else {
            return 0;
        };
        // journalctl output starts with an entry or its `-- Logs begin` line; a short
        // section further down belongs to another file (an anaconda-tb quotes one).
        let starts_well = lines::head_lines(head)
            .find(|l| !l.is_empty())
            .is_some_and(|l| short::short_line(l).is_ok() || short::marker_line(l).is_ok());
        if !starts_well {
            return share.min(30);
        }
        let same_host = hosts.iter().filter(|h| *h == first_host).count();
        if same_host * 10 < hosts.len() * 9 {
            return share / 2;
        }
        share.min(95)
    }

    fn analyze(&self, input: &mut dyn BufRead, file: &Path) -> Result<Analysis, LogError> {
        let (tally, findings) = self.tally(input, file)?;
        Ok(tally.into_analysis(findings))
    }
}

#[cfg(test)]
mod tests;
