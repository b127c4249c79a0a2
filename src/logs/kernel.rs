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

use super::lines::{self, LineReader};
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
        let mut analysis = Analysis::default();
        while let Some(line) = reader.next_line().map_err(|e| lines::io_error(file, e))? {
            if line.oversize || !is_text(line.bytes) {
                analysis.unparsed_lines += 1;
                continue;
            }
            analysis.records += 1;
            let parsed = kernel_line(line.bytes);
            let time = parsed.seconds.map_or(Time::Unknown, Time::Text);
            rules.kernel(line.number, time, parsed.message, line.bytes);
        }
        analysis.lines = reader.count();
        analysis.findings = rules.finish();
        Ok(analysis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::FindingKind;
    use crate::logs::lines::testing::{analyze_file, corpus_file, count_lines};

    #[test]
    fn prefixes_split_from_the_message() {
        let l = kernel_line(b"<0>BUG: soft lockup - CPU#20 stuck for 67s! [libvirtd:21321]");
        assert_eq!(l.level, Some(&b"0"[..]));
        assert_eq!(l.seconds, None);
        assert_eq!(l.message, b"BUG: soft lockup - CPU#20 stuck for 67s! [libvirtd:21321]");
        let l = kernel_line(b"[  181.012660] Oops: 0010 [#1] SMP ");
        assert_eq!(l.seconds, Some(&b"181.012660"[..]));
        assert_eq!(l.message, b"Oops: 0010 [#1] SMP ");
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
    fn null_pointer_oops_with_its_trace() {
        let path = corpus_file("kernel/vmcore-dmesg-skomra.txt");
        let analysis = analyze_file(&KernelLog, &path);
        assert_eq!(analysis.lines, count_lines(&path));
        assert_eq!(analysis.records + analysis.unparsed_lines, analysis.lines);
        let oops: Vec<_> = analysis.findings.iter().filter(|f| f.kind == FindingKind::KernelOops).collect();
        assert_eq!(oops.len(), 1);
        assert_eq!(oops[0].line, 1062);
        assert_eq!(oops[0].time.as_deref(), Some("181.012541"));
        assert!(oops[0].summary.contains("NULL pointer dereference"));
        assert!(oops[0].evidence.iter().any(|e| e.contains("Oops: 0010 [#1] SMP")));
        assert!(oops[0].evidence.iter().any(|e| e.contains("Call Trace:")));
        let warnings: Vec<u64> = analysis
            .findings
            .iter()
            .filter(|f| f.kind == FindingKind::KernelWarning)
            .map(|f| f.line)
            .collect();
        assert_eq!(warnings, vec![994, 1032]);
    }

    #[test]
    fn warning_evidence_includes_its_call_trace_and_ends_with_it() {
        let path = corpus_file("kernel/dmesg-centos6-rh_taint-warning-ygh");
        let analysis = analyze_file(&KernelLog, &path);
        let warning = &analysis.findings[0];
        assert_eq!(warning.kind, FindingKind::KernelWarning);
        assert_eq!(warning.line, 324);
        assert!(warning.summary.starts_with("WARNING: at kernel/rh_taint.c:13"));
        let trace = warning.evidence.iter().position(|e| e == "Call Trace:").unwrap();
        assert!(warning.evidence[trace + 1].contains("warn_slowpath_common"));
        assert!(warning.evidence.last().unwrap().starts_with("---[ end trace"));
    }

    #[test]
    fn every_soft_lockup_and_the_paging_oops_of_windxrunner() {
        let path = corpus_file("kernel/vmcore-dmesg-windxrunner.txt");
        let text = std::fs::read(&path).unwrap();
        let expected = memchr::memmem::find_iter(&text, b"BUG: soft lockup").count();
        let analysis = analyze_file(&KernelLog, &path);
        let lockups: Vec<_> =
            analysis.findings.iter().filter(|f| f.kind == FindingKind::SoftLockup).collect();
        assert_eq!(lockups.len(), expected);
        assert_eq!(lockups[0].line, 39);
        assert!(lockups[0].summary.contains("CPU#20 stuck for 67s"));
        let oops = analysis.findings.iter().find(|f| f.kind == FindingKind::KernelOops).unwrap();
        assert_eq!(oops.line, 9481);
        assert!(oops.summary.contains("paging request"));
    }

    #[test]
    fn kernel_files_are_recognised() {
        for name in [
            "kernel/dmesg-centos6-rh_taint-warning-ygh",
            "kernel/dmesg-centos7-php_aws",
            "kernel/vmcore-dmesg-skomra.txt",
            "kernel/vmcore-dmesg-windxrunner.txt",
            "anaconda/fedora10-thebetjr/dmesg",
        ] {
            let path = corpus_file(name);
            let head = std::fs::read(&path).unwrap();
            let head = &head[..head.len().min(64 * 1024)];
            let score = KernelLog.sniff(head, &path.file_name().unwrap().to_string_lossy());
            assert!(score >= 50, "{name}: {score}");
        }
    }
}
