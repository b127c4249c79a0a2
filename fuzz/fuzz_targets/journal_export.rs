//! The export push parser must give the same entries however the stream is cut into
//! chunks, account for every line, and never panic.
#![no_main]

use bootproof::logs::journal::export::ExportParser;
use libfuzzer_sys::fuzz_target;

type Owned = (u64, u64, u64, Vec<(Vec<u8>, Vec<u8>)>, bool);

fn entries(data: &[u8], chunk: usize) -> (Vec<Owned>, u64) {
    let own = |e: bootproof::logs::journal::export::Entry| {
        let fields = e.fields.iter().map(|f| (f.name.to_vec(), f.value.to_vec())).collect();
        (e.line, e.lines, e.unparsed_lines, fields, e.truncated)
    };
    let mut parser = ExportParser::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        out.extend(parser.feed(piece).map(own));
    }
    out.extend(parser.finish().map(own));
    (out, parser.stray_lines())
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let whole = entries(data, data.len());
    assert_eq!(whole, entries(data, usize::from(first)));
    let lines: u64 = whole.0.iter().map(|e| e.1).sum::<u64>() + whole.1;
    let newlines = data.iter().filter(|&&b| b == b'\n').count() as u64;
    let expected = newlines + u64::from(!data.is_empty() && !data.ends_with(b"\n"));
    assert_eq!(lines, expected);
});
