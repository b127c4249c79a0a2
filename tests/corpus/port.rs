//! Real anaconda logs rewritten as anaconda's log port carries them, for the corpus
//! trials (`stream.rs`) and the installer benchmark; generated when they run, never kept.
//!
//! The port carries rsyslog's `anaconda_syslog` lines (`HH:MM:SS,mmm SEVERITY
//! program:message`), which bootproof writes with its host stamp in front. Each
//! function keeps the line count: line N of the log is line N of its rewrite.

use bootproof::logs::LogKind;
use bootproof::logs::anaconda::grammar::{self, Level};

/// rsyslog's `%syslogseverity-text:::uppercase%` for the level a line was logged at.
fn severity(level: Level) -> &'static str {
    match level {
        Level::Trace | Level::Debug => "DEBUG",
        Level::Info => "INFO",
        Level::Notice => "NOTICE",
        Level::Warning => "WARNING",
        Level::Error => "ERR",
        Level::Critical => "CRIT",
    }
}

/// A line as bootproof writes it from the port: the host's seconds, then the line.
fn stamped(out: &mut Vec<u8>, number: usize, line: &[u8]) {
    out.extend_from_slice(format!("[{:>10.3}] ", number as f64 / 100.0).as_bytes());
    out.extend_from_slice(line);
    out.push(b'\n');
}

/// A timed file of the main process (anaconda.log, program.log, RHEL 9's
/// packaging.log) as `AnacondaJournalHandler` hands it to the journal: the anaconda
/// logger as `anaconda: <prefix>: text`, the others as `<logger>: text`; a line that is
/// no entry continues the message above it, as a line of its own.
pub fn main_process(kind: LogKind, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (index, line) in data.split(|b| *b == b'\n').enumerate() {
        let rewritten = match grammar::anaconda_entry(line) {
            Some(entry) => {
                let time = String::from_utf8_lossy(entry.time.unwrap_or(b"00:00:00,000"));
                let logger = if kind == LogKind::AnacondaLog { "anaconda: " } else { "" };
                let mut l = format!(
                    "{time} {} anaconda:{logger}{}: ",
                    severity(entry.level),
                    String::from_utf8_lossy(entry.source)
                )
                .into_bytes();
                l.extend_from_slice(entry.message);
                l
            }
            None => line.to_vec(),
        };
        stamped(&mut out, index, &rewritten);
    }
    out
}

/// A file a DBus module writes through standard error (Python's `LEVEL:logger:text`,
/// no time): the journal keeps every line as an entry of its own, at WARNING.
pub fn module(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (index, line) in data.split(|b| *b == b'\n').enumerate() {
        let mut l = format!("00:00:00,000 WARNING org.fedoraproject.Anaconda.Modules.{name}:").into_bytes();
        l.extend_from_slice(line);
        stamped(&mut out, index, &l);
    }
    out
}

/// `journalctl -b` short lines as rsyslog reads them from the journal: the identifier
/// without its pid, the DBus modules' standard error at WARNING, the rest at INFO (the
/// short form does not show the priority).
pub fn journal(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (index, line) in data.split(|b| *b == b'\n').enumerate() {
        let rewritten = match grammar::journal_entry(line).filter(|e| e.time.is_some()) {
            Some(entry) => {
                let time = String::from_utf8_lossy(entry.time.unwrap_or_default());
                let clock = time.rsplit(' ').next().unwrap_or_default();
                let source = String::from_utf8_lossy(entry.source);
                let program = source.split('[').next().unwrap_or_default();
                let level =
                    if program.starts_with("org.fedoraproject.Anaconda.") { "WARNING" } else { "INFO" };
                let mut l = format!("{clock},000 {level} {program}:").into_bytes();
                l.extend_from_slice(entry.message);
                l
            }
            None => line.to_vec(),
        };
        stamped(&mut out, index, &rewritten);
    }
    out
}
