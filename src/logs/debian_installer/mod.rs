//! The Debian installer's syslog: `/var/log/syslog` inside d-i (busybox `syslogd -S`),
//! `/var/log/installer/syslog` on the installed system, and the same lines captured
//! live from a log port with bootproof's host stamp in front (`[    12.345] `).
//!
//! Owns: recognising these files by content ([`Analyzer::sniff`]), reading them line by
//! line ([`Syslog`], a [`LineAnalyzer`]) into records and findings. Must not: read a
//! whole file into memory, or judge kernel messages itself (the shared kernel rules of
//! `logs::rules` do, as for dmesg).
//!
//! Layout: `grammar` is the line grammar, `rules` the table of what the installer's
//! programs write when they fail.
//!
//! # When a finding fires
//!
//! Most findings are one line and fire with it. Three span lines:
//! - main-menu's `Configuring 'X' failed with error code N` is followed by its verdict
//!   on the menu item, `Menu item 'Y' failed.`, as main-menu's next line: the finding
//!   fires there, with both lines (or at main-menu's next other line).
//! - debootstrap's `--debian-installer` protocol writes an error as `E: CODE`,
//!   `EA: argument` lines and `EF: format`: the finding fires at `EF:` with the format
//!   filled in (or at debootstrap's next other line).
//! - A kernel report (Oops, BUG, WARNING with its Call Trace) fires at its end marker,
//!   the next report, or when 64 lines of evidence are collected.
//!
//! [`LineAnalyzer::finish`] fires whatever is still open.

mod grammar;
mod rules;

#[cfg(test)]
mod tests;

use std::io::BufRead;
use std::path::{Path, PathBuf};

pub use grammar::{DiLevel, DiLine, child_output, di_line, logged, said};

use super::kernel::kernel_line;
use super::lines::{Tally, head_lines, is_text, text as text_of};
use super::live::{self, LineAnalyzer, strip_host_stamp};
use super::rules::{Rules, Time};
use super::{Analysis, Analyzer, Finding, LogError, LogKind};

pub fn analyzers() -> Vec<Box<dyn Analyzer>> {
    vec![Box::new(SyslogAnalyzer)]
}

/// Findings kept per log (see `anaconda::entries`): a log of endless failures cannot
/// exhaust memory.
const MAX_FINDINGS: usize = 1000;
/// Longest evidence line kept, in bytes.
const MAX_EVIDENCE_LINE: usize = 400;
/// Evidence lines of one finding.
const MAX_EVIDENCE: usize = 40;

struct SyslogAnalyzer;

impl Analyzer for SyslogAnalyzer {
    fn kind(&self) -> LogKind {
        LogKind::DiSyslog
    }

    fn sniff(&self, head: &[u8], _file_name: &str) -> u8 {
        sniff(head)
    }

    fn analyze(&self, input: &mut dyn BufRead, file: &Path) -> Result<Analysis, LogError> {
        live::analyze(&mut Syslog::new(file), input, file)
    }
}

/// Lines of the head looked at when sniffing.
const SNIFF_LINES: usize = 400;

/// Tags only the installer's programs log under; busybox's banners start its syslog.
const DI_TAGS: &[&[u8]] = &[
    b"main-menu",
    b"anna",
    b"anna-install",
    b"debconf",
    b"in-target",
    b"apt-install",
    b"apt-setup",
    b"debootstrap",
    b"base-installer",
    b"partman",
    b"partman-auto",
    b"partman-lvm",
    b"partman-crypto",
    b"net/hw-detect.hotplug",
    b"netcfg",
    b"choose-mirror",
    b"cdrom-detect",
    b"check-missing-firmware",
    b"hw-detect",
    b"pkgsel",
    b"grub-installer",
    b"finish-install",
    b"clock-setup",
    b"user-setup",
    b"localechooser",
];

/// 0 unless enough of the head (host stamps aside) is syslog lines with a tag; 40–60 by
/// how much; 95 when they come from the installer's own programs (no other log has
/// main-menu, anna or in-target at the start of its messages). A line whose sender does
/// not parse is only an entry for the grammar's sake: `journalctl`'s short form has a
/// host name there, and must not count.
fn sniff(head: &[u8]) -> u8 {
    if !is_text(head) {
        return 0;
    }
    let (mut total, mut parsed, mut installer) = (0u32, 0u32, 0u32);
    for line in head_lines(head).take(SNIFF_LINES).filter(|l| !l.is_empty()) {
        total += 1;
        let Some(entry) = di_line(strip_host_stamp(line).1) else {
            continue;
        };
        let banner = entry.message.starts_with(b"syslogd started: BusyBox")
            || entry.message.starts_with(b"klogd started: BusyBox");
        // The installer's syslog starts with busybox syslogd's banner, and hundreds of
        // kernel lines (through klogd) follow before the first installer program
        // speaks: measured in a real d-i run, which the kernel log's sniffing otherwise
        // claimed.
        if banner && total <= 3 {
            return 95;
        }
        if entry.tag.is_empty() && !banner {
            continue;
        }
        parsed += 1;
        installer += u32::from(banner || DI_TAGS.contains(&entry.tag));
    }
    if total == 0 || parsed * 10 < total * 3 {
        return 0;
    }
    if installer * 10 >= parsed && installer >= 2 { 95 } else { (40 + parsed * 20 / total) as u8 }
}

/// A finding waiting for the lines that complete it.
struct Open {
    finding: Finding,
    /// Its rule's summary, to which debootstrap's filled-in `EF:` format is added.
    summary: &'static str,
    /// debootstrap's `EA:` arguments, for its `EF:` format.
    arguments: Vec<String>,
}

/// The installer's syslog read line by line (see [the module](self) for when findings
/// fire).
pub struct Syslog {
    file: PathBuf,
    tally: Tally,
    kernel: Rules,
    /// main-menu's failed step, waiting for its verdict on the menu item.
    step: Option<Open>,
    /// debootstrap's error or warning, waiting for its `EF:`/`WF:` line.
    protocol: Option<Open>,
    fired: usize,
}

impl Syslog {
    pub fn new(file: &Path) -> Self {
        Syslog {
            file: file.to_path_buf(),
            tally: Tally::default(),
            kernel: Rules::new(file),
            step: None,
            protocol: None,
            fired: 0,
        }
    }

    fn entry(&mut self, number: u64, entry: &DiLine<'_>, whole: &[u8], out: &mut Vec<Finding>) {
        if entry.tag == b"kernel" {
            let parsed = kernel_line(entry.message);
            self.kernel.kernel(number, Time::Text(entry.time), parsed.message, whole);
            out.extend(self.kernel.take_settled());
            return;
        }
        let text = child_output(entry.message);
        if entry.tag == b"main-menu"
            && let Some(mut step) = self.step.take()
        {
            // main-menu's next line after a failed step is its verdict on the menu item.
            let verdict =
                rules::first_match(entry.tag, text).is_some_and(|(i, _)| i == rules::MENU_ITEM_FAILED);
            if verdict {
                push_evidence(&mut step.finding.evidence, whole);
            }
            out.push(step.finding);
            if verdict {
                return;
            }
        }
        if entry.tag == b"debootstrap" && self.protocol_line(text, whole, out) {
            return;
        }
        let Some((index, rule)) = rules::first_match(entry.tag, text) else {
            return;
        };
        let Some((kind, severity)) = rule.outcome else {
            return;
        };
        let said = said(text);
        let finding = Finding {
            severity,
            kind,
            file: self.file.clone(),
            line: number,
            time: Some(text_of(entry.time)),
            phase: None,
            summary: format!("{}: {}: {}", rule.summary, text_of(entry.tag), text_of(clip(said))),
            evidence: vec![text_of(clip(whole))],
        };
        let open = Open { finding, summary: rule.summary, arguments: Vec::new() };
        match index {
            rules::STEP_FAILED => self.step = Some(open),
            rules::DEBOOTSTRAP_ERROR | rules::DEBOOTSTRAP_WARNING if is_protocol_code(&text[3..]) => {
                self.protocol = Some(open);
            }
            _ => out.push(open.finding),
        }
    }

    /// debootstrap's `EA:`/`EF:` (`WA:`/`WF:`) lines of an open error; true when the
    /// line belonged to it. Any other debootstrap line closes it as it is.
    fn protocol_line(&mut self, text: &[u8], whole: &[u8], out: &mut Vec<Finding>) -> bool {
        let Some(open) = &mut self.protocol else {
            return false;
        };
        let argument = text.strip_prefix(b"EA: ").or_else(|| text.strip_prefix(b"WA: "));
        let format = text.strip_prefix(b"EF: ").or_else(|| text.strip_prefix(b"WF: "));
        if let Some(argument) = argument {
            // debootstrap gives at most three; an endless run of them must not grow memory.
            if open.arguments.len() < MAX_EVIDENCE {
                open.arguments.push(text_of(argument));
            }
            push_evidence(&mut open.finding.evidence, whole);
            return true;
        }
        let Some(mut open) = self.protocol.take() else {
            return false;
        };
        let Some(format) = format else {
            out.push(open.finding);
            return false;
        };
        push_evidence(&mut open.finding.evidence, whole);
        let said = fill_format(&text_of(format), &open.arguments);
        open.finding.summary = format!("{}: debootstrap: {}", open.summary, clip_str(&said));
        out.push(open.finding);
        true
    }

    /// Findings past [`MAX_FINDINGS`] are dropped.
    fn keep(&mut self, mut found: Vec<Finding>) -> Vec<Finding> {
        let room = MAX_FINDINGS.saturating_sub(self.fired);
        found.truncate(room);
        self.fired += found.len();
        found
    }
}

impl LineAnalyzer for Syslog {
    fn kind(&self) -> LogKind {
        LogKind::DiSyslog
    }

    fn line(&mut self, number: u64, text: &[u8]) -> Vec<Finding> {
        let (_, line) = strip_host_stamp(text);
        let mut out = Vec::new();
        match di_line(line) {
            Some(entry) => {
                self.tally.record();
                // Past the cap a line is only counted: nothing it could find is kept.
                if self.fired < MAX_FINDINGS {
                    self.entry(number, &entry, line, &mut out);
                }
            }
            // busybox never splits a message; a line longer than the log port's limit
            // arrives in pieces, and the rest of it continues the entry.
            None if self.tally.records > 0 => self.tally.continuation(),
            None => self.tally.unparsed(),
        }
        self.keep(out)
    }

    fn skip(&mut self, _number: u64) -> Vec<Finding> {
        self.tally.unparsed();
        Vec::new()
    }

    fn finish(&mut self) -> Vec<Finding> {
        let mut out: Vec<Finding> =
            [self.step.take(), self.protocol.take()].into_iter().flatten().map(|open| open.finding).collect();
        out.extend(self.kernel.take_rest());
        self.keep(out)
    }

    fn tally(&self) -> Tally {
        self.tally
    }
}

/// `NOEXEC`, `COULDNTDL`: the names debootstrap gives its errors under
/// `--debian-installer`; plain debootstrap writes a sentence after `E: ` instead.
fn is_protocol_code(text: &[u8]) -> bool {
    !text.is_empty() && text.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
}

/// debootstrap's `EF:` format with its `EA:` arguments in place of each `%s`, as
/// run-debootstrap's `n_sprintf` fills it.
fn fill_format(format: &str, arguments: &[String]) -> String {
    let mut filled = String::with_capacity(format.len());
    let mut arguments = arguments.iter();
    let mut pieces = format.split("%s");
    filled.push_str(pieces.next().unwrap_or_default());
    for piece in pieces {
        filled.push_str(arguments.next().map_or("%s", String::as_str));
        filled.push_str(piece);
    }
    filled
}

fn push_evidence(evidence: &mut Vec<String>, line: &[u8]) {
    if evidence.len() < MAX_EVIDENCE {
        evidence.push(text_of(clip(line)));
    }
}

fn clip(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.len().min(MAX_EVIDENCE_LINE)]
}

fn clip_str(text: &str) -> String {
    text.chars().take(MAX_EVIDENCE_LINE).collect()
}
