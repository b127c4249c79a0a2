//! SDDM's own log (`sddm.log`, `sddm --test-mode` output).
//!
//! Owns: the line grammar `[HH:MM:SS.mmm] (II|WW|EE) COMPONENT: message`.
//! Must not: decide which messages are failures (that is `rules`, shared with SDDM
//! messages in the journal).

use std::io::BufRead;
use std::path::Path;

use nom::bytes::complete::{tag, take_till1, take_while1};
use nom::character::complete::char;
use nom::combinator::rest;
use nom::sequence::{delimited, preceded, terminated};
use nom::{IResult, Parser};

use super::lines::{self, LineReader, Tally};
use super::rules::{Rules, Time};
use super::{Analysis, Analyzer, LogError, LogKind};

pub fn analyzers() -> Vec<Box<dyn Analyzer>> {
    vec![Box::new(SddmLog)]
}

/// One sddm.log line.
#[derive(Debug, PartialEq, Eq)]
pub struct SddmLine<'a> {
    pub time: &'a [u8],
    /// `II`, `WW` or `EE`.
    pub level: &'a [u8],
    /// `DAEMON`, `HELPER`, `GREETER`.
    pub component: &'a [u8],
    pub message: &'a [u8],
}

/// `[22:49:02.480]`.
fn time(input: &[u8]) -> IResult<&[u8], &[u8]> {
    delimited(char('['), take_till1(|b| b == b']'), char(']')).parse(input)
}

/// `(EE)`.
fn level(input: &[u8]) -> IResult<&[u8], &[u8]> {
    delimited(char('('), take_while1(|b: u8| b.is_ascii_uppercase()), char(')')).parse(input)
}

fn component(input: &[u8]) -> IResult<&[u8], &[u8]> {
    terminated(take_while1(|b: u8| b.is_ascii_uppercase()), char(':')).parse(input)
}

/// `[time] (LEVEL) COMPONENT: message`.
pub fn sddm_line(input: &[u8]) -> IResult<&[u8], SddmLine<'_>> {
    (time, preceded(char(' '), level), preceded(char(' '), component), preceded(tag(" "), rest))
        .map(|(time, level, component, message)| SddmLine { time, level, component, message })
        .parse(input)
}

/// `sddm.log`.
struct SddmLog;

impl SddmLog {
    fn run(&self, input: &mut dyn BufRead, file: &Path) -> Result<(Tally, Rules), LogError> {
        let mut reader = LineReader::new(input);
        let mut rules = Rules::new(file);
        let mut tally = Tally::default();
        while let Some(line) = reader.next_line().map_err(|e| lines::io_error(file, e))? {
            match sddm_line(line.bytes) {
                Ok((_, parsed)) if !line.oversize => {
                    tally.record();
                    let is_error = parsed.level == b"EE";
                    let time = Time::Text(parsed.time);
                    rules.sddm(line.number, time, parsed.message, line.bytes, is_error);
                }
                _ => tally.unparsed(),
            }
        }
        Ok((tally, rules))
    }
}

impl Analyzer for SddmLog {
    fn kind(&self) -> LogKind {
        LogKind::SddmLog
    }

    fn sniff(&self, head: &[u8], _file_name: &str) -> u8 {
        lines::share_of_lines(head, 1, |l| sddm_line(l).is_ok()).min(90)
    }

    fn analyze(&self, input: &mut dyn BufRead, file: &Path) -> Result<Analysis, LogError> {
        let (tally, rules) = self.run(input, file)?;
        Ok(tally.into_analysis(rules.finish()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::FindingKind;
    use std::io::Cursor;

    /// No sddm.log is committed anywhere public: the failure line is the one the corpus
    /// README quotes from pastes in sddm/sddm issues, the others are written in the same
    /// format for this test. The journal forms of SDDM failures are tested on the corpus
    /// in `journal::tests`.
    const PASTED: &str = "[22:49:02.479] (II) DAEMON: Display server starting...\n\
        [22:49:02.480] (EE) DAEMON: Could not start Display server on vt 1\n\
        [22:49:03.101] (WW) GREETER: Theme file not found\n\
        this line is not sddm's\n";

    #[test]
    fn display_server_failure_in_sddm_log() {
        let (_, l) =
            sddm_line(b"[22:49:02.480] (EE) DAEMON: Could not start Display server on vt 1").unwrap();
        assert_eq!((l.time, l.level, l.component), (&b"22:49:02.480"[..], &b"EE"[..], &b"DAEMON"[..]));
        assert_eq!(l.message, b"Could not start Display server on vt 1");

        let mut input = Cursor::new(PASTED.as_bytes());
        let analysis = SddmLog.analyze(&mut input, Path::new("sddm.log")).unwrap();
        assert_eq!((analysis.records, analysis.unparsed_lines, analysis.lines), (3, 1, 4));
        assert_eq!(analysis.findings.len(), 1);
        let finding = &analysis.findings[0];
        assert_eq!(finding.kind, FindingKind::DisplayManagerFailure);
        assert_eq!(finding.line, 2);
        assert_eq!(finding.time.as_deref(), Some("22:49:02.480"));
        assert_eq!(analysis.continuation_lines, 0);
    }

    #[test]
    fn every_error_level_line_is_a_finding_and_known_ones_say_what_failed() {
        // SDDM's own log, written here (see `tests/fixtures/logs/README.md`).
        let log = crate::logs::fixture!("sddm/sddm.log");
        let analysis = SddmLog.analyze(&mut &log[..], Path::new("sddm.log")).unwrap();
        assert_eq!((analysis.records, analysis.unparsed_lines, analysis.lines), (8, 0, 8));
        let found: Vec<_> =
            analysis.findings.iter().map(|f| (f.severity, f.line, f.summary.as_str())).collect();
        use crate::logs::Severity::{Error, Warning};
        assert_eq!(
            found,
            [
                (Error, 6, "SDDM: Could not start Display server on vt 1"),
                // No rule knows it, but SDDM logged it at its error level.
                (Warning, 8, "SDDM: Failed to open the session log"),
            ]
        );
        assert!(analysis.findings.iter().all(|f| f.kind == FindingKind::DisplayManagerFailure));
        assert_eq!(SddmLog.sniff(log, "sddm.log"), 90);
    }

    #[test]
    fn sniffs_sddm_log_and_not_the_journal() {
        assert!(SddmLog.sniff(PASTED.as_bytes(), "sddm.log") >= 70);
        let journal =
            b"Mar 13 15:36:56.399187 raspberrypi4 sddm[245]: Display server failed to start. Exiting\n";
        assert_eq!(SddmLog.sniff(journal, "x"), 0);
    }
}
