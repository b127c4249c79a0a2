//! Built-in checks: what a scenario asserts about the booted system, read through the
//! guest agent and from the captured logs, with the parsers of [`crate::logs`].
//!
//! Owns: the [`Check`] trait, the check kinds ([`kind`]) and the built-ins. Must not:
//! drive the VM (no keys, no power); a check only looks. Each outcome says what was
//! expected and what was seen; a check that could not look (no agent, no log to read,
//! output it cannot parse) is "not checked", which fails the scenario like a failure:
//! nothing passes without having checked something.

pub mod kind;
mod selinux;

pub use kind::{CheckKind, LuksExpect};

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use crate::agent::{Agent, quote};
use crate::logs::cmdline::Param;
use crate::logs::{FindingKind, Severity};
use crate::pattern::Pattern;

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

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed,
    /// The check could not look; the scenario fails, saying why.
    NotChecked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    pub verdict: Verdict,
    pub expected: String,
    /// What was seen: on failure, the evidence; when not checked, why.
    pub message: String,
}

impl CheckOutcome {
    fn pass(expected: impl Into<String>, seen: impl Into<String>) -> Self {
        CheckOutcome { verdict: Verdict::Passed, expected: expected.into(), message: seen.into() }
    }
    fn fail(expected: impl Into<String>, seen: impl Into<String>) -> Self {
        CheckOutcome { verdict: Verdict::Failed, expected: expected.into(), message: seen.into() }
    }
    fn not_checked(expected: impl Into<String>, why: impl Into<String>) -> Self {
        let why = why.into();
        CheckOutcome {
            verdict: Verdict::NotChecked,
            expected: expected.into(),
            message: format!("not checked: {why}"),
        }
    }

    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Passed
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
    kind.needs_agent()
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
                CheckKind::NoSelinuxDenials { allow } => selinux::no_selinux_denials(ctx, allow).await,
                CheckKind::NoErrorFindings { allow } => no_error_findings(ctx, allow),
                CheckKind::Sysctl(expected) => sysctl(ctx, expected).await,
                CheckKind::KernelCmdline(expected) => kernel_cmdline(ctx, expected).await,
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

/// What a guest command gave: its output when it exited 0.
enum Asked {
    Output(Vec<u8>),
    /// It ran and exited non-zero: the guest answered, the answer is no.
    Exited {
        code: i32,
        stderr: String,
    },
}

/// Runs a guest command; Err is the outcome to report (not checked: the agent could
/// not be asked or did not answer).
async fn ask(ctx: &CheckContext<'_>, expected: &str, command: &str) -> Result<Asked, CheckOutcome> {
    let Some(agent) = ctx.agent else {
        let why = ctx.agent_error.clone().unwrap_or_else(|| "no guest agent".into());
        return Err(CheckOutcome::not_checked(expected, format!("cannot ask the guest: {why}")));
    };
    match agent.run(command, ctx.timeout).await {
        Ok(out) if out.exit_code == 0 => Ok(Asked::Output(out.stdout)),
        Ok(out) => Ok(Asked::Exited {
            code: out.exit_code,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
        Err(e) => Err(CheckOutcome::not_checked(expected, format!("`{command}`: {e}"))),
    }
}

/// Runs a guest command that must succeed; Err is the outcome to report.
async fn guest(ctx: &CheckContext<'_>, expected: &str, command: &str) -> Result<Vec<u8>, CheckOutcome> {
    match ask(ctx, expected, command).await? {
        Asked::Output(out) => Ok(out),
        // 126/127: the shell could not run the tool, so nothing was learnt; any other
        // exit status is the guest's answer (no such file, not a LUKS device, ...).
        Asked::Exited { code: code @ (126 | 127), stderr } => {
            Err(CheckOutcome::not_checked(expected, format!("`{command}` exited {code}: {stderr}")))
        }
        Asked::Exited { code, stderr } => {
            Err(CheckOutcome::fail(expected, format!("`{command}` exited {code}: {stderr}")))
        }
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
    let mut failed = Vec::new();
    for line in out.split(|&b| b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)) {
        match crate::logs::systemctl::unit_line(line) {
            Ok((_, unit)) if unit.failed() => failed.push(String::from_utf8_lossy(unit.unit).into_owned()),
            Ok(_) => {}
            Err(_) => {
                let line = String::from_utf8_lossy(line);
                return CheckOutcome::not_checked(
                    expected,
                    format!("`systemctl list-units` line not understood: {line}"),
                );
            }
        }
    }
    if failed.is_empty() {
        return CheckOutcome::pass(expected, "none failed");
    }
    let mut seen = format!("failed: {}", failed.join(", "));
    for unit in failed.iter().take(3) {
        let cmd = format!("journalctl -b -u {} -n 5 --no-pager -o cat", quote(unit));
        if let Ok(log) = guest(ctx, expected, &cmd).await {
            seen.push_str(&format!("\n{unit}:\n{}", String::from_utf8_lossy(&log).trim_end()));
        }
    }
    CheckOutcome::fail(expected, seen)
}

/// Findings of the log analyzers over `bytes`, labelled `name`.
fn analyze(bytes: &[u8], name: &str) -> Result<Vec<crate::logs::Finding>, String> {
    let analyzers = crate::logs::registry();
    crate::inspect::inspect_reader(&analyzers, bytes, Path::new(name))
        .map(|(_, f)| f)
        .map_err(|e| e.to_string())
}

const KERNEL_FAILURES: &[FindingKind] = &[
    FindingKind::KernelPanic,
    FindingKind::KernelOops,
    FindingKind::KernelBug,
    FindingKind::KernelWarning,
    FindingKind::SoftLockup,
];

fn listed(found: &[crate::logs::Finding]) -> String {
    let shown: Vec<String> =
        found.iter().take(5).map(|f| format!("{}:{}: {}", f.file.display(), f.line, f.summary)).collect();
    shown.join("\n")
}

/// The console log and the guest's `dmesg`: what the console shows is evidence on its
/// own (a panic ends the agent with the guest), but a pass needs dmesg too, since a
/// quiet console does not carry every kernel message.
async fn no_kernel_oops(ctx: &CheckContext<'_>) -> CheckOutcome {
    let expected = "no kernel panic, Oops, BUG, WARNING or soft lockup";
    let mut found = Vec::new();
    if let Ok(console) = std::fs::read(ctx.run_dir.join("console.log")) {
        match analyze(&console, "console.log") {
            Ok(f) => found.extend(f),
            Err(e) => return CheckOutcome::not_checked(expected, format!("console.log: {e}")),
        }
    }
    found.retain(|f| KERNEL_FAILURES.contains(&f.kind));
    if !found.is_empty() {
        return CheckOutcome::fail(expected, listed(&found));
    }
    let dmesg = guest_or_return!(ctx, expected, "dmesg");
    match analyze(&dmesg, "dmesg") {
        Ok(f) => found.extend(f.into_iter().filter(|f| KERNEL_FAILURES.contains(&f.kind))),
        Err(e) => return CheckOutcome::not_checked(expected, format!("dmesg: {e}")),
    }
    if found.is_empty() {
        CheckOutcome::pass(expected, "none in the console log or dmesg")
    } else {
        CheckOutcome::fail(expected, listed(&found))
    }
}

/// What `bootproof inspect` says of the run directory: the same code, so a passing
/// check and `inspect` can never disagree.
fn no_error_findings(ctx: &CheckContext<'_>, allow: &[Pattern]) -> CheckOutcome {
    let expected = "no error-level finding in the run's logs and share (as `bootproof inspect` reports)";
    let report = crate::inspect::inspect_paths(&[PathBuf::from(ctx.run_dir)]);
    if report.files.is_empty() {
        return CheckOutcome::not_checked(expected, format!("no log was read in {}", ctx.run_dir.display()));
    }
    let errors: Vec<_> = report
        .findings
        .into_iter()
        .filter(|f| f.severity >= Severity::Error)
        .filter(|f| {
            !allow.iter().any(|re| re.is_match(&f.summary) || f.evidence.iter().any(|e| re.is_match(e)))
        })
        .collect();
    if errors.is_empty() {
        CheckOutcome::pass(
            expected,
            format!("{} files read, none with an error-level finding", report.files.len()),
        )
    } else {
        CheckOutcome::fail(expected, listed(&errors))
    }
}

async fn sysctl(ctx: &CheckContext<'_>, expected: &BTreeMap<String, String>) -> CheckOutcome {
    let want = expected.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ");
    // Only the keys asked for: a key the guest lacks (or cannot read) prints nothing and
    // shows as absent. Reading them one by one keeps the answer small, where
    // `sysctl -a` sends tens of KiB through the agent.
    let keys: Vec<String> = expected.keys().map(|k| quote(k)).collect();
    let cmd = format!(
        "command -v sysctl >/dev/null || exit 127; for k in {}; do sysctl \"$k\" 2>/dev/null; done; true",
        keys.join(" ")
    );
    let out = guest_or_return!(ctx, &want, &cmd);
    let seen = match crate::logs::sysctl::parse(&out) {
        Ok(s) => s,
        Err(e) => return CheckOutcome::not_checked(want, format!("`sysctl` output not understood: {e}")),
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

async fn kernel_cmdline(ctx: &CheckContext<'_>, expected: &[Param]) -> CheckOutcome {
    let want = format!(
        "kernel command line has {}",
        expected.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
    );
    let out = guest_or_return!(ctx, &want, "cat /proc/cmdline");
    let line = String::from_utf8_lossy(&out);
    let seen = crate::logs::cmdline::parse(&line);
    let wrong = cmdline_mismatches(expected, &seen);
    if wrong.is_empty() {
        CheckOutcome::pass(want, format!("all {} present in /proc/cmdline: {}", expected.len(), line.trim()))
    } else {
        // Only what is wrong: the parameters that are there are not named.
        CheckOutcome::fail(want, wrong.join("\n"))
    }
}

/// One line per expected parameter that `seen` lacks or carries otherwise. Names
/// compare as the kernel compares them (`-` and `_` alike); the last occurrence counts.
fn cmdline_mismatches(expected: &[Param], seen: &[Param]) -> Vec<String> {
    let name = |k: &str| k.replace('-', "_");
    expected
        .iter()
        .filter_map(|e| {
            let last = seen.iter().rev().find(|s| name(&s.key) == name(&e.key));
            match last {
                None => Some(format!("missing: {e}")),
                Some(s) if s.value == e.value => None,
                Some(s) if e.value.is_none() => Some(format!("{e}: expected bare, seen {s}")),
                Some(s) => Some(format!("{e}: seen {s}")),
            }
        })
        .collect()
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
            return CheckOutcome::not_checked(
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
    let dump = guest_or_return!(ctx, &expected, &format!("cryptsetup luksDump {}", quote(&device)));
    let header = match crate::logs::luks::parse_dump(&dump) {
        Ok(h) => h,
        Err(e) => {
            return CheckOutcome::not_checked(expected, format!("luksDump of {device} not understood: {e}"));
        }
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
    let lsblk = guest(ctx, expected, &format!("lsblk -d -l -o NAME {}", quote(&mapping))).await;
    let name = lsblk
        .ok()
        .and_then(|out| crate::logs::lsblk::parse_text(&out).ok())
        .and_then(|devices| devices.into_iter().next().map(|d| d.name))
        .unwrap_or_else(|| mapping.rsplit('/').next().unwrap_or("").to_string());
    let status =
        guest(ctx, expected, &format!("cryptsetup status {}", quote(&name))).await.map_err(|_| {
            CheckOutcome::fail(
                expected,
                format!("/ is mounted from {source}, which is not a dm-crypt mapping"),
            )
        })?;
    String::from_utf8_lossy(&status)
        .lines()
        .find_map(|l| l.trim().strip_prefix("device:").map(|d| d.trim().to_string()))
        .ok_or_else(|| CheckOutcome::fail(expected, format!("`cryptsetup status {name}` names no device")))
}

async fn mounts(ctx: &CheckContext<'_>, expected: &BTreeMap<String, Pattern>) -> CheckOutcome {
    let want = expected.iter().map(|(k, v)| format!("{k} ~ /{v}/")).collect::<Vec<_>>().join(", ");
    let mut wrong = Vec::new();
    let mut seen_all = Vec::new();
    for (target, pattern) in expected {
        let cmd = format!("findmnt -n -o SOURCE,FSTYPE,OPTIONS --mountpoint {}", quote(target));
        // findmnt exits 1 when nothing is mounted there: that is the answer.
        let line = match ask(ctx, &want, &cmd).await {
            Ok(Asked::Output(out)) => String::from_utf8_lossy(&out).trim().to_string(),
            Ok(Asked::Exited { code: 1, .. }) => String::from("(not mounted)"),
            Ok(Asked::Exited { code, stderr }) => {
                return CheckOutcome::not_checked(want, format!("`{cmd}` exited {code}: {stderr}"));
            }
            Err(outcome) => return outcome,
        };
        if !pattern.is_match(&line) {
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

async fn journal(ctx: &CheckContext<'_>, re: &Pattern, should_contain: bool) -> CheckOutcome {
    let pattern = re.as_str();
    let expected = if should_contain {
        format!("a journal line matching /{pattern}/")
    } else {
        format!("no journal line matching /{pattern}/")
    };
    let out = guest_or_return!(ctx, &expected, "journalctl -b --no-pager -o short-precise");
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

async fn file_contains(ctx: &CheckContext<'_>, path: &str, re: &Pattern) -> CheckOutcome {
    let pattern = re.as_str();
    let expected = format!("{path} matching /{pattern}/");
    let content = if let Some(rel) = path.strip_prefix("share:") {
        match crate::vm::share::read_file(ctx.share, rel, 16 << 20) {
            Ok(c) => c,
            Err(e) => return CheckOutcome::fail(expected, e.to_string()),
        }
    } else {
        guest_or_return!(ctx, &expected, &format!("cat -- {}", quote(path)))
    };
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

    #[test]
    fn cmdline_mismatches_name_only_what_is_missing_or_different() {
        let seen = crate::logs::cmdline::parse(
            "root=/dev/vda2 quiet init-on-free=1 vsyscall=emulate vsyscall=none slab_nomerge=0",
        );
        let want = |list: &[&str]| list.iter().map(|t| Param::parse_expected(t).unwrap()).collect::<Vec<_>>();
        assert!(cmdline_mismatches(&want(&["quiet", "init_on_free=1", "vsyscall=none"]), &seen).is_empty());
        assert_eq!(
            cmdline_mismatches(
                &want(&["quiet", "lockdown=integrity", "slab_nomerge", "root=/dev/vda3"]),
                &seen
            ),
            vec![
                "missing: lockdown=integrity".to_string(),
                "slab_nomerge: expected bare, seen slab_nomerge=0".to_string(),
                "root=/dev/vda3: seen root=/dev/vda2".to_string(),
            ]
        );
    }
}
