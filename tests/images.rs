//! Builds the reference images for real (Debian packages through apt, into the user's
//! cache) and checks their structure: the GPT, the ESP's files, the UKI's sections,
//! the initramfs, the ISO's El Torito entry, the shim signature, and the cache.
//! Booting them is the runtime's tests' job.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bootproof::host::setup::{self, Requirement};
use bootproof::images::{self, ImageKind};

const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

/// Tools only these checks use (the build installs its own).
fn inspection_tools() {
    setup::ensure(&[
        Requirement::command("objdump", "binutils", "binutils", "reading PE sections"),
        Requirement::command("objcopy", "binutils", "binutils", "extracting the initrd"),
        Requirement::command("mcopy", "mtools", "mtools", "reading the ESP"),
        Requirement::command("cpio", "cpio", "cpio", "listing the initramfs"),
        Requirement::command("xorriso", "xorriso", "xorriso", "reading El Torito"),
        Requirement::command("sbverify", "sbsigntool", "sbsigntools", "reading signatures"),
    ])
    .unwrap();
}

/// Builds or finds `name`, failing the test with the error's message (which names the
/// step, the command and the build log) rather than its Debug form.
fn ensure(name: &str) -> images::BuiltImage {
    images::ensure(name).unwrap_or_else(|e| panic!("{e}"))
}

/// One GPT partition entry, as far as these checks care.
#[derive(Debug)]
struct Partition {
    type_guid: String,
    name: String,
    first_lba: u64,
    last_lba: u64,
}

/// Reads the primary GPT from a raw disk file.
fn gpt(path: &Path) -> Vec<Partition> {
    let disk = std::fs::read(path).unwrap();
    let header = &disk[512..1024];
    assert_eq!(&header[..8], b"EFI PART", "no GPT header in {}", path.display());
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let entries_lba = u64_at(header, 72) as usize;
    let count = u32_at(header, 80) as usize;
    let size = u32_at(header, 84) as usize;
    (0..count)
        .map(|i| &disk[entries_lba * 512 + i * size..][..size])
        .filter(|e| e[..16].iter().any(|&b| b != 0))
        .map(|e| Partition {
            type_guid: guid(&e[..16]),
            name: String::from_utf16_lossy(
                &e[56..128]
                    .chunks(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .take_while(|&c| c != 0)
                    .collect::<Vec<_>>(),
            ),
            first_lba: u64_at(e, 32),
            last_lba: u64_at(e, 40),
        })
        .collect()
}

/// A GUID in its usual text form (the first three fields are little-endian on disk).
fn guid(b: &[u8]) -> String {
    format!(
        "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        b[10..16].iter().map(|x| format!("{x:02X}")).collect::<String>()
    )
}

/// The ESP as an mtools image spec (`file@@offset`).
fn esp_of(disk: &Path) -> String {
    let parts = gpt(disk);
    let esp = parts.iter().find(|p| p.type_guid == ESP_TYPE).expect("an ESP");
    format!("{}@@{}", disk.display(), esp.first_lba * 512)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Copies `path` out of the ESP into `dir`.
fn esp_file(disk: &Path, path: &str, dir: &Path) -> PathBuf {
    let out = dir.join(path.rsplit('/').next().unwrap());
    run(Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-i", &esp_of(disk), &format!("::/{path}")])
        .arg(&out));
    out
}

#[test]
fn tiny_is_a_gpt_disk_with_esp_and_scratch() {
    let image = ensure("reference:tiny");
    assert_eq!(image.kind, ImageKind::Disk);
    assert_eq!(image.reference, "reference:tiny");
    let parts = gpt(&image.path);
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(parts[0].type_guid, ESP_TYPE);
    assert_eq!(parts[0].name, "ESP");
    assert_eq!(parts[1].name, "scratch");
    let scratch = parts[1].first_lba * 512..(parts[1].last_lba + 1) * 512;
    assert_eq!(scratch, images::scratch_range());
    assert_eq!(scratch.end - scratch.start, 1 << 20);
}

#[test]
fn tiny_boots_a_uki_with_init_and_modules() {
    inspection_tools();
    let image = ensure("tiny");
    let dir = tempfile::tempdir().unwrap();
    let uki = esp_file(&image.path, "EFI/BOOT/BOOTX64.EFI", dir.path());
    let sections = run(Command::new("objdump").arg("-h").arg(&uki));
    for section in [".linux", ".initrd", ".cmdline", ".osrel"] {
        assert!(sections.contains(section), "{section} missing:\n{sections}");
    }

    let cmdline = dir.path().join("cmdline");
    let initrd = dir.path().join("initrd.gz");
    run(Command::new("objcopy").args(["-O", "binary", "--only-section=.cmdline"]).arg(&uki).arg(&cmdline));
    run(Command::new("objcopy").args(["-O", "binary", "--only-section=.initrd"]).arg(&uki).arg(&initrd));
    assert_eq!(
        std::fs::read_to_string(&cmdline).unwrap().trim_end_matches('\0'),
        "console=ttyS0 quiet panic=-1"
    );

    let listing =
        run(Command::new("sh").arg("-c").arg("gzip -dc \"$1\" | cpio -t --quiet").arg("sh").arg(&initrd));
    let files: Vec<&str> = listing.lines().collect();
    for want in ["init", "bin/busybox", "etc/bootproof/modules"] {
        assert!(files.contains(&want), "{want} missing from the initramfs");
    }
    for module in ["virtio_pci.ko", "9p.ko", "9pnet_virtio.ko", "efivarfs.ko", "evdev.ko"] {
        assert!(
            files.iter().any(|f| f.ends_with(&format!("/{module}"))),
            "{module} missing from the initramfs"
        );
    }
}

#[test]
fn tiny_iso_has_an_el_torito_efi_entry() {
    inspection_tools();
    let image = ensure("tiny-iso");
    assert_eq!(image.kind, ImageKind::Iso);
    let report =
        run(Command::new("xorriso").args(["-indev"]).arg(&image.path).args(["-report_el_torito", "plain"]));
    assert!(
        report.lines().any(|l| l.starts_with("El Torito boot img") && l.contains("UEFI")),
        "no UEFI El Torito entry:\n{report}"
    );
}

#[test]
fn tiny_sb_boots_microsoft_signed_shim() {
    inspection_tools();
    let image = ensure("tiny-sb");
    assert_eq!(gpt(&image.path)[1].name, "scratch");
    let dir = tempfile::tempdir().unwrap();
    let shim = esp_file(&image.path, "EFI/BOOT/BOOTX64.EFI", dir.path());
    let signatures = run(Command::new("sbverify").arg("--list").arg(&shim));
    assert!(
        signatures.contains("Microsoft Corporation UEFI CA"),
        "shim is not Microsoft-signed:\n{signatures}"
    );
    let grub_cfg = esp_file(&image.path, "EFI/debian/grub.cfg", dir.path());
    let grub_cfg = std::fs::read_to_string(grub_cfg).unwrap();
    assert!(grub_cfg.contains("linux /vmlinuz console=ttyS0 quiet panic=-1"));
    for file in ["EFI/BOOT/grubx64.efi", "vmlinuz", "initrd.img"] {
        esp_file(&image.path, file, dir.path());
    }
}

#[test]
fn a_cached_image_is_not_rebuilt() {
    let first = ensure("tiny");
    let modified = first.path.metadata().unwrap().modified().unwrap();
    let started = Instant::now();
    let mut steps = Vec::new();
    let again = images::build("tiny", false, &mut |l| steps.push(l.to_string())).unwrap();
    assert!(steps.is_empty(), "rebuilt: {steps:?}");
    assert_eq!(again.path, first.path);
    assert_eq!(again.path.metadata().unwrap().modified().unwrap(), modified);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[test]
fn known_names_are_listed_and_others_refused() {
    assert_eq!(
        images::known(),
        [
            "tiny",
            "tiny-iso",
            "tiny-sb",
            "installed",
            "installed-tpm",
            "installed-sb",
            "installed-selinux",
            "installed-first-login",
            "installed-grub",
            "installed-laptop",
            "installed-broken-sysctl",
            "installed-broken-home",
            "installed-broken-sddm",
            "installed-broken-cmdline",
            "installed-broken-skel",
            "installed-broken-grub",
            "installed-broken-modules",
            "installer"
        ]
    );
    assert!(images::ensure("reference:nope").is_err());
}

/// `installed-grub`: grub and the older kernel on the ESP (its /boot), the first
/// grub.cfg booting that kernel with every hardening argument, and beside the image a
/// newer kernel's package, of another ABI, which the recipe names.
#[test]
fn installed_grub_boots_grub_from_its_esp_and_carries_a_newer_kernel_beside_it() {
    inspection_tools();
    let built = ensure("installed-grub");
    let dir = built.path.parent().unwrap();
    let recipe = std::fs::read_to_string(dir.join("recipe.txt")).unwrap();
    let field = |name: &str| {
        let line =
            recipe.lines().find_map(|l| l.strip_prefix(name)).unwrap_or_else(|| panic!("{name} in recipe"));
        let (package, version) = line.trim().split_once(' ').unwrap();
        (package.to_string(), version.to_string())
    };
    let (old, old_version) = field("kernel-package ");
    let (new, new_version) = field("upgrade-kernel-package ");
    assert_ne!(old, new, "two kernel ABIs");
    let newer = Command::new("dpkg").args(["--compare-versions", &new_version, "gt", &old_version]).status();
    assert!(newer.unwrap().success(), "{new} {new_version} is newer than {old} {old_version}");
    let upgrade: Vec<String> = std::fs::read_dir(dir.join("upgrade"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(upgrade, [format!("{new}_{new_version}_amd64.deb")]);

    let abi = old.strip_prefix("linux-image-").unwrap();
    let listing = run(Command::new("mdir").env("MTOOLS_SKIP_CHECK", "1").args([
        "-b",
        "-s",
        "-i",
        &esp_of(&built.path),
        "::/",
    ]));
    for file in ["EFI/BOOT/BOOTX64.EFI", "grub/x86_64-efi/normal.mod", "grub/grub.cfg"]
        .map(String::from)
        .into_iter()
        .chain([format!("vmlinuz-{abi}"), format!("initrd.img-{abi}")])
    {
        assert!(
            listing.lines().any(|l| l.trim_end_matches('/').ends_with(&format!("::/{file}"))),
            "{file}:\n{listing}"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let cfg = std::fs::read_to_string(esp_file(&built.path, "grub/grub.cfg", tmp.path())).unwrap();
    let linux = cfg.lines().find(|l| l.trim_start().starts_with("linux ")).expect("a linux line");
    assert!(linux.contains(&format!("/vmlinuz-{abi} ")), "{linux}");
    for arg in images::installed::HARDENING_CMDLINE.split_whitespace() {
        assert!(linux.split_whitespace().any(|a| a == arg), "{arg} in {linux}");
    }
}
