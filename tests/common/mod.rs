//! Real files for tests that start QEMU with direct kernel boot: the tiny reference
//! guest's Debian kernel and initramfs, taken out of its unified kernel image.
//!
//! QEMU reads `-kernel` at start-up and, with `-initrd`, refuses a file without a
//! Linux boot header ("linux kernel too old to load a ram disk"), so a placeholder file
//! will not do; this kernel also really boots, to the tiny guest's init.

use std::path::{Path, PathBuf};
use std::process::Command;

use bootproof::host::setup::{self, Requirement};

/// A direct-boot kernel and its initramfs.
pub struct TinyKernel {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// Copies the kernel and initramfs of `reference:tiny` (built or found in the cache)
/// into `dir`.
pub fn tiny_kernel(dir: &Path) -> TinyKernel {
    setup::ensure(&[
        Requirement::command("mcopy", "mtools", "mtools", "reading the tiny guest's ESP"),
        Requirement::command("objcopy", "binutils", "binutils", "taking the kernel out of the UKI"),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let image = bootproof::images::ensure("tiny").unwrap_or_else(|e| panic!("{e}"));
    let uki = dir.join("BOOTX64.EFI");
    let esp = format!("{}@@{}", image.path.display(), first_partition_offset(&image.path));
    run(Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-o", "-i", &esp, "::/EFI/BOOT/BOOTX64.EFI"])
        .arg(&uki));
    let kernel = TinyKernel { kernel: dir.join("vmlinuz"), initrd: dir.join("initrd.img") };
    // objcopy always writes an output file; the copy of the UKI is not needed.
    let scratch = dir.join("uki-copy.efi");
    run(Command::new("objcopy")
        .arg(format!("--dump-section=.linux={}", kernel.kernel.display()))
        .arg(format!("--dump-section=.initrd={}", kernel.initrd.display()))
        .arg(&uki)
        .arg(&scratch));
    let _ = std::fs::remove_file(scratch);
    let _ = std::fs::remove_file(uki);
    kernel
}

/// Byte offset of the first GPT partition (the tiny disk's ESP).
fn first_partition_offset(disk: &Path) -> u64 {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(disk).unwrap_or_else(|e| panic!("{}: {e}", disk.display()));
    let mut header = [0u8; 92];
    f.seek(SeekFrom::Start(512)).unwrap();
    f.read_exact(&mut header).unwrap();
    assert_eq!(&header[..8], b"EFI PART", "no GPT header in {}", disk.display());
    let entries_lba = u64::from_le_bytes(header[72..80].try_into().unwrap());
    let mut first_lba = [0u8; 8];
    f.seek(SeekFrom::Start(entries_lba * 512 + 32)).unwrap();
    f.read_exact(&mut first_lba).unwrap();
    u64::from_le_bytes(first_lba) * 512
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}
