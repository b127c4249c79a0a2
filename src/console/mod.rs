//! The serial console: capture to disk as it arrives, expect with timeouts, input.
//!
//! Owns: reading the serial socket, `console.raw` (every byte, exactly as it came),
//! `console.log` (text without escapes, each line stamped with host seconds since QEMU
//! started), a bounded in-memory window for matching, and writing input.
//! Must not: grow memory with the guest's output: a guest that floods the console
//! costs disk, never RAM (the window and the last-lines ring are capped).
//!
//! Matching runs over the text stream, not over lines, so prompts without a newline
//! match; a pattern matches within one line. Each console has a cursor: a match
//! consumes the text up to its end, so the next wait starts after it, and text that
//! arrived before a wait began is still seen. A machine reset moves the cursor to the
//! end ([`Console::mark_reset`]): after a reboot, waits see only the new boot's text.

mod ansi;

pub use ansi::AnsiStripper;

use regex::bytes::Regex;
use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::vm::process::{ExitReport, ExitWatch};

/// Text kept in memory for matching; older text is only on disk.
pub const WINDOW_BYTES: usize = 1 << 20;
/// Lines shown when a wait fails.
pub const TAIL_LINES: usize = 20;
/// A line longer than this is cut into pieces in `console.log` and in the tail.
const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("timed out after {waited:.1?} waiting for {patterns} on the serial console\n{}", tail_text(tail))]
    Timeout { patterns: String, waited: Duration, tail: Vec<String> },
    /// `qemu` says how QEMU ended, when the VM supervisor gave the console an
    /// [`ExitWatch`] and QEMU has indeed exited.
    #[error(
        "the serial console closed after {waited:.1?}, before {patterns} appeared: {}\n{}",
        qemu.as_ref().map_or_else(|| "QEMU exited".to_string(), |r| r.to_string()),
        tail_text(tail)
    )]
    Closed { patterns: String, waited: Duration, tail: Vec<String>, qemu: Option<ExitReport> },
    #[error("cannot write to the serial console: {0}")]
    Write(#[source] std::io::Error),
}

impl ConsoleError {
    pub fn tail(&self) -> &[String] {
        match self {
            ConsoleError::Timeout { tail, .. } | ConsoleError::Closed { tail, .. } => tail,
            ConsoleError::Write(_) => &[],
        }
    }
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        return "  (the console printed nothing)".to_string();
    }
    let mut s = format!("last {} console lines:", tail.len());
    for l in tail {
        s.push_str("\n  | ");
        s.push_str(l);
    }
    s
}

fn describe(patterns: &[&Regex]) -> String {
    patterns.iter().map(|r| format!("/{}/", r.as_str())).collect::<Vec<_>>().join(" or ")
}

#[derive(Default)]
struct State {
    window: Vec<u8>,
    /// Offset in the text stream of `window[0]`.
    window_start: u64,
    /// Where the next wait starts matching.
    cursor: u64,
    /// Text before this offset was searched and holds no match for a line-bounded
    /// pattern of the current wait; restarts at the cursor on every new wait.
    scanned: u64,
    tail: VecDeque<String>,
    line: Vec<u8>,
    closed: bool,
}

impl State {
    fn end(&self) -> u64 {
        self.window_start + self.window.len() as u64
    }

    fn push_text(&mut self, text: &[u8]) {
        self.window.extend_from_slice(text);
        if self.window.len() > WINDOW_BYTES {
            let drop = self.window.len() - WINDOW_BYTES / 2;
            self.window.drain(..drop);
            self.window_start += drop as u64;
        }
    }

    fn tail_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.tail.iter().cloned().collect();
        if !self.line.is_empty() {
            lines.push(String::from_utf8_lossy(&self.line).into_owned());
        }
        let skip = lines.len().saturating_sub(TAIL_LINES);
        lines.drain(..skip);
        lines
    }
}

struct Shared {
    state: Mutex<State>,
    progress: watch::Sender<u64>,
    /// How many resets [`Console::mark_reset`] has marked.
    resets: watch::Sender<u64>,
    started: Instant,
    /// How QEMU ended, asked when the console closes.
    exit: OnceLock<ExitWatch>,
}

/// Silence on the console after a reset that means the old boot's last bytes are in.
const RESET_QUIET: Duration = Duration::from_millis(100);
/// The longest a reset mark waits for that silence (a guest flooding the console).
const RESET_DRAIN_MAX: Duration = Duration::from_secs(1);
/// How long a closed console waits for QEMU's exit status (see [`ExitWatch::report`]).
const EXIT_GRACE: Duration = Duration::from_secs(3);

/// A handle on a VM's serial console. Cheap to clone.
#[derive(Clone)]
pub struct Console {
    shared: Arc<Shared>,
    writer: Arc<tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>>,
}

/// Files the capture writes, and whether to echo lines live.
pub struct CaptureFiles<'a> {
    pub raw: &'a Path,
    pub text: &'a Path,
    /// Print each text line on stderr as it arrives (the CLI's live view).
    pub echo: bool,
}

impl Console {
    /// Starts capturing `stream` (the serial socket) on a background task. `started`
    /// is the instant QEMU started, which text lines are stamped against.
    pub fn capture<S>(stream: S, files: CaptureFiles<'_>, started: Instant) -> std::io::Result<Console>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let raw = std::fs::File::create(files.raw)?;
        let text = std::fs::File::create(files.text)?;
        let (reader, writer) = tokio::io::split(stream);
        let (progress, _) = watch::channel(0);
        let (resets, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            progress,
            resets,
            started,
            exit: OnceLock::new(),
        });
        let task = Capture {
            shared: shared.clone(),
            raw,
            text,
            echo: files.echo,
            stripper: AnsiStripper::default(),
            redactor: crate::redact::Stream::default(),
        };
        tokio::spawn(task.run(reader));
        Ok(Console { shared, writer: Arc::new(tokio::sync::Mutex::new(Box::new(writer))) })
    }

    /// From now on, an error for a closed console says how QEMU ended, as `watch`
    /// tells (its exit status and the last lines of its log).
    pub fn explain_closing_with(&self, watch: ExitWatch) {
        let _ = self.shared.exit.set(watch);
    }

    /// Waits until `pattern` matches the console text after the cursor, and moves the
    /// cursor past the match. Returns the matched text.
    pub async fn wait_for(&self, pattern: &Regex, timeout: Duration) -> Result<String, ConsoleError> {
        self.wait_for_any(&[pattern], timeout).await.map(|(_, text)| text)
    }

    /// Waits for the first of `patterns` to match; returns its index and the match.
    pub async fn wait_for_any(
        &self,
        patterns: &[&Regex],
        timeout: Duration,
    ) -> Result<(usize, String), ConsoleError> {
        let start = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut progress = self.shared.progress.subscribe();
        self.lock().scanned = 0;
        let mut open: Option<u64>;
        loop {
            // `open` holds the end of a match that may still grow.
            progress.borrow_and_update();
            let closed_tail = {
                let mut st = self.lock();
                match search(&mut st, patterns) {
                    Some(found) if !found.open => return Ok(consume(&mut st, found)),
                    Some(found) => open = Some(found.end),
                    None => open = None,
                }
                st.closed.then(|| st.tail_lines())
            };
            if let Some(tail) = closed_tail {
                let waited = start.elapsed();
                let qemu = match self.shared.exit.get() {
                    Some(watch) => watch.report(EXIT_GRACE).await,
                    None => None,
                };
                return Err(ConsoleError::Closed { patterns: describe(patterns), waited, tail, qemu });
            }
            let wait_until = match open {
                Some(_) => deadline.min(tokio::time::Instant::now() + OPEN_MATCH_GRACE),
                None => deadline,
            };
            match tokio::time::timeout_at(wait_until, progress.changed()).await {
                Ok(Ok(())) => {}
                // The capture task ended: one more search sees its last bytes.
                Ok(Err(_)) => self.lock().closed = true,
                Err(_) if open.is_some() => {
                    // Nothing more came: the open match stands as it is.
                    let mut st = self.lock();
                    if let Some(found) = search(&mut st, patterns) {
                        return Ok(consume(&mut st, found));
                    }
                }
                Err(_) => {
                    let tail = self.lock().tail_lines();
                    return Err(ConsoleError::Timeout {
                        patterns: describe(patterns),
                        waited: start.elapsed(),
                        tail,
                    });
                }
            }
        }
    }

    /// Marks a machine reset: waits until the console has been quiet for a moment (QEMU
    /// wrote the old boot's last bytes before it reported the reset; this reads them),
    /// then moves the cursor to the end, so later waits match only the new boot's text.
    pub async fn mark_reset(&self) {
        self.settle(RESET_QUIET, RESET_DRAIN_MAX).await;
        let mut st = self.lock();
        let end = st.end();
        st.cursor = end;
        st.scanned = end;
        drop(st);
        self.shared.resets.send_modify(|n| *n += 1);
    }

    /// Waits until nothing has arrived for `quiet` (at most `max`): what the guest wrote
    /// until then has been read and its complete lines are in `console.log`.
    pub async fn settle(&self, quiet: Duration, max: Duration) {
        let mut progress = self.shared.progress.subscribe();
        let give_up = tokio::time::Instant::now() + max;
        loop {
            let quiet_until = (tokio::time::Instant::now() + quiet).min(give_up);
            match tokio::time::timeout_at(quiet_until, progress.changed()).await {
                Ok(Ok(())) if tokio::time::Instant::now() < give_up => continue,
                _ => break,
            }
        }
    }

    /// How many resets have been marked so far.
    pub fn resets(&self) -> u64 {
        *self.shared.resets.borrow()
    }

    /// Waits until more than `seen` resets have been marked.
    pub async fn wait_reset_after(&self, seen: u64, timeout: Duration) -> bool {
        let mut resets = self.shared.resets.subscribe();
        tokio::time::timeout(timeout, resets.wait_for(|n| *n > seen)).await.is_ok_and(|r| r.is_ok())
    }

    /// Sends bytes to the guest's serial port.
    pub async fn send(&self, bytes: &[u8]) -> Result<(), ConsoleError> {
        let mut w = self.writer.lock().await;
        w.write_all(bytes).await.map_err(ConsoleError::Write)?;
        w.flush().await.map_err(ConsoleError::Write)
    }

    /// Sends a line (a newline is appended).
    pub async fn send_line(&self, line: &str) -> Result<(), ConsoleError> {
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        self.send(&bytes).await
    }

    /// Text that must never reach a file or a message (secrets the guest echoes): from
    /// now on it is replaced by `[REDACTED]` in the raw log, the text log and the tail,
    /// as everywhere else ([`crate::redact::register`]).
    pub fn redact(&self, secret: &str) {
        crate::redact::register(secret);
    }

    /// The last console lines (at most [`TAIL_LINES`]), the partial last line included.
    pub fn tail(&self) -> Vec<String> {
        self.lock().tail_lines()
    }

    /// Whether the guest side of the console has closed (QEMU exited).
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Bytes of console text held in memory (bounded whatever the guest prints).
    pub fn memory_bytes(&self) -> usize {
        let st = self.lock();
        st.window.capacity() + st.line.capacity() + st.tail.iter().map(|l| l.capacity()).sum::<usize>()
    }

    /// Waits until the capture has read everything QEMU wrote (the socket closed).
    pub async fn closed(&self, timeout: Duration) -> bool {
        let mut progress = self.shared.progress.subscribe();
        let fut = async {
            while !self.is_closed() {
                if progress.changed().await.is_err() {
                    break;
                }
            }
        };
        tokio::time::timeout(timeout, fut).await.is_ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A match found by [`search`].
struct Found {
    index: usize,
    text: String,
    /// Where the match ends in the text stream.
    end: u64,
    /// The match runs to the end of an unfinished line, so more text could extend it
    /// (`share=\S+` seeing `share=o` of `share=ok`).
    open: bool,
}

/// Searches the window after the cursor for the earliest match of any pattern.
fn search(st: &mut State, patterns: &[&Regex]) -> Option<Found> {
    let from = st.cursor.max(st.window_start).max(st.scanned);
    let hay = &st.window[(from - st.window_start) as usize..];
    let best = patterns
        .iter()
        .enumerate()
        .filter_map(|(i, re)| re.find(hay).map(|m| (m.start(), i, m.end(), m.as_bytes().to_vec())))
        .min_by_key(|(start, i, ..)| (*start, *i));
    if let Some((_, index, end, bytes)) = best {
        let open = end == hay.len() && !st.closed && hay.last().is_some_and(|&b| b != b'\n');
        return Some(Found {
            index,
            text: String::from_utf8_lossy(&bytes).into_owned(),
            end: from + end as u64,
            open,
        });
    }
    // Complete lines can't match a line-bounded pattern later: rescan only the last one.
    if let Some(nl) = memchr::memrchr(b'\n', hay) {
        st.scanned = from + nl as u64 + 1;
    }
    None
}

/// How long an open match waits for the line to go on before it counts: a prompt
/// never goes on, a line the serial port is still delivering does within this time.
const OPEN_MATCH_GRACE: Duration = Duration::from_millis(250);

fn consume(st: &mut State, found: Found) -> (usize, String) {
    st.cursor = found.end;
    st.scanned = found.end;
    (found.index, found.text)
}

struct Capture {
    shared: Arc<Shared>,
    raw: std::fs::File,
    text: std::fs::File,
    echo: bool,
    stripper: AnsiStripper,
    redactor: crate::redact::Stream,
}

impl Capture {
    async fn run<R: AsyncRead + Unpin>(mut self, mut reader: R) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut stripped = Vec::with_capacity(buf.len());
        let mut clean = Vec::with_capacity(buf.len());
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            clean.clear();
            self.redactor.feed(&buf[..n], &mut clean);
            // Straight to the page cache: a crash of bootproof loses nothing already read.
            let _ = self.raw.write_all(&clean);
            stripped.clear();
            self.stripper.feed(&clean, &mut stripped);
            self.take_text(&stripped);
            let end = self.lock().end();
            self.shared.progress.send_replace(end);
        }
        clean.clear();
        self.redactor.flush(&mut clean);
        let _ = self.raw.write_all(&clean);
        stripped.clear();
        self.stripper.feed(&clean, &mut stripped);
        self.take_text(&stripped);
        self.finish();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_text(&mut self, text: &[u8]) {
        let stamp = self.shared.started.elapsed();
        let mut done: Vec<Vec<u8>> = Vec::new();
        {
            let mut st = self.lock();
            st.push_text(text);
            for piece in text.split_inclusive(|&b| b == b'\n') {
                let (body, complete) = match piece.strip_suffix(b"\n") {
                    Some(body) => (body, true),
                    None => (piece, false),
                };
                st.line.extend_from_slice(body);
                if complete || st.line.len() >= MAX_LINE {
                    let line = std::mem::take(&mut st.line);
                    st.tail.push_back(String::from_utf8_lossy(&line).into_owned());
                    if st.tail.len() > TAIL_LINES {
                        st.tail.pop_front();
                    }
                    done.push(line);
                }
            }
        }
        for line in done {
            self.write_line(stamp, &line);
        }
    }

    fn write_line(&mut self, stamp: Duration, line: &[u8]) {
        let mut out = format!("[{:>10.3}] ", stamp.as_secs_f64()).into_bytes();
        out.extend_from_slice(line);
        out.push(b'\n');
        let _ = self.text.write_all(&out);
        if self.echo {
            crate::reporter::line(format!("  console | {}", String::from_utf8_lossy(line)));
        }
    }

    fn finish(mut self) {
        let rest = std::mem::take(&mut self.lock().line);
        if !rest.is_empty() {
            self.write_line(self.shared.started.elapsed(), &rest);
            self.lock().tail.push_back(String::from_utf8_lossy(&rest).into_owned());
        }
        let _ = self.raw.sync_data();
        let _ = self.text.sync_data();
        self.lock().closed = true;
        let end = self.lock().end();
        self.shared.progress.send_replace(end.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn console_pair(dir: &Path) -> (Console, tokio::net::UnixStream) {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let files = CaptureFiles { raw: &dir.join("raw"), text: &dir.join("text"), echo: false };
        (Console::capture(a, files, Instant::now()).unwrap(), b)
    }

    #[tokio::test]
    async fn prompt_without_newline_matches_and_cursor_moves_on() {
        let dir = tempfile::tempdir().unwrap();
        let (console, mut guest) = console_pair(dir.path()).await;
        guest.write_all(b"\x1b[1mboot\x1b[0m ok\r\nPlease enter passphrase: ").await.unwrap();
        let re = Regex::new("passphrase: $").unwrap();
        console.wait_for(&re, Duration::from_secs(5)).await.unwrap();
        // The same prompt is consumed: a second wait needs a second prompt.
        let err = console.wait_for(&re, Duration::from_millis(200)).await.unwrap_err();
        assert!(matches!(err, ConsoleError::Timeout { .. }));
        let shown = err.to_string();
        assert!(shown.contains("/passphrase: $/") && shown.contains("| boot ok"), "{shown}");
        console.send_line("hunter2").await.unwrap();
        let mut got = [0u8; 8];
        guest.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hunter2\n");
    }

    #[tokio::test]
    async fn a_match_at_the_end_of_an_unfinished_line_waits_for_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (console, mut guest) = console_pair(dir.path()).await;
        let re = Regex::new(r"share=\S+").unwrap();
        let waiter = {
            let console = console.clone();
            tokio::spawn(async move { console.wait_for(&re, Duration::from_secs(5)).await })
        };
        guest.write_all(b"efi=1 share=o").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        guest.write_all(b"k\r\n").await.unwrap();
        assert_eq!(waiter.await.unwrap().unwrap(), "share=ok");
        // A prompt that never goes on still matches, after the grace.
        guest.write_all(b"login: ").await.unwrap();
        let started = Instant::now();
        let got =
            console.wait_for(&Regex::new(r"login: \S*").unwrap(), Duration::from_secs(5)).await.unwrap();
        assert_eq!(got, "login: ");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn closed_console_fails_fast_and_files_hold_everything() {
        let dir = tempfile::tempdir().unwrap();
        let (console, mut guest) = console_pair(dir.path()).await;
        guest.write_all(b"line one\r\npartial").await.unwrap();
        drop(guest);
        let re = Regex::new("never").unwrap();
        let err = console.wait_for(&re, Duration::from_secs(30)).await.unwrap_err();
        assert!(matches!(err, ConsoleError::Closed { .. }), "{err}");
        assert_eq!(std::fs::read(dir.path().join("raw")).unwrap(), b"line one\r\npartial");
        let text = std::fs::read_to_string(dir.path().join("text")).unwrap();
        let lines: Vec<&str> = text.lines().map(|l| l.split_once("] ").unwrap().1).collect();
        assert_eq!(lines, ["line one", "partial"]);
    }

    #[tokio::test]
    async fn a_flood_costs_disk_not_memory() {
        let dir = tempfile::tempdir().unwrap();
        let (console, mut guest) = console_pair(dir.path()).await;
        let line = b"flood flood flood flood flood flood flood flood flood flood\r\n";
        let total = 64 * 1024 * 1024 / line.len();
        let writer = tokio::spawn(async move {
            for _ in 0..total / 64 {
                guest.write_all(&line.repeat(64)).await.unwrap();
            }
            guest.write_all(b"the end\r\n").await.unwrap();
            guest
        });
        let re = Regex::new("the end").unwrap();
        console.wait_for(&re, Duration::from_secs(60)).await.unwrap();
        assert!(console.memory_bytes() < 4 * WINDOW_BYTES, "{}", console.memory_bytes());
        drop(writer.await.unwrap());
        assert!(console.closed(Duration::from_secs(10)).await);
        let raw = std::fs::metadata(dir.path().join("raw")).unwrap().len();
        assert_eq!(raw as usize, (total / 64) * 64 * line.len() + 9);
        let text = std::fs::read_to_string(dir.path().join("text")).unwrap();
        assert_eq!(text.lines().count(), (total / 64) * 64 + 1);
    }

    #[tokio::test]
    async fn secrets_are_redacted_from_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (console, mut guest) = console_pair(dir.path()).await;
        console.redact("s3cret");
        guest.write_all(b"Enter passphrase: s3cret\r\n").await.unwrap();
        console.wait_for(&Regex::new("passphrase").unwrap(), Duration::from_secs(5)).await.unwrap();
        guest.write_all(b"s3c").await.unwrap();
        guest.write_all(b"ret again\r\n").await.unwrap();
        console.wait_for(&Regex::new("again").unwrap(), Duration::from_secs(5)).await.unwrap();
        let tail = console.tail();
        assert!(tail.iter().all(|l| !l.contains("s3cret")) && tail[0].contains("[REDACTED]"), "{tail:?}");
        drop(guest);
        assert!(console.closed(Duration::from_secs(5)).await);
        for file in ["raw", "text"] {
            let content = std::fs::read_to_string(dir.path().join(file)).unwrap();
            assert!(!content.contains("s3cret") && content.contains("[REDACTED] again"), "{file}: {content}");
        }
    }
}
