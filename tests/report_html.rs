//! `report.html` and `index.html` from real runs of the tiny guest under real QEMU, one
//! passing (with a screenshot, and hostile text on the console) and one failing, then
//! rendered by a real headless browser (Debian's chromium): the pages must load with no
//! console message and no Content-Security-Policy violation, and look like something.
//!
//! Chromium comes through bootproof's host set-up ([`html::chromium`]): installed when
//! root on apt-get or dnf hosts, else the test fails with the command to run.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use bootproof::report::html;

#[path = "common/scenario.rs"]
mod scenario_run;
use scenario_run::{ready, run};

/// Guest text the page must show as text: a script, markup and an ampersand.
const HOSTILE: &str = "report-html-marker <script>alert(1)</script> & <b>bold</b>";

/// What any message of the page in chromium's log looks like: `...:CONSOLE:12] "..."`
/// (a `console.*` call, an uncaught error, or a blocked load), with the CSP's wording
/// ("violates the following Content Security Policy directive") and older Chromium's
/// ("Refused to load").
const BROWSER_ERRORS: [&str; 4] = [":CONSOLE", "Content Security Policy", "Refused to", "Uncaught"];

fn chromium() -> PathBuf {
    let req = html::chromium();
    if let Err(e) = bootproof::host::setup::ensure(&[req]) {
        panic!("this test renders the report in a headless browser and the host lacks it:\n{e}");
    }
    req.locate().expect("chromium is installed")
}

/// Chromium's `--dump-dom` of `url` (after its scripts ran), failing on any message the
/// page logged.
fn dump_dom(browser: &Path, url: &str) -> String {
    let out = browser_command(browser).arg("--dump-dom").arg(url).output().expect("chromium starts");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium --dump-dom {url}: {}\n{stderr}", out.status);
    assert_no_browser_errors(url, &stderr);
    String::from_utf8(out.stdout).expect("the DOM is UTF-8")
}

/// A screenshot of `page`, checked to be a real picture (not one colour).
fn screenshot(browser: &Path, page: &Path, png: &Path) {
    let out = browser_command(browser)
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1280,2400")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium starts");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium --screenshot {}: {}\n{stderr}", page.display(), out.status);
    assert_no_browser_errors(&page.display().to_string(), &stderr);
    let img = image::open(png).unwrap_or_else(|e| panic!("{}: {e}", png.display())).to_rgb8();
    assert_eq!(img.dimensions(), (1280, 2400));
    let mut colours: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(colours.len() > 20, "{}: only {} colours: an empty page", png.display(), colours.len());
}

/// Chromium with the flags of `docs/report.md`, stopped after two minutes (exit 124)
/// should it hang.
fn browser_command(browser: &Path) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["--kill-after=10", "120"]).arg(browser).args(headless_flags());
    cmd
}

/// The flags of `docs/report.md`: no sandbox (root in a container), no GPU, the log on
/// stderr, and time for the page's scripts to run.
fn headless_flags() -> [&'static str; 6] {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=2000",
    ]
}

fn assert_no_browser_errors(what: &str, stderr: &str) {
    let bad: Vec<&str> = stderr.lines().filter(|l| BROWSER_ERRORS.iter().any(|e| l.contains(e))).collect();
    assert!(bad.is_empty(), "{what} logged in the browser:\n{}", bad.join("\n"));
}

/// The bytes of the first `data:image/png` URI after `from` in the page.
fn embedded_png(page: &str, from: usize) -> Vec<u8> {
    let start = from + page[from..].find("data:image&#x2f;png;base64,").expect("an embedded PNG");
    let data = &page[start..];
    let data = &data[data.find(',').unwrap() + 1..data.find('"').unwrap()];
    base64::engine::general_purpose::STANDARD.decode(data.replace("&#x2f;", "/")).expect("valid base64")
}

#[tokio::test]
async fn real_runs_get_a_report_that_renders_and_an_index_of_both() {
    ready();
    let browser = chromium();
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("artifacts");

    let passed = run(
        dir.path(),
        &format!(
            r#"
name = "report-html-pass"
profile = "uefi"
image = "reference:tiny"
timeout = "2m"

[[step]]
wait_console = "bootproof-tiny: init started"

[[step]]
run = "echo '{HOSTILE}' > /dev/console"

[[step]]
wait_console = "report-html-marker"

[[step]]
screenshot = "booted"

[[step]]
power_off = true

[[check]]
no_kernel_oops = true
"#
        ),
    )
    .await;
    assert!(passed.passed, "{}", passed.failure_screen());
    assert_eq!(passed.run_dir.parent().and_then(Path::parent), Some(artifacts.as_path()));

    let failed = run(
        dir.path(),
        r#"
name = "report-html-fail"
profile = "uefi"
image = "reference:tiny"
timeout = "2m"

[[step]]
run = "echo '<b>boom & bust</b>' >&2; exit 3"

[[step]]
run = "true"

[[check]]
file_contains = { path = "share:report.txt", pattern = "no such text anywhere" }
"#,
    )
    .await;
    assert!(!failed.passed);

    // The passing run: its steps, the screenshot inline at its step, the hostile
    // console line as text.
    let report = passed.run_dir.join(html::REPORT_FILE);
    let page = std::fs::read_to_string(&report).expect("report.html in the run dir");
    for s in &passed.steps {
        assert!(page.contains(&escaped(&s.description)), "step {} missing: {}", s.index, s.description);
    }
    assert!(page.contains("PASSED") && !page.contains("id=\"failure\""));
    let shot_step = passed.steps.iter().find(|s| s.action == "screenshot").expect("a screenshot step");
    assert_eq!(shot_step.files, [PathBuf::from("booted.png")]);
    let row = page.find(&format!("id=\"step-{}\"", shot_step.index)).unwrap();
    let next = page.find(&format!("id=\"step-{}\"", shot_step.index + 1)).unwrap();
    assert!(page[row..next].contains("data-file=\"booted.png\""), "the screenshot sits in its step's row");
    let png = std::fs::read(passed.run_dir.join("booted.png")).unwrap();
    assert_eq!(embedded_png(&page, row), png, "the row embeds booted.png itself");
    assert!(!page.contains("<script>alert(1)") && !page.contains("<b>bold"));

    // The failing run: the failure on top, with expected and seen, escaped.
    let fail_page = std::fs::read_to_string(failed.run_dir.join(html::REPORT_FILE)).unwrap();
    let failure = fail_page.find("id=\"failure\"").expect("the failure block");
    assert!(failure < fail_page.find("id=\"steps\"").unwrap(), "the failure comes before the steps");
    assert!(fail_page.contains("FAILED"));
    assert!(fail_page[failure..].contains("exit code 0"), "expected");
    assert!(fail_page[failure..].contains("&lt;b&gt;boom &amp; bust&lt;&#x2f;b&gt;"), "seen, escaped");
    let check = &failed.checks[0];
    assert_eq!((check.kind, check.status.as_str()), ("file_contains", "failed"));
    assert!(fail_page.contains(&escaped(&check.message)), "the check's expected and seen: {}", check.message);

    // The index lists both, newest first, with links to the reports.
    let index = artifacts.join(html::INDEX_FILE);
    let index_page = std::fs::read_to_string(&index).expect("index.html in the artifacts dir");
    let link = |r: &bootproof::report::ScenarioReport| {
        let rel = r.run_dir.strip_prefix(&artifacts).unwrap().join(html::REPORT_FILE);
        format!("href=\"{}\"", rel.display().to_string().replace('/', "&#x2f;"))
    };
    let (at_fail, at_pass) = (index_page.find(&link(&failed)), index_page.find(&link(&passed)));
    assert!(at_fail.is_some() && at_pass.is_some() && at_fail < at_pass, "both, newest first:\n{index_page}");
    assert!(
        index_page.contains("2 runs") && index_page.contains("1 passed") && index_page.contains("1 failed")
    );

    // In the browser: no message, no blocked load; the scripts ran (the search of
    // `#q=` filtered the console to the one hostile line, shown as text).
    let url = format!("file://{}#q=report-html-marker", report.display());
    let dom = dump_dom(&browser, &url);
    let lines = passed_console_lines(&passed.run_dir);
    assert!(dom.contains(&format!("1 of {lines} lines shown")), "the search ran:\n{}", tail(&dom));
    assert!(
        dom.contains(
            "report-html-marker &lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;"
        )
    );
    assert!(!dom.contains("<b>bold</b>") && !dom.contains("<script>alert"), "guest text became markup");
    assert_eq!(dom.matches("class=\"tl-bar passed\"").count(), passed.steps.len(), "a bar per step");
    let fail_dom =
        dump_dom(&browser, &format!("file://{}", failed.run_dir.join(html::REPORT_FILE).display()));
    assert!(fail_dom.contains("&lt;b&gt;boom &amp; bust&lt;/b&gt;") && !fail_dom.contains("<b>boom"));
    let index_dom = dump_dom(&browser, &format!("file://{}", index.display()));
    assert!(index_dom.contains("report-html-pass") && index_dom.contains("report-html-fail"));

    screenshot(&browser, &report, &dir.path().join("report.png"));
    screenshot(&browser, &failed.run_dir.join(html::REPORT_FILE), &dir.path().join("fail.png"));
    screenshot(&browser, &index, &dir.path().join("index.png"));
}

/// How many lines the page's console holds: console.log's, all of it for this short run.
fn passed_console_lines(run_dir: &Path) -> usize {
    std::fs::read_to_string(run_dir.join("console.log")).unwrap().lines().count()
}

/// `text` as minijinja's HTML escaping writes it.
fn escaped(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".into(),
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '"' => "&quot;".into(),
            '\'' => "&#x27;".into(),
            '/' => "&#x2f;".into(),
            c => c.to_string(),
        })
        .collect()
}

fn tail(s: &str) -> &str {
    &s[s.len().saturating_sub(3000)..]
}
