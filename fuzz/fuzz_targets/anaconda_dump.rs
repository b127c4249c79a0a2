//! The anaconda-tb dump reader on arbitrary bytes: no panic, every line accounted for.
#![no_main]

use std::path::Path;

use bootproof::logs::anaconda::dump;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dump = dump::parse(&mut &data[..], Path::new("fuzz")).expect("reading memory cannot fail");
    let t = dump.tally;
    assert_eq!(t.records + t.continuation_lines + t.unparsed_lines, t.lines);
});
