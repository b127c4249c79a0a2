//! The Debian installer's syslog analyzer on arbitrary bytes: no panic, every line
//! accounted for once, and the same findings whether the bytes are read as a file or fed
//! line by line as a log port would.
#![no_main]

use std::path::Path;

use bootproof::logs::LogKind;
use bootproof::logs::debian_installer;
use bootproof::logs::live;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let file = Path::new("fuzz");
    for analyzer in debian_installer::analyzers() {
        assert!(analyzer.sniff(data, "syslog") <= 100);
        let analysis = analyzer.analyze(&mut &data[..], file).unwrap();
        assert_eq!(analysis.records + analysis.continuation_lines + analysis.unparsed_lines, analysis.lines);
        let mut fed = live::line_analyzer(LogKind::DiSyslog, file).unwrap();
        let mut findings = Vec::new();
        // As `vm::logport` hands lines out: split at `\n`, a `\r` before it dropped, a
        // last line without `\n` kept.
        let whole = data.strip_suffix(b"\n").unwrap_or(data);
        let lines = whole.split(|b| *b == b'\n').filter(|_| !data.is_empty());
        for (index, line) in lines.enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            findings.extend(fed.line(index as u64 + 1, line));
        }
        findings.extend(fed.finish());
        if data.len() < 1 << 20 {
            assert_eq!(findings, analysis.findings);
            assert_eq!(fed.tally().lines, analysis.lines);
        }
    }
});
