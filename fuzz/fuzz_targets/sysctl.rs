//! `sysctl -a` parsing on arbitrary bytes: no panic; errors name an existing line.
#![no_main]

use bootproof::logs::sysctl;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match sysctl::parse(data) {
        Ok(settings) => assert!(settings.windows(2).all(|w| w[0].line < w[1].line)),
        Err(e) => assert!(e.line() >= 1),
    }
});
