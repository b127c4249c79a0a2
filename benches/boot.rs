//! Boot-to-marker time of the tiny reference guest: `bootproof`'s whole path (plan,
//! VARS copy, overlay, supervised launch, socket console, QMP, matching) against the
//! same QEMU command line run by hand with the console on stdout. Each sample is one
//! full boot (seconds under TCG), so the sample count is small.

use criterion::{Criterion, criterion_group, criterion_main};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bootproof::profile;
use bootproof::vm::argv::argv;
use bootproof::vm::boot::{host_facts, resolve_image};
use bootproof::vm::plan::Plan;
use bootproof::vm::rundir::RunLayout;
use bootproof::vm::{Vm, VmOptions};

const MARKER: &str = "bootproof-tiny: efi=";

fn bench_boot(c: &mut Criterion) {
    bootproof::host::ensure_runtime().expect("host set-up");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let profile = profile::resolve("uefi").unwrap();
    let mut g = c.benchmark_group("boot-to-marker/tiny/uefi");
    g.sample_size(10).warm_up_time(Duration::from_millis(1)).measurement_time(Duration::from_secs(60));
    let mut n = 0;
    g.bench_function("bootproof", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                total += rt.block_on(bootproof_to_marker(&profile, &tmp.path().join(format!("bp{n}"))));
            }
            total
        })
    });
    g.bench_function("qemu-by-hand", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                total += by_hand(&profile, &tmp.path().join(format!("hand{n}")));
            }
            total
        })
    });
    g.finish();
    // What bootproof does before QEMU starts that a person typing the command would
    // not: resolve the image and the host (QEMU, acceleration verdict, firmware, share
    // model) and plan. Milliseconds, so it is measured apart from the noisy boots.
    let mut g = c.benchmark_group("setup-before-qemu");
    g.sample_size(30);
    g.bench_function("resolve-and-plan", |b| {
        b.iter(|| {
            n += 1;
            let layout = RunLayout::create(&tmp.path().join(format!("plan{n}"))).unwrap();
            let image = resolve_image("reference:tiny").unwrap();
            let host = host_facts(&profile, &layout.share_dir()).unwrap();
            Plan::new(&profile, Some(&image), &host, &layout).unwrap()
        })
    });
    g.finish();
}

/// bootproof's whole path to the marker: run dir, host facts, plan, VARS copy,
/// overlay, supervised launch, socket console and QMP, matching.
async fn bootproof_to_marker(profile: &profile::Profile, dir: &std::path::Path) -> Duration {
    let start = Instant::now();
    let layout = RunLayout::create(dir).unwrap();
    let image = resolve_image("reference:tiny").unwrap();
    let host = host_facts(profile, &layout.share_dir()).unwrap();
    let plan = Plan::new(profile, Some(&image), &host, &layout).unwrap();
    let mut vm = Vm::launch(plan, VmOptions::default()).await.unwrap();
    let marker = regex::bytes::Regex::new(MARKER).unwrap();
    vm.console().wait_for(&marker, Duration::from_secs(300)).await.unwrap();
    let elapsed = start.elapsed();
    vm.kill().await;
    elapsed
}

/// The same argv, console on stdout instead of bootproof's socket, no QMP: what a
/// person would type, timed from spawn to the marker line.
fn by_hand(profile: &profile::Profile, dir: &std::path::Path) -> Duration {
    let layout = RunLayout::create(dir).unwrap();
    let image = resolve_image("reference:tiny").unwrap();
    let host = host_facts(profile, &layout.share_dir()).unwrap();
    let plan = Plan::new(profile, Some(&image), &host, &layout).unwrap();
    let fw = plan.firmware.as_ref().unwrap();
    std::fs::copy(&fw.vars_template, &fw.vars).unwrap();
    let bootproof::vm::plan::Drive::Disk { overlay, base, .. } = &plan.drives[0] else { panic!("a disk") };
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(base)
        .arg(overlay)
        .status()
        .unwrap();
    assert!(st.success());
    let args: Vec<String> = argv(&plan).iter().map(|a| a.to_string_lossy().into_owned()).collect();
    // Group the argv into options (a flag and, unless it stands alone, its value).
    let mut options: Vec<Vec<String>> = Vec::new();
    for a in &args[1..] {
        match options.last_mut() {
            Some(o) if o.len() == 1 && !a.starts_with('-') => o.push(a.clone()),
            _ => options.push(vec![a.clone()]),
        }
    }
    let mut by_hand: Vec<String> = Vec::new();
    for o in options {
        let value = o.get(1).map_or("", String::as_str);
        match o[0].as_str() {
            "-chardev" if value.starts_with("socket,id=serial0") || value.starts_with("socket,id=qmp") => {}
            "-mon" => {}
            "-serial" => by_hand.extend(["-serial".to_string(), "stdio".to_string()]),
            _ => by_hand.extend(o),
        }
    }
    let start = Instant::now();
    let mut child =
        Command::new(&args[0]).args(&by_hand).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let reader = BufReader::new(child.stdout.take().unwrap());
    let mut elapsed = None;
    for line in reader.split(b'\n') {
        if String::from_utf8_lossy(&line.unwrap()).contains(MARKER) {
            elapsed = Some(start.elapsed());
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    elapsed.expect("the marker appeared")
}

criterion_group!(benches, bench_boot);
criterion_main!(benches);
