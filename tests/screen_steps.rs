//! `wait_screen` and `assert_screen` against a real guest: SDDM's greeter on the
//! installed reference system (a fork of the shipped checkpoint `installed-unlocked`),
//! with needles cut by `bootproof needle`'s code from screenshots of earlier real runs,
//! and text read by tesseract (OCR).

use std::path::Path;

use bootproof::report::Status;
use bootproof::screen::{Area, cut_needle};

#[path = "common/scenario.rs"]
mod scenario_run;
use scenario_run::{ready, run};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/screens").join(name)
}

#[tokio::test]
async fn the_greeter_is_found_on_screen_and_a_desktop_needle_is_not() {
    ready();
    let dir = tempfile::tempdir().unwrap();
    // The user card of another run's greeter; the shell prompt of a desktop session.
    cut_needle(
        &fixture("greeter-1929.png"),
        Area { x: 693, y: 288, w: 149, h: 223 },
        &dir.path().join("card.png"),
    )
    .unwrap();
    cut_needle(
        &fixture("session-2000.png"),
        Area { x: 0, y: 0, w: 190, h: 20 },
        &dir.path().join("prompt.png"),
    )
    .unwrap();
    let r = run(
        dir.path(),
        r#"
name = "screen-steps"
profile = "uefi"
image = "reference:installed"
start = "installed-unlocked"
timeout = "4m"

[[step]]
wait_screen = { needle = "card.png", threshold = 0.9 }
timeout = "2m"

[[step]]
assert_screen = { needle = "prompt.png", area = [0, 0, 400, 100] }
"#,
    )
    .await;
    assert_eq!(r.steps[0].status, Status::Passed, "{}", r.failure_screen());
    assert!(r.run_dir.join("screen-card.png").is_file(), "the screenshot that matched is kept");
    assert_eq!(r.steps[0].files, [Path::new("screen-card.png")], "the step names it for the report");
    assert_eq!(r.steps[1].status, Status::Failed, "{}", r.failure_screen());
    let f = r.failure.as_ref().unwrap();
    assert!(f.what.contains("assert_screen prompt.png in 0,0,400,100"), "{f:?}");
    assert!(f.seen.contains("best score") && f.seen.contains("one screenshot"), "{f:?}");
    for kept in ["screen-prompt-last.png", "screen-prompt-needle.png", "screen-prompt-best.png"] {
        let path = r.run_dir.join(kept);
        assert!(path.is_file() && f.seen.contains(&path.display().to_string()), "{kept}: {f:?}");
    }
    let best = image::open(r.run_dir.join("screen-prompt-best.png")).unwrap();
    assert_eq!((best.width(), best.height()), (190, 20), "the best match is the needle's size");
}

/// Text steps: the greeter's prompt is read in its area; a refusal it does not show is
/// not, and the failure says what was read and keeps the screenshot and the text.
#[tokio::test]
async fn the_greeter_s_words_are_read_and_words_it_lacks_fail_the_step() {
    ready();
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        r#"
name = "screen-text"
profile = "uefi"
image = "reference:installed"
start = "installed-unlocked"
timeout = "4m"

[[step]]
wait_screen = { text = "^Select your user and enter password$", area = [560, 550, 600, 70] }
timeout = "2m"

[[step]]
assert_screen = { text = "Login failed" }
"#,
    )
    .await;
    assert_eq!(r.steps[0].status, Status::Passed, "{}", r.failure_screen());
    let read = "screen-text-select-your-user-and-enter-password";
    assert_eq!(
        r.steps[0].files,
        [format!("{read}.png"), format!("{read}.txt")].map(std::path::PathBuf::from)
    );
    let text = std::fs::read_to_string(r.run_dir.join(format!("{read}.txt"))).unwrap();
    assert_eq!(text.trim(), "Select your user and enter password");
    assert_eq!(r.steps[1].status, Status::Failed, "{}", r.failure_screen());
    let f = r.failure.as_ref().unwrap();
    assert!(f.what.contains("assert_screen text /Login failed/"), "{f:?}");
    assert!(f.expected.contains("text matching /Login failed/ on screen (OCR)"), "{f:?}");
    // The whole screen was read: the greeter's words are there, the refusal is not.
    assert!(f.seen.contains("over one look, OCR read") && f.seen.contains("Select your user"), "{f:?}");
    for kept in ["screen-text-login-failed-last.png", "screen-text-login-failed-last.txt"] {
        let path = r.run_dir.join(kept);
        assert!(path.is_file() && f.seen.contains(&path.display().to_string()), "{kept}: {f:?}");
    }
}

/// On the tiny guest: text that never appears fails at the step's timeout after several
/// looks, keeping the last screenshot and what was read; a profile without a display
/// fails a screen step saying so.
#[tokio::test]
async fn text_that_never_appears_times_out_and_a_machine_without_a_screen_says_so() {
    ready();
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        r#"
name = "screen-text-timeout"
profile = "uefi"
image = "reference:tiny"
timeout = "3m"

[[step]]
wait_console = "bootproof-tiny: init started"

# A step through the agent: the tiny guest then waits for its commands instead of
# powering off when its init is done.
[[step]]
run = "true"

[[step]]
wait_screen = { text = "bootproof never writes this" }
timeout = "4s"
"#,
    )
    .await;
    assert_eq!(r.steps[2].status, Status::Failed, "{}", r.failure_screen());
    let f = r.failure.as_ref().unwrap();
    assert!(f.what.contains("wait_screen text /bootproof never writes this/"), "{f:?}");
    let looks: usize = f
        .seen
        .strip_prefix("over ")
        .and_then(|s| s.split_once(" looks in "))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("{f:?}"));
    assert!(looks >= 2, "it polled: {f:?}");
    let waited = r.steps[2].ended_secs - r.steps[2].started_secs;
    let scale = if r.accel == "tcg" { bootproof::host::accel::Accel::Tcg.timeout_scale() } else { 1.0 };
    assert!(waited >= 4.0 * scale - 0.5 && waited < 4.0 * scale + 10.0, "waited {waited}s");
    for kept in [
        "screen-text-bootproof-never-writes-this-last.png",
        "screen-text-bootproof-never-writes-this-last.txt",
    ] {
        assert!(r.run_dir.join(kept).is_file(), "{kept}");
    }

    std::fs::write(
        dir.path().join("headless.toml"),
        "machine = \"q35\"\nmemory = \"1G\"\ncpus = 1\nfirmware = \"uefi\"\ntpm = \"none\"\ndisplay = \"none\"\n",
    )
    .unwrap();
    let r = run(
        dir.path(),
        r#"
name = "screen-headless"
profile = "headless.toml"
image = "reference:tiny"
timeout = "2m"

[[step]]
wait_console = "bootproof-tiny: init started"

[[step]]
run = "true"

[[step]]
assert_screen = { text = "anything" }
"#,
    )
    .await;
    let f = r.failure.as_ref().expect("a failure");
    assert!(f.what.contains("assert_screen text /anything/"), "{f:?}");
    assert!(f.seen.contains("the profile has no display"), "{f:?}");
}
