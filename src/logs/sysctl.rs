//! `sysctl -a` output: a `key = value` line per kernel parameter.
//!
//! Owns: the typed list of settings ([`parse`]) that scenario checks compare, and the
//! analyzer that recognises the output. Must not: read `/proc/sys` itself or judge the
//! values (a check does).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::{tag, take_while1},
    combinator::{eof, map, rest},
    sequence::{preceded, terminated},
};

pub use super::lines::ParseError;
use super::lines::{LineClass, each_line, head_lines, is_text, tally_stream};
use super::{Analysis, Analyzer, LogError, LogKind};

/// One `key = value` line. Multi-line values (`dev.cdrom.info`) repeat the key once per
/// line, so a key may occur several times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    pub key: String,
    pub value: String,
    pub line: u64,
}

/// `kernel.kptr_restrict`, `net.ipv4.conf.eth0/1.rp_filter`: no blanks, not empty.
fn key(i: &[u8]) -> IResult<&[u8], &[u8]> {
    take_while1(|b: u8| b.is_ascii_graphic() && b != b'=').parse(i)
}

/// ` = ` before a value, or a bare ` =` when the value is empty.
fn separator(i: &[u8]) -> IResult<&[u8], &[u8]> {
    alt((tag(&b" = "[..]), terminated(tag(&b" ="[..]), eof))).parse(i)
}

fn value(i: &[u8]) -> IResult<&[u8], &[u8]> {
    rest(i)
}

fn setting(i: &[u8]) -> IResult<&[u8], (&[u8], &[u8])> {
    (terminated(key, separator), value).parse(i)
}

/// `sysctl: permission denied on key …` / `sysctl: unable to open directory …`: the
/// tool's own stderr, merged into the capture.
fn diagnostic(i: &[u8]) -> IResult<&[u8], &[u8]> {
    preceded(tag(&b"sysctl: "[..]), rest).parse(i)
}

enum Line<'a> {
    Setting(&'a [u8], &'a [u8]),
    Diagnostic,
}

fn line(i: &[u8]) -> Option<Line<'_>> {
    alt((map(setting, |(k, v)| Line::Setting(k, v)), map(diagnostic, |_| Line::Diagnostic)))
        .parse(i)
        .ok()
        .map(|(_, line)| line)
}

/// Every setting, in order; `sysctl:` diagnostics are skipped, anything else is an error.
pub fn parse(input: &[u8]) -> Result<Vec<Sysctl>, ParseError> {
    let mut settings = Vec::new();
    each_line(input, |number, text| match line(text) {
        Some(Line::Setting(key, value)) => {
            settings.push(Sysctl {
                key: String::from_utf8_lossy(key).into_owned(),
                value: String::from_utf8_lossy(value).into_owned(),
                line: number,
            });
            Ok(())
        }
        Some(Line::Diagnostic) => Ok(()),
        None => Err(ParseError::malformed(number, "not a `key = value` line")),
    })?;
    Ok(settings)
}

/// Settings by key, as `sysctl -n key` would print them: the lines of a multi-line
/// value (`dev.cdrom.info`) joined with newlines.
pub fn by_key(settings: &[Sysctl]) -> BTreeMap<&str, String> {
    let mut map: BTreeMap<&str, String> = BTreeMap::new();
    for setting in settings {
        map.entry(setting.key.as_str())
            .and_modify(|value| {
                value.push('\n');
                value.push_str(&setting.value);
            })
            .or_insert_with(|| setting.value.clone());
    }
    map
}

pub fn analyzers() -> Vec<Box<dyn Analyzer>> {
    vec![Box::new(SysctlAnalyzer)]
}

struct SysctlAnalyzer;

impl Analyzer for SysctlAnalyzer {
    fn kind(&self) -> LogKind {
        LogKind::Sysctl
    }

    /// Dotted keys on (nearly) every line are unmistakable: 95. Few lines: by share.
    fn sniff(&self, head: &[u8], file_name: &str) -> u8 {
        if !is_text(head) {
            return 0;
        }
        let (mut total, mut dotted) = (0u32, 0u32);
        for text in head_lines(head).take(400).filter(|l| !l.is_empty()) {
            total += 1;
            if let Some(Line::Setting(key, _)) = line(text) {
                dotted += u32::from(key.contains(&b'.'));
            }
        }
        let named = file_name.contains("sysctl");
        match (total, dotted * 100 / total.max(1)) {
            (0, _) => 0,
            (5.., 90..) => 95,
            (_, share) if share >= 60 => 60 + 20 * u8::from(named),
            _ => 0,
        }
    }

    fn analyze(&self, input: &mut dyn BufRead, file: &Path) -> Result<Analysis, LogError> {
        let tally = tally_stream(input, file, |text| match line(text) {
            Some(_) => LineClass::Record,
            None => LineClass::Unparsed,
        })?;
        Ok(tally.into_analysis(Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::anaconda::corpus;

    const RHCOS: &str = "sysctl/rhcos-sosreport-sysctl_-a";

    #[test]
    fn real_sysctl_output_values_and_lines() {
        let data = corpus::read(RHCOS);
        let settings = parse(&data).unwrap();
        let get = |key: &str| settings.iter().find(|s| s.key == key).unwrap();
        assert_eq!((get("abi.vsyscall32").value.as_str(), get("abi.vsyscall32").line), ("1", 1));
        assert_eq!(get("fs.dentry-state").value, "101373\t80467\t45\t0\t0\t0");
        assert_eq!(get("net.ipv4.route.error_burst").value, "5000");
        // The multi-line dev.cdrom.info keeps one entry per line, empty ones included.
        let cdrom: Vec<_> = settings.iter().filter(|s| s.key == "dev.cdrom.info").collect();
        assert_eq!(cdrom[0].value, "CD-ROM information, Id: cdrom.c 3.20 2003/12/17");
        assert_eq!(cdrom[1].value, "");
        assert_eq!(cdrom[2].value, "drive name:\t\tsr0");
        let map = by_key(&settings);
        assert_eq!(map["kernel.pid_max"], get("kernel.pid_max").value);
        assert!(
            map["dev.cdrom.info"]
                .starts_with("CD-ROM information, Id: cdrom.c 3.20 2003/12/17\n\ndrive name:")
        );
        assert_eq!(map["dev.cdrom.info"].split('\n').count(), cdrom.len());
        // Every line but the one `sysctl:` diagnostic is a setting.
        let lines = data.iter().filter(|b| **b == b'\n').count();
        assert_eq!(settings.len(), lines - 1);
    }

    #[test]
    fn analyzer_detects_and_accounts_for_every_line() {
        let data = corpus::read(RHCOS);
        let analyzer = SysctlAnalyzer;
        assert_eq!(analyzer.sniff(&data[..data.len().min(65536)], "x"), 95);
        let analysis = analyzer.analyze(&mut &data[..], Path::new(RHCOS)).unwrap();
        let lines = data.iter().filter(|b| **b == b'\n').count() as u64;
        assert_eq!((analysis.lines, analysis.records, analysis.unparsed_lines), (lines, lines, 0));
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse(b"a.b = 1\nnonsense\n").unwrap_err();
        assert_eq!(err, ParseError::malformed(2, "not a `key = value` line"));
        assert_eq!(err.to_string(), "line 2: not a `key = value` line");
    }
}
