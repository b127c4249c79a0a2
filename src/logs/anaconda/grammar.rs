//! The line grammars of anaconda's logs, one nom function per production.
//!
//! Owns: recognising the first line of a record (an [`Entry`]) in every generation of
//! anaconda's logs and of the files it collects (dnf, Xorg, the journal). Must not:
//! allocate, decide what a line means for the user (that is `rules`), or accept a line
//! it does not fully understand: a line that is not an entry is a continuation.

use nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::{tag, take_while_m_n, take_while1},
    character::complete::{char, space0, space1},
    combinator::{map, map_opt, opt, recognize, rest, verify},
    sequence::{delimited, preceded, terminated},
};

/// Severity as the log wrote it, folded over the generations' spellings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
}

impl Level {
    /// Every spelling seen in anaconda (short and long names), yum (`INFO_2`), dnf
    /// (`DDEBUG`, `SUBDEBUG`), rsyslog severities and Python's logging. Names are
    /// compared as packed integers: this runs on every line of every log.
    fn from_name(name: &[u8]) -> Option<Level> {
        const DBG: u64 = pack(b"DBG");
        const DEBUG: u64 = pack(b"DEBUG");
        const DDEBUG: u64 = pack(b"DDEBUG");
        const SUBDEBUG: u64 = pack(b"SUBDEBUG");
        const TRACE: u64 = pack(b"TRACE");
        const INF: u64 = pack(b"INF");
        const INFO: u64 = pack(b"INFO");
        const INFO_1: u64 = pack(b"INFO_1");
        const INFO_2: u64 = pack(b"INFO_2");
        const NOTICE: u64 = pack(b"NOTICE");
        const WRN: u64 = pack(b"WRN");
        const WARN: u64 = pack(b"WARN");
        const WARNING: u64 = pack(b"WARNING");
        const ERR: u64 = pack(b"ERR");
        const ERROR: u64 = pack(b"ERROR");
        const CRT: u64 = pack(b"CRT");
        const CRIT: u64 = pack(b"CRIT");
        const CRITICAL: u64 = pack(b"CRITICAL");
        const ALERT: u64 = pack(b"ALERT");
        const EMERG: u64 = pack(b"EMERG");
        if name.len() > 8 {
            return None;
        }
        Some(match pack(name) {
            TRACE => Level::Trace,
            DBG | DEBUG | DDEBUG | SUBDEBUG => Level::Debug,
            INF | INFO | INFO_1 | INFO_2 => Level::Info,
            NOTICE => Level::Notice,
            WRN | WARN | WARNING => Level::Warning,
            ERR | ERROR => Level::Error,
            CRT | CRIT | CRITICAL | ALERT | EMERG => Level::Critical,
            _ => return None,
        })
    }
}

/// Up to 8 bytes as one big-endian integer (distinct for distinct upper-case names).
const fn pack(name: &[u8]) -> u64 {
    let mut packed = 0u64;
    let mut i = 0;
    while i < name.len() && i < 8 {
        packed = (packed << 8) | name[i] as u64;
        i += 1;
    }
    packed
}

/// The first line of a record. All fields borrow from the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// As written (`19:31:43,751`, `[2014-10-02 00:30:16,410]` without brackets, …).
    pub time: Option<&'a [u8]>,
    pub level: Level,
    /// Logger name, syslog tag or journal identifier; empty when the format has none.
    pub source: &'a [u8],
    pub message: &'a [u8],
}

pub(super) type Res<'a, T> = IResult<&'a [u8], T>;

fn digits(n: usize) -> impl Fn(&[u8]) -> Res<'_, &[u8]> {
    move |i| take_while_m_n(n, n, |b: u8| b.is_ascii_digit())(i)
}

/// `HH:MM:SS`
fn clock(i: &[u8]) -> Res<'_, &[u8]> {
    recognize((digits(2), char(':'), digits(2), char(':'), digits(2))).parse(i)
}

/// `,mmm` (Python logging) or `.uuuuuu` (short-precise, lvm).
fn fraction(i: &[u8]) -> Res<'_, &[u8]> {
    recognize((alt((char(','), char('.'))), take_while1(|b: u8| b.is_ascii_digit()))).parse(i)
}

/// `HH:MM:SS,mmm`, or `HH:MM:SS` in anaconda 11 (RHEL 5, Fedora 10).
pub(super) fn timestamp(i: &[u8]) -> Res<'_, &[u8]> {
    recognize((clock, opt(fraction))).parse(i)
}

/// `YYYY-MM-DD`
fn date(i: &[u8]) -> Res<'_, &[u8]> {
    recognize((digits(4), char('-'), digits(2), char('-'), digits(2))).parse(i)
}

fn level(i: &[u8]) -> Res<'_, Level> {
    map_opt(take_while1(|b: u8| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit()), Level::from_name)
        .parse(i)
}

/// A logger name or syslog tag: no blanks, no colon.
pub(super) fn logger(i: &[u8]) -> Res<'_, &[u8]> {
    take_while1(|b: u8| b != b':' && b != b' ' && b != b'\t').parse(i)
}

fn message(i: &[u8]) -> Res<'_, &[u8]> {
    rest(i)
}

/// RHEL 6 / Fedora 10: the level padded to 8 columns, then `: `; no logger.
fn padded_colon(i: &[u8]) -> Res<'_, &[u8]> {
    map(terminated(space0, (char(':'), opt(char(' ')))), |_| &i[..0]).parse(i)
}

/// RHEL 7+: ` logger: ` (anaconda) or ` tag:` (rsyslog writes no blank after the colon).
fn named_source(i: &[u8]) -> Res<'_, &[u8]> {
    delimited(char(' '), logger, (char(':'), opt(char(' ')))).parse(i)
}

/// `time LEVEL logger: message`, `time LEVEL   : message`, `time LEVEL tag:message`.
fn timed_entry(i: &[u8]) -> Res<'_, Entry<'_>> {
    map(
        (terminated(timestamp, char(' ')), level, alt((padded_colon, named_source)), message),
        |(time, level, source, message)| Entry { time: Some(time), level, source, message },
    )
    .parse(i)
}

/// Python's `logging.basicConfig` default, used by the DBus modules in RHEL 9 and
/// Fedora 43: `LEVEL:logger:message`, no time at all.
pub(super) fn python_entry(i: &[u8]) -> Res<'_, Entry<'_>> {
    map(
        (verify(level, |l| *l != Level::Trace), char(':'), logger, char(':'), message),
        |(level, _, source, _, message)| Entry { time: None, level, source, message },
    )
    .parse(i)
}

/// RHEL 6 `anaconda.yum.log`: `[YYYY-MM-DD HH:MM:SS,mmm] LEVEL   : message`.
fn yum_entry(i: &[u8]) -> Res<'_, Entry<'_>> {
    map(
        (
            delimited(char('['), recognize((date, char(' '), timestamp)), char(']')),
            preceded(char(' '), level),
            padded_colon,
            message,
        ),
        |(time, level, source, message)| Entry { time: Some(time), level, source, message },
    )
    .parse(i)
}

/// Any line of anaconda.log, program.log, storage.log, packaging.log, dnf.librepo.log,
/// ifcfg.log or syslog, of any generation.
pub fn anaconda_entry(line: &[u8]) -> Option<Entry<'_>> {
    alt((timed_entry, python_entry, yum_entry)).parse(line).ok().map(|(_, entry)| entry)
}

/// The loader of anaconda 13 (RHEL 6) writes its commands to program.log before Python
/// logging starts: `Running... /bin/mount …`, with no time and no level.
pub fn loader_entry(line: &[u8]) -> Option<Entry<'_>> {
    line.starts_with(b"Running... ").then_some(Entry {
        time: None,
        level: Level::Info,
        source: b"loader",
        message: line,
    })
}

/// Kernel ring buffer lines in the Fedora 10 `anaconda.syslog`: `<6>message`.
fn priority_entry(i: &[u8]) -> Res<'_, Entry<'_>> {
    map((delimited(char('<'), digits(1), char('>')), message), |(priority, message)| Entry {
        time: None,
        level: match priority[0] {
            b'0'..=b'2' => Level::Critical,
            b'3' => Level::Error,
            b'4' => Level::Warning,
            b'5' => Level::Notice,
            b'6' => Level::Info,
            _ => Level::Debug,
        },
        source: b"kernel",
        message,
    })
    .parse(i)
}

/// anaconda's rsyslog file (`syslog`), or the kernel-only `anaconda.syslog` of anaconda 11.
pub fn syslog_entry(line: &[u8]) -> Option<Entry<'_>> {
    alt((timed_entry, priority_entry)).parse(line).ok().map(|(_, entry)| entry)
}

/// `2026-04-19T07:35:01+0000`
fn iso_time(i: &[u8]) -> Res<'_, &[u8]> {
    recognize((
        date,
        char('T'),
        clock,
        alt((recognize((alt((char('+'), char('-'))), digits(4))), tag(&b"Z"[..]))),
    ))
    .parse(i)
}

/// dnf.log, dnf.rpm.log, hawkey.log: `ISO-TIME [pid] LEVEL message` (dnf 5 adds the pid).
pub fn dnf_entry(line: &[u8]) -> Option<Entry<'_>> {
    let pid = delimited(char('['), take_while1(|b: u8| b.is_ascii_digit()), tag(&b"] "[..]));
    map(
        (terminated(iso_time, char(' ')), opt(pid), terminated(level, space1), message),
        |(time, pid, level, message)| Entry {
            time: Some(time),
            level,
            source: pid.unwrap_or_default(),
            message,
        },
    )
    .parse(line)
    .ok()
    .map(|(_, entry)| entry)
}

/// `[   153.769] ` — seconds since the X server started.
fn xorg_uptime(i: &[u8]) -> Res<'_, &[u8]> {
    delimited((char('['), space0), recognize((take_while1(|b: u8| b.is_ascii_digit()), fraction)), char(']'))
        .parse(i)
}

/// `(EE)`, `(WW)`, `(II)`, `(==)`, …: the X server's message class.
fn xorg_marker(i: &[u8]) -> Res<'_, Level> {
    map(delimited(char('('), take_while_m_n(2, 2, |b: u8| b != b')'), tag(&b") "[..])), |m: &[u8]| match m {
        b"EE" => Level::Error,
        b"WW" => Level::Warning,
        _ => Level::Info,
    })
    .parse(i)
}

/// X.log / Xorg.N.log: `[    22.920] (WW) message`; lines without the uptime (the
/// banner) continue the previous entry.
pub fn xorg_entry(line: &[u8]) -> Option<Entry<'_>> {
    map((xorg_uptime, opt(char(' ')), opt(xorg_marker), message), |(time, _, marker, message)| Entry {
        time: Some(time),
        level: marker.unwrap_or(Level::Info),
        source: b"",
        message,
    })
    .parse(line)
    .ok()
    .map(|(_, entry)| entry)
}

/// `Jul 05 03:09:07` (short) or `Jul 05 03:09:07.123456` (short-precise).
fn journal_time(i: &[u8]) -> Res<'_, &[u8]> {
    recognize((
        take_while_m_n(3, 3, |b: u8| b.is_ascii_alphabetic()),
        char(' '),
        take_while_m_n(2, 2, |b: u8| b.is_ascii_digit() || b == b' '),
        char(' '),
        timestamp,
    ))
    .parse(i)
}

/// `-- Logs begin at … --`, `-- Reboot --`: journalctl's own lines.
fn journal_marker(i: &[u8]) -> Res<'_, Entry<'_>> {
    map(verify(preceded(tag(&b"-- "[..]), rest), |m: &[u8]| m.ends_with(b" --")), |message| Entry {
        time: None,
        level: Level::Info,
        source: b"journalctl",
        message,
    })
    .parse(i)
}

/// journal.log (`journalctl -b`, short format): `Mon DD HH:MM:SS host ident[pid]: message`.
fn journal_line(i: &[u8]) -> Res<'_, Entry<'_>> {
    map(
        (
            terminated(journal_time, char(' ')),
            terminated(logger, char(' ')),
            terminated(take_while1(|b: u8| b != b':' && b != b'\n'), (char(':'), opt(char(' ')))),
            message,
        ),
        |(time, _host, source, message)| Entry { time: Some(time), level: Level::Info, source, message },
    )
    .parse(i)
}

pub fn journal_entry(line: &[u8]) -> Option<Entry<'_>> {
    alt((journal_line, journal_marker)).parse(line).ok().map(|(_, entry)| entry)
}

/// A ks-script log is the script's raw output: every line stands alone.
pub fn script_entry(line: &[u8]) -> Option<Entry<'_>> {
    Some(Entry { time: None, level: Level::Info, source: b"", message: line })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(line: &str) -> (Option<&str>, Level, &str, &str) {
        let entry = anaconda_entry(line.as_bytes()).expect(line);
        let s = |b: &[u8]| std::str::from_utf8(b).unwrap().to_owned().leak() as &str;
        (entry.time.map(s), entry.level, s(entry.source), s(entry.message))
    }

    #[test]
    fn every_generation_of_anaconda_log() {
        assert_eq!(
            e("09:34:57,634 INF main: /usr/sbin/anaconda 43.44-3.fc43"),
            (Some("09:34:57,634"), Level::Info, "main", "/usr/sbin/anaconda 43.44-3.fc43")
        );
        assert_eq!(e("03:09:24,812 INFO anaconda: /sbin/anaconda 21.48.22.121-1").2, "anaconda");
        assert_eq!(
            e("18:55:13,530 WARNING : method= is deprecated."),
            (Some("18:55:13,530"), Level::Warning, "", "method= is deprecated.")
        );
        assert_eq!(
            e("11:10:18 INFO    : text mode forced from cmdline"),
            (Some("11:10:18"), Level::Info, "", "text mode forced from cmdline")
        );
        assert_eq!(
            e("ERROR:blivet:failed to load libfc: File exists"),
            (None, Level::Error, "blivet", "failed to load libfc: File exists")
        );
        assert_eq!(
            e("19:31:25,837 NOTICE kernel:Linux version 5.14.0"),
            (Some("19:31:25,837"), Level::Notice, "kernel", "Linux version 5.14.0")
        );
        assert_eq!(
            e("[2014-10-02 00:30:16,410] INFO_2  : Loaded plugins: blacklist").0,
            Some("2014-10-02 00:30:16,410")
        );
    }

    #[test]
    fn continuations_are_not_entries() {
        for line in ["  warnings.warn(", "", "Create FAT filesystem in TARGET", "ERROR: no"] {
            assert_eq!(anaconda_entry(line.as_bytes()), None, "{line:?}");
        }
    }

    #[test]
    fn other_collected_files() {
        let dnf = dnf_entry(b"2026-04-19T07:35:12+0000 [37] ERROR Argument 'x' matches").unwrap();
        assert_eq!((dnf.level, dnf.source), (Level::Error, &b"37"[..]));
        let x = xorg_entry(b"[   154.952] (EE) PreInit returned 8").unwrap();
        assert_eq!((x.level, x.message), (Level::Error, &b"PreInit returned 8"[..]));
        let j = journal_entry(b"Jul 05 03:13:10 host anaconda[1146]: nm-c-e exited").unwrap();
        assert_eq!((j.source, j.message), (&b"anaconda[1146]"[..], &b"nm-c-e exited"[..]));
        assert!(journal_entry(b"-- Logs begin at Sun 2020-07-05 03:09:07 UTC, end at x. --").is_some());
    }
}
