//! Reference guests built from Debian's packages, cached by recipe hash.
//!
//! The tiny guest is Debian's signed kernel (`linux-image-amd64`) with a busybox
//! initramfs whose `/init` ([`recipe::TINY_INIT`]) prints one report line on the serial
//! console (`bootproof-tiny: efi=1 secureboot=0 tpm=2 share=ok`), writes it into the
//! `bootproof` 9p share and the disk's `scratch` partition, runs an optional hook from
//! the read-only `bootproof-input` share, and powers off; with a guest agent channel
//! (virtio console, vsock) it serves a shell there instead and waits for the power
//! button (see `docs/agent.md`). Three images carry it:
//!
//! - `tiny`: raw GPT disk, ESP with a UKI at `\EFI\BOOT\BOOTX64.EFI`, 1 MiB `scratch`.
//! - `tiny-iso`: hybrid ISO with the same UKI (boots as `-cdrom` and as a disk).
//! - `tiny-sb`: raw GPT disk for Secure Boot: Debian's shim → grub → kernel, `scratch`.
//!
//! Disks are raw, not qcow2: the runtime boots them through a qcow2 overlay or
//! `snapshot=on` either way, raw files are sparse, and a test can read the GPT or the
//! `scratch` partition straight from the file.
//!
//! Cache layout under [`crate::cache::cache_dir`]:
//!
//! ```text
//! debs/<package>_<version>_amd64.deb   downloaded once, checked against apt's SHA-256
//! images/<name>.lock                   flock held while checking and building <name>
//! images/<name>-<hash>/<file>          a complete build: image, recipe.txt, build.log
//! images/.tmp-<name>-<hash>-<pid>/     a build in progress, or a failed one (its
//!                                      build.log); never taken as cached
//! ```
//!
//! Builds of older recipes are removed by the next successful build of the same image
//! once they are a day old; leftover `.tmp-` directories by the next build attempt.
//!
//! `<hash>` covers the recipe (version, `/init`, modules, cmdline, packages), the
//! kernel version `linux-image-amd64` pins now and the SHA-256 of every other package
//! file apt resolves now, so an update in the archive builds a new image. A build
//! happens in the temporary directory and is renamed into place only when complete.
//!
//! `installed` ([`installed`]) is a whole Debian system built by `mmdebstrap`; its
//! directory also holds the test secrets a scenario reads with
//! `{ reference = "installed/luks-passphrase" }` ([`secret_file`]).
//!
//! `installer` ([`installer_iso`]) is Debian's netboot installer on an ISO that
//! installs unattended from the local mirror ([`mirror`], cached the same way under
//! `images/mirror-<hash>/`); both read the netboot package through [`netboot`].
//! docs/installer.md tells the whole story.
//!
//! Must not: download anything but Debian packages through apt, or boot the images
//! (the runtime's tests do). Only the `installed` build mounts anything (a loop mount
//! of its own btrfs image, as root, unmounted before the step ends).

mod build;
mod debs;
pub mod installed;
pub mod installer_iso;
mod media;
pub use media::tools;
pub mod mirror;
mod modules;
pub mod netboot;
pub mod recipe;
mod tiny;

use std::path::{Path, PathBuf};

use crate::host::setup::{self, Requirement, SetupError};
use recipe::{Medium, Recipe};

/// How long a build of an older recipe stays in the cache after a newer one exists.
const SUPERSEDED_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Whether a built image boots as a disk or as an optical disc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Disk,
    Iso,
}

/// A reference image ready to boot.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// `reference:<name>`.
    pub reference: String,
    pub path: PathBuf,
    pub kind: ImageKind,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("unknown reference image `{0}` (known: {known})", known = known().join(", "))]
    Unknown(String),
    #[error("unknown reference secret `{reference}` (known: {})", known.join(", "))]
    UnknownSecret { reference: String, known: Vec<String> },
    #[error("unknown reference directory `{reference}` (known: {})", known.join(", "))]
    UnknownDir { reference: String, known: Vec<String> },
    #[error(
        "building reference:{image} needs root: it loop-mounts btrfs to make subvolumes and \
         builds the initramfs in a chroot.\n  Build it once as root into this cache: \
         `sudo env BOOTPROOF_CACHE={} bootproof images build {image}`; using the cached \
         image needs no root",
        cache.display()
    )]
    NeedsRoot { image: String, cache: PathBuf },
    #[error(
        "reference:{image} is built from Debian's packages (linux-image-amd64, \
         busybox-static) with apt, and this host has no `{tool}`.\n  \
         Build it on a Debian host or in a Debian container (`bootproof` with the same \
         BOOTPROOF_CACHE), or boot your own image path instead of reference:{image}"
    )]
    NeedsDebian { image: String, tool: &'static str },
    #[error("reference:{image}: resolving Debian packages: {message}")]
    Resolve { image: String, message: String },
    #[error("building reference:{image}: {source}")]
    Setup {
        image: String,
        #[source]
        source: SetupError,
    },
    #[error(transparent)]
    Command(Box<CommandFailed>),
    #[error("building reference:{image}: step `{step}`: cannot run `{command}`: {source}")]
    Spawn { image: String, step: String, command: String, source: std::io::Error },
    #[error("building reference:{image}: step `{step}`: {}: {source}", path.display())]
    Io { image: String, step: String, path: PathBuf, source: std::io::Error },
    #[error("building reference:{image}: step `{step}`: {message}\n  full log: {}", log.display())]
    Content { image: String, step: String, message: String, log: PathBuf },
}

/// An external command of a build step failed.
#[derive(Debug, thiserror::Error)]
#[error(
    "building reference:{image}: step `{step}`: `{command}` failed ({status}); \
     last lines of its output:\n{tail}\n  full log: {}",
    log.display()
)]
pub struct CommandFailed {
    pub image: String,
    pub step: String,
    pub command: String,
    pub status: String,
    pub tail: String,
    pub log: PathBuf,
}

/// The reference images this module builds.
pub fn known() -> Vec<&'static str> {
    let mut names = vec!["tiny", "tiny-iso", "tiny-sb"];
    names.extend(installed::Variant::ALL.map(|v| v.name()));
    names.push(installer_iso::NAME);
    names
}

/// Where `tiny` and `tiny-sb` keep their `scratch` partition, in bytes of the image
/// file. The guest writes its report line there, padded with NULs to 512 bytes, so a
/// test can tell whether a run's writes reached the file.
pub fn scratch_range() -> std::ops::Range<u64> {
    media::scratch_range(media::DISK_ESP_MIB)
}

/// Builds (or finds in the cache) the reference image `name` (`tiny`, `tiny-iso`,
/// `tiny-sb`, `installed`, with or without the `reference:` prefix), printing progress
/// on stderr.
pub fn ensure(name: &str) -> Result<BuiltImage, ImageError> {
    build(name, false, &mut |line| crate::reporter::line(format!("bootproof: {line}")))
}

/// Like [`ensure`], with `force` to rebuild even when cached and `progress` receiving
/// one line per build step (`building reference:tiny: [4/7] building initramfs`).
pub fn build(name: &str, force: bool, progress: &mut dyn FnMut(&str)) -> Result<BuiltImage, ImageError> {
    let bare = name.strip_prefix("reference:").unwrap_or(name);
    if let Some(variant) = installed::Variant::named(bare) {
        return build_installed(variant, force, progress);
    }
    if bare == installer_iso::NAME {
        return build_installer(force, progress);
    }
    let recipe = Recipe::named(bare).ok_or_else(|| ImageError::Unknown(name.to_string()))?;
    let resolved = debs::resolve(recipe.name, recipe.kernel, &recipe.packages)?;
    let hash = recipe.hash(&resolved);
    let cache = crate::cache::cache_dir();
    let path = cached_or_build(recipe.name, &hash, &recipe.file_name(), force, |images| {
        build_unlocked(&recipe, &resolved, &hash, &cache, images, progress)
    })?;
    Ok(built(&recipe, path))
}

fn build_installed(
    variant: installed::Variant,
    force: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<BuiltImage, ImageError> {
    let name = variant.name();
    let mut resolved = debs::resolve(name, installed::KERNEL, &variant.packages())?;
    if variant.grub() {
        // Installed: the oldest kernel apt knows; handed in for the upgrade: the newest.
        let (older, newest) = debs::kernel_abis(name, installed::KERNEL)?;
        resolved.kernel = older;
        resolved.upgrade = Some(newest);
    }
    let hash = installed::RECIPE.hash(variant, &resolved);
    let path = cached_or_build(name, &hash, installed::FILE_NAME, force, |images| {
        installed::needs_root(variant, &crate::cache::cache_dir())?;
        let dir = build::temp_dir(images, name, &hash);
        let mut b = build::Build::start(name, dir, variant.steps(), progress)?;
        b.step("checking host tools");
        setup::ensure(&installed::requirements(variant))
            .map_err(|source| ImageError::Setup { image: name.to_string(), source })?;
        let image = installed::build(&mut b, variant, &resolved)?;
        b.write(&b.dir().join("recipe.txt"), installed::RECIPE.fingerprint(variant, &resolved))?;
        let dest = build::final_dir(images, name, &hash);
        b.finish(&dest)?;
        Ok(dest.join(image.file_name().expect("an image file")))
    })?;
    Ok(BuiltImage { reference: format!("reference:{name}"), path, kind: ImageKind::Disk })
}

fn build_installer(force: bool, progress: &mut dyn FnMut(&str)) -> Result<BuiltImage, ImageError> {
    let name = installer_iso::NAME;
    let resolved = installer_iso::resolve(progress)?;
    let hash = installer_iso::hash(&resolved);
    let path = cached_or_build(name, &hash, installer_iso::FILE_NAME, force, |images| {
        let dir = build::temp_dir(images, name, &hash);
        let mut b = build::Build::start(name, dir, installer_iso::STEPS, progress)?;
        b.step("checking host tools");
        setup::ensure(&installer_iso::requirements())
            .map_err(|source| ImageError::Setup { image: name.to_string(), source })?;
        installer_iso::build(&mut b, &resolved)?;
        // The test secrets an install from this ISO uses, as `installer/<file>`: the
        // installed system's values (the preseed gets them only at run time).
        for (file, value) in installed::SECRET_FILES {
            b.write(&b.dir().join(file), value)?;
        }
        let dest = build::final_dir(images, name, &hash);
        b.finish(&dest)?;
        Ok(dest.join(installer_iso::FILE_NAME))
    })?;
    Ok(BuiltImage { reference: format!("reference:{name}"), path, kind: ImageKind::Iso })
}

/// The cached image `name` of recipe `hash`, or the result of `build_fn` run under the
/// image's lock (it gets the images directory and returns the image in its final place).
fn cached_or_build(
    name: &str,
    hash: &str,
    file_name: &str,
    force: bool,
    build_fn: impl FnOnce(&Path) -> Result<PathBuf, ImageError>,
) -> Result<PathBuf, ImageError> {
    let images = crate::cache::cache_dir().join("images");
    if !force && let Some(path) = build::cached(&images, name, hash, file_name) {
        return Ok(path);
    }
    // A cache restored read-only (crate::cache) still serves its complete builds.
    let read_only = crate::cache::read_only_dirs().into_iter().map(|dir| dir.join("images"));
    if !force
        && let Some(path) = read_only.into_iter().find_map(|dir| build::cached(&dir, name, hash, file_name))
    {
        return Ok(path);
    }
    let io = |path: &Path, source| ImageError::Io {
        image: name.to_string(),
        step: "locking the image cache".to_string(),
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(&images).map_err(|e| io(&images, e))?;
    let lock_path = images.join(format!("{name}.lock"));
    let _lock = build::Lock::exclusive(&lock_path).map_err(|e| io(&lock_path, e))?;
    // Another process may have finished this build while we waited for the lock.
    if !force && let Some(path) = build::cached(&images, name, hash, file_name) {
        return Ok(path);
    }
    build::remove_stale(&images, name).map_err(|e| io(&images, e))?;
    let path = build_fn(&images)?;
    // Best effort: the new image is in place whether or not old ones could go.
    let _ = build::remove_superseded(&images, name, hash, SUPERSEDED_AGE);
    Ok(path)
}

/// The directory behind a share `reference:<image>/<dir>`: what a reference image's
/// build wrote next to it for a scenario to hand the guest (`installed-grub/upgrade`:
/// the newer kernel's package). Builds the image if needed.
pub fn reference_dir(spec: &str) -> Result<PathBuf, ImageError> {
    let (image, dir) = reference_dir_name(spec)?;
    let built = ensure(image)?;
    let path = built.path.parent().expect("images live in a directory").join(dir);
    if !path.is_dir() {
        return Err(ImageError::Io {
            image: image.to_string(),
            step: format!("finding {spec}"),
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "the build wrote no such directory"),
        });
    }
    Ok(path)
}

/// Splits and checks `reference:<image>/<dir>` against what the images' builds write,
/// without building anything.
pub fn reference_dir_name(spec: &str) -> Result<(&str, &str), ImageError> {
    let bare = spec.strip_prefix("reference:").unwrap_or(spec);
    let known: Vec<String> = installed::Variant::ALL
        .iter()
        .filter(|v| v.grub())
        .map(|v| format!("reference:{}/{}", v.name(), installed::UPGRADE_DIR))
        .collect();
    match bare.split_once('/') {
        Some(pair) if known.iter().any(|k| *k == format!("reference:{bare}")) => Ok(pair),
        _ => Err(ImageError::UnknownDir { reference: spec.to_string(), known }),
    }
}

/// The file behind a secret source `{ reference = "<image>/<file>" }`: a test secret
/// the reference image's build wrote next to it. Builds the image if needed.
pub fn secret_file(reference: &str) -> Result<PathBuf, ImageError> {
    let (image, file) = secret_name(reference)?;
    let built = ensure(image)?;
    Ok(built.path.parent().expect("images live in a directory").join(file))
}

/// Splits and checks `<image>/<file>` against the secrets the image's build writes.
pub fn secret_name(reference: &str) -> Result<(&str, &str), ImageError> {
    let unknown = || ImageError::UnknownSecret {
        reference: reference.to_string(),
        known: ["installed", installer_iso::NAME]
            .iter()
            .flat_map(|image| installed::SECRET_FILES.iter().map(move |(f, _)| format!("{image}/{f}")))
            .collect(),
    };
    let (image, file) = reference.split_once('/').ok_or_else(unknown)?;
    let writes_secrets = installed::Variant::named(image).is_some() || image == installer_iso::NAME;
    let known = writes_secrets && installed::SECRET_FILES.iter().any(|(f, _)| *f == file);
    if known { Ok((image, file)) } else { Err(unknown()) }
}

/// Runs every step of a tiny build in a temporary directory and moves the result into
/// the cache. The caller holds the image's lock.
fn build_unlocked(
    recipe: &Recipe,
    resolved: &debs::Resolved,
    hash: &str,
    cache: &Path,
    images: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf, ImageError> {
    let dir = build::temp_dir(images, recipe.name, hash);
    let mut b = build::Build::start(recipe.name, dir, recipe.step_count(), progress)?;
    b.step("checking host tools");
    setup::ensure(&requirements(recipe))
        .map_err(|source| ImageError::Setup { image: recipe.name.to_string(), source })?;
    b.step("downloading packages");
    let mut debs = vec![debs::kernel_deb(recipe.name, &resolved.kernel)?];
    debs.extend(resolved.debs.iter().cloned());
    let files = debs::fetch(&mut b, &debs, &cache.join("debs"))?;
    tiny::build(&mut b, recipe, &files)?;
    b.write(&b.dir().join("recipe.txt"), recipe.fingerprint(resolved))?;
    let dest = build::final_dir(images, recipe.name, hash);
    b.finish(&dest)?;
    Ok(dest.join(recipe.file_name()))
}

fn built(recipe: &Recipe, path: PathBuf) -> BuiltImage {
    BuiltImage {
        reference: format!("reference:{}", recipe.name),
        path,
        kind: match recipe.medium {
            Medium::Disk => ImageKind::Disk,
            Medium::Iso => ImageKind::Iso,
        },
    }
}

/// The static C library on Debian (amd64); `gcc -static` fails without it.
const STATIC_LIBC: &str = "/usr/lib/x86_64-linux-gnu/libc.a";

/// Every host tool some reference image is built with, as `bootproof doctor` lists
/// them.
pub const TOOLS: &[Requirement] = {
    use tools::*;
    &[
        XORRISO,
        MCOPY,
        MKFS_VFAT,
        SFDISK,
        OBJCOPY,
        UKI_STUB,
        CPIO,
        MMDEBSTRAP,
        APT_FTPARCHIVE,
        GRUB_MKRESCUE,
        GRUB_EFI_MODULES,
        MFORMAT,
    ]
};

/// Host tools a build of `recipe` runs.
fn requirements(recipe: &Recipe) -> Vec<Requirement> {
    let mut reqs = vec![
        Requirement::command("dpkg", "dpkg", "dpkg", "unpacking Debian packages"),
        Requirement::command("depmod", "kmod", "kmod", "kernel module dependencies"),
        media::tools::CPIO,
        Requirement::command("gzip", "gzip", "gzip", "compressing the initramfs"),
        media::tools::MKFS_VFAT,
        media::tools::MCOPY,
        media::tools::SFDISK,
        Requirement::command("dd", "coreutils", "coreutils", "writing the ESP into the disk"),
        Requirement::command("gcc", "gcc", "gcc", "the guest's static vsock agent"),
        Requirement::file(STATIC_LIBC, "libc6-dev", "glibc-static", "linking the vsock agent statically"),
    ];
    if recipe.boot == recipe::Boot::Uki {
        reqs.extend([media::tools::OBJCOPY, media::tools::UKI_STUB]);
    }
    if recipe.medium == Medium::Iso {
        reqs.push(media::tools::XORRISO);
    }
    reqs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_fail_before_touching_apt() {
        let err = build("reference:huge", false, &mut |_| {}).unwrap_err();
        assert!(matches!(err, ImageError::Unknown(n) if n == "reference:huge"));
    }

    #[test]
    fn secrets_name_a_file_the_image_writes() {
        assert_eq!(secret_name("installed/luks-passphrase").unwrap(), ("installed", "luks-passphrase"));
        assert_eq!(
            secret_name("installed-tpm/luks-passphrase").unwrap(),
            ("installed-tpm", "luks-passphrase")
        );
        assert_eq!(
            secret_name("installed-selinux/luks-passphrase").unwrap(),
            ("installed-selinux", "luks-passphrase")
        );
        for bad in ["installed/build.log", "tiny/luks-passphrase", "installed", "../etc/passwd"] {
            let err = secret_name(bad).unwrap_err().to_string();
            assert!(err.contains("installed/admin-password"), "{bad}: {err}");
        }
    }

    #[test]
    fn only_the_iso_needs_xorriso_and_only_ukis_need_the_stub() {
        let names = |name: &str| -> Vec<&str> {
            requirements(&Recipe::named(name).unwrap()).iter().map(|r| r.name()).collect()
        };
        assert!(names("tiny-iso").contains(&"xorriso"));
        assert!(!names("tiny").contains(&"xorriso"));
        assert!(names("tiny").contains(&media::UKI_STUB));
        assert!(!names("tiny-sb").contains(&media::UKI_STUB));
    }
}
