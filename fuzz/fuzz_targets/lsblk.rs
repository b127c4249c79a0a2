//! lsblk text and JSON parsing on arbitrary bytes: no panic.
#![no_main]

use bootproof::logs::lsblk;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = lsblk::parse_text(data) {
        assert!(e.line() >= 1);
    }
    let _ = lsblk::parse_json(&mut &data[..]);
});
