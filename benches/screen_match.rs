//! Needle matching per screenshot (issue: at most 50 ms on one core for 1024x768):
//! SDDM's greeter from a real run, cut to 1024x768, searched for a needle cut from
//! another run's greeter: the user card (149x223) and the prompt line (372x28).
//! And one OCR look (tesseract, one thread) at the greeter after a refused login: the
//! whole 1280x800 screen, and the 600x70 area a text step names.

use std::path::Path;

use bootproof::screen::{Area, Gray, Needle};
use criterion::{Criterion, criterion_group, criterion_main};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/screens").join(name)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let screen = image::open(fixture("greeter-2000.png")).unwrap().crop_imm(256, 0, 1024, 768);
    let screen = Gray::from_image(&screen);
    for (name, area) in [
        ("card 149x223", Area { x: 693, y: 288, w: 149, h: 223 }),
        ("prompt 372x28", Area { x: 668, y: 568, w: 372, h: 28 }),
    ] {
        let path = dir.path().join("needle.png");
        bootproof::screen::cut_needle(&fixture("greeter-1929.png"), area, &path).unwrap();
        let needle = Needle::load(&path).unwrap();
        let m = needle.find(&screen, None).unwrap();
        assert!(m.score > 0.95, "{name}: {m:?}");
        c.bench_function(&format!("find {name} in 1024x768"), |b| {
            b.iter(|| needle.find(&screen, None).unwrap())
        });
    }
}

fn ocr(c: &mut Criterion) {
    let tesseract = bootproof::screen::ocr::ensure().expect("host set-up (tesseract)");
    let shot = fixture("refused-1952.png");
    let mut group = c.benchmark_group("ocr");
    group.sample_size(10);
    for (name, area) in
        [("whole 1280x800", None), ("area 600x70", Some(Area { x: 560, y: 550, w: 600, h: 70 }))]
    {
        let text = bootproof::screen::ocr::read(&tesseract, &shot, area).unwrap();
        assert!(text.contains("Login failed"), "{name}: {text}");
        group.bench_function(name, |b| {
            b.iter(|| bootproof::screen::ocr::read(&tesseract, &shot, area).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench, ocr);
criterion_main!(benches);
