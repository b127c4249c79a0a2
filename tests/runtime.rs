//! The VM runtime against real QEMU and the tiny reference guest, under whatever
//! acceleration the host really offers (TCG on the development machines and CI).
//!
//! Each test boots real guests; they need QEMU, OVMF, swtpm and the image tools,
//! which `ensure_runtime` installs (as root on Debian/Fedora) or names.

use std::path::Path;
use std::time::{Duration, Instant};

use bootproof::profile::{self, Profile};
use bootproof::vm::boot::{BootReport, BootRequest, Outcome, boot};
use bootproof::vm::share;

fn ready() {
    if let Err(e) = bootproof::host::ensure_runtime() {
        panic!("this test boots real VMs and the host lacks what they need:\n{e}");
    }
}

fn profile_with_hook(base: &str, hook: &str, input: &Path) -> Profile {
    std::fs::write(input.join("hook.sh"), hook).unwrap();
    let mut p = profile::resolve(base).unwrap();
    p.shares.push(profile::Share {
        tag: "bootproof-input".into(),
        path: input.to_path_buf(),
        readonly: true,
    });
    p
}

async fn run(
    profile: Profile,
    image: &str,
    until: Option<&str>,
    timeout: Option<Duration>,
    dir: &Path,
) -> BootReport {
    let req = BootRequest {
        profile,
        image: Some(image.to_string()),
        until: until.map(|u| regex::bytes::Regex::new(u).unwrap()),
        timeout,
        run_dir: dir.join("run"),
        echo_console: false,
    };
    boot(req).await.unwrap_or_else(|e| panic!("boot failed to start: {e}"))
}

fn report_line(r: &BootReport) -> String {
    let share = r.run_dir.join("share");
    let bytes = share::read_file(&share, "report.txt", 4096)
        .unwrap_or_else(|e| panic!("{e}\nconsole: {:#?}", r.last_console_lines));
    String::from_utf8(bytes).unwrap().trim().to_string()
}

fn assert_powered_off(r: &BootReport) {
    assert_eq!(r.outcome, Outcome::PoweredOff, "{}\n{:#?}", r.summary(), r.last_console_lines);
    assert!(r.success);
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    use std::io::Read;
    let mut h = sha2::Sha256::new();
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

#[tokio::test]
async fn tiny_disk_with_tpm_reports_efi_tpm_share_and_never_writes_the_base_image() {
    tiny_disk_with_tpm(None).await;
}

/// The same over bootproof's own share server (the p9 backend).
#[tokio::test]
async fn tiny_disk_with_tpm_and_its_share_over_the_p9_backend() {
    tiny_disk_with_tpm(Some(profile::ShareBackend::P9)).await;
}

/// The profile's backend, or `backend` when a test asks for one.
fn with_backend(mut p: Profile, backend: Option<profile::ShareBackend>) -> Profile {
    if let Some(b) = backend {
        p.share_backend = b;
    }
    p
}

/// Whether the run's shares went through bootproof's server.
fn used_p9(r: &BootReport) -> bool {
    let argv = std::fs::read_to_string(r.run_dir.join("qemu-command.sh")).unwrap();
    let p9 = argv.contains("share-relay");
    assert_eq!(p9, !argv.contains("virtio-9p-pci"), "{argv}");
    p9
}

async fn tiny_disk_with_tpm(backend: Option<profile::ShareBackend>) {
    ready();
    let base = bootproof::images::ensure("tiny").unwrap().path;
    let before = sha256(&base);
    let dir = tempfile::tempdir().unwrap();
    let p = with_backend(profile::resolve("uefi-tpm").unwrap(), backend);
    let r = run(p, "reference:tiny", None, None, dir.path()).await;
    assert_eq!(
        used_p9(&r),
        backend == Some(profile::ShareBackend::P9)
            || std::env::var("BOOTPROOF_SHARE_BACKEND").is_ok_and(|b| b == "p9")
    );
    assert_powered_off(&r);
    assert_eq!(report_line(&r), "bootproof-tiny: efi=1 secureboot=0 tpm=2 share=ok");
    let console = std::fs::read_to_string(r.run_dir.join("console.log")).unwrap();
    assert!(console.contains("bootproof-tiny: efi=1 secureboot=0 tpm=2 share=ok"), "{console}");
    // The guest wrote its report into the disk's scratch partition: it is in the
    // overlay, and the base image is bit for bit what it was.
    let raw = dir.path().join("overlay.raw");
    let st = std::process::Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(r.run_dir.join("disk0.qcow2"))
        .arg(&raw)
        .status()
        .unwrap();
    assert!(st.success());
    let written = std::fs::read(&raw).unwrap();
    assert!(
        memchr::memmem::find(&written, b"bootproof-tiny: efi=1 secureboot=0 tpm=2").is_some(),
        "no write reached the disk"
    );
    assert_eq!(sha256(&base), before, "the base image changed");
    // Swtpm kept its state and log in the run directory.
    assert!(
        r.run_dir.join("swtpm.log").exists() && r.run_dir.join("tpm").read_dir().unwrap().next().is_some()
    );
}

#[tokio::test]
async fn tiny_iso_with_tpm_reports_efi_tpm_share() {
    ready();
    let dir = tempfile::tempdir().unwrap();
    let r = run(profile::resolve("uefi-tpm").unwrap(), "reference:tiny-iso", None, None, dir.path()).await;
    assert_powered_off(&r);
    assert_eq!(report_line(&r), "bootproof-tiny: efi=1 secureboot=0 tpm=2 share=ok");
}

#[tokio::test]
async fn tiny_sb_boots_with_secure_boot_enabled() {
    ready();
    let dir = tempfile::tempdir().unwrap();
    let r =
        run(profile::resolve("uefi-secureboot").unwrap(), "reference:tiny-sb", None, None, dir.path()).await;
    assert_powered_off(&r);
    assert_eq!(report_line(&r), "bootproof-tiny: efi=1 secureboot=1 tpm=0 share=ok");
}

#[tokio::test]
async fn unsigned_image_under_secure_boot_fails_fast_with_the_firmware_reason() {
    ready();
    let dir = tempfile::tempdir().unwrap();
    let r = run(profile::resolve("uefi-secureboot").unwrap(), "reference:tiny", None, None, dir.path()).await;
    let Outcome::FirmwareRefused { lines } = &r.outcome else {
        panic!("expected a firmware refusal, got {}\n{:#?}", r.summary(), r.last_console_lines);
    };
    assert!(lines.iter().any(|l| l.contains("Access Denied")), "{lines:#?}");
    assert!(!r.success);
    assert!(r.summary().contains("Access Denied"), "{}", r.summary());
    // Seconds after the refusal, far from the (scaled) global timeout.
    assert!(r.elapsed_secs < r.timeout_secs / 4.0, "{} of {}", r.elapsed_secs, r.timeout_secs);
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.run_dir.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["outcome"], "firmware-refused");
}

#[tokio::test]
async fn guest_symlinks_in_the_share_never_reach_host_files() {
    guest_symlinks(None).await;
}

/// The same over bootproof's own share server, which makes no symlinks at all.
#[tokio::test]
async fn guest_symlinks_over_the_p9_backend_are_refused() {
    guest_symlinks(Some(profile::ShareBackend::P9)).await;
}

async fn guest_symlinks(backend: Option<profile::ShareBackend>) {
    ready();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir(&input).unwrap();
    let secret = dir.path().join("host-secret");
    std::fs::write(&secret, "HOST-SECRET-CONTENT").unwrap();
    let hook = format!(
        "ln -s {secret} /mnt/bootproof/evil\nln -s / /mnt/bootproof/rootlink\nmkdir /mnt/bootproof/d\nln -s {secret} /mnt/bootproof/d/evil2\necho hostile done\n",
        secret = secret.display()
    );
    let p = with_backend(profile_with_hook("uefi", &hook, &input), backend);
    let r = run(p, "reference:tiny", None, None, dir.path()).await;
    assert_powered_off(&r);
    let p9 = used_p9(&r);
    let console = std::fs::read_to_string(r.run_dir.join("console.log")).unwrap();
    if p9 {
        assert!(console.contains("Operation not permitted"), "ln -s was not refused:\n{console}");
    }
    assert!(
        console.contains("hostile done") && console.contains("hook exit=0"),
        "the hook did not run:\n{console}"
    );
    let share_dir = r.run_dir.join("share");
    // virtio-9p stores a guest symlink as a plain file; bootproof's own server (the p9
    // backend) makes none at all ("Operation not permitted" in the guest).
    for name in ["evil", "rootlink", "d/evil2"] {
        let meta = match std::fs::symlink_metadata(share_dir.join(name)) {
            Err(e) if p9 && e.kind() == std::io::ErrorKind::NotFound => continue,
            other => other.unwrap(),
        };
        assert!(!meta.file_type().is_symlink(), "{name} became a host symlink");
        let content = share::read_file(&share_dir, name, 1 << 20).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&content).contains("HOST-SECRET"), "{name} leaked the host file");
    }
    let listed = share::list(&share_dir, 100).unwrap();
    assert!(listed.iter().any(|e| e.path == Path::new("report.txt")));
}

#[tokio::test]
async fn a_timeout_collects_a_screenshot_and_keeps_the_logs() {
    ready();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir(&input).unwrap();
    let p = profile_with_hook("uefi", "echo about to hang\nsleep 100000\n", &input);
    let started = Instant::now();
    let r =
        run(p, "reference:tiny", Some("this never appears"), Some(Duration::from_secs(8)), dir.path()).await;
    let Outcome::TimedOut { .. } = r.outcome else { panic!("expected a timeout: {}", r.summary()) };
    assert!(started.elapsed().as_secs_f64() < r.timeout_secs + 20.0, "took {:?}", started.elapsed());
    let ev = r.evidence.as_ref().unwrap();
    let shot = ev.screenshot.as_ref().expect("a screenshot");
    let png = std::fs::read(shot).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert_eq!(ev.status.as_deref(), Some("running"));
    let console = std::fs::read_to_string(r.run_dir.join("console.log")).unwrap();
    assert!(console.contains("about to hang"), "{console}");
    assert!(r.last_console_lines.iter().any(|l| l.contains("about to hang")));
}

#[tokio::test]
async fn qmp_keys_screendump_and_power_button_on_a_running_guest() {
    use bootproof::vm::{Ending, Vm, VmOptions, plan::Plan, rundir::RunLayout};
    ready();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir(&input).unwrap();
    let p = profile_with_hook("uefi", "echo waiting for the power button\nsleep 100000\n", &input);
    let layout = RunLayout::create(&dir.path().join("run")).unwrap();
    let image = bootproof::vm::boot::resolve_image("reference:tiny").unwrap();
    let host = bootproof::vm::boot::host_facts(&p, &layout.share_dir()).unwrap();
    let plan = Plan::new(&p, Some(&image), &host, &layout).unwrap();
    let mut vm = Vm::launch(plan, VmOptions::default()).await.unwrap();
    let re = regex::bytes::Regex::new("waiting for the power button").unwrap();
    vm.console().wait_for(&re, host.accel.scale(Duration::from_secs(60))).await.unwrap();
    assert_eq!(vm.qmp().query_status().await.unwrap(), "running");
    vm.qmp().send_keys("shift-a").await.unwrap();
    vm.qmp().type_text("typed via qmp\n").await.unwrap();
    let shot = layout.screenshot("running");
    vm.qmp().screendump(&shot).await.unwrap();
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let info = decoder.read_info().unwrap();
    assert!(info.info().width >= 640 && info.info().height >= 400, "{:?}", info.info());
    let ending = vm.shutdown(host.accel.scale(Duration::from_secs(20))).await;
    assert_eq!(ending, Ending::Exited { status: Some(0), reason: Some("guest-shutdown".into()) });
    let events: Vec<String> = vm.qmp().seen_events().into_iter().map(|e| e.name).collect();
    assert!(
        events.contains(&"POWERDOWN".to_string()) && events.contains(&"SHUTDOWN".to_string()),
        "{events:?}"
    );
}

#[test]
fn kill_9_of_bootproof_boot_leaves_no_qemu_or_swtpm() {
    ready();
    bootproof::images::ensure("tiny").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bootproof"))
        .args(["boot", "--profile", "uefi-tpm", "--image", "reference:tiny", "--quiet", "--artifacts"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut kids = Vec::new();
    while Instant::now() < deadline {
        kids = children_of(pid);
        let names: Vec<String> = kids.iter().map(|k| comm(*k)).collect();
        if names.iter().any(|n| n.starts_with("qemu") || n.starts_with("bootproof-"))
            && names.iter().any(|n| n == "swtpm")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(kids.len() >= 2, "bootproof never started QEMU and swtpm: {kids:?}");
    // SAFETY: killing our own child.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && kids.iter().any(|k| alive(*k)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<(u32, String)> = kids.iter().filter(|k| alive(**k)).map(|k| (*k, comm(*k))).collect();
    assert!(left.is_empty(), "left behind after kill -9: {left:?}");
}

fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            after.split_whitespace().nth(1) == Some(&pid.to_string())
        })
        .collect()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // A zombie has been killed; only its parent's reaping is left.
    !stat.is_empty()
        && stat.rsplit_once(')').is_some_and(|(_, rest)| rest.split_whitespace().next() != Some("Z"))
}

#[tokio::test]
async fn a_missing_image_names_the_path_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let req = BootRequest {
        profile: profile::resolve("uefi").unwrap(),
        image: Some("/nonexistent/disk.qcow2".into()),
        until: None,
        timeout: None,
        run_dir: dir.path().join("run"),
        echo_console: false,
    };
    let e = boot(req).await.unwrap_err().to_string();
    assert!(e.contains("/nonexistent/disk.qcow2") && e.contains("reference:tiny"), "{e}");
}

#[tokio::test]
async fn missing_firmware_names_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fw.toml");
    std::fs::write(&file, "firmware = { code = \"nope/CODE.fd\", vars = \"nope/VARS.fd\" }\n").unwrap();
    let req = BootRequest {
        profile: Profile::load(&file).unwrap(),
        image: None,
        until: None,
        timeout: None,
        run_dir: dir.path().join("run"),
        echo_console: false,
    };
    let e = boot(req).await.unwrap_err().to_string();
    let code = dir.path().join("nope/CODE.fd");
    assert!(e.contains(&code.display().to_string()) && e.contains("apt-get install ovmf"), "{e}");
}

#[test]
fn doctor_explains_the_acceleration_verdict() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bootproof"))
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let accel = report["checks"].as_array().unwrap().iter().find(|c| c["item"] == "acceleration").unwrap();
    match accel["status"].as_str().unwrap() {
        "tcg" => {
            let detail = accel["detail"].as_str().unwrap();
            assert!(detail.starts_with("KVM rejected: "), "{detail}");
            // On a host with /dev/kvm the reason is QEMU's own words from the probe.
            if Path::new("/dev/kvm").exists() && std::env::var("BOOTPROOF_ACCEL").is_err() {
                assert!(
                    detail.contains("could not run guest code") || detail.contains("did not finish"),
                    "{detail}"
                );
            }
        }
        "kvm" => {
            let qemu = bootproof::host::qemu::find().unwrap();
            let probe = bootproof::host::accel::run_probe(&qemu, bootproof::host::accel::Accel::Kvm).unwrap();
            assert!(matches!(probe, bootproof::host::accel::ProbeOutcome::Ran(_)), "{probe:?}");
        }
        other => panic!("unexpected acceleration status {other}: {accel}"),
    }
    assert_eq!(report["accel"], accel["status"]);
}

/// The OCR engine of `wait_screen = { text }` has its row, found where host setup puts
/// it (the screen tests install it).
#[test]
fn doctor_reports_tesseract_for_text_steps() {
    bootproof::screen::ocr::ensure().expect("host set-up (tesseract)");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bootproof"))
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = report["checks"].as_array().unwrap().iter().find(|c| c["item"] == "tesseract").unwrap();
    assert_eq!(row["status"], "ok", "{row}");
    assert!(row["detail"].as_str().unwrap().ends_with("/tesseract"), "{row}");
}

/// The override names the backend as profiles do (`p9`), not the variable's whole
/// text lowercased.
#[test]
fn doctor_names_the_share_backend_override() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bootproof"))
        .args(["doctor", "--json"])
        .env("BOOTPROOF_SHARE_BACKEND", "p9")
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = report["checks"].as_array().unwrap().iter().find(|c| c["item"] == "share backend").unwrap();
    let detail = row["detail"].as_str().unwrap();
    assert!(detail.contains("BOOTPROOF_SHARE_BACKEND=p9 overrides every profile"), "{detail}");
}

#[test]
fn the_tcg_probe_runs_guest_code() {
    ready();
    let qemu = bootproof::host::qemu::find().unwrap();
    let probe = bootproof::host::accel::run_probe(&qemu, bootproof::host::accel::Accel::Tcg).unwrap();
    assert!(matches!(probe, bootproof::host::accel::ProbeOutcome::Ran(_)), "{probe:?}");
}
