//! Throughput of the tiny guest writing 256 MiB into its `bootproof` share, through
//! each backend: QEMU's virtio-9p and bootproof's own server (9P over TCP through the
//! restricted network, `share-relay`, `share-server`). Each sample is one boot with a
//! hook that runs `dd bs=1M count=256 conv=fsync` between two console lines, and the
//! time between their host stamps in `console.log` is the write's (busybox dd prints no
//! rate). Not criterion: one number per boot, printed.
//!
//! `cargo bench --bench share_throughput` (ROUNDS=n for more samples).

use std::path::Path;

use bootproof::profile::{self, ShareBackend};
use bootproof::vm::boot::{BootRequest, Outcome, boot};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    bootproof::host::ensure_runtime().expect("host set-up");
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(
        input.join("hook.sh"),
        "echo 'throughput: start'\ndd if=/dev/zero of=/mnt/bootproof/big bs=1M count=256 conv=fsync 2>/dev/null\necho \"throughput: end $?\"\nrm /mnt/bootproof/big\n",
    )
    .unwrap();
    let mut results: Vec<(ShareBackend, Vec<f64>)> = Vec::new();
    for backend in [ShareBackend::Virtfs, ShareBackend::P9] {
        let mut mbs = Vec::new();
        for round in 0..rounds {
            let dir = tmp.path().join(format!("{backend:?}-{round}"));
            let secs = rt.block_on(one(backend, &input, &dir));
            let rate = 256.0 * 1.048576 / secs;
            println!("{backend:?} round {round}: {secs:.2} s, {rate:.0} MB/s");
            mbs.push(rate);
        }
        results.push((backend, mbs));
    }
    for (backend, mut mbs) in results {
        mbs.sort_by(f64::total_cmp);
        let median = mbs.get(mbs.len() / 2).copied().unwrap_or(f64::NAN);
        let best = mbs.last().copied().unwrap_or(f64::NAN);
        println!(
            "share write 256 MiB, {backend:?}: median {median:.0} MB/s, best {best:.0} MB/s ({} runs)",
            mbs.len()
        );
    }
}

async fn one(backend: ShareBackend, input: &Path, dir: &Path) -> f64 {
    let mut p = profile::resolve("uefi").unwrap();
    p.share_backend = backend;
    p.shares.push(profile::Share {
        tag: "bootproof-input".into(),
        path: input.to_path_buf(),
        readonly: true,
    });
    let req = BootRequest {
        profile: p,
        image: Some("reference:tiny".into()),
        until: None,
        timeout: None,
        run_dir: dir.to_path_buf(),
        echo_console: false,
    };
    let r = boot(req).await.expect("boot");
    assert_eq!(r.outcome, Outcome::PoweredOff, "{}", r.summary());
    let console = std::fs::read_to_string(dir.join("console.log")).unwrap();
    let stamp = |marker: &str| {
        let line = console
            .lines()
            .find(|l| l.contains(marker))
            .unwrap_or_else(|| panic!("no {marker:?}: {console}"));
        let inner = line.trim_start_matches('[').split(']').next().unwrap();
        inner.trim().parse::<f64>().unwrap()
    };
    assert!(console.contains("throughput: end 0"), "dd failed: {console}");
    stamp("throughput: end") - stamp("throughput: start")
}
