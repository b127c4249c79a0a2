//! The reference installer's two builds, made for real from Debian's packages: the
//! local mirror (read back through bootproof's server with apt and debootstrap, which
//! check its signature against bootproof's key as the installer and the target do)
//! and the `reference:installer` ISO (its files, boot entry, kernel release and the
//! added initrd with 9p modules of the same kernel and the mirror's key).
//!
//! If Debian's archive does not serve every file, the mirror says which
//! (`Mirror::missing`); these checks hold for what it does carry and show that
//! nothing resolved went unaccounted. An install needs a complete mirror: that is
//! the installer scenario's business.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use bootproof::host::setup::{self, Requirement};
use bootproof::images::{self, ImageKind, installer_iso, mirror, netboot};
use bootproof::installer::{self, serve};

fn tools() {
    setup::ensure(&[
        Requirement::command("xorriso", "xorriso", "xorriso", "reading the ISO"),
        Requirement::command("cpio", "cpio", "cpio", "reading the added initrd"),
        Requirement::command("modinfo", "kmod", "kmod", "reading module version magic"),
        Requirement::command("debootstrap", "debootstrap", "debootstrap", "reading the mirror as d-i does"),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
}

fn built_mirror() -> mirror::Mirror {
    mirror::build(false, &mut |l| eprintln!("{l}")).unwrap_or_else(|e| panic!("{e}"))
}

/// `Package` → its stanza's fields, for one Packages file.
fn index(path: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.split("\n\n")
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let fields: BTreeMap<String, String> = s
                .lines()
                .filter_map(|l| l.split_once(": "))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            (fields["Package"].clone(), fields)
        })
        .collect()
}

#[test]
fn the_mirror_carries_the_abi_pinned_udebs_and_the_target_debs() {
    let m = built_mirror();
    let dists = m.root.join("dists/bookworm");
    let udebs = index(&dists.join("main/debian-installer/binary-amd64/Packages"));
    let debs = index(&dists.join("main/binary-amd64/Packages"));
    let abi = &m.kernel_release;

    let modules: Vec<&String> = udebs.keys().filter(|p| p.ends_with("-di")).collect();
    assert!(!modules.is_empty(), "no kernel-module udebs in the mirror");
    for name in &modules {
        assert!(name.ends_with(&format!("-{abi}-di")), "{name} is not for the installer's kernel {abi}");
        assert_eq!(udebs[*name]["Kernel-Version"], *abi, "{name}");
    }
    for wanted in ["crypto-dm-modules", "btrfs-modules", "scsi-modules"] {
        let name = format!("{wanted}-{abi}-di");
        assert!(udebs.contains_key(&name) || m.missing.iter().any(|f| f.contains(&name)), "{name}");
    }
    for wanted in mirror::TARGET_PACKAGES {
        assert!(debs.contains_key(*wanted), "{wanted} is not in the mirror's deb index");
    }
    // debootstrap selects by Priority: the index keeps Debian's.
    assert_eq!(debs["base-files"]["Priority"], "required");
    assert_eq!(debs["apt-utils"]["Priority"], "important");
    assert!(debs.values().all(|f| f["Filename"].ends_with(".deb")));
    assert!(udebs.values().all(|f| f["Filename"].ends_with(".udeb")));

    // Every resolved file is served with Debian's checksum, or named as missing.
    let listed: BTreeMap<&str, &str> =
        udebs.values().chain(debs.values()).map(|f| (f["Filename"].as_str(), f["SHA256"].as_str())).collect();
    for d in m.udebs.iter().chain(&m.debs) {
        match listed.get(d.filename.as_str()) {
            Some(sum) => assert_eq!(*sum, d.sha256, "{}", d.filename),
            None => {
                assert!(m.missing.contains(&d.filename), "{} is neither served nor named missing", d.filename)
            }
        }
        assert_eq!(m.root.join(&d.filename).is_file(), !m.missing.contains(&d.filename), "{}", d.filename);
    }
    assert_eq!(m.complete(), m.missing.is_empty());
    for f in ["InRelease", "Release.gpg", "main/binary-amd64/Packages.gz", "main/binary-amd64/Release"] {
        assert!(dists.join(f).is_file(), "{f}");
    }
}

/// The mirror's key where apt's unprivileged `_apt` user can read it (the cache
/// under root's home is not readable to it), with directories for a private apt.
fn apt_dir(m: &mirror::Mirror) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = dir.path().join("bootproof-mirror.gpg");
    std::fs::copy(mirror::signing_key().unwrap().public, &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    for d in ["lists/partial", "cache/archives/partial", "parts"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    std::fs::write(dir.path().join("status"), "").unwrap();
    let _ = m;
    (dir, key)
}

#[test]
fn apt_and_debootstrap_read_the_served_mirror_and_trust_its_signature() {
    tools();
    let m = built_mirror();
    let run = tempfile::tempdir().unwrap();
    let server =
        serve::Server::start(installer::roots(&m, run.path()), &run.path().join("http.log")).unwrap();
    let url = format!("{}/debian", server.url());
    let (apt, key) = apt_dir(&m);
    let a = |p: &str| apt.path().join(p).display().to_string();
    std::fs::write(
        apt.path().join("sources.list"),
        format!("deb [signed-by={}] {url} bookworm main main/debian-installer\n", key.display()),
    )
    .unwrap();
    let apt_cmd = |program: &str| {
        let mut c = Command::new(program);
        for (k, v) in [
            ("Dir::Etc::SourceList", a("sources.list")),
            ("Dir::Etc::SourceParts", a("parts")),
            ("Dir::State::Lists", a("lists")),
            ("Dir::State::status", a("status")),
            ("Dir::Cache", a("cache")),
        ] {
            c.arg("-o").arg(format!("{k}={v}"));
        }
        c
    };
    let update = apt_cmd("apt-get").arg("update").output().unwrap();
    let said = String::from_utf8_lossy(&update.stderr);
    assert!(update.status.success() && !said.contains("W:"), "apt-get update: {said}");
    let abi = &m.kernel_release;
    let show = apt_cmd("apt-cache")
        .args(["show", "qemu-guest-agent", "cryptsetup-initramfs", &format!("crypto-dm-modules-{abi}-di")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(show.status.success(), "{}", String::from_utf8_lossy(&show.stderr));
    assert_eq!(text.matches("\nPackage: ").count() + usize::from(text.starts_with("Package: ")), 3, "{text}");

    // debootstrap as base-installer runs it, against the installer's keyring.
    let target = run.path().join("target");
    let out = Command::new("debootstrap")
        .args(["--print-debs", &format!("--keyring={}", key.display()), "bookworm"])
        .arg(&target)
        .arg(&url)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "debootstrap: {stderr}");
    assert!(stderr.contains("Valid Release signature"), "{stderr}");
    let debs = index(&m.root.join("dists/bookworm/main/binary-amd64/Packages"));
    let selected: BTreeSet<&str> = stdout.split_whitespace().collect();
    assert!(selected.len() > 50, "debootstrap selected only {selected:?}");
    for p in &selected {
        assert!(debs.contains_key(*p), "debootstrap selects {p}, which the mirror lacks");
    }
    drop(server);
    let log = std::fs::read_to_string(run.path().join("http.log")).unwrap();
    assert!(log.contains(" GET /debian/dists/bookworm/InRelease 200 "), "{log}");
}

fn extract(iso: &Path, path: &str, dest: &Path) -> Vec<u8> {
    let out = Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(iso)
        .args(["-extract", path])
        .arg(dest)
        .output()
        .unwrap();
    assert!(out.status.success(), "xorriso -extract {path}: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(dest).unwrap()
}

#[test]
fn the_installer_iso_boots_debians_installer_with_our_modules_and_key() {
    tools();
    let iso = images::ensure("reference:installer").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(iso.kind, ImageKind::Iso);
    let facts = netboot::facts("installer", &netboot::resolve("installer").unwrap(), &mut |_| {}).unwrap();
    let work = tempfile::tempdir().unwrap();
    let w = |n: &str| work.path().join(n);

    let listing = Command::new("xorriso")
        .args(["-indev"])
        .arg(&iso.path)
        .args(["-find", "/", "-type", "f"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for f in [
        "/install.amd/vmlinuz",
        "/install.amd/initrd.gz",
        "/install.amd/bootproof-modules.cpio.gz",
        "/boot/grub/grub.cfg",
        "/efi.img",
    ] {
        assert!(listing.contains(&format!("'{f}'")), "{f} not in the ISO:\n{listing}");
    }
    let el_torito = Command::new("xorriso")
        .args(["-indev"])
        .arg(&iso.path)
        .args(["-report_el_torito", "plain"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&el_torito.stdout).contains("UEFI"), "no UEFI boot image");

    let grub = String::from_utf8(extract(&iso.path, "/boot/grub/grub.cfg", &w("grub.cfg"))).unwrap();
    assert_eq!(grub, installer_iso::grub_cfg());
    let linux = grub.lines().find(|l| l.trim_start().starts_with("linux ")).unwrap();
    for word in
        ["auto=true", "priority=critical", "url=http://10.0.2.100/d-i/preseed.cfg", "console=ttyS0,115200n8"]
    {
        assert!(linux.split_whitespace().any(|x| x == word), "{word} missing: {linux}");
    }

    let kernel = extract(&iso.path, "/install.amd/vmlinuz", &w("vmlinuz"));
    assert_eq!(
        netboot::kernel_release(&kernel),
        Some((facts.kernel_release.clone(), facts.kernel_version.clone())),
        "the ISO's kernel is the netboot package's"
    );
    let initrd = extract(&iso.path, "/install.amd/initrd.gz", &w("initrd.gz"));
    assert_eq!(&initrd[..2], &[0x1f, 0x8b], "Debian's initrd is gzip");

    extract(&iso.path, "/install.amd/bootproof-modules.cpio.gz", &w("modules.cpio.gz"));
    let root = w("added");
    std::fs::create_dir_all(&root).unwrap();
    let unpacked = Command::new("sh")
        .args(["-c", "gzip -dc \"$1\" | cpio -id --quiet", "sh"])
        .arg(w("modules.cpio.gz"))
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(unpacked.success());
    let moddir = root.join("lib/modules").join(&facts.kernel_release);
    for m in [
        "kernel/fs/9p/9p.ko",
        "kernel/net/9p/9pnet.ko",
        "kernel/net/9p/9pnet_virtio.ko",
        "kernel/net/9p/9pnet_fd.ko",
        "kernel/fs/netfs/netfs.ko",
        "kernel/fs/fscache/fscache.ko",
    ] {
        let path = moddir.join(m);
        let magic = Command::new("modinfo").args(["-F", "vermagic"]).arg(&path).output().unwrap();
        let magic = String::from_utf8_lossy(&magic.stdout);
        assert!(magic.starts_with(&format!("{} ", facts.kernel_release)), "{m}: vermagic {magic:?}");
    }
    let dep = std::fs::read_to_string(moddir.join("modules.dep")).unwrap();
    assert!(
        dep.lines().any(|l| l.starts_with("kernel/fs/9p/9p.ko: ") && l.contains("kernel/net/9p/9pnet.ko")),
        "modules.dep does not know 9p's dependencies"
    );
    assert!(dep.contains("kernel/drivers/char/virtio_console.ko:"), "d-i's own modules stay in the index");
    assert!(moddir.join("modules.dep.bin").is_file(), "modprobe reads modules.dep.bin");

    let key = std::fs::read(mirror::signing_key().unwrap().public).unwrap();
    let keyring = std::fs::read(root.join(installer_iso::INSTALLER_KEYRING)).unwrap();
    assert!(
        keyring.len() > key.len() && keyring.ends_with(&key),
        "the installer's keyring lacks the mirror key"
    );
    assert_eq!(std::fs::read(root.join(installer_iso::KEY_FILE)).unwrap(), key);
    let hook = root.join(installer_iso::KEY_HOOK.0);
    assert_eq!(std::fs::read_to_string(&hook).unwrap(), installer_iso::KEY_HOOK.1);
    assert_eq!(
        std::fs::metadata(&hook).unwrap().permissions().mode() & 0o111,
        0o111,
        "the hook is executable"
    );
}
