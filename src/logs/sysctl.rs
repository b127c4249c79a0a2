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

    /// `sysctl -a` of procps-ng 4, written here (see `tests/fixtures/logs/README.md`).
    const SYSCTL_A: &[u8] = crate::logs::fixture!("sysctl/sysctl-a.txt");

    #[test]
    fn settings_values_and_lines() {
        let settings = parse(SYSCTL_A).unwrap();
        let get = |key: &str| settings.iter().find(|s| s.key == key).unwrap();
        assert_eq!((get("abi.vsyscall32").value.as_str(), get("abi.vsyscall32").line), ("1", 1));
        assert_eq!(get("fs.file-nr").value, "1184\t0\t9223372036854775807");
        assert_eq!(get("kernel.domainname").value, "(none)");
        // A key may hold a slash (an interface named eth0.1).
        assert_eq!(get("net.ipv4.conf.eth0/1.rp_filter").value, "2");
        // The diagnostic is no setting, and the lines after it keep their numbers.
        assert_eq!(get("kernel.yama.ptrace_scope").line, 15);
        assert_eq!(settings.len(), 17);
        // The multi-line dev.cdrom.info keeps one entry per line, the empty one included.
        let cdrom: Vec<_> =
            settings.iter().filter(|s| s.key == "dev.cdrom.info").map(|s| s.value.as_str()).collect();
        assert_eq!(
            cdrom,
            [
                "CD-ROM information, Id: cdrom.c 3.20 2003/12/17",
                "",
                "drive name:\t\tsr0",
                "drive speed:\t\t4"
            ]
        );
        let map = by_key(&settings);
        assert_eq!(
            map["dev.cdrom.info"],
            "CD-ROM information, Id: cdrom.c 3.20 2003/12/17\n\ndrive name:\t\tsr0\ndrive speed:\t\t4"
        );
        assert_eq!((map["kernel.kptr_restrict"].as_str(), map["kernel.dmesg_restrict"].as_str()), ("2", "1"));
        assert_eq!(map.len(), 14);
    }

    #[test]
    fn analyzer_detects_and_accounts_for_every_line() {
        let analyzer = SysctlAnalyzer;
        assert_eq!(analyzer.sniff(SYSCTL_A, "x"), 95);
        let analysis = analyzer.analyze(&mut &SYSCTL_A[..], Path::new("sysctl")).unwrap();
        assert_eq!((analysis.lines, analysis.records, analysis.unparsed_lines), (18, 18, 0));
        // A few settings, under the tool's name, are still sysctl output.
        let few = b"kernel.kptr_restrict = 2\nkernel.dmesg_restrict = 1\n";
        assert_eq!((analyzer.sniff(few, "sysctl.txt"), analyzer.sniff(few, "x")), (80, 60));
        assert_eq!(analyzer.sniff(crate::logs::fixture!("kernel/dmesg"), "x"), 0);
    }

    #[test]
    fn an_empty_value_and_errors_that_name_the_line() {
        let settings = parse(b"kernel.core_pattern = core\nkernel.domainname =\n").unwrap();
        assert_eq!(settings[1].value, "");
        let err = parse(b"a.b = 1\nnonsense\n").unwrap_err();
        assert_eq!(err, ParseError::malformed(2, "not a `key = value` line"));
        assert_eq!(err.to_string(), "line 2: not a `key = value` line");
        // No blank around `=` is not what sysctl prints.
        assert_eq!(parse(b"a.b=1\n").unwrap_err().line(), 1);
    }
}
