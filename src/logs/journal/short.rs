//! The journal's text forms (`journalctl -o short`, `short-precise`, `short-iso`,
//! `short-monotonic`), which are also what anaconda saves as `journal.log`.
//!
//! Owns: the line grammar `TIME HOST IDENTIFIER[PID]: MESSAGE`, journalctl's own
//! `-- ... --` lines, and indented continuation lines of multi-line messages.
//! Must not: guess a year for `Mmm dd` times; the time stays as written.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_till1, take_while_m_n};
use nom::character::complete::{char, digit1, space0};
use nom::combinator::{opt, recognize, rest};
use nom::sequence::{delimited, preceded, terminated};
use nom::{IResult, Parser};

/// One line of short output.
#[derive(Debug, PartialEq, Eq)]
pub struct ShortLine<'a> {
    pub time: &'a [u8],
    pub host: &'a [u8],
    pub identifier: &'a [u8],
    pub pid: Option<&'a [u8]>,
    pub message: &'a [u8],
}

fn digits(n: usize) -> impl Fn(&[u8]) -> IResult<&[u8], &[u8]> {
    move |i| take_while_m_n(n, n, |b: u8| b.is_ascii_digit()).parse(i)
}

fn fraction(input: &[u8]) -> IResult<&[u8], &[u8]> {
    recognize(opt(preceded(char('.'), digit1))).parse(input)
}

/// `HH:MM:SS[.ffffff]`.
fn clock(input: &[u8]) -> IResult<&[u8], &[u8]> {
    recognize((digits(2), char(':'), digits(2), char(':'), digits(2), fraction)).parse(input)
}

/// `Oct 24 00:00:01.017222` (short, short-precise); the day may be space-padded.
fn syslog_time(input: &[u8]) -> IResult<&[u8], &[u8]> {
    let month = take_while_m_n(3, 3, |b: u8| b.is_ascii_alphabetic());
    let day = take_while_m_n(1, 2, |b: u8| b.is_ascii_digit());
    recognize((month, char(' '), space0, day, char(' '), clock)).parse(input)
}

/// `2022-10-24T00:00:01.017222+0000` (short-iso, short-iso-precise).
fn iso_time(input: &[u8]) -> IResult<&[u8], &[u8]> {
    let date = (digits(4), char('-'), digits(2), char('-'), digits(2));
    let zone =
        alt((tag("Z"), recognize((alt((char('+'), char('-'))), digits(2), opt(char(':')), digits(2)))));
    recognize((date, char('T'), clock, opt(zone))).parse(input)
}

/// `[    0.000000]` (short-monotonic).
fn monotonic_time(input: &[u8]) -> IResult<&[u8], &[u8]> {
    recognize(delimited((char('['), space0), (digit1, char('.'), digit1), char(']'))).parse(input)
}

fn time(input: &[u8]) -> IResult<&[u8], &[u8]> {
    alt((syslog_time, iso_time, monotonic_time)).parse(input)
}

fn host(input: &[u8]) -> IResult<&[u8], &[u8]> {
    take_till1(|b: u8| b == b' ').parse(input)
}

/// The syslog identifier: up to `[pid]` or `:`.
fn identifier(input: &[u8]) -> IResult<&[u8], &[u8]> {
    take_till1(|b: u8| b == b'[' || b == b':' || b == b' ').parse(input)
}

fn pid(input: &[u8]) -> IResult<&[u8], &[u8]> {
    delimited(char('['), digit1, char(']')).parse(input)
}

/// `TIME HOST IDENTIFIER[PID]: MESSAGE`.
pub fn short_line(input: &[u8]) -> IResult<&[u8], ShortLine<'_>> {
    (
        terminated(time, char(' ')),
        terminated(host, char(' ')),
        identifier,
        opt(pid),
        preceded((char(':'), opt(char(' '))), rest),
    )
        .map(|(time, host, identifier, pid, message)| ShortLine { time, host, identifier, pid, message })
        .parse(input)
}

/// journalctl's own lines: `-- Logs begin at ... --`, `-- Boot 4c70... --`,
/// `-- Reboot --`, `-- No entries --`, and `--catalog` explanations.
pub fn marker_line(input: &[u8]) -> IResult<&[u8], &[u8]> {
    preceded(tag("-- "), rest).parse(input)
}

/// Whether a marker line (its text after `-- `) separates two boots: `Boot ID --` of
/// journalctl >= 240, `Reboot --` of older ones.
pub fn is_boot_boundary(marker: &[u8]) -> bool {
    marker.starts_with(b"Boot ") || marker.starts_with(b"Reboot --")
}

/// The indented rest of a multi-line message.
pub fn is_continuation(line: &[u8]) -> bool {
    matches!(line.first(), Some(b' ' | b'\t'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_precise_line() {
        let (_, l) = short_line(
            b"Mar 13 15:36:56.399187 raspberrypi4 sddm[245]: Display server failed to start. Exiting",
        )
        .unwrap();
        assert_eq!(l.time, b"Mar 13 15:36:56.399187");
        assert_eq!(l.host, b"raspberrypi4");
        assert_eq!(l.identifier, b"sddm");
        assert_eq!(l.pid, Some(&b"245"[..]));
        assert_eq!(l.message, b"Display server failed to start. Exiting");
    }

    #[test]
    fn monotonic_iso_and_kernel_lines() {
        let (_, l) =
            short_line(b"[    0.000000] fedora kernel: Machine model: Raspberry Pi 4 Model B Rev 1.1")
                .unwrap();
        assert_eq!((l.time, l.identifier, l.pid), (&b"[    0.000000]"[..], &b"kernel"[..], None));
        assert_eq!(l.message, b"Machine model: Raspberry Pi 4 Model B Rev 1.1");
        let (_, l) = short_line(b"2019-10-02T02:18:24+0000 localhost systemd[1]: Started foo.").unwrap();
        assert_eq!(l.time, b"2019-10-02T02:18:24+0000");
        assert_eq!(l.message, b"Started foo.");
        let (_, l) = short_line(b"Jul  5 03:09:13 localhost kernel: x").unwrap();
        assert_eq!(l.time, b"Jul  5 03:09:13");
    }

    #[test]
    fn other_lines_are_not_short_lines() {
        assert!(short_line(b"[    0.000000] Initializing cgroup subsys cpuset").is_err());
        assert!(
            short_line(
                b"-- Logs begin at Wed 2019-10-02 02:18:24 UTC, end at Wed 2019-10-02 02:54:34 UTC. --"
            )
            .is_err()
        );
        assert!(marker_line(b"-- Reboot --").is_ok());
        let (_, marker) = marker_line(b"-- Boot 27acae2fe35a40ac93f9c7732c0b8e59 --").unwrap();
        assert!(is_boot_boundary(marker));
        let (_, marker) = marker_line(
            b"-- Logs begin at Sun 2020-07-05 03:09:07 UTC, end at Sun 2020-07-05 03:24:52 UTC. --",
        )
        .unwrap();
        assert!(!is_boot_boundary(marker));
        assert!(short_line(b"type=AVC msg=audit(1550015492.576:237): avc:  denied").is_err());
    }
}
