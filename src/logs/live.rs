//! Logs read line by line as they arrive: an installer's log port, read while the
//! installer runs, so that a run can end on its first error instead of its timeout.
//!
//! Owns: the [`LineAnalyzer`] contract (one line in, the findings it made certain out),
//! which kinds have one ([`line_analyzer`]), the batch reading of a whole file through
//! one ([`analyze`]), and bootproof's host stamp in front of a captured line
//! ([`strip_host_stamp`]). Must not: read ports or files itself (the runner feeds it
//! from `vm::logport`), or judge lines (each kind's module does).
//!
//! # When a finding fires
//!
//! A line analyzer returns a finding from [`LineAnalyzer::line`] as soon as no later line
//! can change it, and never changes it afterwards. Most findings are one line and fire
//! with it. Those that span lines fire at the line that completes them, and each kind
//! says which (a Python traceback at its exception line, a kernel report at its end
//! marker, a failed installer step at the menu's verdict). [`LineAnalyzer::finish`]
//! returns what was still open when the stream ended.
//!
//! A file's batch analysis is the same analyzer fed every line, so `inspect` and a live
//! run report the same findings, in the order they fired.
//!
//! ```
//! use std::path::Path;
//! use bootproof::logs::{FindingKind, LogKind, Severity, live};
//!
//! // A runner makes one per log port and hands it each line as it arrives.
//! let mut syslog = live::line_analyzer(LogKind::DiSyslog, Path::new("installer/syslog")).unwrap();
//! let step = b"Nov 30 06:02:28 main-menu[241]: WARNING **: Configuring 'bootstrap-base' failed with error code 1";
//! let verdict = b"[    18.112] Nov 30 06:02:28 main-menu[241]: WARNING **: Menu item 'bootstrap-base' failed.";
//! assert!(syslog.line(15, step).is_empty());
//! let fired = syslog.line(16, verdict);
//! assert_eq!((fired[0].kind, fired[0].severity, fired[0].line), (FindingKind::InstallerError, Severity::Error, 15));
//! assert!(syslog.finish().is_empty());
//! ```

use std::io::BufRead;
use std::path::Path;

use nom::character::complete::{char, digit1, space0};
use nom::combinator::recognize;
use nom::sequence::delimited;
use nom::{IResult, Parser};

use super::lines::{LineReader, Tally, io_error};
use super::{Analysis, Finding, LogError, LogKind};

/// Reads one log a line at a time and says, line by line, what it found.
pub trait LineAnalyzer: Send {
    fn kind(&self) -> LogKind;

    /// One line (1-based `number`, without its `\n`), with or without bootproof's host
    /// stamp in front. Returns the findings this line made certain.
    fn line(&mut self, number: u64, text: &[u8]) -> Vec<Finding>;

    /// A line too long to be read whole ([`lines::MAX_LINE`](super::lines::MAX_LINE)): it
    /// is not understood, and it ends whatever record was open.
    fn skip(&mut self, number: u64) -> Vec<Finding>;

    /// The end of the stream: the findings still open. Call it once, last.
    fn finish(&mut self) -> Vec<Finding>;

    /// How the lines so far were accounted for (see
    /// [the accounting rule](super::lines#the-accounting-rule)).
    fn tally(&self) -> Tally;
}

/// The line analyzer of a kind that has one; its findings name `file`.
pub fn line_analyzer(kind: LogKind, file: &Path) -> Option<Box<dyn LineAnalyzer>> {
    match kind {
        LogKind::DiSyslog => Some(Box::new(super::debian_installer::Syslog::new(file))),
        LogKind::AnacondaStream => Some(Box::new(super::anaconda::stream::Stream::new(file))),
        _ => None,
    }
}

/// Every line of `input` through `analyzer`, then its end: the batch form of a live
/// analysis, with the findings in the order they fired.
pub fn analyze(
    analyzer: &mut dyn LineAnalyzer,
    input: &mut dyn BufRead,
    file: &Path,
) -> Result<Analysis, LogError> {
    let mut findings = Vec::new();
    let mut lines = LineReader::new(input);
    while let Some(line) = lines.next_line().map_err(|e| io_error(file, e))? {
        let found =
            if line.oversize { analyzer.skip(line.number) } else { analyzer.line(line.number, line.bytes) };
        findings.extend(found);
    }
    findings.extend(analyzer.finish());
    Ok(analyzer.tally().into_analysis(findings))
}

/// `[    12.345]`: the host's seconds since QEMU started, as `vm::logport` and the
/// console log write them.
fn host_seconds(input: &[u8]) -> IResult<&[u8], &[u8]> {
    let number = recognize((digit1, char('.'), digit1));
    delimited((char('['), space0), number, char(']')).parse(input)
}

/// The line without bootproof's host stamp (`[    12.345] `), and the stamp's seconds
/// when it had one. The guest's own line follows the stamp unchanged.
pub fn strip_host_stamp(line: &[u8]) -> (Option<&[u8]>, &[u8]) {
    match (host_seconds, char(' ')).parse(line) {
        Ok((rest, (seconds, _))) => (Some(seconds), rest),
        Err(_) => (None, line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_stamp_goes_and_the_guest_line_stays() {
        let (stamp, rest) = strip_host_stamp(b"[    12.345] Nov 30 05:27:13 main-menu[238]: INFO: x");
        assert_eq!(stamp, Some(&b"12.345"[..]));
        assert_eq!(rest, b"Nov 30 05:27:13 main-menu[238]: INFO: x");
        let (stamp, rest) = strip_host_stamp(b"[1234567.890] 12:00:01,002 INFO anaconda:x");
        assert_eq!((stamp, rest), (Some(&b"1234567.890"[..]), &b"12:00:01,002 INFO anaconda:x"[..]));
        // Only bootproof's form: a bracket without the blank after it is the guest's.
        for line in [&b"Nov 30 05:27:13 kernel: [ 3.4] x"[..], b"[12.5]x", b"[ 12] x", b""] {
            assert_eq!(strip_host_stamp(line), (None, line));
        }
    }

    #[test]
    fn only_the_installer_streams_have_line_analyzers() {
        let file = Path::new("x");
        assert!(line_analyzer(LogKind::DiSyslog, file).is_some());
        assert!(line_analyzer(LogKind::AnacondaStream, file).is_some());
        assert!(line_analyzer(LogKind::AnacondaLog, file).is_none());
    }
}
