//! The share server's frame reader and filter on arbitrary bytes: frames are read from
//! the input as a stream and each is served by a session rooted in a scratch directory
//! (beside which sits a file nothing may reach). No panic, no allocation bigger than
//! the msize, and the file outside is never changed.
#![no_main]

use std::sync::OnceLock;

use bootproof::share::{Shared, session::Session, wire};
use libfuzzer_sys::fuzz_target;

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("bootproof-fuzz-share-{}", std::process::id()));
        let root = base.join("share");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(base.join("outside.txt"), "outside").unwrap();
        Shared::new(root, false, Some(1 << 20), 65560, None).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let shared = shared();
    let mut session = Session::new(shared).unwrap();
    let mut input = data;
    let mut frame = Vec::new();
    while wire::read_frame(&mut input, &mut frame, session.msize).is_ok() {
        let reply = session.handle(&frame);
        assert!(reply.len() >= 7);
    }
    let outside = shared.root.parent().unwrap().join("outside.txt");
    assert_eq!(std::fs::read(outside).unwrap(), b"outside");
});
