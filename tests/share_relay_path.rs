//! The p9 share backend when bootproof's program sits at a path with a space and a
//! comma in it (a checkout in "~/My Projects"): QEMU's guestfwd runs `share-relay` per
//! guest connection through libslirp, which splits the command line as a shell would,
//! and QEMU's option parser, which splits at commas. The guest must still mount its
//! share and write into it. Its own test binary: it sets `BOOTPROOF_PROGRAM` for the
//! whole process.

use std::path::Path;

use bootproof::profile::{self, ShareBackend};
use bootproof::vm::boot::{BootRequest, Outcome, boot};

#[tokio::test]
async fn a_program_path_with_a_space_and_a_comma_still_relays_the_share() {
    if let Err(e) = bootproof::host::ensure_runtime() {
        panic!("this test boots a real VM and the host lacks what it needs:\n{e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("my projects, old").join("bin");
    std::fs::create_dir_all(&odd).unwrap();
    let program = odd.join("bootproof");
    std::fs::copy(env!("CARGO_BIN_EXE_bootproof"), &program).unwrap();
    // SAFETY: this test binary has this one test; nothing else reads the environment
    // while it is set.
    unsafe { std::env::set_var("BOOTPROOF_PROGRAM", &program) };
    let input = dir.path().join("input");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("hook.sh"), "echo relayed > /mnt/bootproof/relayed.txt\n").unwrap();
    let mut p = profile::resolve("uefi").unwrap();
    p.share_backend = ShareBackend::P9;
    p.shares.push(profile::Share { tag: "bootproof-input".into(), path: input.clone(), readonly: true });
    let req = BootRequest {
        profile: p,
        image: Some("reference:tiny".into()),
        until: None,
        timeout: None,
        run_dir: dir.path().join("run"),
        echo_console: false,
    };
    let r = boot(req).await.unwrap_or_else(|e| panic!("boot failed to start: {e}"));
    assert_eq!(r.outcome, Outcome::PoweredOff, "{}\n{:#?}", r.summary(), r.last_console_lines);
    let argv = std::fs::read_to_string(r.run_dir.join("qemu-command.sh")).unwrap();
    assert!(argv.contains("my projects,, old"), "the comma doubled for QEMU, the path quoted: {argv}");
    let console = std::fs::read_to_string(r.run_dir.join("console.log")).unwrap();
    assert!(console.contains("share=ok") && console.contains("hook exit=0"), "{console}");
    let written = r.run_dir.join("share").join("relayed.txt");
    assert_eq!(
        std::fs::read_to_string(&written).unwrap_or_default(),
        "relayed\n",
        "{}",
        Path::new(&written).display()
    );
}
