//! Throughput of the installer-stream parsers (`logs::live`: the Debian installer's
//! syslog, anaconda's log port) against the line-by-line regex parser a user would write,
//! on ~64 MiB built in memory, host-stamped as bootproof captures a log port.
//!
//! - d-i syslog: the fixture of an install (`tests/fixtures/logs/installer/debian12-pkgsel/syslog`)
//!   up to the apt run that fails, repeated: a log of mostly good lines, as real ones are
//!   (its failure lines, repeated, would reach the 1000 findings a log keeps at once).
//! - anaconda's log port: Rocky 9.1's anaconda.log, program.log, packaging.log and
//!   storage.log rewritten in the port's form (as the corpus trials do), repeated; this
//!   half needs the corpus (`../shared/corpus` beside the crate or `BOOTPROOF_CORPUS`).
//!
//! Run: `cargo bench --bench installer`. Figures are recorded in docs/parsers.md.

use std::hint::black_box;
use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use bootproof::logs::LogKind;
use bootproof::logs::live;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use regex::Regex;

const TARGET_BYTES: usize = 64 << 20;

#[path = "../tests/corpus/finder.rs"]
mod finder;
#[path = "../tests/corpus/port.rs"]
#[expect(dead_code, reason = "the corpus trials also rewrite a journal; the benchmark does not")]
mod port;

/// `one` repeated up to [`TARGET_BYTES`].
fn repeated(one: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(TARGET_BYTES + one.len());
    while data.len() < TARGET_BYTES {
        data.extend_from_slice(one);
    }
    data
}

/// Each line with a host stamp, as `vm::logport` writes it.
fn stamped(log: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(log.len() * 2);
    for (index, line) in log.strip_suffix(b"\n").unwrap_or(log).split(|b| *b == b'\n').enumerate() {
        out.extend_from_slice(format!("[{:>10.3}] ", index as f64 / 100.0).as_bytes());
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

fn di_syslog() -> Vec<u8> {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/logs/installer/debian12-pkgsel/syslog");
    repeated(&stamped(&std::fs::read(fixture).expect("fixture")))
}

fn anaconda_stream() -> Vec<u8> {
    let corpus =
        finder::locate().dir().unwrap_or_else(|why| panic!("the anaconda half reads the corpus: {why}"));
    let read =
        |name: &str| std::fs::read(corpus.join("anaconda/rocky9.1-paperdragon").join(name)).expect(name);
    let mut one = Vec::new();
    for (name, kind) in [
        ("anaconda.log", LogKind::AnacondaLog),
        ("program.log", LogKind::ProgramLog),
        ("packaging.log", LogKind::PackagingLog),
    ] {
        one.extend(port::main_process(kind, &read(name)));
    }
    one.extend(port::module("Storage", &read("storage.log")));
    repeated(&one)
}

/// The baseline: `lines()` and one regex per line, counting records and error lines.
fn regex_baseline(re: &Regex, error: &Regex, data: &[u8]) -> (u64, u64) {
    let (mut records, mut errors) = (0, 0);
    for line in data.lines() {
        let line = line.unwrap_or_default();
        if re.captures(&line).is_some() {
            records += 1;
            errors += u64::from(error.is_match(&line));
        }
    }
    (records, errors)
}

fn bench(c: &mut Criterion, name: &str, kind: LogKind, data: &[u8], re: &str, error: &str) {
    let (re, error) = (Regex::new(re).unwrap(), Regex::new(error).unwrap());
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("bootproof", |b| {
        b.iter(|| {
            let file = Path::new(name);
            let mut analyzer = live::line_analyzer(kind, file).expect("a live kind");
            let analysis = live::analyze(analyzer.as_mut(), &mut &data[..], file).expect("in memory");
            black_box((analysis.records, analysis.findings.len()))
        })
    });
    group.bench_function("regex-lines", |b| b.iter(|| black_box(regex_baseline(&re, &error, data))));
    group.finish();
}

fn installer_streams(c: &mut Criterion) {
    bench(
        c,
        "di-syslog",
        LogKind::DiSyslog,
        &di_syslog(),
        r"^(?:\[ *[0-9.]+\] )?([A-Z][a-z]{2} [ 0-9][0-9] [0-9:]{8}) ([^:\[ ]+)(?:\[([0-9]+)\])?: ?(.*)$",
        r"(?:WARNING \*\*|ERROR \*\*|: E:|: error:)",
    );
    bench(
        c,
        "anaconda-stream",
        LogKind::AnacondaStream,
        &anaconda_stream(),
        r"^(?:\[ *[0-9.]+\] )?([0-9:]{8},[0-9]{3}) ([A-Z]+) ([^: ]+):(.*)$",
        r" (?:ERR|CRIT) |Traceback \(",
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
    targets = installer_streams
}
criterion_main!(benches);
