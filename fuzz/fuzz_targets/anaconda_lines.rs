//! Every line-oriented installer log parser, and every sniff, on arbitrary bytes: no
//! panic, and every line accounted for exactly once.
#![no_main]

use std::path::Path;

use bootproof::logs::LogKind;
use bootproof::logs::anaconda::{analyzers, read_records};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for analyzer in analyzers() {
        let _ = analyzer.sniff(data, "anaconda.log");
        if analyzer.kind() == LogKind::AnacondaTraceback {
            continue;
        }
        let (tally, _) = read_records(analyzer.kind(), &mut &data[..], Path::new("fuzz"))
            .expect("reading memory cannot fail");
        assert_eq!(
            tally.records + tally.continuation_lines + tally.unparsed_lines,
            tally.lines
        );
    }
});
