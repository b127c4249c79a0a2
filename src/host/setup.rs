//! Host setup: find the programs and files bootproof needs and, when allowed, install
//! the missing ones with the host's package manager, printing exactly what it runs.
//!
//! Installing happens only as root, on an apt-get (Debian/Ubuntu) or dnf (Fedora) host,
//! and only while `BOOTPROOF_AUTO_INSTALL` is not `0`. Otherwise the error carries the
//! one command the user has to run.
//!
//! Tools no distribution packages (vhost-device-vsock) are Rust crates: installed with
//! `cargo install --root <cache>/tools`, which needs no root, while
//! `BOOTPROOF_AUTO_INSTALL` is not `0`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// How to tell that a requirement is met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A program on `PATH` (or in the sbin directories, which a user's PATH may lack).
    Command(&'static str),
    /// A file that a package installs.
    File(&'static str),
}

/// Something bootproof needs from the host, and which package brings it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    pub probe: Probe,
    pub debian: &'static str,
    pub fedora: &'static str,
    /// What bootproof uses it for, shown when it is missing.
    pub why: &'static str,
}

impl Requirement {
    pub const fn command(
        cmd: &'static str,
        debian: &'static str,
        fedora: &'static str,
        why: &'static str,
    ) -> Self {
        Requirement { probe: Probe::Command(cmd), debian, fedora, why }
    }

    pub const fn file(
        path: &'static str,
        debian: &'static str,
        fedora: &'static str,
        why: &'static str,
    ) -> Self {
        Requirement { probe: Probe::File(path), debian, fedora, why }
    }

    /// Where the requirement was found, if it is met.
    pub fn locate(&self) -> Option<PathBuf> {
        match self.probe {
            Probe::Command(cmd) => find_command(cmd),
            Probe::File(path) => Some(PathBuf::from(path)).filter(|p| p.exists()),
        }
    }

    pub fn name(&self) -> &'static str {
        match self.probe {
            Probe::Command(c) | Probe::File(c) => c,
        }
    }
}

/// The host's package manager, as far as bootproof can drive it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageManager {
    Apt,
    Dnf,
}

impl PackageManager {
    pub fn detect() -> Option<PackageManager> {
        if find_command("apt-get").is_some() {
            Some(PackageManager::Apt)
        } else if find_command("dnf").is_some() {
            Some(PackageManager::Dnf)
        } else {
            None
        }
    }

    fn package(self, req: &Requirement) -> &'static str {
        match self {
            PackageManager::Apt => req.debian,
            PackageManager::Dnf => req.fedora,
        }
    }

    /// The command line that installs `packages`, as a user would type it.
    pub fn install_command(self, packages: &[&str]) -> Vec<String> {
        let mut argv: Vec<String> = match self {
            PackageManager::Apt => {
                ["apt-get", "install", "-y", "--no-install-recommends"].map(String::from).to_vec()
            }
            PackageManager::Dnf => ["dnf", "install", "-y"].map(String::from).to_vec(),
        };
        argv.extend(packages.iter().map(|p| p.to_string()));
        argv
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("missing on this host: {}\n  install with: {command}{hint}", describe(missing))]
    Missing { missing: Vec<Requirement>, command: String, hint: &'static str },
    #[error("`{command}` failed ({status}); missing still: {}", describe(missing))]
    InstallFailed { command: String, status: String, missing: Vec<Requirement> },
    #[error(
        "`{command}` succeeded, yet it did not provide {}: check that the package provides it on this distribution",
        describe(missing)
    )]
    NotProvided { command: String, missing: Vec<Requirement> },
    #[error(
        "host set-up did not settle after {rounds} install rounds (each removed something another needs); missing still: {}",
        describe(missing)
    )]
    NoConvergence { rounds: usize, missing: Vec<Requirement> },
    #[error("missing on this host: {tool} (for {why})\n  install with: {command}{hint}")]
    ToolMissing { tool: &'static str, why: &'static str, command: String, hint: &'static str },
    #[error(
        "`{command}` failed ({status}), so {tool} (for {why}) is still missing; see the cargo output above"
    )]
    ToolInstallFailed { tool: &'static str, why: &'static str, command: String, status: String },
}

/// A program that comes from crates.io rather than a distribution package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CargoTool {
    pub command: &'static str,
    pub krate: &'static str,
    pub why: &'static str,
}

/// Where `cargo install --root` puts bootproof's own tools (`bin/` below it).
pub fn tools_dir() -> PathBuf {
    crate::cache::cache_dir().join("tools")
}

/// Finds `tool` on PATH or in the tools directory, installing it there with cargo when
/// it is missing and installing is allowed (prints the command it runs).
pub fn ensure_cargo_tool(tool: CargoTool) -> Result<PathBuf, SetupError> {
    let installed = || locate_cargo_tool(tool);
    if let Some(path) = installed() {
        return Ok(path);
    }
    let argv = cargo_install_command(tool, &tools_dir());
    let command = argv.join(" ");
    if auto_install_disabled() || find_command("cargo").is_none() {
        let hint = if auto_install_disabled() {
            " (BOOTPROOF_AUTO_INSTALL=0 kept bootproof from installing it)"
        } else {
            " (cargo is not on PATH: install Rust with rustup first)"
        };
        return Err(SetupError::ToolMissing { tool: tool.command, why: tool.why, command, hint });
    }
    let _lock = InstallLock::take();
    if let Some(path) = installed() {
        return Ok(path);
    }
    crate::reporter::line(format!("bootproof: installing {} (about a minute): {command}", tool.command));
    use std::os::fd::AsFd;
    let status = std::io::stderr().as_fd().try_clone_to_owned().and_then(|err| {
        Command::new("cargo").args(&argv[1..]).stdout(std::process::Stdio::from(err)).status()
    });
    match (installed(), status) {
        (Some(path), _) => Ok(path),
        (None, status) => Err(SetupError::ToolInstallFailed {
            tool: tool.command,
            why: tool.why,
            command,
            status: status.map_or_else(|e| e.to_string(), |s| s.to_string()),
        }),
    }
}

/// Where `tool` is installed, without installing it: on PATH, in bootproof's tools
/// directory, or in a cache restored read-only (crate::cache).
pub fn locate_cargo_tool(tool: CargoTool) -> Option<PathBuf> {
    let in_read_only = || {
        crate::cache::read_only_dirs()
            .into_iter()
            .find_map(|dir| find_command(&dir.join("tools").join("bin").join(tool.command).to_string_lossy()))
    };
    find_command(tool.command)
        .or_else(|| find_command(&tool_path(tool).to_string_lossy()))
        .or_else(in_read_only)
}

/// The command that installs `tool` under `root` (its program lands in `root/bin`).
fn cargo_install_command(tool: CargoTool, root: &Path) -> Vec<String> {
    let root = root.to_string_lossy().into_owned();
    ["cargo", "install", "--locked", "--root", &root, tool.krate].map(String::from).to_vec()
}

fn tool_path(tool: CargoTool) -> PathBuf {
    tools_dir().join("bin").join(tool.command)
}

fn describe(missing: &[Requirement]) -> String {
    missing.iter().map(|r| format!("{} (for {})", r.name(), r.why)).collect::<Vec<_>>().join(", ")
}

/// Makes sure every requirement is met, installing what is missing when allowed.
pub fn ensure(reqs: &[Requirement]) -> Result<(), SetupError> {
    Setup::from_host().ensure(reqs)
}

/// How many install rounds [`Setup::ensure`] runs before it gives up: one for what was
/// missing, one for what that install removed (Debian's `qemu-system-x86` 7.2 removes a
/// newer `qemu-utils` from backports), and one to spare.
const ROUNDS: usize = 3;

/// Who installs what is missing on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// The host's package manager, if bootproof can drive one.
    pub package_manager: Option<PackageManager>,
    /// Whether bootproof may install (root, and `BOOTPROOF_AUTO_INSTALL` is not `0`).
    pub may_install: bool,
}

impl Setup {
    pub fn from_host() -> Setup {
        Setup { package_manager: PackageManager::detect(), may_install: install_allowed() }
    }

    /// Installs what is missing until nothing is, checking again after every install:
    /// an install can remove what an earlier one (or the machine's image) provided.
    pub fn ensure(self, reqs: &[Requirement]) -> Result<(), SetupError> {
        let missing = self::missing(reqs);
        if missing.is_empty() {
            return Ok(());
        }
        let Some(pm) = self.package_manager.filter(|_| self.may_install) else {
            return Err(self.missing_error(missing));
        };
        // Parallel tests and builds all come here: one installs, the others wait and find.
        let _lock = InstallLock::take();
        let mut missing = self::missing(reqs);
        let mut updated = false;
        for _ in 0..ROUNDS {
            if missing.is_empty() {
                return Ok(());
            }
            let argv = pm.install_command(&packages(pm, &missing));
            let mut status = run_install(&argv);
            if pm == PackageManager::Apt && !updated && !succeeded(&status) {
                // An empty or stale package list is the usual cause on a fresh machine.
                updated = true;
                let _ = run_install(&["apt-get".to_string(), "update".to_string()]);
                status = run_install(&argv);
            }
            let still = self::missing(reqs);
            if !succeeded(&status) {
                return Err(SetupError::InstallFailed {
                    command: argv.join(" "),
                    status: match status {
                        Ok(s) => s.to_string(),
                        Err(e) => e.to_string(),
                    },
                    missing: still,
                });
            }
            if still.iter().any(|r| missing.contains(r)) {
                // The package manager said yes, yet the same things are missing: another
                // round would only repeat it.
                let (same, _): (Vec<_>, Vec<_>) = still.into_iter().partition(|r| missing.contains(r));
                return Err(SetupError::NotProvided { command: argv.join(" "), missing: same });
            }
            if !still.is_empty() {
                crate::reporter::line(format!(
                    "bootproof: that install removed {}; installing again",
                    describe(&still)
                ));
            }
            missing = still;
        }
        if missing.is_empty() {
            return Ok(());
        }
        Err(SetupError::NoConvergence { rounds: ROUNDS, missing })
    }

    fn missing_error(self, missing: Vec<Requirement>) -> SetupError {
        let pm = self.package_manager.unwrap_or(PackageManager::Apt);
        let mut command = pm.install_command(&packages(pm, &missing)).join(" ");
        if !is_root() {
            command = format!("sudo {command}");
        }
        let hint = if auto_install_disabled() {
            " (BOOTPROOF_AUTO_INSTALL=0 kept bootproof from installing it)"
        } else {
            ""
        };
        SetupError::Missing { missing, command, hint }
    }
}

fn succeeded(status: &std::io::Result<std::process::ExitStatus>) -> bool {
    status.as_ref().is_ok_and(|s| s.success())
}

/// The packages that bring `missing`, each once.
fn packages(pm: PackageManager, missing: &[Requirement]) -> Vec<&'static str> {
    let mut p: Vec<&str> = missing.iter().map(|r| pm.package(r)).collect();
    p.sort_unstable();
    p.dedup();
    p
}

/// An exclusive `flock` on a file in the cache directory, held while installing.
struct InstallLock {
    _file: Option<std::fs::File>,
}

impl InstallLock {
    fn take() -> InstallLock {
        let dir = crate::cache::cache_dir();
        let _ = std::fs::create_dir_all(&dir);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("host-setup.lock"))
            .ok();
        if let Some(f) = &file {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a descriptor we own; released when the file closes.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        }
        InstallLock { _file: file }
    }
}

/// The requirements that are not met.
pub fn missing(reqs: &[Requirement]) -> Vec<Requirement> {
    reqs.iter().filter(|r| r.locate().is_none()).copied().collect()
}

fn run_install(argv: &[String]) -> std::io::Result<std::process::ExitStatus> {
    use std::os::fd::AsFd;
    crate::reporter::line(format!("bootproof: installing host packages: {}", argv.join(" ")));
    // Package manager chatter goes to stderr so stdout stays the tool's own output.
    let to_stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
    Command::new(&argv[0])
        .args(&argv[1..])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(to_stderr))
        .status()
}

fn auto_install_disabled() -> bool {
    std::env::var("BOOTPROOF_AUTO_INSTALL").is_ok_and(|v| v == "0")
}

fn install_allowed() -> bool {
    !auto_install_disabled() && is_root()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Finds a program on PATH, then in the sbin directories.
pub fn find_command(cmd: &str) -> Option<PathBuf> {
    if cmd.contains('/') {
        return Some(PathBuf::from(cmd)).filter(|p| is_executable(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(cmd))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_command_names_every_package() {
        let argv = PackageManager::Apt.install_command(&["ovmf", "swtpm"]);
        assert_eq!(argv.join(" "), "apt-get install -y --no-install-recommends ovmf swtpm");
        let argv = PackageManager::Dnf.install_command(&["edk2-ovmf"]);
        assert_eq!(argv.join(" "), "dnf install -y edk2-ovmf");
    }

    #[test]
    fn cargo_tools_install_into_the_given_root() {
        let argv = cargo_install_command(crate::host::VHOST_DEVICE_VSOCK, Path::new("/c/tools"));
        assert_eq!(argv.join(" "), "cargo install --locked --root /c/tools vhost-device-vsock");
    }

    #[test]
    fn missing_reports_only_absent_things() {
        let reqs = [
            Requirement::command("sh", "dash", "bash", "shell"),
            Requirement::file("/nonexistent/bootproof-test", "x", "y", "test"),
        ];
        let m = missing(&reqs);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].name(), "/nonexistent/bootproof-test");
    }
}
