//! Detection picks among every analyzer on arbitrary bytes, and the chosen one reads
//! them without panicking or losing count of a line.
#![no_main]

use std::path::Path;

use bootproof::inspect::inspect_reader;
use bootproof::logs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let analyzers = logs::registry();
    let (file, _) = inspect_reader(&analyzers, data, Path::new("fuzz")).unwrap();
    assert!(file.records + file.unparsed_lines <= file.lines);
    let newlines = data.iter().filter(|&&b| b == b'\n').count() as u64;
    assert!(file.lines <= newlines + 1);
});
