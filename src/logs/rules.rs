//! The findings rules: which log messages mean that something went wrong.
//!
//! Owns: every rule that turns a kernel, audit, SDDM, systemd or firmware message into a
//! [`Finding`], wherever the message was carried (dmesg, audit.log, sddm.log, a
//! journal in any form, a serial console). Parsers hand messages here; rules live only
//! here, so a kernel Oops is recognised the same way in dmesg and in the journal.
//! A message is judged with the phase of its boot (`phase`): the tables below say, per
//! rule, how severe a match is while the system starts or runs, and while it shuts down.
//! Must not: parse file formats, or read files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use memchr::memmem::Finder;
use regex::bytes::Regex;

use super::audit;
use super::lines::{format_realtime_us, text};
use super::phase::Phases;
use super::{Finding, FindingKind, Phase, Severity};

/// Most evidence lines one finding keeps (a kernel report with its trace fits).
pub const MAX_EVIDENCE: usize = 64;
/// Longest evidence line kept, in characters.
const MAX_EVIDENCE_CHARS: usize = 512;

/// A message's time, converted to text only when a finding needs it.
#[derive(Debug, Clone, Copy)]
pub enum Time<'a> {
    Unknown,
    /// As written in the log.
    Text(&'a [u8]),
    /// Journal `__REALTIME_TIMESTAMP`, µs since the epoch.
    RealtimeUs(u64),
}

impl Time<'_> {
    fn render(self) -> Option<String> {
        match self {
            Time::Unknown => None,
            Time::Text(t) => Some(text(t)),
            Time::RealtimeUs(us) => Some(format_realtime_us(us)),
        }
    }
}

/// How a rule's pattern must occur in a message.
#[derive(Clone, Copy)]
enum Match {
    Prefix,
    Contains,
}

/// How severe a match is, by the phase of the boot it was logged in.
#[derive(Clone, Copy)]
struct Severities {
    /// While the system starts or runs, or when the log does not show the phase.
    otherwise: Severity,
    /// While it shuts down.
    at_shutdown: Severity,
}

impl Severities {
    const fn always(severity: Severity) -> Self {
        Severities { otherwise: severity, at_shutdown: severity }
    }

    fn in_phase(self, phase: Option<Phase>) -> Severity {
        match phase {
            Some(Phase::Shutdown) => self.at_shutdown,
            _ => self.otherwise,
        }
    }
}

/// A message pattern and what it means.
struct Rule {
    pattern: &'static str,
    at: Match,
    kind: FindingKind,
    severity: Severities,
}

impl Rule {
    fn meaning(&self, phase: Option<Phase>) -> (FindingKind, Severity) {
        (self.kind, self.severity.in_phase(phase))
    }

    /// The same rule, judged `severity` while the system shuts down.
    const fn at_shutdown(self, severity: Severity) -> Rule {
        Rule { severity: Severities { at_shutdown: severity, ..self.severity }, ..self }
    }

    fn matches(&self, message: &[u8]) -> bool {
        let pattern = self.pattern.as_bytes();
        match self.at {
            Match::Prefix => message.starts_with(pattern),
            Match::Contains => memchr::memmem::find(message, pattern).is_some(),
        }
    }
}

/// A rule of the same severity in every phase.
const fn rule(pattern: &'static str, at: Match, kind: FindingKind, severity: Severity) -> Rule {
    Rule { pattern, at, kind, severity: Severities::always(severity) }
}

/// Kernel messages that start a report; the first match wins, so the panic comes before
/// the "Out of memory" its message may contain. A kernel report is a kernel bug in any
/// phase: at shutdown it can still lose what was not yet written, or hang the power-off,
/// so the phase changes none of these.
const KERNEL_RULES: &[Rule] = &[
    rule("Kernel panic - not syncing", Match::Contains, FindingKind::KernelPanic, Severity::Critical),
    rule("BUG: soft lockup", Match::Contains, FindingKind::SoftLockup, Severity::Error),
    rule("BUG: unable to handle kernel", Match::Contains, FindingKind::KernelOops, Severity::Error),
    rule("BUG: kernel NULL pointer dereference", Match::Contains, FindingKind::KernelOops, Severity::Error),
    rule("general protection fault", Match::Prefix, FindingKind::KernelOops, Severity::Error),
    rule("Oops: ", Match::Prefix, FindingKind::KernelOops, Severity::Error),
    rule("kernel BUG at", Match::Contains, FindingKind::KernelBug, Severity::Error),
    rule("BUG: ", Match::Prefix, FindingKind::KernelBug, Severity::Error),
    rule("WARNING: ", Match::Prefix, FindingKind::KernelWarning, Severity::Warning),
    rule("Out of memory: Kill", Match::Contains, FindingKind::OomKill, Severity::Error),
    rule(" segfault at ", Match::Contains, FindingKind::Segfault, Severity::Warning),
];

/// A rule table with one pass over a message to tell whether any rule may match:
/// almost no message does, and a journal has millions of them.
struct RuleSet {
    rules: &'static [Rule],
    any: Regex,
}

impl RuleSet {
    fn new(rules: &'static [Rule]) -> Self {
        let alternatives: Vec<String> = rules.iter().map(|r| regex::escape(r.pattern)).collect();
        let any = Regex::new(&alternatives.join("|")).expect("escaped literals always compile");
        RuleSet { rules, any }
    }

    /// The first rule matching `message`.
    fn first_match(&self, message: &[u8]) -> Option<&'static Rule> {
        if !self.any.is_match(message) {
            return None;
        }
        self.rules.iter().find(|r| r.matches(message))
    }
}

static KERNEL: LazyLock<RuleSet> = LazyLock::new(|| RuleSet::new(KERNEL_RULES));
static SDDM: LazyLock<RuleSet> = LazyLock::new(|| RuleSet::new(SDDM_RULES));
static FIRMWARE: LazyLock<RuleSet> = LazyLock::new(|| RuleSet::new(FIRMWARE_RULES));
static AVC: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"avc:"));
static FAILED_WITH_RESULT: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b": Failed with result '"));

/// Kinds whose report spans the following lines (registers, modules, Call Trace).
fn opens_report(kind: FindingKind) -> bool {
    matches!(
        kind,
        FindingKind::KernelPanic
            | FindingKind::SoftLockup
            | FindingKind::KernelOops
            | FindingKind::KernelBug
            | FindingKind::KernelWarning
    )
}

/// Lines that close a kernel report.
const KERNEL_REPORT_ENDS: &[&str] = &["---[ end trace", "---[ end Kernel panic"];

/// SDDM messages (journal or sddm.log) that mean no graphical login; the first match
/// wins. At shutdown no login is left to lose, and systemd stops sddm.service by sending
/// SIGTERM to every process of its cgroup at once: the helper of the open session dies of
/// signal 15 before SDDM can end that session, SDDM calls it a crash (`exit code 15`),
/// then, the session being over, starts a display again, which cannot start while
/// everything is being stopped.
const SDDM_RULES: &[Rule] = &[
    // The shutdown's own SIGTERM: expected, kept as a note of what happened.
    rule(
        "sddm-helper crashed (exit code 15)",
        Match::Contains,
        FindingKind::DisplayManagerFailure,
        Severity::Error,
    )
    .at_shutdown(Severity::Info),
    // Another signal (SIGSEGV, SIGABRT) is a real crash, even though no login was lost
    // to it at shutdown.
    rule("sddm-helper crashed", Match::Contains, FindingKind::DisplayManagerFailure, Severity::Error)
        .at_shutdown(Severity::Warning),
    // The display SDDM starts again after the killed session, while systemd stops the
    // system: it fails to start, and nobody is left to log in.
    rule(
        "Display server failed to start",
        Match::Contains,
        FindingKind::DisplayManagerFailure,
        Severity::Error,
    )
    .at_shutdown(Severity::Info),
    rule(
        "Could not start Display server",
        Match::Contains,
        FindingKind::DisplayManagerFailure,
        Severity::Error,
    )
    .at_shutdown(Severity::Info),
    rule(
        "Failed to read display number from pipe",
        Match::Contains,
        FindingKind::DisplayManagerFailure,
        Severity::Error,
    )
    .at_shutdown(Severity::Info),
    // Not `Greeter stopped.`: SDDM logs that at debug level whenever its greeter ends,
    // after every login too; a greeter that cannot run is this line.
    rule(
        "Greeter session failed to start",
        Match::Contains,
        FindingKind::DisplayManagerFailure,
        Severity::Error,
    )
    .at_shutdown(Severity::Info),
    // The helper's exit status after the SIGTERM above.
    rule(
        "Auth: sddm-helper exited with 15",
        Match::Contains,
        FindingKind::DisplayManagerFailure,
        Severity::Warning,
    )
    .at_shutdown(Severity::Info),
    rule(
        "Auth: sddm-helper exited with",
        Match::Contains,
        FindingKind::DisplayManagerFailure,
        Severity::Warning,
    ),
];

/// Firmware (OVMF, SeaBIOS) messages; the first match wins, so a Secure Boot refusal is
/// reported as such even when it is also a failed boot option.
const FIRMWARE_RULES: &[Rule] = &[
    rule("Access Denied", Match::Contains, FindingKind::FirmwareRefusal, Severity::Error),
    rule("Security Violation", Match::Contains, FindingKind::FirmwareRefusal, Severity::Error),
    rule(
        "No bootable option or device was found",
        Match::Contains,
        FindingKind::BootFailure,
        Severity::Error,
    ),
    rule("No bootable device", Match::Contains, FindingKind::BootFailure, Severity::Error),
    rule("failed to load Boot", Match::Contains, FindingKind::BootFailure, Severity::Warning),
    rule("Boot failed:", Match::Contains, FindingKind::BootFailure, Severity::Warning),
];

/// A unit that failed stops what depends on it: an error.
const FAILED_UNIT: (FindingKind, Severity) = (FindingKind::FailedUnit, Severity::Error);

/// systemd's messages about a unit that failed, by the words before the unit's name
/// (job results of `job_done_message_format` and the unit types' own).
const UNIT_FAILURES: &[(&str, Severities)] = &[
    // What needs the unit is missing. At shutdown too: the units that start then (a
    // power-off hook, a last export of logs) run only then.
    ("Failed to start ", Severities::always(Severity::Error)),
    // A consequence of another unit's failure, which has its own finding.
    ("Dependency failed for ", Severities::always(Severity::Warning)),
    // A stop job that failed or timed out: the unit did not stop cleanly (a hung
    // service, a busy mount). Worth a look, but it costs no boot its purpose.
    ("Stopped (with error) ", Severities::always(Severity::Warning)),
    ("Timed out stopping ", Severities::always(Severity::Warning)),
    ("Failed unmounting ", Severities::always(Severity::Warning)),
    ("Timed out unmounting ", Severities::always(Severity::Warning)),
    ("Failed deactivating swap ", Severities::always(Severity::Warning)),
    ("Timed out deactivating swap ", Severities::always(Severity::Warning)),
];

/// `Unit X entered failed state` (systemd < 236) and `X: Failed with result 'R'`: while
/// the system runs, a unit died. At shutdown it was being stopped and did not stop
/// cleanly (its main process exited non-zero on SIGTERM, or its stop timed out): a unit
/// that fails to stop, a warning.
const UNIT_DIED: Severities = Severities { otherwise: Severity::Error, at_shutdown: Severity::Warning };

/// Collects the findings of one file as its messages are handed in.
pub struct Rules {
    file: PathBuf,
    findings: Vec<Finding>,
    /// The kernel report still collecting evidence, as an index into `findings`.
    open_report: Option<usize>,
    /// Failed units already reported, so "Failed to start" and "Failed with result" of
    /// one unit make one finding.
    failed_units: HashMap<String, usize>,
    /// The phase of the boot the messages come from.
    phases: Phases,
    /// For a live carrier ([`take_settled`](Rules::take_settled)): findings before this
    /// index were taken, except `held`, a kernel report that was still open then.
    taken: usize,
    held: Option<usize>,
}

impl Rules {
    pub fn new(file: &Path) -> Self {
        Rules {
            file: file.to_path_buf(),
            findings: Vec::new(),
            open_report: None,
            failed_units: HashMap::new(),
            phases: Phases::default(),
            taken: 0,
            held: None,
        }
    }

    /// A boundary between two boots that the carrier saw (journalctl's `-- Boot` line).
    pub fn new_boot(&mut self) {
        self.phases.new_boot();
    }

    fn phase(&self) -> Option<Phase> {
        self.phases.current()
    }

    pub fn finish(self) -> Vec<Finding> {
        self.findings
    }

    /// The findings no later message can change, not taken before: for a carrier read
    /// live (`logs::live`). A kernel report stays until its end marker, the next report
    /// or its evidence limit closes it. Only for carriers that hand in kernel, AVC, SDDM
    /// and firmware messages: a `systemd` finding gains the later messages of its unit.
    pub fn take_settled(&mut self) -> Vec<Finding> {
        let mut settled = Vec::new();
        if let Some(held) = self.held.filter(|&h| Some(h) != self.open_report) {
            settled.push(self.findings[held].clone());
            self.held = None;
        }
        for index in self.taken..self.findings.len() {
            if Some(index) == self.open_report {
                self.held = Some(index);
            } else {
                settled.push(self.findings[index].clone());
            }
        }
        self.taken = self.findings.len();
        settled
    }

    /// How many findings were made so far.
    pub fn found(&self) -> usize {
        self.findings.len()
    }

    /// A kernel report is collecting its lines: the next kernel message may be one.
    pub fn report_open(&self) -> bool {
        self.open_report.is_some()
    }

    /// The end of a live carrier's stream: every finding not taken yet, an open kernel
    /// report included.
    pub fn take_rest(&mut self) -> Vec<Finding> {
        self.open_report = None;
        self.take_settled()
    }

    fn push(
        &mut self,
        what: (FindingKind, Severity),
        line: u64,
        time: Time,
        summary: String,
        evidence: &[u8],
    ) -> usize {
        self.findings.push(Finding {
            severity: what.1,
            kind: what.0,
            file: self.file.clone(),
            line,
            time: time.render(),
            phase: self.phase(),
            summary,
            evidence: Vec::new(),
        });
        let index = self.findings.len() - 1;
        self.add_evidence(index, evidence);
        index
    }

    /// Appends `lines` (one or more, `\n`-separated) to a finding's evidence, capped.
    fn add_evidence(&mut self, index: usize, lines: &[u8]) -> bool {
        let evidence = &mut self.findings[index].evidence;
        for one in lines.split(|&b| b == b'\n') {
            if evidence.len() >= MAX_EVIDENCE {
                return false;
            }
            evidence.push(text(one).chars().take(MAX_EVIDENCE_CHARS).collect());
        }
        evidence.len() < MAX_EVIDENCE
    }

    /// One line of a kernel log (dmesg, a console) without its `[time]`/`<level>`
    /// prefix. `evidence` is the line as written.
    pub fn kernel(&mut self, line: u64, time: Time, message: &[u8], evidence: &[u8]) {
        self.phases.kernel_log(message);
        self.kernel_message(line, time, message, evidence);
    }

    /// One kernel message, from a kernel log or the journal.
    fn kernel_message(&mut self, line: u64, time: Time, message: &[u8], evidence: &[u8]) {
        if AVC.find(message).is_some() {
            self.avc(line, time, evidence);
            return;
        }
        let trigger = KERNEL.first_match(message);
        if let (Some(rule), Some(open)) = (trigger, self.open_report) {
            // "BUG: unable to handle ..." is followed by "Oops: 0010 [#1]": one report.
            if rule.kind == FindingKind::KernelOops && message.starts_with(b"Oops: ") {
                self.findings[open].kind = FindingKind::KernelOops;
                self.continue_report(open, message, evidence);
                return;
            }
        }
        match trigger {
            Some(rule) => {
                self.open_report = None;
                let meaning = rule.meaning(self.phase());
                let index = self.push(meaning, line, time, summary_of(message), evidence);
                if opens_report(rule.kind) {
                    self.open_report = Some(index);
                }
            }
            None => {
                if let Some(open) = self.open_report {
                    self.continue_report(open, message, evidence);
                }
            }
        }
    }

    fn continue_report(&mut self, open: usize, message: &[u8], evidence: &[u8]) {
        let room_left = self.add_evidence(open, evidence);
        let ended =
            KERNEL_REPORT_ENDS.iter().any(|end| memchr::memmem::find(message, end.as_bytes()).is_some());
        if ended || !room_left {
            self.open_report = None;
        }
    }

    /// A line that may hold an AVC decision; denials become findings.
    pub fn avc(&mut self, line: u64, time: Time, evidence: &[u8]) {
        let Some(avc) = audit::find_avc(evidence) else {
            return;
        };
        if !avc.denied {
            return;
        }
        let time = match (time, avc.stamp) {
            (Time::Unknown, Some(stamp)) => Time::Text(stamp.time),
            (time, _) => time,
        };
        let field = |name| avc.field(name).map(text).unwrap_or_else(|| "?".into());
        let permissions: Vec<String> = avc.permissions.iter().map(|p| text(p)).collect();
        let mode = if avc.permissive() { " (permissive)" } else { "" };
        let summary = format!(
            "SELinux denied {{ {} }} to {} (pid {}): {} -> {} tclass={}{mode}",
            permissions.join(" "),
            field("comm"),
            field("pid"),
            field("scontext"),
            field("tcontext"),
            field("tclass"),
        );
        // Permissive denials were allowed: worth a look, not the cause of a failure.
        let severity = if avc.permissive() { Severity::Warning } else { Severity::Error };
        self.push((FindingKind::AvcDenial, severity), line, time, summary, evidence);
    }

    /// One SDDM message (any of sddm, sddm-helper, sddm-greeter). `is_error`: SDDM
    /// logged it at its error level (`(EE)` in sddm.log), which is worth a warning even
    /// when no rule knows the message.
    pub fn sddm(&mut self, line: u64, time: Time, message: &[u8], evidence: &[u8], is_error: bool) {
        let meaning = match SDDM.first_match(message) {
            Some(rule) => rule.meaning(self.phase()),
            None if is_error => (FindingKind::DisplayManagerFailure, Severity::Warning),
            None => return,
        };
        let summary = format!("SDDM: {}", summary_of(message));
        self.push(meaning, line, time, summary, evidence);
    }

    /// One systemd (PID 1 or user manager) message; `unit` is the journal's `UNIT=` or
    /// `USER_UNIT=` when known.
    pub fn systemd(&mut self, line: u64, time: Time, unit: Option<&[u8]>, message: &[u8], evidence: &[u8]) {
        let Some((named, severities)) = failed_unit(message) else {
            return;
        };
        let severity = severities.in_phase(self.phase());
        let key = text(unit.unwrap_or(named));
        if let Some(&index) = self.failed_units.get(&key) {
            let finding = &mut self.findings[index];
            finding.severity = finding.severity.max(severity);
            self.add_evidence(index, evidence);
            return;
        }
        let summary = format!("unit {key} failed: {}", summary_of(message));
        let meaning = (FindingKind::FailedUnit, severity);
        let index = self.push(meaning, line, time, summary, evidence);
        self.failed_units.insert(key, index);
    }

    /// A unit reported failed by `systemctl list-units`.
    pub fn failed_unit_listed(&mut self, line: u64, unit: &[u8], states: &str, evidence: &[u8]) {
        let summary = format!("unit {} failed ({states})", text(unit));
        self.push(FAILED_UNIT, line, Time::Unknown, summary, evidence);
    }

    /// One line of firmware output, or any other line of a console that is not the
    /// kernel's (systemd's status lines mark the shutdown there).
    pub fn firmware(&mut self, line: u64, message: &[u8]) {
        self.phases.kernel_log(message);
        if let Some(rule) = FIRMWARE.first_match(message) {
            let summary = format!("firmware: {}", summary_of(message));
            let index = self.push(rule.meaning(None), line, Time::Unknown, summary, message);
            // The phases are the operating system's; firmware runs before it.
            self.findings[index].phase = None;
        }
    }

    /// A journal message from any transport, routed by who wrote it.
    pub fn journal_message(&mut self, message: &JournalMessage) {
        let m = message;
        if let Some(boot) = m.boot {
            self.phases.boot_id(boot);
        }
        self.phases.journal(m.identifier, m.pid, m.text);
        if m.kernel || m.identifier == b"kernel" {
            // A multi-line kernel message is one record but each line is a message.
            for one in m.text.split(|&b| b == b'\n') {
                self.kernel_message(m.line, m.time, one, one);
            }
        } else if m.identifier.starts_with(b"sddm") {
            self.sddm(m.line, m.time, m.text, m.text, false);
        } else if m.identifier == b"systemd" {
            self.systemd(m.line, m.time, m.unit, m.text, m.text);
        } else if AVC.find(m.text).is_some() {
            // The audit transport, and user-space object managers (dbus-daemon's
            // USER_AVC) report denials under their own names.
            self.avc(m.line, m.time, m.text);
        } else {
            self.module_refusal(m.line, m.time, m.text);
        }
    }

    /// A refused module load or unload, whoever logs it (modprobe from a script or a
    /// sleep hook, systemd-modules-load, systemd-udevd): the kernel itself says nothing
    /// when `kernel.modules_disabled=1` or a lockdown refuses it.
    pub fn module_refusal(&mut self, line: u64, time: Time, message: &[u8]) {
        if NOT_PERMITTED.find(message).is_none() {
            return;
        }
        let Some(c) = MODULE_REFUSAL.captures(message) else { return };
        let (verb, module) = (text(&c[1]), text(&c[2]));
        let verb = if verb.contains("remove") { "unload" } else { "load" };
        let summary = format!(
            "the kernel refused to {verb} module {module} (Operation not permitted: kernel.modules_disabled=1 \
             or a lockdown); whatever needs it goes without"
        );
        self.push((FindingKind::ModuleRefused, Severity::Error), line, time, summary, message);
    }
}

static NOT_PERMITTED: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b": Operation not permitted"));
/// modprobe's `could not insert 'm': ...` and `could not remove 'm': ...`, libkmod
/// users' (systemd-modules-load, udev) `Failed to insert module 'm': ...`.
static MODULE_REFUSAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(could not insert|could not remove|Failed to insert module|Failed to remove module) '([^']+)'?: Operation not permitted")
        .expect("a valid regex")
});

/// What the journal carrier knows about one entry's message.
pub struct JournalMessage<'a> {
    pub line: u64,
    pub time: Time<'a>,
    /// `SYSLOG_IDENTIFIER` (or the tag of a short line).
    pub identifier: &'a [u8],
    /// `_TRANSPORT=kernel`.
    pub kernel: bool,
    /// `_PID`, else `SYSLOG_PID` (or the `[pid]` of a short line).
    pub pid: Option<&'a [u8]>,
    /// `_BOOT_ID`, when the form carries it.
    pub boot: Option<&'a [u8]>,
    pub unit: Option<&'a [u8]>,
    pub text: &'a [u8],
}

/// The unit at the start of what follows a failure message's words: systemd >= 247
/// writes "foo.service - Description", older ones the description only.
fn unit_of(rest: &[u8]) -> &[u8] {
    let end = memchr::memmem::find(rest, b" - ").unwrap_or(rest.len());
    &rest[..end]
}

/// The unit a systemd failure message names, and how severe the failure is by phase.
fn failed_unit(message: &[u8]) -> Option<(&[u8], Severities)> {
    let message = message.strip_suffix(b".").unwrap_or(message);
    for (words, severities) in UNIT_FAILURES {
        if let Some(rest) = message.strip_prefix(words.as_bytes()) {
            return Some((unit_of(rest), *severities));
        }
    }
    if let Some(rest) = message.strip_prefix(b"Unit ") {
        let end = memchr::memmem::find(rest, b" entered failed state")?;
        return Some((&rest[..end], UNIT_DIED));
    }
    let colon = FAILED_WITH_RESULT.find(message)?;
    Some((&message[..colon], UNIT_DIED))
}

/// A message as a one-line summary: whitespace runs collapsed, at most 200 characters.
fn summary_of(message: &[u8]) -> String {
    let text = text(message);
    let words: Vec<&str> = text.split_whitespace().collect();
    words.join(" ").chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_dereference_and_its_oops_are_one_report() {
        let mut rules = Rules::new(Path::new("dmesg"));
        let lines: [&[u8]; 5] = [
            b"BUG: unable to handle kernel NULL pointer dereference at           (null)",
            b"IP: [<          (null)>]           (null)",
            b"Oops: 0010 [#1] SMP ",
            b"Call Trace:",
            b"---[ end trace 2271808b40998880 ]---",
        ];
        for (i, l) in lines.iter().enumerate() {
            rules.kernel(i as u64 + 1, Time::Unknown, l, l);
        }
        rules.kernel(6, Time::Unknown, b"eth0: link up", b"eth0: link up");
        let findings = rules.finish();
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].kind, FindingKind::KernelOops);
        assert_eq!(findings[0].evidence.len(), 5);
        assert_eq!(findings[0].summary, "BUG: unable to handle kernel NULL pointer dereference at (null)");
    }

    #[test]
    fn a_live_carrier_takes_each_finding_once_and_a_report_when_it_ends() {
        let mut rules = Rules::new(Path::new("syslog"));
        let mut taken = Vec::new();
        let avc = b"audit: type=1400 audit(1.0:2): avc:  denied  { read } for pid=7 comm=\"x\" scontext=a tcontext=b tclass=file permissive=0";
        let lines: [&[u8]; 5] = [
            b"WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2",
            b"Call Trace:",
            avc,
            b" f+0x1/0x2",
            b"---[ end trace 0 ]---",
        ];
        for (i, l) in lines.iter().enumerate() {
            rules.kernel(i as u64 + 1, Time::Unknown, l, l);
            taken.push(rules.take_settled().iter().map(|f| f.line).collect::<Vec<_>>());
        }
        // The denial when it is logged; the warning's report at its end marker.
        assert_eq!(taken, [vec![], vec![], vec![3], vec![], vec![1]]);
        rules.kernel(6, Time::Unknown, b"Oops: 0000 [#1] SMP", b"Oops: 0000 [#1] SMP");
        assert!(rules.report_open() && rules.take_settled().is_empty());
        let rest = rules.take_rest();
        assert_eq!((rest.len(), rest[0].line), (1, 6));
        assert!(rules.take_rest().is_empty());
        assert_eq!(rules.found(), 3);
    }

    #[test]
    fn panic_wins_over_the_oom_it_mentions() {
        let mut rules = Rules::new(Path::new("vmcore-dmesg"));
        let m = b"Kernel panic - not syncing: Out of memory: system-wide panic_on_oom is enabled";
        rules.kernel(1, Time::Unknown, m, m);
        let findings = rules.finish();
        assert_eq!(findings[0].kind, FindingKind::KernelPanic);
        assert_eq!(findings[0].severity, Severity::Critical);
    }

    #[test]
    fn one_finding_per_failed_unit() {
        let mut rules = Rules::new(Path::new("journal"));
        // Real lines from the fedora37 journal (short-precise rendering).
        let a = b"app-gnome-gnome\\x2dkeyring\\x2dssh-1655.scope: Failed with result 'resources'.";
        let b = b"Failed to start app-gnome-gnome\\x2dkeyring\\x2dssh-1655.scope - Application launched by gnome-session-binary.";
        rules.systemd(1, Time::Unknown, None, a, a);
        rules.systemd(2, Time::Unknown, None, b, b);
        rules.systemd(3, Time::Unknown, None, b"Started foo.service.", b"");
        let findings = rules.finish();
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].evidence.len(), 2);
        assert!(
            findings[0].summary.starts_with("unit app-gnome-gnome\\x2dkeyring\\x2dssh-1655.scope failed")
        );
    }

    #[test]
    fn denials_reach_the_rules_from_any_journal_identifier() {
        // Written in the format of dbus-daemon's USER_AVC denials (the corpus has only
        // its policy-load notices), as the journal's audit transport carries them.
        let text = b"USER_AVC pid=1 uid=81 auid=4294967295 ses=4294967295 subj=system_u:system_r:system_dbusd_t:s0-s0:c0.c1023 msg='avc:  denied  { send_msg } for msgtype=method_call interface=org.freedesktop.login1.Manager member=Inhibit dest=:1.3 spid=1061 tpid=772 scontext=system_u:system_r:sddm_t:s0 tcontext=system_u:system_r:systemd_logind_t:s0 tclass=dbus permissive=0 exe=\"/usr/bin/dbus-daemon\"'";
        let mut rules = Rules::new(Path::new("journal"));
        rules.journal_message(&JournalMessage {
            line: 3,
            time: Time::Unknown,
            identifier: b"",
            kernel: false,
            pid: None,
            boot: None,
            unit: None,
            text,
        });
        let findings = rules.finish();
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].kind, FindingKind::AvcDenial);
        assert_eq!(findings[0].severity, Severity::Error);
        assert!(findings[0].summary.contains("{ send_msg }"));
        assert!(findings[0].summary.contains("tclass=dbus"));
    }

    #[test]
    fn a_module_the_kernel_refused_is_an_error_whoever_logs_it() {
        // modprobe's line as the installed system printed it with kernel.modules_disabled=1
        // (the kernel logs nothing), then systemd-modules-load's and udev's wording.
        let lines: [(&[u8], &[u8]); 4] = [
            (b"systemd-sleep", b"modprobe: ERROR: could not insert 'virtio_net': Operation not permitted"),
            (b"systemd-sleep", b"modprobe: ERROR: could not remove 'virtio_net': Operation not permitted"),
            (b"systemd-modules-load", b"Failed to insert module '9p': Operation not permitted"),
            (b"(udev-worker)", b"virtio3: Failed to insert module 'virtio_net': Operation not permitted"),
        ];
        let mut rules = Rules::new(Path::new("journal"));
        for (i, (identifier, text)) in lines.iter().enumerate() {
            rules.journal_message(&JournalMessage {
                line: i as u64 + 1,
                time: Time::Unknown,
                identifier,
                kernel: false,
                pid: None,
                boot: None,
                unit: None,
                text,
            });
        }
        // Other failures of modprobe are not this finding.
        rules.module_refusal(9, Time::Unknown, b"modprobe: FATAL: Module virtio_net not found in directory");
        let findings = rules.finish();
        let seen: Vec<(u64, &str)> = findings
            .iter()
            .map(|f| {
                assert_eq!((f.kind, f.severity), (FindingKind::ModuleRefused, Severity::Error));
                (f.line, f.summary.split(" (").next().unwrap())
            })
            .collect();
        assert_eq!(
            seen,
            [
                (1, "the kernel refused to load module virtio_net"),
                (2, "the kernel refused to unload module virtio_net"),
                (3, "the kernel refused to load module 9p"),
                (4, "the kernel refused to load module virtio_net"),
            ]
        );
        assert!(findings[0].summary.contains("kernel.modules_disabled=1"));
    }

    #[test]
    fn a_greeter_that_ends_after_a_login_is_no_failure() {
        // The daemon's lines after a login, as the sddm-login scenario's journal has them,
        // then SDDM's words for a greeter that could not run.
        let mut rules = Rules::new(Path::new("journal"));
        for (line, text) in [
            (1, &b"Authenticated successfully"[..]),
            (2, b"Greeter stopped."),
            (3, b"Session started"),
            (4, b"Greeter session failed to start"),
        ] {
            rules.sddm(line, Time::Unknown, text, text, false);
        }
        let findings = rules.finish();
        let judged: Vec<_> = findings.iter().map(|f| (f.line, f.severity)).collect();
        assert_eq!(judged, [(4, Severity::Error)]);
    }

    #[test]
    fn secure_boot_refusal_is_not_just_a_failed_boot_option() {
        // The form edk2's BdsDxe prints when Secure Boot rejects a boot loader.
        let line = b"BdsDxe: failed to load Boot0001 \"UEFI QEMU DVD-ROM QM00005 \" from PciRoot(0x0)/Pci(0x1F,0x2)/Sata(0x2,0xFFFF,0x0): Access Denied";
        let mut rules = Rules::new(Path::new("console.log"));
        rules.firmware(7, line);
        rules.firmware(8, b"BdsDxe: No bootable option or device was found.");
        let findings = rules.finish();
        assert_eq!(findings[0].kind, FindingKind::FirmwareRefusal);
        assert_eq!(findings[1].kind, FindingKind::BootFailure);
        assert_eq!(findings[1].line, 8);
    }
}
