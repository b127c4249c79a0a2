//! Anaconda's logs: anaconda.log, program.log, storage.log, packaging.log, dnf's logs,
//! syslog, journal.log, X.log, ks-script logs and the `anaconda-tb-*` crash dump, in
//! every generation from anaconda 11 (RHEL 5, Fedora 10) to anaconda 43; and its log
//! port, read live ([`stream`]).
//!
//! Owns: recognising these files by content ([`Analyzer::sniff`]), reading them as
//! records, and the findings an installer failure leaves in them. Must not: read a whole
//! file into memory, guess at lines it does not understand (they are counted as
//! unparsed), or report the journal's system-wide failures (the journal module does).
//!
//! Layout: `grammar` is the line grammar, `traceback` reads Python tracebacks,
//! `entries` groups lines into records and applies `rules`, `dump` splits a crash
//! dump into sections, and `stream` reads the log port with the same rules. Lines are read, bounded and accounted for by [`crate::logs::lines`].

pub mod dump;
mod entries;
pub mod grammar;
pub mod program;
mod rules;
pub mod stream;
pub mod traceback;

#[cfg(test)]
mod tests;

use std::io::BufRead;
use std::path::Path;

pub use grammar::{Entry, Level};
pub use traceback::{Frame, Traceback};

use super::lines::{LineReader, Tally, head_lines, io_error, is_text};
use super::{Analysis, Analyzer, Finding, LogError, LogKind};
use entries::{Records, grammar_for};

/// The line-oriented installer logs, then the crash dump.
const LINE_LOGS: [LogKind; 10] = [
    LogKind::AnacondaLog,
    LogKind::ProgramLog,
    LogKind::StorageLog,
    LogKind::PackagingLog,
    LogKind::DnfLog,
    LogKind::DnfLibrepoLog,
    LogKind::Syslog,
    LogKind::XorgLog,
    LogKind::KsScriptLog,
    LogKind::JournalShort,
];

pub fn analyzers() -> Vec<Box<dyn Analyzer>> {
    let mut all: Vec<Box<dyn Analyzer>> =
        LINE_LOGS.iter().map(|&kind| Box::new(LineLog { kind }) as Box<dyn Analyzer>).collect();
    all.push(Box::new(CrashDump));
    all.push(Box::new(StreamLog));
    all
}

/// Reads one line-oriented installer log of a known kind: its line accounting and
/// findings. `kind` must be one of the kinds [`analyzers`] offers for line logs.
pub fn read_records(
    kind: LogKind,
    input: &mut dyn BufRead,
    file: &Path,
) -> Result<(Tally, Vec<Finding>), LogError> {
    let grammar = grammar_for(kind).ok_or_else(|| LogError::Malformed {
        path: file.to_path_buf(),
        line: 0,
        message: format!("{} is not an installer line log", kind.as_str()),
    })?;
    let mut records = Records::new(kind, grammar, file, None);
    let mut lines = LineReader::new(input);
    while let Some(line) = lines.next_line().map_err(|e| io_error(file, e))? {
        records.feed(line);
    }
    Ok(records.finish())
}

/// The kind a collected file's name says it is (`anaconda.storage.log` is RHEL 6's
/// name for storage.log).
pub fn name_kind(file_name: &str) -> Option<LogKind> {
    Some(match file_name {
        "anaconda.log" => LogKind::AnacondaLog,
        "program.log" | "anaconda.program.log" => LogKind::ProgramLog,
        "storage.log" | "anaconda.storage.log" => LogKind::StorageLog,
        "packaging.log" | "anaconda.packaging.log" | "anaconda.yum.log" => LogKind::PackagingLog,
        "dnf.log" | "dnf.rpm.log" | "hawkey.log" => LogKind::DnfLog,
        "dnf.librepo.log" => LogKind::DnfLibrepoLog,
        "syslog" | "anaconda.syslog" => LogKind::Syslog,
        "X.log" => LogKind::XorgLog,
        "journal.log" => LogKind::JournalShort,
        name if name.starts_with("Xorg.") && name.ends_with(".log") => LogKind::XorgLog,
        name if name.starts_with("ks-script-") && name.ends_with(".log") => LogKind::KsScriptLog,
        name if name.starts_with("anaconda-tb-") => LogKind::AnacondaTraceback,
        _ => return None,
    })
}

/// How every traceback finding is summarised, so that one crash seen in several
/// places of a dump is reported once.
pub fn traceback_summary(traceback: &Traceback) -> String {
    let exception = traceback.exception.as_deref().unwrap_or("(exception line missing)");
    match traceback.innermost() {
        Some(frame) => format!("installer traceback: {exception} (raised at {frame})"),
        None => format!("installer traceback: {exception}"),
    }
}

struct LineLog {
    kind: LogKind,
}

impl Analyzer for LineLog {
    fn kind(&self) -> LogKind {
        self.kind
    }

    fn sniff(&self, head: &[u8], file_name: &str) -> u8 {
        sniff_line_log(self.kind, head, file_name)
    }

    fn analyze(&self, input: &mut dyn BufRead, file: &Path) -> Result<Analysis, LogError> {
        let (tally, findings) = read_records(self.kind, input, file)?;
        Ok(tally.into_analysis(findings))
    }
}

/// anaconda's log port, as bootproof captures it (see [`stream`]).
struct StreamLog;

impl Analyzer for StreamLog {
    fn kind(&self) -> LogKind {
        LogKind::AnacondaStream
    }

    fn sniff(&self, head: &[u8], _file_name: &str) -> u8 {
        stream::sniff(head)
    }

    fn analyze(&self, input: &mut dyn BufRead, file: &Path) -> Result<Analysis, LogError> {
        crate::logs::live::analyze(&mut stream::Stream::new(file), input, file)
    }
}

struct CrashDump;

impl Analyzer for CrashDump {
    fn kind(&self) -> LogKind {
        LogKind::AnacondaTraceback
    }

    fn sniff(&self, head: &[u8], file_name: &str) -> u8 {
        let first = head_lines(head).next().unwrap_or_default();
        if first.starts_with(b"anaconda ") && first.ends_with(b" exception report") {
            100
        } else if name_kind(file_name) == Some(LogKind::AnacondaTraceback)
            && traceback::starts_traceback(head)
        {
            80
        } else {
            0
        }
    }

    fn analyze(&self, input: &mut dyn BufRead, file: &Path) -> Result<Analysis, LogError> {
        let dump = dump::parse(input, file)?;
        Ok(dump.tally.into_analysis(dump.findings))
    }
}

/// Lines of the head looked at when sniffing.
const SNIFF_LINES: usize = 400;

/// 0 unless enough of the head parses as this kind's entries; then 40–60 by how much
/// parses, +25 when the content is typical of this kind (see [`classify`]), +15 when
/// the file name agrees. 90+ therefore needs content and name, or unmistakable content.
fn sniff_line_log(kind: LogKind, head: &[u8], file_name: &str) -> u8 {
    let named = name_kind(file_name) == Some(kind);
    if !is_text(head) {
        return 0;
    }
    if kind == LogKind::KsScriptLog {
        // A script's output has no format of its own: only the name tells.
        return if named { 80 } else { 0 };
    }
    let Some(grammar) = grammar_for(kind) else {
        return 0;
    };
    let mut total = 0u32;
    let mut parsed = Vec::new();
    for line in head_lines(head).take(SNIFF_LINES).filter(|l| !l.is_empty()) {
        total += 1;
        if let Some(entry) = grammar(line) {
            parsed.push(entry);
        }
    }
    if total == 0 || parsed.len() * 10 < total as usize * 3 {
        return 0;
    }
    let rate = parsed.len() as u32 * 20 / total;
    let mut score = 40 + rate;
    if classify(kind, &parsed, head) == Some(kind) {
        score += 25;
    }
    if named {
        score += 15;
    }
    if kind == LogKind::JournalShort {
        // Any journalctl output parses, and the journal module, which knows units,
        // kernel and audit messages, owns journals: this analyzer only stands in for
        // it on the installer's journal.log, looking for anaconda's tracebacks.
        score = score.min(if named { 75 } else { 45 });
    }
    score.min(100) as u8
}

/// The logs that share anaconda's line grammar, in the order `classify` counts them.
const FAMILY: [LogKind; 6] = [
    LogKind::ProgramLog,
    LogKind::StorageLog,
    LogKind::PackagingLog,
    LogKind::DnfLibrepoLog,
    LogKind::Syslog,
    LogKind::AnacondaLog,
];

/// Which installer log a head of entries is, by who logs in it.
fn classify(kind: LogKind, entries: &[Entry<'_>], head: &[u8]) -> Option<LogKind> {
    match kind {
        LogKind::DnfLog | LogKind::JournalShort => return Some(kind),
        LogKind::XorgLog => {
            return memchr::memmem::find(head, b"X.Org X Server").map(|_| kind);
        }
        _ => {}
    }
    let mut counts = [0u32; FAMILY.len()];
    for member in entries.iter().filter_map(family_member) {
        if let Some(slot) = FAMILY.iter().position(|k| *k == member) {
            counts[slot] += 1;
        }
    }
    let [program, specific @ .., _] = counts;
    let n = entries.len() as u32;
    let specific = specific.into_iter().max().unwrap_or(0);
    // storage.log runs commands too: only a log of (nearly) nothing but commands is
    // program.log. RHEL 6 logs program output without a logger name, so there commands
    // are only the largest share.
    let nameless = entries.iter().filter(|e| e.source.is_empty()).count() as u32;
    let rhel6_program = nameless * 2 > n && program * 3 >= n && program > specific;
    if program * 10 >= n * 8 || rhel6_program {
        return Some(LogKind::ProgramLog);
    }
    // Ties go to anaconda.log, the log of everything else.
    (1..FAMILY.len())
        .max_by_key(|&slot| (counts[slot], FAMILY[slot] == LogKind::AnacondaLog))
        .map(|slot| FAMILY[slot])
}

/// The log an entry typically comes from; `None` when it says nothing (anaconda.log
/// always has times, so an untimed entry of an unknown logger is from storage.log or
/// packaging.log, but not which).
fn family_member(entry: &Entry<'_>) -> Option<LogKind> {
    let source = entry.source;
    let message = entry.message;
    let starts = |prefix: &[u8]| source.starts_with(prefix);
    Some(if source == b"program" || source == b"loader" || message.starts_with(b"Running... ") {
        LogKind::ProgramLog
    } else if source == b"blivet"
        || starts(b"anaconda.modules.storage")
        || STORAGE_HINTS.iter().any(|hint| memchr::memmem::find(message, hint).is_some())
    {
        LogKind::StorageLog
    } else if source == b"dnf"
        || source == b"packaging"
        || starts(b"yum")
        || starts(b"dnf.")
        || starts(b"anaconda.modules.payloads")
        || entry.time.is_some_and(|t| t.contains(&b'-'))
    {
        LogKind::PackagingLog
    } else if source == b"librepo" {
        LogKind::DnfLibrepoLog
    } else if entry.time.is_some()
        && (entry.level == Level::Notice || source == b"kernel" || starts(b"systemd"))
    {
        // Untimed kernel lines (`<6>…`) are any ring buffer dump, not anaconda's
        // rsyslog.
        LogKind::Syslog
    } else if entry.time.is_none() {
        return None;
    } else {
        LogKind::AnacondaLog
    })
}

/// RHEL 6 storage.log has no logger names; its messages name blivet's classes.
const STORAGE_HINTS: [&[u8]; 5] =
    [b"device format class", b"Device", b"DiskLabel", b"getFormat(", b".supported:"];
