//! Log ports: virtio-serial ports a guest writes a log to (anaconda's
//! `org.fedoraproject.anaconda.log.0`, the Debian installer's syslog), kept in the run
//! directory line by line as the bytes arrive.
//!
//! Owns: accepting QEMU's connection to each port's socket (bound before QEMU starts),
//! writing each line with the host's seconds since QEMU started in front, as the
//! console log does (`[    12.345] <line>`), passing every byte through the
//! redactor, and handing each line to whoever watches the port live ([`LineWatch`]).
//! Must not: judge what a line means (the log parsers do) or buffer more than one
//! line: a complete line is written at once, so whatever ends the run (a kill of QEMU,
//! a timeout, a crash of bootproof) loses nothing already received.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

/// A line longer than this is written in pieces (a guest that never ends its line
/// costs disk, not memory).
const MAX_LINE: usize = 64 * 1024;

/// Someone who sees each line of a port as it arrives: `(line number, text)`.
pub type LineWatch = Box<dyn FnMut(u64, &[u8]) + Send>;

/// A port being captured.
#[derive(Clone)]
pub struct LogPortHandle {
    pub name: String,
    pub file: PathBuf,
    lines: watch::Receiver<u64>,
    closed: watch::Receiver<bool>,
    watchers: Arc<Mutex<Vec<LineWatch>>>,
}

impl LogPortHandle {
    /// Lines written so far.
    pub fn lines(&self) -> u64 {
        *self.lines.borrow()
    }

    /// Adds a live watcher; it sees the lines that arrive from now on.
    pub fn watch(&self, watcher: LineWatch) {
        self.watchers.lock().unwrap_or_else(|p| p.into_inner()).push(watcher);
    }

    /// Waits until the guest's side closed (QEMU exited) and the last line is written.
    pub async fn closed(&self, timeout: Duration) -> bool {
        let mut closed = self.closed.clone();
        tokio::time::timeout(timeout, closed.wait_for(|c| *c)).await.is_ok_and(|r| r.is_ok())
    }
}

/// Starts capturing `stream` (QEMU's connection to the port's socket) into `file`.
pub fn capture<S>(name: &str, stream: S, file: &Path, started: Instant) -> std::io::Result<LogPortHandle>
where
    S: tokio::io::AsyncRead + Send + Unpin + 'static,
{
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let out = std::fs::OpenOptions::new().create(true).append(true).open(file)?;
    let (lines_tx, lines) = watch::channel(0);
    let (closed_tx, closed) = watch::channel(false);
    let watchers: Arc<Mutex<Vec<LineWatch>>> = Arc::default();
    let task =
        Capture { out, started, line: Vec::new(), number: 0, lines: lines_tx, watchers: watchers.clone() };
    tokio::spawn(async move {
        task.run(stream).await;
        let _ = closed_tx.send(true);
    });
    Ok(LogPortHandle { name: name.to_string(), file: file.to_path_buf(), lines, closed, watchers })
}

struct Capture {
    out: std::fs::File,
    started: Instant,
    line: Vec<u8>,
    number: u64,
    lines: watch::Sender<u64>,
    watchers: Arc<Mutex<Vec<LineWatch>>>,
}

impl Capture {
    async fn run<S: tokio::io::AsyncRead + Unpin>(mut self, mut stream: S) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut redactor = crate::redact::Stream::default();
        let mut clean = Vec::with_capacity(buf.len());
        loop {
            let n = match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            clean.clear();
            redactor.feed(&buf[..n], &mut clean);
            self.take(&clean);
        }
        clean.clear();
        redactor.flush(&mut clean);
        self.take(&clean);
        if !self.line.is_empty() {
            self.emit();
        }
        let _ = self.out.sync_data();
    }

    fn take(&mut self, bytes: &[u8]) {
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            let (body, complete) = match piece.strip_suffix(b"\n") {
                Some(body) => (body, true),
                None => (piece, false),
            };
            self.line.extend_from_slice(body);
            if complete || self.line.len() >= MAX_LINE {
                self.emit();
            }
        }
    }

    /// Writes the line now (one write: the page cache has it even if bootproof dies
    /// next), then shows it to the watchers.
    fn emit(&mut self) {
        let line = std::mem::take(&mut self.line);
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        self.number += 1;
        let mut out = format!("[{:>10.3}] ", self.started.elapsed().as_secs_f64()).into_bytes();
        out.extend_from_slice(line);
        out.push(b'\n');
        let _ = self.out.write_all(&out);
        for watcher in self.watchers.lock().unwrap_or_else(|p| p.into_inner()).iter_mut() {
            watcher(self.number, line);
        }
        self.lines.send_replace(self.number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn lines_are_stamped_written_at_once_and_watched() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("installer/syslog");
        let (mut guest, host) = tokio::io::duplex(1024);
        let port = capture("org.example.log.0", host, &file, Instant::now()).unwrap();
        let seen: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
        let s = seen.clone();
        port.watch(Box::new(move |n, l| s.lock().unwrap().push((n, String::from_utf8_lossy(l).into()))));
        guest.write_all(b"main-menu[1]: INFO: a\r\nanna[2]: b").await.unwrap();
        let mut lines = port.lines.clone();
        lines.wait_for(|n| *n >= 1).await.unwrap();
        // The complete line is on disk before the port closes.
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with('[') && text.ends_with("] main-menu[1]: INFO: a\n"), "{text:?}");
        drop(guest);
        assert!(port.closed(Duration::from_secs(5)).await);
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.lines().nth(1).unwrap().ends_with("] anna[2]: b"), "{text}");
        assert_eq!(*seen.lock().unwrap(), [(1, "main-menu[1]: INFO: a".into()), (2, "anna[2]: b".into())]);
    }
}
