//! Bounded, streaming line reading and the line accounting of every analysis.
//!
//! Owns: cutting a `BufRead` into numbered lines without ever holding more than
//! [`MAX_LINE`] bytes of one line ([`LineReader`]), the one rule by which every analyzer
//! accounts for the lines it read ([`Tally`]), and the small helpers the line-oriented
//! parsers share (sniffing heads, showing log text). Must not: interpret line contents.
//!
//! # The accounting rule
//!
//! A line is what ends in `\n`, plus a last line without one; a `\r` before the `\n` is
//! not part of it. Every line read is exactly one of:
//!
//! - a **record**: the line that starts one (a log entry, a table row or header, a
//!   journal export entry's first field, a whole JSON document's first line);
//! - a **continuation line**: it belongs to the record above it without starting one (a
//!   traceback, command output, an indented message line, a table's legend, the other
//!   fields of an export entry, the rest of a JSON document);
//! - an **unparsed line**: not understood, or longer than [`MAX_LINE`].
//!
//! So `records + continuation_lines + unparsed_lines == lines` for every analyzer on any
//! input, and [`Analysis`] reports all four.

use std::io::{self, BufRead};
use std::path::Path;

use super::{Analysis, Finding, LogError};

/// Longest line kept, in bytes. Real log lines stay far below this (the longest in the
/// corpus are a few KiB; a journal export field may hold up to 1 MiB, see
/// `journal::export::MAX_FIELD`); anything longer is binary junk or a runaway writer,
/// and is one unparsed line instead of growing memory without bound.
pub const MAX_LINE: usize = 1 << 20;

/// One line, without its `\n` (and without a `\r` before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// 1-based.
    pub number: u64,
    pub bytes: &'a [u8],
    /// The line was longer than [`MAX_LINE`]; `bytes` holds only its first `MAX_LINE`.
    pub oversize: bool,
}

/// Reads numbered lines from a `BufRead`, borrowing straight from its buffer when a line
/// fits in it, and copying (up to [`MAX_LINE`]) only when a line spans two refills.
pub struct LineReader<'r> {
    input: &'r mut dyn BufRead,
    /// Bytes of the previous line still to consume from `input`.
    pending: usize,
    spill: Vec<u8>,
    number: u64,
}

impl<'r> LineReader<'r> {
    pub fn new(input: &'r mut dyn BufRead) -> Self {
        LineReader { input, pending: 0, spill: Vec::new(), number: 0 }
    }

    /// The next line, or `None` at the end of the input.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.input.consume(std::mem::take(&mut self.pending));
        let whole = {
            let available = fill(self.input)?;
            if available.is_empty() {
                return Ok(None);
            }
            memchr::memchr(b'\n', available).filter(|&end| trim_cr(&available[..end]).len() <= MAX_LINE)
        };
        self.number += 1;
        match whole {
            Some(end) => {
                self.pending = end + 1;
                let available = fill(self.input)?;
                Ok(Some(Line { number: self.number, bytes: trim_cr(&available[..end]), oversize: false }))
            }
            None => self.spilled(),
        }
    }

    /// Lines read so far.
    pub fn count(&self) -> u64 {
        self.number
    }

    /// A line that does not fit in the reader's buffer: copy up to the cap (and a `\r`
    /// after it, which is no part of the line), skip the rest.
    fn spilled(&mut self) -> io::Result<Option<Line<'_>>> {
        self.spill.clear();
        let mut length = 0usize;
        loop {
            let available = fill(self.input)?;
            if available.is_empty() {
                break;
            }
            let (chunk, done) = match memchr::memchr(b'\n', available) {
                Some(end) => (&available[..end], Some(end + 1)),
                None => (available, None),
            };
            length = length.saturating_add(chunk.len());
            let room = (MAX_LINE + 1).saturating_sub(self.spill.len());
            self.spill.extend_from_slice(&chunk[..chunk.len().min(room)]);
            let used = done.unwrap_or(available.len());
            self.input.consume(used);
            if done.is_some() {
                break;
            }
        }
        if length == self.spill.len() && self.spill.last() == Some(&b'\r') {
            self.spill.pop();
            length -= 1;
        }
        self.spill.truncate(MAX_LINE);
        Ok(Some(Line { number: self.number, bytes: &self.spill, oversize: length > MAX_LINE }))
    }
}

/// `fill_buf`, retried when interrupted.
fn fill(input: &mut dyn BufRead) -> io::Result<&[u8]> {
    let at_end = loop {
        match input.fill_buf() {
            Ok(available) => break available.is_empty(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    if at_end {
        // Asking again at the end would read again, and could be interrupted again.
        return Ok(&[]);
    }
    // The borrow checker cannot return the slice from inside the loop; with data
    // buffered, asking again reads nothing.
    input.fill_buf()
}

fn trim_cr(bytes: &[u8]) -> &[u8] {
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

/// What a line is, by the [accounting rule](self#the-accounting-rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineClass {
    Record,
    Continuation,
    Unparsed,
}

/// How the lines of one file were accounted for. Analyzers only add to it through
/// [`count`](Tally::count) and its shorthands, which count every line once, so
/// `records + continuation_lines + unparsed_lines == lines` always holds; the fields are
/// for reading.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub lines: u64,
    /// Lines that start a record.
    pub records: u64,
    /// Lines attached to the record above them.
    pub continuation_lines: u64,
    pub unparsed_lines: u64,
}

impl Tally {
    /// `lines` more lines of one class.
    pub fn count(&mut self, class: LineClass, lines: u64) {
        let slot = match class {
            LineClass::Record => &mut self.records,
            LineClass::Continuation => &mut self.continuation_lines,
            LineClass::Unparsed => &mut self.unparsed_lines,
        };
        *slot += lines;
        self.lines += lines;
    }

    pub fn record(&mut self) {
        self.count(LineClass::Record, 1);
    }

    pub fn continuation(&mut self) {
        self.count(LineClass::Continuation, 1);
    }

    pub fn unparsed(&mut self) {
        self.count(LineClass::Unparsed, 1);
    }

    /// The lines of a part read on its own (a section of a crash dump).
    pub fn add(&mut self, other: Tally) {
        self.count(LineClass::Record, other.records);
        self.count(LineClass::Continuation, other.continuation_lines);
        self.count(LineClass::Unparsed, other.unparsed_lines);
    }

    pub fn into_analysis(self, findings: Vec<Finding>) -> Analysis {
        Analysis {
            records: self.records,
            continuation_lines: self.continuation_lines,
            unparsed_lines: self.unparsed_lines,
            lines: self.lines,
            findings,
        }
    }
}

/// Reads a stream line by line into a tally: `classify` says what each line is; an
/// oversize line is unparsed without being offered to it.
pub fn tally_stream(
    input: &mut dyn BufRead,
    file: &Path,
    mut classify: impl FnMut(&[u8]) -> LineClass,
) -> Result<Tally, LogError> {
    let mut tally = Tally::default();
    let mut reader = LineReader::new(input);
    while let Some(line) = reader.next_line().map_err(|e| io_error(file, e))? {
        let class = if line.oversize { LineClass::Unparsed } else { classify(line.bytes) };
        tally.count(class, 1);
    }
    Ok(tally)
}

/// Why a tool's output could not be read; every variant names the 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("line {line}: {message}")]
    Malformed { line: u64, message: String },
    #[error("line {line}: longer than {MAX_LINE} bytes")]
    TooLong { line: u64 },
}

impl ParseError {
    pub fn line(&self) -> u64 {
        match self {
            ParseError::Malformed { line, .. } | ParseError::TooLong { line } => *line,
        }
    }

    pub fn malformed(line: u64, message: impl Into<String>) -> Self {
        ParseError::Malformed { line, message: message.into() }
    }

    pub fn into_log_error(self, path: &Path) -> LogError {
        LogError::Malformed { path: path.to_path_buf(), line: self.line(), message: self.to_string() }
    }
}

/// Calls `each` for every line of an in-memory tool output, and returns how many lines
/// there were; an oversize line is an error, since tool output never has one.
pub fn each_line(
    input: &[u8],
    mut each: impl FnMut(u64, &[u8]) -> Result<(), ParseError>,
) -> Result<u64, ParseError> {
    let mut bytes = input;
    let mut reader = LineReader::new(&mut bytes);
    while let Some(line) = reader.next_line().expect("reading memory cannot fail") {
        if line.oversize {
            return Err(ParseError::TooLong { line: line.number });
        }
        each(line.number, line.bytes)?;
    }
    Ok(reader.count())
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
    complete.split(|&b| b == b'\n').map(trim_cr)
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

/// Does `head` look like text? NUL bytes occur in no log handled here.
pub fn is_text(head: &[u8]) -> bool {
    memchr::memchr(0, head).is_none()
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
    use std::io::{BufReader, Read};

    fn lines_of(mut input: &[u8]) -> Vec<(u64, Vec<u8>, bool)> {
        let mut reader = LineReader::new(&mut input);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            out.push((line.number, line.bytes.to_vec(), line.oversize));
        }
        out
    }

    #[test]
    fn splits_lines_and_keeps_a_last_line_without_newline() {
        let got = lines_of(b"a\r\n\nb\nlast");
        let want: Vec<(u64, Vec<u8>, bool)> = vec![
            (1, b"a".to_vec(), false),
            (2, b"".to_vec(), false),
            (3, b"b".to_vec(), false),
            (4, b"last".to_vec(), false),
        ];
        assert_eq!(got, want);
        assert!(lines_of(b"").is_empty());
        assert_eq!(lines_of(b"\n"), vec![(1, Vec::new(), false)]);
        // Only a `\r` right before the `\n` goes.
        assert_eq!(lines_of(b"a\rb\r\r\n")[0].1, b"a\rb\r");
    }

    #[test]
    fn caps_a_huge_line_across_small_buffer_refills() {
        let mut data = vec![b'x'; MAX_LINE + 10];
        data.extend_from_slice(b"\nnext\n");
        let mut input = BufReader::with_capacity(4096, &data[..]);
        let mut reader = LineReader::new(&mut input);
        let first = reader.next_line().unwrap().unwrap();
        assert!(first.oversize);
        assert_eq!(first.bytes.len(), MAX_LINE);
        let second = reader.next_line().unwrap().unwrap();
        assert_eq!((second.number, second.bytes, second.oversize), (2, &b"next"[..], false));
        assert!(reader.next_line().unwrap().is_none());
        assert_eq!(reader.count(), 2);
    }

    /// The `\r` of a CRLF line is no part of it, whether the line is read from the
    /// buffer or copied across refills: a line of exactly [`MAX_LINE`] bytes is whole.
    #[test]
    fn a_line_of_exactly_max_line_bytes_is_whole_and_one_more_is_oversize() {
        for capacity in [4096, 2 * MAX_LINE + 16] {
            let mut data = vec![b'y'; MAX_LINE];
            data.extend_from_slice(b"\r\n");
            data.extend(std::iter::repeat_n(b'y', MAX_LINE + 1));
            data.extend_from_slice(b"\r\nz");
            let mut input = BufReader::with_capacity(capacity, &data[..]);
            let mut reader = LineReader::new(&mut input);
            let first = reader.next_line().unwrap().unwrap();
            assert_eq!((first.bytes.len(), first.oversize), (MAX_LINE, false), "buffer {capacity}");
            let second = reader.next_line().unwrap().unwrap();
            assert_eq!((second.bytes.len(), second.oversize), (MAX_LINE, true), "buffer {capacity}");
            assert_eq!(reader.next_line().unwrap().unwrap().bytes, b"z");
        }
    }

    /// A reader producing `left` bytes of `x` without ever holding them.
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
        assert!(reader.spill.capacity() <= 2 * MAX_LINE);
    }

    /// A reader whose every other call is interrupted, as a signal would.
    struct Interrupting<'a> {
        data: &'a [u8],
        interrupt: bool,
    }

    impl Read for Interrupting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(3);
            self.data.read(&mut buf[..n])
        }
    }

    #[test]
    fn interrupted_reads_are_retried() {
        let data = b"first line\nsecond\n";
        let mut input = BufReader::with_capacity(4, Interrupting { data, interrupt: false });
        let mut reader = LineReader::new(&mut input);
        let mut got = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            got.push(String::from_utf8(line.bytes.to_vec()).unwrap());
        }
        assert_eq!(got, ["first line", "second"]);
    }

    #[test]
    fn a_tally_counts_every_line_once_whatever_its_class() {
        let mut tally = Tally::default();
        tally.record();
        tally.continuation();
        tally.count(LineClass::Continuation, 3);
        tally.unparsed();
        let mut section = Tally::default();
        section.record();
        section.unparsed();
        tally.add(section);
        assert_eq!(tally, Tally { lines: 8, records: 2, continuation_lines: 4, unparsed_lines: 2 });
        let analysis = tally.into_analysis(Vec::new());
        assert_eq!(
            (analysis.records, analysis.continuation_lines, analysis.unparsed_lines, analysis.lines),
            (2, 4, 2, 8)
        );
    }

    #[test]
    fn tally_stream_offers_every_line_but_oversize_ones() {
        let mut data = b"keep\n  more\n".to_vec();
        data.extend(std::iter::repeat_n(b'k', MAX_LINE + 1));
        data.extend_from_slice(b"\n?\n");
        let mut offered = Vec::new();
        let tally = tally_stream(&mut &data[..], Path::new("t"), |bytes| {
            offered.push(bytes.len());
            match bytes.first() {
                Some(b'k') => LineClass::Record,
                Some(b' ') => LineClass::Continuation,
                _ => LineClass::Unparsed,
            }
        })
        .unwrap();
        assert_eq!(offered, [4, 6, 1]);
        assert_eq!(tally, Tally { lines: 4, records: 1, continuation_lines: 1, unparsed_lines: 2 });
    }

    #[test]
    fn each_line_stops_at_the_first_error_or_oversize_line() {
        let mut seen = Vec::new();
        let count = each_line(b"a\nb\n", |n, l| {
            seen.push((n, l.to_vec()));
            Ok(())
        });
        assert_eq!(count, Ok(2));
        assert_eq!(seen, [(1, b"a".to_vec()), (2, b"b".to_vec())]);
        let err = each_line(b"a\nbad\nc\n", |n, l| {
            if l == b"bad" { Err(ParseError::malformed(n, "bad")) } else { Ok(()) }
        });
        assert_eq!(err, Err(ParseError::malformed(2, "bad")));
        let mut huge = b"ok\n".to_vec();
        huge.extend(std::iter::repeat_n(b'x', MAX_LINE + 1));
        assert_eq!(each_line(&huge, |_, _| Ok(())), Err(ParseError::TooLong { line: 2 }));
    }

    #[test]
    fn head_lines_drop_a_cut_off_last_line_unless_it_is_the_only_one() {
        let lines = |head: &'static [u8]| head_lines(head).collect::<Vec<_>>();
        assert_eq!(lines(b"a\r\nb\ncut"), [&b"a"[..], b"b"]);
        assert_eq!(lines(b"a\nb\n"), [&b"a"[..], b"b"]);
        assert_eq!(lines(b"only"), [&b"only"[..]]);
        assert_eq!(share_of_lines(b"yes\n\nno\nyes\n", 1, |l| l == b"yes"), 66);
        assert_eq!(share_of_lines(b"yes\n", 2, |_| true), 0);
        assert!(is_text(b"plain\ttext\n") && !is_text(b"a\0b"));
    }

    #[test]
    fn evidence_text_is_lossy_and_without_control_characters() {
        assert_eq!(text(b"caf\xe9\x1b[2J\tok"), "caf\u{fffd}[2J\tok");
    }

    #[test]
    fn realtime_formats_as_utc() {
        // 2022-10-24 00:00:01.017222 UTC, worked out by hand: 19289 days after 1970-01-01.
        assert_eq!(format_realtime_us(19_289 * 86_400_000_000 + 1_017_222), "2022-10-24T00:00:01.017222Z");
        assert_eq!(format_realtime_us(0), "1970-01-01T00:00:00.000000Z");
        // The leap day of a year divisible by 400.
        assert_eq!(format_realtime_us(951_782_400_000_000), "2000-02-29T00:00:00.000000Z");
    }
}
