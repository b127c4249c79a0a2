//! Debian's netboot installer (`debian-installer-12-netboot-amd64`): its text-mode
//! kernel and initrd, and what the rest of the installer work has to match — the
//! kernel's release (`6.1.0-50-amd64`, the ABI every `*-modules-<abi>-di` udeb and
//! every added module must have), the Debian version of that kernel build, and the
//! udebs already inside the initrd (anna never fetches those, so the mirror needs
//! none of them).
//!
//! Those facts are read once per netboot package file (keyed by its SHA-256) and
//! kept under `cache_dir()/installer/`, so a cached mirror or ISO is found without
//! unpacking 130 MB.
//!
//! Must not: change the installer's files (the ISO recipe appends to a copy).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::ImageError;
use super::build::Build;
use super::debs::{self, Deb};

/// The package that carries d-i's netboot images for bookworm.
pub const PACKAGE: &str = "debian-installer-12-netboot-amd64";

/// The text installer's kernel and initrd inside the package.
pub const TEXT_DIR: &str = "usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64";

/// Bump when what [`Facts`] holds or how it is read changes.
const FACTS_VERSION: u32 = 1;

/// What the rest of the installer work must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub deb: Deb,
    /// `uname -r` of the installer's kernel: `6.1.0-50-amd64`.
    pub kernel_release: String,
    /// The Debian version of that kernel build (`6.1.176-1`): the version of the
    /// `linux-image-<release>` package whose modules match it.
    pub kernel_version: String,
    /// Udebs installed in the initrd (its `var/lib/dpkg/status`) and the names they
    /// provide, sorted: dependencies on them are met without the mirror.
    pub initrd_udebs: Vec<String>,
}

/// The netboot package as apt would fetch it now.
pub fn resolve(image: &str) -> Result<Deb, ImageError> {
    debs::needs_debian(image)?;
    let stanzas = debs::apt_show(image, &[PACKAGE])?;
    stanzas.first().and_then(|s| debs::deb_of(s)).ok_or_else(|| ImageError::Resolve {
        image: image.to_string(),
        message: format!("apt-cache show printed no file for {PACKAGE}"),
    })
}

/// The facts of `deb`, from the cache or by downloading and reading the package.
pub fn facts(image: &str, deb: &Deb, progress: &mut dyn FnMut(&str)) -> Result<Facts, ImageError> {
    let dir = crate::cache::cache_dir().join("installer");
    let memo = dir.join(format!("netboot-{}-v{FACTS_VERSION}.txt", &deb.sha256[..16.min(deb.sha256.len())]));
    // The memo may also be in a cache restored read-only (crate::cache).
    let relative = memo.strip_prefix(crate::cache::cache_dir()).expect("under the cache").to_path_buf();
    let read = |path: &Path| std::fs::read_to_string(path).ok().and_then(|t| parse_facts(&t, deb));
    if let Some(facts) = crate::cache::find(&relative, |p| read(p).is_some()).and_then(|p| read(&p)) {
        return Ok(facts);
    }
    let work = dir.join(format!(".tmp-netboot-{}", std::process::id()));
    let mut b = Build::start(image, work.clone(), 2, progress)?;
    b.step("downloading Debian's netboot installer");
    let file =
        debs::fetch(&mut b, std::slice::from_ref(deb), &crate::cache::cache_dir().join("debs"))?.remove(0);
    b.step("reading the installer's kernel release and components");
    let files = unpack(&mut b, &file, &work.join("netboot"))?;
    let facts = read_facts(&mut b, deb, &files, &work)?;
    b.write(&memo, render_facts(&facts))?;
    drop(b);
    let _ = std::fs::remove_dir_all(&work);
    Ok(facts)
}

/// The text installer's files after [`unpack`].
#[derive(Debug, Clone)]
pub struct Files {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// Unpacks the netboot package into `dest` and returns its text installer's files.
pub fn unpack(b: &mut Build, deb_file: &Path, dest: &Path) -> Result<Files, ImageError> {
    b.create_dir(dest)?;
    b.run(Command::new("dpkg-deb").arg("-x").arg(deb_file).arg(dest))?;
    let dir = dest.join(TEXT_DIR);
    let files = Files { kernel: dir.join("linux"), initrd: dir.join("initrd.gz") };
    for f in [&files.kernel, &files.initrd] {
        if !f.is_file() {
            return Err(b.content(format!("{PACKAGE} has no {}", f.display())));
        }
    }
    Ok(files)
}

/// Unpacks the gzip'd cpio `initrd` into `dest`, only `members` if any are given.
pub fn unpack_initrd(b: &mut Build, initrd: &Path, dest: &Path, members: &[&str]) -> Result<(), ImageError> {
    b.create_dir(dest)?;
    // cpio reads the archive on stdin; the shell only connects the two programs and
    // gets the paths as arguments, never in its script.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "f=$1; shift; gzip -dc \"$f\" | cpio -id --quiet --no-absolute-filenames \"$@\"", "sh"])
        .arg(initrd)
        .args(members)
        .current_dir(dest);
    b.run(&mut cmd)
}

fn read_facts(b: &mut Build, deb: &Deb, files: &Files, work: &Path) -> Result<Facts, ImageError> {
    let bytes = b.io(&files.kernel, std::fs::read(&files.kernel))?;
    let (kernel_release, kernel_version) = kernel_release(&bytes).ok_or_else(|| {
        b.content(format!("{}: no Debian kernel version string in its boot header", files.kernel.display()))
    })?;
    let root = work.join("initrd");
    unpack_initrd(b, &files.initrd, &root, &["var/lib/dpkg/status"])?;
    let status_path = root.join("var/lib/dpkg/status");
    let status = b.io(&status_path, std::fs::read_to_string(&status_path))?;
    let mut initrd_udebs: Vec<String> = debs::stanzas(&status)
        .iter()
        .flat_map(|s| {
            let provides = debs::field(s, "Provides").unwrap_or_default();
            let provided = provides.split(',').map(|p| p.split('(').next().unwrap_or_default().trim());
            debs::field(s, "Package").into_iter().chain(provided)
        })
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    initrd_udebs.sort();
    initrd_udebs.dedup();
    if initrd_udebs.is_empty() {
        return Err(b.content(format!("{}: the initrd lists no installed udebs", files.initrd.display())));
    }
    Ok(Facts { deb: deb.clone(), kernel_release, kernel_version, initrd_udebs })
}

/// The release and Debian version from a bzImage's version string (setup header
/// field `kernel_version` at 0x20e: offset of the string minus 0x200), which reads
/// `6.1.0-50-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian
/// 6.1.176-1 (2026-07-02)`.
pub fn kernel_release(bzimage: &[u8]) -> Option<(String, String)> {
    let header = bzimage.get(0x202..0x206)?;
    if header != b"HdrS" {
        return None;
    }
    let ptr = u16::from_le_bytes([*bzimage.get(0x20e)?, *bzimage.get(0x20f)?]) as usize + 0x200;
    let tail = bzimage.get(ptr..)?;
    let text = std::str::from_utf8(&tail[..tail.iter().position(|&c| c == 0)?]).ok()?;
    let release = text.split_whitespace().next()?.to_string();
    let version = text.split_once(" Debian ")?.1.split_whitespace().next()?.to_string();
    Some((release, version))
}

fn render_facts(f: &Facts) -> String {
    format!(
        "sha256={}\nkernel_release={}\nkernel_version={}\ninitrd_udebs={}\n",
        f.deb.sha256,
        f.kernel_release,
        f.kernel_version,
        f.initrd_udebs.join(" ")
    )
}

fn parse_facts(text: &str, deb: &Deb) -> Option<Facts> {
    let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix('='));
    if get("sha256")? != deb.sha256 {
        return None;
    }
    Some(Facts {
        deb: deb.clone(),
        kernel_release: get("kernel_release")?.to_string(),
        kernel_version: get("kernel_version")?.to_string(),
        initrd_udebs: get("initrd_udebs")?.split_whitespace().map(str::to_string).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bzimage(version: &str) -> Vec<u8> {
        let mut img = vec![0u8; 0x400];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x20e..0x210].copy_from_slice(&(0x300u16 - 0x200).to_le_bytes());
        img[0x300..0x300 + version.len()].copy_from_slice(version.as_bytes());
        img
    }

    #[test]
    fn reads_release_and_debian_version_from_the_boot_header() {
        let img = bzimage(
            "6.1.0-50-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.176-1 (2026-07-02)",
        );
        assert_eq!(kernel_release(&img), Some(("6.1.0-50-amd64".into(), "6.1.176-1".into())));
    }

    #[test]
    fn a_file_that_is_not_a_debian_bzimage_has_no_release() {
        assert_eq!(kernel_release(b"short"), None);
        let mut img = bzimage("6.1.0 (custom) #1");
        assert_eq!(kernel_release(&img), None, "no `Debian <version>`");
        img[0x202] = b'X';
        assert_eq!(kernel_release(&img), None);
    }

    #[test]
    fn facts_round_trip_and_belong_to_one_file() {
        let deb = Deb {
            package: PACKAGE.into(),
            version: "1".into(),
            filename: "p/x.deb".into(),
            sha256: "ab".into(),
        };
        let facts = Facts {
            deb: deb.clone(),
            kernel_release: "6.1.0-50-amd64".into(),
            kernel_version: "6.1.176-1".into(),
            initrd_udebs: vec!["anna".into(), "netcfg".into()],
        };
        assert_eq!(parse_facts(&render_facts(&facts), &deb), Some(facts.clone()));
        let other = Deb { sha256: "cd".into(), ..deb };
        assert_eq!(parse_facts(&render_facts(&facts), &other), None);
    }
}
