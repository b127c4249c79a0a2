//! Built-in checks: what a scenario asserts about the booted system, read through the
//! guest agent and from the captured logs, with the parsers of [`crate::logs`].
//!
//! Owns: the [`Check`] trait and the built-ins. Must not: drive the VM (no keys, no
//! power); a check only looks. Each outcome says what was expected and what was seen.

use regex::Regex;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use crate::agent::Agent;
use crate::logs::FindingKind;
use crate::scenario::model::{CheckKind, LuksExpect};

/// What a check sees.
pub struct CheckContext<'a> {
    pub agent: Option<&'a Agent>,
    /// Why there is no agent, when there is none.
    pub agent_error: Option<String>,
    pub run_dir: &'a Path,
    pub share: &'a Path,
    /// Limit for each guest command.
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    pub passed: bool,
    pub expected: String,
    /// What was seen: on failure, the evidence.
    pub message: String,
}

impl CheckOutcome {
    fn pass(expected: impl Into<String>, seen: impl Into<String>) -> Self {
        CheckOutcome { passed: true, expected: expected.into(), message: seen.into() }
    }
    fn fail(expected: impl Into<String>, seen: impl Into<String>) -> Self {
        CheckOutcome { passed: false, expected: expected.into(), message: seen.into() }
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A check on a booted system. Built-ins come from scenario files; Rust scenarios can
/// bring their own.
pub trait Check: Send + Sync {
    fn run<'a>(&'a self, ctx: &'a CheckContext<'a>) -> BoxFuture<'a, CheckOutcome>;
}

/// Whether a check kind asks the guest (and so needs an agent).
pub fn needs_agent(kind: &CheckKind) -> bool {
    !matches!(kind, CheckKind::FileContains { path, .. } if path.starts_with("share:"))
}

/// The built-in check for a scenario file's `[[check]]`.
pub fn builtin(kind: &CheckKind) -> Box<dyn Check> {
    Box::new(Builtin(kind.clone()))
}

struct Builtin(CheckKind);

impl Check for Builtin {
    fn run<'a>(&'a self, ctx: &'a CheckContext<'a>) -> BoxFuture<'a, CheckOutcome> {
        Box::pin(async move {
            match &self.0 {
                CheckKind::NoFailedUnits => no_failed_units(ctx).await,
                CheckKind::NoKernelOops => no_kernel_oops(ctx).await,
                CheckKind::NoSelinuxDenials { allow } => no_selinux_denials(ctx, allow).await,
                CheckKind::Sysctl(expected) => sysctl(ctx, expected).await,
                CheckKind::BtrfsSubvolumes(names) => btrfs_subvolumes(ctx, names).await,
                CheckKind::Luks(expect) => luks(ctx, expect).await,
                CheckKind::Mounts(expected) => mounts(ctx, expected).await,
                CheckKind::JournalContains(re) => journal(ctx, re, true).await,
                CheckKind::JournalLacks(re) => journal(ctx, re, false).await,
                CheckKind::FileContains { path, pattern } => file_contains(ctx, path, pattern).await,
                CheckKind::SecureBoot(on) => secure_boot(ctx, *on).await,
            }
        })
    }
}

/// Runs a guest command; Err is the outcome to report.
async fn guest(ctx: &CheckContext<'_>, expected: &str, command: &str) -> Result<Vec<u8>, CheckOutcome> {
    let Some(agent) = ctx.agent else {
        let why = ctx.agent_error.clone().unwrap_or_else(|| "no guest agent".into());
        return Err(CheckOutcome::fail(expected, format!("cannot ask the guest: {why}")));
    };
    match agent.run(command, ctx.timeout).await {
        Ok(out) if out.exit_code == 0 => Ok(out.stdout),
        Ok(out) => Err(CheckOutcome::fail(
            expected,
            format!("`{command}` exited {}: {}", out.exit_code, String::from_utf8_lossy(&out.stderr).trim()),
        )),
        Err(e) => Err(CheckOutcome::fail(expected, format!("`{command}`: {e}"))),
    }
}

macro_rules! guest_or_return {
    ($ctx:expr, $expected:expr, $cmd:expr) => {
        match guest($ctx, $expected, $cmd).await {
            Ok(out) => out,
            Err(outcome) => return outcome,
        }
    };
}

async fn no_failed_units(ctx: &CheckContext<'_>) -> CheckOutcome {
    let expected = "no failed systemd units";
    let out =
        guest_or_return!(ctx, expected, "systemctl list-units --failed --all --plain --no-legend --no-pager");
    let failed: Vec<String> = String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|u| u.contains('.'))
        .collect();
    if failed.is_empty() {
        return CheckOutcome::pass(expected, "none failed");
    }
    let mut seen = format!("failed: {}", failed.join(", "));
    for unit in failed.iter().take(3) {
        let cmd = format!("journalctl -b -u '{unit}' -n 5 --no-pager -o cat");
        if let Ok(log) = guest(ctx, expected, &cmd).await {
            seen.push_str(&format!("\n{unit}:\n{}", String::from_utf8_lossy(&log).trim_end()));
        }
    }
    CheckOutcome::fail(expected, seen)
}

/// Findings of the log analyzers over `bytes`, labelled `name`.
fn analyze(bytes: &[u8], name: &str) -> Vec<crate::logs::Finding> {
    let analyzers = crate::logs::registry();
    crate::inspect::inspect_reader(&analyzers, bytes, Path::new(name)).map(|(_, f)| f).unwrap_or_default()
}

const KERNEL_FAILURES: &[FindingKind] = &[
    FindingKind::KernelPanic,
    FindingKind::KernelOops,
    FindingKind::KernelBug,
    FindingKind::KernelWarning,
    FindingKind::SoftLockup,
];

async fn no_kernel_oops(ctx: &CheckContext<'_>) -> CheckOutcome {
    let expected = "no kernel panic, Oops, BUG, WARNING or soft lockup";
    let mut found = Vec::new();
    if let Ok(console) = std::fs::read(ctx.run_dir.join("console.log")) {
        found.extend(analyze(&console, "console.log"));
    }
    if ctx.agent.is_some() {
        let dmesg = guest_or_return!(ctx, expected, "dmesg");
        found.extend(analyze(&dmesg, "dmesg"));
    }
    found.retain(|f| KERNEL_FAILURES.contains(&f.kind));
    if found.is_empty() {
        return CheckOutcome::pass(expected, "none in the console log or dmesg");
    }
    let seen = found
        .iter()
        .take(5)
        .map(|f| format!("{}:{}: {}", f.file.display(), f.line, f.summary))
        .collect::<Vec<_>>();
    CheckOutcome::fail(expected, seen.join("\n"))
}

async fn no_selinux_denials(ctx: &CheckContext<'_>, allow: &[String]) -> CheckOutcome {
    let expected = "no SELinux AVC denials outside the allow-list";
    let allow: Vec<Regex> = allow.iter().filter_map(|a| Regex::new(a).ok()).collect();
    let out = guest_or_return!(
        ctx,
        expected,
        "{ cat /var/log/audit/audit.log 2>/dev/null; journalctl -b --no-pager -o short-precise 2>/dev/null | grep -F 'avc:'; } || true"
    );
    let denials: Vec<_> = analyze(&out, "audit")
        .into_iter()
        .filter(|f| f.kind == FindingKind::AvcDenial)
        .filter(|f| {
            !allow.iter().any(|re| f.evidence.iter().any(|e| re.is_match(e)) || re.is_match(&f.summary))
        })
        .collect();
    if denials.is_empty() {
        return CheckOutcome::pass(expected, "none");
    }
    let shown = denials.iter().take(5).map(|f| f.summary.clone()).collect::<Vec<_>>().join("\n");
    CheckOutcome::fail(expected, format!("{} denials:\n{shown}", denials.len()))
}

async fn sysctl(ctx: &CheckContext<'_>, expected: &BTreeMap<String, String>) -> CheckOutcome {
    let want = expected.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ");
    // Some keys are unreadable even to root (busybox then exits 1): what was read counts.
    let out = guest_or_return!(ctx, &want, "sysctl -a 2>/dev/null; true");
    let seen = match crate::logs::sysctl::parse(&out) {
        Ok(s) => s,
        Err(e) => return CheckOutcome::fail(want, format!("`sysctl -a` output not understood: {e}")),
    };
    let actual: BTreeMap<&str, &str> = seen.iter().map(|s| (s.key.as_str(), s.value.as_str())).collect();
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(k, v)| actual.get(k.as_str()).map(|a| normalize(a)) != Some(normalize(v)))
        .map(|(k, v)| {
            format!("{k}: expected {v}, seen {}", actual.get(k.as_str()).copied().unwrap_or("(absent)"))
        })
        .collect();
    if wrong.is_empty() {
        CheckOutcome::pass(want, format!("{} values as expected", expected.len()))
    } else {
        CheckOutcome::fail(want, wrong.join("\n"))
    }
}

/// sysctl prints multi-value keys with tabs; compare words, not whitespace.
fn normalize(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn btrfs_subvolumes(ctx: &CheckContext<'_>, names: &[String]) -> CheckOutcome {
    let expected = format!("btrfs subvolumes {}", names.join(", "));
    let out = guest_or_return!(ctx, &expected, "btrfs subvolume list /");
    let subvols = match crate::logs::btrfs::parse_subvolume_list(&out) {
        Ok(s) => s,
        Err(e) => {
            return CheckOutcome::fail(
                expected,
                format!("`btrfs subvolume list` output not understood: {e}"),
            );
        }
    };
    let paths: Vec<&str> = subvols.iter().map(|s| s.path.trim_start_matches("<FS_TREE>/")).collect();
    let missing: Vec<&String> =
        names.iter().filter(|n| !paths.iter().any(|p| p == n || p.ends_with(&format!("/{n}")))).collect();
    if missing.is_empty() {
        CheckOutcome::pass(expected, format!("present: {}", paths.join(", ")))
    } else {
        CheckOutcome::fail(
            expected,
            format!(
                "missing: {}; present: {}",
                missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                paths.join(", ")
            ),
        )
    }
}

async fn luks(ctx: &CheckContext<'_>, expect: &LuksExpect) -> CheckOutcome {
    let expected = luks_expectation(expect);
    let device = match &expect.device {
        Some(d) => d.clone(),
        None => match root_luks_device(ctx, &expected).await {
            Ok(d) => d,
            Err(outcome) => return outcome,
        },
    };
    let dump = guest_or_return!(ctx, &expected, &format!("cryptsetup luksDump '{device}'"));
    let header = match crate::logs::luks::parse_dump(&dump) {
        Ok(h) => h,
        Err(e) => return CheckOutcome::fail(expected, format!("luksDump of {device} not understood: {e}")),
    };
    let cipher = header.cipher.clone().or_else(|| header.segments.first().and_then(|s| s.cipher.clone()));
    let pbkdfs: Vec<String> = header.keyslots.iter().filter_map(|k| k.pbkdf.clone()).collect();
    let mut wrong = Vec::new();
    if let Some(v) = expect.version.filter(|v| *v != u32::from(header.version)) {
        wrong.push(format!("version: expected {v}, seen {}", header.version));
    }
    if let Some(c) = expect.cipher.as_ref().filter(|c| cipher.as_ref() != Some(*c)) {
        wrong.push(format!("cipher: expected {c}, seen {}", cipher.as_deref().unwrap_or("(none)")));
    }
    if let Some(p) = expect.pbkdf.as_ref().filter(|p| pbkdfs.is_empty() || pbkdfs.iter().any(|x| x != *p)) {
        wrong.push(format!("pbkdf of every keyslot: expected {p}, seen {}", pbkdfs.join(", ")));
    }
    let seen = format!(
        "{device}: LUKS{}, cipher {}, keyslot pbkdf {}",
        header.version,
        cipher.as_deref().unwrap_or("?"),
        pbkdfs.join(", ")
    );
    if wrong.is_empty() {
        CheckOutcome::pass(expected, seen)
    } else {
        CheckOutcome::fail(expected, format!("{}\n({seen})", wrong.join("\n")))
    }
}

fn luks_expectation(e: &LuksExpect) -> String {
    let mut parts = vec!["LUKS device".to_string()];
    if let Some(v) = e.version {
        parts.push(format!("version {v}"));
    }
    if let Some(c) = &e.cipher {
        parts.push(format!("cipher {c}"));
    }
    if let Some(p) = &e.pbkdf {
        parts.push(format!("pbkdf {p}"));
    }
    parts.join(", ")
}

/// The block device under the dm-crypt mapping that `/` is mounted from.
async fn root_luks_device(ctx: &CheckContext<'_>, expected: &str) -> Result<String, CheckOutcome> {
    let source = guest(ctx, expected, "findmnt -n -o SOURCE /").await?;
    let source = String::from_utf8_lossy(&source).trim().to_string();
    let mapping = source.split('[').next().unwrap_or("").trim().to_string();
    // findmnt may name the mapping by its kernel name (`/dev/dm-0`, as on Debian 12)
    // rather than `/dev/mapper/<name>`; lsblk gives the mapping's name either way.
    let name = match guest(ctx, expected, &format!("lsblk -n -d -r -o NAME '{mapping}'")).await {
        Ok(out) => String::from_utf8_lossy(&out).trim().to_string(),
        Err(_) => mapping.rsplit('/').next().unwrap_or("").to_string(),
    };
    let status = guest(ctx, expected, &format!("cryptsetup status '{name}'")).await.map_err(|_| {
        CheckOutcome::fail(expected, format!("/ is mounted from {source}, which is not a dm-crypt mapping"))
    })?;
    String::from_utf8_lossy(&status)
        .lines()
        .find_map(|l| l.trim().strip_prefix("device:").map(|d| d.trim().to_string()))
        .ok_or_else(|| CheckOutcome::fail(expected, format!("`cryptsetup status {name}` names no device")))
}

async fn mounts(ctx: &CheckContext<'_>, expected: &BTreeMap<String, String>) -> CheckOutcome {
    let want = expected.iter().map(|(k, v)| format!("{k} ~ /{v}/")).collect::<Vec<_>>().join(", ");
    let mut wrong = Vec::new();
    let mut seen_all = Vec::new();
    for (target, pattern) in expected {
        let Ok(re) = Regex::new(pattern) else {
            wrong.push(format!("{target}: /{pattern}/ is not a valid regex"));
            continue;
        };
        let cmd = format!("findmnt -n -o SOURCE,FSTYPE,OPTIONS --mountpoint '{target}'");
        let line = match guest(ctx, &want, &cmd).await {
            Ok(out) => String::from_utf8_lossy(&out).trim().to_string(),
            Err(_) => String::from("(not mounted)"),
        };
        if !re.is_match(&line) {
            wrong.push(format!("{target}: expected /{pattern}/, seen {line}"));
        }
        seen_all.push(format!("{target}: {line}"));
    }
    if wrong.is_empty() {
        CheckOutcome::pass(want, seen_all.join("\n"))
    } else {
        CheckOutcome::fail(want, wrong.join("\n"))
    }
}

async fn journal(ctx: &CheckContext<'_>, pattern: &str, should_contain: bool) -> CheckOutcome {
    let expected = if should_contain {
        format!("a journal line matching /{pattern}/")
    } else {
        format!("no journal line matching /{pattern}/")
    };
    let out = guest_or_return!(ctx, &expected, "journalctl -b --no-pager -o short-precise");
    let re = Regex::new(pattern).expect("validated when parsed");
    let text = String::from_utf8_lossy(&out);
    let hits: Vec<&str> = text.lines().filter(|l| re.is_match(l)).collect();
    match (should_contain, hits.first()) {
        (true, Some(l)) => CheckOutcome::pass(expected, l.to_string()),
        (true, None) => {
            CheckOutcome::fail(expected, format!("none among {} journal lines", text.lines().count()))
        }
        (false, None) => CheckOutcome::pass(expected, "none"),
        (false, Some(_)) => {
            CheckOutcome::fail(expected, hits.iter().take(5).copied().collect::<Vec<_>>().join("\n"))
        }
    }
}

async fn file_contains(ctx: &CheckContext<'_>, path: &str, pattern: &str) -> CheckOutcome {
    let expected = format!("{path} matching /{pattern}/");
    let content = if let Some(rel) = path.strip_prefix("share:") {
        match crate::vm::share::read_file(ctx.share, rel, 16 << 20) {
            Ok(c) => c,
            Err(e) => return CheckOutcome::fail(expected, e.to_string()),
        }
    } else {
        guest_or_return!(ctx, &expected, &format!("cat -- '{path}'"))
    };
    let re = Regex::new(pattern).expect("validated when parsed");
    let text = String::from_utf8_lossy(&content);
    match text.lines().find(|l| re.is_match(l)) {
        Some(l) => CheckOutcome::pass(expected, l.to_string()),
        None => CheckOutcome::fail(
            expected,
            format!(
                "no line matches; {} lines, first: {:?}",
                text.lines().count(),
                text.lines().next().unwrap_or("")
            ),
        ),
    }
}

/// The firmware's `SecureBoot` variable (EFI global variable GUID), as efivarfs shows it.
const SECURE_BOOT_VAR: &str = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

async fn secure_boot(ctx: &CheckContext<'_>, on: bool) -> CheckOutcome {
    let expected = format!("Secure Boot {} (EFI variable SecureBoot = {})", on_off(on), u8::from(on));
    // Whole-file od: efivarfs files cannot seek, so skipping the attributes with -j
    // would read them anyway (busybox) or fail.
    let out = guest_or_return!(ctx, &expected, &format!("od -An -tu1 -v {SECURE_BOOT_VAR}"));
    match secure_boot_value(&String::from_utf8_lossy(&out)) {
        Ok(value) if value == on => CheckOutcome::pass(expected, format!("SecureBoot = {}", u8::from(value))),
        Ok(value) => CheckOutcome::fail(
            expected,
            format!(
                "SecureBoot = {}: the firmware booted with Secure Boot {}",
                u8::from(value),
                on_off(value)
            ),
        ),
        Err(e) => CheckOutcome::fail(expected, format!("{SECURE_BOOT_VAR}: {e}")),
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "enabled" } else { "disabled" }
}

/// The state in `od -An -tu1` output of an efivarfs file: four attribute bytes, then
/// the variable's one byte, 1 when Secure Boot is on.
fn secure_boot_value(od: &str) -> Result<bool, String> {
    let bytes: Vec<u8> = od
        .split_whitespace()
        .map(|w| w.parse().map_err(|_| format!("`{w}` is not a byte in od's output")))
        .collect::<Result<_, _>>()?;
    match bytes.as_slice() {
        [_, _, _, _, 0] => Ok(false),
        [_, _, _, _, 1] => Ok(true),
        other => Err(format!("expected 4 attribute bytes and a value of 0 or 1, read {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_boot_is_the_byte_after_the_attributes() {
        assert_eq!(secure_boot_value("   6   0   0   0   1\n"), Ok(true));
        assert_eq!(secure_boot_value("   6   0   0   0   0\n"), Ok(false));
        let e = secure_boot_value("   6   0   0   0\n").unwrap_err();
        assert!(e.contains("read [6, 0, 0, 0]"), "{e}");
        assert!(secure_boot_value("   6   0   0   0   2\n").is_err());
        assert!(secure_boot_value("od: cannot open").is_err());
    }
}
