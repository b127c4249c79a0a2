//! The one model of "what went wrong" shared by every parser, `inspect` and the checks.

use std::path::PathBuf;

/// Ordered: `Critical` is the most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

/// What kind of failure a finding is; names are part of `inspect --json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    InstallerTraceback,
    InstallerError,
    PayloadError,
    StorageError,
    FailedUnit,
    KernelPanic,
    KernelOops,
    KernelBug,
    KernelWarning,
    SoftLockup,
    OomKill,
    Segfault,
    AvcDenial,
    DisplayManagerFailure,
    FirmwareRefusal,
    BootFailure,
    CommandFailed,
    /// The log ends in the middle of a record: the capture was cut short.
    TruncatedLog,
    XServerFatal,
    /// The kernel refused to load or unload a module (`kernel.modules_disabled=1`, or a
    /// lockdown): what needed it goes without. The kernel logs nothing; modprobe,
    /// systemd-modules-load and udev say it.
    ModuleRefused,
}

/// Where in its boot the system was when a message was logged, as systemd, logind and
/// the kernel mark it (`logs::phase` follows the markers). Names are part of
/// `inspect --json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// From the kernel's start, the initrd included, until systemd reports the boot
    /// finished (`Startup finished in ...`).
    Startup,
    /// The boot finished: the system is up.
    Running,
    /// The system is going down: logind announced a power-off or reboot, systemd stops
    /// the targets of the boot or reached `shutdown.target`, or `systemd-shutdown` runs.
    Shutdown,
}

/// One thing that went wrong, pointing at the line that shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub kind: FindingKind,
    pub file: PathBuf,
    /// 1-based line number of the first evidence line.
    pub line: u64,
    /// The log's own timestamp, as written, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// The boot's phase when it was logged; `None` when the log does not show it (a
    /// log without systemd's markers, or an excerpt of one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    pub summary: String,
    pub evidence: Vec<String>,
}
