//! `btrfs subvolume list` parsing on arbitrary bytes: no panic; errors name a line.
#![no_main]

use bootproof::logs::btrfs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match btrfs::parse_subvolume_list(data) {
        Ok(list) => assert!(list.iter().all(|s| s.line >= 1)),
        Err(e) => assert!(e.line() >= 1),
    }
});
