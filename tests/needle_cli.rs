//! `bootproof needle`: a needle cut from a real run's screenshot, and the errors that
//! name what is wrong.

use std::path::Path;
use std::process::Command;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/screens").join(name)
}

fn needle(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bootproof")).arg("needle").args(args).output().unwrap()
}

#[test]
fn a_needle_is_cut_in_the_screenshots_colours_and_found_where_it_was_cut() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("card.png");
    let shot = fixture("greeter-1929.png");
    let o = needle(&[shot.to_str().unwrap(), "--area", "693,288,149,223", "--output", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cut = image::open(&out).unwrap().to_rgb8();
    assert_eq!(cut.dimensions(), (149, 223));
    let whole = image::open(&shot).unwrap().to_rgb8();
    assert_eq!(cut.get_pixel(10, 10), whole.get_pixel(703, 298), "the screenshot's own pixels");
    let n = bootproof::screen::Needle::load(&out).unwrap();
    let m = n.find(&bootproof::screen::Gray::load(&shot).unwrap(), None).unwrap();
    assert_eq!((m.x, m.y), (693, 288));
    assert!(m.score > 0.999, "{m:?}");
}

#[test]
fn a_bad_area_or_a_flat_needle_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("n.png");
    let out = out.to_str().unwrap();
    let shot = fixture("session-2000.png");
    let shot = shot.to_str().unwrap();
    for (area, says) in [
        ("1200,700,100,200", "is not inside the 1280x800 picture"),
        ("300,500,50,50", "single colour"),
        ("1,2,3", "give it as x,y,w,h"),
    ] {
        let o = needle(&[shot, "--area", area, "--output", out]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says), "{area}: {err}");
    }
    assert!(!Path::new(out).exists(), "nothing written on a refusal");
}
