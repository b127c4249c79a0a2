//! Throughput of the installer-log parsers against the line-by-line regex parser a user
//! would write, on ~64 MiB built by repeating real corpus files in memory.
//!
//! Run: `cargo bench --bench anaconda` (needs the corpus: `../shared/corpus` beside the
//! crate or `BOOTPROOF_CORPUS`). Figures are recorded in docs/parsers.md.

use std::hint::black_box;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bootproof::logs::LogKind;
use bootproof::logs::anaconda::read_records;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use regex::Regex;

const TARGET_BYTES: usize = 64 << 20;

#[path = "../tests/corpus/finder.rs"]
mod finder;

fn corpus() -> PathBuf {
    finder::locate().dir().unwrap_or_else(|why| panic!("the anaconda benchmark reads the corpus: {why}"))
}

/// The real files, concatenated and repeated up to [`TARGET_BYTES`].
fn repeated(files: &[&str]) -> Vec<u8> {
    let mut one = Vec::new();
    for file in files {
        one.extend(std::fs::read(corpus().join("anaconda").join(file)).expect("corpus file"));
    }
    let mut data = Vec::with_capacity(TARGET_BYTES + one.len());
    while data.len() < TARGET_BYTES {
        data.extend_from_slice(&one);
    }
    data
}

/// The baseline: `lines()` and one regex per line, counting records and errors.
fn regex_baseline(re: &Regex, data: &[u8]) -> (u64, u64) {
    let (mut records, mut errors) = (0, 0);
    for line in data.lines() {
        let line = line.unwrap_or_default();
        if let Some(caps) = re.captures(&line) {
            records += 1;
            if matches!(&caps[2], "ERR" | "ERROR" | "CRT" | "CRITICAL") {
                errors += 1;
            }
        }
    }
    (records, errors)
}

fn bench_log(c: &mut Criterion, name: &str, kind: LogKind, files: &[&str]) {
    let data = repeated(files);
    let re = Regex::new(r"^(?:(\d{2}:\d{2}:\d{2},\d{3}) )?([A-Z]+)[ :]((?:[^: ]+)?):? ?(.*)$").unwrap();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("bootproof", |b| {
        b.iter(|| {
            let mut input = &data[..];
            let (tally, findings) = read_records(kind, &mut input, Path::new(name)).expect("in memory");
            black_box((tally, findings.len()))
        })
    });
    group.bench_function("regex-lines", |b| b.iter(|| black_box(regex_baseline(&re, &data))));
    group.finish();
}

fn installer_logs(c: &mut Criterion) {
    bench_log(
        c,
        "anaconda.log",
        LogKind::AnacondaLog,
        &[
            "rocky9.1-paperdragon/anaconda.log",
            "fedora43-bonsai-failed/anaconda.log",
            "centos7-logssrv/anaconda.log",
        ],
    );
    bench_log(
        c,
        "storage.log",
        LogKind::StorageLog,
        &[
            "rocky9.1-paperdragon/storage.log",
            "fedora43-bonsai-failed/storage.log",
            "centos7-logssrv/storage.log",
        ],
    );
    bench_log(
        c,
        "program.log",
        LogKind::ProgramLog,
        &["rocky9.1-paperdragon/program.log", "centos7-logssrv/program.log"],
    );
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(10)
}

criterion_group! {
    name = benches;
    config = config();
    targets = installer_logs
}
criterion_main!(benches);
