//! Which lines of the Debian installer's syslog are findings, in one table.
//!
//! Owns: the data that turns a syslog line of d-i into a [`Finding`](crate::logs::Finding)
//! kind and severity. Must not: parse lines (see `grammar`) or keep state (see the
//! analyzer in `mod.rs`); kernel lines go to the shared kernel rules, not here.
//!
//! Each rule matches the message as the program writes it after `tag[pid]: ` (without
//! the `(process:N): ` in front of a program's output that main-menu ran), so the table
//! reads like the log. The first matching rule wins; a rule without an outcome marks a
//! known harmless line that a broader rule below would otherwise report. Every rule says
//! which program writes the line; the wording was read in the programs of Debian 12's
//! installer (the udebs of `main/debian-installer`, bookworm) and their sources.

use std::sync::LazyLock;

use memchr::memmem;
use regex::bytes::Regex;

use crate::logs::{FindingKind, Severity};

pub struct Rule {
    /// The syslog tag, exactly; "" is any tag.
    pub tag: &'static str,
    /// The message starts with this ("" = any start).
    pub starts: &'static str,
    /// ... and contains this after the start ("" = anything).
    pub contains: &'static str,
    pub outcome: Option<(FindingKind, Severity)>,
    pub summary: &'static str,
}

impl Rule {
    pub fn matches(&self, tag: &[u8], text: &[u8]) -> bool {
        (self.tag.is_empty() || tag == self.tag.as_bytes())
            && text.starts_with(self.starts.as_bytes())
            && (self.contains.is_empty()
                || memmem::find(&text[self.starts.len()..], self.contains.as_bytes()).is_some())
    }
}

/// What any rule needs in a message, in one pass (a start, or what a rule without one
/// looks for anywhere): nearly every line of a syslog matches no rule.
static ANY: LazyLock<Regex> = LazyLock::new(|| {
    let needs: Vec<String> = RULES
        .iter()
        .map(|r| {
            if r.starts.is_empty() {
                regex::escape(r.contains)
            } else {
                format!("^{}", regex::escape(r.starts))
            }
        })
        .collect();
    Regex::new(&needs.join("|")).expect("escaped literals always compile")
});

/// The first rule matching a message of `tag`, with its index in [`RULES`].
pub fn first_match(tag: &[u8], text: &[u8]) -> Option<(usize, &'static Rule)> {
    if !ANY.is_match(text) {
        return None;
    }
    RULES.iter().enumerate().find(|(_, rule)| rule.matches(tag, text))
}

use FindingKind::{InstallerError, PayloadError, StorageError};
use Severity::{Error, Warning};

/// main-menu's line for a step whose `postinst` failed: it opens a finding that the
/// menu's verdict on the same item closes (see `RULES[MENU_ITEM_FAILED]`).
pub const STEP_FAILED: usize = 0;
/// main-menu's verdict on the menu item the user (or the preseed) chose.
pub const MENU_ITEM_FAILED: usize = 1;
/// debootstrap's error and warning lines, which may be its `--debian-installer`
/// protocol (`E: CODE`, `EA: argument`, `EF: format`).
pub const DEBOOTSTRAP_ERROR: usize = 10;
pub const DEBOOTSTRAP_WARNING: usize = 11;

pub static RULES: &[Rule] = &[
    // main-menu (`di_config_package`): `udpkg --configure` of a step failed; the step
    // is left half-configured. Exit code 10 (back up) and 30 are not failures and are
    // not logged so.
    Rule {
        tag: "main-menu",
        starts: "WARNING **: Configuring '",
        contains: "' failed with error code ",
        outcome: Some((InstallerError, Error)),
        summary: "installer step failed",
    },
    // main-menu (`main`): the chosen menu item failed; main-menu then shows
    // `debian-installer/main-menu/item-failure` at critical priority and lowers the
    // debconf priority, so an unattended install stops here.
    Rule {
        tag: "main-menu",
        starts: "WARNING **: Menu item '",
        contains: "' failed",
        outcome: Some((InstallerError, Error)),
        summary: "installer menu item failed",
    },
    Rule {
        tag: "main-menu",
        starts: "WARNING **: Deep recursion configuring package ",
        contains: "",
        outcome: Some((InstallerError, Error)),
        summary: "installer step dependency loop",
    },
    Rule {
        tag: "main-menu",
        starts: "WARNING **: Internal error! Cannot find ",
        contains: "",
        outcome: Some((InstallerError, Error)),
        summary: "installer menu broken",
    },
    // main-menu (`set_package_title`): only the title bar of the step's questions.
    Rule {
        tag: "main-menu",
        starts: "WARNING **: Unable to set title for ",
        contains: "",
        outcome: None,
        summary: "",
    },
    // anna (`install_modules`): a udeb could not be downloaded; the retriever then asks
    // `retriever/net/error` (retry, change mirror) at critical priority.
    Rule {
        tag: "anna",
        starts: "WARNING **: package retrieval failed",
        contains: "",
        outcome: Some((PayloadError, Error)),
        summary: "installer component download failed",
    },
    // anna: a downloaded udeb does not match its checksum (`bad sha256sum`; `bad md5sum`
    // before Debian 9).
    Rule {
        tag: "anna",
        starts: "WARNING **: bad ",
        contains: "sum",
        outcome: Some((PayloadError, Error)),
        summary: "installer component corrupt",
    },
    // anna (`get_packages`): the mirror's udeb index could not be read.
    Rule {
        tag: "anna",
        starts: "WARNING **: bad d-i Packages file",
        contains: "",
        outcome: Some((PayloadError, Error)),
        summary: "installer component index unreadable",
    },
    // anna (`packages_ok`): the mirror has no kernel modules for the installer's kernel
    // (an installer image older or newer than the mirror); it asks
    // `anna/no_kernel_modules` at critical priority.
    Rule {
        tag: "anna",
        starts: "WARNING **: no packages matching running kernel ",
        contains: "",
        outcome: Some((PayloadError, Error)),
        summary: "no installer modules for the running kernel",
    },
    // anna: an index entry without a file name is skipped; the install goes on.
    Rule {
        tag: "anna",
        starts: "ERROR **: no Filename field for ",
        contains: "",
        outcome: Some((PayloadError, Warning)),
        summary: "installer component skipped",
    },
    // debootstrap (`error` in /usr/share/debootstrap/functions): under
    // `--debian-installer` as `E: CODE`, `EA: argument` lines and `EF: format`; the checks
    // before it switches to run-debootstrap's pipe (NOEXEC, NEEDROOT, a bad option) write
    // them to its output, which `log-output -t debootstrap` logs.
    Rule {
        tag: "debootstrap",
        starts: "E: ",
        contains: "",
        outcome: Some((PayloadError, Error)),
        summary: "base system installation failed",
    },
    // debootstrap (`warning`): `W: CODE` ... `WF: format` (RETRYING, CORRUPTFILE, a
    // package it could not download but will retry); debootstrap carries on.
    Rule {
        tag: "debootstrap",
        starts: "W: ",
        contains: "",
        outcome: Some((PayloadError, Warning)),
        summary: "base system installation warning",
    },
    // The target disk is full (tar of live-installer, dpkg, apt, mkfs): whatever runs
    // next fails too.
    Rule {
        tag: "",
        starts: "",
        contains: "No space left on device",
        outcome: Some((StorageError, Error)),
        summary: "target file system full",
    },
    // dpkg in the target (debootstrap's second stage, base-installer's kernel, pkgsel):
    // a package failed to unpack or configure.
    Rule {
        tag: "",
        starts: "dpkg: error processing ",
        contains: "",
        outcome: Some((PayloadError, Error)),
        summary: "package failed to install",
    },
    // update-initramfs in the target (`in-target`) lists firmware that modules of the
    // initramfs could load; a virtual machine's devices need none.
    Rule {
        tag: "in-target",
        starts: "W: Possible missing firmware ",
        contains: "",
        outcome: None,
        summary: "",
    },
    // apt in a chroot where its `_apt` user does not exist yet only downloads without
    // dropping privileges.
    Rule {
        tag: "",
        starts: "W: No sandbox user '_apt' on the system",
        contains: "",
        outcome: None,
        summary: "",
    },
    // apt-get run by `in-target`, `apt-install`, apt-setup and base-installer
    // (`E: Unable to locate package foo`, `E: Package 'foo' has no installation
    // candidate`, `E: Broken packages`, `E: Sub-process /usr/bin/dpkg returned an error
    // code (1)`). A bare `E:` is debconf-apt-progress splitting apt's line.
    Rule {
        tag: "",
        starts: "E:",
        contains: "",
        outcome: Some((PayloadError, Error)),
        summary: "package installation failed",
    },
    Rule {
        tag: "",
        starts: "W: ",
        contains: "",
        outcome: Some((PayloadError, Warning)),
        summary: "apt warning",
    },
    // tasksel, run by pkgsel through `in-target` (`error` in /usr/bin/tasksel: `tasksel:
    // apt-get failed (100)`, `tasksel: aptitude failed (100)` before Debian 7); pkgsel
    // then fails and main-menu reports its step.
    Rule {
        tag: "in-target",
        starts: "tasksel: ",
        contains: "failed",
        outcome: Some((PayloadError, Error)),
        summary: "software selection failed",
    },
    // tasksel's `warning` (a task's test script failed); the selection goes on.
    Rule {
        tag: "in-target",
        starts: "tasksel: ",
        contains: "",
        outcome: Some((PayloadError, Warning)),
        summary: "software selection warning",
    },
    // in-target (di-utils): mounting /proc, /sys and /dev in the target failed.
    Rule {
        tag: "in-target",
        starts: "Unexpected error; command not executed: ",
        contains: "",
        outcome: Some((InstallerError, Error)),
        summary: "command in the target not run",
    },
    // partman-auto (`recipes.sh`): the preseeded expert recipe does not fit the disk;
    // with no other recipe partman-auto asks at critical priority.
    Rule {
        tag: "partman-auto",
        starts: "Available disk space (",
        contains: "too small for expert recipe",
        outcome: Some((StorageError, Error)),
        summary: "partitioning recipe does not fit the disk",
    },
    // partman-auto (`display.d/10initial_auto`): `partman-auto/method` is not one it knows.
    Rule {
        tag: "partman-auto",
        starts: "Unsupported method '",
        contains: "",
        outcome: Some((StorageError, Error)),
        summary: "unknown partitioning method",
    },
    // partman (`bin/partman`): low memory, LVM or crypto support is left out.
    Rule {
        tag: "partman",
        starts: "Insufficient free memory to load ",
        contains: "",
        outcome: Some((StorageError, Warning)),
        summary: "partitioning without LVM or crypto support",
    },
    // cryptsetup's luksFormat, run by partman-crypto through `log-output -t
    // partman-crypto` (libcryptsetup: `Cannot format device %s in use.`, `... permission
    // denied.`).
    Rule {
        tag: "partman-crypto",
        starts: "",
        contains: "Cannot format device",
        outcome: Some((StorageError, Error)),
        summary: "encrypted volume not created",
    },
    // lvcreate and vgcreate, run by partman-lvm (liblvm2cmd: `Insufficient free space: %lu
    // extents needed, but only %u available`, `Volume group "%s" has insufficient free
    // space (%u extents): %u required.`).
    Rule {
        tag: "partman-lvm",
        starts: "",
        contains: "nsufficient free space",
        outcome: Some((StorageError, Error)),
        summary: "logical volume does not fit",
    },
    // grub-installer: its own `error "Running 'grub-install ...' failed."`, and
    // grub-install's `grub-install: error: ...` that `log-output -t grub-installer` logs.
    Rule {
        tag: "grub-installer",
        starts: "",
        contains: "error: ",
        outcome: Some((InstallerError, Error)),
        summary: "boot loader not installed",
    },
    // base-installer (`library.sh`): an answer a preseed may give but need not.
    Rule {
        tag: "base-installer",
        starts: "warning: Failed to get debconf answer ",
        contains: "",
        outcome: None,
        summary: "",
    },
    // The shell helpers' `error()` (`logger -t <step> "error: ..."`): base-installer's
    // `exiting on error base-installer/debootstrap-failed` and `.../kernel/failed-install`,
    // net-retriever's checksum and signature checks, pkgsel, finish-install.
    Rule {
        tag: "",
        starts: "error: ",
        contains: "",
        outcome: Some((InstallerError, Error)),
        summary: "installer error",
    },
    // Their `warning()`: pkgsel and finish-install run their hook scripts and only warn
    // when one fails (`warning: <script> returned error code N`).
    Rule {
        tag: "",
        starts: "warning: ",
        contains: "",
        outcome: Some((InstallerError, Warning)),
        summary: "installer warning",
    },
    // choose-mirror found no release it was told to install at the mirror: d-i then shows
    // "Bad archive mirror" and waits; nothing after it can run. Measured in a real run
    // with a wrong mirror directory.
    Rule {
        tag: "choose-mirror",
        starts: "WARNING **: mirror does not support the specified release",
        contains: "",
        outcome: Some((InstallerError, Error)),
        summary: "choose-mirror: the mirror does not carry the release to install",
    },
    // `di_log` at its alert levels from any other component (anna, netcfg, choose-mirror).
    Rule {
        tag: "",
        starts: "ERROR **: ",
        contains: "",
        outcome: Some((InstallerError, Error)),
        summary: "installer error",
    },
    Rule {
        tag: "",
        starts: "CRITICAL **: ",
        contains: "",
        outcome: Some((InstallerError, Error)),
        summary: "installer error",
    },
    Rule {
        tag: "",
        starts: "WARNING **: ",
        contains: "",
        outcome: Some((InstallerError, Warning)),
        summary: "installer warning",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    fn rule_of(tag: &str, text: &str) -> Option<usize> {
        first_match(tag.as_bytes(), text.as_bytes()).map(|(i, _)| i)
    }

    #[test]
    fn the_named_rules_are_where_the_analyzer_expects_them() {
        assert_eq!(
            rule_of("main-menu", "WARNING **: Configuring 'pkgsel' failed with error code 1"),
            Some(STEP_FAILED)
        );
        assert_eq!(rule_of("main-menu", "WARNING **: Menu item 'pkgsel' failed."), Some(MENU_ITEM_FAILED));
        assert_eq!(rule_of("debootstrap", "E: NOEXEC"), Some(DEBOOTSTRAP_ERROR));
        assert_eq!(rule_of("debootstrap", "W: RETRYING"), Some(DEBOOTSTRAP_WARNING));
    }

    #[test]
    fn harmless_lines_shadow_the_broad_rules() {
        for (tag, text) in [
            ("main-menu", "WARNING **: Unable to set title for partman-base."),
            (
                "in-target",
                "W: Possible missing firmware /lib/firmware/i915/skl_dmc_ver1_27.bin for module i915",
            ),
            ("base-installer", "warning: Failed to get debconf answer 'base-installer/kernel/linux/initrd'."),
        ] {
            let (_, rule) = first_match(tag.as_bytes(), text.as_bytes()).unwrap();
            assert!(rule.outcome.is_none(), "{text}");
        }
        assert_eq!(first_match(b"main-menu", b"INFO: Menu item 'netcfg' selected").map(|(i, _)| i), None);
    }

    #[test]
    fn every_rule_needs_something_of_a_message() {
        // The one-pass filter passes a message only for what some rule looks for.
        assert!(RULES.iter().all(|r| !(r.starts.is_empty() && r.contains.is_empty())));
        assert!(first_match(b"main-menu", b"INFO: Menu item 'x' selected").is_none());
        assert!(first_match(b"x", b"a line with No space left on device in it").is_some());
    }

    #[test]
    fn every_outcome_has_a_summary() {
        for rule in RULES {
            assert_eq!(rule.outcome.is_some(), !rule.summary.is_empty(), "{}", rule.starts);
        }
    }
}
