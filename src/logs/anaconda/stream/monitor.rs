//! What kickstart-tests and lorax fail an install on in anaconda's log port, beyond what
//! the per-file rules of anaconda's logs find.
//!
//! Owns: the table of stream lines (any program's) that are findings. Must not: parse
//! lines (see the stream's grammar) or keep state.
//!
//! The sources: lorax's `pylorax/monitor.py` (`LogRequestHandler.simple_tests` and
//! `re_tests`) and kickstart-tests' `scripts/launcher/lib/log_monitor/log_handler.py`
//! (`VirtualLogRequestHandler`, which adds to lorax's list and ignores some lines).

use std::sync::LazyLock;

use memchr::memmem;
use regex::bytes::Regex;

use super::StreamLine;
use crate::logs::anaconda::grammar::Level;
use crate::logs::{FindingKind, Severity};

use FindingKind::{InstallerError, PayloadError, StorageError};

/// A line of the stream that other programs than anaconda's write, or that no per-file
/// rule judged, and that kickstart-tests (`log_monitor/log_handler.py`) or lorax
/// (`pylorax/monitor.py`) fail an install on.
pub struct StreamRule {
    /// `programname`, exactly; "" is any.
    program: &'static str,
    /// The line is at least this severe.
    min: Level,
    /// Every one of these occurs in the message.
    contains: &'static [&'static str],
    pub outcome: Option<(FindingKind, Severity)>,
    pub summary: &'static str,
}

impl StreamRule {
    fn matches(&self, line: &StreamLine<'_>) -> bool {
        line.severity >= self.min
            && (self.program.is_empty() || line.program == self.program.as_bytes())
            && self.contains.iter().all(|c| memmem::find(line.message, c.as_bytes()).is_some())
    }
}

/// Every literal the rules look for, in one pass: nearly every line of the stream matches
/// no rule, and a rule without one needs a CRIT line.
static ANY: LazyLock<Regex> = LazyLock::new(|| {
    let literals: Vec<String> =
        STREAM_RULES.iter().flat_map(|r| r.contains.first()).map(|c| regex::escape(c)).collect();
    Regex::new(&literals.join("|")).expect("escaped literals always compile")
});

/// The first rule matching `line`.
pub fn first_match(line: &StreamLine<'_>) -> Option<&'static StreamRule> {
    if line.severity < Level::Critical && !ANY.is_match(line.message) {
        return None;
    }
    STREAM_RULES.iter().find(|rule| rule.matches(line))
}

/// First match wins; a rule without an outcome marks a line no rule below may report.
static STREAM_RULES: &[StreamRule] = &[
    // lorax skips a line that says IGNORED: anaconda already dealt with it.
    StreamRule { program: "", min: Level::Trace, contains: &["IGNORED"], outcome: None, summary: "" },
    // systemd-coredump's CRIT line; anaconda dumping core is lorax's
    // `Process [0-9]+ \(anaconda\) of user [0-9]+ dumped core`.
    StreamRule {
        program: "",
        min: Level::Trace,
        contains: &[" (anaconda) of user ", "dumped core"],
        outcome: Some((InstallerError, Severity::Critical)),
        summary: "anaconda crashed",
    },
    // kickstart-tests: another program's core dump does not stop the install.
    StreamRule {
        program: "systemd-coredump",
        min: Level::Critical,
        contains: &[],
        outcome: Some((InstallerError, Severity::Warning)),
        summary: "a program crashed",
    },
    // kickstart-tests, Red Hat bug 1886809: mdadm reports a degraded array at CRIT while
    // anaconda creates it.
    StreamRule {
        program: "mdadm",
        min: Level::Critical,
        contains: &["DegradedArray event detected"],
        outcome: Some((StorageError, Severity::Warning)),
        summary: "RAID array degraded",
    },
    // kickstart-tests: team networking is deprecated; the kernel says so at CRIT.
    StreamRule {
        program: "kernel",
        min: Level::Critical,
        contains: &["Deprecated Driver is detected: team "],
        outcome: Some((FindingKind::KernelWarning, Severity::Info)),
        summary: "deprecated driver",
    },
    StreamRule {
        program: "",
        min: Level::Trace,
        contains: &["The following error occurred while installing.  This is a fatal error"],
        outcome: Some((InstallerError, Severity::Critical)),
        summary: "installation failed",
    },
    StreamRule {
        program: "",
        min: Level::Trace,
        contains: &["Payload setup error:"],
        outcome: Some((PayloadError, Severity::Error)),
        summary: "payload setup failed",
    },
    StreamRule {
        program: "",
        min: Level::Trace,
        contains: &["Some packages, groups or modules are broken, the installation will be aborted."],
        outcome: Some((PayloadError, Severity::Error)),
        summary: "software selection broken",
    },
    // rpm's `Error in POSTIN scriptlet in rpm package X` (also POSTTRANS, <unknown>);
    // `Non-fatal POSTIN scriptlet failure` is worded otherwise and stays quiet.
    StreamRule {
        program: "",
        min: Level::Trace,
        contains: &["Error in ", " scriptlet in rpm package "],
        outcome: Some((PayloadError, Severity::Error)),
        summary: "package scriptlet failed",
    },
    StreamRule {
        program: "",
        min: Level::Trace,
        contains: &["Transaction check error:"],
        outcome: Some((PayloadError, Severity::Error)),
        summary: "package transaction check failed",
    },
    StreamRule {
        program: "",
        min: Level::Trace,
        contains: &["Stream was not specified for a module"],
        outcome: Some((PayloadError, Severity::Error)),
        summary: "module stream missing",
    },
    StreamRule {
        program: "",
        min: Level::Trace,
        contains: &["Modular dependency problem:"],
        outcome: Some((PayloadError, Severity::Error)),
        summary: "module dependency broken",
    },
    StreamRule {
        program: "",
        min: Level::Trace,
        contains: &["insufficient disk space:"],
        outcome: Some((PayloadError, Severity::Error)),
        summary: "not enough disk space",
    },
    StreamRule {
        program: "",
        min: Level::Trace,
        contains: &["Not enough disk space to download the packages"],
        outcome: Some((PayloadError, Severity::Error)),
        summary: "not enough disk space",
    },
    StreamRule {
        program: "",
        min: Level::Trace,
        contains: &["error populating transaction after"],
        outcome: Some((PayloadError, Severity::Error)),
        summary: "package transaction failed",
    },
    // anaconda 21's yum payload (lorax's `packaging: Missed: NoSuchPackage`,
    // `packaging: Installation failed`).
    StreamRule {
        program: "",
        min: Level::Trace,
        contains: &["packaging: Missed: NoSuchPackage"],
        outcome: Some((PayloadError, Severity::Error)),
        summary: "package missing",
    },
    StreamRule {
        program: "",
        min: Level::Trace,
        contains: &["packaging: Installation failed"],
        outcome: Some((PayloadError, Severity::Error)),
        summary: "installation failed",
    },
    // pykickstart's parse error.
    StreamRule {
        program: "",
        min: Level::Trace,
        contains: &["The following problem occurred on line"],
        outcome: Some((InstallerError, Severity::Error)),
        summary: "kickstart error",
    },
    StreamRule {
        program: "",
        min: Level::Trace,
        contains: &["storage configuration failed:"],
        outcome: Some((StorageError, Severity::Error)),
        summary: "storage configuration failed",
    },
    StreamRule {
        program: "",
        min: Level::Trace,
        contains: &["Not enough space in file systems for the current software selection."],
        outcome: Some((StorageError, Severity::Error)),
        summary: "file systems too small",
    },
    // anaconda asks this after a non-fatal error of a kickstart install and waits for
    // an answer nobody gives.
    StreamRule {
        program: "",
        min: Level::Trace,
        contains: &["Would you like to ignore this and continue with installation?"],
        outcome: Some((InstallerError, Severity::Error)),
        summary: "installer waits for an answer",
    },
    StreamRule {
        program: "",
        min: Level::Trace,
        contains: &["crashed on signal"],
        outcome: Some((InstallerError, Severity::Error)),
        summary: "a program crashed",
    },
    StreamRule {
        program: "",
        min: Level::Trace,
        contains: &["traceback script(s) have been run"],
        outcome: Some((InstallerError, Severity::Error)),
        summary: "installer crashed",
    },
    // kickstart-tests fails an install on any CRIT line (the exceptions are above).
    StreamRule {
        program: "",
        min: Level::Critical,
        contains: &[],
        outcome: Some((InstallerError, Severity::Error)),
        summary: "critical message",
    },
];
