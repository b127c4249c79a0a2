//! What an installer run hands the guest besides the image: the kickstart on an OEMDRV
//! disk (read back, and seen by a real guest), and the example Fedora scenario that
//! uses it (it loads, with its profile and kickstart).

use std::path::Path;

use bootproof::installer::oemdrv;
use bootproof::report::Status;
use bootproof::scenario::{Scenario, runner};

#[test]
fn an_oemdrv_image_reads_back_with_its_label_and_kickstart() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("oemdrv.img");
    let ks = "text\nrootpw --plaintext x\n%post\necho done\n%end\n";
    oemdrv::make(ks, &image).unwrap();
    let (label, read) = oemdrv::read_back(&image).unwrap();
    assert_eq!(label, "OEMDRV");
    assert_eq!(read, ks);
    // Made twice into the same place, the second replaces the first.
    oemdrv::make("text\n", &image).unwrap();
    assert_eq!(oemdrv::read_back(&image).unwrap().1, "text\n");
}

#[test]
fn the_fedora_example_loads_with_its_kickstart_and_profile() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let s = Scenario::load(&root.join("examples/fedora/installer.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.kickstart.len(), 2);
    assert!(s.kickstart.iter().all(|k| k.is_file()), "{:?}", s.kickstart);
    assert!(s.ignore.is_some(), "it needs an ISO bootproof cannot have");
    let profile = bootproof::profile::resolve(&s.profile).unwrap();
    assert_eq!(profile.log_ports[0].name, "org.fedoraproject.anaconda.log.0");
    assert_eq!(profile.end, bootproof::profile::End::Kill);
}

/// A real guest sees the kickstart disk, labelled OEMDRV, with the secret filled in;
/// the run directory keeps a redacted copy and no image holding the secret.
#[tokio::test]
async fn the_guest_sees_the_kickstart_disk_and_the_run_keeps_no_secret() {
    if let Err(e) = bootproof::host::ensure_runtime() {
        panic!("this test boots real VMs and the host lacks what they need:\n{e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let secret = "ks-Secret-4711";
    std::fs::write(d.join("pw.txt"), format!("{secret}\n")).unwrap();
    std::fs::write(d.join("a.ks"), "text\n").unwrap();
    std::fs::write(d.join("b.ks"), "rootpw --plaintext ${secret:pw}\n").unwrap();
    std::fs::write(
        d.join("s.toml"),
        r#"
name = "kickstart-disk"
profile = "uefi"
image = "reference:tiny"
kickstart = ["a.ks", "b.ks"]
timeout = "2m"

[secrets]
pw = { file = "pw.txt" }

# The FAT volume label sits at byte 43 of a FAT12 boot sector.
[[step]]
run = "dd if=/dev/vdb bs=1 skip=43 count=6 2>/dev/null"
stdout = "^OEMDRV$"

[[step]]
run = "grep -c 'rootpw --plaintext ${secret:pw}' /dev/vdb"
stdout = "^1$"

[[step]]
power_off = true
"#,
    )
    .unwrap();
    let s = Scenario::load(&d.join("s.toml")).unwrap();
    let r = runner::run(&s, &runner::RunnerOptions::new(d.join("artifacts"))).await;
    assert!(r.passed, "{}", r.failure_screen());
    assert!(r.steps.iter().all(|s| s.status == Status::Passed));
    let kept = std::fs::read_to_string(r.run_dir.join("installer/ks.cfg")).unwrap();
    assert_eq!(kept, "text\nrootpw --plaintext [REDACTED]\n");
    assert!(!r.run_dir.join("oemdrv.img").exists(), "the image with the secret is gone");
}
