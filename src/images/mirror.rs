//! The local Debian mirror that `reference:installer` installs from: the udebs anna
//! fetches for the netboot installer and the debs debootstrap, base-installer, pkgsel
//! and grub-installer put on the target, with indexes d-i and debootstrap accept,
//! built from Debian's packages and cached by recipe hash like the images.
//!
//! **Packages.** A private apt configuration under `cache_dir()/installer/apt/`
//! (its own sources list, lists, package cache and an empty dpkg status; the host's
//! apt configuration is read, never changed) adds `main/debian-installer` to the
//! host's own Debian archive. Its lists are refreshed when the host's are newer
//! (after an `apt-get update`) or missing.
//!
//! - Udebs: those anna installs by itself (Priority standard or higher) and the
//!   optional ones this install's answers need ([`EXTRA_UDEBS`]: crypto, LVM, btrfs,
//!   ESP), with their dependencies, minus what the netboot initrd already holds.
//!   Kernel-module udebs only for the netboot kernel's release (the ABI read from its
//!   boot header): the index carries two ABIs while the archive moves.
//! - Debs: what debootstrap selects (Priority required and important) plus
//!   [`TARGET_PACKAGES`] (kernel, grub for UEFI and the signed chain grub-installer
//!   adds, cryptsetup, LVM, btrfs, the guest agent, sudo, what base-installer and the
//!   finish hooks install), with their dependency closure as apt resolves it against
//!   the empty status. No recommends; no popularity-contest, so pkgsel's attempt to
//!   install it fails quietly (as pkgsel allows) and no popcon is configured.
//!
//! **Indexes.** `apt-ftparchive` writes `main/binary-amd64/Packages(.gz)`,
//! `main/debian-installer/binary-amd64/Packages(.gz)` and `dists/bookworm/Release`,
//! with an override file taken from Debian's own index, so every package keeps the
//! Priority and Section Debian gives it (debootstrap selects by Priority). The files
//! keep their pool paths.
//!
//! **Signature.** The Release is signed (`InRelease`, `Release.gpg`) with a key of
//! bootproof's own, made once per cache ([`signing_key`]), and the installer trusts
//! it: the ISO's second initrd adds it to d-i's `/usr/share/keyrings/archive.gpg`
//! (net-retriever and debootstrap check against that file) and a base-installer hook
//! copies it into the target's `/etc/apt/trusted.gpg.d/` before base-installer runs
//! `apt-get update` there. The unsigned way d-i documents,
//! `debian-installer/allow_unauthenticated`, gets through net-retriever and
//! debootstrap but not bookworm's apt in the target: `apt-get update` refuses an
//! unsigned repository even with `APT::Get::AllowUnauthenticated` (measured with
//! apt 2.6.1 against this mirror: "The repository ... is not signed"), and the
//! kernel cannot be installed from lists apt will not read.
//!
//! **What the archive does not serve.** A file the archive answers with 404 is not
//! fatal to the build: the mirror is written without it and the file names are
//! listed in `missing.txt`, in [`Mirror::missing`] and on the progress output every
//! time the mirror is used. An installer run on an incomplete mirror is doomed:
//! callers check [`Mirror::complete`] first. The build stays cached like a complete
//! one (replacing a mirror a running install reads from would break that install);
//! `build(force = true)` (`bootproof installer mirror --rebuild`) tries the
//! downloads again, and a change in the archive makes a new recipe hash anyway.
//!
//! Cache: `images/mirror-<hash>/` holds `debian/` (served at `/debian`),
//! `manifest.txt`, `missing.txt` and `build.log`; package files are kept in
//! `installer/archives/` across builds. `<hash>` covers [`VERSION`], the
//! netboot package, the kernel release and every resolved file's SHA-256.
//!
//! Must not: download anything but Debian packages through apt, or write outside the
//! cache.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::ImageError;
use super::build::{self, Build};
use super::debs::{self, Deb};
use super::netboot::{self, Facts};
use crate::host::setup::{self, Requirement};

pub const NAME: &str = "mirror";
/// Bump when the steps change in a way the fingerprint does not show.
pub const VERSION: u32 = 6;
/// The suite the mirror presents, whatever suites its files came from.
pub const SUITE: &str = "bookworm";
/// Written last into every build: its presence makes the build cached.
const MANIFEST: &str = "manifest.txt";
/// The user id of the mirror's signing key.
const KEY_UID: &str = "bootproof installer mirror (test key, made on this host)";

/// Optional-priority udebs this install needs besides what anna takes by itself;
/// `{abi}` is the netboot kernel's release.
pub const EXTRA_UDEBS: &[&str] = &[
    "partman-crypto",
    "partman-crypto-dm",
    "partman-auto-crypto",
    "partman-lvm",
    "partman-auto-lvm",
    "partman-btrfs",
    "partman-efi",
    "cryptsetup-udeb",
    "lvm2-udeb",
    "btrfs-progs-udeb",
    "dosfstools-udeb",
    "crypto-dm-modules-{abi}-di",
    "crypto-modules-{abi}-di",
    "md-modules-{abi}-di",
    "btrfs-modules-{abi}-di",
    "efi-modules-{abi}-di",
];

/// Standard-priority udebs left out of the mirror: anna loads every standard udeb
/// its index lists, about 2 s each under TCG (measured: 28 udebs in 65 s, whatever
/// their size), and these serve hardware or methods this install never uses (no
/// ISO 9660, IDE, PCMCIA or FireWire storage, JFS or XFS, iSCSI, ChromeOS,
/// kickstart files). Nothing else in the mirror depends on them (the manifest lists
/// unresolved dependencies: cdrom-core-modules stays because other udebs need it).
pub const EXCLUDED_UDEBS: &[&str] = &[
    "isofs-modules-{abi}-di",
    "firewire-core-modules-{abi}-di",
    "pata-modules-{abi}-di",
    "pcmcia-storage-modules-{abi}-di",
    "jfs-modules-{abi}-di",
    "xfs-modules-{abi}-di",
    "partman-jfs",
    "partman-xfs",
    "partman-iscsi",
    "partman-cros",
    "depthcharge-tools-installer",
    "kickseed-common",
    "nobootloader",
];

/// Debs beyond debootstrap's Priority required + important selection: what
/// base-installer (kernel, initramfs-tools, busybox, zstd), partman's finish hooks
/// (cryptsetup-initramfs, lvm2, btrfs-progs), grub-installer on UEFI (grub-efi-amd64,
/// and the signed shim and grub it adds on amd64), localechooser and console-setup's
/// finish hook, user-setup (sudo) and pkgsel's include put on the target.
pub const TARGET_PACKAGES: &[&str] = &[
    // debootstrap adds it to its selection for a merged /usr (found by running
    // debootstrap --print-debs against the mirror: tests/installer_images.rs).
    "usr-is-merged",
    "linux-image-amd64",
    "initramfs-tools",
    "busybox",
    "zstd",
    "grub-efi-amd64",
    "grub-efi-amd64-signed",
    "shim-signed",
    "efibootmgr",
    "os-prober",
    "cryptsetup",
    "cryptsetup-initramfs",
    "lvm2",
    "btrfs-progs",
    "dosfstools",
    "qemu-guest-agent",
    "sudo",
    "locales",
    "console-setup",
    "keyboard-configuration",
];

/// apt's selector for what debootstrap installs.
const DEBOOTSTRAP_SELECTION: &str = "?or(?priority(required),?priority(important))";

/// A built mirror.
#[derive(Debug, Clone)]
pub struct Mirror {
    /// The directory served at `/debian` (holds `dists/` and `pool/`).
    pub root: PathBuf,
    /// The netboot kernel's release the module udebs match.
    pub kernel_release: String,
    pub udebs: Vec<Deb>,
    pub debs: Vec<Deb>,
    /// Pool paths the archive did not serve; empty for a usable mirror.
    pub missing: Vec<String>,
}

impl Mirror {
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// What a build of the mirror would contain, resolved against the archive now.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub facts: Facts,
    pub udebs: Vec<Deb>,
    pub debs: Vec<Deb>,
    /// `(package, priority, section)` for the override file.
    pub overrides: Vec<(String, String, String)>,
    /// Dependencies of the selected udebs that nothing in the index or initrd provides.
    pub unresolved: Vec<String>,
    /// The key the Release is signed with.
    pub key: SigningKey,
}

/// The mirror's signing key: a GnuPG home under `cache_dir()/installer/key/` and its
/// public key, exported as a binary keyring (what gpgv and apt read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub home: PathBuf,
    pub public: PathBuf,
    pub fingerprint: String,
}

/// Copies the signing key of a cache restored read-only (crate::cache) to `dir`, so
/// the mirror and ISO built with it there (whose hashes cover its fingerprint) stay
/// valid and a rebuild signs with the same key; gpg needs its home writable.
fn adopt_read_only_key(dir: &Path) -> std::io::Result<()> {
    let relative = dir.strip_prefix(crate::cache::cache_dir()).expect("under the cache");
    let Some(source) = crate::cache::read_only_dirs()
        .into_iter()
        .map(|ro| ro.join(relative))
        .find(|d| d.join("bootproof-mirror.gpg").is_file())
    else {
        return Ok(());
    };
    let _ = std::fs::remove_dir_all(dir);
    copy_tree(&source, dir)
}

/// Copies regular files and directories (gpg's sockets and locks are left behind).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() && !entry.file_name().to_string_lossy().ends_with(".lock") {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The mirror's signing key, made on first use (ed25519, no passphrase, no expiry:
/// it signs a test mirror that only one guest behind `guestfwd` ever reads).
pub fn signing_key() -> Result<SigningKey, ImageError> {
    let dir = crate::cache::cache_dir().join("installer").join("key");
    let key = SigningKey {
        home: dir.join("gnupg"),
        public: dir.join("bootproof-mirror.gpg"),
        fingerprint: String::new(),
    };
    let fingerprint = |home: &Path| -> Option<String> {
        let out = gpg(home).args(["--with-colons", "--list-secret-keys"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').find(|f| !f.is_empty()))
            .map(str::to_string)
    };
    let err = |message: String| ImageError::Resolve { image: NAME.into(), message };
    // Two processes making a key at once would sign the mirror and the ISO with
    // different keys.
    std::fs::create_dir_all(dir.parent().expect("under the cache")).map_err(|e| err(e.to_string()))?;
    let lock_path = dir.with_extension("lock");
    let _lock =
        build::Lock::exclusive(&lock_path).map_err(|e| err(format!("{}: {e}", lock_path.display())))?;
    if !key.public.is_file() {
        adopt_read_only_key(&dir)
            .map_err(|e| err(format!("copying the signing key from a read-only cache: {e}")))?;
    }
    let existing = fingerprint(&key.home);
    // Listing secret keys starts gpg's agent too.
    stop_agent(&key.home);
    if let (Some(fpr), true) = (existing, key.public.is_file()) {
        return Ok(SigningKey { fingerprint: fpr, ..key });
    }
    setup::ensure(&[super::media::tools::GPG, super::media::tools::GPG_AGENT, super::media::tools::GPGCONF])
        .map_err(|source| ImageError::Setup { image: NAME.into(), source })?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&key.home).map_err(|e| err(format!("{}: {e}", key.home.display())))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&key.home, std::fs::Permissions::from_mode(0o700));
    let made = gpg(&key.home)
        .args(["--passphrase", "", "--quick-gen-key", KEY_UID, "ed25519", "sign", "never"])
        .output()
        .map_err(|e| err(format!("cannot run gpg: {e}")))?;
    let exported = gpg(&key.home).args(["--export", "--output"]).arg(&key.public).output();
    stop_agent(&key.home);
    if !made.status.success() || !exported.is_ok_and(|o| o.status.success()) {
        return Err(err(format!(
            "making the mirror's signing key with gpg failed: {}",
            String::from_utf8_lossy(&made.stderr).trim()
        )));
    }
    let fpr = fingerprint(&key.home).ok_or_else(|| err("gpg made no key".into()))?;
    stop_agent(&key.home);
    Ok(SigningKey { fingerprint: fpr, ..key })
}

/// gpg on a private home, never asking anything.
fn gpg(home: &Path) -> Command {
    let mut cmd = Command::new("gpg");
    cmd.arg("--homedir").arg(home).args(["--batch", "--yes", "--pinentry-mode", "loopback"]);
    cmd
}

/// gpg starts an agent for its home; it must not outlive the build.
fn stop_agent(home: &Path) {
    let _ = Command::new("gpgconf").arg("--homedir").arg(home).args(["--kill", "gpg-agent"]).output();
}

/// Builds (or finds in the cache) the mirror, printing progress on stderr.
pub fn ensure() -> Result<Mirror, ImageError> {
    build(false, &mut |line| crate::reporter::line(format!("bootproof: {line}")))
}

/// Like [`ensure`], with `force` to rebuild and `progress` receiving each step.
pub fn build(force: bool, progress: &mut dyn FnMut(&str)) -> Result<Mirror, ImageError> {
    let resolved = resolve(progress)?;
    let hash = hash(&resolved);
    let manifest_path = super::cached_or_build(NAME, &hash, MANIFEST, force, |images| {
        let dir = build::temp_dir(images, NAME, &hash);
        let mut b = Build::start(NAME, dir, 5, progress)?;
        b.step("checking host tools");
        setup::ensure(&requirements()).map_err(|source| ImageError::Setup { image: NAME.into(), source })?;
        let missing = build_unlocked(&mut b, &resolved)?;
        b.write(&b.dir().join("missing.txt"), missing.join("\n"))?;
        b.write(&b.dir().join(MANIFEST), manifest(&resolved, &missing))?;
        let dest = build::final_dir(images, NAME, &hash);
        b.finish(&dest)?;
        Ok(dest.join(MANIFEST))
    })?;
    let dir = manifest_path.parent().expect("the manifest is in the build's directory").to_path_buf();
    let missing: Vec<String> = std::fs::read_to_string(dir.join("missing.txt"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if !missing.is_empty() {
        progress(&format!(
            "reference:{NAME}: the archive did not serve {} file(s) the installer needs: {}",
            missing.len(),
            missing.join(" ")
        ));
    }
    Ok(Mirror {
        root: dir.join("debian"),
        kernel_release: resolved.facts.kernel_release.clone(),
        udebs: resolved.udebs,
        debs: resolved.debs,
        missing,
    })
}

/// Host tools the build runs.
pub fn requirements() -> Vec<Requirement> {
    vec![
        super::media::tools::APT_FTPARCHIVE,
        super::media::tools::GPG,
        super::media::tools::GPG_AGENT,
        super::media::tools::GPGCONF,
        Requirement::command("gzip", "gzip", "gzip", "compressing the mirror's indexes"),
        Requirement::command("dpkg-deb", "dpkg", "dpkg", "reading the netboot installer"),
        super::media::tools::CPIO,
    ]
}

/// The private apt configuration: its directories and the options that point apt
/// at them.
struct PrivateApt {
    dir: PathBuf,
}

impl PrivateApt {
    fn new() -> PrivateApt {
        PrivateApt { dir: crate::cache::cache_dir().join("installer").join("apt") }
    }

    fn options(&self) -> Vec<String> {
        let d = |p: &str| self.dir.join(p).display().to_string();
        [
            format!("Dir::Etc::SourceList={}", d("sources.list")),
            format!("Dir::Etc::SourceParts={}", d("sources.list.d")),
            format!("Dir::State::Lists={}", d("lists")),
            format!("Dir::State::status={}", d("status")),
            format!("Dir::Cache={}", d("cache")),
            // Resolution only: downloads go through `apt-get download` elsewhere.
            format!("Dir::Cache::Archives={}", d("cache/archives")),
            "APT::Architecture=amd64".to_string(),
            "APT::Architectures=amd64".to_string(),
            "APT::Install-Recommends=false".to_string(),
            "Acquire::Languages=none".to_string(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect()
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(self.options());
        cmd
    }

    /// Creates the directories and sources list, and refreshes the lists when the
    /// host's are newer or ours are missing.
    fn prepare(&self, progress: &mut dyn FnMut(&str)) -> Result<(), ImageError> {
        let io = |path: &Path, source| ImageError::Io {
            image: NAME.into(),
            step: "preparing the private apt configuration".into(),
            path: path.to_path_buf(),
            source,
        };
        for sub in ["sources.list.d", "lists/partial", "cache/archives/partial"] {
            let p = self.dir.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| io(&p, e))?;
        }
        let status = self.dir.join("status");
        if !status.exists() {
            std::fs::write(&status, "").map_err(|e| io(&status, e))?;
        }
        let list = self.dir.join("sources.list");
        let sources = sources_list(&host_sources());
        let changed = std::fs::read_to_string(&list).ok().as_deref() != Some(sources.as_str());
        if changed {
            std::fs::write(&list, &sources).map_err(|e| io(&list, e))?;
        }
        let stamp = self.dir.join("lists").join(".bootproof-updated");
        let ours = std::fs::metadata(&stamp).and_then(|m| m.modified()).ok();
        let host = std::fs::metadata("/var/lib/apt/lists").and_then(|m| m.modified()).ok();
        if changed || ours.is_none() || host > ours {
            progress(&format!("reference:{NAME}: updating the installer's package lists"));
            let out =
                self.command("apt-get").arg("update").output().map_err(|e| resolve_err(e.to_string()))?;
            if !out.status.success() {
                return Err(resolve_err(format!(
                    "`apt-get update` with bootproof's private apt configuration ({}) failed: {}",
                    self.dir.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            std::fs::write(&stamp, "").map_err(|e| io(&stamp, e))?;
        }
        Ok(())
    }

    /// Runs an apt command that answers on stdout.
    fn query(&self, program: &str, args: &[&str]) -> Result<String, ImageError> {
        let out = self.command(program).args(args).output().map_err(|e| resolve_err(e.to_string()))?;
        if !out.status.success() {
            return Err(resolve_err(format!(
                "`{program} {}` (private apt configuration) failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn resolve_err(message: String) -> ImageError {
    ImageError::Resolve { image: NAME.into(), message }
}

/// One Debian source the host's apt uses: `(uri, suite, signed_by)`.
type Source = (String, String, Option<String>);

/// The host's Debian sources for bookworm (main suite, updates, security) from
/// `/etc/apt/sources.list` and `sources.list.d` (one-line and deb822 forms).
fn host_sources() -> Vec<Source> {
    let mut texts = Vec::new();
    texts.push(std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    let mut parts: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "list" || x == "sources"))
        .collect();
    parts.sort();
    for p in parts {
        texts.push(std::fs::read_to_string(p).unwrap_or_default());
    }
    let mut sources: Vec<Source> = texts.iter().flat_map(|t| parse_sources(t)).collect();
    sources.dedup();
    sources
}

/// `(uri, suite, signed_by)` of every `deb` source for a bookworm suite with `main`.
fn parse_sources(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    let wanted = |suite: &str| [SUITE, "bookworm-updates", "bookworm-security"].contains(&suite);
    for line in text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("deb ") else { continue };
        let (options, rest) = match rest.trim().strip_prefix('[') {
            Some(r) => r.split_once(']').unwrap_or(("", "")),
            None => ("", rest),
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        let signed_by =
            options.split_whitespace().find_map(|o| o.strip_prefix("signed-by=")).map(str::to_string);
        if let [uri, suite, comps @ ..] = words.as_slice()
            && wanted(suite)
            && comps.contains(&"main")
        {
            out.push((uri.to_string(), suite.to_string(), signed_by));
        }
    }
    for stanza in text.split("\n\n") {
        let get = |k: &str| {
            stanza.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix(':')).map(|v| v.trim().to_string())
        };
        let types = get("Types").unwrap_or_default();
        if !types.split_whitespace().any(|t| t == "deb") || get("Enabled").as_deref() == Some("no") {
            continue;
        }
        let comps = get("Components").unwrap_or_default();
        if !comps.split_whitespace().any(|c| c == "main") {
            continue;
        }
        let signed_by = get("Signed-By").filter(|s| !s.contains('\n') && s.starts_with('/'));
        for uri in get("URIs").unwrap_or_default().split_whitespace() {
            for suite in get("Suites").unwrap_or_default().split_whitespace().filter(|s| wanted(s)) {
                out.push((uri.to_string(), suite.to_string(), signed_by.clone()));
            }
        }
    }
    out
}

/// The private sources list: the host's Debian sources, `main/debian-installer`
/// added to the main suite; Debian's own archive when the host names none.
fn sources_list(host: &[Source]) -> String {
    let fallback = [(
        "http://deb.debian.org/debian".to_string(),
        SUITE.to_string(),
        Some("/usr/share/keyrings/debian-archive-keyring.gpg".to_string()),
    )];
    let sources = if host.iter().any(|(_, s, _)| s == SUITE) { host } else { &fallback[..] };
    let mut text = String::from("# bootproof's private apt sources for the installer mirror (generated)\n");
    for (uri, suite, signed_by) in sources {
        let opts = signed_by.as_ref().map(|k| format!("[signed-by={k}] ")).unwrap_or_default();
        let comps = if suite == SUITE { "main main/debian-installer" } else { "main" };
        text.push_str(&format!("deb {opts}{uri} {suite} {comps}\n"));
    }
    text
}

/// Resolves the mirror's contents now (refreshing the private lists if needed).
pub fn resolve(progress: &mut dyn FnMut(&str)) -> Result<Resolved, ImageError> {
    let deb = netboot::resolve(NAME)?;
    let facts = netboot::facts(NAME, &deb, progress)?;
    let apt = PrivateApt::new();
    apt.prepare(progress)?;
    let index = udeb_index(&apt)?;
    let selection = select_udebs(&index, &facts, EXTRA_UDEBS, EXCLUDED_UDEBS).map_err(resolve_err)?;
    let mut names: Vec<&str> = vec![DEBOOTSTRAP_SELECTION];
    names.extend_from_slice(TARGET_PACKAGES);
    let mut args = vec!["--print-uris", "-y", "-qq", "install"];
    args.extend(&names);
    let uris = apt.query("apt-get", &args)?;
    let pinned = print_uris_packages(&uris);
    if pinned.is_empty() {
        return Err(resolve_err("apt resolved no target packages (are the private lists empty?)".into()));
    }
    let specs: Vec<String> = pinned.iter().map(|(p, v)| format!("{p}={v}")).collect();
    let mut show = vec!["show", "--no-all-versions"];
    show.extend(specs.iter().map(String::as_str));
    let stanzas = debs::stanzas(&apt.query("apt-cache", &show)?);
    let mut debs_out = Vec::new();
    let mut overrides = Vec::new();
    for s in &stanzas {
        let deb = debs::deb_of(s)
            .ok_or_else(|| resolve_err("apt-cache show printed a package without a file".into()))?;
        overrides.push(override_of(s, &deb.package));
        debs_out.push(deb);
    }
    if debs_out.len() != pinned.len() {
        return Err(resolve_err(format!(
            "apt-cache show answered {} of the {} target packages",
            debs_out.len(),
            pinned.len()
        )));
    }
    for u in &selection.udebs {
        overrides.push((u.deb.package.clone(), u.priority.clone(), u.section.clone()));
    }
    debs_out.sort_by(|a, b| a.package.cmp(&b.package));
    let key = signing_key()?;
    Ok(Resolved {
        facts,
        udebs: selection.udebs.iter().map(|u| u.deb.clone()).collect(),
        debs: debs_out,
        overrides,
        unresolved: selection.unresolved,
        key,
    })
}

fn override_of(stanza: &str, package: &str) -> (String, String, String) {
    let get = |k| debs::field(stanza, k).unwrap_or("optional").to_string();
    (package.to_string(), get("Priority"), debs::field(stanza, "Section").unwrap_or("misc").to_string())
}

/// `(package, version)` of every file an `apt-get --print-uris` run would fetch,
/// read from apt's local file names (`name_version_arch.deb`, epoch as `%3a`).
fn print_uris_packages(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| l.starts_with('\''))
        .filter_map(|l| {
            let file = l.split_whitespace().nth(1)?;
            let stem = file.strip_suffix(".deb")?;
            let mut parts = stem.splitn(3, '_');
            let (name, version) = (parts.next()?, parts.next()?);
            Some((name.to_string(), version.replace("%3a", ":")))
        })
        .collect()
}

/// The private lists' udeb index, read with apt's own helper (it decompresses
/// whatever format the lists are kept in).
fn udeb_index(apt: &PrivateApt) -> Result<Vec<Udeb>, ImageError> {
    let files = apt.query(
        "apt-get",
        &[
            "indextargets",
            "--format",
            "$(FILENAME)",
            "Identifier: Packages",
            "Component: main/debian-installer",
        ],
    )?;
    let file = files.lines().find(|l| !l.is_empty()).ok_or_else(|| {
        resolve_err("the private lists hold no main/debian-installer index for bookworm".into())
    })?;
    let out = Command::new("/usr/lib/apt/apt-helper")
        .args(["cat-file", file])
        .output()
        .map_err(|e| resolve_err(format!("cannot run apt-helper: {e}")))?;
    if !out.status.success() {
        return Err(resolve_err(format!("apt-helper cat-file {file} failed")));
    }
    Ok(debs::stanzas(&String::from_utf8_lossy(&out.stdout)).iter().filter_map(|s| Udeb::parse(s)).collect())
}

/// One udeb of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Udeb {
    pub deb: Deb,
    pub priority: String,
    pub section: String,
    /// Dependency groups; each is a list of alternatives, names only.
    pub depends: Vec<Vec<String>>,
    pub provides: Vec<String>,
    pub kernel_version: Option<String>,
}

impl Udeb {
    pub fn parse(stanza: &str) -> Option<Udeb> {
        let names = |k| -> Vec<String> {
            debs::field(stanza, k)
                .map(|v| v.split(',').map(|d| dep_name(d).to_string()).filter(|n| !n.is_empty()).collect())
                .unwrap_or_default()
        };
        let depends = debs::field(stanza, "Depends")
            .map(|v| v.split(',').map(|g| g.split('|').map(|a| dep_name(a).to_string()).collect()).collect())
            .unwrap_or_default();
        Some(Udeb {
            deb: debs::deb_of(stanza)?,
            priority: debs::field(stanza, "Priority").unwrap_or("optional").to_string(),
            section: debs::field(stanza, "Section").unwrap_or("debian-installer").to_string(),
            depends,
            provides: names("Provides"),
            kernel_version: debs::field(stanza, "Kernel-Version").map(str::to_string),
        })
    }
}

/// `name` of `name (>= 1) [amd64]`.
fn dep_name(dep: &str) -> &str {
    dep.split(['(', '[', ' ']).find(|s| !s.is_empty()).unwrap_or("").trim()
}

/// The udebs the mirror carries and the dependencies nothing satisfies.
#[derive(Debug)]
pub struct Selection<'a> {
    pub udebs: Vec<&'a Udeb>,
    pub unresolved: Vec<String>,
}

/// Selects the udebs anna will want: Priority standard or higher and `extra`
/// (`{abi}` replaced by the kernel release), with their dependencies, leaving out
/// what the initrd has, module udebs of other kernel releases and `excluded`. An
/// extra udeb that is not in the index is an error: the install would stop asking
/// for it.
pub fn select_udebs<'a>(
    index: &'a [Udeb],
    facts: &Facts,
    extra: &[&str],
    excluded: &[&str],
) -> Result<Selection<'a>, String> {
    let abi = &facts.kernel_release;
    let excluded: Vec<String> = excluded.iter().map(|e| e.replace("{abi}", abi)).collect();
    let usable: Vec<&Udeb> = index
        .iter()
        .filter(|u| u.kernel_version.as_deref().is_none_or(|k| k == abi))
        .filter(|u| !excluded.contains(&u.deb.package))
        .collect();
    let by_name: BTreeMap<&str, &Udeb> = usable.iter().map(|u| (u.deb.package.as_str(), *u)).collect();
    let mut providers: BTreeMap<&str, &Udeb> = BTreeMap::new();
    for u in &usable {
        for p in &u.provides {
            providers.entry(p.as_str()).or_insert(u);
        }
    }
    let installed: BTreeSet<&str> = facts.initrd_udebs.iter().map(String::as_str).collect();
    let mut queue: Vec<&Udeb> = usable
        .iter()
        .filter(|u| ["required", "important", "standard"].contains(&u.priority.as_str()))
        .copied()
        .collect();
    for name in extra.iter().map(|e| e.replace("{abi}", abi)) {
        queue.push(by_name.get(name.as_str()).copied().ok_or_else(|| {
            format!("the udeb index has no `{name}` (for kernel {abi}), which this install needs")
        })?);
    }
    let mut chosen: BTreeMap<&str, &Udeb> = BTreeMap::new();
    let mut unresolved = BTreeSet::new();
    while let Some(u) = queue.pop() {
        if installed.contains(u.deb.package.as_str()) || chosen.insert(u.deb.package.as_str(), u).is_some() {
            continue;
        }
        for group in &u.depends {
            if group.iter().any(|n| installed.contains(n.as_str()) || chosen.contains_key(n.as_str())) {
                continue;
            }
            match group.iter().find_map(|n| by_name.get(n.as_str()).or_else(|| providers.get(n.as_str()))) {
                Some(dep) => queue.push(dep),
                None => {
                    unresolved.insert(group.join(" | "));
                }
            }
        }
    }
    Ok(Selection { udebs: chosen.into_values().collect(), unresolved: unresolved.into_iter().collect() })
}

/// The cache key: what the mirror is made of.
pub fn hash(r: &Resolved) -> String {
    hex::encode(Sha256::digest(fingerprint(r).as_bytes()))[..16].to_string()
}

fn fingerprint(r: &Resolved) -> String {
    let mut text = format!(
        "version={VERSION}\nnetboot={} {}\nkernel={} {}\nkey={}\n",
        r.facts.deb.version,
        r.facts.deb.sha256,
        r.facts.kernel_release,
        r.facts.kernel_version,
        r.key.fingerprint
    );
    for d in r.udebs.iter().chain(&r.debs) {
        text.push_str(&format!("{} {} {}\n", d.package, d.version, d.sha256));
    }
    text
}

fn manifest(r: &Resolved, missing: &[String]) -> String {
    format!(
        "# bootproof installer mirror\nsuite={SUITE}\nkernel_release={}\nnetboot={} {}\nudebs={}\ndebs={}\n\
         missing={}\nunresolved_udeb_dependencies={}\n\n{}",
        r.facts.kernel_release,
        r.facts.deb.package,
        r.facts.deb.version,
        r.udebs.len(),
        r.debs.len(),
        missing.join(" "),
        r.unresolved.join(", "),
        fingerprint(r)
    )
}

/// Downloads what is missing from `installer/archives/`, lays out the pool and writes
/// the indexes; returns the pool paths the archive did not serve.
fn build_unlocked(b: &mut Build, r: &Resolved) -> Result<Vec<String>, ImageError> {
    let archives = crate::cache::cache_dir().join("installer").join("archives");
    let apt = PrivateApt::new();
    b.step("downloading udebs");
    let mut missing = download(b, &apt, &r.udebs, &archives)?;
    b.step("downloading debs");
    missing.extend(download(b, &apt, &r.debs, &archives)?);
    b.step("laying out the pool");
    let root = b.dir().join("debian");
    for deb in r.udebs.iter().chain(&r.debs).filter(|d| !missing.contains(&d.filename)) {
        let dest = root.join(&deb.filename);
        b.create_dir(dest.parent().expect("pool paths have directories"))?;
        let src = archives.join(deb.file_name());
        if std::fs::hard_link(&src, &dest).is_err() {
            b.io(&dest, std::fs::copy(&src, &dest))?;
        }
    }
    b.step("writing and signing the indexes");
    indexes(b, &root, &r.overrides)?;
    sign(b, &root.join("dists").join(SUITE), &r.key)?;
    Ok(missing)
}

/// Makes sure each file is in `archives` under its pool name with Debian's SHA-256,
/// downloading the others in one `apt-get download`; returns the pool paths of the
/// files the archive did not serve.
fn download(
    b: &mut Build,
    apt: &PrivateApt,
    files: &[Deb],
    archives: &Path,
) -> Result<Vec<String>, ImageError> {
    b.create_dir(archives)?;
    let _lock = b.io(archives, build::Lock::exclusive(&archives.join(".lock")))?;
    let mut wanted = Vec::new();
    for deb in files {
        let path = archives.join(deb.file_name());
        if !(path.exists() && b.io(&path, debs::sha256_of(&path))? == deb.sha256) {
            wanted.push(deb);
        }
    }
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let partial = archives.join(format!(".download-{}", std::process::id()));
    b.create_dir(&partial)?;
    let specs: Vec<String> = wanted.iter().map(|d| format!("{}={}", d.package, d.version)).collect();
    // A 404 makes apt exit non-zero after fetching the rest; what arrived is checked below.
    b.run_tolerant(apt.command("apt-get").arg("download").args(&specs).current_dir(&partial))?;
    let by_sum: BTreeMap<&str, &Deb> = wanted.iter().map(|d| (d.sha256.as_str(), *d)).collect();
    let mut arrived = BTreeSet::new();
    for entry in b.io(&partial, std::fs::read_dir(&partial))? {
        let path = b.io(&partial, entry)?.path();
        let sum = b.io(&path, debs::sha256_of(&path))?;
        let Some(deb) = by_sum.get(sum.as_str()) else {
            return Err(b.content(format!("{} matches no file the index names", path.display())));
        };
        b.io(&path, std::fs::rename(&path, archives.join(deb.file_name())))?;
        arrived.insert(deb.filename.as_str());
    }
    b.io(&partial, std::fs::remove_dir_all(&partial))?;
    Ok(wanted.iter().filter(|d| !arrived.contains(d.filename.as_str())).map(|d| d.filename.clone()).collect())
}

/// `dists/bookworm/` with both Packages indexes and the Release over them.
fn indexes(b: &mut Build, root: &Path, overrides: &[(String, String, String)]) -> Result<(), ImageError> {
    let override_file = b.dir().join("override");
    let text: String = overrides.iter().map(|(p, pri, sec)| format!("{p} {pri} {sec}\n")).collect();
    b.write(&override_file, text)?;
    let dists = root.join("dists").join(SUITE);
    // apt-ftparchive's `packages` scans debs and udebs alike; the two indexes are
    // its stanzas split by file name.
    let all = b.dir().join("Packages.all");
    b.run_to_file(
        Command::new("apt-ftparchive").args(["packages", "pool"]).arg(&override_file).current_dir(root),
        &all,
    )?;
    let text = b.io(&all, std::fs::read_to_string(&all))?;
    let (udebs, debs_only) = split_index(&text);
    for (component, stanzas) in [("main", debs_only), ("main/debian-installer", udebs)] {
        let dir = dists.join(component).join("binary-amd64");
        b.create_dir(&dir)?;
        let packages = dir.join("Packages");
        b.write(&packages, stanzas)?;
        b.run(Command::new("gzip").args(["-9nk"]).arg(&packages))?;
        b.write(&dir.join("Release"), component_release(component))?;
    }
    let release = b.dir().join("Release");
    let opt = |k: &str, v: &str| ["-o".to_string(), format!("APT::FTPArchive::Release::{k}={v}")];
    let mut cmd = Command::new("apt-ftparchive");
    for (k, v) in [
        ("Origin", "Debian"),
        ("Label", "Debian"),
        ("Suite", SUITE),
        ("Codename", SUITE),
        ("Architectures", "amd64"),
        ("Components", "main"),
        ("Description", "bootproof's local mirror for Debian's installer"),
    ] {
        cmd.args(opt(k, v));
    }
    b.run_to_file(cmd.arg("release").arg(&dists), &release)?;
    b.io(&release, std::fs::rename(&release, dists.join("Release")))
}

/// `InRelease` and `Release.gpg` over `dists/<suite>/Release`.
fn sign(b: &mut Build, dists: &Path, key: &SigningKey) -> Result<(), ImageError> {
    let release = dists.join("Release");
    let signed = b
        .run(
            gpg(&key.home)
                .arg("--local-user")
                .arg(&key.fingerprint)
                .arg("--clearsign")
                .arg("--output")
                .arg(dists.join("InRelease"))
                .arg(&release),
        )
        .and_then(|()| {
            b.run(
                gpg(&key.home)
                    .arg("--local-user")
                    .arg(&key.fingerprint)
                    .args(["--armor", "--detach-sign", "--output"])
                    .arg(dists.join("Release.gpg"))
                    .arg(&release),
            )
        });
    stop_agent(&key.home);
    signed
}

/// The per-component `Release` beside a Packages index, as Debian's archive has it:
/// choose-mirror reads `main/binary-amd64/Release` to decide whether the mirror
/// carries the installer's architecture (without it: "Architecture not supported",
/// measured).
fn component_release(component: &str) -> String {
    format!("Archive: {SUITE}\nOrigin: Debian\nLabel: Debian\nComponent: {component}\nArchitecture: amd64\n")
}

/// `(udeb stanzas, deb stanzas)` of an apt-ftparchive Packages text.
fn split_index(text: &str) -> (String, String) {
    let (mut udebs, mut debs_only) = (String::new(), String::new());
    for stanza in text.split("\n\n").map(str::trim).filter(|s| !s.is_empty()) {
        let is_udeb = debs::field(stanza, "Filename").is_some_and(|f| f.ends_with(".udeb"));
        let out = if is_udeb { &mut udebs } else { &mut debs_only };
        out.push_str(stanza);
        out.push_str("\n\n");
    }
    (udebs, debs_only)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udebs_and_debs_get_their_own_index() {
        let text = "Package: a\nFilename: pool/main/a/a_1_all.udeb\n\nPackage: b\nFilename: pool/main/b/b_1_amd64.deb\n\n";
        let (u, d) = split_index(text);
        assert_eq!(u, "Package: a\nFilename: pool/main/a/a_1_all.udeb\n\n");
        assert_eq!(d, "Package: b\nFilename: pool/main/b/b_1_amd64.deb\n\n");
    }

    fn udeb(name: &str, priority: &str, depends: &str, provides: &str, kernel: Option<&str>) -> Udeb {
        let mut s = format!(
            "Package: {name}\nVersion: 1\nPriority: {priority}\nSection: debian-installer\n\
             Filename: pool/main/x/{name}_1_all.udeb\nSHA256: {name}\n"
        );
        if !depends.is_empty() {
            s.push_str(&format!("Depends: {depends}\n"));
        }
        if !provides.is_empty() {
            s.push_str(&format!("Provides: {provides}\n"));
        }
        if let Some(k) = kernel {
            s.push_str(&format!("Kernel-Version: {k}\n"));
        }
        Udeb::parse(&s).unwrap()
    }

    fn facts() -> Facts {
        Facts {
            deb: Deb {
                package: "n".into(),
                version: "1".into(),
                filename: "p/n.deb".into(),
                sha256: "0".into(),
            },
            kernel_release: "6.1.0-50-amd64".into(),
            kernel_version: "6.1.176-1".into(),
            initrd_udebs: vec!["di-utils".into(), "libc6-udeb".into()],
        }
    }

    fn names(s: &Selection) -> Vec<String> {
        s.udebs.iter().map(|u| u.deb.package.clone()).collect()
    }

    #[test]
    fn standard_udebs_and_extras_with_dependencies_for_one_abi_minus_the_excluded() {
        let index = vec![
            udeb("partman-base", "standard", "di-utils, libc6-udeb (>= 2.36)", "", None),
            udeb(
                "partman-crypto",
                "optional",
                "partman-base, cryptsetup-udeb | cryptsetup-udeb-old",
                "",
                None,
            ),
            udeb("cryptsetup-udeb", "optional", "crypto-dm-modules", "", None),
            udeb(
                "crypto-dm-modules-6.1.0-47-amd64-di",
                "optional",
                "",
                "crypto-dm-modules",
                Some("6.1.0-47-amd64"),
            ),
            udeb(
                "crypto-dm-modules-6.1.0-50-amd64-di",
                "optional",
                "",
                "crypto-dm-modules",
                Some("6.1.0-50-amd64"),
            ),
            udeb("scsi-modules-6.1.0-47-amd64-di", "standard", "", "", Some("6.1.0-47-amd64")),
            udeb("scsi-modules-6.1.0-50-amd64-di", "standard", "", "", Some("6.1.0-50-amd64")),
            udeb("partman-jfs", "standard", "", "", None),
            udeb("xfs-modules-6.1.0-50-amd64-di", "standard", "", "", Some("6.1.0-50-amd64")),
            udeb("di-utils", "required", "", "", None),
        ];
        let s = select_udebs(&index, &facts(), &["partman-crypto"], &["partman-jfs", "xfs-modules-{abi}-di"])
            .unwrap();
        assert_eq!(
            names(&s),
            [
                "crypto-dm-modules-6.1.0-50-amd64-di",
                "cryptsetup-udeb",
                "partman-base",
                "partman-crypto",
                "scsi-modules-6.1.0-50-amd64-di"
            ]
        );
        assert!(s.unresolved.is_empty());
    }

    #[test]
    fn an_extra_missing_from_the_index_is_an_error_and_odd_dependencies_are_listed() {
        let index = vec![udeb("a", "standard", "ghost (>= 1)", "", None)];
        let s = select_udebs(&index, &facts(), &[], &[]).unwrap();
        assert_eq!(s.unresolved, ["ghost"]);
        let err = select_udebs(&index, &facts(), &["btrfs-modules-{abi}-di"], &[]).unwrap_err();
        assert!(err.contains("btrfs-modules-6.1.0-50-amd64-di"), "{err}");
    }

    #[test]
    fn print_uris_names_packages_and_versions() {
        let text = "'http://deb.debian.org/debian/pool/main/g/glibc/libc6_2.36-9%2bdeb12u14_amd64.deb' \
                    libc6_2.36-9+deb12u14_amd64.deb 2759320 MD5Sum:8d\n\
                    'http://x/pool/main/a/adduser/sudo_1%3a1.9_amd64.deb' sudo_1%3a1.9_amd64.deb 1 MD5Sum:0\n\
                    Need to get 0 B\n";
        assert_eq!(
            print_uris_packages(text),
            [("libc6".to_string(), "2.36-9+deb12u14".to_string()), ("sudo".to_string(), "1:1.9".to_string())]
        );
    }

    #[test]
    fn host_sources_in_both_formats() {
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n\
                      Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                      Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n";
        let list = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror/debian-security bookworm-security main\n\
                    deb http://other/ubuntu jammy main\n";
        let mut got = parse_sources(deb822);
        got.extend(parse_sources(list));
        let key = Some("/usr/share/keyrings/debian-archive-keyring.gpg".to_string());
        assert_eq!(
            got,
            [
                ("http://deb.debian.org/debian".into(), "bookworm".into(), key.clone()),
                ("http://deb.debian.org/debian".into(), "bookworm-updates".into(), key),
                ("http://mirror/debian-security".into(), "bookworm-security".into(), Some("/k.gpg".into())),
            ]
        );
        let text = sources_list(&got);
        assert!(text.contains("bookworm main main/debian-installer\n"), "{text}");
        assert!(text.contains("bookworm-updates main\n"), "{text}");
    }

    #[test]
    fn without_host_sources_debians_archive_is_used() {
        assert!(sources_list(&[]).contains(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main main/debian-installer"
        ));
    }
}
