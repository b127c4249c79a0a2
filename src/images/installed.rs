//! `reference:installed`: a Debian bookworm system installed the way the hardened
//! images of bootproof's users are — LUKS2 (argon2id) root holding btrfs with
//! subvolumes `root` and `home`, hardening sysctls, qemu-guest-agent, a serial console,
//! SDDM with a graphical login into a minimal X session (an xterm), booted by a UKI
//! from the ESP of a GPT disk — built from Debian's packages with `mmdebstrap`, plus
//! the files of `overlay/` (see overlay/README.md).
//!
//! `reference:installed-sb` is the same system booted the way Secure Boot allows:
//! Debian's signed shim → signed grub → the tree's Debian-signed kernel and its
//! initramfs, all on the ESP ([`media::signed_chain`]). The UKI cannot be that: its
//! stub is unsigned, so firmware with Secure Boot on refuses it.
//!
//! The build host has no device-mapper, so the root is encrypted offline
//! (`cryptsetup reencrypt --encrypt` on a plain file), and no vfat, so the ESP is
//! written with mtools. It needs root: btrfs subvolumes are made on a loop mount and
//! the initramfs is built in a chroot.
//!
//! `installed-tpm` ([`Variant::Tpm`]) is the same system whose initramfs unlocks the
//! root with a key sealed in the TPM when there is one, and asks for the passphrase
//! when there is none or the TPM cannot unseal it; the `luks-tpm-unlock` scenario
//! enrolls the key (`systemd-cryptenroll --tpm2-device=auto`) and shows both. Its
//! initramfs is built by dracut, not initramfs-tools: bookworm's cryptroot ignores
//! `tpm2-device=` for the root, and clevis-initramfs answers its askpass only after the
//! prompt is printed, so a TPM unlock there still shows a prompt. dracut's initramfs
//! runs systemd and systemd-cryptsetup, which tries the systemd-tpm2 token of the LUKS2
//! header first and falls back to a console prompt by itself (`Please enter passphrase
//! for disk root:`). Bookworm's `systemd` carries systemd-cryptsetup and
//! systemd-cryptenroll; the TPM2 libraries they load at run time are named packages
//! ([`TPM_PACKAGES`]) and listed for dracut (`installed/dracut.conf`, in place before the
//! kernel is installed, so the initramfs is built once). The kernel command line names
//! the device (`rd.luks.name=`, `rd.luks.options=`): a generic dracut initramfs has no
//! crypttab. Its initramfs is 14.5 MB against initramfs-tools' 8 MB: systemd and
//! libcrypto rather than busybox and klibc.
//!
//! `installed-selinux` ([`Variant::Selinux`]) is the same system with SELinux: Debian's
//! reference policy (`selinux-policy-default`, whose postinst builds the policy store in
//! the chroot) and auditd, the kernel switched to SELinux on the command line
//! (`security=selinux`) in permissive mode (`enforcing=0`), so it boots as
//! the others do while the kernel logs every access the policy does not allow. Its
//! files are labelled at build time, once mmdebstrap is done (`installed/label.sh`:
//! `setfiles` in the chroot; `root-fs.sh` keeps the `security.selinux` xattrs), so the
//! denials are the policy's verdicts on this system, not the flood of an unlabelled
//! file system. It exists so that
//! `no_selinux_denials` can be shown failing on denials a real kernel logged.
//!
//! `installed-grub` ([`Variant::Grub`]) is the same system booted by a grub the system
//! manages itself, for `kernel-upgrade-reboot`: grub-efi-amd64, `/etc/default/grub`
//! with the hardening arguments in `GRUB_CMDLINE_LINUX`, and the ESP mounted as /boot
//! (vfat: bookworm's grub cannot open a LUKS2 argon2id root), so the kernel packages'
//! hooks (`update-initramfs`, `zz-update-grub`) write where grub and the firmware read.
//! Its grub.cfg is the one an installer writes (`installed/grub.sh`; `grub-mkconfig`
//! cannot run in a chroot, it probes the build host's disks) until the first kernel
//! package replaces it with update-grub's. It carries the oldest kernel ABI apt knows
//! for bookworm (the point release's), and the newest one's package beside the image
//! (`upgrade/`, shared as `reference:installed-grub/upgrade`), both resolved at build
//! time ([`super::debs::kernel_abis`]).
//!
//! `installed-broken-sysctl`, `-home`, `-sddm`, `-cmdline`, `-skel` and `-grub`
//! ([`Variant::Broken`]) each lack one property (the sysctl file, the `home` subvolume,
//! SDDM enabled, the hardening kernel arguments, a populated `/etc/skel`, the hardening
//! arguments in grub's defaults: the grub drift) and nothing
//! else: `tests/broken_properties.rs` shows
//! that the matching scenario fails on it.
//!
//! The LUKS passphrase and the passwords are fixed test values of this reference
//! image, written next to it in the cache ([`SECRET_FILES`]) so a scenario names them
//! as `{ reference = "installed/luks-passphrase" }` instead of spelling them out.
//!
//! Owns: the recipe (packages, sizes, parameters, scripts, overlay) and its steps.
//! Must not: boot the image, or write anywhere but the build directory (and the loop
//! mount below it, unmounted by the script whatever happens).

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::ImageError;
use super::build::Build;
use super::debs::Resolved;
use super::media::{self, EspFor};
use crate::host::setup::Requirement;

/// Bump when the steps change in a way the fingerprint does not show.
const VERSION: u32 = 2;

/// The images this recipe builds: the reference system and its variants. Each is its
/// own cached image (`reference:<name>`) with the same secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `installed`: unlocked by passphrase at the console, booted by a UKI.
    Plain,
    /// `installed-tpm`: the same system whose initramfs (dracut, systemd-cryptsetup)
    /// unlocks the root with a key sealed in the TPM when the LUKS header has a
    /// systemd-tpm2 token the TPM can unseal, and else asks for the passphrase. The
    /// `luks-tpm-unlock` scenario enrolls the key.
    Tpm,
    /// `installed-sb`: booted through Debian's signed shim, grub and kernel instead
    /// of the UKI, so it boots with Secure Boot on (and the kernel locks itself down).
    SecureBoot,
    /// `installed-selinux`: the same system with Debian's SELinux reference policy
    /// loaded in permissive mode, its files labelled, and auditd: it boots like
    /// `installed` and logs the accesses the policy would deny.
    Selinux,
    /// `installed-first-login`: `admin`'s password is expired (`chage -d 0`), as a
    /// release image ships it, so the first login must change it.
    FirstLogin,
    /// `installed-grub`: booted by a grub the system manages itself (`update-grub`
    /// from `/etc/default/grub`, run by the kernel packages), with an older kernel of
    /// Debian 12 installed and the newest one's package next to the image
    /// (`reference:installed-grub/upgrade`), for `kernel-upgrade-reboot`.
    Grub,
    /// `installed-laptop`: a NIC configured by systemd-networkd and the sleep hooks
    /// of a laptop (the NIC's driver unloaded across S3, bootproof's share unmounted),
    /// for `suspend-resume`.
    Laptop,
    /// `installed-broken-<property>`: one property broken on purpose, so a test can
    /// show that the matching scenario, and only it, fails.
    Broken(Broken),
}

/// The property a broken variant lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// The hardening sysctl file is missing.
    Sysctl,
    /// `/home` is a plain directory in the `root` subvolume, not subvolume `home`.
    Home,
    /// SDDM is installed but not enabled.
    Sddm,
    /// The kernel command line lacks the hardening arguments.
    Cmdline,
    /// `/etc/skel` is empty (the `admin` user made before still has its files).
    Skel,
    /// `installed-grub` whose `/etc/default/grub` lacks the hardening arguments that
    /// its first grub.cfg (the installer's) has: the first kernel upgrade drops them.
    Grub,
    /// `installed-laptop` with `kernel.modules_disabled = 1`: the sleep hook cannot
    /// unload the NIC's driver, so the NIC it unbound is gone after resume.
    Modules,
}

impl Broken {
    /// What configure.sh and root-fs.sh receive as `BOOTPROOF_BREAK`.
    pub fn as_str(self) -> &'static str {
        match self {
            Broken::Sysctl => "sysctl",
            Broken::Home => "home",
            Broken::Sddm => "sddm",
            Broken::Cmdline => "cmdline",
            Broken::Skel => "skel",
            Broken::Grub => "grub",
            Broken::Modules => "modules",
        }
    }
}

impl Variant {
    pub const ALL: [Variant; 14] = [
        Variant::Plain,
        Variant::Tpm,
        Variant::SecureBoot,
        Variant::Selinux,
        Variant::FirstLogin,
        Variant::Grub,
        Variant::Laptop,
        Variant::Broken(Broken::Sysctl),
        Variant::Broken(Broken::Home),
        Variant::Broken(Broken::Sddm),
        Variant::Broken(Broken::Cmdline),
        Variant::Broken(Broken::Skel),
        Variant::Broken(Broken::Grub),
        Variant::Broken(Broken::Modules),
    ];

    /// The image name (`installed`, `installed-tpm`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Variant::Plain => "installed",
            Variant::Tpm => "installed-tpm",
            Variant::SecureBoot => "installed-sb",
            Variant::Selinux => "installed-selinux",
            Variant::FirstLogin => "installed-first-login",
            Variant::Grub => "installed-grub",
            Variant::Laptop => "installed-laptop",
            Variant::Broken(Broken::Sysctl) => "installed-broken-sysctl",
            Variant::Broken(Broken::Home) => "installed-broken-home",
            Variant::Broken(Broken::Sddm) => "installed-broken-sddm",
            Variant::Broken(Broken::Cmdline) => "installed-broken-cmdline",
            Variant::Broken(Broken::Skel) => "installed-broken-skel",
            Variant::Broken(Broken::Grub) => "installed-broken-grub",
            Variant::Broken(Broken::Modules) => "installed-broken-modules",
        }
    }

    /// The variant called `name` (without `reference:`).
    pub fn named(name: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == name)
    }

    fn broken(self) -> &'static str {
        match self {
            Variant::Broken(b) => b.as_str(),
            _ => "",
        }
    }

    /// The packages named to apt: [`PACKAGES`] and the variant's own. The TPM variant
    /// builds its initramfs with dracut, which conflicts with initramfs-tools, so it
    /// leaves out [`INITRAMFS_TOOLS_PACKAGES`].
    pub fn packages(self) -> Vec<&'static str> {
        let mut packages = PACKAGES.to_vec();
        if self == Variant::Tpm {
            packages.retain(|p| !INITRAMFS_TOOLS_PACKAGES.contains(p));
        }
        packages.extend_from_slice(match self {
            Variant::Tpm => TPM_PACKAGES,
            Variant::SecureBoot => SECURE_BOOT_PACKAGES,
            Variant::Selinux => SELINUX_PACKAGES,
            _ if self.grub() => GRUB_PACKAGES,
            _ => &[],
        });
        packages
    }

    /// A laptop's NIC and sleep hooks (`installed-laptop` and its broken twin).
    pub fn laptop(self) -> bool {
        matches!(self, Variant::Laptop | Variant::Broken(Broken::Modules))
    }

    /// Booted by the grub the system manages (`installed-grub` and its broken twin).
    pub fn grub(self) -> bool {
        matches!(self, Variant::Grub | Variant::Broken(Broken::Grub))
    }

    /// `GRUB_CMDLINE_LINUX` of `/etc/default/grub`, which `update-grub` puts on every
    /// kernel's line (grub variants only): the hardening arguments, which the broken
    /// twin's lacks although its first grub.cfg has them.
    pub fn grub_defaults_cmdline(self) -> &'static str {
        match self {
            Variant::Broken(Broken::Grub) => "console=ttyS0",
            _ => GRUB_CMDLINE_LINUX,
        }
    }

    /// The btrfs file system's size: a grub variant holds a second kernel's 400 MB
    /// of modules after the upgrade.
    fn root_fs_mib(self) -> u64 {
        if self.grub() { GRUB_ROOT_FS_MIB } else { ROOT_FS_MIB }
    }

    /// The kernel command line. The TPM variant's initramfs is systemd's: it learns
    /// which device to unlock, under which name and how from `rd.luks.*`. The SELinux
    /// variant's kernel runs SELinux instead of Debian's default AppArmor.
    pub fn cmdline(self) -> String {
        match self {
            Variant::Tpm => {
                format!("{CMDLINE} rd.luks.name={LUKS_UUID}=root rd.luks.options={TPM_LUKS_OPTIONS}")
            }
            Variant::Selinux => format!("{CMDLINE} {SELINUX_CMDLINE}"),
            // Its lockdown comes from Secure Boot, which `secure-boot` proves.
            Variant::SecureBoot => format!("{BASE_CMDLINE} {}", hardening_without_lockdown()),
            Variant::Broken(Broken::Cmdline) => BASE_CMDLINE.to_string(),
            _ => CMDLINE.to_string(),
        }
    }

    /// dracut's configuration, for the variant whose initramfs dracut builds.
    fn dracut_conf(self) -> Option<&'static str> {
        (self == Variant::Tpm).then_some(DRACUT_CONF)
    }

    /// How many progress steps a build prints: the signed chain needs no UKI, and only
    /// the SELinux variant is labelled.
    pub fn steps(self) -> usize {
        match self {
            Variant::SecureBoot => 6,
            _ if self.grub() => 7,
            Variant::Selinux => 8,
            _ => 7,
        }
    }
}

/// The part of [`PACKAGES`] that builds the Debian initramfs with the cryptroot
/// passphrase prompt.
pub const INITRAMFS_TOOLS_PACKAGES: &[&str] = &["initramfs-tools", "cryptsetup-initramfs"];

/// The TPM variant's additions to [`PACKAGES`]: dracut, the TPM2 libraries that
/// systemd-cryptsetup and systemd-cryptenroll (both in bookworm's `systemd`) load at
/// run time, which systemd only suggests, and tpm2-tools for `tpm2_clear`.
pub const TPM_PACKAGES: &[&str] =
    &["dracut", "libtss2-esys-3.0.2-0", "libtss2-rc0", "libtss2-mu0", "libtss2-tcti-device0", "tpm2-tools"];

/// systemd-cryptsetup's options for the root in the TPM variant: try a TPM2 token
/// enrolled in the LUKS header first; without one, or when the TPM cannot unseal it,
/// ask for the passphrase.
pub const TPM_LUKS_OPTIONS: &str = "tpm2-device=auto,discard";

/// The Secure Boot variant's additions to [`PACKAGES`]: the signed boot files the
/// ESP takes from the tree (shim-signed also brings mokutil, which reads the Secure
/// Boot state in the guest). Their maintainer scripts leave the ESP to the build:
/// shim-signed's runs grub-install only on an EFI host with `/boot/efi/EFI/debian`.
pub const SECURE_BOOT_PACKAGES: &[&str] =
    &["shim-signed", "shim-helpers-amd64-signed", "grub-efi-amd64-signed"];

/// The grub variants' additions to [`PACKAGES`]: grub for EFI (unsigned; its
/// maintainer scripts install nothing on the ESP at build time and `update-grub` runs
/// only once `/boot/grub/grub.cfg` exists), whose `zz-update-grub` kernel hook
/// rewrites grub.cfg whenever a kernel package is installed or removed.
pub const GRUB_PACKAGES: &[&str] = &["grub-efi-amd64"];

/// What `/etc/default/grub` of `installed-grub` puts on every kernel's line, after
/// the `root=`, `ro` and `rootflags=` grub-mkconfig writes itself.
pub const GRUB_CMDLINE_LINUX: &str = concat!(
    "console=ttyS0 lockdown=integrity slab_nomerge init_on_alloc=1 init_on_free=1 ",
    "randomize_kstack_offset=on vsyscall=none fbcon=nodefer"
);

/// The SELinux variant's additions to [`PACKAGES`]: Debian's reference policy (its
/// postinst builds and installs the policy store; `/etc/selinux/config` says
/// `SELINUX=permissive`, `SELINUXTYPE=default`), policycoreutils for `setfiles` at
/// build time and `sestatus` in the guest, and auditd, so denials land in
/// `/var/log/audit/audit.log` as on the Fedora-like images this system stands for.
pub const SELINUX_PACKAGES: &[&str] = &["selinux-policy-default", "policycoreutils", "auditd"];

/// SELinux as the kernel's major LSM (Debian's kernel defaults to AppArmor), in
/// permissive mode: every access the policy does not allow is logged and allowed, so
/// the system boots and the denials are there to read. No `selinux=1`: Debian's kernel
/// has no such parameter (it says `Unknown kernel command line parameters "selinux=1",
/// will be passed to user space`), and `security=` alone enables SELinux.
pub const SELINUX_CMDLINE: &str = "security=selinux enforcing=0";

/// The kernel metapackage; its pinned kernel version is part of the cache key.
pub const KERNEL: &str = "linux-image-amd64";

/// Installed on top of mmdebstrap's `minbase` (no recommends). The versions apt
/// resolves for these names now are in the cache key; their dependencies are not.
pub const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "initramfs-tools",
    "cryptsetup",
    "cryptsetup-initramfs",
    "btrfs-progs",
    "qemu-guest-agent",
    "procps",
    "util-linux",
    "kmod",
    "passwd",
    // initramfs-tools compresses with zstd by default and falls back noisily without.
    "zstd",
    // The graphical login: SDDM (its embedded greeter theme: no theme package comes
    // without recommends) on Xorg. Naming the fbdev and libinput drivers keeps apt
    // from pulling xserver-xorg-video-all and -input-all; Xorg itself picks the
    // modesetting driver of xserver-xorg-core on the VGA device.
    "sddm",
    "xserver-xorg",
    "xserver-xorg-core",
    "xserver-xorg-video-fbdev",
    "xserver-xorg-input-libinput",
    "xterm",
    "fonts-dejavu-core",
    "libpam-systemd",
];

/// No `quiet`: the console log then holds the kernel's and systemd's account of the
/// boot, which is what `inspect` and `no_kernel_oops` read.
pub const BASE_CMDLINE: &str = "root=/dev/mapper/root rootflags=subvol=/root ro console=ttyS0";

/// The first users' hardening kernel arguments (their release checklist), which
/// `kernel-cmdline-hardening` checks.
pub const HARDENING_CMDLINE: &str = "lockdown=integrity slab_nomerge init_on_alloc=1 init_on_free=1 \
                                     randomize_kstack_offset=on vsyscall=none fbcon=nodefer";

/// Every variant's command line but the Secure Boot one's ([`Variant::cmdline`]).
pub const CMDLINE: &str = concat!(
    "root=/dev/mapper/root rootflags=subvol=/root ro console=ttyS0 ",
    "lockdown=integrity slab_nomerge init_on_alloc=1 init_on_free=1 ",
    "randomize_kstack_offset=on vsyscall=none fbcon=nodefer"
);

fn hardening_without_lockdown() -> String {
    HARDENING_CMDLINE.split_whitespace().filter(|a| !a.starts_with("lockdown=")).collect::<Vec<_>>().join(" ")
}

/// Chosen here so crypttab can name the LUKS device before it exists.
pub const LUKS_UUID: &str = "2b1f6a5e-0c1d-4c7b-9d3a-6f0e5b2a7c41";
/// Argon2id costs low enough for TCG (about 1–2 s to unlock): 32 MiB, 4 iterations,
/// one thread.
const LUKS_PBKDF_MEMORY_KIB: u32 = 32 * 1024;
const LUKS_PBKDF_ITERATIONS: u32 = 4;
/// Room `reencrypt --encrypt` takes from the end of the file for the LUKS2 header.
const LUKS_HEADER_MIB: u64 = 32;
/// The btrfs file system: the system uses about 250 MiB of it without the graphical
/// login, about 480 MiB with it.
const ROOT_FS_MIB: u64 = 768;
/// The grub variants' btrfs: room for the upgrade's second kernel (modules unpack to
/// 400 MB; zstd makes about 160 MB of them).
const GRUB_ROOT_FS_MIB: u64 = 1280;
/// The grub variants' ESP, which is also their `/boot`: grub, its modules and two
/// kernels with their initramfs and System.map, with room to spare.
const GRUB_ESP_MIB: u64 = 128;

/// The test secrets, as `(file in the image's cache directory, value)`. No value may
/// be text the system prints anyway: the root password was once `bootproof-root`, the
/// btrfs label every boot's console shows, so that line carried the secret unredacted.
pub const SECRET_FILES: &[(&str, &str)] = &[
    ("luks-passphrase", "bootproof-luks"),
    ("root-password", "bootproof-rootpw"),
    ("admin-password", "bootproof-admin"),
];

const CONFIGURE: &str = include_str!("installed/configure.sh");
const ROOT_FS: &str = include_str!("installed/root-fs.sh");
const DRACUT_CONF: &str = include_str!("installed/dracut.conf");
const LABEL: &str = include_str!("installed/label.sh");
/// The grub variants' own customize hook; in their recipe hash only, so the other
/// variants' images stay cached when it changes.
const GRUB: &str = include_str!("installed/grub.sh");
/// The laptop variants' own customize hook, likewise in their recipe hash only.
const LAPTOP: &str = include_str!("installed/laptop.sh");

/// `overlay/`: `(path in the guest, contents)`, copied over the tree before it is
/// configured.
pub const OVERLAY: &[(&str, &str)] = &[
    (
        "etc/sysctl.d/99-zz-bootproof-hardening.conf",
        include_str!("../../overlay/etc/sysctl.d/99-zz-bootproof-hardening.conf"),
    ),
    ("etc/modules-load.d/bootproof.conf", include_str!("../../overlay/etc/modules-load.d/bootproof.conf")),
    (
        "etc/systemd/system/mnt-bootproof.mount",
        include_str!("../../overlay/etc/systemd/system/mnt-bootproof.mount"),
    ),
    (
        "etc/systemd/system/bootproof-journal-export.service",
        include_str!("../../overlay/etc/systemd/system/bootproof-journal-export.service"),
    ),
    ("etc/sddm.conf.d/10-bootproof.conf", include_str!("../../overlay/etc/sddm.conf.d/10-bootproof.conf")),
    ("etc/default/bootproof-greeter-env", include_str!("../../overlay/etc/default/bootproof-greeter-env")),
    ("etc/skel/.config/kdeglobals", include_str!("../../overlay/etc/skel/.config/kdeglobals")),
    ("usr/local/bin/bootproof-session", include_str!("../../overlay/usr/local/bin/bootproof-session")),
    (
        "usr/share/xsessions/bootproof-xterm.desktop",
        include_str!("../../overlay/usr/share/xsessions/bootproof-xterm.desktop"),
    ),
];

pub const FILE_NAME: &str = "installed.raw";

/// `installed-first-login`'s own customize hook: `admin`'s password expires at once.
const FIRST_LOGIN_HOOK: &str = "chroot \"$1\" chage --lastday 0 admin";

/// The recipe's parts that decide the output; the overlay and scripts are passed in
/// so a test can show that changing them changes the key.
pub struct Recipe<'a> {
    pub overlay: &'a [(&'a str, &'a str)],
    pub scripts: &'a [(&'a str, &'a str)],
}

pub const RECIPE: Recipe<'static> = Recipe {
    overlay: OVERLAY,
    scripts: &[
        ("configure.sh", CONFIGURE),
        ("root-fs.sh", ROOT_FS),
        ("dracut.conf", DRACUT_CONF),
        ("label.sh", LABEL),
    ],
};

impl Recipe<'_> {
    /// Everything that determines the output, as text: hashed for the cache key and
    /// kept next to the image as `recipe.txt`. Not covered: versions of packages
    /// pulled in as dependencies, the host's mmdebstrap, btrfs-progs and cryptsetup.
    pub fn fingerprint(&self, variant: Variant, resolved: &Resolved) -> String {
        let (name, cmdline, broken) = (variant.name(), variant.cmdline(), variant.broken());
        let mut text = format!(
            "recipe-version {VERSION}\nname {name}\nbroken {broken}\ncmdline {cmdline}\nluks-uuid {LUKS_UUID}\n\
             luks-pbkdf argon2id {LUKS_PBKDF_MEMORY_KIB} KiB {LUKS_PBKDF_ITERATIONS} iterations\n\
             root-fs {} MiB\n",
            variant.root_fs_mib()
        );
        let (kernel, kernel_version) = &resolved.kernel;
        text += &format!("kernel-package {kernel} {kernel_version}\n");
        if let Some((package, version)) = &resolved.upgrade {
            text += &format!("upgrade-kernel-package {package} {version}\n");
        }
        if variant.grub() {
            text +=
                &format!("grub-esp {GRUB_ESP_MIB} MiB\ngrub-defaults {}\n", variant.grub_defaults_cmdline());
        }
        for deb in &resolved.debs {
            text += &format!("deb {} {} {}\n", deb.package, deb.version, deb.sha256);
        }
        for (file, value) in SECRET_FILES {
            text += &format!("secret {file} {value}\n");
        }
        if variant == Variant::SecureBoot {
            text += &format!("grub.cfg\n{}", media::signed_grub_cfg(&cmdline));
        }
        if variant == Variant::FirstLogin {
            text += &format!("hook {FIRST_LOGIN_HOOK}\n");
        }
        if variant.grub() {
            text += &format!("script grub.sh\n{GRUB}");
        }
        if variant.laptop() {
            text += &format!("script laptop.sh\n{LAPTOP}");
        }
        for (name, body) in self.scripts {
            text += &format!("script {name}\n{body}");
        }
        for (path, body) in self.overlay {
            text += &format!("overlay {path}\n{body}");
        }
        text
    }

    /// The cache key: the first 16 hex digits of the fingerprint's SHA-256.
    pub fn hash(&self, variant: Variant, resolved: &Resolved) -> String {
        hex::encode(Sha256::digest(self.fingerprint(variant, resolved).as_bytes()))[..16].to_string()
    }
}

/// Host tools the build of `variant` runs.
pub fn requirements(variant: Variant) -> Vec<Requirement> {
    let mut tools = vec![
        media::tools::MMDEBSTRAP,
        Requirement::command("unshare", "util-linux", "util-linux", "mounting only in a private namespace"),
        Requirement::command("mkfs.btrfs", "btrfs-progs", "btrfs-progs", "the root file system"),
        Requirement::command("cryptsetup", "cryptsetup-bin", "cryptsetup", "encrypting the root offline"),
        media::tools::MKFS_VFAT,
        media::tools::MCOPY,
        media::tools::SFDISK,
    ];
    if variant != Variant::SecureBoot && !variant.grub() {
        tools.extend([media::tools::OBJCOPY, media::tools::UKI_STUB]);
    }
    tools
}

/// A build mounts a loop device and chroots: say so before anything starts.
pub fn needs_root(variant: Variant, cache: &Path) -> Result<(), ImageError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        Ok(())
    } else {
        Err(ImageError::NeedsRoot { image: variant.name().to_string(), cache: cache.to_path_buf() })
    }
}

/// Runs the steps after the host check into the build directory.
pub fn build(b: &mut Build, variant: Variant, resolved: &Resolved) -> Result<PathBuf, ImageError> {
    let work = b.dir().join("work");
    let tree = work.join("tree");
    if let Some(upgrade) = &resolved.upgrade {
        b.step("fetching the kernel package the scenario upgrades to");
        let deb = super::debs::kernel_deb(variant.name(), upgrade)?;
        let cached = super::debs::fetch(b, &[deb], &crate::cache::cache_dir().join("debs"))?;
        let dir = b.dir().join(UPGRADE_DIR);
        b.create_dir(&dir)?;
        for file in cached {
            let dest = dir.join(file.file_name().expect("a package file"));
            if std::fs::hard_link(&file, &dest).is_err() {
                b.io(&dest, std::fs::copy(&file, &dest))?;
            }
        }
    }
    b.step("bootstrapping bookworm with mmdebstrap (about a minute)");
    bootstrap(b, variant, resolved, &work, &tree)?;
    if variant == Variant::Selinux {
        b.step("labelling files for SELinux (setfiles)");
        b.run(mounting("sh").arg("-c").arg(LABEL).arg("label.sh").arg(&tree))?;
    }

    // A grub variant's /boot is its ESP: the tree's /boot goes there, an empty
    // mount point stays.
    let boot = work.join("boot");
    if variant.grub() {
        b.io(&boot, std::fs::rename(tree.join("boot"), &boot))?;
        b.create_dir(&tree.join("boot"))?;
    }
    b.step("writing btrfs subvolumes root and home");
    let root_fs = work.join("root.img");
    b.run(
        mounting("sh")
            .arg("-c")
            .arg(ROOT_FS)
            .arg("root-fs.sh")
            .arg(&tree)
            .arg(&root_fs)
            .arg(variant.root_fs_mib().to_string())
            .arg(work.join("mnt"))
            .env("BOOTPROOF_BREAK", variant.broken()),
    )?;

    b.step("encrypting the root (LUKS2, argon2id)");
    encrypt(b, &root_fs, variant.root_fs_mib())?;

    let esp = work.join("esp.img");
    let esp_files = if variant.grub() {
        b.step("building ESP (grub and /boot)");
        let mib = media::esp_of_dir(b, &esp, GRUB_ESP_MIB, &boot)?;
        b.step("assembling disk image");
        let image = b.dir().join(FILE_NAME);
        media::gpt_disk_with_root(b, &esp, mib, &root_fs, &image)?;
        return finish(b, &work, image);
    } else if variant == Variant::SecureBoot {
        b.step("building ESP");
        let (kernel, initrd) = boot_files(b, &tree)?;
        media::signed_chain(b, &tree, &kernel, &initrd, &variant.cmdline(), &work)?
    } else {
        b.step("building UKI");
        let (kernel, initrd) = boot_files(b, &tree)?;
        let uki = media::uki(b, &kernel, &initrd, &variant.cmdline(), OS_RELEASE, &work)?;
        b.step("building ESP");
        vec![(uki, "EFI/BOOT/BOOTX64.EFI")]
    };
    let esp_mib = media::esp(b, &esp, EspFor::Disk, &esp_files)?;
    b.step("assembling disk image");
    let image = b.dir().join(FILE_NAME);
    media::gpt_disk_with_root(b, &esp, esp_mib, &root_fs, &image)?;
    finish(b, &work, image)
}

/// The secrets beside the image, and the work tree gone.
fn finish(b: &mut Build, work: &Path, image: PathBuf) -> Result<PathBuf, ImageError> {
    for (file, value) in SECRET_FILES {
        b.write(&b.dir().join(file), value)?;
    }
    b.io(work, super::build::remove_tree(work))?;
    Ok(image)
}

/// The directory beside a grub variant's image holding the newer kernel's package,
/// which a scenario shares with the guest as `reference:<image>/upgrade`.
pub const UPGRADE_DIR: &str = "upgrade";

const OS_RELEASE: &str = "NAME=\"bootproof installed\"\nID=bootproof-installed\n\
                          PRETTY_NAME=\"bootproof installed reference system (Debian bookworm)\"\n";

/// `program` in a private mount namespace: what it mounts (mmdebstrap's /proc, /sys
/// and /dev in the chroot, the loop-mounted btrfs) is gone with the namespace when it
/// ends, also when it is killed mid-build and never runs its own unmounts. A killed
/// build once left a read-only /sys in its tree that failed every later build.
fn mounting(program: &str) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", program]);
    cmd
}

/// mmdebstrap with the host's apt sources, the overlay and `configure.sh` as its
/// customize hook.
fn bootstrap(
    b: &mut Build,
    variant: Variant,
    resolved: &Resolved,
    work: &Path,
    tree: &Path,
) -> Result<(), ImageError> {
    let overlay = work.join("overlay");
    for (path, body) in OVERLAY {
        let dest = overlay.join(path);
        b.create_dir(dest.parent().expect("overlay paths have a directory"))?;
        b.write(&dest, body)?;
    }
    let configure = work.join("configure.sh");
    b.write(&configure, CONFIGURE)?;
    let secret = |name| SECRET_FILES.iter().find(|(f, _)| *f == name).map_or("", |(_, v)| *v);
    // A grub variant installs the older kernel it upgrades from, by exact version.
    let kernel = match variant.grub() {
        true => format!("{}={}", resolved.kernel.0, resolved.kernel.1),
        false => KERNEL.to_string(),
    };
    let mut cmd = mounting("mmdebstrap");
    cmd.args(["--variant=minbase", "--mode=root", "--format=directory"])
        .arg(format!("--include={kernel},{}", variant.packages().join(",")))
        .arg("--aptopt=APT::Install-Recommends \"false\"")
        .args(["man", "doc", "locale"].map(|d| format!("--dpkgopt=path-exclude=/usr/share/{d}/*")))
        .arg(format!("--customize-hook=sh '{}' \"$1\"", configure.display()))
        // After configure.sh made admin. A hook of its own, not a case in configure.sh,
        // whose text is in every variant's recipe hash.
        .args((variant == Variant::FirstLogin).then(|| format!("--customize-hook={FIRST_LOGIN_HOOK}")))
        .env("BOOTPROOF_OVERLAY", &overlay)
        .env("BOOTPROOF_LUKS_UUID", LUKS_UUID)
        .env("BOOTPROOF_VARIANT", variant.name())
        .env("BOOTPROOF_BREAK", variant.broken())
        .env("BOOTPROOF_ROOT_PASSWORD", secret("root-password"))
        .env("BOOTPROOF_ADMIN_PASSWORD", secret("admin-password"));
    if variant.grub() {
        let grub = work.join("grub.sh");
        b.write(&grub, GRUB)?;
        cmd.arg(format!("--customize-hook=sh '{}' \"$1\"", grub.display()))
            .env("BOOTPROOF_GRUB_CMDLINE", variant.grub_defaults_cmdline())
            .env("BOOTPROOF_BOOT_CMDLINE", variant.cmdline());
    }
    if variant.laptop() {
        let laptop = work.join("laptop.sh");
        b.write(&laptop, LAPTOP)?;
        cmd.arg(format!("--customize-hook=sh '{}' \"$1\"", laptop.display()));
    }
    if let Some(conf) = variant.dracut_conf() {
        // In place before the other packages: installing the kernel runs dracut, and
        // that one run should build this initramfs, not a generic one.
        let file = work.join("dracut.conf");
        b.write(&file, conf)?;
        cmd.arg(format!(
            "--essential-hook=mkdir -p \"$1/etc/dracut.conf.d\" && \
             cp '{}' \"$1/etc/dracut.conf.d/10-bootproof.conf\"",
            file.display()
        ));
    }
    cmd.arg("bookworm").arg(tree);
    if let Some(sources) = host_sources() {
        cmd.arg(sources);
    }
    b.run(&mut cmd)
}

/// The host's apt sources for Debian, so the guest comes from the archive (or mirror)
/// this host is configured for; without one, mmdebstrap's default (deb.debian.org
/// with updates and security).
fn host_sources() -> Option<PathBuf> {
    ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.metadata().is_ok_and(|m| m.len() > 0))
}

/// Encrypts the file system in place, in userspace: no dm-crypt needed.
fn encrypt(b: &mut Build, root_fs: &Path, root_fs_mib: u64) -> Result<(), ImageError> {
    let file = b.io(root_fs, std::fs::OpenOptions::new().write(true).open(root_fs))?;
    b.io(root_fs, file.set_len((root_fs_mib + LUKS_HEADER_MIB) << 20))?;
    drop(file);
    let passphrase = SECRET_FILES[0].1;
    b.run_with_input(
        Command::new("cryptsetup")
            .args(["reencrypt", "-q", "--encrypt", "--type", "luks2", "--uuid", LUKS_UUID])
            .args(["--cipher", "aes-xts-plain64", "--key-size", "512", "--pbkdf", "argon2id"])
            .arg(format!("--pbkdf-memory={LUKS_PBKDF_MEMORY_KIB}"))
            .arg(format!("--pbkdf-force-iterations={LUKS_PBKDF_ITERATIONS}"))
            .args(["--pbkdf-parallel=1", "--key-file=-"])
            .arg(format!("--reduce-device-size={LUKS_HEADER_MIB}M"))
            .arg(root_fs),
        Some(passphrase.as_bytes()),
    )
}

/// The kernel and the initramfs `configure.sh` rebuilt, from the tree's /boot.
fn boot_files(b: &Build, tree: &Path) -> Result<(PathBuf, PathBuf), ImageError> {
    let boot = tree.join("boot");
    let names: Vec<String> = b
        .io(&boot, std::fs::read_dir(&boot))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let kernels: Vec<&String> = names.iter().filter(|n| n.starts_with("vmlinuz-")).collect();
    let [kernel] = kernels.as_slice() else {
        return Err(b.content(format!("expected one kernel in {}, found {kernels:?}", boot.display())));
    };
    let initrd = boot.join(kernel.replacen("vmlinuz-", "initrd.img-", 1));
    if !initrd.is_file() {
        return Err(b.content(format!("{} is missing", initrd.display())));
    }
    Ok((boot.join(kernel), initrd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::debs::Deb;

    fn resolved() -> Resolved {
        Resolved {
            kernel: ("linux-image-6.1.0-56-amd64".into(), "6.1.192-2".into()),
            debs: vec![Deb {
                package: "systemd".into(),
                version: "252.39-1~deb12u1".into(),
                filename: "pool/main/s/systemd/systemd_252.39-1~deb12u1_amd64.deb".into(),
                sha256: "aa".into(),
            }],
            upgrade: None,
        }
    }

    #[test]
    fn no_test_secret_is_text_the_system_prints_anyway() {
        // The scripts, overlay and command lines name labels, users and hosts that
        // reach the console and the journal in plain text.
        let mut visible: Vec<String> =
            RECIPE.scripts.iter().chain(RECIPE.overlay).map(|(_, b)| b.to_string()).collect();
        visible.extend(Variant::ALL.iter().map(|v| v.cmdline()));
        for (file, value) in SECRET_FILES {
            let words = visible
                .iter()
                .flat_map(|t| t.split(|c: char| c.is_whitespace() || "\"'=,;:()[]{}/".contains(c)));
            assert!(!words.into_iter().any(|w| w == *value), "{file}'s value {value} appears in the recipe");
        }
    }

    #[test]
    fn the_variants_carry_the_hardening_arguments_and_secure_boot_its_own_lockdown() {
        assert_eq!(CMDLINE, format!("{BASE_CMDLINE} {HARDENING_CMDLINE}"));
        for v in Variant::ALL {
            let params = crate::logs::cmdline::parse(&v.cmdline());
            for arg in HARDENING_CMDLINE.split_whitespace() {
                let want = crate::logs::cmdline::Param::parse_expected(arg).unwrap();
                let has = params.contains(&want);
                let lacks = v == Variant::Broken(Broken::Cmdline)
                    || (v == Variant::SecureBoot && arg.starts_with("lockdown="));
                assert_eq!(has, !lacks, "{v:?} {arg}");
            }
        }
    }

    #[test]
    fn the_grub_variants_upgrade_and_only_the_broken_one_lacks_the_arguments_in_grubs_defaults() {
        for v in [Variant::Grub, Variant::Broken(Broken::Grub)] {
            assert!(v.grub());
            assert!(v.packages().contains(&"grub-efi-amd64"));
            // The first grub.cfg, the installer's, has them all.
            assert_eq!(v.cmdline(), CMDLINE);
        }
        assert!(!Variant::Plain.grub() && !Variant::Plain.packages().contains(&"grub-efi-amd64"));
        let defaults = |v: Variant| v.grub_defaults_cmdline().split_whitespace().collect::<Vec<_>>();
        for arg in HARDENING_CMDLINE.split_whitespace() {
            assert!(defaults(Variant::Grub).contains(&arg), "{arg}");
            assert!(!defaults(Variant::Broken(Broken::Grub)).contains(&arg), "{arg}");
        }
        assert!(defaults(Variant::Broken(Broken::Grub)).contains(&"console=ttyS0"));

        let mut r = resolved();
        let h = RECIPE.hash(Variant::Grub, &r);
        r.upgrade = Some(("linux-image-6.1.0-57-amd64".into(), "6.1.192-3".into()));
        assert_ne!(RECIPE.hash(Variant::Grub, &r), h, "the kernel handed in is part of the key");
        assert!(RECIPE.fingerprint(Variant::Grub, &r).contains("\nscript grub.sh\n"));
        // grub.sh is in the grub variants' keys only: changing it rebuilds nothing else.
        assert!(!RECIPE.fingerprint(Variant::Plain, &resolved()).contains("grub.sh"));
    }

    #[test]
    fn the_hash_follows_overlay_scripts_and_package_versions() {
        let h = RECIPE.hash(Variant::Plain, &resolved());
        assert_eq!(h.len(), 16);
        assert_eq!(h, RECIPE.hash(Variant::Plain, &resolved()));
        let others: std::collections::BTreeSet<String> =
            Variant::ALL.iter().map(|v| RECIPE.hash(*v, &resolved())).collect();
        assert_eq!(others.len(), Variant::ALL.len(), "every variant is its own image");

        let mut overlay = OVERLAY.to_vec();
        overlay[0].1 = "kernel.kptr_restrict = 1\n";
        assert_ne!(Recipe { overlay: &overlay, ..RECIPE }.hash(Variant::Plain, &resolved()), h);

        let scripts = [("configure.sh", "true\n"), ("root-fs.sh", ROOT_FS)];
        assert_ne!(Recipe { scripts: &scripts, ..RECIPE }.hash(Variant::Plain, &resolved()), h);

        let mut newer = resolved();
        newer.debs[0].version = "252.40-1~deb12u1".into();
        assert_ne!(RECIPE.hash(Variant::Plain, &newer), h);
        let mut kernel = resolved();
        kernel.kernel.1 = "6.1.193-1".into();
        assert_ne!(RECIPE.hash(Variant::Plain, &kernel), h);
    }

    #[test]
    fn the_tpm_variant_swaps_initramfs_tools_for_dracut_and_the_tpm2_libraries() {
        let tpm = Variant::Tpm.packages();
        for p in INITRAMFS_TOOLS_PACKAGES {
            assert!(!tpm.contains(p), "{p} conflicts with dracut");
            assert!(Variant::Plain.packages().contains(p), "{p}");
        }
        for p in ["dracut", "tpm2-tools", "libtss2-esys-3.0.2-0", "libtss2-tcti-device0", "cryptsetup"] {
            assert!(tpm.contains(&p), "{p}");
        }
        assert!(!Variant::Plain.packages().contains(&"dracut"));
        assert_eq!(Variant::Broken(Broken::Sddm).packages(), Variant::Plain.packages());
    }

    #[test]
    fn the_tpm_variant_names_the_luks_device_and_tries_the_tpm_first_on_the_cmdline() {
        assert_eq!(Variant::Plain.cmdline(), CMDLINE);
        let tpm = Variant::Tpm.cmdline();
        assert!(tpm.starts_with(CMDLINE), "{tpm}");
        assert!(tpm.contains(&format!(" rd.luks.name={LUKS_UUID}=root ")), "{tpm}");
        assert!(tpm.ends_with(" rd.luks.options=tpm2-device=auto,discard"), "{tpm}");
        assert!(CMDLINE.contains("root=/dev/mapper/root"), "the name rd.luks.name gives");
    }

    #[test]
    fn the_selinux_variant_runs_the_reference_policy_permissive_on_labelled_files() {
        assert_eq!(Variant::named("installed-selinux"), Some(Variant::Selinux));
        let packages = Variant::Selinux.packages();
        for p in ["selinux-policy-default", "policycoreutils", "auditd", "cryptsetup-initramfs"] {
            assert!(packages.contains(&p), "{p}");
        }
        assert!(!Variant::Plain.packages().contains(&"selinux-policy-default"));
        assert_eq!(Variant::Selinux.cmdline(), format!("{CMDLINE} security=selinux enforcing=0"));
        assert!(LABEL.contains("chroot \"$tree\" setfiles -m -F -e /proc "));
        assert_eq!(Variant::Selinux.steps(), Variant::Plain.steps() + 1);
        assert_eq!(ROOT_FS.matches("--xattrs-include='*'").count(), 2, "labels survive the copy");
    }

    #[test]
    fn dracut_builds_a_small_systemd_initramfs_with_what_systemd_cryptsetup_loads() {
        assert_eq!(Variant::Tpm.dracut_conf(), Some(DRACUT_CONF));
        assert_eq!(Variant::Plain.dracut_conf(), None);
        let modules = DRACUT_CONF.lines().find(|l| l.starts_with("dracutmodules=")).unwrap();
        for m in [" systemd ", " crypt ", " btrfs ", " systemd-ask-password "] {
            assert!(modules.contains(m), "{m}");
        }
        assert!(!modules.contains("kernel-modules") && !modules.contains("systemd-udevd"), "{modules}");
        for lib in [
            "libtss2-esys.so.0",
            "libtss2-sys.so.1",
            "libtss2-tcti-device.so.0",
            "libcryptsetup-token-systemd-tpm2.so",
        ] {
            assert!(DRACUT_CONF.contains(lib), "{lib}");
        }
        assert!(CONFIGURE.contains(&format!("luks,{TPM_LUKS_OPTIONS}")), "crypttab agrees with the cmdline");
    }

    #[test]
    fn the_overlay_carries_the_hardening_and_the_journal_export() {
        let file = |p: &str| OVERLAY.iter().find(|(path, _)| *path == p).map(|(_, b)| *b).unwrap();
        let sysctl = file("etc/sysctl.d/99-zz-bootproof-hardening.conf");
        for key in
            ["kernel.yama.ptrace_scope = 2", "fs.protected_fifos = 2", "net.ipv4.conf.all.rp_filter = 1"]
        {
            assert!(sysctl.contains(key), "{key}");
        }
        assert!(
            file("etc/systemd/system/bootproof-journal-export.service").contains("journalctl -b -o export")
        );
        assert!(file("etc/systemd/system/mnt-bootproof.mount").contains("What=bootproof"));
    }

    #[test]
    fn configure_enables_the_overlay_units() {
        assert!(CONFIGURE.contains("systemctl enable mnt-bootproof.mount bootproof-journal-export.service"));
    }

    #[test]
    fn sddm_is_the_display_manager_with_a_software_rendered_greeter_and_an_xterm_session() {
        assert!(CONFIGURE.contains("systemctl enable sddm.service"));
        assert!(CONFIGURE.contains("set-default graphical.target"));
        assert!(CONFIGURE.contains("envfile=/etc/default/bootproof-greeter-env"));
        let file = |p: &str| OVERLAY.iter().find(|(path, _)| *path == p).map(|(_, b)| *b).unwrap();
        assert!(file("etc/default/bootproof-greeter-env").contains("\nQT_QUICK_BACKEND=software\n"));
        assert!(
            file("usr/share/xsessions/bootproof-xterm.desktop")
                .contains("Exec=/usr/local/bin/bootproof-session")
        );
        assert!(
            file("usr/local/bin/bootproof-session").contains("logger -t bootproof-session \"session started")
        );
        assert!(PACKAGES.contains(&"sddm") && PACKAGES.contains(&"xterm"));
    }
}
