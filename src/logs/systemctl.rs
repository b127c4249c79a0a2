//! `systemctl list-units` output (also `--failed`, `--all`, `--no-legend`).
//!
//! Owns: the table grammar: header, one line per unit (`UNIT LOAD ACTIVE SUB
//! DESCRIPTION`, optionally marked with `●` or `*`), and the legend and footer.
//! Must not: treat an inactive unit as a failure: only `failed` states are findings.

use std::io::BufRead;
use std::path::Path;

use nom::branch::alt;
use nom::bytes::complete::{tag, take_till1, take_while1};
use nom::character::complete::{digit1, space0, space1};
use nom::combinator::{opt, rest};
use nom::sequence::{preceded, terminated};
use nom::{IResult, Parser};

use super::lines::{self, LineReader, Tally};
use super::rules::Rules;
use super::{Analysis, Analyzer, LogError, LogKind};

pub fn analyzers() -> Vec<Box<dyn Analyzer>> {
    vec![Box::new(ListUnits)]
}

/// One unit of the table.
#[derive(Debug, PartialEq, Eq)]
pub struct UnitLine<'a> {
    pub unit: &'a [u8],
    pub load: &'a [u8],
    pub active: &'a [u8],
    pub sub: &'a [u8],
    pub description: &'a [u8],
}

impl UnitLine<'_> {
    pub fn failed(&self) -> bool {
        self.active == b"failed" || self.sub == b"failed"
    }
}

/// The failure mark systemd puts in front of a unit: `●` (UTF-8) or `*` without UTF-8.
fn mark(input: &[u8]) -> IResult<&[u8], &[u8]> {
    terminated(alt((tag("\u{25cf}".as_bytes()), tag("*"))), space1).parse(input)
}

fn word(input: &[u8]) -> IResult<&[u8], &[u8]> {
    take_till1(|b: u8| b == b' ' || b == b'\t').parse(input)
}

/// A state word such as `loaded`, `not-found`, `active`, `running`.
fn state(input: &[u8]) -> IResult<&[u8], &[u8]> {
    take_while1(|b: u8| b.is_ascii_lowercase() || b == b'-').parse(input)
}

/// A unit name has a type suffix: `smartd.service`, `tmp.mount`.
fn unit_name(input: &[u8]) -> IResult<&[u8], &[u8]> {
    let (rest, name) = word(input)?;
    if memchr::memchr(b'.', name).is_none() {
        return Err(nom::Err::Error(nom::error::Error::new(input, nom::error::ErrorKind::Verify)));
    }
    Ok((rest, name))
}

/// `[● ]UNIT LOAD ACTIVE SUB [DESCRIPTION]`.
pub fn unit_line(input: &[u8]) -> IResult<&[u8], UnitLine<'_>> {
    (
        preceded((space0, opt(mark)), unit_name),
        preceded(space1, state),
        preceded(space1, state),
        preceded(space1, state),
        preceded(space0, rest),
    )
        .map(|(unit, load, active, sub, description)| UnitLine { unit, load, active, sub, description })
        .parse(input)
}

/// `  UNIT   LOAD   ACTIVE SUB    DESCRIPTION`.
pub fn header_line(input: &[u8]) -> IResult<&[u8], &[u8]> {
    (space0, tag("UNIT"), space1, tag("LOAD"), space1, tag("ACTIVE"), space1, tag("SUB"), rest)
        .map(|_| input)
        .parse(input)
}

/// The legend under the table and its footer lines, and the empty lines between them.
fn legend_line(input: &[u8]) -> IResult<&[u8], &[u8]> {
    alt((
        preceded(alt((tag("LOAD "), tag("ACTIVE "), tag("SUB "))), preceded(space0, tag("="))),
        preceded((alt((digit1, tag("xxx"))), tag(" loaded units listed")), rest),
        tag("To show all installed unit files use"),
        preceded(space0, tag("0 loaded units listed")),
    ))
    .parse(input)
}

/// `systemctl list-units`.
struct ListUnits;

impl ListUnits {
    fn run(&self, input: &mut dyn BufRead, file: &Path) -> Result<(Tally, Rules), LogError> {
        let mut reader = LineReader::new(input);
        let mut rules = Rules::new(file);
        let mut tally = Tally::default();
        while let Some(line) = reader.next_line().map_err(|e| lines::io_error(file, e))? {
            let bytes = line.bytes;
            if line.oversize {
                tally.unparsed();
            } else if header_line(bytes).is_ok() {
                tally.record();
            } else if let Ok((_, unit)) = unit_line(bytes) {
                tally.record();
                if unit.failed() {
                    let states = format!(
                        "load {}, active {}, sub {}",
                        lines::text(unit.load),
                        lines::text(unit.active),
                        lines::text(unit.sub)
                    );
                    rules.failed_unit_listed(line.number, unit.unit, &states, bytes);
                }
            } else if bytes.trim_ascii().is_empty() || legend_line(bytes).is_ok() {
                tally.continuation();
            } else {
                tally.unparsed();
            }
        }
        Ok((tally, rules))
    }
}

impl Analyzer for ListUnits {
    fn kind(&self) -> LogKind {
        LogKind::SystemctlListUnits
    }

    fn sniff(&self, head: &[u8], _file_name: &str) -> u8 {
        if lines::head_lines(head).take(3).any(|l| header_line(l).is_ok()) {
            return 95;
        }
        let share = lines::share_of_lines(head, 3, |l| unit_line(l).is_ok() || legend_line(l).is_ok());
        if share >= 80 { 70 } else { 0 }
    }

    fn analyze(&self, input: &mut dyn BufRead, file: &Path) -> Result<Analysis, LogError> {
        let (tally, rules) = self.run(input, file)?;
        Ok(tally.into_analysis(rules.finish()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{Finding, FindingKind, fixture};

    /// `systemctl list-units --all` of systemd 252 and `--failed` without UTF-8,
    /// written here (see `tests/fixtures/logs/README.md`).
    const ALL: &[u8] = fixture!("systemctl/list-units.txt");
    const FAILED_ASCII: &[u8] = fixture!("systemctl/list-units-failed-ascii.txt");

    fn run(data: &[u8]) -> (Tally, Vec<Finding>) {
        let (tally, rules) = ListUnits.run(&mut &data[..], Path::new("list-units")).unwrap();
        (tally, rules.finish())
    }

    fn failed_units(findings: &[Finding]) -> Vec<(u64, &str)> {
        findings
            .iter()
            .filter(|f| f.kind == FindingKind::FailedUnit)
            .map(|f| (f.line, f.summary.as_str()))
            .collect()
    }

    #[test]
    fn only_failed_units_are_findings_and_the_legend_belongs_to_the_table() {
        let (tally, findings) = run(ALL);
        // The header and seven units; the empty line, the legend and the footer
        // continue the table.
        assert_eq!(tally, Tally { lines: 14, records: 8, continuation_lines: 6, unparsed_lines: 0 });
        // The not-found mount is marked too, but inactive is not failed.
        assert_eq!(
            failed_units(&findings),
            [(5, "unit sddm.service failed (load loaded, active failed, sub failed)")]
        );
        assert_eq!(findings[0].evidence.len(), 1);
        assert!(findings[0].evidence[0].starts_with("\u{25cf} sddm.service"));
    }

    #[test]
    fn ascii_marks_and_escaped_unit_names() {
        let (tally, findings) = run(FAILED_ASCII);
        assert_eq!(tally, Tally { lines: 8, records: 3, continuation_lines: 5, unparsed_lines: 0 });
        let units: Vec<_> = failed_units(&findings).into_iter().map(|(line, _)| line).collect();
        assert_eq!(units, [2, 3]);
        assert!(findings[1].summary.starts_with("unit systemd-cryptsetup@luks\\x2d5a1c9e2b.service failed"));
    }

    #[test]
    fn unit_fields_of_a_line() {
        let (_, u) =
            unit_line(b"  dev-vda1.device                       loaded    active   plugged /dev/vda1")
                .unwrap();
        assert_eq!(
            (u.unit, u.load, u.active, u.sub, u.description),
            (&b"dev-vda1.device"[..], &b"loaded"[..], &b"active"[..], &b"plugged"[..], &b"/dev/vda1"[..])
        );
        assert!(!u.failed());
        let (_, u) =
            unit_line("\u{25cf} smartd.service masked failed dead smartd.service".as_bytes()).unwrap();
        assert!(u.failed());
        assert_eq!(u.unit, b"smartd.service");
        // A word without a unit type is no unit.
        assert!(unit_line(b"  sshd loaded active running OpenSSH").is_err());
    }

    #[test]
    fn lines_that_are_not_the_table_are_unparsed_and_the_header_decides() {
        let (tally, _) =
            run(b"  UNIT LOAD ACTIVE SUB DESCRIPTION\nFailed to connect to bus: No such file or directory\n");
        assert_eq!((tally.records, tally.unparsed_lines), (1, 1));
        assert_eq!(ListUnits.sniff(ALL, "x"), 95);
        // `--no-legend` output has no header: judged by its lines.
        let no_legend = b"sddm.service loaded failed failed Simple Desktop Display Manager\nsshd.service loaded active running OpenSSH server daemon\ntmp.mount loaded active mounted Temporary Directory /tmp\n";
        assert_eq!(ListUnits.sniff(no_legend, "x"), 70);
        assert_eq!(ListUnits.sniff(fixture!("kernel/dmesg"), "x"), 0);
    }
}
