//! Sniffing and analysing arbitrary bytes as JournalJson never panics, and every line is
//! accounted for.
#![no_main]

use std::path::Path;

use bootproof::logs::{LogKind, journal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for analyzer in journal::analyzers().iter().filter(|a| a.kind() == LogKind::JournalJson) {
        let score = analyzer.sniff(data, "fuzz");
        assert!(score <= 100);
        let analysis = analyzer.analyze(&mut &data[..], Path::new("fuzz")).unwrap();
        let accounted = analysis.records + analysis.unparsed_lines;
        assert_eq!(accounted, analysis.lines);
    }
});
