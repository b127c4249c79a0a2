//! Linux audit records (`/var/log/audit/audit.log`) and the AVC grammar shared with the
//! journal and kernel logs, where the same denial appears as `type=1400 audit(...)`.
//!
//! Owns: the audit line grammar and the AVC (`avc:  denied { ... } for ...`) grammar.
//! Must not: decide what is a finding; that is `rules`.

use std::io::BufRead;
use std::path::Path;

use nom::bytes::complete::{tag, take_till, take_till1, take_while1};
use nom::character::complete::{char, digit1, space0, space1};
use nom::combinator::{opt, recognize};
use nom::multi::{many0, separated_list1};
use nom::sequence::{delimited, preceded, separated_pair, terminated};
use nom::{IResult, Parser};

use super::lines::{self, LineReader, Tally};
use super::rules::{Rules, Time};
use super::{Analysis, Analyzer, LogError, LogKind};

pub fn analyzers() -> Vec<Box<dyn Analyzer>> {
    vec![Box::new(AuditLog)]
}

/// When and which event: `audit(1550015492.576:237)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditStamp<'a> {
    pub time: &'a [u8],
    pub serial: &'a [u8],
}

impl AuditStamp<'_> {
    /// The event this stamp names.
    pub fn event(&self) -> Option<EventId> {
        let (seconds, fraction) = match memchr::memchr(b'.', self.time) {
            Some(dot) => (&self.time[..dot], &self.time[dot + 1..]),
            None => (self.time, &b""[..]),
        };
        // The kernel writes milliseconds; scale whatever is there to them.
        let millis = fraction.iter().chain(b"000").take(3).try_fold(0, |n, d| Some(n * 10 + digit(*d)?))?;
        Some(EventId {
            millis: decimal(seconds)?.checked_mul(1000)?.checked_add(millis)?,
            serial: decimal(self.serial)?,
        })
    }
}

/// One audit event: the kernel stamps each with its time in milliseconds and a serial
/// number. Every record of the event carries it, in every log the record reaches: the
/// same denial read from `audit.log`, the kernel log and the journal's audit transport
/// (which keeps it as `_AUDIT_ID` and `_SOURCE_REALTIME_TIMESTAMP`) is one event. The
/// serial restarts at each boot; the time tells boots apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    pub millis: u64,
    pub serial: u64,
}

impl EventId {
    /// The event of a journal entry of the audit transport, from its `_AUDIT_ID` and
    /// `_SOURCE_REALTIME_TIMESTAMP` (microseconds; journald writes the stamp's time).
    pub fn from_journal(audit_id: &[u8], source_realtime_us: &[u8]) -> Option<EventId> {
        Some(EventId { millis: decimal(source_realtime_us)? / 1000, serial: decimal(audit_id)? })
    }
}

fn digit(b: u8) -> Option<u64> {
    b.is_ascii_digit().then(|| u64::from(b - b'0'))
}

/// A decimal `u64`, as audit stamps and the journal write numbers.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(digit(*d)?))
}

/// One audit line: `[node=N ]type=T msg=audit(S:N): body`.
#[derive(Debug, PartialEq, Eq)]
pub struct AuditRecord<'a> {
    pub record_type: &'a [u8],
    pub stamp: AuditStamp<'a>,
    pub body: &'a [u8],
}

/// One AVC decision, with its `key=value` fields in order.
#[derive(Debug, PartialEq, Eq)]
pub struct Avc<'a> {
    /// The decision as written, from `avc:` to the end of the line: the same text in
    /// `audit.log`, the kernel log and the journal.
    pub text: &'a [u8],
    pub stamp: Option<AuditStamp<'a>>,
    pub denied: bool,
    pub permissions: Vec<&'a [u8]>,
    pub fields: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> Avc<'a> {
    /// The value of `name`, without its quotes.
    pub fn field(&self, name: &str) -> Option<&'a [u8]> {
        self.fields.iter().find(|(k, _)| *k == name.as_bytes()).map(|(_, v)| *v)
    }

    /// `permissive=1`: the access was logged but allowed.
    pub fn permissive(&self) -> bool {
        self.field("permissive") == Some(b"1")
    }
}

fn stamp(input: &[u8]) -> IResult<&[u8], AuditStamp<'_>> {
    let time = recognize((digit1, opt(preceded(char('.'), digit1))));
    delimited(tag("audit("), separated_pair(time, char(':'), digit1), char(')'))
        .map(|(time, serial)| AuditStamp { time, serial })
        .parse(input)
}

fn token(input: &[u8]) -> IResult<&[u8], &[u8]> {
    take_till1(|b: u8| b == b' ' || b == b'\t').parse(input)
}

fn node(input: &[u8]) -> IResult<&[u8], &[u8]> {
    terminated(preceded(tag("node="), token), space1).parse(input)
}

fn record_type(input: &[u8]) -> IResult<&[u8], &[u8]> {
    preceded(tag("type="), token).parse(input)
}

/// `[node=N ]type=T msg=audit(S:N):` then the body.
pub fn audit_record(input: &[u8]) -> IResult<&[u8], AuditRecord<'_>> {
    let (body, (_, record_type, _, stamp, _)) =
        (opt(node), record_type, space1, delimited(tag("msg="), stamp, char(':')), space0).parse(input)?;
    let record = AuditRecord { record_type, stamp, body };
    Ok((&body[body.len()..], record))
}

fn decision(input: &[u8]) -> IResult<&[u8], bool> {
    let (rest, word) = take_while1(|b: u8| b.is_ascii_alphabetic()).parse(input)?;
    match word {
        b"denied" => Ok((rest, true)),
        b"granted" => Ok((rest, false)),
        _ => Err(nom::Err::Error(nom::error::Error::new(input, nom::error::ErrorKind::Tag))),
    }
}

fn permission(input: &[u8]) -> IResult<&[u8], &[u8]> {
    take_till1(|b: u8| b == b' ' || b == b'}').parse(input)
}

fn permissions(input: &[u8]) -> IResult<&[u8], Vec<&[u8]>> {
    delimited((char('{'), space0), separated_list1(space1, permission), (space0, char('}'))).parse(input)
}

fn quoted(input: &[u8]) -> IResult<&[u8], &[u8]> {
    delimited(char('"'), take_till(|b| b == b'"'), char('"')).parse(input)
}

fn field_name(input: &[u8]) -> IResult<&[u8], &[u8]> {
    take_while1(|b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-').parse(input)
}

fn field(input: &[u8]) -> IResult<&[u8], (&[u8], &[u8])> {
    preceded(
        space1,
        separated_pair(field_name, char('='), |i| {
            quoted(i).or_else(|_: nom::Err<nom::error::Error<&[u8]>>| token(i))
        }),
    )
    .parse(input)
}

/// `avc:  denied  { write } for  pid=1 comm="x" ... tclass=dir permissive=1`.
pub fn avc_body(input: &[u8]) -> IResult<&[u8], Avc<'_>> {
    (
        preceded((tag("avc:"), space1), decision),
        preceded(space1, permissions),
        preceded((space1, tag("for")), many0(field)),
    )
        .map(|(denied, permissions, fields)| Avc {
            text: input.trim_ascii_end(),
            stamp: None,
            denied,
            permissions,
            fields,
        })
        .parse(input)
}

/// The AVC decision anywhere in a line (audit.log, dmesg, journal message), with the
/// `audit(...)` stamp in front of it when present. `None` when there is none.
pub fn find_avc(line: &[u8]) -> Option<Avc<'_>> {
    let at = memchr::memmem::find(line, b"avc:")?;
    let (_, mut avc) = avc_body(&line[at..]).ok()?;
    avc.stamp =
        memchr::memmem::find(&line[..at], b"audit(").and_then(|s| stamp(&line[s..at]).ok()).map(|(_, st)| st);
    Some(avc)
}

/// `audit.log` as written by auditd.
struct AuditLog;

impl Analyzer for AuditLog {
    fn kind(&self) -> LogKind {
        LogKind::Audit
    }

    fn sniff(&self, head: &[u8], _file_name: &str) -> u8 {
        lines::share_of_lines(head, 1, |l| audit_record(l).is_ok())
    }

    fn analyze(&self, input: &mut dyn BufRead, file: &Path) -> Result<Analysis, LogError> {
        let mut reader = LineReader::new(input);
        let mut rules = Rules::new(file);
        let mut tally = Tally::default();
        while let Some(line) = reader.next_line().map_err(|e| lines::io_error(file, e))? {
            match audit_record(line.bytes) {
                Ok((_, record)) if !line.oversize => {
                    tally.record();
                    if record.record_type == b"AVC" {
                        rules.avc(line.number, Time::Text(record.stamp.time), line.bytes);
                    }
                }
                _ => tally.unparsed(),
            }
        }
        Ok(tally.into_analysis(rules.finish()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{FindingKind, Severity};

    #[test]
    fn avc_fields_of_an_audit_log_line() {
        let line = b"type=AVC msg=audit(1550015492.576:237): avc:  denied  { write } for  pid=18207 comm=\"httpd\" name=\"cache\" dev=\"xvda1\" ino=1138455 scontext=system_u:system_r:httpd_t:s0 tcontext=unconfined_u:object_r:httpd_sys_content_t:s0 tclass=dir permissive=1";
        let (_, record) = audit_record(line).unwrap();
        assert_eq!(record.record_type, b"AVC");
        assert_eq!(record.stamp.time, b"1550015492.576");
        assert_eq!(record.stamp.serial, b"237");
        let avc = find_avc(line).unwrap();
        assert!(avc.denied);
        assert_eq!(avc.permissions, vec![&b"write"[..]]);
        assert_eq!(avc.field("pid"), Some(&b"18207"[..]));
        assert_eq!(avc.field("comm"), Some(&b"httpd"[..]));
        assert_eq!(avc.field("tcontext"), Some(&b"unconfined_u:object_r:httpd_sys_content_t:s0"[..]));
        assert_eq!(avc.field("tclass"), Some(&b"dir"[..]));
        assert!(avc.permissive());
        assert_eq!(avc.stamp.unwrap().serial, b"237");
    }

    #[test]
    fn avc_inside_a_journal_line() {
        let line = b"Jul 05 03:09:13 localhost kernel: type=1400 audit(1593918553.912:6): avc:  denied  { write open } for  pid=1108 comm=\"in:imjournal\" path=\"/imjournal.state.tmp\" dev=\"dm-0\" ino=720 scontext=system_u:system_r:syslogd_t:s0 tcontext=system_u:object_r:root_t:s0 tclass=file";
        let avc = find_avc(line).unwrap();
        assert_eq!(avc.permissions, vec![&b"write"[..], b"open"]);
        assert_eq!(avc.field("comm"), Some(&b"in:imjournal"[..]));
        assert_eq!(avc.field("tclass"), Some(&b"file"[..]));
        assert!(avc.text.starts_with(b"avc:  denied  { write open } for  pid=1108 "));
        assert!(avc.text.ends_with(b" tclass=file"));
        assert!(!avc.permissive());
        assert_eq!(avc.stamp.unwrap().time, b"1593918553.912");
    }

    #[test]
    fn a_stamp_names_its_event_in_milliseconds() {
        let event = |line: &[u8]| find_avc(line).and_then(|a| a.stamp).and_then(|s| s.event());
        let kernel = b"audit: type=1400 audit(1700000123.045:17): avc:  denied  { read } for  pid=9 comm=\"x\" tclass=file permissive=1";
        assert_eq!(event(kernel), Some(EventId { millis: 1_700_000_123_045, serial: 17 }));
        let whole_seconds =
            b"type=AVC msg=audit(1700000123:18): avc:  denied  { read } for  pid=9 tclass=file";
        assert_eq!(event(whole_seconds), Some(EventId { millis: 1_700_000_123_000, serial: 18 }));
        let micros = b"type=AVC msg=audit(1700000123.0451:19): avc:  denied  { read } for  pid=9 tclass=file";
        assert_eq!(event(micros), Some(EventId { millis: 1_700_000_123_045, serial: 19 }));
        let journal = b"AVC avc:  denied  { read } for  pid=9 comm=\"x\" tclass=file permissive=1";
        assert_eq!(event(journal), None);
        assert_eq!(
            EventId::from_journal(b"17", b"1700000123045000"),
            Some(EventId { millis: 1_700_000_123_045, serial: 17 })
        );
        assert_eq!(EventId::from_journal(b"", b"1700000123045000"), None);
        assert_eq!(decimal(b"18446744073709551616"), None);
        assert_eq!(decimal(b""), None);
    }

    #[test]
    fn policy_load_notice_is_not_an_avc_decision() {
        let line = b"type=USER_AVC msg=audit(1550014075.691:133): pid=2319 uid=81 auid=4294967295 ses=4294967295 subj=system_u:system_r:system_dbusd_t:s0-s0:c0.c1023 msg='avc:  received policyload notice (seqno=2)  exe=\"/usr/bin/dbus-daemon\" sauid=81 hostname=? addr=? terminal=?'";
        assert!(find_avc(line).is_none());
    }

    /// auditd's raw `audit.log`, written here (see `tests/fixtures/logs/README.md`).
    const AUDIT: &[u8] = crate::logs::fixture!("selinux/audit.log");

    #[test]
    fn denials_of_an_audit_log_enforcing_and_permissive() {
        let analysis = AuditLog.analyze(&mut &AUDIT[..], Path::new("audit.log")).unwrap();
        // Every record parses, a `node=` prefix included.
        assert_eq!((analysis.records, analysis.unparsed_lines, analysis.lines), (7, 0, 7));
        let found: Vec<_> =
            analysis.findings.iter().map(|f| (f.kind, f.severity, f.line, f.time.as_deref())).collect();
        // The grant and dbus-daemon's policy-load notice are no denials.
        assert_eq!(
            found,
            [
                (FindingKind::AvcDenial, Severity::Error, 3, Some("1712912401.310")),
                (FindingKind::AvcDenial, Severity::Warning, 6, Some("1712912460.771")),
            ]
        );
        assert_eq!(
            analysis.findings[0].summary,
            "SELinux denied { read } to sddm-greeter (pid 812): system_u:system_r:xdm_t:s0-s0:c0.c1023 \
             -> system_u:object_r:user_home_t:s0 tclass=file"
        );
        assert!(analysis.findings[1].summary.contains("{ write open } to httpd (pid 1320)"));
        assert!(analysis.findings[1].summary.ends_with("tclass=file (permissive)"));
        let line3 = AUDIT.split(|b| *b == b'\n').nth(2).unwrap();
        assert_eq!(analysis.findings[0].evidence, [String::from_utf8(line3.to_vec()).unwrap()]);
    }

    #[test]
    fn audit_logs_are_recognised_and_other_lines_are_unparsed() {
        assert_eq!(AuditLog.sniff(AUDIT, "x"), 100);
        let mixed = b"type=AVC msg=audit(1.5:2): avc:  denied  { read } for  pid=1 comm=\"x\" tclass=file\n\
            ----\ntime->Fri Apr 12 09:00:00 2024\n";
        let analysis = AuditLog.analyze(&mut &mixed[..], Path::new("a")).unwrap();
        assert_eq!((analysis.records, analysis.unparsed_lines), (1, 2));
        assert_eq!(AuditLog.sniff(mixed, "x"), 33);
    }
}
