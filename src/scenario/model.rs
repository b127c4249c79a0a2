//! The scenario file: `tests/scenarios/*.toml` → [`Scenario`].
//!
//! Owns: the format, its validation and errors pointing at file, line and column.
//! Must not: run anything (see `runner`).
//!
//! A step or check is a table with exactly one action key (`wait_console`, `run`,
//! `sysctl`, ...) plus the modifiers that action takes (`timeout`, `exit`, ...).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::checks::CheckKind;
use crate::checks::kind::RawCheck;
use crate::pattern::{BytePattern, Pattern};
use crate::profile::{line_column, parse_duration};

#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    /// A shipped profile name or a profile path (relative to the scenario file).
    pub profile: String,
    /// `reference:<name>` or a path (relative to the scenario file).
    pub image: String,
    /// The whole scenario's budget, as under KVM.
    pub timeout: Duration,
    pub tags: Vec<String>,
    pub ignore: Option<String>,
    pub secrets: BTreeMap<String, SecretSource>,
    pub steps: Vec<Step>,
    pub checks: Vec<Check>,
    /// A disc attached besides the image, first in the boot order (an installer ISO:
    /// `reference:installer` or a path, relative to the scenario file).
    pub cdrom: Option<String>,
    /// A kickstart made of these files in order (e.g. the image's own and bootproof's
    /// capture snippet), its `${secret:NAME}`s filled in at run time, delivered on a
    /// disk labelled OEMDRV, where anaconda finds it by itself (see
    /// [`crate::installer::oemdrv`]).
    pub kickstart: Vec<PathBuf>,
    /// Error-level findings in the live installer logs end the run at once, unless
    /// their summary or evidence matches one of these.
    pub allow_findings: Vec<Pattern>,
    /// A Debian installer run: bootproof serves its local mirror and this rendered
    /// preseed to the guest (see [`crate::installer`]).
    pub preseed: Option<PreseedRun>,
    /// `[[share]]`: host directories the guest may mount, read-only, besides the run's
    /// own read-write share.
    pub shares: Vec<ScenarioShare>,
    /// `start`: the checkpoint the scenario starts from, a name (found in a
    /// `checkpoints` directory beside the scenarios' directory, or shipped) or a path
    /// (made absolute by [`Scenario::load`]); see [`Checkpoint`].
    pub start: Option<String>,
    /// The file it came from, when it came from one.
    pub file: Option<PathBuf>,
}

/// A checkpoint file (`tests/checkpoints/<name>.toml`): the steps that bring a machine
/// to a state many scenarios start from, with the secrets those steps type. It runs on
/// the image and profile of the scenario that starts there; the machine is then saved
/// and every such scenario restores a fork of it (see `crate::vm::checkpoint`).
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The file's stem: what `start = "..."` names.
    pub name: String,
    pub description: Option<String>,
    /// The build's budget, as under KVM (scaled under TCG like a scenario's).
    pub timeout: Duration,
    pub secrets: BTreeMap<String, SecretSource>,
    pub steps: Vec<Step>,
    /// The file it came from (a `builtin:` label for a shipped one).
    pub file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheckpoint {
    #[serde(default)]
    description: Option<String>,
    #[serde(default = "default_checkpoint_timeout")]
    timeout: toml::Spanned<String>,
    #[serde(default)]
    secrets: BTreeMap<String, toml::Spanned<SecretSource>>,
    #[serde(default)]
    step: Vec<toml::Spanned<RawStep>>,
}

fn default_checkpoint_timeout() -> toml::Spanned<String> {
    toml::Spanned::new(0..0, "5m".to_string())
}

/// The shipped checkpoints as `(file name, contents)`: `tests/checkpoints/*.toml` at
/// build time (see build.rs).
const SHIPPED_CHECKPOINTS: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/shipped_checkpoints.rs"));

/// How messages name a shipped checkpoint's file.
pub const BUILTIN_CHECKPOINTS: &str = "builtin:tests/checkpoints";

impl Checkpoint {
    /// The checkpoint `scenario.start` names: a path as given (already absolute when
    /// the scenario was loaded from a file); a name from `<scenario dir>/../checkpoints/`
    /// when that file exists, else the shipped one of that name.
    pub fn locate(scenario: &Scenario) -> Result<Option<Checkpoint>, ScenarioError> {
        let Some(start) = &scenario.start else { return Ok(None) };
        if is_path_like(start) {
            return Checkpoint::load(Path::new(start)).map(Some);
        }
        let on_disk =
            scenario.file.as_ref().filter(|f| f.is_file()).and_then(|f| {
                f.parent()?.parent().map(|d| d.join("checkpoints").join(format!("{start}.toml")))
            });
        if let Some(path) = on_disk.filter(|p| p.is_file()) {
            return Checkpoint::load(&path).map(Some);
        }
        let file = format!("{start}.toml");
        match SHIPPED_CHECKPOINTS.iter().find(|(f, _)| *f == file) {
            Some((_, text)) => {
                let label = PathBuf::from(format!("{BUILTIN_CHECKPOINTS}/{file}"));
                let mut c = Checkpoint::parse(text, &label)?;
                needles_relative_to(&mut c.steps, Path::new(BUILTIN_CHECKPOINTS));
                c.name = start.clone();
                Ok(Some(c))
            }
            None => {
                let shipped: Vec<&str> =
                    SHIPPED_CHECKPOINTS.iter().map(|(f, _)| f.trim_end_matches(".toml")).collect();
                let looked = on_disk_hint(scenario, start);
                Err(ScenarioError::Invalid {
                    path: scenario.file.clone().unwrap_or_else(|| PathBuf::from(&scenario.name)),
                    line: 1,
                    column: 1,
                    message: format!(
                        "start = \"{start}\": no such checkpoint ({looked}the shipped ones are: {})",
                        shipped.join(", ")
                    ),
                })
            }
        }
    }

    /// Loads a checkpoint file; relative secret files become relative to it.
    pub fn load(path: &Path) -> Result<Checkpoint, ScenarioError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ScenarioError::Read { path: path.to_path_buf(), source })?;
        let mut c = Checkpoint::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for f in c.secrets.values_mut().filter_map(SecretSource::file_mut) {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
        needles_relative_to(&mut c.steps, base);
        Ok(c)
    }

    /// Parses checkpoint text; `path` labels errors and names the checkpoint.
    pub fn parse(text: &str, path: &Path) -> Result<Checkpoint, ScenarioError> {
        let ctx = Ctx { text, path };
        let raw: RawCheckpoint = toml::from_str(text)
            .map_err(|e| ctx.error(e.span().unwrap_or(0..0), e.message().trim().to_string()))?;
        let timeout = parse_duration(raw.timeout.get_ref()).map_err(|m| ctx.error(raw.timeout.span(), m))?;
        let mut secrets = BTreeMap::new();
        for (name, src) in raw.secrets {
            if let SecretSource::Generate(_) = src.get_ref() {
                return Err(ctx.error(
                    src.span(),
                    format!(
                        "secret `{name}`: a checkpoint cannot generate a secret (its value would be \
                         lost with the run that built it, and every fork would need it); give it a \
                         file, a variable or a reference"
                    ),
                ));
            }
            secrets.insert(name, src.into_inner());
        }
        let steps = raw.step.into_iter().map(|s| step(&ctx, s)).collect::<Result<Vec<_>, _>>()?;
        if steps.is_empty() {
            return Err(ctx.error(
                0..0,
                "a checkpoint has no [[step]]: it would save a machine nobody has looked at; add the \
                 steps that reach its state (a console prompt, a unit)"
                    .into(),
            ));
        }
        for st in &steps {
            if let Some(what) = unsaveable_step(&st.action) {
                return Err(ScenarioError::Invalid {
                    path: path.into(),
                    line: st.line,
                    column: 1,
                    message: format!("a checkpoint step cannot {what}: the saved machine must be running"),
                });
            }
        }
        undeclared_secret(&steps, |name| secrets.contains_key(name), path, "the checkpoint's [secrets]")?;
        let name = path.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        Ok(Checkpoint {
            name,
            description: raw.description,
            timeout,
            secrets,
            steps,
            file: path.to_path_buf(),
        })
    }

    /// The scenario as a cold boot runs it: the checkpoint's steps first, then its
    /// own, with both sets of secrets (a scenario's own secret of the same name wins).
    pub fn prepend_to(&self, scenario: &Scenario) -> Scenario {
        let mut cold = scenario.clone();
        cold.start = None;
        cold.steps = self.steps.iter().cloned().chain(scenario.steps.iter().cloned()).collect();
        for (name, src) in &self.secrets {
            cold.secrets.entry(name.clone()).or_insert_with(|| src.clone());
        }
        cold
    }
}

/// Steps after which there is no running machine to save.
fn unsaveable_step(action: &Action) -> Option<&'static str> {
    match action {
        Action::PowerOff => Some("power the machine off"),
        Action::Suspend => Some("suspend the machine"),
        _ => None,
    }
}

fn is_path_like(start: &str) -> bool {
    start.contains('/') || start.ends_with(".toml")
}

fn on_disk_hint(scenario: &Scenario, start: &str) -> String {
    match scenario.file.as_ref().filter(|f| f.is_file()).and_then(|f| f.parent()?.parent()) {
        Some(d) => format!("looked for {}; ", d.join("checkpoints").join(format!("{start}.toml")).display()),
        None => String::new(),
    }
}

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawSecretSource")]
pub enum SecretSource {
    /// This environment variable; when it is unset, `fallback` (a file) if given.
    Env { var: String, fallback: Option<PathBuf> },
    /// This file (relative to the scenario file); a trailing newline is dropped.
    File(PathBuf),
    /// A test secret of a reference image, `<image>/<file>` (`installed/luks-passphrase`):
    /// the file its build wrote next to the image (see [`crate::images::secret_file`]).
    Reference(String),
    /// A fresh random value for each run, of this many characters (letters and
    /// digits): a password the scenario sets in the guest, such as the new one a
    /// forced password change asks for.
    Generate(usize),
}

impl SecretSource {
    /// The file the value is read from, if any (relative paths are resolved by `load`).
    pub fn file_mut(&mut self) -> Option<&mut PathBuf> {
        match self {
            SecretSource::Env { fallback, .. } => fallback.as_mut(),
            SecretSource::File(f) => Some(f),
            SecretSource::Reference(_) | SecretSource::Generate(_) => None,
        }
    }

    pub fn reference(&self) -> Option<&str> {
        match self {
            SecretSource::Reference(r) => Some(r),
            _ => None,
        }
    }
}

/// `{ env = "VAR" }`, `{ file = "path" }`, both (the file when the variable is unset),
/// or `{ reference = "installed/luks-passphrase" }` alone.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecretSource {
    #[serde(default)]
    env: Option<String>,
    #[serde(default)]
    file: Option<PathBuf>,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    generate: Option<usize>,
}

impl TryFrom<RawSecretSource> for SecretSource {
    type Error = String;

    fn try_from(raw: RawSecretSource) -> Result<Self, String> {
        match raw {
            RawSecretSource { generate: Some(n), env: None, file: None, reference: None } => {
                if !(12..=256).contains(&n) {
                    return Err(format!("`generate = {n}`: a generated secret has 12 to 256 characters"));
                }
                Ok(SecretSource::Generate(n))
            }
            RawSecretSource { generate: Some(_), .. } => {
                Err("`generate` comes alone, without `env`, `file` or `reference`".into())
            }
            RawSecretSource { reference: Some(r), env: None, file: None, .. } => {
                crate::images::secret_name(&r).map_err(|e| e.to_string())?;
                Ok(SecretSource::Reference(r))
            }
            RawSecretSource { reference: Some(_), .. } => {
                Err("`reference` comes alone, without `env` or `file`".into())
            }
            RawSecretSource { env: Some(var), file, .. } => Ok(SecretSource::Env { var, fallback: file }),
            RawSecretSource { file: Some(f), .. } => Ok(SecretSource::File(f)),
            _ => Err("needs `env = \"VAR\"`, `file = \"path\"`, \
                      `reference = \"installed/luks-passphrase\"` or `generate = 20`"
                .into()),
        }
    }
}

/// `[[share]] tag = "kernel-upgrade"`, `path = "reference:installed-grub/upgrade"`:
/// a directory handed to the guest read-only under a 9p mount tag. `path` is a
/// directory (relative to the scenario file) or `reference:<image>/<dir>`, which a
/// reference image's build wrote next to it (see [`crate::images::reference_dir`]).
/// The guest mounts it itself (`mount -t 9p -o trans=virtio,ro TAG /mnt`): the
/// mount is a step the scenario shows, and a guest without 9p support fails there.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioShare {
    pub tag: String,
    pub path: String,
}

/// `[preseed]`: the answers of a Debian installer run that only the scenario knows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreseedRun {
    /// The `[secrets]` entry that is the LUKS passphrase.
    pub luks: String,
    /// The `[secrets]` entry that is the password of the user `admin`.
    pub admin: String,
    /// Shell commands added to `preseed/early_command` (after bootproof's capture).
    #[serde(default)]
    pub early_command: Vec<String>,
    /// Shell commands added to `preseed/late_command` (after bootproof's capture).
    #[serde(default)]
    pub late_command: Vec<String>,
    /// Whole preseed lines that override the template's answers (a fault's broken one).
    #[serde(default)]
    pub set: Vec<String>,
}

/// Keys pressed together, such as `ctrl-alt-f2`, checked against QEMU's key names
/// when the scenario is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chord {
    pub text: String,
    pub qcodes: Vec<String>,
}

impl Chord {
    pub fn parse(text: &str) -> Result<Chord, String> {
        let qcodes = crate::qmp::chord_qcodes(text).map_err(|e| e.to_string())?;
        Ok(Chord { text: text.to_string(), qcodes })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub action: Action,
    /// This step's own limit, as under KVM; the default depends on the action.
    pub timeout: Option<Duration>,
    /// 1-based line of the step in its file, for messages.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `fail_on`: text that ends the wait as a failure at once (a prompt that comes
    /// back, a refusal), instead of waiting out the timeout.
    WaitConsole {
        pattern: BytePattern,
        fail_on: Option<BytePattern>,
    },
    TypeConsole {
        text: String,
    },
    SendKeys {
        chord: Chord,
    },
    TypeKeys {
        text: String,
    },
    Screenshot {
        name: String,
    },
    WaitJournal(JournalWait),
    Run {
        command: String,
        exit: i32,
        /// Multi-line regexes over the command's output.
        stdout: Option<Pattern>,
        stderr: Option<Pattern>,
    },
    WaitFile {
        path: String,
    },
    PowerOff,
    Reboot,
    /// Waits for the guest to reset the machine by itself (an installer's reboot into
    /// what it installed); console waits after it see only the new boot.
    WaitReset,
    /// Takes the disc out of the drive (QMP `eject`), so the next boot comes from disk.
    Eject,
    /// Suspends the guest to RAM from inside (systemd's `systemctl suspend`, or the
    /// kernel's `/sys/power/state` without systemd) and waits for QMP's `SUSPEND`;
    /// the profile needs `acpi_s3 = true`.
    Suspend,
    /// Wakes a suspended guest (QMP `system_wakeup`) and waits for QMP's `WAKEUP`.
    Wakeup,
    /// Mounts a share in the guest through whichever backend serves it (virtio-9p by
    /// tag, or 9P over TCP to bootproof's server), read-only if the share is; checks
    /// the guest kernel's 9P support first and names what is missing.
    MountShare {
        tag: String,
        path: String,
    },
    /// Waits for a finding in the live installer logs whose summary matches.
    WaitFinding {
        pattern: Pattern,
    },
    Sleep {
        duration: Duration,
        reason: String,
    },
    /// Polls screenshots until the needle matches (`wait_screen`), or looks once
    /// (`assert_screen`); see [`crate::screen`].
    Screen(ScreenMatch),
}

/// `wait_screen = { needle = "file.png", threshold = 0.9, area = [x, y, w, h] }` or
/// `wait_screen = { text = "REGEX", area = [..] }` (or `assert_screen`, one look).
#[derive(Debug, Clone, PartialEq)]
pub struct ScreenMatch {
    pub target: ScreenTarget,
    /// Where on the screen to search; the whole screen when absent.
    pub area: Option<crate::screen::Area>,
    /// `false` for `assert_screen`.
    pub wait: bool,
}

/// What a screen step looks for.
#[derive(Debug, Clone, PartialEq)]
pub enum ScreenTarget {
    /// A picture cut from a screenshot.
    Needle {
        /// Relative to the scenario file (made absolute by `load`; a shipped
        /// scenario's is a `builtin:` label).
        path: PathBuf,
        /// Normalised cross-correlation to reach; 1.0 is identical.
        threshold: f32,
    },
    /// Text read by OCR (see [`crate::screen::ocr`]), matched by a regex whose `^` and
    /// `$` match at line breaks.
    Text(Pattern),
}

impl ScreenMatch {
    /// The needle's file, for a needle step.
    pub fn needle_mut(&mut self) -> Option<&mut PathBuf> {
        match &mut self.target {
            ScreenTarget::Needle { path, .. } => Some(path),
            ScreenTarget::Text(_) => None,
        }
    }
}

/// Makes the needle paths of `steps` relative to `base` (a scenario's or checkpoint's
/// directory, or its `builtin:` directory).
pub(crate) fn needles_relative_to(steps: &mut [Step], base: &Path) {
    for step in steps {
        if let Action::Screen(m) = &mut step.action
            && let Some(path) = m.needle_mut()
            && path.is_relative()
        {
            *path = base.join(&*path);
        }
    }
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawScreen {
    #[serde(default)]
    needle: Option<PathBuf>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    threshold: Option<f32>,
    #[serde(default)]
    area: Option<[u32; 4]>,
}

/// The threshold a needle must reach when the step does not say.
pub const DEFAULT_THRESHOLD: f32 = 0.9;

impl Action {
    /// The action's key in the file, used in names and messages.
    pub fn key(&self) -> &'static str {
        match self {
            Action::WaitConsole { .. } => "wait_console",
            Action::TypeConsole { .. } => "type_console",
            Action::SendKeys { .. } => "send_keys",
            Action::TypeKeys { .. } => "type_keys",
            Action::Screenshot { .. } => "screenshot",
            Action::WaitJournal(_) => "wait_journal",
            Action::Run { .. } => "run",
            Action::WaitFile { .. } => "wait_file",
            Action::PowerOff => "power_off",
            Action::Reboot => "reboot",
            Action::WaitReset => "wait_reset",
            Action::Eject => "eject",
            Action::Suspend => "suspend",
            Action::Wakeup => "wakeup",
            Action::MountShare { .. } => "mount_share",
            Action::WaitFinding { .. } => "wait_finding",
            Action::Sleep { .. } => "sleep",
            Action::Screen(m) if m.wait => "wait_screen",
            Action::Screen(_) => "assert_screen",
        }
    }

    /// A short description with the action's argument (secrets stay as `${secret:..}`).
    pub fn describe(&self) -> String {
        match self {
            Action::WaitConsole { pattern, .. } => format!("wait_console /{pattern}/"),
            Action::TypeConsole { text } => format!("type_console {text:?}"),
            Action::SendKeys { chord } => format!("send_keys {}", chord.text),
            Action::TypeKeys { text } => format!("type_keys {text:?}"),
            Action::Screenshot { name } => format!("screenshot {name}"),
            Action::WaitJournal(w) => format!("wait_journal {}", w.describe()),
            Action::Run { command, .. } => format!("run {command:?}"),
            Action::WaitFile { path } => format!("wait_file {path}"),
            Action::PowerOff => "power_off".into(),
            Action::Reboot => "reboot".into(),
            Action::WaitReset => "wait_reset".into(),
            Action::Eject => "eject".into(),
            Action::Suspend => "suspend".into(),
            Action::Wakeup => "wakeup".into(),
            Action::MountShare { tag, path } => format!("mount_share {tag} at {path}"),
            Action::WaitFinding { pattern } => format!("wait_finding /{pattern}/"),
            Action::Sleep { duration, reason } => format!("sleep {duration:?} ({reason})"),
            Action::Screen(m) => {
                let area = m.area.map_or_else(String::new, |a| format!(" in {a}"));
                let key = if m.wait { "wait_screen" } else { "assert_screen" };
                match &m.target {
                    ScreenTarget::Needle { path, threshold } => {
                        let file =
                            path.file_name().map_or_else(String::new, |f| f.to_string_lossy().into_owned());
                        format!("{key} {file}{area} >= {threshold}")
                    }
                    ScreenTarget::Text(p) => format!("{key} text /{p}/{area}"),
                }
            }
        }
    }
}

/// What a `wait_journal` step waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalWait {
    /// A unit reaching a state.
    Unit { name: String, state: UnitState },
    /// A message matching a regex, optionally only from this SYSLOG_IDENTIFIER.
    Message { pattern: Pattern, identifier: Option<String> },
}

impl JournalWait {
    pub fn describe(&self) -> String {
        match self {
            JournalWait::Unit { name, state } => format!("{name} {}", state.as_str()),
            JournalWait::Message { pattern, identifier: Some(id) } => format!("{id}: /{pattern}/"),
            JournalWait::Message { pattern, identifier: None } => format!("/{pattern}/"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJournalWait {
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    state: Option<UnitState>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    identifier: Option<String>,
}

impl RawJournalWait {
    fn into_wait(self) -> Result<JournalWait, String> {
        let nul = |k: &str, v: &Option<String>| match v {
            Some(v) if v.contains('\0') => {
                Err(format!("wait_journal.{k}: a NUL character cannot reach the guest"))
            }
            _ => Ok(()),
        };
        nul("unit", &self.unit)?;
        nul("identifier", &self.identifier)?;
        match (self.unit, self.message) {
            (Some(name), None) if self.identifier.is_none() => {
                Ok(JournalWait::Unit { name, state: self.state.unwrap_or(UnitState::Active) })
            }
            (None, Some(m)) if self.state.is_none() => {
                let pattern = Pattern::new(&m).map_err(|e| format!("wait_journal.message: {e}"))?;
                Ok(JournalWait::Message { pattern, identifier: self.identifier })
            }
            (Some(_), None) => Err("wait_journal: `identifier` belongs to `message`, not to `unit`".into()),
            (None, Some(_)) => Err("wait_journal: `state` belongs to `unit`, not to `message`".into()),
            _ => Err("wait_journal needs exactly one of `unit` or `message`".into()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitState {
    Active,
    Failed,
}

impl UnitState {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitState::Active => "active",
            UnitState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub kind: CheckKind,
    pub line: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{}: cannot read scenario: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid { path: PathBuf, line: usize, column: usize, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    profile: String,
    image: String,
    #[serde(default = "default_timeout")]
    timeout: toml::Spanned<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    ignore: Option<String>,
    #[serde(default)]
    secrets: BTreeMap<String, SecretSource>,
    #[serde(default)]
    step: Vec<toml::Spanned<RawStep>>,
    #[serde(default)]
    check: Vec<toml::Spanned<RawCheck>>,
    #[serde(default)]
    cdrom: Option<String>,
    #[serde(default)]
    kickstart: Option<OneOrMany>,
    #[serde(default)]
    allow_findings: Vec<toml::Spanned<String>>,
    #[serde(default)]
    preseed: Option<toml::Spanned<PreseedRun>>,
    #[serde(default)]
    share: Vec<toml::Spanned<ScenarioShare>>,
    #[serde(default)]
    start: Option<toml::Spanned<String>>,
}

/// `"file"` or `["file", ...]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<PathBuf> {
        match self {
            OneOrMany::One(p) => vec![p],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawMountShare {
    tag: String,
    path: String,
}

fn default_timeout() -> toml::Spanned<String> {
    toml::Spanned::new(0..0, "10m".to_string())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStep {
    wait_console: Option<String>,
    type_console: Option<String>,
    send_keys: Option<String>,
    type_keys: Option<String>,
    screenshot: Option<String>,
    wait_journal: Option<RawJournalWait>,
    run: Option<String>,
    wait_file: Option<String>,
    power_off: Option<bool>,
    reboot: Option<bool>,
    wait_reset: Option<bool>,
    eject: Option<bool>,
    suspend: Option<bool>,
    wakeup: Option<bool>,
    mount_share: Option<RawMountShare>,
    wait_finding: Option<String>,
    sleep: Option<String>,
    wait_screen: Option<RawScreen>,
    assert_screen: Option<RawScreen>,
    // Modifiers.
    timeout: Option<String>,
    exit: Option<i32>,
    stdout: Option<String>,
    stderr: Option<String>,
    reason: Option<String>,
    fail_on: Option<String>,
}

struct Ctx<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Ctx<'_> {
    fn error(&self, span: std::ops::Range<usize>, message: String) -> ScenarioError {
        let (line, column) = line_column(self.text, span.start);
        ScenarioError::Invalid { path: self.path.to_path_buf(), line, column, message }
    }

    fn line(&self, span: &std::ops::Range<usize>) -> usize {
        line_column(self.text, span.start).0
    }
}

impl Scenario {
    /// Loads a scenario file; relative profile and image paths become relative to it.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ScenarioError::Read { path: path.to_path_buf(), source })?;
        let mut s = Scenario::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let is_path = s.profile.contains('/') || s.profile.ends_with(".toml");
        if is_path && Path::new(&s.profile).is_relative() {
            s.profile = base.join(&s.profile).display().to_string();
        }
        let spec = s.image.starts_with("reference:") || s.image.starts_with("blank:");
        if !spec && Path::new(&s.image).is_relative() {
            s.image = base.join(&s.image).display().to_string();
        }
        if let Some(c) = &mut s.cdrom
            && !c.starts_with("reference:")
            && Path::new(c.as_str()).is_relative()
        {
            *c = base.join(&*c).display().to_string();
        }
        needles_relative_to(&mut s.steps, base);
        for share in &mut s.shares {
            if !share.path.starts_with("reference:") && Path::new(&share.path).is_relative() {
                share.path = base.join(&share.path).display().to_string();
            }
        }
        if let Some(start) = &mut s.start
            && is_path_like(start)
            && Path::new(start.as_str()).is_relative()
        {
            *start = base.join(&*start).display().to_string();
        }
        for k in &mut s.kickstart {
            if k.is_relative() {
                *k = base.join(&*k);
            }
            let text = std::fs::read_to_string(&*k)
                .map_err(|source| ScenarioError::Read { path: k.clone(), source })?;
            for (i, line) in text.lines().enumerate() {
                if let Some(name) = names_in(line).into_iter().find(|n| !s.secrets.contains_key(n)) {
                    let message =
                        format!("`${{secret:{name}}}` names no secret in [secrets] of {}", path.display());
                    return Err(ScenarioError::Invalid { path: k.clone(), line: i + 1, column: 1, message });
                }
            }
        }
        for f in s.secrets.values_mut().filter_map(SecretSource::file_mut) {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
        s.file = Some(path.to_path_buf());
        Ok(s)
    }

    /// Parses scenario text; `path` labels errors.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let ctx = Ctx { text, path };
        let raw: RawScenario = toml::from_str(text)
            .map_err(|e| ctx.error(e.span().unwrap_or(0..0), e.message().trim().to_string()))?;
        let timeout = parse_duration(raw.timeout.get_ref()).map_err(|m| ctx.error(raw.timeout.span(), m))?;
        let steps = raw.step.into_iter().map(|s| step(&ctx, s)).collect::<Result<Vec<_>, _>>()?;
        let checks = raw.check.into_iter().map(|c| check(&ctx, c)).collect::<Result<Vec<_>, _>>()?;
        let allow_findings = raw
            .allow_findings
            .iter()
            .map(|a| {
                Pattern::new(a.get_ref()).map_err(|m| ctx.error(a.span(), format!("allow_findings: {m}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let preseed = match raw.preseed {
            Some(p) => {
                let span = p.span();
                let p = p.into_inner();
                if let Some(name) = [&p.luks, &p.admin].into_iter().find(|n| !raw.secrets.contains_key(*n)) {
                    return Err(ctx
                        .error(span, format!("[preseed] names secret `{name}`, which is not in [secrets]")));
                }
                Some(p)
            }
            None => None,
        };
        let mut shares: Vec<ScenarioShare> = Vec::new();
        for share in raw.share {
            let span = share.span();
            let share = share.into_inner();
            let tag_ok = !share.tag.is_empty()
                && share.tag.len() <= 31
                && share.tag.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c));
            if !tag_ok {
                return Err(ctx.error(
                    span,
                    format!("[[share]] tag `{}`: 1 to 31 letters, digits, `-`, `_` or `.`", share.tag),
                ));
            }
            if share.tag == crate::vm::plan::SHARE_TAG || shares.iter().any(|s| s.tag == share.tag) {
                return Err(ctx.error(
                    span,
                    format!(
                        "[[share]] tag `{}` is taken (by another [[share]] or the run's own `{}` share)",
                        share.tag,
                        crate::vm::plan::SHARE_TAG
                    ),
                ));
            }
            if share.path.starts_with("reference:") {
                crate::images::reference_dir_name(&share.path)
                    .map_err(|e| ctx.error(span.clone(), format!("[[share]] `{}`: {e}", share.tag)))?;
            }
            shares.push(share);
        }
        if steps.is_empty() && checks.is_empty() {
            return Err(ctx.error(
                0..0,
                format!(
                    "scenario `{}` has no [[step]] and no [[check]]: it would pass without checking \
                     anything; add a step or a check",
                    raw.name
                ),
            ));
        }
        if let Some(start) = &raw.start {
            let ok = !start.get_ref().is_empty()
                && (is_path_like(start.get_ref())
                    || start.get_ref().bytes().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c)));
            if !ok {
                return Err(ctx.error(
                    start.span(),
                    "start: a checkpoint's name (letters, digits, `-`, `_`, `.`) or a path to its file"
                        .into(),
                ));
            }
        }
        undeclared_secret(&steps, |name| raw.secrets.contains_key(name), path, "[secrets]")?;
        Ok(Scenario {
            name: raw.name,
            profile: raw.profile,
            image: raw.image,
            timeout,
            tags: raw.tags,
            ignore: raw.ignore,
            secrets: raw.secrets,
            steps,
            checks,
            cdrom: raw.cdrom,
            kickstart: raw.kickstart.map(OneOrMany::into_vec).unwrap_or_default(),
            allow_findings,
            preseed,
            shares,
            start: raw.start.map(toml::Spanned::into_inner),
            file: None,
        })
    }
}

/// The first `${secret:NAME}` of `steps` that `declared` does not know, as an error at
/// its step's line (`where_` names the table it should be in).
fn undeclared_secret(
    steps: &[Step],
    declared: impl Fn(&str) -> bool,
    path: &Path,
    where_: &str,
) -> Result<(), ScenarioError> {
    for st in steps {
        if let Some(secret) = secret_refs(st).into_iter().find(|s| !declared(s)) {
            return Err(ScenarioError::Invalid {
                path: path.into(),
                line: st.line,
                column: 1,
                message: format!("`${{secret:{secret}}}` names no secret in {where_}"),
            });
        }
    }
    Ok(())
}

/// Names in `${secret:NAME}` references of a step's text.
pub fn secret_refs(step: &Step) -> Vec<String> {
    let text = match &step.action {
        Action::TypeConsole { text } | Action::TypeKeys { text } => text,
        Action::Run { command, .. } => command,
        _ => return Vec::new(),
    };
    names_in(text)
}

/// Names in the `${secret:NAME}` references of a text.
pub fn names_in(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${secret:") {
        let after = &rest[i + 9..];
        let Some(end) = after.find('}') else { break };
        names.push(after[..end].to_string());
        rest = &after[end..];
    }
    names
}

fn step(ctx: &Ctx, spanned: toml::Spanned<RawStep>) -> Result<Step, ScenarioError> {
    let span = spanned.span();
    let r = spanned.into_inner();
    let err = |m: String| ctx.error(span.clone(), m);
    let mut actions: Vec<(&str, Action)> = Vec::new();
    let mut push = |k, a| actions.push((k, a));
    let bytes = |key: &str, re: &str| BytePattern::new(re).map_err(|e| err(format!("{key}: {e}")));
    let text = |key: &str, re: &str| Pattern::multi_line(re).map_err(|e| err(format!("{key}: {e}")));
    if let Some(p) = &r.wait_console {
        let pattern = bytes("wait_console", p)?;
        let fail_on = r.fail_on.as_deref().map(|f| bytes("fail_on", f)).transpose()?;
        push("wait_console", Action::WaitConsole { pattern, fail_on });
    }
    if let Some(t) = r.type_console.clone() {
        push("type_console", Action::TypeConsole { text: t });
    }
    if let Some(c) = &r.send_keys {
        let chord = Chord::parse(c).map_err(|e| err(format!("send_keys: {e}")))?;
        push("send_keys", Action::SendKeys { chord });
    }
    if let Some(t) = r.type_keys.clone() {
        push("type_keys", Action::TypeKeys { text: t });
    }
    if let Some(n) = r.screenshot.clone() {
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(err(format!("screenshot: `{n}` is not a plain file name (letters, digits, - _ .)")));
        }
        push("screenshot", Action::Screenshot { name: n });
    }
    if let Some(w) = r.wait_journal.clone() {
        push("wait_journal", Action::WaitJournal(w.into_wait().map_err(err)?));
    }
    if let Some(c) = r.run.clone() {
        let stdout = r.stdout.as_deref().map(|re| text("stdout", re)).transpose()?;
        let stderr = r.stderr.as_deref().map(|re| text("stderr", re)).transpose()?;
        push("run", Action::Run { command: c, exit: r.exit.unwrap_or(0), stdout, stderr });
    }
    if let Some(p) = r.wait_file.clone() {
        push("wait_file", Action::WaitFile { path: p });
    }
    if r.power_off == Some(true) {
        push("power_off", Action::PowerOff);
    }
    if r.reboot == Some(true) {
        push("reboot", Action::Reboot);
    }
    if r.wait_reset == Some(true) {
        push("wait_reset", Action::WaitReset);
    }
    if r.eject == Some(true) {
        push("eject", Action::Eject);
    }
    if r.suspend == Some(true) {
        push("suspend", Action::Suspend);
    }
    if r.wakeup == Some(true) {
        push("wakeup", Action::Wakeup);
    }
    if let Some(m) = r.mount_share.clone() {
        let plain = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
        if m.tag.is_empty() || !m.tag.chars().all(plain) {
            return Err(err(format!(
                "mount_share: tag `{}` is not a share tag (letters, digits, . _ -)",
                m.tag
            )));
        }
        if !m.path.starts_with('/') || m.path.contains(['\'', '\n']) {
            return Err(err(format!(
                "mount_share: path `{}` must be absolute, without quotes or newlines",
                m.path
            )));
        }
        push("mount_share", Action::MountShare { tag: m.tag, path: m.path });
    }
    if let Some(p) = &r.wait_finding {
        let pattern = Pattern::new(p).map_err(|e| err(format!("wait_finding: {e}")))?;
        push("wait_finding", Action::WaitFinding { pattern });
    }
    if let Some(d) = &r.sleep {
        let duration = parse_duration(d).map_err(|m| err(format!("sleep: {m}")))?;
        let reason = r.reason.clone().filter(|r| !r.trim().is_empty()).ok_or_else(|| {
            err("sleep needs a `reason`: waiting for something observable is almost always better".into())
        })?;
        push("sleep", Action::Sleep { duration, reason });
    }
    for (key, raw, wait) in
        [("wait_screen", &r.wait_screen, true), ("assert_screen", &r.assert_screen, false)]
    {
        let Some(raw) = raw else { continue };
        let area = match raw.area {
            Some([x, y, w, h]) if w > 0 && h > 0 => Some(crate::screen::Area { x, y, w, h }),
            Some(_) => return Err(err(format!("{key}: area is [x, y, w, h] with w and h at least 1"))),
            None => None,
        };
        let target = match (&raw.needle, &raw.text) {
            (Some(needle), None) => {
                let threshold = raw.threshold.unwrap_or(DEFAULT_THRESHOLD);
                if !(threshold > 0.0 && threshold <= 1.0) {
                    return Err(err(format!(
                        "{key}: threshold {threshold} must be above 0 and at most 1.0 (identical)"
                    )));
                }
                if needle.as_os_str().is_empty() {
                    return Err(err(format!("{key}: needle names no file")));
                }
                ScreenTarget::Needle { path: needle.clone(), threshold }
            }
            (None, Some(text)) => {
                if raw.threshold.is_some() {
                    return Err(err(format!(
                        "{key}: threshold is for a needle; text is matched by its regex"
                    )));
                }
                if text.trim().is_empty() {
                    return Err(err(format!("{key}: text is an empty regex, which any screen matches")));
                }
                ScreenTarget::Text(Pattern::multi_line(text).map_err(|m| err(format!("{key}: text: {m}")))?)
            }
            _ => {
                return Err(err(format!("{key} needs either `needle = \"file.png\"` or `text = \"REGEX\"`")));
            }
        };
        push(key, Action::Screen(ScreenMatch { target, area, wait }));
    }
    let (key, action) = match <[(&str, Action); 1]>::try_from(actions) {
        Ok([one]) => one,
        Err(actions) => {
            let keys: Vec<&str> = actions.iter().map(|(k, _)| *k).collect();
            return Err(err(format!(
                "a step needs exactly one action (wait_console, type_console, send_keys, type_keys, \
                 screenshot, wait_journal, run, wait_file, power_off, reboot, wait_reset, eject, \
                 suspend, wakeup, mount_share, wait_finding, sleep, wait_screen, assert_screen); found {}",
                if keys.is_empty() { "none".to_string() } else { keys.join(", ") }
            )));
        }
    };
    let run_only =
        [("exit", r.exit.is_some()), ("stdout", r.stdout.is_some()), ("stderr", r.stderr.is_some())];
    if let Some((m, _)) = run_only.iter().find(|(_, set)| *set).filter(|_| key != "run") {
        return Err(err(format!("`{m}` belongs to `run` steps, not to `{key}`")));
    }
    if r.fail_on.is_some() && key != "wait_console" {
        return Err(err(format!("`fail_on` belongs to `wait_console` steps, not to `{key}`")));
    }
    if r.reason.is_some() && key != "sleep" {
        return Err(err(format!("`reason` belongs to `sleep` steps, not to `{key}`")));
    }
    let timeout =
        r.timeout.as_deref().map(parse_duration).transpose().map_err(|m| err(format!("timeout: {m}")))?;
    Ok(Step { action, timeout, line: ctx.line(&span) })
}

fn check(ctx: &Ctx, spanned: toml::Spanned<RawCheck>) -> Result<Check, ScenarioError> {
    let span = spanned.span();
    let kind = spanned.into_inner().into_kind().map_err(|m| ctx.error(span.clone(), m))?;
    Ok(Check { kind, line: ctx.line(&span) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(text, Path::new("s.toml"))
    }

    fn error_at(text: &str) -> (usize, String) {
        match parse(text) {
            Err(ScenarioError::Invalid { line, message, .. }) => (line, message),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    const HEAD: &str = "name = \"n\"\nprofile = \"uefi\"\nimage = \"reference:tiny\"\n";

    #[test]
    fn the_design_sketch_parses() {
        let s = parse(&format!(
            "{HEAD}timeout = \"10m\"\n[secrets]\nluks = {{ env = \"LUKS\" }}\n\
             [[step]]\nwait_console = \"Please enter passphrase\"\n\
             [[step]]\ntype_console = \"${{secret:luks}}\\n\"\n\
             [[step]]\nwait_journal = {{ unit = \"multi-user.target\", state = \"active\" }}\n\
             [[step]]\nrun = \"uname -r\"\nstdout = \"amd64\"\ntimeout = \"30s\"\n\
             [[check]]\nbtrfs_subvolumes = [\"root\", \"home\"]\n\
             [[check]]\nsysctl = {{ \"kernel.kptr_restrict\" = \"2\", \"kernel.dmesg_restrict\" = 1 }}\n\
             [[check]]\nno_failed_units = true\n"
        ))
        .unwrap();
        assert_eq!(s.timeout, Duration::from_secs(600));
        assert_eq!(s.steps.len(), 4);
        assert_eq!(s.steps[0].line, 7);
        assert!(
            matches!(&s.steps[3].action, Action::Run { exit: 0, stdout: Some(o), .. } if o.as_str() == "amd64")
        );
        assert_eq!(s.steps[3].timeout, Some(Duration::from_secs(30)));
        let CheckKind::Sysctl(m) = &s.checks[1].kind else { panic!() };
        assert_eq!(m["kernel.dmesg_restrict"], "1");
    }

    #[test]
    fn reference_secrets_name_a_file_of_a_reference_image() {
        let with = |src: &str| parse(&format!("{HEAD}[secrets]\nluks = {src}\n[[step]]\npower_off = true\n"));
        let s = with("{ reference = \"installed/luks-passphrase\" }").unwrap();
        assert_eq!(s.secrets["luks"].reference(), Some("installed/luks-passphrase"));
        let (_, m) = error_at(&format!("{HEAD}[secrets]\nluks = {{ reference = \"installed/nope\" }}\n"));
        assert!(m.contains("unknown reference secret `installed/nope`"), "{m}");
        let (_, m) = error_at(&format!(
            "{HEAD}[secrets]\nluks = {{ reference = \"installed/luks-passphrase\", env = \"X\" }}\n"
        ));
        assert!(m.contains("comes alone"), "{m}");
        let (_, m) = error_at(&format!("{HEAD}[secrets]\nluks = {{}}\n"));
        assert!(m.contains("reference = "), "{m}");
    }

    #[test]
    fn mount_share_steps_name_a_tag_and_an_absolute_path() {
        let step = |body: &str| format!("{HEAD}[[step]]\nmount_share = {body}\n");
        let s = parse(&step("{ tag = \"kernel-upgrade\", path = \"/run/k\" }")).unwrap();
        assert_eq!(
            s.steps[0].action,
            Action::MountShare { tag: "kernel-upgrade".into(), path: "/run/k".into() }
        );
        let (line, m) = error_at(&step("{ tag = \"a b\", path = \"/run/k\" }"));
        assert_eq!(line, 4, "the step's line");
        assert!(m.contains("mount_share: tag `a b` is not a share tag"), "{m}");
        let (_, m) = error_at(&step("{ tag = \"k\", path = \"run/k\" }"));
        assert!(m.contains("path `run/k` must be absolute"), "{m}");
        let (_, m) = error_at(&step("{ tag = \"k\" }"));
        assert!(m.contains("missing field `path`"), "{m}");
    }

    #[test]
    fn shares_are_read_only_directories_under_a_tag_of_their_own() {
        let share = |body: &str| format!("{HEAD}[[step]]\npower_off = true\n[[share]]\n{body}\n");
        let s =
            parse(&share("tag = \"kernel-upgrade\"\npath = \"reference:installed-grub/upgrade\"")).unwrap();
        assert_eq!(
            s.shares,
            [ScenarioShare { tag: "kernel-upgrade".into(), path: "reference:installed-grub/upgrade".into() }]
        );
        let (line, m) = error_at(&share("tag = \"k\"\npath = \"reference:installed/upgrade\""));
        assert_eq!(line, 6);
        assert!(m.contains("unknown reference directory `reference:installed/upgrade`"), "{m}");
        assert!(m.contains("reference:installed-grub/upgrade"), "{m}");
        let (_, m) = error_at(&share("tag = \"bootproof\"\npath = \"d\""));
        assert!(m.contains("tag `bootproof` is taken"), "{m}");
        let (_, m) = error_at(&share("tag = \"a b\"\npath = \"d\""));
        assert!(m.contains("tag `a b`: 1 to 31 letters"), "{m}");
        let (_, m) = error_at(&share("tag = \"k\"\npath = \"d\"\nreadonly = false"));
        assert!(m.contains("unknown field `readonly`"), "{m}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.toml");
        std::fs::write(&file, share("tag = \"k\"\npath = \"files\"")).unwrap();
        assert_eq!(
            Scenario::load(&file).unwrap().shares[0].path,
            dir.path().join("files").display().to_string()
        );
    }

    #[test]
    fn errors_point_at_the_offending_step() {
        let (line, m) = error_at(&format!("{HEAD}[[step]]\nwait_console = \"x\"\nrun = \"y\"\n"));
        assert_eq!(line, 4);
        assert!(m.contains("exactly one action") && m.contains("wait_console, run"), "{m}");
        let (line, m) = error_at(&format!("{HEAD}[[step]]\nwait_consol = \"x\"\n"));
        assert_eq!(line, 5);
        assert!(m.contains("unknown field `wait_consol`") && m.contains("`wait_console`"), "{m}");
        let (_, m) = error_at(&format!("{HEAD}[[step]]\nsleep = \"5s\"\n"));
        assert!(m.contains("reason"), "{m}");
        let (_, m) = error_at(&format!("{HEAD}[[step]]\nwait_console = \"x\"\nexit = 1\n"));
        assert!(m.contains("`exit` belongs to `run`"), "{m}");
        let (_, m) = error_at(&format!("{HEAD}[[step]]\nrun = \"x\"\nfail_on = \"y\"\n"));
        assert!(m.contains("`fail_on` belongs to `wait_console`"), "{m}");
        let s = parse(&format!("{HEAD}[[step]]\nwait_console = \"ok\"\nfail_on = \"again\"\n")).unwrap();
        assert!(
            matches!(&s.steps[0].action, Action::WaitConsole { fail_on: Some(f), .. } if f.as_str() == "again")
        );
        let (_, m) = error_at(&format!("{HEAD}[[step]]\nwait_console = \"(unclosed\"\n"));
        assert!(m.contains("not a valid regex"), "{m}");
        let (_, m) = error_at(&format!("{HEAD}[[step]]\ntype_console = \"${{secret:nope}}\"\n"));
        assert!(m.contains("names no secret"), "{m}");
        let (_, m) = error_at(&format!("{HEAD}[[step]]\nsend_keys = \"ctrl-banana\"\n"));
        assert!(m.contains("banana"), "{m}");
        let (line, m) = error_at(&format!("{HEAD}[[check]]\nsysctl = {{ a = 1 }}\nno_failed_units = true\n"));
        assert_eq!(line, 4);
        assert!(m.contains("exactly one kind"), "{m}");
        let (_, m) =
            error_at("name = \"n\"\nprofile = \"uefi\"\nimage = \"x\"\n[secrets]\nnew = { generate = 4 }\n");
        assert!(m.contains("12 to 256 characters"), "{m}");
        let (_, m) = error_at(
            "name = \"n\"\nprofile = \"uefi\"\nimage = \"x\"\n[secrets]\nnew = { generate = 20, env = \"X\" }\n",
        );
        assert!(m.contains("`generate` comes alone"), "{m}");
        let (line, m) = error_at(&format!("{HEAD}[[check]]\nkernel_cmdline = [\"quiet\", \"a b\"]\n"));
        assert_eq!(line, 4);
        assert!(m.contains("kernel_cmdline: `a b` is 2 parameters"), "{m}");
        let (_, m) = error_at(&format!("{HEAD}[[check]]\nkernel_cmdline = []\n"));
        assert!(m.contains("at least one parameter"), "{m}");
        let (line, _) = error_at("name = \"n\"\nprofile = \"uefi\"\n");
        assert_eq!(line, 1);
    }

    #[test]
    fn a_scenario_that_checks_nothing_is_refused() {
        let (line, m) = error_at(HEAD);
        assert_eq!(line, 1);
        assert!(m.contains("no [[step]] and no [[check]]") && m.contains("scenario `n`"), "{m}");
        let (_, m) = error_at(&format!(
            "{HEAD}[[step]]\nwait_journal = {{ unit = \"a.service\", identifier = \"x\" }}\n"
        ));
        assert!(m.contains("`identifier` belongs to `message`"), "{m}");
        let (_, m) = error_at(&format!("{HEAD}[[step]]\nwait_journal = {{ unit = \"a\\u0000b\" }}\n"));
        assert!(m.contains("NUL"), "{m}");
    }

    #[test]
    fn secure_boot_checks_either_state() {
        let s =
            parse(&format!("{HEAD}[[check]]\nsecure_boot = true\n[[check]]\nsecure_boot = false\n")).unwrap();
        assert_eq!(s.checks[0].kind, CheckKind::SecureBoot(true));
        assert_eq!(s.checks[1].kind, CheckKind::SecureBoot(false));
        let (_, m) = error_at(&format!("{HEAD}[[check]]\nsecure_boot = \"on\"\n"));
        assert!(m.contains("invalid type"), "{m}");
    }

    #[test]
    fn a_checkpoint_file_is_checked_like_a_scenario() {
        let parse = |text: &str| Checkpoint::parse(text, Path::new("cp/x.toml"));
        let ok = parse(
            "timeout = \"2m\"\n[secrets]\nk = { env = \"K\" }\n[[step]]\ntype_console = \"${secret:k}\\n\"\n",
        )
        .unwrap();
        assert_eq!((ok.name.as_str(), ok.steps.len(), ok.timeout), ("x", 1, Duration::from_secs(120)));
        let err = |text: &str| parse(text).unwrap_err().to_string();
        let e = err("[[step]]\nwait_console = \"a\"\nchecks = 1\n");
        assert!(e.starts_with("cp/x.toml:3:1") && e.contains("unknown field `checks`"), "{e}");
        let e = err("[secrets]\nn = { generate = 12 }\n[[step]]\nwait_console = \"a\"\n");
        assert!(e.contains("cp/x.toml:2") && e.contains("cannot generate a secret"), "{e}");
        let e = err("[[step]]\nwait_console = \"a\"\n\n[[step]]\npower_off = true\n");
        assert!(e.contains("cp/x.toml:4") && e.contains("power the machine off"), "{e}");
        let e = err("description = \"nothing\"\n");
        assert!(e.contains("has no [[step]]"), "{e}");
        let e = err("[[step]]\ntype_console = \"${secret:luks}\"\n");
        assert!(e.contains("cp/x.toml:1") && e.contains("no secret in the checkpoint's [secrets]"), "{e}");
    }

    #[test]
    fn start_names_a_shipped_checkpoint_or_fails_listing_them() {
        let mut s =
            parse(&format!("{HEAD}start = \"installed-unlocked\"\n[[step]]\nrun = \"true\"\n")).unwrap();
        let cp = Checkpoint::locate(&s).unwrap().unwrap();
        assert_eq!(cp.name, "installed-unlocked");
        assert!(cp.file.starts_with(BUILTIN_CHECKPOINTS), "{}", cp.file.display());
        let cold = cp.prepend_to(&s);
        assert_eq!(cold.steps.len(), cp.steps.len() + s.steps.len());
        assert!(cold.secrets.contains_key("luks") && cold.start.is_none());
        s.start = Some("nope".into());
        let e = Checkpoint::locate(&s).unwrap_err().to_string();
        assert!(e.contains("no such checkpoint") && e.contains("installed-unlocked"), "{e}");
        let e = parse(&format!("{HEAD}start = \"a b\"\n[[step]]\nrun = \"true\"\n")).unwrap_err().to_string();
        assert!(e.contains("start:"), "{e}");
    }

    #[test]
    fn screen_steps_take_a_needle_a_threshold_and_an_area() {
        let s = parse(&format!(
            "{HEAD}[[step]]\nwait_screen = {{ needle = \"n/card.png\", threshold = 0.8, area = [1, 2, 3, 4] }}\ntimeout = \"20s\"\n[[step]]\nassert_screen = {{ needle = \"card.png\" }}\n"
        ))
        .unwrap();
        match (&s.steps[0].action, &s.steps[1].action) {
            (Action::Screen(w), Action::Screen(a)) => {
                assert!(w.wait && !a.wait);
                let thresholds = [&w.target, &a.target].map(|t| match t {
                    ScreenTarget::Needle { threshold, .. } => *threshold,
                    ScreenTarget::Text(_) => panic!("{t:?}"),
                });
                assert_eq!(thresholds, [0.8, DEFAULT_THRESHOLD]);
                assert_eq!(w.area, Some(crate::screen::Area { x: 1, y: 2, w: 3, h: 4 }));
                assert_eq!(s.steps[0].action.key(), "wait_screen");
                assert_eq!(s.steps[1].action.describe(), "assert_screen card.png >= 0.9");
            }
            other => panic!("{other:?}"),
        }
        let t = parse(&format!(
            "{HEAD}[[step]]\nwait_screen = {{ text = \"^Login failed$\", area = [660, 560, 400, 44] }}\n"
        ))
        .unwrap();
        match &t.steps[0].action {
            Action::Screen(ScreenMatch { target: ScreenTarget::Text(p), area: Some(_), wait: true }) => {
                // `^` and `$` at line breaks, as OCR gives a line per line of text.
                assert!(p.is_match("Monday\nLogin failed\nADMIN") && !p.is_match("Login failed twice"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(t.steps[0].action.describe(), "wait_screen text /^Login failed$/ in 660,560,400,44");
        for (bad, says) in [
            ("wait_screen = { needle = \"n.png\", threshold = 1.5 }", "threshold 1.5"),
            ("wait_screen = { needle = \"n.png\", area = [1, 2, 0, 4] }", "area is [x, y, w, h]"),
            ("wait_screen = { text = \"Login\", threshold = 0.5 }", "threshold is for a needle"),
            ("wait_screen = { text = \" \" }", "empty regex"),
            ("wait_screen = { text = \"(\" }", "text: not a valid regex"),
            ("wait_screen = { text = \"a\", needle = \"n.png\" }", "either `needle"),
            ("assert_screen = { area = [0, 0, 4, 4] }", "either `needle"),
            ("wait_screen = { words = \"a\" }", "unknown field `words`"),
        ] {
            let e = parse(&format!("{HEAD}[[step]]\n{bad}\n")).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
