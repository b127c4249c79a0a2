//! Machine profiles: `vm-profiles/*.toml` → [`Profile`].
//!
//! Owns: the profile format, its validation, errors that point at the file, line,
//! column and key, and the shipped profiles. Must not: look at the host (firmware
//! discovery, acceleration) or start anything; resolving a profile against the host
//! happens in [`crate::vm`].
//!
//! Paths in a profile are relative to the profile file's directory. The shipped
//! profiles are built into the binary from `vm-profiles/` (see build.rs), so a name
//! such as `uefi` resolves wherever bootproof runs; messages call them
//! `builtin:vm-profiles/<name>.toml`.

mod units;

pub use units::{parse_duration, parse_memory_mib};

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A machine to boot an image in.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The profile's name: the file stem, unless the file sets one.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub machine: Machine,
    /// MiB, or a string with a unit (`"1G"`, `"512M"`).
    #[serde(default = "default_memory", deserialize_with = "units::de_memory")]
    pub memory: u64,
    #[serde(default = "default_cpus")]
    pub cpus: u32,
    #[serde(default)]
    pub firmware: Firmware,
    #[serde(default)]
    pub tpm: Tpm,
    #[serde(default)]
    pub display: Display,
    /// Without it a guest reboot ends the run (QEMU `-no-reboot`), as installers and
    /// panicking kernels would otherwise loop until the timeout.
    #[serde(default)]
    pub allow_reboot: bool,
    /// ACPI S3 (suspend to RAM) offered to the guest; off unless asked for (bootproof
    /// tells QEMU either way: its own default has varied). `suspend` steps need it.
    #[serde(default)]
    pub acpi_s3: bool,
    #[serde(default, rename = "disk")]
    pub disks: Vec<Disk>,
    #[serde(default)]
    pub cdrom: Option<PathBuf>,
    #[serde(default)]
    pub kernel: Option<DirectKernel>,
    #[serde(default, rename = "share")]
    pub shares: Vec<Share>,
    /// Who serves the shares to the guest (see [`ShareBackend`]);
    /// `BOOTPROOF_SHARE_BACKEND` overrides it for every profile.
    #[serde(default)]
    pub share_backend: ShareBackend,
    /// The most the per-run `bootproof` share may hold (`"64M"`, `"1G"`, bytes): writes
    /// past it fail in the guest with "Disk quota exceeded". Served by bootproof's own
    /// server, so `auto` picks `p9` when it is set.
    #[serde(default, deserialize_with = "units::de_bytes_opt")]
    pub share_quota: Option<u64>,
    #[serde(default)]
    pub extra_args: Vec<String>,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Which guest agent channels the machine gets (see [`crate::agent`]).
    #[serde(default)]
    pub agent: AgentKind,
    /// None, or QEMU user networking that reaches bootproof's own servers only.
    #[serde(default)]
    pub network: Network,
    /// How a run ends once its steps are done: the ACPI power button with the
    /// shutdown grace, or at once (installers ignore the button).
    #[serde(default)]
    pub end: End,
    /// virtio-serial ports whose bytes are kept as they arrive (installer logs).
    #[serde(default, rename = "log_port")]
    pub log_ports: Vec<LogPort>,
}

/// The machine's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// No NIC at all (`-nic none`).
    #[default]
    None,
    /// A virtio NIC on QEMU user networking with `restrict=on`: the guest gets an
    /// address by DHCP and reaches nothing but the `guestfwd` forwards to servers
    /// bootproof runs on loopback (10.0.2.100, see [`crate::vm::plan::SERVER_IP`]).
    Restricted,
}

/// Who serves a machine's shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShareBackend {
    /// `virtfs` where QEMU has virtio-9p and no `share_quota` is set, else `p9`.
    #[default]
    Auto,
    /// QEMU's own virtio-9p device (`-fsdev local`).
    Virtfs,
    /// `bootproof share-server` (confined, quota, live file events), reached by the
    /// guest over 9P on TCP through the restricted network (`trans=tcp`).
    P9,
}

impl ShareBackend {
    pub const ALL: [ShareBackend; 3] = [ShareBackend::Auto, ShareBackend::Virtfs, ShareBackend::P9];

    /// The name profiles and `BOOTPROOF_SHARE_BACKEND` use.
    pub fn as_str(self) -> &'static str {
        match self {
            ShareBackend::Auto => "auto",
            ShareBackend::Virtfs => "virtfs",
            ShareBackend::P9 => "p9",
        }
    }

    /// `BOOTPROOF_SHARE_BACKEND`'s value, or an error naming what it takes.
    pub fn from_env() -> Result<Option<ShareBackend>, String> {
        let Ok(v) = std::env::var("BOOTPROOF_SHARE_BACKEND") else { return Ok(None) };
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        match ShareBackend::ALL.into_iter().find(|b| b.as_str() == v) {
            Some(b) => Ok(Some(b)),
            None => Err(format!("BOOTPROOF_SHARE_BACKEND={v:?}: use auto, virtfs or p9")),
        }
    }
}

/// How a run ends after its last step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum End {
    /// Press the ACPI power button and wait `timeouts.shutdown` for the guest.
    #[default]
    PowerButton,
    /// Stop QEMU at once: for guests that ignore the button (Debian's installer did,
    /// which cost each run the whole grace).
    Kill,
}

/// A virtio-serial port the guest writes a log to, kept in the run directory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogPort {
    /// The port's name as the guest sees it (`/dev/virtio-ports/<name>`), e.g.
    /// anaconda's `org.fedoraproject.anaconda.log.0`.
    pub name: String,
    /// Where its lines go, relative to the run directory; each line is stamped with
    /// the host's seconds since QEMU started.
    pub file: PathBuf,
    /// What the lines are, for live findings: `anaconda-stream` (the default for
    /// anaconda's port) or `di-syslog` (the Debian installer's syslog). Without one,
    /// the lines are only kept.
    #[serde(default)]
    pub format: Option<LogPortFormat>,
}

/// A log port format bootproof reads line by line as it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogPortFormat {
    AnacondaStream,
    DiSyslog,
}

/// The port anaconda's rsyslog writes every log line to by itself.
pub const ANACONDA_LOG_PORT: &str = "org.fedoraproject.anaconda.log.0";

impl LogPort {
    /// The format set, or anaconda's for anaconda's port.
    pub fn format(&self) -> Option<LogPortFormat> {
        self.format.or((self.name == ANACONDA_LOG_PORT).then_some(LogPortFormat::AnacondaStream))
    }
}

fn default_memory() -> u64 {
    1024
}

fn default_cpus() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Machine {
    #[default]
    Q35,
    Pc,
}

impl Machine {
    pub fn as_str(self) -> &'static str {
        match self {
            Machine::Q35 => "q35",
            Machine::Pc => "pc",
        }
    }
}

/// Which firmware boots the machine.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Firmware {
    /// OVMF without Secure Boot.
    #[default]
    Uefi,
    /// OVMF with Secure Boot enabled and Microsoft's keys enrolled.
    UefiSecureBoot,
    /// SeaBIOS, QEMU's default.
    Bios,
    /// An explicit OVMF CODE/VARS pair.
    Files { code: PathBuf, vars: PathBuf, secure_boot: bool },
}

impl Firmware {
    pub fn is_uefi(&self) -> bool {
        !matches!(self, Firmware::Bios)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Tpm {
    #[default]
    #[serde(rename = "none")]
    None,
    #[serde(rename = "2.0")]
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Display {
    /// No graphics device: serial console only.
    #[default]
    None,
    /// A standard VGA framebuffer, never shown in a window, for screenshots over QMP.
    Std,
}

/// The guest agent channels a machine offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentKind {
    /// None: a plain boot, with no device the guest did not ask for.
    #[default]
    None,
    /// The qemu-guest-agent port and the shell console port; whichever answers.
    Auto,
    /// qemu-guest-agent on virtio-serial port `org.qemu.guest_agent.0`.
    Qga,
    /// A guest shell on virtio console port `org.bootproof.shell.0` (`/dev/hvc0`).
    Shell,
    /// A guest shell on a vsock port (vhost-user-vsock, or the kernel's vhost-vsock).
    Vsock,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    pub path: PathBuf,
    /// Detected with `qemu-img info` when absent.
    #[serde(default)]
    pub format: Option<DiskFormat>,
    #[serde(default)]
    pub interface: DiskInterface,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskInterface {
    #[default]
    Virtio,
    Nvme,
    Ide,
    Scsi,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectKernel {
    pub kernel: PathBuf,
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    #[serde(default)]
    pub append: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Share {
    /// The 9p mount tag the guest mounts.
    pub tag: String,
    pub path: PathBuf,
    #[serde(default = "default_true")]
    pub readonly: bool,
}

fn default_true() -> bool {
    true
}

/// Timeouts as they hold under KVM; under TCG they are scaled (see `crate::host::accel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// How long a whole boot may take before the run is stopped.
    #[serde(default = "default_boot", deserialize_with = "units::de_duration")]
    pub boot: Duration,
    /// How long a guest gets to power off after an ACPI power-button press.
    #[serde(default = "default_shutdown", deserialize_with = "units::de_duration")]
    pub shutdown: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { boot: default_boot(), shutdown: default_shutdown() }
    }
}

fn default_boot() -> Duration {
    Duration::from_secs(120)
}

fn default_shutdown() -> Duration {
    Duration::from_secs(30)
}

/// A profile that could not be loaded, with where and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{}: cannot read profile: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}\n{snippet}", path.display())]
    Invalid { path: PathBuf, line: usize, column: usize, message: String, snippet: String },
    #[error(
        "no profile named `{name}`: it is not a shipped profile, and not a path (a path has a `/` \
         or ends in `.toml`)\n  shipped profiles: {}",
        shipped.join(", ")
    )]
    NotFound { name: String, shipped: Vec<String> },
}

impl Profile {
    /// Loads a profile file; relative paths inside it become relative to its directory.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ProfileError::Read { path: path.to_path_buf(), source })?;
        let mut profile = Profile::parse(&text, path)?;
        if profile.name.is_empty() {
            profile.name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        }
        let base = path.parent().unwrap_or(Path::new("."));
        profile.make_paths_relative_to(base);
        Ok(profile)
    }

    /// Parses profile text; `path` only labels errors.
    pub fn parse(text: &str, path: &Path) -> Result<Profile, ProfileError> {
        toml::from_str(text).map_err(|e| invalid(text, path, &e))
    }

    fn make_paths_relative_to(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        self.disks.iter_mut().for_each(|d| join(&mut d.path));
        self.shares.iter_mut().for_each(|s| join(&mut s.path));
        if let Some(c) = &mut self.cdrom {
            join(c);
        }
        if let Some(k) = &mut self.kernel {
            join(&mut k.kernel);
            if let Some(i) = &mut k.initrd {
                join(i);
            }
        }
        if let Firmware::Files { code, vars, .. } = &mut self.firmware {
            join(code);
            join(vars);
        }
    }
}

fn invalid(text: &str, path: &Path, e: &toml::de::Error) -> ProfileError {
    let offset = e.span().map_or(0, |s| s.start);
    let (line, column) = line_column(text, offset);
    let line_text = text.lines().nth(line - 1).unwrap_or("");
    let snippet = format!("  {line:>4} | {line_text}\n       | {}^", " ".repeat(column - 1));
    ProfileError::Invalid {
        path: path.to_path_buf(),
        line,
        column,
        message: e.message().trim().to_string(),
        snippet,
    }
}

/// 1-based line and column (in characters) of a byte offset: where a TOML error's span
/// starts, for profile and scenario messages alike.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The shipped profiles as `(file name, contents)`: `vm-profiles/*.toml` at build
/// time (see build.rs).
const SHIPPED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/shipped_profiles.rs"));

/// How messages name a shipped profile's file, and how one can be named as a path.
pub const BUILTIN_DIR: &str = "builtin:vm-profiles";

/// Names of the shipped profiles, sorted.
pub fn shipped_names() -> Vec<String> {
    let mut names: Vec<String> =
        SHIPPED.iter().filter_map(|(file, _)| file.strip_suffix(".toml")).map(String::from).collect();
    names.sort();
    names
}

/// A shipped profile by name (`uefi`), labelled `builtin:vm-profiles/uefi.toml`.
fn shipped(name: &str) -> Option<Result<Profile, ProfileError>> {
    let (file, text) = SHIPPED.iter().find(|(file, _)| file.strip_suffix(".toml") == Some(name))?;
    let label = PathBuf::from(format!("{BUILTIN_DIR}/{file}"));
    Some(Profile::parse(text, &label).map(|mut p| {
        if p.name.is_empty() {
            p.name = name.to_string();
        }
        p
    }))
}

/// Finds a profile by the name of a shipped profile, by its `builtin:vm-profiles/...`
/// label, or by path (anything else with a `/` or ending in `.toml`).
pub fn resolve(name_or_path: &str) -> Result<Profile, ProfileError> {
    let builtin = name_or_path
        .strip_prefix(BUILTIN_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|file| file.strip_suffix(".toml"));
    let is_path = name_or_path.contains('/') || name_or_path.ends_with(".toml");
    if builtin.is_none() && is_path {
        return Profile::load(Path::new(name_or_path));
    }
    let name = builtin.unwrap_or(name_or_path);
    shipped(name).unwrap_or_else(|| {
        Err(ProfileError::NotFound { name: name_or_path.to_string(), shipped: shipped_names() })
    })
}

impl<'de> Deserialize<'de> for Firmware {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FirmwareVisitor)
    }
}

struct FirmwareVisitor;

const FIRMWARE_NAMES: &[&str] = &["uefi", "uefi-secureboot", "bios"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FirmwareFiles {
    code: PathBuf,
    vars: PathBuf,
    #[serde(default)]
    secure_boot: bool,
}

impl<'de> serde::de::Visitor<'de> for FirmwareVisitor {
    type Value = Firmware;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(
            "one of \"uefi\", \"uefi-secureboot\", \"bios\", or a table \
             { code = \"OVMF_CODE path\", vars = \"OVMF_VARS path\", secure_boot = bool }",
        )
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Firmware, E> {
        match v {
            "uefi" => Ok(Firmware::Uefi),
            "uefi-secureboot" => Ok(Firmware::UefiSecureBoot),
            "bios" => Ok(Firmware::Bios),
            other => Err(E::unknown_variant(other, FIRMWARE_NAMES)),
        }
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Firmware, A::Error> {
        let files = FirmwareFiles::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(Firmware::Files { code: files.code, vars: files.vars, secure_boot: files.secure_boot })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> (usize, usize, String) {
        match Profile::parse(text, Path::new("p.toml")) {
            Err(ProfileError::Invalid { line, column, message, .. }) => (line, column, message),
            other => panic!("expected an invalid-profile error, got {other:?}"),
        }
    }

    #[test]
    fn full_profile_parses() {
        let p = Profile::parse(
            r#"
            machine = "pc"
            memory = "2G"
            cpus = 2
            firmware = { code = "c.fd", vars = "v.fd", secure_boot = true }
            tpm = "2.0"
            display = "std"
            cdrom = "x.iso"
            extra_args = ["-rtc", "base=utc"]
            agent = "auto"
            [[disk]]
            path = "a.qcow2"
            interface = "nvme"
            [kernel]
            kernel = "vmlinuz"
            append = "console=ttyS0"
            [[share]]
            tag = "in"
            path = "dir"
            [timeouts]
            boot = "5m"
            "#,
            Path::new("p.toml"),
        )
        .unwrap();
        assert_eq!(p.machine, Machine::Pc);
        assert_eq!(p.memory, 2048);
        assert_eq!(p.tpm, Tpm::V2);
        assert!(matches!(p.firmware, Firmware::Files { secure_boot: true, .. }));
        assert_eq!(p.disks[0].interface, DiskInterface::Nvme);
        assert!(p.shares[0].readonly);
        assert_eq!(p.timeouts.boot, Duration::from_secs(300));
        assert_eq!(p.timeouts.shutdown, Duration::from_secs(30));
        assert_eq!(p.agent, AgentKind::Auto);
    }

    #[test]
    fn agent_defaults_to_none_and_lists_the_choices() {
        assert_eq!(Profile::parse("", Path::new("p.toml")).unwrap().agent, AgentKind::None);
        let (_, _, message) = err("agent = \"ssh\"\n");
        assert!(message.contains("`qga`") && message.contains("`vsock`"), "{message}");
    }

    #[test]
    fn unknown_key_names_key_line_and_allowed_keys() {
        let (line, column, message) = err("memory = 512\nmemroy = 1\n");
        assert_eq!((line, column), (2, 1));
        assert!(message.contains("unknown field `memroy`"), "{message}");
        assert!(message.contains("`memory`"), "allowed keys listed: {message}");
    }

    #[test]
    fn wrong_type_points_at_value() {
        let (line, column, message) = err("cpus = \"two\"\n");
        assert_eq!((line, column), (1, 8));
        assert!(message.contains("invalid type"), "{message}");
    }

    #[test]
    fn unknown_firmware_lists_allowed_names() {
        let (line, _, message) = err("\nfirmware = \"uefii\"\n");
        assert_eq!(line, 2);
        assert!(message.contains("uefii") && message.contains("uefi-secureboot"), "{message}");
    }

    #[test]
    fn bad_memory_and_duration_explain_the_format() {
        let (_, _, message) = err("memory = \"lots\"\n");
        assert!(message.contains("\"512M\""), "{message}");
        let (_, _, message) = err("[timeouts]\nboot = \"soon\"\n");
        assert!(message.contains("\"90s\""), "{message}");
    }

    #[test]
    fn load_makes_paths_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mine.toml");
        std::fs::write(&file, "[[disk]]\npath = \"img/a.raw\"\n").unwrap();
        let p = Profile::load(&file).unwrap();
        assert_eq!(p.name, "mine");
        assert_eq!(p.disks[0].path, dir.path().join("img/a.raw"));
    }

    #[test]
    fn unknown_profile_name_lists_shipped_ones() {
        let e = resolve("no-such-profile").unwrap_err().to_string();
        assert!(e.contains("uefi-tpm"), "{e}");
    }

    #[test]
    fn every_shipped_profile_loads() {
        let names = shipped_names();
        for required in ["uefi", "uefi-tpm", "uefi-secureboot", "uefi-secureboot-tpm", "bios"] {
            assert!(names.iter().any(|n| n == required), "{required} missing from {names:?}");
        }
        for name in names {
            let p = resolve(&name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(p.name, name);
            // Embedded, a shipped profile has no directory that a relative path could
            // be relative to.
            let relative = p.disks.iter().map(|d| &d.path).chain(p.shares.iter().map(|s| &s.path));
            let relative: Vec<_> = relative.chain(&p.cdrom).filter(|p| p.is_relative()).collect();
            assert!(relative.is_empty() && p.kernel.is_none(), "{name}: paths in a shipped profile");
            assert!(
                !matches!(p.firmware, Firmware::Files { .. }),
                "{name}: firmware files in a shipped profile"
            );
        }
    }

    #[test]
    fn every_file_of_vm_profiles_is_shipped_as_it_is() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("vm-profiles");
        let mut on_disk: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .map(|p| {
                (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        on_disk.sort();
        let shipped: Vec<(String, String)> =
            SHIPPED.iter().map(|(f, t)| (f.to_string(), t.to_string())).collect();
        assert_eq!(shipped, on_disk);
    }

    #[test]
    fn a_shipped_profile_resolves_by_name_or_builtin_label_and_errors_name_the_label() {
        assert_eq!(resolve("uefi-tpm").unwrap(), resolve("builtin:vm-profiles/uefi-tpm.toml").unwrap());
        assert_eq!(resolve("uefi-tpm").unwrap().tpm, Tpm::V2);
        let e = resolve("builtin:vm-profiles/nope.toml").unwrap_err().to_string();
        assert!(
            e.contains("no profile named `builtin:vm-profiles/nope.toml`") && e.contains("uefi-tpm"),
            "{e}"
        );
        let broken = Profile::parse("memroy = 1\n", Path::new("builtin:vm-profiles/x.toml")).unwrap_err();
        assert!(broken.to_string().starts_with("builtin:vm-profiles/x.toml:1:1: "), "{broken}");
    }

    #[test]
    fn share_backend_names_are_the_profile_keys_values() {
        for b in ShareBackend::ALL {
            let p = Profile::parse(&format!("share_backend = \"{}\"\n", b.as_str()), Path::new("p.toml"))
                .unwrap();
            assert_eq!(p.share_backend, b);
        }
    }
}
