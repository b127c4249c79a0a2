//! Boot media from files, without loop devices or mounts (the host kernel may lack
//! vfat and device-mapper, and a test runner is rarely root): the UKI with `objcopy`,
//! the ESP with `mkfs.vfat -C` and mtools, the GPT with `sfdisk` on a plain file, the
//! hybrid ISO with `xorriso`, and the ESP layout of Debian's signed Secure Boot chain.
//!
//! Must not: know what a guest contains; callers give the kernel, initramfs, command
//! line and the tree holding the signed boot files, and say what else goes where.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::ImageError;
use super::build::Build;

/// systemd-boot's EFI stub (package `systemd-boot-efi`): bookworm's systemd 252 has no
/// `ukify`, so the UKI is this stub plus sections added by objcopy.
pub const UKI_STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

/// GPT partition type of an EFI system partition.
pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// GPT partition type "Linux filesystem data", for the raw `scratch` partition.
pub const SCRATCH_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D693D47F7E4";

const MIB: u64 = 1 << 20;
/// The ESP of a disk image: roomy and the size the recipes measured booting. The disk
/// file is sparse, so unused space costs nothing.
pub const DISK_ESP_MIB: u64 = 32;
/// Room beyond the files for FAT's own tables and directories.
const ESP_SLACK_MIB: u64 = 3;
const SCRATCH_MIB: u64 = 1;

/// Whether the ESP goes on a disk (fixed size) or into an ISO (as small as fits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EspFor {
    Disk,
    Iso,
}

/// The ESP's size in MiB for files of `content` bytes, or `None` if they do not fit
/// on a disk's ESP.
pub fn esp_mib(content: u64, esp_for: EspFor) -> Option<u64> {
    let needed = content.div_ceil(MIB) + ESP_SLACK_MIB;
    match esp_for {
        EspFor::Disk => (needed <= DISK_ESP_MIB).then_some(DISK_ESP_MIB),
        EspFor::Iso => Some(needed),
    }
}

/// Bytes of the disk file that the `scratch` partition spans: right after the ESP.
pub fn scratch_range(esp_mib: u64) -> Range<u64> {
    let start = (1 + esp_mib) * MIB;
    start..start + SCRATCH_MIB * MIB
}

/// The sfdisk script of the tiny disks: the ESP at 1 MiB, then `scratch`, which the
/// guest overwrites with its report line.
pub fn sfdisk_script(esp_mib: u64) -> String {
    let scratch = scratch_range(esp_mib);
    format!(
        "label: gpt\n\
         start={}, size={}, type={ESP_TYPE}, name=\"ESP\"\n\
         start={}, size={}, type={SCRATCH_TYPE}, name=\"scratch\"\n",
        MIB / 512,
        esp_mib * MIB / 512,
        scratch.start / 512,
        (scratch.end - scratch.start) / 512,
    )
}

/// The disk's size: both partitions plus 1 MiB at each end for the GPT and its backup.
pub fn disk_bytes(esp_mib: u64) -> u64 {
    (1 + esp_mib + SCRATCH_MIB + 1) * MIB
}

/// Virtual addresses of the UKI's sections: above the stub's own, the initrd after
/// the kernel whatever its size.
pub fn uki_section_vmas(kernel_bytes: u64) -> [(&'static str, u64); 4] {
    let linux = 0x200_0000;
    let initrd = (linux + kernel_bytes).div_ceil(MIB) * MIB + MIB;
    [(".osrel", 0x2_0000), (".cmdline", 0x3_0000), (".linux", linux), (".initrd", initrd)]
}

/// Builds a unified kernel image in `work` and returns its path.
pub fn uki(
    b: &mut Build,
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    os_release: &str,
    work: &Path,
) -> Result<PathBuf, ImageError> {
    let osrel = work.join("os-release");
    b.write(&osrel, os_release)?;
    let cmdline_file = work.join("cmdline");
    b.write(&cmdline_file, cmdline)?;
    let kernel_bytes = b.io(kernel, kernel.metadata())?.len();
    let files = [osrel.as_path(), cmdline_file.as_path(), kernel, initrd];
    let out = work.join("uki.efi");
    let mut cmd = Command::new("objcopy");
    for ((section, vma), file) in uki_section_vmas(kernel_bytes).iter().zip(files) {
        cmd.arg("--add-section")
            .arg(format!("{section}={}", file.display()))
            .arg("--change-section-vma")
            .arg(format!("{section}={vma:#x}"));
    }
    b.run(cmd.arg(UKI_STUB).arg(&out))?;
    Ok(out)
}

/// Builds a FAT ESP image at `path` holding `files` (source, path inside the ESP).
pub fn esp(
    b: &mut Build,
    path: &Path,
    esp_for: EspFor,
    files: &[(PathBuf, &str)],
) -> Result<u64, ImageError> {
    let mut content = 0;
    for (src, _) in files {
        content += b.io(src, src.metadata())?.len();
    }
    let mib = esp_mib(content, esp_for).ok_or_else(|| {
        b.content(format!("{content} bytes of boot files do not fit a {DISK_ESP_MIB} MiB ESP"))
    })?;
    // Let mkfs.vfat pick the FAT type: FAT32 forced on 32 MiB leaves no directory slots.
    b.run(Command::new("mkfs.vfat").args(["-n", "ESP", "-C"]).arg(path).arg((mib * 1024).to_string()))?;
    for dir in esp_dirs(files.iter().map(|(_, dest)| *dest)) {
        b.run(mtools("mmd").arg("-i").arg(path).arg(format!("::/{dir}")))?;
    }
    for (src, dest) in files {
        b.run(mtools("mcopy").arg("-i").arg(path).arg(src).arg(format!("::/{dest}")))?;
    }
    Ok(mib)
}

/// Builds a FAT ESP image of `mib` MiB at `path` holding everything in `dir` (a
/// system's /boot, which the ESP is for the grub variants), labelled `ESP` as
/// [`esp`]'s are. Returns `mib`.
pub fn esp_of_dir(b: &mut Build, path: &Path, mib: u64, dir: &Path) -> Result<u64, ImageError> {
    b.run(Command::new("mkfs.vfat").args(["-n", "ESP", "-C"]).arg(path).arg((mib * 1024).to_string()))?;
    let mut entries: Vec<PathBuf> =
        b.io(dir, std::fs::read_dir(dir))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    if !entries.is_empty() {
        b.run(mtools("mcopy").args(["-s", "-Q", "-i"]).arg(path).args(&entries).arg("::/"))?;
    }
    Ok(mib)
}

/// mtools refuses images whose geometry it finds odd unless told not to check.
fn mtools(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("MTOOLS_SKIP_CHECK", "1");
    cmd
}

/// Every directory the destinations need, parents first, each once.
fn esp_dirs<'a>(dests: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut dirs: Vec<String> = Vec::new();
    for dest in dests {
        let parts: Vec<&str> = dest.split('/').collect();
        for n in 1..parts.len() {
            let dir = parts[..n].join("/");
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    dirs
}

/// Debian's signed boot files, relative to a tree holding shim-signed,
/// shim-helpers-amd64-signed and grub-efi-amd64-signed (unpacked or installed), with
/// their place on the ESP.
const SIGNED_BOOT_FILES: [(&str, &str); 3] = [
    ("usr/lib/shim/shimx64.efi.signed", "EFI/BOOT/BOOTX64.EFI"),
    ("usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", "EFI/BOOT/grubx64.efi"),
    ("usr/lib/shim/mmx64.efi.signed", "EFI/BOOT/mmx64.efi"),
];

/// grub.cfg for the signed chain. Signed grub takes no modules from disk, so it uses
/// only commands built into Debian's signed image; the console is serial so a test
/// sees grub's errors.
pub fn signed_grub_cfg(cmdline: &str) -> String {
    format!(
        "set timeout=0\n\
         serial --unit=0 --speed=115200\n\
         terminal_input serial\n\
         terminal_output serial\n\
         search --no-floppy --file --set=root /vmlinuz\n\
         linux /vmlinuz {cmdline}\n\
         initrd /initrd.img\n\
         boot\n"
    )
}

/// The ESP files of a Secure Boot disk, for [`esp`]: shim (Microsoft-signed) at the
/// removable path loads grub (Debian-signed) next to it, which boots `kernel` (it must
/// be Debian-signed) with `initrd` and `cmdline` from the ESP's root. Debian's signed
/// grub reads its config from `/EFI/debian` (its built-in prefix); the copy in
/// `/EFI/BOOT` serves other grub builds. No `fbx64.efi`, so shim never runs its
/// fallback (which would write boot entries into the varstore).
pub fn signed_chain(
    b: &Build,
    tree: &Path,
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    work: &Path,
) -> Result<Vec<(PathBuf, &'static str)>, ImageError> {
    let grub_cfg = work.join("grub.cfg");
    b.write(&grub_cfg, signed_grub_cfg(cmdline))?;
    let mut files: Vec<(PathBuf, &str)> =
        SIGNED_BOOT_FILES.iter().map(|(src, dest)| (tree.join(src), *dest)).collect();
    if let Some((missing, _)) = files.iter().find(|(src, _)| !src.is_file()) {
        return Err(b.content(format!(
            "{} is missing: the signed chain takes it from shim-signed, \
             shim-helpers-amd64-signed or grub-efi-amd64-signed",
            missing.display()
        )));
    }
    files.extend([
        (grub_cfg.clone(), "EFI/debian/grub.cfg"),
        (grub_cfg, "EFI/BOOT/grub.cfg"),
        (kernel.to_path_buf(), "vmlinuz"),
        (initrd.to_path_buf(), "initrd.img"),
    ]);
    Ok(files)
}

/// Writes the tiny GPT disk at `out` (sparse raw) with `esp` as its first partition.
pub fn gpt_disk(b: &mut Build, esp: &Path, esp_mib: u64, out: &Path) -> Result<(), ImageError> {
    let file = b.io(out, File::create(out))?;
    b.io(out, file.set_len(disk_bytes(esp_mib)))?;
    drop(file);
    b.run_with_input(Command::new("sfdisk").arg("-q").arg(out), Some(sfdisk_script(esp_mib).as_bytes()))?;
    b.run(
        Command::new("dd").arg(format!("if={}", esp.display())).arg(format!("of={}", out.display())).args([
            "bs=1M",
            "seek=1",
            "conv=notrunc,sparse",
            "status=none",
        ]),
    )
}

/// GPT partition type of a LUKS container (as systemd's partition types name it).
pub const LUKS_TYPE: &str = "CA7D7CCB-63ED-4C53-861C-1742536059CC";

/// The sfdisk script of a system disk: the ESP at 1 MiB, then the encrypted root.
pub fn system_sfdisk_script(esp_mib: u64, root_bytes: u64) -> String {
    format!(
        "label: gpt\n\
         start={}, size={}, type={ESP_TYPE}, name=\"ESP\"\n\
         start={}, size={}, type={LUKS_TYPE}, name=\"root\"\n",
        MIB / 512,
        esp_mib * MIB / 512,
        (1 + esp_mib) * MIB / 512,
        root_bytes.div_ceil(MIB) * MIB / 512,
    )
}

/// Writes a system disk at `out`: `esp` as partition 1, the `root` image (a LUKS
/// container) as partition 2.
pub fn gpt_disk_with_root(
    b: &mut Build,
    esp: &Path,
    esp_mib: u64,
    root: &Path,
    out: &Path,
) -> Result<(), ImageError> {
    let root_bytes = b.io(root, root.metadata())?.len();
    let file = b.io(out, File::create(out))?;
    b.io(out, file.set_len((1 + esp_mib + root_bytes.div_ceil(MIB) + 1) * MIB))?;
    drop(file);
    let script = system_sfdisk_script(esp_mib, root_bytes);
    b.run_with_input(Command::new("sfdisk").arg("-q").arg(out), Some(script.as_bytes()))?;
    for (part, seek_mib) in [(esp, 1), (root, 1 + esp_mib)] {
        b.run(
            Command::new("dd")
                .arg(format!("if={}", part.display()))
                .arg(format!("of={}", out.display()))
                .args(["bs=1M", &format!("seek={seek_mib}"), "conv=notrunc,sparse", "status=none"]),
        )?;
    }
    Ok(())
}

/// Writes a hybrid ISO at `out`: El Torito's EFI image and GPT partition 2 are both
/// `esp`, so it boots as `-cdrom` and as a disk.
pub fn iso(b: &mut Build, esp: &Path, work: &Path, out: &Path) -> Result<(), ImageError> {
    let root = work.join("iso-root");
    b.create_dir(&root)?;
    b.write(
        &root.join("README.TXT"),
        "bootproof tiny reference guest: the UKI is in the EFI system partition.\n",
    )?;
    b.run(
        Command::new("xorriso")
            .args(["-as", "mkisofs", "-o"])
            .arg(out)
            .args(["-V", "BOOTPROOF_TINY", "-iso-level", "3", "-R", "-J"])
            .args(["-append_partition", "2", "0xef"])
            .arg(esp)
            .args(["-appended_part_as_gpt", "-e"])
            .args(["--interval:appended_partition_2:all::", "-no-emul-boot"])
            .arg(&root),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_holds_esp_then_scratch() {
        assert_eq!(
            sfdisk_script(32),
            "label: gpt\n\
             start=2048, size=65536, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"ESP\"\n\
             start=67584, size=2048, type=0FC63DAF-8483-4772-8E79-3D693D47F7E4, name=\"scratch\"\n"
        );
        // The backup GPT needs 33 sectors after the last partition.
        assert!(disk_bytes(32) / 512 - (67584 + 2048) >= 33);
    }

    #[test]
    fn the_system_disk_holds_esp_then_root() {
        assert_eq!(
            system_sfdisk_script(32, 800 * MIB),
            "label: gpt\n\
             start=2048, size=65536, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"ESP\"\n\
             start=67584, size=1638400, type=CA7D7CCB-63ED-4C53-861C-1742536059CC, name=\"root\"\n"
        );
    }

    #[test]
    fn esp_size_fits_its_content() {
        assert_eq!(esp_mib(10 * MIB + 1, EspFor::Iso), Some(14));
        assert_eq!(esp_mib(10 * MIB, EspFor::Disk), Some(32));
        assert_eq!(esp_mib(30 * MIB, EspFor::Disk), None);
    }

    #[test]
    fn initrd_section_never_overlaps_the_kernel() {
        for kernel in [8 * MIB, 16 * MIB, 40 * MIB + 3] {
            let vmas = uki_section_vmas(kernel);
            assert!(vmas[3].1 >= vmas[2].1 + kernel);
            assert_eq!(vmas[3].1 % MIB, 0);
        }
    }

    #[test]
    fn esp_directories_come_parents_first() {
        let dirs = esp_dirs(
            ["EFI/BOOT/BOOTX64.EFI", "EFI/debian/grub.cfg", "EFI/BOOT/grub.cfg", "vmlinuz"].into_iter(),
        );
        assert_eq!(dirs, ["EFI", "EFI/BOOT", "EFI/debian"]);
    }
}

/// Host tools every reference disk needs: an ESP filled without mounting, a GPT on a
/// file, and (for UKI images) objcopy with systemd-boot's stub.
pub mod tools {
    use crate::host::setup::Requirement;

    pub const MKFS_VFAT: Requirement =
        Requirement::command("mkfs.vfat", "dosfstools", "dosfstools", "the EFI system partition");
    pub const MCOPY: Requirement =
        Requirement::command("mcopy", "mtools", "mtools", "filling the ESP without mounting it");
    pub const SFDISK: Requirement =
        Requirement::command("sfdisk", "fdisk", "util-linux", "the GPT of the disk image");
    pub const OBJCOPY: Requirement = Requirement::command("objcopy", "binutils", "binutils", "the UKI");
    pub const UKI_STUB: Requirement =
        Requirement::file(super::UKI_STUB, "systemd-boot-efi", "systemd-boot-unsigned", "the UKI's EFI stub");
    pub const XORRISO: Requirement =
        Requirement::command("xorriso", "xorriso", "xorriso", "reference ISO images");
    pub const CPIO: Requirement = Requirement::command("cpio", "cpio", "cpio", "packing the initramfs");
    pub const APT_FTPARCHIVE: Requirement =
        Requirement::command("apt-ftparchive", "apt-utils", "apt", "the installer mirror's indexes");
    pub const GPG: Requirement =
        Requirement::command("gpg", "gpg", "gnupg2", "signing the installer mirror's Release");
    pub const GPG_AGENT: Requirement =
        Requirement::command("gpg-agent", "gpg-agent", "gnupg2", "gpg's secret-key operations");
    pub const GPGCONF: Requirement =
        Requirement::command("gpgconf", "gpgconf", "gnupg2", "stopping gpg's agent after signing");
    pub const GRUB_MKRESCUE: Requirement =
        Requirement::command("grub-mkrescue", "grub-common", "grub2-tools-extra", "the installer ISO");
    pub const GRUB_EFI_MODULES: Requirement = Requirement::file(
        "/usr/lib/grub/x86_64-efi/moddep.lst",
        "grub-efi-amd64-bin",
        "grub2-efi-x64-modules",
        "the installer ISO's UEFI boot loader",
    );
    pub const MFORMAT: Requirement =
        Requirement::command("mformat", "mtools", "mtools", "the installer ISO's EFI image");
    pub const MMDEBSTRAP: Requirement =
        Requirement::command("mmdebstrap", "mmdebstrap", "mmdebstrap", "bootstrapping Debian bookworm");
}
