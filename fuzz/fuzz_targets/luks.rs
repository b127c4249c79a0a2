//! luksDump parsing on arbitrary bytes: no panic; errors name a line.
#![no_main]

use bootproof::logs::luks;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match luks::parse_dump(data) {
        Ok(header) => assert!(header.version > 0),
        Err(e) => assert!(e.line() >= 1),
    }
});
