//! `reference:installer`: Debian's own installer (d-i), unattended. A hybrid UEFI ISO
//! made by `grub-mkrescue` from the text netboot installer's `linux` and
//! `initrd.gz` (package `debian-installer-12-netboot-amd64`, untouched) and a second
//! initrd of ours, `bootproof-modules.cpio.gz`, which grub loads after Debian's, so
//! the kernel sees one initramfs with our files laid over d-i's.
//!
//! The boot entry ([`cmdline`]) asks for an unattended install whose answers come
//! from `http://10.0.2.100/d-i/preseed.cfg`: bootproof's server
//! ([`crate::installer::serve`]) behind QEMU's `guestfwd`, with the preseed rendered
//! per run ([`crate::installer::preseed`]). The text frontend on `ttyS0` gives a
//! line-by-line console a scenario can wait on.
//!
//! **Added modules.** The capture channels need `virtio_console` (already in d-i's
//! initrd) and 9p over virtio or TCP (`9p`, `9pnet`, `9pnet_virtio`, `9pnet_fd`,
//! `netfs`, `fscache`), which no udeb of the installer carries: no
//! `*-modules-<abi>-di` package has them. They come from `linux-image-<abi>` of the
//! same Debian version as the netboot kernel (checked against its boot header), with
//! their dependencies from that package's `modules.dep`, and go into the second
//! initrd together with a `modules.dep(.bin)` that depmod computed over d-i's modules
//! plus them, so `modprobe 9p` works from `preseed/early_command` on — before the
//! network and anna, which is when log capture has to start. (anna fetching them as
//! udebs would be later, and there is no such udeb to fetch.)
//!
//! **Added trust.** The mirror's Release is signed with bootproof's own key
//! ([`super::mirror::signing_key`]). The second initrd carries d-i's
//! `/usr/share/keyrings/archive.gpg` as Debian's archive keyring plus that key
//! (net-retriever and debootstrap verify against it; d-i would otherwise link it to
//! Debian's keyring alone), the key itself, and a base-installer hook
//! (`overlay/d-i/usr/lib/base-installer.d/05bootproof-mirror-key`) that puts it in
//! the target's `/etc/apt/trusted.gpg.d/` before base-installer's `apt-get update`.
//!
//! Must not: change Debian's kernel or initrd, or put an answer (let alone a secret)
//! into the ISO: everything run-specific comes over HTTP.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::ImageError;
use super::build::Build;
use super::debs::{self, Deb};
use super::media::tools;
use super::mirror::{self, SigningKey};
use super::modules::{self, ModulesDep};
use super::netboot::{self, Facts};
use crate::host::setup::Requirement;

pub const NAME: &str = "installer";
pub const FILE_NAME: &str = "installer.iso";
/// Bump when the steps change in a way the fingerprint does not show.
pub const VERSION: u32 = 2;

/// Where the guest reaches bootproof's HTTP server (`guestfwd`).
pub const SERVER_ADDRESS: &str = "10.0.2.100";

/// Modules the installer's initramfs must be able to load, by name; dependencies
/// follow from `modules.dep`. `9pnet_fd` is 9p's TCP and fd transport (a module of
/// its own since 5.17).
pub const GUEST_MODULES: &[&str] = &["virtio_console", "9pnet_virtio", "9pnet_fd", "9p"];

/// The base-installer hook that trusts the mirror's key in the target.
pub const KEY_HOOK: (&str, &str) = (
    "usr/lib/base-installer.d/05bootproof-mirror-key",
    include_str!("../../overlay/d-i/usr/lib/base-installer.d/05bootproof-mirror-key"),
);
/// Where the installer finds the mirror's key and the keyring it verifies with.
pub const KEY_FILE: &str = "usr/share/keyrings/bootproof-mirror.gpg";
pub const INSTALLER_KEYRING: &str = "usr/share/keyrings/archive.gpg";
const DEBIAN_KEYRING: &str = "usr/share/keyrings/debian-archive-keyring.gpg";

/// Paths inside the ISO.
pub const ISO_KERNEL: &str = "install.amd/vmlinuz";
pub const ISO_INITRD: &str = "install.amd/initrd.gz";
pub const ISO_MODULES: &str = "install.amd/bootproof-modules.cpio.gz";

/// The installer's kernel command line. `auto=true priority=critical` defers the
/// locale and network questions until the preseed is loaded and asks nothing the
/// preseed answers; locale, keymap and hostname are also given here because netcfg
/// and localechooser ask before the file arrives. So are the name servers: QEMU's
/// DHCP under `restrict=on` offers none, and netcfg then stops to ask (measured);
/// 127.0.0.1 refuses at once, where a silent address would make every lookup wait
/// for its timeout. Nor does it offer a router, and netcfg asks whether to go on
/// without one (`no_default_route`): the server is on the guest's own subnet.
/// `ipv6.disable=1`: netcfg otherwise spends about 10 s on IPv6
/// autoconfiguration that QEMU's user network never answers. `DEBIAN_FRONTEND=text`
/// and `TERM=dumb`: plain lines on the serial console, without newt's drawn screens
/// or the GNU screen session d-i starts on serial consoles (rootskel's S70menu skips
/// it for a dumb terminal). Nothing after `---`: the installed kernel's options come
/// from the preseed (`add-kernel-opts`).
pub fn cmdline() -> String {
    format!(
        "auto=true priority=critical url=http://{SERVER_ADDRESS}{} \
         locale=en_US.UTF-8 keymap=us hostname=bootproof-installed domain= \
         interface=auto netcfg/get_nameservers=127.0.0.1 netcfg/no_default_route=true ipv6.disable=1 \
         DEBIAN_FRONTEND=text TERM=dumb console=ttyS0,115200n8 ---",
        crate::installer::preseed::URL_PATH
    )
}

/// grub.cfg: no menu wait, grub's own messages on the serial console too.
pub fn grub_cfg() -> String {
    format!(
        "set timeout=0\n\
         serial --unit=0 --speed=115200\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         menuentry 'Debian installer, unattended (bootproof)' {{\n\
         \x20 linux /{ISO_KERNEL} {}\n\
         \x20 initrd /{ISO_INITRD} /{ISO_MODULES}\n\
         }}\n",
        cmdline()
    )
}

/// Host tools the build runs.
pub fn requirements() -> Vec<Requirement> {
    vec![
        Requirement::command("dpkg-deb", "dpkg", "dpkg", "unpacking Debian packages"),
        Requirement::command("depmod", "kmod", "kmod", "kernel module dependencies"),
        Requirement::command("gzip", "gzip", "gzip", "compressing the added initrd"),
        tools::CPIO,
        tools::GRUB_MKRESCUE,
        tools::GRUB_EFI_MODULES,
        tools::MFORMAT,
        tools::XORRISO,
    ]
}

/// What the ISO is built from, resolved now.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub facts: Facts,
    /// `linux-image-<release>` at the netboot kernel's version.
    pub linux_image: Deb,
    /// The key the mirror is signed with, which the installer trusts.
    pub key: SigningKey,
}

/// Resolves the netboot package and the kernel package matching its kernel.
pub fn resolve(progress: &mut dyn FnMut(&str)) -> Result<Resolved, ImageError> {
    let deb = netboot::resolve(NAME)?;
    let facts = netboot::facts(NAME, &deb, progress)?;
    let spec = format!("linux-image-{}={}", facts.kernel_release, facts.kernel_version);
    let stanzas = debs::apt_show(NAME, &[&spec]).map_err(|e| ImageError::Resolve {
        image: NAME.into(),
        message: format!(
            "the modules added to the installer must come from {spec}, the package of its \
             kernel, and apt cannot find it: {e}"
        ),
    })?;
    let linux_image = stanzas.first().and_then(|s| debs::deb_of(s)).ok_or_else(|| ImageError::Resolve {
        image: NAME.into(),
        message: format!("apt-cache show printed no file for {spec}"),
    })?;
    Ok(Resolved { facts, linux_image, key: mirror::signing_key()? })
}

/// Everything that decides the ISO, as text.
pub fn fingerprint(r: &Resolved) -> String {
    format!(
        "version={VERSION}\nnetboot={} {} {}\nlinux_image={} {} {}\nmodules={}\nmirror_key={}\nhook:\n{}\ngrub.cfg:\n{}\nsecrets={:?}",
        r.facts.deb.package,
        r.facts.deb.version,
        r.facts.deb.sha256,
        r.linux_image.package,
        r.linux_image.version,
        r.linux_image.sha256,
        GUEST_MODULES.join(" "),
        r.key.fingerprint,
        KEY_HOOK.1,
        grub_cfg(),
        // The build writes these beside the ISO: a new value must not meet a stale file.
        super::installed::SECRET_FILES
    )
}

pub fn hash(r: &Resolved) -> String {
    hex::encode(Sha256::digest(fingerprint(r).as_bytes()))[..16].to_string()
}

/// The steps after host tools: download, unpack, add modules, write the ISO.
pub const STEPS: usize = 5;

/// Builds the ISO in the build directory and returns its path.
pub fn build(b: &mut Build, r: &Resolved) -> Result<PathBuf, ImageError> {
    b.step("downloading packages");
    let files = debs::fetch(
        b,
        &[r.facts.deb.clone(), r.linux_image.clone()],
        &crate::cache::cache_dir().join("debs"),
    )?;
    let work = b.dir().join("work");
    b.step("unpacking Debian's netboot installer");
    let netboot = netboot::unpack(b, &files[0], &work.join("netboot"))?;
    b.step("adding kernel modules and the mirror's key to the installer's initramfs");
    let extra = modules_initrd(b, r, &netboot.initrd, &files[1], &work)?;
    b.step("writing the ISO");
    let root = work.join("iso-root");
    for (src, dest) in [(&netboot.kernel, ISO_KERNEL), (&netboot.initrd, ISO_INITRD), (&extra, ISO_MODULES)] {
        let to = root.join(dest);
        b.create_dir(to.parent().expect("ISO paths have a directory"))?;
        b.io(&to, std::fs::copy(src, &to))?;
    }
    b.create_dir(&root.join("boot/grub"))?;
    b.write(&root.join("boot/grub/grub.cfg"), grub_cfg())?;
    let iso = b.dir().join(FILE_NAME);
    // Only the x86_64-efi platform: UEFI is what bootproof's profiles boot.
    b.run(Command::new("grub-mkrescue").arg("-o").arg(&iso).arg(&root).args([
        "--",
        "-volid",
        "BOOTPROOF_DI",
    ]))?;
    b.write(&b.dir().join("recipe.txt"), fingerprint(r))?;
    b.io(&work, std::fs::remove_dir_all(&work))?;
    Ok(iso)
}

/// The second initrd: the added modules and the module index over all of them.
fn modules_initrd(
    b: &mut Build,
    r: &Resolved,
    initrd: &Path,
    linux_image: &Path,
    work: &Path,
) -> Result<PathBuf, ImageError> {
    let release = &r.facts.kernel_release;
    let moddir = format!("lib/modules/{release}");
    let kernel_tree = work.join("linux-image");
    // The package ships no modules.dep (its postinst runs depmod): unpack its modules
    // and run depmod here, so the dependencies are the kernel's own.
    extract(b, linux_image, &kernel_tree, &["--wildcards".to_string(), "./lib/modules/*".to_string()])?;
    b.run(Command::new("depmod").arg("-b").arg(&kernel_tree).arg(release))?;
    let read = |b: &Build, name: &str| {
        let p = kernel_tree.join(&moddir).join(name);
        b.io(&p, std::fs::read_to_string(&p))
    };
    let dep = ModulesDep::parse(&read(b, "modules.dep")?);
    let builtin = modules::builtin_names(&read(b, "modules.builtin")?);
    let order = dep
        .load_order(GUEST_MODULES, &builtin)
        .map_err(|e| b.content(format!("{}: {e}", r.linux_image.package)))?;

    let root = work.join("initrd");
    netboot::unpack_initrd(b, initrd, &root, &[])?;
    let added: Vec<&String> = order.iter().filter(|p| !root.join(&moddir).join(p).exists()).collect();
    for p in &added {
        let (src, dest) = (kernel_tree.join(&moddir).join(p), root.join(&moddir).join(p));
        b.create_dir(dest.parent().expect("modules live in directories"))?;
        b.io(&dest, std::fs::copy(&src, &dest))?;
    }
    b.run(Command::new("depmod").arg("-b").arg(&root).arg(release))?;
    let trust = add_trust(b, r, &root)?;

    let mut names: Vec<String> = Vec::new();
    let mut index_files: Vec<String> = b
        .io(&root.join(&moddir), std::fs::read_dir(root.join(&moddir)))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("modules."))
        .map(|n| format!("{moddir}/{n}"))
        .collect();
    index_files.sort();
    for file in added.iter().map(|p| format!("{moddir}/{p}")).chain(index_files).chain(trust) {
        push_with_parents(&mut names, &file);
    }
    let out = work.join("bootproof-modules.cpio.gz");
    let list: String = names.iter().map(|n| format!("{n}\n")).collect();
    // The kernel's initramfs unpacker does not create missing parents: every
    // directory comes first as its own entry.
    b.run_with_input(
        Command::new("sh")
            .args(["-c", "cpio -o -H newc --quiet --reproducible --owner=0:0 | gzip -9n > \"$1\"", "sh"])
            .arg(&out)
            .current_dir(&root),
        Some(list.as_bytes()),
    )?;
    Ok(out)
}

/// Writes the mirror's key, the keyring d-i verifies with (Debian's and ours) and
/// the hook into `root`; returns their paths in it.
fn add_trust(b: &mut Build, r: &Resolved, root: &Path) -> Result<Vec<String>, ImageError> {
    let key = b.io(&r.key.public, std::fs::read(&r.key.public))?;
    let debian = root.join(DEBIAN_KEYRING);
    let mut keyring = b.io(&debian, std::fs::read(&debian))?;
    // OpenPGP keyrings are concatenations of keys: gpgv reads both.
    keyring.extend_from_slice(&key);
    b.write(&root.join(INSTALLER_KEYRING), keyring)?;
    b.write(&root.join(KEY_FILE), &key)?;
    let hook = root.join(KEY_HOOK.0);
    b.create_dir(hook.parent().expect("the hook lives in a directory"))?;
    b.write(&hook, KEY_HOOK.1)?;
    use std::os::unix::fs::PermissionsExt;
    b.io(&hook, std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)))?;
    Ok([INSTALLER_KEYRING, KEY_FILE, KEY_HOOK.0].map(str::to_string).to_vec())
}

/// Adds `file`'s parent directories (each once, parents first) and then `file`.
fn push_with_parents(names: &mut Vec<String>, file: &str) {
    let parts: Vec<&str> = file.split('/').collect();
    for n in 1..=parts.len() {
        let path = parts[..n].join("/");
        if !names.contains(&path) {
            names.push(path);
        }
    }
}

/// Extracts `members` of a package's file system into `dest`.
fn extract(b: &mut Build, deb: &Path, dest: &Path, members: &[String]) -> Result<(), ImageError> {
    b.create_dir(dest)?;
    b.run(
        Command::new("sh")
            .args([
                "-c",
                "deb=$1; dest=$2; shift 2; dpkg-deb --fsys-tarfile \"$deb\" | tar -x -C \"$dest\" \"$@\"",
                "sh",
            ])
            .arg(deb)
            .arg(dest)
            .args(members),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_entry_installs_unattended_from_bootprooft_server() {
        let cfg = grub_cfg();
        let linux = cfg.lines().find(|l| l.trim_start().starts_with("linux ")).unwrap();
        for word in [
            "auto=true",
            "priority=critical",
            "url=http://10.0.2.100/d-i/preseed.cfg",
            "console=ttyS0,115200n8",
            "DEBIAN_FRONTEND=text",
        ] {
            assert!(linux.split_whitespace().any(|w| w == word), "{word} in {linux}");
        }
        assert!(linux.trim_end().ends_with("---"), "nothing is carried to the installed system: {linux}");
        assert!(cfg.contains(&format!("initrd /{ISO_INITRD} /{ISO_MODULES}")), "{cfg}");
        assert!(cfg.contains("set timeout=0"));
    }

    #[test]
    fn parents_come_first_and_once() {
        let mut names = Vec::new();
        push_with_parents(&mut names, "lib/modules/r/kernel/fs/9p/9p.ko");
        push_with_parents(&mut names, "lib/modules/r/modules.dep");
        assert_eq!(
            names,
            [
                "lib",
                "lib/modules",
                "lib/modules/r",
                "lib/modules/r/kernel",
                "lib/modules/r/kernel/fs",
                "lib/modules/r/kernel/fs/9p",
                "lib/modules/r/kernel/fs/9p/9p.ko",
                "lib/modules/r/modules.dep"
            ]
        );
    }
}
