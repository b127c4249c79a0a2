//! Debian packages for the reference images: resolve names to exact files with
//! `apt-cache`, download them once into `cache_dir()/debs/` (checked against the
//! archive's SHA-256), and unpack them with `dpkg -x`.
//!
//! Must not: install packages on the host or change apt's configuration.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::ImageError;
use super::build::{Build, Lock};
use crate::host::setup::find_command;

/// One package file as the archive describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deb {
    pub package: String,
    pub version: String,
    /// Path in the archive's pool; its last component is the file name.
    pub filename: String,
    pub sha256: String,
}

impl Deb {
    pub fn file_name(&self) -> &str {
        self.filename.rsplit('/').next().unwrap_or(&self.filename)
    }
}

/// What apt would fetch now, from a single `apt-cache` run (each run reloads apt's
/// lists, about half a second on this kind of host; a cache hit needs only this one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `(package, version)` of the kernel the metapackage pins with `=`. Debian never
    /// reuses a version for other contents, so this names one file.
    pub kernel: (String, String),
    pub debs: Vec<Deb>,
    /// A newer kernel than `kernel`, for an image whose scenario upgrades to it
    /// (`installed-grub`); `None` for every other image.
    pub upgrade: Option<(String, String)>,
}

/// Resolves the kernel metapackage to the kernel version it pins, and every other
/// package to the file apt would fetch now.
pub fn resolve(image: &str, kernel_meta: &str, packages: &[&str]) -> Result<Resolved, ImageError> {
    needs_debian(image)?;
    let mut names = vec![kernel_meta];
    names.extend_from_slice(packages);
    let stanzas = apt_show(image, &names)?;
    let resolve_err = |message: String| ImageError::Resolve { image: image.to_string(), message };
    let (meta, others): (Vec<&String>, Vec<&String>) =
        stanzas.iter().partition(|s| field(s, "Package") == Some(kernel_meta));
    let kernel = meta
        .first()
        .and_then(|s| field(s, "Depends"))
        .and_then(|deps| pinned_dependency(deps, "linux-image-"))
        .ok_or_else(|| {
            resolve_err(format!(
                "`{kernel_meta}` pins no linux-image package (`name (= version)`) in its Depends"
            ))
        })?;
    let debs =
        others.iter().map(|s| deb_of(s)).collect::<Option<Vec<_>>>().ok_or_else(|| {
            resolve_err("apt-cache show printed a package without Filename or SHA256".into())
        })?;
    Ok(Resolved { kernel, debs, upgrade: None })
}

/// A kernel package as `(package, version)`.
pub type Kernel = (String, String);

/// The oldest and the newest kernel the metapackage pins in any version apt knows
/// (bookworm's point release and its security update, say), as `(package, version)`:
/// an image that upgrades its kernel installs the first and is handed the second.
/// Fails, saying so, when apt knows only one kernel ABI.
pub fn kernel_abis(image: &str, kernel_meta: &str) -> Result<(Kernel, Kernel), ImageError> {
    needs_debian(image)?;
    let resolve_err = |message: String| ImageError::Resolve { image: image.to_string(), message };
    let stanzas = apt_show_all_versions(image, kernel_meta)?;
    let mut kernels: Vec<Kernel> = stanzas
        .iter()
        .filter_map(|s| field(s, "Depends").and_then(|d| pinned_dependency(d, "linux-image-")))
        .collect();
    let mut sorted: Vec<Kernel> = Vec::new();
    // Insertion sort by dpkg's version order: a handful of versions at most.
    for k in kernels.drain(..) {
        let at = sorted.iter().position(|s| version_lt(&k.1, &s.1)).unwrap_or(sorted.len());
        if !sorted.contains(&k) {
            sorted.insert(at, k);
        }
    }
    match (sorted.first(), sorted.last()) {
        (Some(old), Some(new)) if old.0 != new.0 => Ok((old.clone(), new.clone())),
        _ => Err(resolve_err(format!(
            "apt knows one kernel ABI for `{kernel_meta}` ({}); upgrading the kernel needs two \
             (bookworm's point release and a newer one from bookworm-security or -updates in \
             apt's sources)",
            sorted.iter().map(|(p, v)| format!("{p} {v}")).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// `a` sorts before `b` in dpkg's version order.
fn version_lt(a: &str, b: &str) -> bool {
    Command::new("dpkg").args(["--compare-versions", a, "lt", b]).status().is_ok_and(|s| s.success())
}

/// Every version of `name` apt knows, one stanza each, memoised like [`apt_show`].
fn apt_show_all_versions(image: &str, name: &str) -> Result<Vec<String>, ImageError> {
    let memo = crate::cache::cache_dir().join("apt").join(format!("show-all-{}.txt", apt_state_key(&[name])));
    if let Ok(text) = std::fs::read_to_string(&memo) {
        let stanzas = stanzas(&text);
        if !stanzas.is_empty() {
            return Ok(stanzas);
        }
    }
    let out = Command::new("apt-cache").args(["show", name]).output().map_err(|e| ImageError::Resolve {
        image: image.to_string(),
        message: format!("cannot run apt-cache: {e}"),
    })?;
    let stanzas = stanzas(&String::from_utf8_lossy(&out.stdout));
    if !out.status.success() || stanzas.is_empty() {
        return Err(ImageError::Resolve {
            image: image.to_string(),
            message: format!(
                "`apt-cache show {name}` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    if let Some(dir) = memo.parent() {
        let tmp = memo.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::create_dir_all(dir).is_ok() && std::fs::write(&tmp, stanzas.join("\n\n")).is_ok() {
            let _ = std::fs::rename(&tmp, &memo);
        }
    }
    Ok(stanzas)
}

/// The archive's file of the pinned kernel; only a build needs it.
pub fn kernel_deb(image: &str, (package, version): &(String, String)) -> Result<Deb, ImageError> {
    let stanzas = apt_show(image, &[&format!("{package}={version}")])?;
    stanzas.first().and_then(|s| deb_of(s)).ok_or_else(|| ImageError::Resolve {
        image: image.to_string(),
        message: format!("apt-cache show printed no file for {package}={version}"),
    })
}

/// The tiny guest is made of Debian's kernel and busybox: without apt there is no
/// honest way to get them, so say so instead of failing on a missing command.
pub(super) fn needs_debian(image: &str) -> Result<(), ImageError> {
    for tool in ["apt-cache", "apt-get", "dpkg-deb"] {
        if find_command(tool).is_none() {
            return Err(ImageError::NeedsDebian { image: image.to_string(), tool });
        }
    }
    Ok(())
}

/// `apt-cache show` answers from apt's lists and configuration alone, so its answer is
/// kept under a key of their names, sizes and times: a cache hit then costs a few
/// directory reads instead of apt reloading its lists (half a second per VM start).
pub(super) fn apt_show(image: &str, names: &[&str]) -> Result<Vec<String>, ImageError> {
    let memo = crate::cache::cache_dir().join("apt").join(format!("show-{}.txt", apt_state_key(names)));
    if let Ok(text) = std::fs::read_to_string(&memo) {
        let stanzas = stanzas(&text);
        if stanzas.len() == names.len() {
            return Ok(stanzas);
        }
    }
    let stanzas = apt_show_uncached(image, names)?;
    if let Some(dir) = memo.parent() {
        let tmp = memo.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::create_dir_all(dir).is_ok() && std::fs::write(&tmp, stanzas.join("\n\n")).is_ok() {
            let _ = std::fs::rename(&tmp, &memo);
        }
    }
    Ok(stanzas)
}

/// Hash of the question and of everything apt reads to answer it.
fn apt_state_key(names: &[&str]) -> String {
    use sha2::Digest;
    use std::os::unix::fs::MetadataExt;
    let mut h = sha2::Sha256::new();
    h.update(names.join("\0").as_bytes());
    let files = ["/etc/apt/sources.list", "/etc/apt/preferences", "/var/lib/dpkg/arch"].map(PathBuf::from);
    let dirs =
        ["/var/lib/apt/lists", "/etc/apt/sources.list.d", "/etc/apt/preferences.d", "/etc/apt/apt.conf.d"];
    let mut paths: Vec<PathBuf> = files.to_vec();
    for dir in dirs {
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
        entries.sort();
        paths.extend(entries);
    }
    for p in paths {
        if let Ok(m) = std::fs::metadata(&p) {
            h.update(format!("{}\0{}\0{}\0{}\n", p.display(), m.len(), m.mtime(), m.mtime_nsec()).as_bytes());
        }
    }
    hex::encode(&h.finalize()[..12])
}

fn apt_show_uncached(image: &str, names: &[&str]) -> Result<Vec<String>, ImageError> {
    let out =
        Command::new("apt-cache").args(["show", "--no-all-versions"]).args(names).output().map_err(|e| {
            ImageError::Resolve { image: image.to_string(), message: format!("cannot run apt-cache: {e}") }
        })?;
    let stanzas = stanzas(&String::from_utf8_lossy(&out.stdout));
    if !out.status.success() || stanzas.len() != names.len() {
        return Err(ImageError::Resolve {
            image: image.to_string(),
            message: format!(
                "`apt-cache show --no-all-versions {}` failed ({}): {}\n  \
                 the packages come from Debian's archive (bookworm); if apt's lists are \
                 empty or stale, run `apt-get update`",
                names.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(stanzas)
}

/// Splits `apt-cache show` output into one text per package.
pub(super) fn stanzas(text: &str) -> Vec<String> {
    text.split("\n\n").filter(|s| s.lines().any(|l| l.starts_with("Package:"))).map(str::to_string).collect()
}

pub(super) fn field<'a>(stanza: &'a str, name: &str) -> Option<&'a str> {
    stanza.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim)
}

/// The first dependency `name (= version)` whose name starts with `prefix`.
fn pinned_dependency(depends: &str, prefix: &str) -> Option<(String, String)> {
    depends.split([',', '|']).map(str::trim).find_map(|d| {
        let (name, rest) = d.split_once(' ')?;
        let version = rest.trim().strip_prefix("(=")?.strip_suffix(')')?.trim();
        name.starts_with(prefix).then(|| (name.to_string(), version.to_string()))
    })
}

pub(super) fn deb_of(stanza: &str) -> Option<Deb> {
    Some(Deb {
        package: field(stanza, "Package")?.to_string(),
        version: field(stanza, "Version")?.to_string(),
        filename: field(stanza, "Filename")?.to_string(),
        sha256: field(stanza, "SHA256")?.to_string(),
    })
}

/// Makes sure every package file is in `dir` and intact, downloading what is not;
/// returns their paths in the order of `debs`.
pub fn fetch(b: &mut Build, debs: &[Deb], dir: &Path) -> Result<Vec<PathBuf>, ImageError> {
    b.create_dir(dir)?;
    // One downloader at a time: two test processes may need the same files.
    let _lock = b.io(dir, Lock::exclusive(&dir.join(".lock")))?;
    remove_partial_downloads(b, dir)?;
    debs.iter().map(|deb| fetch_one(b, deb, dir)).collect()
}

/// Private download directories that a killed build left behind; holding the lock
/// means no live download owns one.
fn remove_partial_downloads(b: &Build, dir: &Path) -> Result<(), ImageError> {
    for entry in b.io(dir, fs::read_dir(dir))? {
        let path = b.io(dir, entry)?.path();
        let partial = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".download-"));
        if partial && path.is_dir() {
            b.io(&path, fs::remove_dir_all(&path))?;
        }
    }
    Ok(())
}

fn fetch_one(b: &mut Build, deb: &Deb, dir: &Path) -> Result<PathBuf, ImageError> {
    let path = dir.join(deb.file_name());
    if path.exists() && b.io(&path, sha256_of(&path))? == deb.sha256 {
        return Ok(path);
    }
    // The same download in a cache restored read-only (crate::cache), if it checks out.
    for other in crate::cache::read_only_dirs() {
        let Some(sub) = dir.strip_prefix(crate::cache::cache_dir()).ok() else { break };
        let there = other.join(sub).join(deb.file_name());
        if there.is_file() && sha256_of(&there).is_ok_and(|sum| sum == deb.sha256) {
            return Ok(there);
        }
    }
    // apt-get download names files after the version (with `%3a` for an epoch's
    // colon); a private directory makes the one new file easy to find.
    let partial = dir.join(format!(".download-{}", std::process::id()));
    b.create_dir(&partial)?;
    b.run(
        Command::new("apt-get")
            .args(["download", &format!("{}={}", deb.package, deb.version)])
            .current_dir(&partial),
    )?;
    let got = single_deb(b, &partial)?;
    let sum = b.io(&got, sha256_of(&got))?;
    if sum != deb.sha256 {
        return Err(b.content(format!(
            "{} has SHA-256 {sum}, the archive says {}",
            got.display(),
            deb.sha256
        )));
    }
    b.io(&path, fs::rename(&got, &path))?;
    b.io(&partial, fs::remove_dir_all(&partial))?;
    Ok(path)
}

fn single_deb(b: &Build, dir: &Path) -> Result<PathBuf, ImageError> {
    let entries = b.io(dir, fs::read_dir(dir))?;
    let debs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    match debs.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(b.content(format!("expected one .deb in {}, found {}", dir.display(), debs.len()))),
    }
}

pub(super) fn sha256_of(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(hex::encode(hasher.finalize())),
            n => hasher.update(&buf[..n]),
        }
    }
}

/// Unpacks every package into `root` (no maintainer scripts run: only files are used).
pub fn unpack(b: &mut Build, debs: &[PathBuf], root: &Path) -> Result<(), ImageError> {
    b.create_dir(root)?;
    for deb in debs {
        b.run(Command::new("dpkg").arg("-x").arg(deb).arg(root))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "Package: linux-image-amd64\n\
Source: linux-signed-amd64 (6.1.192+2)\n\
Version: 6.1.192-2\n\
Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)\n\
Filename: pool/main/l/linux-signed-amd64/linux-image-amd64_6.1.192-2_amd64.deb\n\
SHA256: 0123\n\
\n\
Package: busybox-static\n\
Version: 1:1.35.0-4+deb12u1+b1\n\
Filename: pool/main/b/busybox/busybox-static_1.35.0-4+deb12u1+b1_amd64.deb\n\
SHA256: abcd\n\
Description-md5: ff\n\
\n";

    #[test]
    fn splits_and_reads_apt_cache_show() {
        let s = stanzas(SHOW);
        assert_eq!(s.len(), 2);
        let busybox = deb_of(&s[1]).unwrap();
        assert_eq!(busybox.package, "busybox-static");
        assert_eq!(busybox.version, "1:1.35.0-4+deb12u1+b1");
        assert_eq!(busybox.sha256, "abcd");
        assert_eq!(busybox.file_name(), "busybox-static_1.35.0-4+deb12u1+b1_amd64.deb");
    }

    #[test]
    fn follows_the_kernel_metapackage() {
        let s = stanzas(SHOW);
        let deps = field(&s[0], "Depends").unwrap();
        assert_eq!(
            pinned_dependency(deps, "linux-image-"),
            Some(("linux-image-6.1.0-56-amd64".into(), "6.1.192-2".into()))
        );
        assert_eq!(pinned_dependency("initramfs-tools | dracut", "linux-"), None);
        assert_eq!(pinned_dependency("linux-image-6.1.0-56-amd64", "linux-"), None);
    }

    #[test]
    fn a_field_name_must_match_whole() {
        let stanza = "Package: x\nSHA256sum: no\nSHA256: yes\n";
        assert_eq!(field(stanza, "SHA256"), Some("yes"));
    }
}
