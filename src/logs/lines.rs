//! Bounded line reading shared by the line-oriented parsers.
//!
//! Owns: splitting a byte stream into numbered lines with a hard cap on line length, so a
//! 100 MB line without a newline costs at most [`MAX_LINE`] bytes of memory.
//! Must not: interpret line contents, or hold more than one line at a time.

use std::io::{self, BufRead};
use std::path::Path;

use super::{Analysis, Finding, LogError};

/// Longest line kept. Longer lines are reported as oversize (their head is kept, the rest
/// skipped) and parsers count them as not understood: no real log line is this long, and
/// the cap is what keeps memory bounded on hostile input.
pub const MAX_LINE: usize = 64 * 1024;

/// One line, without its `\n` (and without a trailing `\r`).
#[derive(Debug)]
pub struct Line<'a> {
    /// 1-based.
    pub number: u64,
    pub bytes: &'a [u8],
    /// The line was longer than [`MAX_LINE`]; `bytes` is only its head.
    pub oversize: bool,
}

/// Reads numbered, length-capped lines from a [`BufRead`], reusing one buffer.
pub struct LineReader<'r> {
    input: &'r mut dyn BufRead,
    buf: Vec<u8>,
    number: u64,
}

impl<'r> LineReader<'r> {
    pub fn new(input: &'r mut dyn BufRead) -> Self {
        LineReader { input, buf: Vec::new(), number: 0 }
    }

    /// The next line, or `None` at the end of the stream. A last line without `\n` is
    /// still a line.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let mut oversize = false;
        let mut saw_any = false;
        loop {
            let chunk = match self.input.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                break;
            }
            saw_any = true;
            let (take, done) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            let room = MAX_LINE - self.buf.len();
            if take > room {
                oversize = true;
            }
            self.buf.extend_from_slice(&chunk[..take.min(room)]);
            self.input.consume(if done { take + 1 } else { take });
            if done {
                break;
            }
        }
        if !saw_any {
            return Ok(None);
        }
        self.number += 1;
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(Some(Line { number: self.number, bytes: &self.buf, oversize }))
    }

    /// Lines read so far.
    pub fn count(&self) -> u64 {
        self.number
    }
}

/// How the lines of one file were accounted for. `continuation_lines` belong to a
/// record without being one (a multi-line message, a table's legend), so
/// `records + continuation_lines + unparsed_lines == lines`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub records: u64,
    pub continuation_lines: u64,
    pub unparsed_lines: u64,
    pub lines: u64,
}

impl Tally {
    pub fn analysis(self, findings: Vec<Finding>) -> Analysis {
        Analysis { records: self.records, unparsed_lines: self.unparsed_lines, lines: self.lines, findings }
    }

    /// Every line is a record, a continuation or not understood.
    pub fn accounts_for_every_line(&self) -> bool {
        self.records + self.continuation_lines + self.unparsed_lines == self.lines
    }
}

/// The [`LogError`] for a read failure of `file`.
pub fn io_error(file: &Path, source: io::Error) -> LogError {
    LogError::Io { path: file.to_path_buf(), source }
}

/// Lossy text of a log line for evidence and summaries: invalid UTF-8 becomes U+FFFD and
/// control characters are dropped so evidence cannot move a terminal's cursor.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().filter(|c| !c.is_control() || *c == '\t').collect()
}

/// `head` (a sniffing window) split into lines, ignoring a cut-off last line unless it
/// is the only one.
pub fn head_lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    let complete = match memchr::memrchr(b'\n', head) {
        Some(i) => &head[..i],
        None => head,
    };
    complete.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// Share (0..=100) of the non-empty lines of `head` accepted by `is_mine`, or 0 when
/// fewer than `min_lines` lines are there to judge.
pub fn share_of_lines<'h>(head: &'h [u8], min_lines: usize, mut is_mine: impl FnMut(&'h [u8]) -> bool) -> u8 {
    let (mut total, mut mine) = (0usize, 0usize);
    for line in head_lines(head).filter(|l| !l.is_empty()) {
        total += 1;
        mine += usize::from(is_mine(line));
    }
    if total < min_lines.max(1) {
        return 0;
    }
    u8::try_from(mine * 100 / total).unwrap_or(100)
}

/// Formats microseconds since the Unix epoch as UTC `YYYY-MM-DDTHH:MM:SS.ffffffZ`, the
/// way a finding shows a journal timestamp.
pub fn format_realtime_us(us: u64) -> String {
    let secs = us / 1_000_000;
    let micros = us % 1_000_000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Gregorian date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Cursor, Read};

    fn lines_of(data: &[u8]) -> Vec<(u64, Vec<u8>, bool)> {
        let mut cursor = Cursor::new(data.to_vec());
        let mut reader = LineReader::new(&mut cursor);
        let mut out = Vec::new();
        while let Some(l) = reader.next_line().unwrap() {
            out.push((l.number, l.bytes.to_vec(), l.oversize));
        }
        out
    }

    #[test]
    fn last_line_without_newline_is_a_line() {
        let got = lines_of(b"a\r\nb\n\nc");
        let texts: Vec<&[u8]> = got.iter().map(|(_, b, _)| b.as_slice()).collect();
        assert_eq!(texts, vec![&b"a"[..], b"b", b"", b"c"]);
        assert_eq!(got[3].0, 4);
        assert!(lines_of(b"").is_empty());
    }

    /// A reader producing `len` bytes of `x` without ever holding them.
    struct Endless {
        left: u64,
    }

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = usize::try_from(self.left.min(buf.len() as u64)).unwrap_or(buf.len());
            buf[..n].fill(b'x');
            self.left -= n as u64;
            Ok(n)
        }
    }

    #[test]
    fn a_100_mb_line_is_capped_not_stored() {
        let mut input = BufReader::new(Endless { left: 100 * 1024 * 1024 });
        let mut reader = LineReader::new(&mut input);
        let line = reader.next_line().unwrap().unwrap();
        assert!(line.oversize);
        assert_eq!(line.bytes.len(), MAX_LINE);
        assert!(reader.next_line().unwrap().is_none());
        assert!(reader.buf.capacity() <= 2 * MAX_LINE);
    }

    #[test]
    fn realtime_formats_as_utc() {
        // __REALTIME_TIMESTAMP of the first entry of the fedora37 export, whose
        // short-precise rendering (TZ=UTC) is "Oct 24 00:00:01.017222".
        assert_eq!(format_realtime_us(1_666_569_601_017_222), "2022-10-24T00:00:01.017222Z");
        assert_eq!(format_realtime_us(0), "1970-01-01T00:00:00.000000Z");
    }
}

/// Helpers for tests that read the real corpus.
#[cfg(test)]
pub(crate) mod testing {
    use std::io::BufReader;
    use std::path::{Path, PathBuf};

    use crate::logs::{Analysis, Analyzer};

    /// The corpus folder: `$BOOTPROOF_CORPUS`, or `../shared/corpus` beside the crate.
    /// Panics with directions when it is absent: a corpus test must never pass silently.
    pub fn corpus_dir() -> PathBuf {
        let dir = std::env::var_os("BOOTPROOF_CORPUS")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
        assert!(
            dir.is_dir(),
            "the real-log corpus is missing at {}: put it at ../shared/corpus beside the \
             crate, or set BOOTPROOF_CORPUS to its folder",
            dir.display()
        );
        dir
    }

    /// A file of the corpus, by its path inside the corpus.
    pub fn corpus_file(relative: &str) -> PathBuf {
        let path = corpus_dir().join(relative);
        assert!(path.is_file(), "corpus file missing: {}", path.display());
        path
    }

    pub fn analyze_file(analyzer: &dyn Analyzer, path: &Path) -> Analysis {
        let file = std::fs::File::open(path).unwrap();
        let mut reader = BufReader::new(file);
        analyzer.analyze(&mut reader, path).unwrap()
    }

    /// Lines as `inspect` counts them: `\n`-terminated, plus a last unterminated one.
    pub fn count_lines(path: &Path) -> u64 {
        let data = std::fs::read(path).unwrap();
        let newlines = memchr::memchr_iter(b'\n', &data).count() as u64;
        newlines + u64::from(!data.is_empty() && !data.ends_with(b"\n"))
    }
}
