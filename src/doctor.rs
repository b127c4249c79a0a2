//! `bootproof doctor`: one table of what this host offers, and what is missing.
//!
//! Owns: the table. It reads both the host (QEMU, acceleration, firmware, swtpm) and
//! the image recipes' tool list, so it sits above `host` and `images`, which never
//! import each other's way back.

use serde::Serialize;
use std::path::Path;

use crate::host::{self, accel, ovmf, qemu, setup};

/// One row of the doctor table.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub item: String,
    /// `ok`, `missing`, or a verdict such as `tcg`.
    pub status: String,
    pub detail: String,
    pub required: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    /// Acceleration the runs will use.
    pub accel: String,
}

impl Report {
    pub fn missing_required(&self) -> bool {
        self.checks.iter().any(|c| c.required && c.status == "missing")
    }

    pub fn render(&self) -> String {
        let width = self.checks.iter().map(|c| c.item.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in &self.checks {
            let flag = if c.required || c.status != "missing" { "" } else { " (optional)" };
            out.push_str(&format!("{:width$}  {:8} {}{flag}\n", c.item, c.status, c.detail));
        }
        out
    }
}

fn row(item: &str, status: &str, detail: String, required: bool) -> Check {
    Check { item: item.to_string(), status: status.to_string(), detail, required }
}

fn tool_row(req: &setup::Requirement, required: bool) -> Check {
    // A file is named by its base name; the detail column has the full path.
    let item = req.name().rsplit('/').next().unwrap_or(req.name());
    match req.locate() {
        Some(p) => row(item, "ok", p.display().to_string(), required),
        None => {
            let pm = setup::PackageManager::detect().unwrap_or(setup::PackageManager::Apt);
            let pkg = if pm == setup::PackageManager::Apt { req.debian } else { req.fedora };
            let cmd = pm.install_command(&[pkg]).join(" ");
            row(item, "missing", format!("for {} ({}); install: {cmd}", req.why, req.name()), required)
        }
    }
}

/// Looks at the host; runs the acceleration probe when no verdict is cached.
pub fn examine() -> Report {
    let mut checks = Vec::new();
    let mut accel_name = "unknown".to_string();
    match qemu::info() {
        Ok(info) => {
            let virtfs = if info.virtfs { "virtfs: yes" } else { "virtfs: no (shares use the p9 backend)" };
            checks.push(row(
                "qemu-system-x86_64",
                "ok",
                format!("{} (QEMU {}), {virtfs}", info.path.display(), info.version),
                true,
            ));
            checks.push(share_backend_row(info.virtfs));
            match accel::choose(&info.path, &info.version) {
                Ok(v) => {
                    accel_name = v.accel.as_str().to_string();
                    let detail = match v.accel {
                        accel::Accel::Kvm => "guest code runs under KVM".to_string(),
                        accel::Accel::Tcg => format!(
                            "KVM rejected: {}; timeouts scaled by {}{}",
                            v.reason,
                            accel::Accel::Tcg.timeout_scale(),
                            if v.cached { " (cached verdict)" } else { "" }
                        ),
                    };
                    checks.push(row("acceleration", v.accel.as_str(), detail, true));
                }
                Err(e) => checks.push(row("acceleration", "missing", e.to_string(), true)),
            }
        }
        Err(e) => checks.push(row("qemu-system-x86_64", "missing", e.to_string(), true)),
    }
    checks.push(tool_row(&host::QEMU_IMG, true));
    checks.push(tool_row(&host::SWTPM, true));
    checks.push(tool_row(&host::SWTPM_TOOLS, false));
    checks.push(tool_row(&host::SOCAT, false));
    for (item, fw) in [
        ("firmware uefi", crate::profile::Firmware::Uefi),
        ("firmware uefi-secureboot", crate::profile::Firmware::UefiSecureBoot),
    ] {
        checks.push(match ovmf::resolve(&fw) {
            Ok(Some(p)) => row(
                item,
                "ok",
                format!(
                    "{} + {} ({}{})",
                    p.code.display(),
                    p.vars.display(),
                    p.source,
                    if p.requires_smm { ", needs SMM" } else { "" }
                ),
                true,
            ),
            Ok(None) => unreachable!("UEFI firmware modes never resolve to BIOS"),
            Err(e) => row(item, "missing", e.to_string().lines().next().unwrap_or("").to_string(), true),
        });
    }
    checks.push(landlock_row());
    checks.push(vsock_row());
    // Only text steps need it; host setup installs it when a scenario has one.
    checks.push(tool_row(&crate::screen::ocr::TESSERACT, false));
    checks.extend(crate::images::TOOLS.iter().map(|r| tool_row(r, false)));
    Report { checks, accel: accel_name }
}

/// Which backend `share_backend = "auto"` takes here, the override, and the program
/// the p9 backend runs.
fn share_backend_row(virtfs: bool) -> Check {
    let program = crate::share::find_program();
    let auto = if virtfs { "virtfs" } else { "p9" };
    let over = match crate::profile::ShareBackend::from_env() {
        Ok(Some(b)) => format!("; BOOTPROOF_SHARE_BACKEND={} overrides every profile", b.as_str()),
        Ok(None) => String::new(),
        Err(e) => return row("share backend", "missing", e, true),
    };
    match program {
        Some(p) => row(
            "share backend",
            "ok",
            format!("auto = {auto} (p9 with share_quota){over}; p9 runs {} share-server", p.display()),
            false,
        ),
        None => row(
            "share backend",
            if virtfs { "ok" } else { "missing" },
            format!(
                "auto = {auto}{over}; the p9 backend needs the bootproof program (not found beside this one \
                 or on PATH; set BOOTPROOF_PROGRAM)"
            ),
            !virtfs,
        ),
    }
}

/// Whether the kernel offers Landlock, the share server's second wall.
fn landlock_row() -> Check {
    // landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) returns the ABI.
    // SAFETY: a query with no pointers; the kernel only returns a number.
    let abi =
        unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0usize, 1u32) };
    if abi > 0 {
        row(
            "landlock",
            "ok",
            format!("ABI {abi}: share-server confines itself to the shared directory"),
            false,
        )
    } else {
        let e = std::io::Error::last_os_error();
        row(
            "landlock",
            "missing",
            format!("{e}: share-server relies on its frame filter alone (Linux 5.13+ with landlock in lsm=)"),
            false,
        )
    }
}

/// How `agent = "vsock"` reaches the guest here.
fn vsock_row() -> Check {
    if Path::new("/dev/vhost-vsock").exists() {
        return row(
            "vsock",
            "ok",
            "kernel vhost-vsock (/dev/vhost-vsock), AF_VSOCK via the vsock crate".into(),
            false,
        );
    }
    let tool = crate::host::VHOST_DEVICE_VSOCK;
    match crate::host::setup::locate_cargo_tool(tool) {
        Some(p) => row("vsock", "ok", format!("no /dev/vhost-vsock; vhost-device-vsock at {}", p.display()), false),
        None => row(
            "vsock",
            "missing",
            "no /dev/vhost-vsock (modprobe vhost_vsock); vhost-device-vsock is installed with cargo on first use".into(),
            false,
        ),
    }
}
