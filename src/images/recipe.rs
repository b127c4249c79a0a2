//! What a reference image is made of, as data: packages, kernel modules, `/init`, the
//! kernel command line, how it boots and on what medium. The recipe and the resolved
//! package files together are hashed into the cache key.
//!
//! Must not: run commands or touch files; the build reads a recipe, never the reverse.

use sha2::{Digest, Sha256};

use super::debs::Resolved;

/// Bump when the build steps change in a way the other fields do not show (a new
/// partition, another objcopy section), so old cache entries stop matching.
pub const RECIPE_VERSION: u32 = 1;

/// The busybox `/init` shared by every tiny image.
pub const TINY_INIT: &str = include_str!("tiny/init.sh");

/// The tiny guest's vsock agent, compiled statically into the initramfs.
pub const TINY_VSOCK_SHELL: &str = include_str!("tiny/vsock-shell.c");

/// `quiet` keeps the serial log to what the guest says; `panic=-1` reboots at once
/// instead of hanging a test until its timeout if `/init` ever dies.
pub const TINY_CMDLINE: &str = "console=ttyS0 quiet panic=-1";

/// Modules `/init` loads, named as `modinfo` names them; their dependencies come from
/// `modules.dep`. Built-in drivers (serial, TPM CRB, EFI stub) need no entry.
pub const TINY_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_console",
    "9pnet_virtio",
    "9pnet_fd",
    "9p",
    "virtio_net",
    "qemu_fw_cfg",
    "efivarfs",
    "vmw_vsock_virtio_transport",
    "button",
    "evdev",
];

/// How the firmware reaches the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// A unified kernel image (systemd-boot's stub + kernel + initramfs + cmdline) at
    /// the removable-media path. Unsigned, so Secure Boot refuses it.
    Uki,
    /// Debian's signed chain: shim (Microsoft-signed) → grub (Debian-signed) → kernel
    /// (Debian-signed), so it boots with Secure Boot on.
    SignedShim,
}

/// What the image file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    /// Raw GPT disk: ESP plus the 1 MiB `scratch` partition.
    Disk,
    /// Hybrid ISO 9660 with the ESP appended as a GPT partition and as the El Torito
    /// EFI boot image.
    Iso,
}

/// A reference image's recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    pub name: &'static str,
    pub version: u32,
    /// The metapackage that names the current kernel (`linux-image-amd64`).
    pub kernel: &'static str,
    /// Other packages whose files the image uses.
    pub packages: Vec<&'static str>,
    pub modules: Vec<&'static str>,
    pub cmdline: &'static str,
    pub init: &'static str,
    /// C source of `/bin/vsock-shell`.
    pub vsock_shell: &'static str,
    pub boot: Boot,
    pub medium: Medium,
}

impl Recipe {
    /// The recipe of reference image `name`, if there is one.
    pub fn named(name: &str) -> Option<Recipe> {
        let (boot, medium) = match name {
            "tiny" => (Boot::Uki, Medium::Disk),
            "tiny-iso" => (Boot::Uki, Medium::Iso),
            "tiny-sb" => (Boot::SignedShim, Medium::Disk),
            _ => return None,
        };
        let mut packages = vec!["busybox-static"];
        if boot == Boot::SignedShim {
            packages.extend(["shim-signed", "shim-helpers-amd64-signed", "grub-efi-amd64-signed"]);
        }
        Some(Recipe {
            name: super::known().into_iter().find(|k| *k == name)?,
            version: RECIPE_VERSION,
            kernel: "linux-image-amd64",
            packages,
            modules: TINY_MODULES.to_vec(),
            cmdline: TINY_CMDLINE,
            init: TINY_INIT,
            vsock_shell: TINY_VSOCK_SHELL,
            boot,
            medium,
        })
    }

    /// The image's file name inside its cache directory.
    pub fn file_name(&self) -> String {
        match self.medium {
            Medium::Disk => format!("{}.raw", self.name),
            Medium::Iso => "tiny.iso".to_string(),
        }
    }

    /// How many progress steps a build of this recipe prints.
    pub fn step_count(&self) -> usize {
        match self.boot {
            Boot::Uki => 7,
            Boot::SignedShim => 6,
        }
    }

    /// Everything that determines the output, as text: hashed for the cache key and
    /// kept next to the image as `recipe.txt`.
    pub fn fingerprint(&self, resolved: &Resolved) -> String {
        let mut text = format!(
            "recipe-version {}\nname {}\nboot {:?}\nmedium {:?}\ncmdline {}\nkernel {}\n",
            self.version, self.name, self.boot, self.medium, self.cmdline, self.kernel
        );
        for package in &self.packages {
            text += &format!("package {package}\n");
        }
        let (kernel, kernel_version) = &resolved.kernel;
        text += &format!("kernel-package {kernel} {kernel_version}\n");
        for deb in &resolved.debs {
            text += &format!("deb {} {} {}\n", deb.package, deb.version, deb.sha256);
        }
        for module in &self.modules {
            text += &format!("module {module}\n");
        }
        if self.boot == Boot::SignedShim {
            text += &format!("grub.cfg\n{}", self.grub_cfg());
        }
        text += &format!("init\n{}", self.init);
        text += &format!("vsock-shell.c\n{}", self.vsock_shell);
        text
    }

    /// The cache key: the first 16 hex digits of the fingerprint's SHA-256.
    pub fn hash(&self, resolved: &Resolved) -> String {
        let digest = Sha256::digest(self.fingerprint(resolved).as_bytes());
        hex::encode(digest)[..16].to_string()
    }

    /// grub.cfg for the signed chain (see [`super::media::signed_grub_cfg`]).
    pub fn grub_cfg(&self) -> String {
        super::media::signed_grub_cfg(self.cmdline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::debs::Deb;

    fn debs() -> Resolved {
        Resolved {
            kernel: ("linux-image-6.1.0-56-amd64".into(), "6.1.192-2".into()),
            debs: vec![Deb {
                package: "busybox-static".into(),
                version: "1:1.35.0-4+deb12u1+b1".into(),
                filename: "pool/main/b/busybox/busybox-static_1.35.0-4+deb12u1+b1_amd64.deb".into(),
                sha256: "aa".into(),
            }],
            upgrade: None,
        }
    }

    #[test]
    fn every_tiny_name_has_a_recipe() {
        for name in super::super::known().iter().filter(|n| n.starts_with("tiny")) {
            assert_eq!(Recipe::named(name).unwrap().name, *name);
        }
        assert!(Recipe::named("huge").is_none());
    }

    #[test]
    fn same_recipe_same_hash() {
        let r = Recipe::named("tiny").unwrap();
        assert_eq!(r.hash(&debs()), r.clone().hash(&debs()));
        assert_eq!(r.hash(&debs()).len(), 16);
    }

    #[test]
    fn any_recipe_change_changes_the_hash() {
        let base = Recipe::named("tiny").unwrap();
        let h = base.hash(&debs());
        let mut changes: Vec<Recipe> = vec![
            Recipe { version: base.version + 1, ..base.clone() },
            Recipe { init: "#!/bin/sh\npoweroff -f\n", ..base.clone() },
            Recipe { cmdline: "console=ttyS0", ..base.clone() },
            Recipe { vsock_shell: "int main(void) { return 0; }\n", ..base.clone() },
        ];
        let mut fewer = base.clone();
        fewer.modules.pop();
        changes.push(fewer);
        let mut more = base.clone();
        more.packages.push("strace");
        changes.push(more);
        for changed in changes {
            assert_ne!(changed.hash(&debs()), h, "{changed:?}");
        }
    }

    #[test]
    fn a_new_package_version_changes_the_hash() {
        let r = Recipe::named("tiny").unwrap();
        let mut newer = debs();
        newer.debs[0].version = "1:1.35.0-4+deb12u2".into();
        newer.debs[0].sha256 = "bb".into();
        assert_ne!(r.hash(&debs()), r.hash(&newer));
        let mut new_kernel = debs();
        new_kernel.kernel = ("linux-image-6.1.0-57-amd64".into(), "6.1.193-1".into());
        assert_ne!(r.hash(&debs()), r.hash(&new_kernel));
    }

    #[test]
    fn images_differ_by_name_even_with_the_same_parts() {
        let disk = Recipe::named("tiny").unwrap();
        let iso = Recipe::named("tiny-iso").unwrap();
        assert_ne!(disk.hash(&debs()), iso.hash(&debs()));
    }

    #[test]
    fn grub_boots_the_tiny_cmdline_on_serial() {
        let cfg = Recipe::named("tiny-sb").unwrap().grub_cfg();
        assert!(cfg.contains("linux /vmlinuz console=ttyS0 quiet panic=-1\n"));
        assert!(cfg.contains("terminal_output serial"));
    }

    #[test]
    fn init_prints_the_report_line() {
        assert!(TINY_INIT.starts_with("#!/bin/busybox sh\n"));
        assert!(TINY_INIT.contains("bootproof-tiny: efi=$efi secureboot=$secureboot tpm=$tpm share=$share"));
        assert!(TINY_INIT.trim_end().ends_with("poweroff -f"));
    }
}
