//! `bootproof doctor`: one table of what this host offers, and what is missing.
//!
//! Owns: the table. It reads both the host (QEMU, acceleration, firmware, swtpm) and
//! the image recipes' tool list, so it sits above `host` and `images`, which never
//! import each other's way back.

use serde::Serialize;

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
            let virtfs = if info.virtfs { "virtfs: yes" } else { "virtfs: NO (shares will not work)" };
            let status = if info.virtfs { "ok" } else { "missing" };
            checks.push(row(
                "qemu-system-x86_64",
                status,
                format!("{} (QEMU {}), {virtfs}", info.path.display(), info.version),
                true,
            ));
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
    checks.extend(crate::images::TOOLS.iter().map(|r| tool_row(r, false)));
    Report { checks, accel: accel_name }
}
