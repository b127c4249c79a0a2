//! Sniffing and analysing arbitrary bytes as Firmware never panics, and every line is
//! accounted for.
#![no_main]

use std::path::Path;

use bootproof::logs::{LogKind, firmware};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for analyzer in firmware::analyzers().iter().filter(|a| a.kind() == LogKind::Firmware) {
        let score = analyzer.sniff(data, "fuzz");
        assert!(score <= 100);
        let analysis = analyzer.analyze(&mut &data[..], Path::new("fuzz")).unwrap();
        let accounted = analysis.records + analysis.unparsed_lines;
        assert_eq!(accounted, analysis.lines);
    }
});
