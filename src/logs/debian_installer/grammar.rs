//! The line grammar of the Debian installer's syslog, one nom function per production.
//!
//! Owns: recognising a line as busybox `syslogd -S` writes it in the installer
//! (`rootskel`'s `S10syslog` starts `syslogd -m 0 -O /var/log/syslog -S`), and the
//! prefixes d-i's programs put in front of their messages. Must not: allocate, or
//! decide what a message means (that is `rules`).
//!
//! ```text
//! line     = time " " (tagged | message)
//! time     = month " " day " " clock          Nov 30 05:27:13, Jan  1 01:21:09
//! tagged   = tag [pid] ":" [" "] message      main-menu[238]: ..., debootstrap: ...
//! tag      = 1*(any but ":" "[" blank)        net/hw-detect.hotplug, kernel
//! pid      = "[" 1*digit "]"
//! ```
//!
//! `-S` drops the host name and facility; busybox turns a newline inside a message into
//! a blank and other control bytes into `^X`, so every line is one whole entry.
//! syslogd's own lines (`syslogd started: BusyBox v1.35.0`) carry no tag.
//!
//! Inside a message, [`logged`] reads what `libdebian-installer`'s `di_log` puts first
//! (`INFO: `, `WARNING **: `), and [`child_output`] what `di_exec_io_log` puts before the
//! output of a program main-menu ran (`(process:7553): `).

use nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::{tag, take_while_m_n, take_while1},
    character::complete::{char, digit1},
    combinator::{map, opt, recognize, rest, verify},
    sequence::{delimited, terminated},
};

type Res<'a, T> = IResult<&'a [u8], T>;

/// One line of the syslog. All fields borrow from the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiLine<'a> {
    /// As written: `Nov 30 05:27:13`.
    pub time: &'a [u8],
    /// The syslog tag (`main-menu`, `in-target`, `kernel`); empty for syslogd's own lines.
    pub tag: &'a [u8],
    pub pid: Option<&'a [u8]>,
    pub message: &'a [u8],
}

/// `Nov`: the C locale's abbreviations, as `ctime` and glibc's `syslog` write them.
fn month(i: &[u8]) -> Res<'_, &[u8]> {
    verify(take_while_m_n(3, 3, |b: u8| b.is_ascii_alphabetic()), |m: &[u8]| {
        m[0].is_ascii_uppercase() && m[1..].iter().all(u8::is_ascii_lowercase)
    })
    .parse(i)
}

/// ` 1` or `30`: the day of the month, padded with a blank.
fn day(i: &[u8]) -> Res<'_, &[u8]> {
    recognize((alt((char(' '), digit_char)), digit_char)).parse(i)
}

fn digit_char(i: &[u8]) -> Res<'_, char> {
    nom::character::complete::satisfy(|c| c.is_ascii_digit()).parse(i)
}

fn two_digits(i: &[u8]) -> Res<'_, &[u8]> {
    take_while_m_n(2, 2, |b: u8| b.is_ascii_digit()).parse(i)
}

/// `05:27:13`
fn clock(i: &[u8]) -> Res<'_, &[u8]> {
    recognize((two_digits, char(':'), two_digits, char(':'), two_digits)).parse(i)
}

/// `Nov 30 05:27:13`
pub fn time(i: &[u8]) -> Res<'_, &[u8]> {
    recognize((month, char(' '), day, char(' '), clock)).parse(i)
}

/// The syslog tag a program chose (`openlog`'s ident, `logger -t`, `log-output -t`).
fn syslog_tag(i: &[u8]) -> Res<'_, &[u8]> {
    take_while1(|b: u8| b != b':' && b != b'[' && b != b' ' && b != b'\t').parse(i)
}

/// `[238]`
fn pid(i: &[u8]) -> Res<'_, &[u8]> {
    delimited(char('['), digit1, char(']')).parse(i)
}

/// Who logs: `tag[pid]: ` (one blank after the colon belongs to the separator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sender<'a> {
    tag: &'a [u8],
    pid: Option<&'a [u8]>,
}

fn sender(i: &[u8]) -> Res<'_, Sender<'_>> {
    map(terminated((syslog_tag, opt(pid)), (char(':'), opt(char(' ')))), |(tag, pid)| Sender { tag, pid })
        .parse(i)
}

/// A line of the installer's syslog, or `None` when the line is not one.
pub fn di_line(line: &[u8]) -> Option<DiLine<'_>> {
    let parsed: Res<'_, _> = (time, char(' '), opt(sender), rest).parse(line);
    parsed.ok().map(|(_, (time, _, sender, message))| {
        let Sender { tag, pid } = sender.unwrap_or(Sender { tag: b"", pid: None });
        DiLine { time, tag, pid, message }
    })
}

/// The levels `di_log` writes (`mklevel_prefix` in libdebian-installer's `log.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DiLevel {
    Debug,
    Info,
    Message,
    Warning,
    Critical,
    Error,
}

/// `WARNING`, `INFO`, ...; `di_log` adds ` **` after the alert levels.
fn di_level(i: &[u8]) -> Res<'_, DiLevel> {
    alt((
        map(tag(&b"ERROR"[..]), |_| DiLevel::Error),
        map(tag(&b"CRITICAL"[..]), |_| DiLevel::Critical),
        map(tag(&b"WARNING"[..]), |_| DiLevel::Warning),
        map(tag(&b"Message"[..]), |_| DiLevel::Message),
        map(tag(&b"INFO"[..]), |_| DiLevel::Info),
        map(tag(&b"DEBUG"[..]), |_| DiLevel::Debug),
    ))
    .parse(i)
}

/// `WARNING **: ` or `INFO: `
fn level_prefix(i: &[u8]) -> Res<'_, DiLevel> {
    terminated(di_level, (opt(tag(&b" **"[..])), tag(&b": "[..]))).parse(i)
}

/// The message of a `di_log` line split into its level and text; a message without the
/// prefix (a shell script's `logger`, a program's output) has no level.
pub fn logged(message: &[u8]) -> (Option<DiLevel>, &[u8]) {
    match level_prefix(message) {
        Ok((text, level)) => (Some(level), text),
        Err(_) => (None, message),
    }
}

/// `error: `, `warning: `, `info: `, `debug: `: what the installer's shell helpers put in
/// front of a message (`log "error: $*"` in base-installer's `library.sh`, grub-installer,
/// net-retriever, pkgsel, finish-install).
fn helper_prefix(i: &[u8]) -> Res<'_, &[u8]> {
    terminated(
        alt((tag(&b"error"[..]), tag(&b"warning"[..]), tag(&b"info"[..]), tag(&b"debug"[..]))),
        tag(&b": "[..]),
    )
    .parse(i)
}

/// What a message says, without `di_log`'s level or a shell helper's prefix.
pub fn said(message: &[u8]) -> &[u8] {
    let (_, text) = logged(message);
    match helper_prefix(text) {
        Ok((rest, _)) => rest,
        Err(_) => text,
    }
}

/// `(process:7553): `, or `(name:7553): `: output of a program main-menu ran.
fn output_prefix(i: &[u8]) -> Res<'_, &[u8]> {
    recognize((
        char('('),
        take_while1(|b: u8| b != b':' && b != b')' && b != b' '),
        char(':'),
        digit1,
        tag(&b"): "[..]),
    ))
    .parse(i)
}

/// The text of a child's output line without `di_exec_io_log`'s prefix, when it has one.
pub fn child_output(message: &[u8]) -> &[u8] {
    match output_prefix(message) {
        Ok((text, _)) => text,
        Err(_) => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(line: &str) -> (&str, &str, Option<&str>, &str) {
        let l = di_line(line.as_bytes()).expect(line);
        let s = |b: &[u8]| std::str::from_utf8(b).unwrap().to_owned().leak() as &str;
        (s(l.time), s(l.tag), l.pid.map(s), s(l.message))
    }

    #[test]
    fn lines_as_busybox_syslogd_writes_them() {
        assert_eq!(
            parts("Nov 30 05:27:13 main-menu[238]: INFO: Menu item 'localechooser' selected"),
            ("Nov 30 05:27:13", "main-menu", Some("238"), "INFO: Menu item 'localechooser' selected")
        );
        assert_eq!(
            parts("Jan  1 01:21:09 in-target:   Package linux-image-ixp4xx is not configured yet."),
            ("Jan  1 01:21:09", "in-target", None, "  Package linux-image-ixp4xx is not configured yet.")
        );
        assert_eq!(
            parts("Dec 22 20:19:56 kernel: [ 1018.632648] kernel read not supported"),
            ("Dec 22 20:19:56", "kernel", None, "[ 1018.632648] kernel read not supported")
        );
        assert_eq!(parts("Jan  1 01:21:11 in-target:"), ("Jan  1 01:21:11", "in-target", None, ""));
        assert_eq!(
            parts("Nov 30 05:27:10 net/hw-detect.hotplug: Detected hotpluggable network interface lo").1,
            "net/hw-detect.hotplug"
        );
        // syslogd's own line has no tag.
        assert_eq!(
            parts("Nov 30 05:27:09 syslogd started: BusyBox v1.35.0"),
            ("Nov 30 05:27:09", "", None, "syslogd started: BusyBox v1.35.0")
        );
    }

    #[test]
    fn other_lines_are_not_entries() {
        for line in
            ["", "  File \"x\"", "19:31:43,453 INF program: x", "nov 30 05:27:13 x: y", "Nov 30 5:27:13 x: y"]
        {
            assert_eq!(di_line(line.as_bytes()), None, "{line:?}");
        }
    }

    #[test]
    fn di_log_levels_and_child_output() {
        assert_eq!(
            logged(b"WARNING **: Configuring 'pkgsel' failed with error code 1"),
            (Some(DiLevel::Warning), &b"Configuring 'pkgsel' failed with error code 1"[..])
        );
        assert_eq!(logged(b"INFO: Menu item 'netcfg' selected").0, Some(DiLevel::Info));
        assert_eq!(logged(b"ERROR **: no Filename field for x, ignoring").0, Some(DiLevel::Error));
        assert_eq!(logged(b"error: exiting on error base-installer/debootstrap-failed").0, None);
        assert_eq!(
            said(b"error: exiting on error base-installer/debootstrap-failed"),
            b"exiting on error base-installer/debootstrap-failed"
        );
        assert_eq!(said(b"WARNING **: Menu item 'pkgsel' failed."), b"Menu item 'pkgsel' failed.");
        assert_eq!(said(b"errors: none"), b"errors: none");
        assert_eq!(child_output(b"(process:7553): tar: write error"), b"tar: write error");
        assert_eq!(child_output(b"(x) y"), b"(x) y");
    }
}
