//! Logs the guest writes into a share, read while it writes them: the share server's
//! events say which file grew, and each file a live analyzer understands (the Debian
//! installer's syslog, anaconda's stream) is fed its new lines, so installer logs on
//! the share give the same live findings and fail-fast as a virtio log port.
//!
//! Owns: following one server's events file, detecting each written file's kind from
//! its first bytes (as `inspect` does), and reading only what was appended since.
//! Must not: judge lines (the analyzers do) or follow anything but plain relative
//! paths inside the share (the server never reports others; they are skipped anyway).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::logs::Finding;
use crate::logs::live::LineAnalyzer;

/// How often the events file is read.
const POLL: Duration = Duration::from_millis(200);
/// A file whose kind is still unknown at this size is given up on.
const SNIFF_LIMIT: u64 = 64 * 1024;
/// A line longer than this is skipped (as `logs::lines` does).
const MAX_LINE: usize = 64 * 1024;
/// How much of a file is read at once.
const READ_PIECE: usize = 1 << 20;

/// Where a finding came from: its file relative to the run directory is set by [`Tail`].
pub type FindingSink = Box<dyn FnMut(Finding) + Send>;

enum FileState {
    Unknown,
    Ignored,
    Reading { analyzer: Box<dyn LineAnalyzer>, offset: u64, partial: Vec<u8>, number: u64 },
}

/// Follows one share's events and feeds its files' new lines to live analyzers.
pub struct Tail {
    events: PathBuf,
    share_dir: PathBuf,
    /// The share directory's path as findings name it (e.g. `share`).
    shown_as: PathBuf,
    offset: u64,
    pending: Vec<u8>,
    files: HashMap<PathBuf, FileState>,
    sink: FindingSink,
}

impl Tail {
    pub fn new(events: PathBuf, share_dir: PathBuf, shown_as: PathBuf, sink: FindingSink) -> Tail {
        Tail { events, share_dir, shown_as, offset: 0, pending: Vec::new(), files: HashMap::new(), sink }
    }

    /// Polls until the task is dropped (aborted with its run).
    pub async fn run(mut self) {
        loop {
            self.poll();
            tokio::time::sleep(POLL).await;
        }
    }

    /// Reads the events appended since the last poll and the files they name.
    pub fn poll(&mut self) {
        let Ok(mut f) = std::fs::File::open(&self.events) else { return };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut fresh = Vec::new();
        if f.read_to_end(&mut fresh).is_err() {
            return;
        }
        self.offset += fresh.len() as u64;
        self.pending.extend_from_slice(&fresh);
        let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') else { return };
        let complete: Vec<u8> = self.pending.drain(..=end).collect();
        let mut grown: Vec<PathBuf> = Vec::new();
        for line in complete.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
            if !matches!(v["event"].as_str(), Some("written" | "closed")) {
                continue;
            }
            let Some(path) = v["path"].as_str().map(PathBuf::from) else { continue };
            if path.components().all(|c| matches!(c, Component::Normal(_))) && !grown.contains(&path) {
                grown.push(path);
            }
        }
        for path in grown {
            self.read_file(&path);
        }
    }

    fn read_file(&mut self, rel: &Path) {
        let host = self.share_dir.join(rel);
        let shown = self.shown_as.join(rel);
        let state = self.files.entry(rel.to_path_buf()).or_insert(FileState::Unknown);
        if let FileState::Unknown = state {
            *state = match detect(&host, &shown) {
                Some(analyzer) => FileState::Reading { analyzer, offset: 0, partial: Vec::new(), number: 0 },
                None if std::fs::symlink_metadata(&host).is_ok_and(|m| m.len() >= SNIFF_LIMIT) => {
                    FileState::Ignored
                }
                None => FileState::Unknown,
            };
        }
        let FileState::Reading { analyzer, offset, partial, number } = state else { return };
        let Ok(mut f) = open_plain(&host) else { return };
        if f.seek(SeekFrom::Start(*offset)).is_err() {
            return;
        }
        // What the guest appended, a piece at a time: a guest may write gigabytes,
        // and neither the piece nor the line being gathered grows past a bound.
        let mut piece = vec![0u8; READ_PIECE];
        loop {
            let n = match f.read(&mut piece) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            *offset += n as u64;
            for part in piece[..n].split_inclusive(|&b| b == b'\n') {
                let (body, ends) = match part.strip_suffix(b"\n") {
                    Some(body) => (body, true),
                    None => (part, false),
                };
                // Up to one byte past the limit: enough to know the line is too long.
                let room = (MAX_LINE + 1).saturating_sub(partial.len());
                partial.extend_from_slice(&body[..body.len().min(room)]);
                if !ends {
                    continue;
                }
                *number += 1;
                let found = if partial.len() > MAX_LINE {
                    analyzer.skip(*number)
                } else {
                    analyzer.line(*number, partial)
                };
                partial.clear();
                for f in found {
                    (self.sink)(f);
                }
            }
        }
    }
}

/// A regular file, never through a symlink.
fn open_plain(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// The live analyzer for the file's kind, as `inspect` would detect it.
fn detect(host: &Path, shown: &Path) -> Option<Box<dyn LineAnalyzer>> {
    let mut head = Vec::new();
    open_plain(host).ok()?.take(SNIFF_LIMIT).read_to_end(&mut head).ok()?;
    let registry = crate::logs::registry();
    let name = host.file_name()?.to_string_lossy().into_owned();
    let analyzer = crate::inspect::detect(&registry, &head, &name)?;
    crate::logs::live::line_analyzer(analyzer.kind(), shown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_syslog_growing_in_the_share_gives_its_findings_as_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let share = dir.path().join("share");
        std::fs::create_dir_all(share.join("installer")).unwrap();
        let events = dir.path().join("share-bootproof.events.jsonl");
        let syslog = include_str!("../../tests/fixtures/logs/installer/debian12-grub/syslog");
        let (first, rest) =
            syslog.split_at(syslog.find("main-menu[239]: WARNING **: Menu item 'pkgsel'").unwrap());
        let seen: Arc<Mutex<Vec<Finding>>> = Arc::default();
        let sink = seen.clone();
        let mut tail = Tail::new(
            events.clone(),
            share.clone(),
            "share".into(),
            Box::new(move |f| sink.lock().unwrap().push(f)),
        );
        let event = |kind: &str| {
            let line = format!("{{\"event\":\"{kind}\",\"path\":\"installer/syslog\"}}\n");
            let mut e = std::fs::OpenOptions::new().create(true).append(true).open(&events).unwrap();
            std::io::Write::write_all(&mut e, line.as_bytes()).unwrap();
        };
        // The first part: the step failed, but the menu's verdict is not there yet.
        std::fs::write(share.join("installer/syslog"), first).unwrap();
        event("written");
        tail.poll();
        let before = seen.lock().unwrap().len();
        assert!(!seen.lock().unwrap().iter().any(|f| f.line == 15), "{:?}", seen.lock().unwrap());
        // The verdict arrives, written in two pieces (half a line first).
        let (a, b) = rest.split_at(20);
        let mut f = std::fs::OpenOptions::new().append(true).open(share.join("installer/syslog")).unwrap();
        std::io::Write::write_all(&mut f, a.as_bytes()).unwrap();
        event("written");
        event("written");
        tail.poll();
        std::io::Write::write_all(&mut f, b.as_bytes()).unwrap();
        event("closed");
        tail.poll();
        let seen = seen.lock().unwrap();
        assert!(seen.len() > before, "no finding from the grown syslog");
        let step = seen.iter().find(|f| f.line == 15).expect("the failed pkgsel step");
        assert_eq!(step.severity, crate::logs::Severity::Error);
        assert_eq!(step.file, Path::new("share/installer/syslog"));
        // Each line was read once: the findings are those of the whole file, once each.
        let mut whole =
            crate::logs::live::line_analyzer(crate::logs::LogKind::DiSyslog, Path::new("x")).unwrap();
        let mut all = Vec::new();
        for (i, l) in syslog.lines().enumerate() {
            all.extend(whole.line(i as u64 + 1, l.as_bytes()));
        }
        let lines = |v: &[Finding]| v.iter().map(|f| (f.line, f.summary.clone())).collect::<Vec<_>>();
        assert_eq!(lines(&seen), lines(&all));
    }

    /// A guest writing a line of 16 MiB with no end in sight: the tail holds at most
    /// the limit of it, skips it as one line, and reads on.
    #[test]
    fn a_runaway_line_is_held_only_up_to_the_limit_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let share = dir.path().join("share");
        std::fs::create_dir_all(share.join("installer")).unwrap();
        let events = dir.path().join("share-bootproof.events.jsonl");
        let syslog = include_str!("../../tests/fixtures/logs/installer/debian12-grub/syslog");
        let verdict = syslog.find("main-menu[239]: WARNING **: Menu item 'pkgsel'").unwrap();
        let (first, rest) = syslog.split_at(syslog[..verdict].rfind('\n').unwrap() + 1);
        let seen: Arc<Mutex<Vec<Finding>>> = Arc::default();
        let sink = seen.clone();
        let mut tail = Tail::new(
            events.clone(),
            share.clone(),
            "share".into(),
            Box::new(move |f| sink.lock().unwrap().push(f)),
        );
        let log = share.join("installer/syslog");
        let mut f = std::fs::File::create(&log).unwrap();
        let written = |e: &Path| {
            let mut ev = std::fs::OpenOptions::new().create(true).append(true).open(e).unwrap();
            std::io::Write::write_all(&mut ev, b"{\"event\":\"written\",\"path\":\"installer/syslog\"}\n")
                .unwrap();
        };
        std::io::Write::write_all(&mut f, first.as_bytes()).unwrap();
        let junk = vec![b'x'; 4 << 20];
        for _ in 0..4 {
            std::io::Write::write_all(&mut f, &junk).unwrap();
            written(&events);
            tail.poll();
            let Some(FileState::Reading { partial, .. }) = tail.files.get(Path::new("installer/syslog"))
            else {
                panic!("the syslog is being read")
            };
            assert!(partial.len() <= MAX_LINE + 1, "{} bytes held", partial.len());
        }
        std::io::Write::write_all(&mut f, b"\n").unwrap();
        std::io::Write::write_all(&mut f, rest.as_bytes()).unwrap();
        written(&events);
        tail.poll();
        // The findings are those of the file read whole, the runaway line skipped as
        // one: the verdict (which comes after it) among them.
        let mut whole =
            crate::logs::live::line_analyzer(crate::logs::LogKind::DiSyslog, Path::new("x")).unwrap();
        let mut all = Vec::new();
        let mut n = 0;
        for l in first.lines() {
            n += 1;
            all.extend(whole.line(n, l.as_bytes()));
        }
        n += 1;
        all.extend(whole.skip(n));
        for l in rest.lines() {
            n += 1;
            all.extend(whole.line(n, l.as_bytes()));
        }
        let lines = |v: &[Finding]| v.iter().map(|f| (f.line, f.summary.clone())).collect::<Vec<_>>();
        let seen = seen.lock().unwrap();
        assert!(seen.iter().any(|f| f.summary.contains("pkgsel")), "{:?}", lines(&seen));
        assert_eq!(lines(&seen), lines(&all));
    }
}
