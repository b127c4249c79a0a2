//! Kernel ring buffer logs: `dmesg`, `vmcore-dmesg.txt`, kernel output on a console.
//!
//! Owns: the kernel line grammar (`<level>` and `[seconds]` prefixes, then the message).
//! Must not: decide what is a finding (that is `rules`), or assume every line has a
//! prefix: old `dmesg` and continuation lines of a report have none.

use std::io::BufRead;
use std::path::Path;

use nom::character::complete::{char, digit1, space0};
use nom::combinator::{opt, recognize};
use nom::sequence::{delimited, preceded, terminated};
use nom::{IResult, Parser};

use super::lines::{self, LineReader, Tally};
use super::rules::{Rules, Time};
use super::{Analysis, Analyzer, LogError, LogKind};

pub fn analyzers() -> Vec<Box<dyn Analyzer>> {
    vec![Box::new(KernelLog)]
}

/// One kernel line split into its optional prefixes and the message.
#[derive(Debug, PartialEq, Eq)]
pub struct KernelLine<'a> {
    /// The `<N>` console log level of vmcore-dmesg and `/dev/kmsg`-style output.
    pub level: Option<&'a [u8]>,
    /// Seconds since boot, as written inside `[ ]`.
    pub seconds: Option<&'a [u8]>,
    pub message: &'a [u8],
}

/// `<4>`.
fn level(input: &[u8]) -> IResult<&[u8], &[u8]> {
    delimited(char('<'), digit1, char('>')).parse(input)
}

/// `[  181.012541]`.
fn seconds(input: &[u8]) -> IResult<&[u8], &[u8]> {
    let number = recognize((digit1, char('.'), digit1));
    delimited((char('['), space0), number, char(']')).parse(input)
}

/// `[seconds]` and the space after it.
fn stamp(input: &[u8]) -> IResult<&[u8], &[u8]> {
    terminated(seconds, opt(char(' '))).parse(input)
}

/// A line of kernel output; never fails (a line without prefixes is all message).
/// bootproof's `console.log` stamps every line with the host's time, so the kernel's
/// lines there carry a second `[seconds]`, the kernel's own: the message starts after
/// both, and the first (the line's time in that file) is kept.
pub fn kernel_line(input: &[u8]) -> KernelLine<'_> {
    let parsed: IResult<&[u8], _> = (opt(level), opt(stamp), opt(stamp)).parse(input);
    match parsed {
        Ok((message, (level, seconds, _))) => KernelLine { level, seconds, message },
        Err(_) => KernelLine { level: None, seconds: None, message: input },
    }
}

/// Text that no kernel prints: NUL bytes and other control characters mean the file is
/// not text (or the line is damaged).
fn is_text(line: &[u8]) -> bool {
    !line.iter().any(|&b| b < 0x20 && b != b'\t' && b != 0x1b)
}

/// A line that looks like dmesg output: a `<N>` or `[seconds]` prefix.
fn has_kernel_prefix(line: &[u8]) -> bool {
    let prefixed: IResult<&[u8], &[u8]> = recognize(preceded(opt(level), seconds)).parse(line);
    prefixed.is_ok() || level(line).is_ok()
}

/// `(II) `, `(WW) `, `(EE) `, `(--) `, `(**) `, `(==) `: Xorg's message classes.
fn is_xorg_marked(message: &[u8]) -> bool {
    matches!(message, [b'(', a, b, b')', b' ', ..] if !a.is_ascii_alphanumeric() || a.is_ascii_uppercase() && b.is_ascii_uppercase())
}

/// Messages every boot log starts with; they tell a prefix-less dmesg apart.
const BOOT_BANNERS: &[&str] = &["Linux version ", "Command line: ", "Initializing cgroup subsys"];

/// Raw kernel logs (`dmesg`, `vmcore-dmesg.txt`).
struct KernelLog;

impl Analyzer for KernelLog {
    fn kind(&self) -> LogKind {
        LogKind::Dmesg
    }

    fn sniff(&self, head: &[u8], file_name: &str) -> u8 {
        let prefixed = lines::share_of_lines(head, 3, has_kernel_prefix);
        let banner = lines::head_lines(head).take(50).any(|l| {
            let message = kernel_line(l).message;
            BOOT_BANNERS.iter().any(|b| message.starts_with(b.as_bytes()))
        });
        let named = file_name.contains("dmesg");
        // Xorg's log has the same `[seconds]` prefix, then a `(II)`-style marker.
        let xorg = lines::share_of_lines(head, 3, |l| is_xorg_marked(kernel_line(l).message));
        if xorg >= 20 {
            return 0;
        }
        // A journal rendered short-monotonic also starts lines with `[seconds]`; its own
        // analyzer scores higher, so dmesg stays below 90 here.
        if !banner && prefixed < 50 {
            return 0;
        }
        let base = (u32::from(prefixed) * 7 / 10).max(if banner { 50 } else { 0 });
        let score = base + if banner { 15 } else { 0 } + if named { 10 } else { 0 };
        u8::try_from(score.min(89)).unwrap_or(89)
    }

    fn analyze(&self, input: &mut dyn BufRead, file: &Path) -> Result<Analysis, LogError> {
        let mut reader = LineReader::new(input);
        let mut rules = Rules::new(file);
        let mut tally = Tally::default();
        while let Some(line) = reader.next_line().map_err(|e| lines::io_error(file, e))? {
            if line.oversize || !is_text(line.bytes) {
                tally.unparsed();
                continue;
            }
            tally.record();
            let parsed = kernel_line(line.bytes);
            let time = parsed.seconds.map_or(Time::Unknown, Time::Text);
            rules.kernel(line.number, time, parsed.message, line.bytes);
        }
        Ok(tally.into_analysis(rules.finish()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{Finding, FindingKind, Severity, fixture};

    /// `dmesg` of Linux 6.1 and `vmcore-dmesg` of Linux 4.18, written here (see
    /// `tests/fixtures/logs/README.md`).
    const DMESG: &[u8] = fixture!("kernel/dmesg");
    const VMCORE: &[u8] = fixture!("kernel/vmcore-dmesg.txt");

    fn analyze(data: &[u8]) -> Analysis {
        KernelLog.analyze(&mut &data[..], Path::new("dmesg")).unwrap()
    }

    fn found(findings: &[Finding]) -> Vec<(FindingKind, Severity, u64, Option<&str>)> {
        findings.iter().map(|f| (f.kind, f.severity, f.line, f.time.as_deref())).collect()
    }

    #[test]
    fn prefixes_split_from_the_message() {
        let l = kernel_line(b"<0>BUG: soft lockup - CPU#20 stuck for 67s! [libvirtd:21321]");
        assert_eq!(l.level, Some(&b"0"[..]));
        assert_eq!(l.seconds, None);
        assert_eq!(l.message, b"BUG: soft lockup - CPU#20 stuck for 67s! [libvirtd:21321]");
        let l = kernel_line(b"[  181.012660] Oops: 0010 [#1] SMP ");
        assert_eq!(l.seconds, Some(&b"181.012660"[..]));
        assert_eq!(l.message, b"Oops: 0010 [#1] SMP ");
        let l = kernel_line(b"<4>[ 5240.022360] Oops: 0000 [#1] SMP PTI");
        assert_eq!(
            (l.level, l.seconds, l.message),
            (Some(&b"4"[..]), Some(&b"5240.022360"[..]), &b"Oops: 0000 [#1] SMP PTI"[..])
        );
        let l = kernel_line(b"Call Trace:");
        assert_eq!((l.level, l.seconds, l.message), (None, None, &b"Call Trace:"[..]));
    }

    #[test]
    fn console_lines_carry_the_host_time_then_the_kernel_time() {
        // As bootproof's console.log of the installed reference system has them.
        let l = kernel_line(
            b"[    67.355] [   60.322395] systemd-shutdown[1]: Syncing filesystems and block devices.",
        );
        assert_eq!(l.seconds, Some(&b"67.355"[..]));
        assert_eq!(l.message, b"systemd-shutdown[1]: Syncing filesystems and block devices.");
        let l = kernel_line(b"[    61.914] [  OK  ] Reached target shutdown.target - System Shutdown.");
        assert_eq!(l.message, b"[  OK  ] Reached target shutdown.target - System Shutdown.");
    }

    #[test]
    fn a_warning_with_its_trace_an_avc_a_segfault_and_an_oom_kill() {
        let analysis = analyze(DMESG);
        assert_eq!(
            (analysis.records, analysis.continuation_lines, analysis.unparsed_lines, analysis.lines),
            (18, 0, 0, 18)
        );
        assert_eq!(
            found(&analysis.findings),
            [
                (FindingKind::KernelWarning, Severity::Warning, 6, Some("3.911405")),
                (FindingKind::AvcDenial, Severity::Error, 15, Some("12.772010")),
                (FindingKind::Segfault, Severity::Warning, 16, Some("14.305118")),
                (FindingKind::OomKill, Severity::Error, 18, Some("30.118001")),
            ]
        );
        let warning = &analysis.findings[0];
        assert!(
            warning
                .summary
                .starts_with("WARNING: CPU: 1 PID: 211 at drivers/gpu/drm/drm_atomic_helper.c:1682")
        );
        // The report runs from the WARNING to its end marker, as written.
        assert_eq!(warning.evidence.len(), 9);
        assert!(warning.evidence[3].ends_with("Call Trace:"), "{:?}", warning.evidence);
        assert!(warning.evidence.last().unwrap().ends_with("---[ end trace 0000000000000000 ]---"));
        let avc = &analysis.findings[1];
        assert!(avc.summary.contains("{ read } to sddm-greeter (pid 812)"), "{}", avc.summary);
        assert!(analysis.findings[3].summary.starts_with("Out of memory: Killed process 1402 (chromium)"));
    }

    #[test]
    fn a_soft_lockup_an_oops_and_the_panic_of_a_vmcore_dmesg() {
        let analysis = analyze(VMCORE);
        assert_eq!((analysis.records, analysis.unparsed_lines, analysis.lines), (16, 0, 16));
        assert_eq!(
            found(&analysis.findings),
            [
                (FindingKind::SoftLockup, Severity::Error, 4, Some("5211.301442")),
                (FindingKind::KernelOops, Severity::Error, 8, Some("5240.022310")),
                (FindingKind::KernelPanic, Severity::Critical, 15, Some("5240.022800")),
            ]
        );
        let [lockup, oops, panic] = &analysis.findings[..] else { unreachable!() };
        assert_eq!(lockup.summary, "watchdog: BUG: soft lockup - CPU#3 stuck for 23s! [qemu-kvm:48211]");
        assert_eq!(lockup.evidence.len(), 4);
        // "BUG: unable to handle ..." and its "Oops:" line are one report, up to the panic.
        assert_eq!(oops.summary, "BUG: unable to handle kernel NULL pointer dereference at 0000000000000008");
        assert_eq!(oops.evidence.len(), 7);
        assert!(oops.evidence.iter().any(|e| e.ends_with("Oops: 0000 [#1] SMP PTI")));
        assert_eq!(panic.summary, "Kernel panic - not syncing: Fatal exception");
        assert_eq!(panic.evidence.len(), 2);
    }

    #[test]
    fn kernel_logs_are_recognised_and_xorg_logs_are_not() {
        assert!(KernelLog.sniff(DMESG, "dmesg") >= 80);
        assert!(KernelLog.sniff(VMCORE, "vmcore-dmesg.txt") >= 80);
        // Without a name, still a kernel log, but never above a format of its own.
        assert!((50..90).contains(&KernelLog.sniff(DMESG, "x")));
        let xorg = fixture!("anaconda/fedora40-failed/X.log");
        assert_eq!(KernelLog.sniff(xorg, "X.log"), 0);
    }

    #[test]
    fn control_bytes_make_a_line_unparsed() {
        let data = b"[    1.000000] ok\n[    2.000000] bad\x00byte\n\xff\xfe latin\n";
        let analysis = analyze(data);
        assert_eq!((analysis.records, analysis.unparsed_lines, analysis.lines), (2, 1, 3));
    }
}
