//! The check kinds a scenario's `[[check]]` tables name, and reading one table.
//!
//! Owns: [`CheckKind`] with its arguments compiled (regexes), and the table format:
//! exactly one kind per table plus the modifiers it takes. Must not: run anything.

use serde::Deserialize;
use std::collections::BTreeMap;

use crate::pattern::Pattern;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    NoFailedUnits,
    NoKernelOops,
    NoSelinuxDenials {
        allow: Vec<Pattern>,
    },
    /// No error-level finding in the run's logs and share (what `bootproof inspect`
    /// reports), apart from `allow`ed ones.
    NoErrorFindings {
        allow: Vec<Pattern>,
    },
    Sysctl(BTreeMap<String, String>),
    /// Kernel parameters `/proc/cmdline` must carry: a bare one bare, `key=value` with
    /// exactly that value (the last occurrence counts, as for the kernel).
    KernelCmdline(Vec<crate::logs::cmdline::Param>),
    BtrfsSubvolumes(Vec<String>),
    Luks(LuksExpect),
    Mounts(BTreeMap<String, Pattern>),
    JournalContains(Pattern),
    JournalLacks(Pattern),
    FileContains {
        path: String,
        pattern: Pattern,
    },
    /// Whether the firmware booted with Secure Boot on (`true`) or off.
    SecureBoot(bool),
}

/// Every kind's key, for messages.
pub const KEYS: &str = "no_failed_units, no_kernel_oops, no_selinux_denials, no_error_findings, sysctl, \
                        kernel_cmdline, btrfs_subvolumes, luks, mounts, journal_contains, journal_lacks, file_contains, \
                        secure_boot";

impl CheckKind {
    pub fn key(&self) -> &'static str {
        match self {
            CheckKind::NoFailedUnits => "no_failed_units",
            CheckKind::NoKernelOops => "no_kernel_oops",
            CheckKind::NoSelinuxDenials { .. } => "no_selinux_denials",
            CheckKind::NoErrorFindings { .. } => "no_error_findings",
            CheckKind::Sysctl(_) => "sysctl",
            CheckKind::KernelCmdline(_) => "kernel_cmdline",
            CheckKind::BtrfsSubvolumes(_) => "btrfs_subvolumes",
            CheckKind::Luks(_) => "luks",
            CheckKind::Mounts(_) => "mounts",
            CheckKind::JournalContains(_) => "journal_contains",
            CheckKind::JournalLacks(_) => "journal_lacks",
            CheckKind::FileContains { .. } => "file_contains",
            CheckKind::SecureBoot(_) => "secure_boot",
        }
    }

    /// Whether the check asks the running guest (and so needs an agent); the others
    /// read the run directory after the VM is gone.
    pub fn needs_agent(&self) -> bool {
        match self {
            CheckKind::FileContains { path, .. } => !path.starts_with("share:"),
            CheckKind::NoErrorFindings { .. } => false,
            _ => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LuksExpect {
    /// The LUKS device backing `/` unless set.
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default)]
    pub version: Option<u32>,
    #[serde(default)]
    pub cipher: Option<String>,
    #[serde(default)]
    pub pbkdf: Option<String>,
}

/// One `[[check]]` table as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCheck {
    no_failed_units: Option<bool>,
    no_kernel_oops: Option<bool>,
    no_selinux_denials: Option<bool>,
    no_error_findings: Option<bool>,
    sysctl: Option<BTreeMap<String, toml::Value>>,
    kernel_cmdline: Option<Vec<String>>,
    btrfs_subvolumes: Option<Vec<String>>,
    luks: Option<LuksExpect>,
    mounts: Option<BTreeMap<String, String>>,
    journal_contains: Option<String>,
    journal_lacks: Option<String>,
    file_contains: Option<FileContains>,
    secure_boot: Option<bool>,
    // Modifiers.
    allow: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileContains {
    path: String,
    pattern: String,
}

fn compile(key: &str, source: &str) -> Result<Pattern, String> {
    Pattern::new(source).map_err(|e| format!("{key}: {e}"))
}

/// Values spliced into a guest command are quoted, but a NUL byte cannot be passed at
/// all: refused here, where the file names it.
fn no_nul(key: &str, value: &str) -> Result<(), String> {
    if value.contains('\0') { Err(format!("{key}: a NUL character cannot reach the guest")) } else { Ok(()) }
}

impl RawCheck {
    /// The one kind the table names, its arguments compiled and checked.
    pub(crate) fn into_kind(self) -> Result<CheckKind, String> {
        let mut kinds: Vec<CheckKind> = Vec::new();
        let allow = || -> Result<Vec<Pattern>, String> {
            self.allow.iter().flatten().map(|a| compile("allow", a)).collect()
        };
        if self.no_failed_units == Some(true) {
            kinds.push(CheckKind::NoFailedUnits);
        }
        if self.no_kernel_oops == Some(true) {
            kinds.push(CheckKind::NoKernelOops);
        }
        if self.no_selinux_denials == Some(true) {
            kinds.push(CheckKind::NoSelinuxDenials { allow: allow()? });
        }
        if self.no_error_findings == Some(true) {
            kinds.push(CheckKind::NoErrorFindings { allow: allow()? });
        }
        if let Some(map) = &self.sysctl {
            let mut expected = BTreeMap::new();
            for (k, v) in map {
                let v = match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    other => {
                        return Err(format!("sysctl `{k}`: expected a string or integer, found {other}"));
                    }
                };
                expected.insert(k.clone(), v);
            }
            kinds.push(CheckKind::Sysctl(expected));
        }
        if let Some(list) = &self.kernel_cmdline {
            if list.is_empty() {
                return Err("kernel_cmdline: list at least one parameter".into());
            }
            let params = list
                .iter()
                .map(|text| crate::logs::cmdline::Param::parse_expected(text))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("kernel_cmdline: {e}"))?;
            kinds.push(CheckKind::KernelCmdline(params));
        }
        if let Some(s) = &self.btrfs_subvolumes {
            kinds.push(CheckKind::BtrfsSubvolumes(s.clone()));
        }
        if let Some(l) = &self.luks {
            if let Some(d) = &l.device {
                no_nul("luks.device", d)?;
            }
            kinds.push(CheckKind::Luks(l.clone()));
        }
        if let Some(m) = &self.mounts {
            let mut compiled = BTreeMap::new();
            for (target, re) in m {
                no_nul("mounts", target)?;
                compiled.insert(target.clone(), compile(&format!("mounts `{target}`"), re)?);
            }
            kinds.push(CheckKind::Mounts(compiled));
        }
        if let Some(re) = &self.journal_contains {
            kinds.push(CheckKind::JournalContains(compile("journal_contains", re)?));
        }
        if let Some(re) = &self.journal_lacks {
            kinds.push(CheckKind::JournalLacks(compile("journal_lacks", re)?));
        }
        if let Some(f) = &self.file_contains {
            no_nul("file_contains.path", &f.path)?;
            let pattern = compile("file_contains.pattern", &f.pattern)?;
            kinds.push(CheckKind::FileContains { path: f.path.clone(), pattern });
        }
        if let Some(on) = self.secure_boot {
            kinds.push(CheckKind::SecureBoot(on));
        }
        let kind = match <[CheckKind; 1]>::try_from(kinds) {
            Ok([kind]) => kind,
            Err(kinds) => {
                let found: Vec<&str> = kinds.iter().map(CheckKind::key).collect();
                return Err(format!(
                    "a check needs exactly one kind ({KEYS}); found {}",
                    if found.is_empty() { "none".to_string() } else { found.join(", ") }
                ));
            }
        };
        if self.allow.is_some()
            && !matches!(kind, CheckKind::NoSelinuxDenials { .. } | CheckKind::NoErrorFindings { .. })
        {
            return Err("`allow` belongs to `no_selinux_denials` and `no_error_findings`".into());
        }
        Ok(kind)
    }
}
