//! Host set-up converges: an install that removes a package another requirement needs
//! (as Debian 12's `qemu-system-x86` 7.2 removes the backports `qemu-utils`) is followed
//! by another round, and a package manager that exits 0 is never reported as failing.
//!
//! A fake `apt-get` on PATH keeps its "installed packages" as programs in a directory.
//! This binary holds one test, so changing PATH races with nothing.

use bootproof::host::setup::{PackageManager, Requirement, Setup, SetupError};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const SYSTEM: Requirement =
    Requirement::command("bp-fake-qemu-system", "fake-qemu-system-x86", "x", "running guests");
const IMG: Requirement = Requirement::command("bp-fake-qemu-img", "fake-qemu-utils", "x", "disk overlays");
const NEVER: Requirement = Requirement::command("bp-fake-never", "fake-empty", "x", "nothing");

/// `apt-get install -y --no-install-recommends PKG...` as a shell script: installing
/// fake-qemu-system-x86 removes fake-qemu-utils's program, as apt's conflict resolution
/// did on the real machine; fake-empty installs nothing. Each call is logged.
fn fake_apt(dir: &Path) {
    let bin = dir.join("bin");
    let script = format!(
        r#"#!/bin/sh
echo "$*" >> {log}
[ "$1" = install ] || exit 0
shift
for p in "$@"; do
  case "$p" in
    fake-qemu-system-x86) printf '#!/bin/sh\n' > {bin}/bp-fake-qemu-system; /bin/chmod +x {bin}/bp-fake-qemu-system
                          /bin/rm -f {bin}/bp-fake-qemu-img
                          echo "The following packages will be REMOVED: fake-qemu-utils" ;;
    fake-qemu-utils) printf '#!/bin/sh\n' > {bin}/bp-fake-qemu-img; /bin/chmod +x {bin}/bp-fake-qemu-img ;;
  esac
done
exit 0
"#,
        log = dir.join("apt.log").display(),
        bin = bin.display()
    );
    std::fs::create_dir_all(&bin).unwrap();
    let apt = bin.join("apt-get");
    std::fs::write(&apt, script).unwrap();
    std::fs::set_permissions(&apt, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The machine's image already carries qemu-img (from backports).
    std::fs::write(bin.join("bp-fake-qemu-img"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(bin.join("bp-fake-qemu-img"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn setup_installs_again_what_an_install_removed_and_never_calls_exit_0_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    fake_apt(dir.path());
    let cache = dir.path().join("cache");
    // SAFETY: the only test of this binary; nothing else reads the environment meanwhile.
    unsafe {
        std::env::set_var("PATH", dir.path().join("bin"));
        std::env::set_var("BOOTPROOF_CACHE", &cache);
    }
    let setup = Setup { package_manager: Some(PackageManager::Apt), may_install: true };

    setup.ensure(&[SYSTEM, IMG]).expect("set-up converges in a second round");
    assert!(SYSTEM.locate().is_some() && IMG.locate().is_some());
    let log = std::fs::read_to_string(dir.path().join("apt.log")).unwrap();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            "install -y --no-install-recommends fake-qemu-system-x86",
            "install -y --no-install-recommends fake-qemu-utils"
        ],
        "one round for what was missing, one for what it removed"
    );

    // A package that exits 0 but does not bring the program is reported as exactly that.
    let err = setup.ensure(&[NEVER]).unwrap_err();
    assert!(matches!(err, SetupError::NotProvided { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("succeeded") && msg.contains("bp-fake-never"), "{msg}");
    assert!(!msg.contains("failed"), "an exit status of 0 is not a failure: {msg}");

    // Not allowed to install: the one command to run, nothing run.
    let before = std::fs::read_to_string(dir.path().join("apt.log")).unwrap();
    let err = Setup { may_install: false, ..setup }.ensure(&[NEVER]).unwrap_err();
    assert!(err.to_string().contains("apt-get install -y --no-install-recommends fake-empty"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.path().join("apt.log")).unwrap(), before);
}
