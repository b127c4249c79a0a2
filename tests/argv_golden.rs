//! Golden tests of the QEMU command line for every shipped profile (and one profile
//! that uses every device group). The argv builder is pure, so the same profile and
//! host facts always give the same argv; a change shows up as a diff of these files.
//! `BOOTPROOF_BLESS=1 cargo test --test argv_golden` rewrites them after a deliberate
//! change.

use std::path::{Path, PathBuf};

use bootproof::host::accel::Accel;
use bootproof::host::ovmf::FirmwarePair;
use bootproof::profile::{self, Profile};
use bootproof::vm::argv::argv;
use bootproof::vm::plan::{HostFacts, Image, Plan, ShareSecurity};
use bootproof::vm::rundir::RunLayout;

fn host(profile: &Profile) -> HostFacts {
    let sb = matches!(profile.firmware, profile::Firmware::UefiSecureBoot);
    let firmware = profile.firmware.is_uefi().then(|| FirmwarePair {
        code: if sb { "/fw/OVMF_CODE_4M.ms.fd" } else { "/fw/OVMF_CODE_4M.fd" }.into(),
        vars: if sb { "/fw/OVMF_VARS_4M.ms.fd" } else { "/fw/OVMF_VARS_4M.fd" }.into(),
        secure_boot: sb,
        requires_smm: sb,
        source: "golden".into(),
    });
    HostFacts {
        qemu: "/usr/bin/qemu-system-x86_64".into(),
        accel: Accel::Tcg,
        firmware,
        share_security: ShareSecurity::MappedXattr,
        kernel_vsock: false,
    }
}

fn golden(name: &str, profile: &Profile, image: &Image) {
    golden_on(name, profile, image, &host(profile));
}

fn golden_on(name: &str, profile: &Profile, image: &Image, host: &HostFacts) {
    let layout = RunLayout::at("/run/bootproof/r1");
    let plan = Plan::new(profile, Some(image), host, &layout).unwrap();
    let args: Vec<String> = argv(&plan).iter().map(|a| a.to_string_lossy().into_owned()).collect();
    // One option per line, so a diff shows exactly which device group changed.
    let mut text = String::new();
    for a in &args {
        if a.starts_with('-') && !text.is_empty() {
            text.push('\n');
        } else if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(a);
    }
    text.push('\n');
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.argv"));
    if std::env::var("BOOTPROOF_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&file, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e}; run with BOOTPROOF_BLESS=1 to create it", file.display()));
    assert_eq!(text, expected, "argv of {name} changed; if that is intended, rerun with BOOTPROOF_BLESS=1");
}

#[test]
fn every_shipped_profile_has_a_golden_argv() {
    let names = profile::shipped_names();
    assert!(names.len() >= 5, "{names:?}");
    for name in names {
        let p = profile::resolve(&name).unwrap();
        let image = Image::Disk { path: "/images/guest.qcow2".into(), format: None };
        golden(&name, &p, &image);
    }
}

#[test]
fn every_device_group_has_a_golden_argv() {
    let p = Profile::parse(
        r#"
        name = "everything"
        memory = "2G"
        cpus = 2
        firmware = "uefi"
        tpm = "2.0"
        display = "none"
        allow_reboot = true
        cdrom = "/isos/extra,with,commas.iso"
        extra_args = ["-rtc", "base=utc"]
        [[disk]]
        path = "/images/data.raw"
        format = "raw"
        interface = "nvme"
        [[disk]]
        path = "/images/scsi.qcow2"
        interface = "scsi"
        [[disk]]
        path = "/images/old.raw"
        interface = "ide"
        [kernel]
        kernel = "/boot/vmlinuz"
        initrd = "/boot/initrd.img"
        append = "console=ttyS0 quiet"
        [[share]]
        tag = "input"
        path = "/srv/input"
        [[share]]
        tag = "output"
        path = "/srv/out"
        readonly = false
        "#,
        Path::new("everything.toml"),
    )
    .unwrap();
    golden("everything-installer-iso", &p, &Image::Iso { path: "/isos/installer.iso".into() });
}

#[test]
fn every_agent_transport_has_a_golden_argv() {
    let image = Image::Disk { path: "/images/guest.qcow2".into(), format: None };
    for agent in ["auto", "qga", "shell", "vsock"] {
        let p =
            Profile::parse(&format!("name = \"agent-{agent}\"\nagent = \"{agent}\"\n"), Path::new("a.toml"))
                .unwrap();
        golden(&format!("agent-{agent}"), &p, &image);
    }
    // With /dev/vhost-vsock the kernel's device serves vsock (not available here).
    let p =
        Profile::parse("name = \"agent-vsock-kernel\"\nagent = \"vsock\"\n", Path::new("a.toml")).unwrap();
    let kernel = HostFacts { kernel_vsock: true, ..host(&p) };
    golden_on("agent-vsock-kernel", &p, &image, &kernel);
}

#[test]
fn a_share_tag_clash_with_the_run_share_is_refused() {
    let p = Profile::parse("[[share]]\ntag = \"bootproof\"\npath = \"/x\"\n", Path::new("p.toml")).unwrap();
    let e = Plan::new(&p, None, &host(&p), &RunLayout::at("/r")).unwrap_err().to_string();
    assert!(e.contains("`bootproof` is used twice"), "{e}");
}
