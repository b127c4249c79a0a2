//! What this machine offers: the QEMU binary and its version, acceleration, OVMF
//! firmware, swtpm, the image-building tools, and host setup.
//!
//! Must not: start guests for anything but the acceleration probe.

pub mod accel;
pub mod ovmf;
pub mod qemu;
pub mod setup;

use setup::Requirement;

pub const QEMU: Requirement =
    Requirement::command("qemu-system-x86_64", "qemu-system-x86", "qemu-system-x86-core", "running guests");
pub const QEMU_IMG: Requirement =
    Requirement::command("qemu-img", "qemu-utils", "qemu-img", "per-run disk overlays");
pub const SWTPM: Requirement = Requirement::command("swtpm", "swtpm", "swtpm", "the TPM 2.0 of tpm profiles");
pub const SWTPM_TOOLS: Requirement =
    Requirement::command("swtpm_setup", "swtpm-tools", "swtpm-tools", "TPM state set-up");
/// The relay of `network = "restricted"`: QEMU runs it for each guest connection to one
/// of bootproof's servers (see `vm::argv`).
pub const SOCAT: Requirement =
    Requirement::command("socat", "socat", "socat", "guest connections to bootproof's servers");
/// Only asked for when no firmware pair is found (the path differs per distribution).
pub const OVMF_DEBIAN: Requirement =
    Requirement::file("/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf", "edk2-ovmf", "UEFI firmware");

/// The vhost-user device behind the vsock agent transport.
pub const VHOST_DEVICE_VSOCK: setup::CargoTool = setup::CargoTool {
    command: "vhost-device-vsock",
    krate: "vhost-device-vsock",
    why: "the vsock guest agent (profile agent = \"vsock\")",
};

/// Everything a run needs; installs what is missing when allowed (see [`setup`]).
pub fn ensure_runtime() -> Result<(), setup::SetupError> {
    let mut reqs = vec![QEMU, QEMU_IMG, SWTPM, SWTPM_TOOLS, SOCAT];
    if ovmf::discover().is_empty() {
        reqs.push(OVMF_DEBIAN);
    }
    setup::ensure(&reqs)
}
