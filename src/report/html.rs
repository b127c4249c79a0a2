//! `report.html` in a run directory and `index.html` in the artifacts directory: one
//! self-contained page each, rendered from a template (minijinja, every value
//! auto-escaped) and passed through the redactor before it is written.
//!
//! Owns: what the pages show, the caps on what they embed (the console's tail, the
//! screenshots), reading the run directory for them, and writing them atomically (a
//! temporary file in the same directory, renamed over the page), so a reader or another
//! process rebuilding the index never sees half a page.
//! Must not: run anything, or make a page that fetches anything: its Content-Security-
//! Policy forbids every load but inline styles, inline script and `data:` images, so a
//! reference to anything outside the page shows as an error in a browser.
//!
//! The index is rebuilt from a fresh scan of `*/*/summary.json` each time a run ends;
//! processes finishing at once take turns (a lock file), so the last rebuild lists
//! every run that had finished. A `summary.json` cut short (another process writing
//! it) is skipped for [`TORN_GRACE`], then listed as unreadable, like one that does not
//! parse.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine;
use minijinja::value::{Serde, Value};
use serde::{Deserialize, Serialize};

use super::{ScenarioReport, StepReport};
use crate::host::setup::{PackageManager, Requirement};

pub const REPORT_FILE: &str = "report.html";
pub const INDEX_FILE: &str = "index.html";
const INDEX_LOCK: &str = ".index.lock";

/// The console log's tail that a report embeds: a flooding guest writes hundreds of
/// megabytes, which no browser opens; the page says what it left out.
pub const CONSOLE_TAIL_BYTES: u64 = 2 * 1024 * 1024;
pub const CONSOLE_TAIL_LINES: usize = 20_000;
/// A screenshot larger than this is linked, not embedded.
pub const IMAGE_MAX_BYTES: u64 = 4 * 1024 * 1024;
/// What all of a report's embedded screenshots may weigh together; the rest are linked.
pub const IMAGES_TOTAL_BYTES: u64 = 24 * 1024 * 1024;
/// How long a `summary.json` that ends mid-way is taken for one being written.
pub const TORN_GRACE: Duration = Duration::from_secs(60);

const REPORT_TEMPLATE: &str = include_str!("templates/report.html");
const INDEX_TEMPLATE: &str = include_str!("templates/index.html");
const STYLE: &str = include_str!("templates/style.css");
/// The `<head>` both pages include: the Content-Security-Policy and the stylesheet.
const HEAD_TEMPLATE: &str = include_str!("templates/head.html");

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// The browser that renders a report headless (the report test, `docs/report.md`).
/// Fedora's package installs it as `chromium-browser`.
pub fn chromium() -> Requirement {
    let cmd = match PackageManager::detect() {
        Some(PackageManager::Dnf) => "chromium-browser",
        _ => "chromium",
    };
    Requirement::command(cmd, "chromium", "chromium", "rendering report.html headless to check it")
}

/// Writes `report.html` into `run_dir` for `report` (after `summary.json`).
pub fn write_report(run_dir: &Path, report: &ScenarioReport) -> std::io::Result<PathBuf> {
    let page = render_report(report, &RunFiles::read(run_dir, report)).map_err(std::io::Error::other)?;
    let path = run_dir.join(REPORT_FILE);
    write_atomic(&path, &page)?;
    Ok(path)
}

/// Rebuilds `index.html` in `artifacts` from every `*/*/summary.json` under it.
///
/// Rebuilds take turns (a lock file beside the index): without it, a rebuild that
/// scanned first could rename its page over one that scanned later, and the index
/// would lack the run that finished last.
pub fn write_index(artifacts: &Path) -> std::io::Result<PathBuf> {
    let lock = std::fs::File::create(artifacts.join(INDEX_LOCK))?;
    lock.lock()?;
    let page = render_index(&scan_runs(artifacts, SystemTime::now())).map_err(std::io::Error::other)?;
    let path = artifacts.join(INDEX_FILE);
    write_atomic(&path, &page)?;
    Ok(path)
}

/// A temporary file beside `path`, renamed over it: readers see the old page or the
/// new one, whole (also how the runner writes `summary.json`, which the index reads).
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut tmp = tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".tmp").tempfile_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

// ---- What a report reads from its run directory --------------------------------------

/// The run directory's files a report shows, read with the caps applied.
#[derive(Debug, Default)]
pub struct RunFiles {
    pub console: Option<ConsoleTail>,
    /// Embedded screenshots by their path relative to the run directory.
    pub images: Vec<(PathBuf, Embedded)>,
    /// The run directory's own entries (not below), for the links.
    pub listing: Vec<Entry>,
}

#[derive(Debug, Clone)]
pub enum Embedded {
    Png(Vec<u8>),
    /// Not embedded, and why.
    Left(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub name: String,
    pub dir: bool,
    pub bytes: u64,
}

/// The end of the console log, whole lines only.
#[derive(Debug, Clone, Default)]
pub struct ConsoleTail {
    pub lines: Vec<String>,
    pub total_bytes: u64,
    /// Bytes before the first line kept.
    pub omitted_bytes: u64,
}

impl RunFiles {
    /// Reads what `report` refers to; a file that is missing or unreadable is left out.
    pub fn read(run_dir: &Path, report: &ScenarioReport) -> RunFiles {
        let console = read_console(&run_dir.join("console.log"), CONSOLE_TAIL_BYTES, CONSOLE_TAIL_LINES).ok();
        let listing = list_dir(run_dir);
        let mut budget = IMAGES_TOTAL_BYTES;
        let mut images = Vec::new();
        for rel in screenshots(report, &listing) {
            let embedded = read_image(&run_dir.join(&rel), &mut budget);
            images.push((rel, embedded));
        }
        RunFiles { console, images, listing }
    }
}

/// The PNGs to show: each step's, in step order, then the run directory's own PNGs no
/// step names (`timeout.png`: the screen when bootproof gave up).
fn screenshots(report: &ScenarioReport, listing: &[Entry]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let step_files = report.steps.iter().flat_map(|s| &s.files);
    for f in step_files.filter(|f| is_png_name(f) && is_inside(f)) {
        if !out.contains(f) {
            out.push(f.clone());
        }
    }
    for e in listing.iter().filter(|e| !e.dir && is_png_name(Path::new(&e.name))) {
        let p = PathBuf::from(&e.name);
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

fn is_png_name(p: &Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"))
}

/// A relative path that stays inside the run directory.
fn is_inside(p: &Path) -> bool {
    p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// The PNG at `path` if it fits the caps. A symlink is not followed: the share's files
/// are the guest's, and a link could point anywhere on the host.
fn read_image(path: &Path, budget: &mut u64) -> Embedded {
    let len = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => return Embedded::Left("not a plain file".into()),
        Err(e) => return Embedded::Left(format!("not readable: {e}")),
    };
    if len > IMAGE_MAX_BYTES {
        return Embedded::Left(format!(
            "{} is over the {} cap for one image",
            size(len),
            size(IMAGE_MAX_BYTES)
        ));
    }
    if len > *budget {
        return Embedded::Left(format!("the report's {} for screenshots is spent", size(IMAGES_TOTAL_BYTES)));
    }
    let mut bytes = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(len).read_to_end(&mut bytes));
    match read {
        Ok(_) if bytes.starts_with(PNG_MAGIC) => {
            *budget -= bytes.len() as u64;
            Embedded::Png(bytes)
        }
        Ok(_) => Embedded::Left("not a PNG".into()),
        Err(e) => Embedded::Left(format!("not readable: {e}")),
    }
}

fn list_dir(dir: &Path) -> Vec<Entry> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<Entry> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let meta = e.metadata().ok()?;
            (!name.starts_with('.') && name != REPORT_FILE).then(|| Entry {
                dir: meta.is_dir(),
                bytes: meta.len(),
                name,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The last `max_bytes` of the log, whole lines, at most `max_lines` of them, redacted.
pub fn read_console(path: &Path, max_bytes: u64, max_lines: usize) -> std::io::Result<ConsoleTail> {
    let mut file = std::fs::File::open(path)?;
    let total_bytes = file.metadata()?.len();
    let start = total_bytes.saturating_sub(max_bytes);
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    file.take(max_bytes).read_to_end(&mut buf)?;
    let mut omitted_bytes = start;
    if start > 0 {
        // The first line is cut: start at the next whole one.
        let cut = memchr::memchr(b'\n', &buf).map_or(buf.len(), |i| i + 1);
        omitted_bytes += cut as u64;
        buf.drain(..cut);
    }
    // More than `max_lines` when the body holds `max_lines` breaks: keep what follows
    // the last of them counted from the end.
    let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
    let max_lines = max_lines.max(1);
    if let Some(cut) = memchr::memrchr_iter(b'\n', body).nth(max_lines - 1).map(|i| i + 1) {
        omitted_bytes += cut as u64;
        buf.drain(..cut);
    }
    let text = crate::redact::bytes(&buf);
    let body = text.strip_suffix(b"\n").unwrap_or(&text);
    let lines = if body.is_empty() {
        Vec::new()
    } else {
        body.split(|&b| b == b'\n').map(|l| printable(&String::from_utf8_lossy(l))).collect()
    };
    Ok(ConsoleTail { lines, total_bytes, omitted_bytes })
}

/// Control characters as their visible symbols (U+2400...): a terminal's escapes
/// neither vanish nor break the page.
fn printable(line: &str) -> String {
    line.trim_end_matches('\r')
        .chars()
        .map(|c| match c {
            '\t' => c,
            '\u{0}'..='\u{1f}' => char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}'),
            '\u{7f}' => '\u{2421}',
            _ => c,
        })
        .collect()
}

// ---- The report page -------------------------------------------------------------------

#[derive(Serialize)]
struct ReportPage<'a> {
    style: &'static str,
    r: &'a ScenarioReport,
    started: String,
    ended: String,
    elapsed: String,
    queued: String,
    timeout: String,
    steps: Vec<StepView>,
    checkpoint_steps: Vec<StepView>,
    /// How the checkpoint came to be: built or cached, its times, how the fork ended.
    checkpoint_how: String,
    /// The report of the checkpoint's build, when this run built it (in its run dir).
    checkpoint_report: Option<String>,
    /// The timeline's length in seconds and its tick marks.
    span: String,
    ticks: Vec<Tick>,
    findings: Vec<FindingView>,
    console: ConsoleView,
    other_shots: Vec<Shot>,
    files: Vec<FileLink>,
    checks_failed: usize,
}

#[derive(Serialize)]
struct StepView {
    index: usize,
    line: usize,
    action: &'static str,
    description: String,
    status: &'static str,
    started: String,
    ended: String,
    took: String,
    from: f64,
    to: f64,
    message: Option<String>,
    left: String,
    width: String,
    shots: Vec<Shot>,
    /// The step's other files (a needle's evidence that is not a picture).
    files: Vec<FileLink>,
}

#[derive(Serialize)]
struct Shot {
    name: String,
    href: String,
    data: Option<String>,
    note: Option<String>,
}

#[derive(Serialize)]
struct FileLink {
    name: String,
    href: String,
    size: String,
}

#[derive(Serialize)]
struct Tick {
    left: String,
    label: String,
}

#[derive(Serialize)]
struct FindingView {
    severity: String,
    kind: String,
    place: String,
    href: Option<String>,
    time: Option<String>,
    phase: Option<String>,
    summary: String,
    evidence: Vec<String>,
}

#[derive(Serialize)]
struct ConsoleView {
    present: bool,
    lines: Vec<ConsoleLine>,
    total: String,
    omitted: Option<String>,
}

#[derive(Serialize)]
struct ConsoleLine {
    stamp: Option<String>,
    secs: Option<f64>,
    text: String,
}

/// The whole `report.html` for `report` with `files` from its run directory.
pub fn render_report(report: &ScenarioReport, files: &RunFiles) -> Result<String, minijinja::Error> {
    let mut report = report.clone();
    report.redact();
    let r = &report;
    let span = timeline_span(r);
    let shot = |rel: &Path| make_shot(rel, files);
    let steps: Vec<StepView> = r.steps.iter().map(|s| step_view(s, span, &shot)).collect();
    let checkpoint_steps = match &r.checkpoint {
        Some(c) => {
            let span = timeline_span_of(&c.steps, 0.0);
            c.steps.iter().map(|s| step_view(s, span, &|_| None)).collect()
        }
        None => Vec::new(),
    };
    let named: Vec<&PathBuf> = r.steps.iter().flat_map(|s| &s.files).collect();
    let other_shots =
        files.images.iter().filter(|(p, _)| !named.contains(&p)).filter_map(|(p, _)| shot(p)).collect();
    let page = ReportPage {
        style: STYLE,
        started: utc(r.started_unix),
        ended: utc(r.ended_unix),
        elapsed: secs(r.elapsed_secs),
        queued: secs(r.queued_secs),
        timeout: secs(r.timeout_secs),
        steps,
        checkpoint_steps,
        checkpoint_how: r.checkpoint.as_ref().map(checkpoint_how).unwrap_or_default(),
        checkpoint_report: r
            .checkpoint
            .as_ref()
            .and_then(|c| c.build_run_dir.as_ref()?.strip_prefix(&r.run_dir).ok().filter(|p| is_inside(p)))
            .map(|p| href(&p.join(REPORT_FILE), false)),
        span: secs(span),
        ticks: ticks(span),
        findings: r.findings.iter().map(|f| finding_view(f, &r.run_dir)).collect(),
        console: console_view(files.console.as_ref()),
        other_shots,
        files: files.listing.iter().map(file_link).collect(),
        checks_failed: r.checks.iter().filter(|c| c.status != super::Status::Passed).count(),
        r,
    };
    render("report.html", REPORT_TEMPLATE, Value::from(Serde(&page)))
}

/// `template` rendered with `ctx`, redacted. An error is a bug of the template's (the
/// data is bootproof's own); the runner writes no page then, rather than fail the run.
fn render(name: &str, template: &str, ctx: Value) -> Result<String, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_syntax(minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build()?);
    env.add_template("head.html", HEAD_TEMPLATE)?;
    env.add_template(name, template)?;
    let html = env.get_template(name)?.render(ctx)?;
    Ok(crate::redact::text(&html).into_owned())
}

fn checkpoint_how(c: &super::CheckpointReport) -> String {
    let mut how = vec![if c.built { "built by this run".to_string() } else { "from the cache".to_string() }];
    how.extend(c.build_secs.map(|s| format!("built in {}", secs(s))));
    how.extend(c.restore_secs.map(|s| format!("restored in {}", secs(s))));
    how.extend(c.ended.clone());
    how.join(", ")
}

/// Seconds the timeline spans: the run, or the last step's end if later.
fn timeline_span(r: &ScenarioReport) -> f64 {
    timeline_span_of(&r.steps, r.elapsed_secs)
}

fn timeline_span_of(steps: &[StepReport], at_least: f64) -> f64 {
    steps.iter().map(|s| s.ended_secs).fold(at_least, f64::max).max(1.0)
}

fn step_view(s: &StepReport, span: f64, shot: &dyn Fn(&Path) -> Option<Shot>) -> StepView {
    let (from, to) = (s.started_secs.max(0.0), s.ended_secs.max(s.started_secs).max(0.0));
    let shots = s.files.iter().filter(|f| is_png_name(f)).filter_map(|f| shot(f)).collect();
    let files = s
        .files
        .iter()
        .filter(|f| !is_png_name(f) && is_inside(f))
        .map(|f| FileLink { name: f.display().to_string(), href: href(f, false), size: String::new() })
        .collect();
    StepView {
        index: s.index,
        line: s.line,
        action: s.action,
        description: s.description.clone(),
        status: s.status.as_str(),
        started: format!("{from:.1}"),
        ended: format!("{to:.1}"),
        took: secs(to - from),
        from,
        to,
        message: s.message.clone(),
        left: format!("{:.3}", from / span * 100.0),
        width: format!("{:.3}", ((to - from) / span * 100.0).max(0.4)),
        shots,
        files,
    }
}

fn make_shot(rel: &Path, files: &RunFiles) -> Option<Shot> {
    let (_, embedded) = files.images.iter().find(|(p, _)| p == rel)?;
    let (data, note) = match embedded {
        Embedded::Png(bytes) => (
            Some(format!(
                "data:image/png;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(bytes)
            )),
            None,
        ),
        Embedded::Left(why) => (None, Some(why.clone())),
    };
    Some(Shot { name: rel.display().to_string(), href: href(rel, false), data, note })
}

/// Tick marks at the smallest round step that gives at most 10 of them.
fn ticks(span: f64) -> Vec<Tick> {
    let step = [1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0]
        .into_iter()
        .find(|s| span / s <= 10.0)
        .unwrap_or(span / 10.0);
    (0..)
        .map(|i| i as f64 * step)
        .take_while(|t| *t <= span)
        .map(|t| Tick { left: format!("{:.3}", t / span * 100.0), label: format!("{t:.0}s") })
        .collect()
}

fn finding_view(f: &crate::logs::Finding, run_dir: &Path) -> FindingView {
    let rel = f.file.strip_prefix(run_dir).ok().filter(|p| is_inside(p));
    let shown = rel.unwrap_or(&f.file);
    FindingView {
        severity: format!("{:?}", f.severity).to_lowercase(),
        kind: serde_json::to_value(f.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        place: format!("{}:{}", shown.display(), f.line),
        href: rel.map(|p| href(p, false)),
        time: f.time.clone(),
        phase: f.phase.map(|p| format!("{p:?}").to_lowercase()),
        summary: f.summary.clone(),
        evidence: f.evidence.clone(),
    }
}

fn console_view(tail: Option<&ConsoleTail>) -> ConsoleView {
    let Some(t) = tail else {
        return ConsoleView { present: false, lines: Vec::new(), total: String::new(), omitted: None };
    };
    let omitted = (t.omitted_bytes > 0).then(|| {
        format!(
            "the first {} of the log's {} are left out: this page keeps its last {} and {} lines at most; console.log has it all",
            size(t.omitted_bytes),
            size(t.total_bytes),
            size(CONSOLE_TAIL_BYTES),
            CONSOLE_TAIL_LINES
        )
    });
    ConsoleView {
        present: true,
        lines: t.lines.iter().map(|l| console_line(l)).collect(),
        total: size(t.total_bytes),
        omitted,
    }
}

/// A console line with its `[seconds since QEMU start]` stamp taken apart.
fn console_line(line: &str) -> ConsoleLine {
    let stamped = line.strip_prefix('[').and_then(|rest| {
        let (stamp, text) = rest.split_once(']')?;
        let secs: f64 = stamp.trim().parse().ok()?;
        Some((stamp.trim().to_string(), secs, text.strip_prefix(' ').unwrap_or(text)))
    });
    match stamped {
        Some((stamp, secs, text)) => ConsoleLine { stamp: Some(stamp), secs: Some(secs), text: text.into() },
        None => ConsoleLine { stamp: None, secs: None, text: line.into() },
    }
}

fn file_link(e: &Entry) -> FileLink {
    let size = if e.dir { "dir".into() } else { size(e.bytes) };
    let name = if e.dir { format!("{}/", e.name) } else { e.name.clone() };
    FileLink { href: href(Path::new(&e.name), e.dir), name, size }
}

/// A relative link to `rel`, percent-encoded.
fn href(rel: &Path, dir: bool) -> String {
    let mut out = String::new();
    for b in rel.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if dir {
        out.push('/');
    }
    out
}

fn secs(s: f64) -> String {
    format!("{s:.1} s")
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// `2026-11-30 20:00:49 UTC`.
fn utc(unix: f64) -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(unix.max(0.0));
    humantime::format_rfc3339_seconds(t).to_string().replace('T', " ").replace('Z', " UTC")
}

// ---- The index -------------------------------------------------------------------------

/// One run as the index lists it.
#[derive(Debug, Clone, Serialize)]
pub struct IndexRow {
    pub scenario: String,
    pub run_id: String,
    /// `passed`, `failed` or `unreadable`.
    pub result: &'static str,
    pub started_unix: f64,
    pub started: String,
    pub elapsed: String,
    pub accel: String,
    pub image: String,
    pub profile: String,
    /// What failed first, or why the summary is unreadable.
    pub note: Option<String>,
    /// Relative to the artifacts directory: the report, or the summary for a run
    /// without one.
    pub href: String,
}

/// The part of `summary.json` the index reads.
#[derive(Deserialize)]
struct SummaryHead {
    scenario: String,
    passed: bool,
    started_unix: f64,
    elapsed_secs: f64,
    accel: String,
    profile: String,
    image: String,
    failure: Option<FailureHead>,
}

#[derive(Deserialize)]
struct FailureHead {
    what: String,
}

/// Every run under `artifacts` with a `summary.json` (`<scenario>/<run-id>/`), newest
/// first. A summary cut short less than [`TORN_GRACE`] before `now` is being written and
/// left out; any other that does not parse is listed as unreadable.
pub fn scan_runs(artifacts: &Path, now: SystemTime) -> Vec<IndexRow> {
    let mut rows = Vec::new();
    for scenario_dir in sorted_dirs(artifacts) {
        for run_dir in sorted_dirs(&scenario_dir) {
            if let Some(row) = index_row(artifacts, &run_dir, now) {
                rows.push(row);
            }
        }
    }
    rows.sort_by(|a, b| b.started_unix.total_cmp(&a.started_unix).then_with(|| b.run_id.cmp(&a.run_id)));
    rows
}

fn sorted_dirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut dirs: Vec<PathBuf> =
        rd.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).collect();
    dirs.sort();
    dirs
}

fn index_row(artifacts: &Path, run_dir: &Path, now: SystemTime) -> Option<IndexRow> {
    let summary = run_dir.join("summary.json");
    let meta = std::fs::metadata(&summary).ok()?;
    let rel = run_dir.strip_prefix(artifacts).unwrap_or(run_dir);
    let name = |i: usize| rel.iter().nth(i).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let (scenario_dir, run_id) = (name(0), name(1));
    let has_report = run_dir.join(REPORT_FILE).is_file();
    let target = if has_report { REPORT_FILE } else { "summary.json" };
    let href = href(&rel.join(target), false);
    let parsed = std::fs::read(&summary).map_err(|e| e.to_string()).and_then(|b| {
        serde_json::from_slice::<SummaryHead>(&b).map_err(|e| {
            let torn = e.is_eof() || b.is_empty();
            if torn { format!("cut short: {e}") } else { e.to_string() }
        })
    });
    let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    match parsed {
        Ok(s) => Some(IndexRow {
            scenario: s.scenario,
            run_id,
            result: if s.passed { "passed" } else { "failed" },
            started_unix: s.started_unix,
            started: utc(s.started_unix),
            elapsed: secs(s.elapsed_secs),
            accel: s.accel,
            image: s.image,
            profile: s.profile,
            note: s.failure.map(|f| f.what),
            href,
        }),
        Err(e)
            if e.starts_with("cut short") && now.duration_since(mtime).unwrap_or_default() < TORN_GRACE =>
        {
            None
        }
        Err(e) => {
            let started_unix = mtime.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
            Some(IndexRow {
                scenario: scenario_dir,
                run_id,
                result: "unreadable",
                started_unix,
                started: utc(started_unix),
                elapsed: String::new(),
                accel: String::new(),
                image: String::new(),
                profile: String::new(),
                note: Some(format!("summary.json: {e}")),
                href,
            })
        }
    }
}

#[derive(Serialize)]
struct IndexPage<'a> {
    style: &'static str,
    rows: &'a [IndexRow],
    generated: String,
    passed: usize,
    failed: usize,
    unreadable: usize,
}

/// The whole `index.html` for `rows`.
pub fn render_index(rows: &[IndexRow]) -> Result<String, minijinja::Error> {
    let count = |what: &str| rows.iter().filter(|r| r.result == what).count();
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let page = IndexPage {
        style: STYLE,
        rows,
        generated: utc(now),
        passed: count("passed"),
        failed: count("failed"),
        unreadable: count("unreadable"),
    };
    render("index.html", INDEX_TEMPLATE, Value::from(Serde(&page)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{Finding, FindingKind, Severity};
    use crate::report::{CheckReport, Failure, Status};

    fn step(index: usize, description: &str, from: f64, to: f64, files: &[&str]) -> StepReport {
        StepReport {
            index,
            line: 4 + index,
            action: "run",
            description: description.into(),
            status: Status::Passed,
            started_secs: from,
            ended_secs: to,
            message: None,
            files: files.iter().map(PathBuf::from).collect(),
        }
    }

    fn sample(run_dir: &Path, passed: bool) -> ScenarioReport {
        ScenarioReport {
            scenario: "tiny-html".into(),
            file: None,
            passed,
            profile: "uefi".into(),
            image: "reference:tiny".into(),
            accel: "tcg".into(),
            run_dir: run_dir.into(),
            started_unix: 1_796_068_849.5,
            ended_unix: 1_796_068_867.0,
            vm_started_unix: Some(1_796_068_849.6),
            vm_ended_unix: Some(1_796_068_866.0),
            elapsed_secs: 17.4,
            queued_secs: 0.0,
            timeout_secs: 90.0,
            agent: Some("shell".into()),
            steps: vec![
                step(1, "wait_console /bootproof-tiny: init started/", 0.1, 14.0, &[]),
                step(2, "screenshot booted", 14.0, 14.2, &["booted.png"]),
                step(3, "power_off", 14.2, 15.0, &[]),
            ],
            checks: vec![CheckReport {
                kind: "sysctl",
                line: 20,
                status: Status::Passed,
                message: "2 values as expected".into(),
            }],
            findings: vec![],
            failure: (!passed).then(|| Failure {
                what: "step 3 (s.toml:7) power_off".into(),
                expected: "the VM powers off".into(),
                seen: "it did not".into(),
            }),
            last_console_lines: vec![],
            rerun: "bootproof run s.toml".into(),
            checkpoint: None,
        }
    }

    fn png(path: &Path) {
        let img = image::RgbImage::from_fn(4, 3, |x, y| image::Rgb([x as u8 * 60, y as u8 * 80, 200]));
        img.save(path).unwrap();
    }

    fn page(dir: &Path, report: &ScenarioReport) -> String {
        write_report(dir, report).unwrap();
        std::fs::read_to_string(dir.join(REPORT_FILE)).unwrap()
    }

    #[test]
    fn hostile_text_stays_inert_text() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("console.log"),
            "[     1.000] <script>alert(1)</script>\n[     2.000] a & b \x1b[31mred\x1b[0m </div><img src=x onerror=alert(2)>\n",
        )
        .unwrap();
        let mut r = sample(dir.path(), false);
        r.steps[0].message = Some("expected \"<b>\"; seen </td></tr><script>alert(3)</script>".into());
        r.failure.as_mut().unwrap().seen = "<script>alert(4)</script>".into();
        r.checks[0].message = "expected <x>; seen \"'&".into();
        let html = page(dir.path(), &r);
        assert_eq!(html.matches("<script").count(), 1, "only the page's own script");
        for raw in ["alert(1)</script>", "<img src=x", "</td></tr><script>", "<x>", "\x1b"] {
            assert!(!html.contains(raw), "{raw:?} left unescaped");
        }
        for escaped in [
            "&lt;script&gt;alert(1)&lt;&#x2f;script&gt;",
            "&lt;img src=x onerror=alert(2)&gt;",
            "a &amp; b \u{241b}[31mred",
            "expected &lt;x&gt;; seen &quot;&#x27;&amp;",
        ] {
            assert!(html.contains(escaped), "{escaped:?} missing");
        }
    }

    #[test]
    fn a_registered_secret_appears_in_no_form() {
        use base64::engine::general_purpose::STANDARD_NO_PAD;
        let secret = "Rep0rt&<Secret>-5f3a91";
        crate::redact::register(secret);
        let dir = tempfile::tempdir().unwrap();
        let b64 = STANDARD_NO_PAD.encode(secret);
        std::fs::write(
            dir.path().join("console.log"),
            format!("[ 1.0] password: {secret}\n[ 2.0] hex {}\n[ 3.0] b64 x{b64}\n", hex::encode(secret)),
        )
        .unwrap();
        let mut r = sample(dir.path(), false);
        r.steps[1].message = Some(format!("seen {}", hex::encode_upper(secret)));
        r.failure.as_mut().unwrap().seen = format!("typed {secret}");
        r.findings.push(Finding {
            severity: Severity::Error,
            kind: FindingKind::CommandFailed,
            file: dir.path().join("agent.log"),
            line: 3,
            time: None,
            phase: None,
            summary: format!("login with {secret}"),
            evidence: vec![format!("pw={b64}")],
        });
        let html = page(dir.path(), &r);
        let escaped = "Rep0rt&amp;&lt;Secret&gt;-5f3a91";
        let mut forms =
            vec![secret.to_string(), escaped.into(), hex::encode(secret), hex::encode_upper(secret)];
        for offset in 0..3 {
            let mut bytes = vec![b'x'; offset];
            bytes.extend_from_slice(secret.as_bytes());
            let enc = STANDARD_NO_PAD.encode(&bytes);
            // The characters that depend on the secret's bytes alone.
            forms.push(enc[(8 * offset).div_ceil(6)..enc.len() - 1].to_string());
        }
        for form in &forms {
            assert!(!html.contains(form.as_str()), "{form:?} is in the page");
        }
        assert!(html.contains("password: [REDACTED]"), "the console line is kept, redacted");
    }

    #[test]
    fn the_console_keeps_a_stated_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let text: String = (0..60_000)
            .map(|i| format!("[{:>9.3}] line {i:06} {}\n", i as f64 / 100.0, "x".repeat(40)))
            .collect();
        std::fs::write(&path, &text).unwrap();

        let tail = read_console(&path, CONSOLE_TAIL_BYTES, CONSOLE_TAIL_LINES).unwrap();
        assert_eq!(tail.lines.len(), CONSOLE_TAIL_LINES);
        assert!(
            tail.lines[0].starts_with('[') && tail.lines[0].contains("line 040000 "),
            "{}",
            tail.lines[0]
        );
        assert!(tail.lines.last().unwrap().contains("line 059999 "));
        let kept: u64 = tail.lines.iter().map(|l| l.len() as u64 + 1).sum();
        assert_eq!(tail.omitted_bytes + kept, text.len() as u64);

        // The byte cap cuts mid-line: the page starts at the next whole line.
        let tail = read_console(&path, 1000, 1000).unwrap();
        assert!(tail.lines.len() < 1000 / 40 && tail.lines.iter().all(|l| l.starts_with('[')));
        assert!(tail.lines.last().unwrap().contains("line 059999 "));

        let html = page(dir.path(), &sample(dir.path(), true));
        assert!(html.contains("line 059999"));
        assert!(!html.contains("line 000000") && !html.contains("line 039999 "));
        assert!(html.contains("are left out: this page keeps its last 2.0 MiB and 20000 lines at most"));
    }

    #[test]
    fn screenshots_sit_inline_at_their_step_and_big_ones_are_linked() {
        let dir = tempfile::tempdir().unwrap();
        png(&dir.path().join("booted.png"));
        png(&dir.path().join("timeout.png"));
        let mut big = PNG_MAGIC.to_vec();
        big.resize(IMAGE_MAX_BYTES as usize + 1, 0);
        std::fs::write(dir.path().join("huge.png"), big).unwrap();
        let mut r = sample(dir.path(), true);
        r.steps[2].files = vec!["huge.png".into(), "needle evidence.txt".into()];
        let html = page(dir.path(), &r);
        let step2 = html.find("id=\"step-2\"").unwrap();
        let step3 = html.find("id=\"step-3\"").unwrap();
        let shot = html.find("<img src=\"data:image&#x2f;png;base64,").unwrap();
        assert!(step2 < shot && shot < step3, "the screenshot is in step 2's row");
        assert!(
            html[step3..].contains("huge.png</a> at 15.0 s: not embedded, 4.0 MiB is over the 4.0 MiB cap")
        );
        let others = html.find("id=\"screenshots\"").unwrap();
        assert!(html[others..].contains("data-file=\"timeout.png\""), "a PNG of no step is shown too");
        assert!(html.contains("href=\"booted.png\""));
        assert!(html[step3..].contains("<a href=\"needle%20evidence.txt\">needle evidence.txt</a>"));
    }

    #[test]
    fn a_run_without_a_vm_still_gets_a_page() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("never-ran");
        std::fs::create_dir(&run_dir).unwrap();
        let mut r = sample(&run_dir, false);
        r.steps.clear();
        r.checks.clear();
        r.agent = None;
        r.failure =
            Some(Failure { what: "image".into(), expected: "a running VM".into(), seen: String::new() });
        let html = page(&run_dir, &r);
        for needle in [
            "id=\"failure\"",
            "Failed: image",
            "a running VM",
            "(nothing)",
            "id=\"console-missing\"",
            "No step ran.",
        ] {
            assert!(html.contains(needle), "{needle:?} missing");
        }
        assert!(html.trim_end().ends_with("</html>"));
    }

    #[test]
    fn a_fork_shows_its_checkpoint_and_links_the_build() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = sample(dir.path(), true);
        r.checkpoint = Some(crate::report::CheckpointReport {
            name: "installed-unlocked".into(),
            key: "ab".repeat(32),
            file: "tests/checkpoints/installed-unlocked.toml".into(),
            built: true,
            build_secs: Some(80.25),
            build_run_dir: Some(dir.path().join("checkpoint")),
            restore_secs: Some(2.5),
            steps: vec![step(1, "wait_console /login:/", 0.2, 70.0, &[])],
            ended: None,
        });
        let html = page(dir.path(), &r);
        for needle in [
            "forked from <code>installed-unlocked</code> (built by this run, built in 80.2 s, restored in 2.5 s)",
            "<a href=\"checkpoint&#x2f;report.html\">its build's report</a>",
            "id=\"checkpoint-steps\"",
            "wait_console &#x2f;login:&#x2f;",
        ] {
            assert!(html.contains(needle), "{needle:?} missing");
        }
    }

    fn add_run(artifacts: &Path, scenario: &str, id: &str, started: f64, passed: bool) {
        let dir = artifacts.join(scenario).join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = sample(&dir, passed);
        r.scenario = scenario.into();
        r.started_unix = started;
        std::fs::write(dir.join("summary.json"), r.to_json()).unwrap();
    }

    #[test]
    fn the_index_skips_a_summary_being_written_and_lists_a_corrupt_one() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path();
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64();
        add_run(a, "tiny-a", "1", now - 3600.0, true);
        add_run(a, "tiny-b", "2", now - 600.0, false);
        let whole = std::fs::read_to_string(a.join("tiny-a/1/summary.json")).unwrap();
        std::fs::create_dir_all(a.join("torn/3")).unwrap();
        std::fs::write(a.join("torn/3/summary.json"), &whole[..whole.len() / 2]).unwrap();
        std::fs::create_dir_all(a.join("corrupt/4")).unwrap();
        std::fs::write(a.join("corrupt/4/summary.json"), "{\"scenario\": <garbage>}").unwrap();
        std::fs::create_dir_all(a.join("old-torn/5")).unwrap();
        let old = a.join("old-torn/5/summary.json");
        std::fs::write(&old, &whole[..100]).unwrap();
        let long_ago = SystemTime::now() - TORN_GRACE - Duration::from_secs(5);
        std::fs::File::options().write(true).open(&old).unwrap().set_modified(long_ago).unwrap();
        std::fs::create_dir_all(a.join("running/6")).unwrap();

        let rows = scan_runs(a, SystemTime::now());
        let seen: Vec<(&str, &str)> = rows.iter().map(|r| (r.scenario.as_str(), r.result)).collect();
        assert_eq!(
            seen,
            [
                ("corrupt", "unreadable"),
                ("old-torn", "unreadable"),
                ("tiny-b", "failed"),
                ("tiny-a", "passed")
            ],
            "newest first (an unreadable one by its file's time); the fresh torn one and the one without a summary are left out"
        );
        assert!(rows[0].note.as_deref().unwrap().starts_with("summary.json: "), "{:?}", rows[0].note);
        assert!(rows[1].note.as_deref().unwrap().contains("cut short"), "{:?}", rows[1].note);
        assert_eq!(rows[2].note.as_deref(), Some("step 3 (s.toml:7) power_off"));

        std::fs::write(a.join("tiny-a/1").join(REPORT_FILE), "x").unwrap();
        write_index(a).unwrap();
        let html = std::fs::read_to_string(a.join(INDEX_FILE)).unwrap();
        assert!(html.contains("href=\"tiny-a&#x2f;1&#x2f;report.html\""), "a run with a report links it");
        assert!(html.contains("href=\"tiny-b&#x2f;2&#x2f;summary.json\""), "one without links its summary");
        assert!(html.contains("4 runs") && html.contains("1 passed") && html.contains("1 failed"));
        assert!(html.contains("2 unreadable") && !html.contains("torn&#x2f;3"));
    }

    #[test]
    fn runs_finishing_at_once_are_all_in_the_last_index() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().to_path_buf();
        std::thread::scope(|s| {
            for i in 0..12 {
                let a = &a;
                s.spawn(move || {
                    add_run(a, &format!("r{i:02}"), "1", 1000.0 + i as f64, true);
                    write_index(a).unwrap();
                });
            }
        });
        let html = std::fs::read_to_string(a.join(INDEX_FILE)).unwrap();
        let missing: Vec<_> = (0..12).filter(|i| !html.contains(&format!(">r{i:02}</a>"))).collect();
        assert!(missing.is_empty(), "runs missing from the index: {missing:?}");
    }

    #[test]
    fn many_rebuilds_at_once_leave_a_whole_index() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().to_path_buf();
        for i in 0..20 {
            add_run(&a, &format!("s{i:02}"), "1", 1000.0 + i as f64, i % 3 != 0);
        }
        let complete = |html: &str| {
            html.trim_end().ends_with("</html>") && (0..20).all(|i| html.contains(&format!(">s{i:02}</a>")))
        };
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut reads = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(html) = std::fs::read_to_string(a.join(INDEX_FILE)) {
                        assert!(complete(&html), "a reader saw a partial index:\n{html}");
                        reads += 1;
                    }
                }
                reads
            });
            let writers: Vec<_> =
                (0..8).map(|_| s.spawn(|| (0..10).for_each(|_| drop(write_index(&a).unwrap())))).collect();
            writers.into_iter().for_each(|w| w.join().unwrap());
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(reader.join().unwrap() > 0);
        });
        assert!(complete(&std::fs::read_to_string(a.join(INDEX_FILE)).unwrap()));
        let leftovers: Vec<_> = std::fs::read_dir(&a)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
}
