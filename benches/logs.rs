//! One-core throughput of the log parsers, each against the line-by-line `regex`
//! parser a user would write for the same data. One group per format; inputs are real
//! corpus files repeated to ~64 MiB in memory.
//!
//! Run: `cargo bench --bench logs`. Needs the corpus: `../shared/corpus` beside the
//! crate or `BOOTPROOF_CORPUS` (see `tests/corpus/finder.rs`).

use std::hint::black_box;
use std::io::{BufReader, Cursor};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bootproof::logs::Analyzer;
use bootproof::logs::journal::export::ExportParser;
use bootproof::logs::journal::{JournalExport, JournalJson};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use regex::bytes::Regex;

const TARGET_BYTES: usize = 64 << 20;
const FEDORA37: &str =
    "journal/derived-by-journalctl-252/fedora37-rpi4-nortc-boot-4c708e1fd0744336be16f3931aa861fb";

#[path = "../tests/corpus/finder.rs"]
mod finder;

fn corpus() -> PathBuf {
    finder::locate().dir().unwrap_or_else(|why| panic!("the logs benchmark reads the corpus: {why}"))
}

/// A corpus file repeated to about [`TARGET_BYTES`].
fn repeated(relative: &str) -> Vec<u8> {
    let one = std::fs::read(corpus().join(relative)).unwrap();
    let mut data = Vec::with_capacity(TARGET_BYTES + one.len());
    while data.len() < TARGET_BYTES {
        data.extend_from_slice(&one);
    }
    data
}

fn analyze(analyzer: &dyn Analyzer, data: &[u8]) -> u64 {
    let mut reader = BufReader::with_capacity(64 * 1024, Cursor::new(data));
    let analysis = analyzer.analyze(&mut reader, Path::new("bench")).unwrap();
    analysis.records + analysis.findings.len() as u64
}

fn quick<'c>(
    c: &'c mut Criterion,
    name: &str,
    bytes: usize,
) -> criterion::BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .throughput(Throughput::Bytes(bytes as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group
}

fn journal_export(c: &mut Criterion) {
    let data = repeated(&format!("{FEDORA37}.export"));
    let mut group = quick(c, "journal-export", data.len());
    group.bench_function("parser", |b| {
        b.iter(|| {
            let mut parser = ExportParser::new();
            let mut fields = 0;
            for chunk in data.chunks(64 * 1024) {
                fields += parser.feed(chunk).map(|e| e.fields.len()).sum::<usize>();
            }
            fields += parser.finish().map(|e| e.fields.len()).sum::<usize>();
            black_box(fields)
        })
    });
    group.bench_function("analyzer", |b| b.iter(|| black_box(analyze(&JournalExport, &data))));
    // What a user would write: a text-field regex per line, an empty line ends an entry.
    // It cannot read binary fields at all; it is the speed to beat, not a correct parser.
    let field = Regex::new(r"^([A-Z0-9_]+)=(.*)$").unwrap();
    group.bench_function("regex-baseline", |b| {
        b.iter(|| {
            let (mut entries, mut fields) = (0u64, 0u64);
            for line in data.split(|&b| b == b'\n') {
                if line.is_empty() {
                    entries += 1;
                } else if let Some(c) = field.captures(line) {
                    fields += c.get(2).map_or(0, |v| v.len() as u64).min(1);
                }
            }
            black_box((entries, fields))
        })
    });
    group.finish();
}

fn journal_json(c: &mut Criterion) {
    let data = repeated(&format!("{FEDORA37}.json"));
    let mut group = quick(c, "journal-json", data.len());
    group.bench_function("analyzer", |b| b.iter(|| black_box(analyze(&JournalJson, &data))));
    // What a user would write: pull MESSAGE and SYSLOG_IDENTIFIER out of each line.
    let message = Regex::new(r#""MESSAGE":"((?:[^"\\]|\\.)*)""#).unwrap();
    let identifier = Regex::new(r#""SYSLOG_IDENTIFIER":"((?:[^"\\]|\\.)*)""#).unwrap();
    group.bench_function("regex-baseline", |b| {
        b.iter(|| {
            let mut found = 0u64;
            for line in data.split(|&b| b == b'\n') {
                found += u64::from(message.is_match(line)) + u64::from(identifier.is_match(line));
            }
            black_box(found)
        })
    });
    group.finish();
}

criterion_group!(benches, journal_export, journal_json);
criterion_main!(benches);
