//! The QEMU command line of every shipped profile, every agent transport and one
//! profile that uses every device group, checked two ways:
//!
//! - `golden::<case>`: the argv as text against `tests/golden/<case>.argv`. The argv
//!   builder is pure, so the same profile and host facts always give the same argv and
//!   a change shows up as a diff of these files. `BOOTPROOF_BLESS=1 cargo test --test
//!   argv_golden` rewrites them after a deliberate change.
//! - `qemu::<case>`: text alone cannot tell whether QEMU accepts it (a golden file once
//!   blessed `-kernel` next to `bootindex=0`, which QEMU refuses). So the same case is
//!   planned again with its placeholder paths under a temporary directory that holds
//!   real files: the firmware pair, disk images made with qemu-img, a disc, the tiny
//!   guest's kernel and initramfs, share directories; `Vm::launch` adds the VARS copy,
//!   the overlays, listening sockets for the console, QMP and agent ports, and swtpm.
//!   QEMU starts paused (`-S`), so every device is realized but no guest code runs;
//!   QMP must report `prelaunch`, and QEMU must exit with status 0 on `quit`. The argv
//!   it ran, with the temporary directory taken out, must equal the golden file, so
//!   both checks are about the same command line.
//!
//! A case that needs a device this host lacks (`vhost-vsock-pci` without
//! `/dev/vhost-vsock`) is reported ignored, with the reason printed; run with
//! `--include-ignored` it fails, saying what is missing. QEMU cases run one at a time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};

use bootproof::host::accel::Accel;
use bootproof::host::ovmf::{self, FirmwarePair};
use bootproof::profile::{self, Firmware, Profile};
use bootproof::vm::argv::argv;
use bootproof::vm::plan::{Drive, Forward, HostFacts, Image, Plan, ShareSecurity};
use bootproof::vm::rundir::RunLayout;
use bootproof::vm::{Ending, Vm, VmOptions};

mod common;

/// The run directory every golden argv names.
const GOLDEN_RUN_DIR: &str = "/run/bootproof/r1";
/// The QEMU every golden argv names.
const GOLDEN_QEMU: &str = "/usr/bin/qemu-system-x86_64";
const KERNEL_VSOCK: &str = "/dev/vhost-vsock";

/// One golden case: what is planned, and what the host is said to offer.
struct Case {
    name: String,
    profile: Profile,
    image: Image,
    kernel_vsock: bool,
    /// `guestfwd`s the caller adds once its servers listen: `(guest port, host port)`.
    forwards: Vec<(u16, u16)>,
}

impl Case {
    fn new(name: impl Into<String>, profile: Profile, image: Image) -> Case {
        Case { name: name.into(), profile, image, kernel_vsock: false, forwards: Vec::new() }
    }

    fn plan(&self, host: &HostFacts, layout: &RunLayout) -> Result<Plan, Failed> {
        let mut plan =
            Plan::new(&self.profile, Some(&self.image), host, layout).map_err(|e| e.to_string())?;
        if let Some(net) = &mut plan.network {
            net.forwards.extend(self.forwards.iter().map(|&(port, host_port)| Forward { port, host_port }));
        }
        Ok(plan)
    }
}

/// Every case, with its input files under `root`: `""` for the golden text (so paths
/// read `/images/guest.qcow2`), a temporary directory for the real QEMU.
fn cases(root: &str) -> Vec<Case> {
    let guest = || Image::Disk { path: format!("{root}/images/guest.qcow2").into(), format: None };
    let mut cases: Vec<Case> = profile::shipped_names()
        .into_iter()
        .map(|name| Case::new(&name, profile::resolve(&name).unwrap(), guest()))
        .collect();
    let iso = || Image::Iso { path: format!("{root}/isos/installer.iso").into() };
    cases.push(Case::new("everything-installer-iso", everything(root), iso()));
    cases.push(Case::new("bios-installer-iso", legacy_ide(root), iso()));
    for agent in ["auto", "qga", "shell", "vsock"] {
        let name = format!("agent-{agent}");
        let profile =
            Profile::parse(&format!("name = \"{name}\"\nagent = \"{agent}\"\n"), Path::new("a.toml"));
        cases.push(Case::new(name, profile.unwrap(), guest()));
    }
    // With /dev/vhost-vsock the kernel's device serves vsock instead of vhost-device-vsock.
    let profile = Profile::parse("name = \"agent-vsock-kernel\"\nagent = \"vsock\"\n", Path::new("a.toml"));
    cases.push(Case { kernel_vsock: true, ..Case::new("agent-vsock-kernel", profile.unwrap(), guest()) });
    // An installer run: a blank target disk, the ISO, the restricted network with a
    // forward to a server of bootproof's, and two log ports.
    let mut installer = Case::new("installer-network", installer_network(), Image::Blank { bytes: 20 << 30 });
    installer.forwards = vec![(80, 39123)];
    installer.profile.cdrom = Some(format!("{root}/isos/installer.iso").into());
    cases.push(installer);
    // bootproof's own share server: no virtio-9p device; the guest finds the ports in
    // fw_cfg and reaches each server through a guestfwd running share-relay.
    let p9 = format!(
        "name = \"shares-p9\"\nshare_backend = \"p9\"\nshare_quota = \"64M\"\n\
         [[share]]\ntag = \"inputs\"\npath = \"{root}/inputs\"\n"
    );
    cases.push(Case::new("shares-p9", Profile::parse(&p9, Path::new("p.toml")).unwrap(), guest()));
    cases
}

/// The machine of an installer run.
fn installer_network() -> Profile {
    let text = r#"
        name = "installer-network"
        memory = "1536M"
        network = "restricted"
        allow_reboot = true
        end = "kill"
        [[log_port]]
        name = "org.fedoraproject.anaconda.log.0"
        file = "installer/virtio-log.txt"
        [[log_port]]
        name = "org.bootproof.installer.syslog.0"
        file = "installer/syslog"
        "#;
    Profile::parse(text, Path::new("installer-network.toml")).unwrap()
}

/// An installer's machine: booted from the installer's kernel with its ISO and a cdrom
/// attached, blank disks on every interface, shares, a TPM and extra arguments.
fn everything(root: &str) -> Profile {
    let text = r#"
        name = "everything"
        memory = "2G"
        cpus = 2
        firmware = "uefi"
        tpm = "2.0"
        display = "none"
        allow_reboot = true
        cdrom = "ROOT/isos/extra,with,commas.iso"
        extra_args = ["-rtc", "base=utc"]
        [[disk]]
        path = "ROOT/images/data.raw"
        format = "raw"
        interface = "nvme"
        [[disk]]
        path = "ROOT/images/scsi.qcow2"
        interface = "scsi"
        [[disk]]
        path = "ROOT/images/old.raw"
        interface = "ide"
        [kernel]
        kernel = "ROOT/boot/vmlinuz"
        initrd = "ROOT/boot/initrd.img"
        append = "console=ttyS0 quiet"
        [[share]]
        tag = "input"
        path = "ROOT/srv/input"
        [[share]]
        tag = "output"
        path = "ROOT/srv/out"
        readonly = false
        "#;
    Profile::parse(&text.replace("ROOT", root), Path::new("everything.toml")).unwrap()
}

/// A legacy machine with every IDE slot taken: pc's PIIX has two buses of two units.
fn legacy_ide(root: &str) -> Profile {
    let text = r#"
        name = "legacy-ide"
        machine = "pc"
        firmware = "bios"
        cdrom = "ROOT/isos/drivers.iso"
        [[disk]]
        path = "ROOT/images/legacy.qcow2"
        interface = "ide"
        [[disk]]
        path = "ROOT/images/second.raw"
        format = "raw"
        interface = "ide"
        "#;
    Profile::parse(&text.replace("ROOT", root), Path::new("legacy-ide.toml")).unwrap()
}

/// The host the golden files describe, its files under `root`.
fn golden_host(case: &Case, root: &str) -> HostFacts {
    let sb = matches!(case.profile.firmware, Firmware::UefiSecureBoot);
    let firmware = case.profile.firmware.is_uefi().then(|| FirmwarePair {
        code: format!("{root}/fw/{}", if sb { "OVMF_CODE_4M.ms.fd" } else { "OVMF_CODE_4M.fd" }).into(),
        vars: format!("{root}/fw/{}", if sb { "OVMF_VARS_4M.ms.fd" } else { "OVMF_VARS_4M.fd" }).into(),
        secure_boot: sb,
        requires_smm: sb,
        source: "golden".into(),
    });
    HostFacts {
        qemu: GOLDEN_QEMU.into(),
        accel: Accel::Tcg,
        firmware,
        share_security: ShareSecurity::MappedXattr,
        kernel_vsock: case.kernel_vsock,
        virtfs: true,
        share_backend_override: None,
        bootproof_program: Some("/usr/bin/bootproof".into()),
    }
}

/// One option per line, so a diff shows exactly which device group changed.
fn argv_text(plan: &Plan) -> String {
    let mut text = String::new();
    for a in argv(plan) {
        let a = a.to_string_lossy();
        if a.starts_with('-') && !text.is_empty() {
            text.push('\n');
        } else if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&a);
    }
    text.push('\n');
    text
}

fn golden_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.argv"))
}

fn read_golden(name: &str) -> Result<String, Failed> {
    let file = golden_file(name);
    std::fs::read_to_string(&file)
        .map_err(|e| format!("{}: {e}; run with BOOTPROOF_BLESS=1 to create it", file.display()).into())
}

/// The lines only one of `expected` and `actual` has, marked `-` and `+`.
fn diff(expected: &str, actual: &str) -> String {
    let only = |a: &str, b: &str, mark: char| {
        a.lines().filter(|l| !b.lines().any(|m| m == *l)).map(|l| format!("{mark} {l}\n")).collect::<String>()
    };
    format!("{}{}", only(expected, actual, '-'), only(actual, expected, '+'))
}

fn check_golden(case: &Case) -> Result<(), Failed> {
    let plan = case.plan(&golden_host(case, ""), &RunLayout::at(GOLDEN_RUN_DIR))?;
    let text = argv_text(&plan);
    if std::env::var("BOOTPROOF_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(golden_file(&case.name), &text).map_err(|e| e.to_string())?;
    }
    let expected = read_golden(&case.name)?;
    if text != expected {
        return Err(format!(
            "argv of {} changed; if that is intended, rerun with BOOTPROOF_BLESS=1\n{}",
            case.name,
            diff(&expected, &text)
        )
        .into());
    }
    Ok(())
}

/// QEMU cases one at a time: each is short, and the host is shared.
static ONE_QEMU: Mutex<()> = Mutex::new(());

fn start_paused(name: &str) -> Result<(), Failed> {
    let _one = ONE_QEMU.lock().unwrap_or_else(|p| p.into_inner());
    bootproof::host::ensure_runtime().map_err(|e| format!("host set-up: {e}"))?;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = tmp.path().to_str().ok_or("the temporary directory's path is not UTF-8")?.to_string();
    let case = cases(&root).into_iter().find(|c| c.name == name).expect("a known case");
    if case.kernel_vsock && !Path::new(KERNEL_VSOCK).exists() {
        return Err(not_run_reason(name).into());
    }
    let layout = RunLayout::create(&tmp.path().join(GOLDEN_RUN_DIR.trim_start_matches('/')))
        .map_err(|e| format!("run directory: {e}"))?;
    let mut host = golden_host(&case, &root);
    host.qemu = bootproof::host::qemu::info().map_err(|e| e.to_string())?.path;
    host.share_security = bootproof::vm::share::security_for(&layout.share_dir());
    host.bootproof_program = Some(env!("CARGO_BIN_EXE_bootproof").into());
    if let Some(fw) = &mut host.firmware {
        provide_firmware(&case.profile.firmware, fw)?;
    }
    let mut plan = case.plan(&host, &layout)?;
    provide_inputs(&plan, tmp.path())?;

    let ran = normalise(&argv_text(&plan), &root, &host);
    let golden = read_golden(name)?;
    if mask_cid(&ran) != mask_cid(&golden) {
        return Err(format!(
            "the argv started here is not the golden one (temporary directory {root} taken out):\n{}",
            diff(&golden, &ran)
        )
        .into());
    }

    plan.extra_args.push("-S".into());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(paused_then_quit(plan)).map_err(|e| {
        let log =
            |f: PathBuf| std::fs::read_to_string(&f).unwrap_or_else(|e| format!("({}: {e})", f.display()));
        format!("{e}\n--- qemu.log (QEMU's stdout and stderr):\n{}", log(layout.qemu_log())).into()
    })
}

/// Launches the paused VM, asks its state over QMP, and makes it quit.
async fn paused_then_quit(plan: Plan) -> Result<(), String> {
    let mut vm = Vm::launch(plan, VmOptions::default()).await.map_err(|e| format!("Vm::launch: {e}"))?;
    let status = vm.qmp().query_status().await.map_err(|e| format!("query-status: {e}"))?;
    if status != "prelaunch" && status != "paused" {
        return Err(format!("query-status said `{status}`; a QEMU started with -S is in `prelaunch`"));
    }
    vm.qmp().quit().await.map_err(|e| format!("quit: {e}"))?;
    match vm.wait_exit(Duration::from_secs(20)).await {
        Some(Ending::Exited { status: Some(0), .. }) => Ok(()),
        other => Err(format!("after `quit`, QEMU should exit with status 0; it ended {other:?}")),
    }
}

/// Copies the host's firmware pair to the names the golden files use, so that only the
/// temporary directory differs from the golden argv.
fn provide_firmware(wanted: &Firmware, fw: &mut FirmwarePair) -> Result<(), Failed> {
    let real = ovmf::resolve(wanted).map_err(|e| e.to_string())?.ok_or("UEFI firmware resolved to none")?;
    for (from, to) in [(&real.code, &fw.code), (&real.vars, &fw.vars)] {
        create_parent(to)?;
        std::fs::copy(from, to)
            .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))?;
    }
    fw.requires_smm = real.requires_smm;
    fw.secure_boot = real.secure_boot;
    Ok(())
}

/// Creates every file and directory the plan expects to exist: blank disk images of
/// the plan's formats, a disc (QEMU reads none of it before the guest does), the tiny
/// guest's kernel and initramfs, and the shares' directories.
fn provide_inputs(plan: &Plan, root: &Path) -> Result<(), Failed> {
    let qemu_img = bootproof::host::setup::find_command("qemu-img").ok_or("qemu-img not found on PATH")?;
    for drive in &plan.drives {
        match drive {
            Drive::Disk { base, base_format, .. } => {
                let format = base_format.map_or_else(
                    || if base.extension().is_some_and(|x| x == "raw") { "raw" } else { "qcow2" },
                    |f| f.as_str(),
                );
                create_parent(base)?;
                let out = Command::new(&qemu_img)
                    .args(["create", "-q", "-f", format])
                    .arg(base)
                    .arg("16M")
                    .output()
                    .map_err(|e| e.to_string())?;
                if !out.status.success() {
                    return Err(format!(
                        "qemu-img create {}: {}",
                        base.display(),
                        String::from_utf8_lossy(&out.stderr)
                    )
                    .into());
                }
            }
            Drive::Cdrom { path } => {
                create_parent(path)?;
                std::fs::write(path, vec![0u8; 1 << 20]).map_err(|e| e.to_string())?;
            }
            // Vm::launch makes blank disks itself.
            Drive::Blank { .. } => {}
        }
    }
    if let Some(k) = &plan.kernel {
        let tiny = common::tiny_kernel(root);
        create_parent(&k.kernel)?;
        std::fs::rename(&tiny.kernel, &k.kernel).map_err(|e| e.to_string())?;
        match &k.initrd {
            Some(initrd) => std::fs::rename(&tiny.initrd, initrd).map_err(|e| e.to_string())?,
            None => std::fs::remove_file(&tiny.initrd).map_err(|e| e.to_string())?,
        }
    }
    for share in &plan.shares {
        std::fs::create_dir_all(&share.path).map_err(|e| format!("{}: {e}", share.path.display()))?;
    }
    Ok(())
}

fn create_parent(path: &Path) -> Result<(), Failed> {
    let parent = path.parent().expect("an absolute path");
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()).into())
}

/// The argv as the golden file would have it: the temporary directory taken out, the
/// golden QEMU path and share security model in place of this host's.
fn normalise(text: &str, root: &str, host: &HostFacts) -> String {
    let real_model = format!("security_model={}", host.share_security.as_str());
    let program = host.bootproof_program.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    text.replacen(&host.qemu.display().to_string(), GOLDEN_QEMU, 1)
        .replace(&format!("cmd:{program} "), "cmd:/usr/bin/bootproof ")
        .replace(root, "")
        .replace(&real_model, &format!("security_model={}", ShareSecurity::MappedXattr.as_str()))
}

/// The kernel vsock context id is derived from the run directory's path.
fn mask_cid(text: &str) -> String {
    regex::Regex::new(r"guest-cid=\d+").unwrap().replace_all(text, "guest-cid=N").into_owned()
}

fn not_run_reason(name: &str) -> String {
    format!(
        "qemu::{name} needs {KERNEL_VSOCK}, which this host lacks (load the vhost_vsock module; in a \
         container, pass the device in): vhost-vsock-pci opens it when QEMU starts"
    )
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    let names = profile::shipped_names();
    trials.push(Trial::test("golden::every-shipped-profile-is-a-case", move || {
        for required in ["uefi", "uefi-tpm", "uefi-secureboot", "uefi-secureboot-tpm", "bios"] {
            if !names.iter().any(|n| n == required) {
                return Err(format!("shipped profile {required} missing from {names:?}").into());
            }
        }
        Ok(())
    }));
    for case in cases("") {
        let name = case.name.clone();
        let missing = case.kernel_vsock && !Path::new(KERNEL_VSOCK).exists();
        trials.push(Trial::test(format!("golden::{name}"), move || check_golden(&case)));
        if missing && !args.ignored && !args.include_ignored {
            println!("argv_golden: not run (reported ignored): {}", not_run_reason(&name));
        }
        let qemu = format!("qemu::{name}");
        trials.push(Trial::test(qemu, move || start_paused(&name)).with_ignored_flag(missing));
    }
    trials.push(Trial::test("a-share-tag-clash-with-the-run-share-is-refused", || {
        let p =
            Profile::parse("[[share]]\ntag = \"bootproof\"\npath = \"/x\"\n", Path::new("p.toml")).unwrap();
        let case = Case::new("clash", p, Image::Iso { path: "/x.iso".into() });
        let e = Plan::new(&case.profile, None, &golden_host(&case, ""), &RunLayout::at("/r"))
            .unwrap_err()
            .to_string();
        if !e.contains("`bootproof` is used twice") {
            return Err(format!("unexpected error: {e}").into());
        }
        Ok(())
    }));
    libtest_mimic::run(&args, trials).exit();
}
