//! Which installer log lines are findings, in one table.
//!
//! Owns: the data that turns an entry of anaconda's logs into a [`Finding`] kind and
//! severity, the list of failing commands that are only probes, and the sources whose
//! tracebacks are the installer's. Must not: parse lines (see `grammar`) or keep state
//! (see `entries`).
//!
//! The first matching rule wins; a rule without an outcome marks a line as known to be
//! harmless. Every harmless entry names the real log it was seen in and why it does not
//! mean the install went wrong: nothing error-level may be reported for the successful
//! Rocky 9.1 or CentOS 7 installs of the corpus.

use memchr::memmem::Finder;

use super::grammar::{Entry, Level};
use crate::logs::{FindingKind, LogKind, Severity};

pub struct Rule {
    pub logs: &'static [LogKind],
    pub min_level: Level,
    /// The logger/tag must start with this.
    pub source: &'static str,
    /// The message must contain this ("" = any message).
    pub contains: &'static str,
    pub outcome: Option<(FindingKind, Severity)>,
    pub summary: &'static str,
}

/// The rules of one kind of log, with their searches built once: rules run on every
/// entry, so they must cost next to nothing on the lines they do not match.
pub struct RuleSet {
    rules: Vec<(usize, &'static Rule, Option<Finder<'static>>)>,
    /// No rule looks at entries below this level.
    floor: Level,
}

impl RuleSet {
    pub fn for_kind(kind: LogKind) -> RuleSet {
        let rules: Vec<_> = RULES
            .iter()
            .enumerate()
            .filter(|(_, rule)| rule.logs.contains(&kind))
            .map(|(index, rule)| {
                let finder = (!rule.contains.is_empty()).then(|| Finder::new(rule.contains));
                (index, rule, finder)
            })
            .collect();
        let floor = rules.iter().map(|(_, rule, _)| rule.min_level).min().unwrap_or(Level::Critical);
        RuleSet { rules, floor }
    }

    /// The first rule that matches, with its index in [`RULES`].
    pub fn first_match(&self, entry: &Entry<'_>) -> Option<(usize, &'static Rule)> {
        if entry.level < self.floor {
            return None;
        }
        self.rules
            .iter()
            .find(|(_, rule, finder)| {
                entry.level >= rule.min_level
                    && entry.source.starts_with(rule.source.as_bytes())
                    && finder.as_ref().is_none_or(|f| f.find(entry.message).is_some())
            })
            .map(|(index, rule, _)| (*index, *rule))
    }
}

use FindingKind::*;
use Level::{Error as Err, Info};
use LogKind::*;

const PAYLOAD_LOGS: &[LogKind] = &[PackagingLog, DnfLog, DnfLibrepoLog];

pub static RULES: &[Rule] = &[
    // storage.log, Fedora 43 (failed for another reason) and every install without FCoE
    // hardware: the FCoE module loads `libfc` at start-up; "File exists" means it is
    // already loaded.
    Rule {
        logs: &[StorageLog],
        min_level: Err,
        source: "blivet",
        contains: "failed to load libfc",
        outcome: None,
        summary: "",
    },
    // storage.log, Fedora 43: the FCoE EDD probe script is absent when fcoe-utils is not
    // in the image; it only looks for an FCoE boot disk.
    Rule {
        logs: &[StorageLog],
        min_level: Err,
        source: "program",
        contains: "fcoe_edd.sh",
        outcome: None,
        summary: "",
    },
    // storage.log, CentOS 7 (successful): matching BIOS EDD entries to disks only
    // orders boot disks; VMs often have no match.
    Rule {
        logs: &[StorageLog],
        min_level: Err,
        source: "blivet",
        contains: "edd: unable to match edd entry",
        outcome: None,
        summary: "",
    },
    // anaconda.log, CentOS 7 (successful): geolocation only preselects language and
    // time zone, and needs a network the install did not have yet.
    Rule {
        logs: &[AnacondaLog],
        min_level: Err,
        source: "anaconda",
        contains: "Geolocation refresh failed",
        outcome: None,
        summary: "",
    },
    // anaconda.log, CentOS 6 (successful NFS install): the tree has no .treeinfo;
    // anaconda then reads the repository metadata directly.
    Rule {
        logs: &[AnacondaLog],
        min_level: Err,
        source: "",
        contains: "Error downloading treeinfo file",
        outcome: None,
        summary: "",
    },
    // packaging.log, CentOS 7 (successful): yum's optional product-id plugin is not in
    // the installer image.
    Rule {
        logs: &[PackagingLog],
        min_level: Err,
        source: "yum",
        contains: "can't be imported",
        outcome: None,
        summary: "",
    },
    // anaconda.yum.log, CentOS 6 (successful): yum logs an empty comps group at ERROR;
    // there is simply nothing to install from it.
    Rule {
        logs: &[PackagingLog],
        min_level: Err,
        source: "",
        contains: "does not have any packages",
        outcome: None,
        summary: "",
    },
    // anaconda.log, CentOS 6 (successful): `lang=us` on the kernel command line is not
    // a locale; anaconda falls back to its default language.
    Rule {
        logs: &[AnacondaLog],
        min_level: Err,
        source: "",
        contains: "unable to set to requested language",
        outcome: None,
        summary: "",
    },
    // Fedora 43 packaging.log (inside the tb) and its journal: the download that made
    // the install fail. Logged at WARNING, one line per package.
    Rule {
        logs: &[PackagingLog, DnfLog, DnfLibrepoLog, JournalShort],
        min_level: Info,
        source: "",
        contains: "Failed to download '",
        outcome: Some((PayloadError, Severity::Error)),
        summary: "package download failed",
    },
    // Fedora 43 dnf.log: a kickstart `-package` excluding a package that a group or
    // `%packages` also asks for; dnf carries on without it.
    Rule {
        logs: &[DnfLog],
        min_level: Err,
        source: "",
        contains: "matches only excluded packages",
        outcome: Some((PayloadError, Severity::Warning)),
        summary: "requested package is excluded",
    },
    Rule {
        logs: PAYLOAD_LOGS,
        min_level: Err,
        source: "",
        contains: "",
        outcome: Some((PayloadError, Severity::Error)),
        summary: "payload error",
    },
    Rule {
        logs: &[StorageLog],
        min_level: Err,
        source: "",
        contains: "",
        outcome: Some((StorageError, Severity::Error)),
        summary: "storage error",
    },
    Rule {
        logs: &[AnacondaLog],
        min_level: Level::Critical,
        source: "",
        contains: "",
        outcome: Some((InstallerError, Severity::Critical)),
        summary: "installer critical error",
    },
    Rule {
        logs: &[AnacondaLog],
        min_level: Err,
        source: "",
        contains: "",
        outcome: Some((InstallerError, Severity::Error)),
        summary: "installer error",
    },
    // Old servers print "Fatal server error:" without a class; new ones as (EE).
    Rule {
        logs: &[XorgLog],
        min_level: Info,
        source: "",
        contains: "Fatal server error",
        outcome: Some((XServerFatal, Severity::Error)),
        summary: "X server failed",
    },
    // ks-script logs are the raw output of %pre/%post scripts. Rocky 9.1's %post calls
    // restorecon in a chroot without it; anaconda ignores %post failures unless
    // --erroronfail, so this is a warning, never an error.
    Rule {
        logs: &[KsScriptLog],
        min_level: Info,
        source: "",
        contains: "command not found",
        outcome: Some((CommandFailed, Severity::Warning)),
        summary: "kickstart script command missing",
    },
];

/// Whose tracebacks in syslog or the journal are the installer's. NetworkManager logs
/// (at debug level) a traceback from anaconda's secret agent on every CentOS 7 install
/// (`SaveSecrets is not a valid method`), which is harmless, so only anaconda's own
/// processes count.
pub fn traceback_source(kind: LogKind, source: &[u8]) -> bool {
    match kind {
        Syslog | JournalShort => {
            source.starts_with(b"anaconda") || source.starts_with(b"org.fedoraproject.Anaconda")
        }
        _ => true,
    }
}

/// A command that failed, as program.log shows it: how much that matters.
/// `None` = the non-zero code is an answer, not a failure.
pub fn command_failure(command: &str) -> Option<Severity> {
    // Probes whose non-zero exit means "no": seen failing in the successful Rocky 9.1
    // (fcoe_edd.sh -i, findmnt -rn, resize2fs -P on the live image) and CentOS 7
    // (multipath -c on every disk, `multipath --version` in Rocky 9.1, spice-vdagent without a SPICE channel) installs.
    const PROBES: &[&str] = &[
        "findmnt",
        "/usr/libexec/fcoe/fcoe_edd.sh",
        "multipath",
        "systemd-detect-virt",
        "spice-vdagent",
        "resize2fs -P",
    ];
    // blivet scans the installer's own runtime image like any disk; checks on it fail
    // (CentOS 7: e2fsck exit 8 on /dev/loop1) without touching the target.
    const INSTALLER_MEDIA: &[&str] = &["/dev/loop", "/dev/mapper/live-"];
    // Without these the installed system cannot boot or has no file systems.
    const CRITICAL: &[&str] = &[
        "mkfs",
        "mke2fs",
        "mkswap",
        "mount ",
        "lvcreate",
        "vgcreate",
        "pvcreate",
        "cryptsetup",
        "parted",
        "wipefs",
        "grub2-install",
        "grub2-mkconfig",
        "efibootmgr",
        "dracut",
        "rpm ",
        "zipl",
        "bootctl",
    ];
    let program = command.trim_start_matches("/usr/bin/").trim_start_matches("/usr/sbin/");
    let program = program.trim_start_matches("/sbin/").trim_start_matches("/bin/");
    if PROBES.iter().any(|p| program.starts_with(p) || command.starts_with(p))
        || INSTALLER_MEDIA.iter().any(|m| command.contains(m))
    {
        return None;
    }
    if CRITICAL.iter().any(|c| program.starts_with(c)) {
        Some(Severity::Error)
    } else {
        Some(Severity::Warning)
    }
}
