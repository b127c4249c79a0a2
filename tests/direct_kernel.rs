//! Direct kernel boot (a profile's `[kernel]`) with disks and a disc attached boots the
//! kernel, under OVMF and under SeaBIOS: the installer case (Debian's installer kernel
//! and initrd, its ISO, a blank disk to install to) that QEMU once refused to start
//! because the drives' boot indexes clashed with the kernel's (see `vm::argv`).
//!
//! The kernel is the tiny reference guest's, booted with a command line of its own, so
//! the console shows which kernel command line ran: under OVMF the image attached is
//! the tiny guest's bootable disk, whose own unified kernel image has another command
//! line; had the firmware booted the disk instead of the kernel, the marker would be
//! missing.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use bootproof::profile::Profile;
use bootproof::vm::boot::{BootRequest, boot};

mod common;

/// Ours, not the tiny image's (`console=ttyS0 quiet panic=-1`); without `quiet` the
/// kernel prints it as `Command line: ...`.
const APPEND: &str = "console=ttyS0 panic=-1 bootproof.direct-kernel=1";

/// One VM at a time: the host is shared.
static ONE_VM: Mutex<()> = Mutex::new(());

fn blank_disk(path: &Path) {
    let out =
        Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(path).arg("64M").output().unwrap();
    assert!(out.status.success(), "qemu-img: {}", String::from_utf8_lossy(&out.stderr));
}

/// Boots `firmware` with the tiny kernel, a cdrom, a blank nvme disk and `image`, and
/// returns the console log; fails unless the tiny guest's init started.
fn boot_kernel(firmware: &str, image: Option<String>) -> String {
    let _one = ONE_VM.lock().unwrap_or_else(|p| p.into_inner());
    bootproof::host::ensure_runtime().unwrap_or_else(|e| panic!("{e}"));
    let tmp = tempfile::tempdir().unwrap();
    let k = common::tiny_kernel(tmp.path());
    let disk = tmp.path().join("blank.qcow2");
    blank_disk(&disk);
    // A disc the firmware finds nothing to boot on, like an installer ISO's data.
    let disc = tmp.path().join("disc.iso");
    std::fs::write(&disc, vec![0u8; 1 << 20]).unwrap();
    let text = format!(
        "firmware = \"{firmware}\"\ncdrom = \"{}\"\n[[disk]]\npath = \"{}\"\ninterface = \"nvme\"\n\
         [kernel]\nkernel = \"{}\"\ninitrd = \"{}\"\nappend = \"{APPEND}\"\n",
        disc.display(),
        disk.display(),
        k.kernel.display(),
        k.initrd.display()
    );
    let mut profile = Profile::parse(&text, Path::new("direct-kernel.toml")).unwrap();
    profile.name = format!("direct-kernel-{firmware}");
    let run_dir = tmp.path().join("run");
    let req = BootRequest {
        profile,
        image,
        until: Some(regex::bytes::Regex::new("bootproof-tiny: init started").unwrap()),
        timeout: Some(std::time::Duration::from_secs(60)),
        run_dir: run_dir.clone(),
        echo_console: false,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let report = rt.block_on(boot(req)).unwrap_or_else(|e| panic!("{e}"));
    let console = std::fs::read_to_string(run_dir.join("console.log")).unwrap_or_default();
    let qemu_log = std::fs::read_to_string(run_dir.join("qemu.log")).unwrap_or_default();
    assert!(report.success, "{}\nqemu.log:\n{qemu_log}\nconsole:\n{console}", report.summary());
    console
}

#[test]
fn ovmf_boots_the_kernel_ahead_of_a_bootable_disk_and_a_cdrom() {
    let console = boot_kernel("uefi", Some("reference:tiny".into()));
    assert!(
        console.contains(&format!("Command line: {APPEND}")),
        "the tiny disk's own kernel booted, not the profile's [kernel]:\n{console}"
    );
}

#[test]
fn seabios_boots_the_kernel_with_a_blank_disk_and_a_cdrom() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("install-target.qcow2");
    blank_disk(&target);
    let console = boot_kernel("bios", Some(target.display().to_string()));
    assert!(console.contains(&format!("Command line: {APPEND}")), "{console}");
}
