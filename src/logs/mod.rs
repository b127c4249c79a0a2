//! Log parsers and the findings model.
//!
//! Owns: turning every log a run captures (installer logs, the journal, kernel logs,
//! audit records, tool outputs, firmware output) into records and [`Finding`]s, after
//! the fact or, for the logs an installer streams, line by line as they arrive
//! ([`live`]).
//! Must not: start processes, touch the network, or load a whole large file into memory.
//!
//! Each log family lives in its own module and exposes `analyzers()`, the
//! [`Analyzer`]s it provides; [`registry`] collects them all, and detection picks the
//! analyzer by content (its `sniff` score), not only by name.

pub mod anaconda;
pub mod audit;
pub mod btrfs;
pub mod cmdline;
pub mod debian_installer;
pub mod finding;
pub mod firmware;
pub mod journal;
pub mod kernel;
pub mod lines;
pub mod live;
pub mod lsblk;
pub mod luks;
pub mod phase;
pub mod rules;
pub mod sddm;
pub mod sysctl;
pub mod systemctl;

pub use finding::{Finding, FindingKind, Phase, Severity};

/// The bytes of a log fixture under `tests/fixtures/logs/` (see its README for what
/// each file is and which format it was written in).
#[cfg(test)]
macro_rules! fixture {
    ($path:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/logs/", $path)) as &[u8]
    };
}
#[cfg(test)]
pub(crate) use fixture;

use std::io::BufRead;
use std::path::{Path, PathBuf};

/// What kind of log a file is. `as_str` names are part of `inspect --json` and documented
/// in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogKind {
    AnacondaLog,
    ProgramLog,
    StorageLog,
    PackagingLog,
    DnfLog,
    DnfLibrepoLog,
    Syslog,
    XorgLog,
    KsScriptLog,
    AnacondaTraceback,
    /// anaconda's log port: rsyslog's `anaconda_syslog` lines of every process.
    AnacondaStream,
    /// The Debian installer's syslog (busybox `syslogd -S`).
    DiSyslog,
    JournalExport,
    JournalJson,
    JournalShort,
    Dmesg,
    Audit,
    Sysctl,
    BtrfsSubvolumeList,
    LuksDump,
    Lsblk,
    LsblkJson,
    SystemctlListUnits,
    SddmLog,
    Firmware,
    SerialConsole,
    Unknown,
}

impl LogKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LogKind::AnacondaLog => "anaconda-log",
            LogKind::ProgramLog => "program-log",
            LogKind::StorageLog => "storage-log",
            LogKind::PackagingLog => "packaging-log",
            LogKind::DnfLog => "dnf-log",
            LogKind::DnfLibrepoLog => "dnf-librepo-log",
            LogKind::Syslog => "syslog",
            LogKind::XorgLog => "xorg-log",
            LogKind::KsScriptLog => "ks-script-log",
            LogKind::AnacondaTraceback => "anaconda-traceback",
            LogKind::AnacondaStream => "anaconda-stream",
            LogKind::DiSyslog => "di-syslog",
            LogKind::JournalExport => "journal-export",
            LogKind::JournalJson => "journal-json",
            LogKind::JournalShort => "journal-short",
            LogKind::Dmesg => "dmesg",
            LogKind::Audit => "audit",
            LogKind::Sysctl => "sysctl",
            LogKind::BtrfsSubvolumeList => "btrfs-subvolume-list",
            LogKind::LuksDump => "luks-dump",
            LogKind::Lsblk => "lsblk",
            LogKind::LsblkJson => "lsblk-json",
            LogKind::SystemctlListUnits => "systemctl-list-units",
            LogKind::SddmLog => "sddm-log",
            LogKind::Firmware => "firmware",
            LogKind::SerialConsole => "serial-console",
            LogKind::Unknown => "unknown",
        }
    }
}

/// The result of analysing one file: how much of it was understood, and what went wrong.
/// Every line is a record, a continuation line of a record or unparsed, so
/// `records + continuation_lines + unparsed_lines == lines` (see
/// [the accounting rule](lines#the-accounting-rule)).
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    pub records: u64,
    pub continuation_lines: u64,
    pub unparsed_lines: u64,
    pub lines: u64,
    pub findings: Vec<Finding>,
}

/// Errors while reading or parsing a log, each naming the file.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Malformed { path: PathBuf, line: u64, message: String },
}

/// One family of logs: recognises its files and turns them into records and findings.
pub trait Analyzer: Send + Sync {
    fn kind(&self) -> LogKind;
    /// How sure this analyzer is that `head` (the first bytes of the file, up to 64 KiB)
    /// is its format: 0 = not mine, 100 = certain. `file_name` may break ties.
    fn sniff(&self, head: &[u8], file_name: &str) -> u8;
    /// Reads the whole stream (never all at once) and reports records and findings.
    /// `file` is only used to label findings.
    fn analyze(&self, input: &mut dyn BufRead, file: &Path) -> Result<Analysis, LogError>;
}

/// Every analyzer bootproof knows.
pub fn registry() -> Vec<Box<dyn Analyzer>> {
    let mut all: Vec<Box<dyn Analyzer>> = Vec::new();
    all.extend(anaconda::analyzers());
    all.extend(debian_installer::analyzers());
    all.extend(journal::analyzers());
    all.extend(kernel::analyzers());
    all.extend(audit::analyzers());
    all.extend(sysctl::analyzers());
    all.extend(btrfs::analyzers());
    all.extend(luks::analyzers());
    all.extend(lsblk::analyzers());
    all.extend(systemctl::analyzers());
    all.extend(sddm::analyzers());
    all.extend(firmware::analyzers());
    all
}
