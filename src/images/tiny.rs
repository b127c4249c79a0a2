//! The tiny guest's build steps after the packages are downloaded: unpack them, build
//! the busybox initramfs, and put it with Debian's kernel on the recipe's boot medium.
//!
//! Must not: decide what the guest contains (the recipe does) or how media are laid
//! out (`media` does).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::ImageError;
use super::build::Build;
use super::debs;
use super::media::{self, EspFor};
use super::modules::{ModulesDep, builtin_names};
use super::recipe::{Boot, Medium, Recipe};

/// Builds the image from the downloaded `debs` into the build directory and returns
/// the image file. Intermediate files are removed on success, kept on failure.
pub fn build(b: &mut Build, r: &Recipe, debs: &[PathBuf]) -> Result<PathBuf, ImageError> {
    let work = b.dir().join("work");
    b.step("unpacking packages");
    let root = work.join("root");
    debs::unpack(b, debs, &root)?;
    let kver = kernel_version(b, &root)?;
    let kernel = root.join("boot").join(format!("vmlinuz-{kver}"));

    b.step("building initramfs");
    let initrd = initramfs(b, r, &root, &kver, &work)?;

    let image = b.dir().join(r.file_name());
    match r.boot {
        Boot::Uki => {
            b.step("building UKI");
            let uki = media::uki(b, &kernel, &initrd, r.cmdline, TINY_OS_RELEASE, &work)?;
            b.step("building ESP");
            let esp = work.join("esp.img");
            let esp_for = match r.medium {
                Medium::Disk => EspFor::Disk,
                Medium::Iso => EspFor::Iso,
            };
            let mib = media::esp(b, &esp, esp_for, &[(uki, "EFI/BOOT/BOOTX64.EFI")])?;
            match r.medium {
                Medium::Disk => {
                    b.step("assembling disk image");
                    media::gpt_disk(b, &esp, mib, &image)?;
                }
                Medium::Iso => {
                    b.step("assembling ISO");
                    media::iso(b, &esp, &work, &image)?;
                }
            }
        }
        Boot::SignedShim => {
            b.step("building ESP");
            let esp = work.join("esp.img");
            let files = media::signed_chain(b, &root, &kernel, &initrd, r.cmdline, &work)?;
            let mib = media::esp(b, &esp, EspFor::Disk, &files)?;
            b.step("assembling disk image");
            media::gpt_disk(b, &esp, mib, &image)?;
        }
    }
    b.io(&work, fs::remove_dir_all(&work))?;
    Ok(image)
}

const TINY_OS_RELEASE: &str =
    "NAME=\"bootproof tiny\"\nID=bootproof-tiny\nPRETTY_NAME=\"bootproof tiny reference guest\"\n";

/// The one kernel version the kernel package installed modules for.
fn kernel_version(b: &Build, root: &Path) -> Result<String, ImageError> {
    let dir = root.join("lib/modules");
    let versions: Vec<String> =
        b.io(&dir, fs::read_dir(&dir))?.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    match versions.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(b.content(format!("expected one kernel in {}, found {versions:?}", dir.display()))),
    }
}

/// Builds `initrd.img` (gzip'd newc cpio): busybox, `/init`, the modules in load order.
fn initramfs(b: &mut Build, r: &Recipe, root: &Path, kver: &str, work: &Path) -> Result<PathBuf, ImageError> {
    let order = module_order(b, r, root, kver)?;
    let tree = work.join("initramfs");
    for dir in ["bin", "dev", "proc", "sys", "tmp", "mnt/bootproof", "mnt/input", "etc/bootproof"] {
        b.create_dir(&tree.join(dir))?;
    }
    copy(b, &root.join("bin/busybox"), &tree.join("bin/busybox"))?;
    vsock_shell(b, r, work, &tree.join("bin/vsock-shell"))?;
    let init = tree.join("init");
    b.write(&init, r.init)?;
    b.io(&init, fs::set_permissions(&init, fs::Permissions::from_mode(0o755)))?;
    let moddir = root.join("lib/modules").join(kver);
    for ko in &order {
        copy(b, &moddir.join(ko), &tree.join("lib/modules").join(ko))?;
    }
    b.write(&tree.join("etc/bootproof/modules"), module_list(&order))?;

    let cpio = work.join("initrd.cpio");
    // -R 0:0: the guest's files belong to root even when a user builds the image.
    b.run_with_input(
        Command::new("cpio")
            .args(["-o", "-H", "newc", "-R", "0:0", "--quiet", "-O"])
            .arg(&cpio)
            .current_dir(&tree),
        Some(file_list(b, &tree)?.as_bytes()),
    )?;
    b.run(Command::new("gzip").args(["-9", "-n", "-f"]).arg(&cpio))?;
    let initrd = work.join("initrd.img");
    b.io(&initrd, fs::rename(work.join("initrd.cpio.gz"), &initrd))?;
    Ok(initrd)
}

/// Compiles the recipe's vsock agent, static and stripped (the initramfs has no libc).
fn vsock_shell(b: &mut Build, r: &Recipe, work: &Path, out: &Path) -> Result<(), ImageError> {
    let source = work.join("vsock-shell.c");
    b.write(&source, r.vsock_shell)?;
    b.run(Command::new("gcc").args(["-static", "-O2", "-s", "-Wall", "-o"]).arg(out).arg(&source))
}

/// Runs depmod on the unpacked kernel (its package ships no `modules.dep`) and orders
/// the recipe's modules with their dependencies.
fn module_order(b: &mut Build, r: &Recipe, root: &Path, kver: &str) -> Result<Vec<String>, ImageError> {
    b.run(Command::new("depmod").arg("-b").arg(root).arg(kver))?;
    let moddir = root.join("lib/modules").join(kver);
    let read = |name: &str| {
        let path = moddir.join(name);
        b.io(&path, fs::read_to_string(&path))
    };
    let dep = ModulesDep::parse(&read("modules.dep")?);
    let builtin = builtin_names(&read("modules.builtin")?);
    dep.load_order(&r.modules, &builtin).map_err(|m| b.content(m))
}

/// `/etc/bootproof/modules`: one path under `/lib/modules` a line, in load order.
fn module_list(order: &[String]) -> String {
    order.iter().map(|ko| format!("{ko}\n")).collect()
}

/// Every path under `tree`, relative and sorted (parents before children), for cpio.
fn file_list(b: &Build, tree: &Path) -> Result<String, ImageError> {
    let mut paths = Vec::new();
    let mut pending = vec![tree.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in b.io(&dir, fs::read_dir(&dir))? {
            let path = b.io(&dir, entry)?.path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            if let Ok(rel) = path.strip_prefix(tree) {
                paths.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    paths.sort();
    Ok(paths.iter().map(|p| format!("{p}\n")).collect())
}

fn copy(b: &Build, from: &Path, to: &Path) -> Result<(), ImageError> {
    if let Some(parent) = to.parent() {
        b.create_dir(parent)?;
    }
    b.io(from, fs::copy(from, to)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_list_is_one_path_a_line_in_order() {
        let order = ["kernel/a.ko".to_string(), "kernel/b.ko".to_string()];
        assert_eq!(module_list(&order), "kernel/a.ko\nkernel/b.ko\n");
    }
}
