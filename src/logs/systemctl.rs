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
    use crate::logs::FindingKind;
    use crate::logs::lines::testing::{corpus_file, count_lines};
    use std::io::BufReader;

    fn run(name: &str) -> (Tally, Vec<crate::logs::Finding>) {
        let path = corpus_file(name);
        let mut reader = BufReader::new(std::fs::File::open(&path).unwrap());
        let (tally, rules) = ListUnits.run(&mut reader, &path).unwrap();
        assert_eq!(tally.lines, count_lines(&path), "{name}");
        assert!(
            (tally.records + tally.continuation_lines + tally.unparsed_lines == tally.lines),
            "{name}: {tally:?}"
        );
        assert_eq!(tally.unparsed_lines, 0, "{name}");
        (tally, rules.finish())
    }

    fn failed_units(findings: &[crate::logs::Finding]) -> Vec<(u64, String)> {
        findings
            .iter()
            .filter(|f| f.kind == FindingKind::FailedUnit)
            .map(|f| (f.line, f.summary.clone()))
            .collect()
    }

    #[test]
    fn masked_failed_unit() {
        let (tally, findings) = run("systemctl/check_systemd-systemctl-list-units_failed.txt");
        assert_eq!(tally.records, 4);
        assert_eq!(
            failed_units(&findings),
            vec![(4, "unit smartd.service failed (load masked, active failed, sub dead)".to_string())]
        );
    }

    #[test]
    fn two_failed_units() {
        let (_, findings) = run("systemctl/check_systemd-systemctl-list-units_multiple-failure.txt");
        let units: Vec<u64> = failed_units(&findings).iter().map(|(l, _)| *l).collect();
        assert_eq!(units, vec![2, 4]);
    }

    /// Units counted independently of the parser: lines whose second word (after the
    /// `●` mark) is a load state.
    fn units_in(name: &str) -> usize {
        let text = std::fs::read_to_string(corpus_file(name)).unwrap();
        text.lines()
            .filter(|l| {
                let load = l.trim_start_matches('\u{25cf}').split_whitespace().nth(1);
                ["loaded", "not-found", "masked"].contains(&load.unwrap_or_default())
                    && !l.contains("units listed")
            })
            .count()
    }

    #[test]
    fn healthy_list_has_no_finding() {
        let name = "systemctl/check_systemd-systemctl-list-units_ok.txt";
        let (tally, findings) = run(name);
        assert!(findings.is_empty());
        assert_eq!(tally.records as usize, units_in(name) + 1);
    }

    #[test]
    fn marked_failed_unit_of_systemd_246() {
        let name = "systemctl/check_systemd-systemctl-list-units_v246.txt";
        let (tally, findings) = run(name);
        assert_eq!(tally.records as usize, units_in(name) + 1);
        assert_eq!(
            failed_units(&findings),
            vec![(
                205,
                "unit nm-wait-online.service failed (load loaded, active failed, sub failed)".to_string()
            )]
        );
    }

    #[test]
    fn unit_fields_of_a_real_line() {
        let (_, u) = unit_line(b"  dev-block-254:0.device                                                                                         loaded    active   plugged   /dev/block/254:0").unwrap();
        assert_eq!(
            (u.unit, u.load, u.active, u.sub),
            (&b"dev-block-254:0.device"[..], &b"loaded"[..], &b"active"[..], &b"plugged"[..])
        );
        assert_eq!(u.description, b"/dev/block/254:0");
        let (_, u) = unit_line("\u{25cf} smartd.service loaded failed failed S.M.A.R.T.".as_bytes()).unwrap();
        assert!(u.failed());
        assert_eq!(u.unit, b"smartd.service");
    }
}
