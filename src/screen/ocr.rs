//! Text on the screen, read by tesseract (the distribution's `tesseract-ocr` package,
//! installed by host setup when a scenario has a `wait_screen = { text = ".." }` step,
//! and shown by `bootproof doctor`).
//!
//! No Rust crate reads text from pictures by itself: the tesseract bindings
//! (`tesseract`, `leptess`) link libtesseract and its C++ headers at build time, which
//! would make every build of bootproof need them. The program is run instead, one
//! process per look, fed a PNG on stdin and read on stdout.
//!
//! Before reading, the picture is prepared as tesseract reads best: the area cut out,
//! made grey, scaled up twice (screen fonts are 10–14 pixels high, tesseract's models
//! were trained on about 30), and inverted when the text is light on dark (a
//! terminal), so that it is dark on light. Page segmentation is "sparse text"
//! (`--psm 11`): a screen is labels scattered over a picture, not a page of prose.
//!
//! Owns: preparing the picture, running tesseract, its text. Must not: decide what the
//! text must say (the runner's step does).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Area, ScreenError};
use crate::host::setup::{self, Requirement};

/// The OCR engine, as host setup finds or installs it.
pub const TESSERACT: Requirement = Requirement::command(
    "tesseract",
    "tesseract-ocr",
    "tesseract",
    "reading text on the screen (wait_screen text)",
);

/// How long one look may take before tesseract is killed. A 1280x800 screen takes
/// about 0.7 s here.
pub const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum OcrError {
    #[error(transparent)]
    Setup(#[from] setup::SetupError),
    #[error(transparent)]
    Screen(#[from] ScreenError),
    #[error("{}: {what}", program.display())]
    Run { program: PathBuf, what: String },
}

/// tesseract, installed when missing and allowed (see [`setup`]).
pub fn ensure() -> Result<PathBuf, OcrError> {
    setup::ensure(&[TESSERACT])?;
    TESSERACT.locate().ok_or_else(|| OcrError::Run {
        program: PathBuf::from("tesseract"),
        what: "not found on PATH after set-up".into(),
    })
}

/// The picture as tesseract reads best: `area` cut out (the whole picture when
/// `None`), grey, scaled up twice, dark text on a light ground; encoded as PNG.
pub fn prepare(img: &image::DynamicImage, area: Option<Area>, path: &Path) -> Result<Vec<u8>, ScreenError> {
    let area = Area::inside(area, img.width(), img.height(), path)?;
    let cut = img.crop_imm(area.x, area.y, area.w, area.h).to_luma8();
    let mut grey =
        image::imageops::resize(&cut, area.w * 2, area.h * 2, image::imageops::FilterType::Triangle);
    let mean = grey.pixels().map(|p| u64::from(p.0[0])).sum::<u64>()
        / u64::from(grey.width() * grey.height()).max(1);
    if mean < 128 {
        image::imageops::invert(&mut grey);
    }
    let mut png = Vec::new();
    image::DynamicImage::ImageLuma8(grey)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|source| ScreenError::Write { path: path.into(), source })?;
    Ok(png)
}

/// The text tesseract reads in `area` of the picture at `path` (a screenshot).
pub fn read(program: &Path, path: &Path, area: Option<Area>) -> Result<String, OcrError> {
    let png = prepare(&super::open(path)?, area, path)?;
    run(program, &png, TIMEOUT)
}

/// Runs tesseract on a PNG; its words, line by line, trimmed of empty lines.
pub fn run(program: &Path, png: &[u8], timeout: Duration) -> Result<String, OcrError> {
    let fail = |what: String| OcrError::Run { program: program.into(), what };
    let mut child = Command::new(program)
        .args(["stdin", "stdout", "-l", "eng", "--psm", "11"])
        // One thread: a look must not take both cores from the guests.
        .env("OMP_THREAD_LIMIT", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = png.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).map(|_| out)
    });
    let errors = std::thread::spawn(move || {
        let mut err = Vec::new();
        let _ = stderr.read_to_end(&mut err);
        err
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("gave no answer within {timeout:?}; killed")));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(fail(format!("waiting for it: {e}"))),
        }
    };
    let _ = writer.join();
    let out = reader.join().expect("reader thread").map_err(|e| fail(format!("reading its output: {e}")))?;
    let err = errors.join().unwrap_or_default();
    if !status.success() {
        let said = String::from_utf8_lossy(&err);
        return Err(fail(format!("{status}: {}", said.trim())));
    }
    let text = String::from_utf8_lossy(&out);
    Ok(text.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/screens").join(name)
    }

    /// tesseract, or a failure that says how to get it.
    fn tesseract() -> PathBuf {
        ensure().unwrap_or_else(|e| panic!("these tests read real screenshots with tesseract: {e}"))
    }

    /// SDDM's greeter after a refused login (a run of first-login-password-change made
    /// here): the message is read in its area and on the whole screen; the greeter
    /// before it does not say it.
    #[test]
    fn the_greeter_s_refusal_is_read_and_absent_before_it() {
        let t = tesseract();
        let line = Area { x: 660, y: 560, w: 400, h: 44 };
        let refused = read(&t, &fixture("refused-1952.png"), Some(line)).unwrap();
        assert_eq!(refused.trim(), "Login failed");
        let whole = read(&t, &fixture("refused-1952.png"), None).unwrap();
        assert!(whole.contains("Login failed"), "{whole}");
        assert!(whole.contains("Monday, 30 November 2026"), "{whole}");
        let before = read(&t, &fixture("greeter-2000.png"), Some(line)).unwrap();
        assert!(before.contains("Select your user and enter password"), "{before}");
        assert!(!before.contains("Login failed"), "{before}");
    }

    /// Light text on black (the xterm session): inverted before reading.
    #[test]
    fn a_terminal_s_light_on_dark_prompt_is_read() {
        let t = tesseract();
        let text = read(&t, &fixture("session-2000.png"), Some(Area { x: 0, y: 0, w: 400, h: 20 })).unwrap();
        assert!(text.contains("admin@bootproof-installed"), "{text}");
    }

    #[test]
    fn an_area_outside_the_screen_and_a_picture_that_is_not_one_are_errors_naming_the_file() {
        let t = tesseract();
        let e =
            read(&t, &fixture("session-2000.png"), Some(Area { x: 1200, y: 0, w: 200, h: 20 })).unwrap_err();
        assert!(e.to_string().contains("session-2000.png") && e.to_string().contains("not inside"), "{e}");
        let e = run(&t, b"not a picture", TIMEOUT).unwrap_err();
        assert!(e.to_string().contains("tesseract"), "{e}");
    }

    #[test]
    fn a_program_that_hangs_is_killed_at_the_timeout() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let hang = dir.path().join("hangs");
        std::fs::write(&hang, "#!/bin/sh\nexec sleep 600\n").unwrap();
        std::fs::set_permissions(&hang, std::fs::Permissions::from_mode(0o755)).unwrap();
        let started = Instant::now();
        let e = run(&hang, b"", Duration::from_millis(300)).unwrap_err();
        assert!(e.to_string().contains("killed"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
