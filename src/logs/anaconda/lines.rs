//! Bounded, streaming line reading shared by the installer-log and tool-output parsers.
//!
//! Owns: cutting a `BufRead` into numbered lines without ever holding more than
//! [`MAX_LINE`] bytes of one line, and the line accounting ([`Tally`]) every analysis
//! reports. Must not: interpret line contents.

use std::io::{self, BufRead};

use crate::logs::{Analysis, Finding};

/// Longest line kept, in bytes. Real installer lines stay far below this (the longest in
/// the corpus is a few KiB); anything longer is binary junk or a runaway writer, and is
/// counted as unparsed instead of growing memory without bound.
pub const MAX_LINE: usize = 1 << 20;

/// One line, without its `\n` (and without a `\r` before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// 1-based.
    pub number: u64,
    pub text: &'a [u8],
    /// The line was longer than [`MAX_LINE`]; `text` holds only its start.
    pub truncated: bool,
}

/// Reads numbered lines from a `BufRead`, borrowing straight from its buffer when a line
/// fits in it, and copying (up to [`MAX_LINE`]) only when a line spans two refills.
pub struct Lines<'r> {
    input: &'r mut dyn BufRead,
    /// Bytes of the previous line still to consume from `input`.
    pending: usize,
    spill: Vec<u8>,
    number: u64,
}

impl<'r> Lines<'r> {
    pub fn new(input: &'r mut dyn BufRead) -> Self {
        Lines { input, pending: 0, spill: Vec::new(), number: 0 }
    }

    /// The next line, or `None` at the end of the input.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.input.consume(std::mem::take(&mut self.pending));
        let whole = {
            let available = fill(self.input)?;
            if available.is_empty() {
                return Ok(None);
            }
            memchr::memchr(b'\n', available).filter(|&end| end <= MAX_LINE)
        };
        self.number += 1;
        match whole {
            Some(end) => {
                self.pending = end + 1;
                let available = fill(self.input)?;
                Ok(Some(Line { number: self.number, text: trim_cr(&available[..end]), truncated: false }))
            }
            None => self.spilled(),
        }
    }

    /// A line that does not fit in the reader's buffer: copy up to the cap, skip the rest.
    fn spilled(&mut self) -> io::Result<Option<Line<'_>>> {
        self.spill.clear();
        let mut truncated = false;
        loop {
            let available = fill(self.input)?;
            if available.is_empty() {
                break;
            }
            let (chunk, done) = match memchr::memchr(b'\n', available) {
                Some(end) => (&available[..end], Some(end + 1)),
                None => (available, None),
            };
            let room = MAX_LINE - self.spill.len();
            if chunk.len() > room {
                truncated = true;
            }
            self.spill.extend_from_slice(&chunk[..chunk.len().min(room)]);
            let used = done.unwrap_or(available.len());
            self.input.consume(used);
            if done.is_some() {
                break;
            }
        }
        Ok(Some(Line { number: self.number, text: trim_cr(&self.spill), truncated }))
    }
}

fn fill(input: &mut dyn BufRead) -> io::Result<&[u8]> {
    while let Err(e) = input.fill_buf() {
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    input.fill_buf()
}

fn trim_cr(text: &[u8]) -> &[u8] {
    text.strip_suffix(b"\r").unwrap_or(text)
}

/// How every line of a file was understood: `records + continuation_lines +
/// unparsed_lines == lines` always holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub lines: u64,
    /// Lines that start a record.
    pub records: u64,
    /// Lines attached to the record above them (tracebacks, command output, dumps).
    pub continuation_lines: u64,
    pub unparsed_lines: u64,
}

impl Tally {
    pub fn record(&mut self) {
        self.lines += 1;
        self.records += 1;
    }

    pub fn continuation(&mut self) {
        self.lines += 1;
        self.continuation_lines += 1;
    }

    pub fn unparsed(&mut self) {
        self.lines += 1;
        self.unparsed_lines += 1;
    }

    pub fn add(&mut self, other: Tally) {
        self.lines += other.lines;
        self.records += other.records;
        self.continuation_lines += other.continuation_lines;
        self.unparsed_lines += other.unparsed_lines;
    }

    pub fn into_analysis(self, findings: Vec<Finding>) -> Analysis {
        Analysis { records: self.records, unparsed_lines: self.unparsed_lines, lines: self.lines, findings }
    }
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

    pub fn into_log_error(self, path: &std::path::Path) -> crate::logs::LogError {
        crate::logs::LogError::Malformed {
            path: path.to_path_buf(),
            line: self.line(),
            message: self.to_string(),
        }
    }
}

/// Calls `each` for every line of an in-memory tool output; an over-long line is an
/// error, since tool output never has one.
pub fn each_line(
    input: &[u8],
    mut each: impl FnMut(u64, &[u8]) -> Result<(), ParseError>,
) -> Result<u64, ParseError> {
    let mut reader = input;
    let mut lines = Lines::new(&mut reader);
    let mut count = 0;
    while let Some(line) = lines.next_line().expect("reading memory cannot fail") {
        count = line.number;
        if line.truncated {
            return Err(ParseError::TooLong { line: line.number });
        }
        each(line.number, line.text)?;
    }
    Ok(count)
}

/// Reads a stream line by line into a tally, for the analyzers of tool outputs:
/// `classify` says whether a line is a record, a continuation or not understood.
pub fn tally_stream(
    input: &mut dyn BufRead,
    path: &std::path::Path,
    mut classify: impl FnMut(&[u8]) -> LineClass,
) -> Result<Tally, crate::logs::LogError> {
    let mut tally = Tally::default();
    let mut lines = Lines::new(input);
    while let Some(line) =
        lines.next_line().map_err(|source| crate::logs::LogError::Io { path: path.to_path_buf(), source })?
    {
        match (line.truncated, classify(line.text)) {
            (true, _) | (false, LineClass::Unparsed) => tally.unparsed(),
            (false, LineClass::Record) => tally.record(),
            (false, LineClass::Continuation) => tally.continuation(),
        }
    }
    Ok(tally)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineClass {
    Record,
    Continuation,
    Unparsed,
}

/// The first lines of a sniffed head, without a possibly cut-off last line.
pub fn head_lines(head: &[u8], max: usize) -> impl Iterator<Item = &[u8]> {
    let complete = match memchr::memrchr(b'\n', head) {
        Some(end) if head.len() > end + 1 => &head[..end],
        _ => head,
    };
    complete.split(|&b| b == b'\n').map(trim_cr).take(max)
}

/// Does `head` look like text? NUL bytes never occur in any log handled here.
pub fn is_text(head: &[u8]) -> bool {
    memchr::memchr(0, head).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(mut input: &[u8]) -> Vec<(u64, Vec<u8>, bool)> {
        let mut lines = Lines::new(&mut input);
        let mut out = Vec::new();
        while let Some(line) = lines.next_line().unwrap() {
            out.push((line.number, line.text.to_vec(), line.truncated));
        }
        out
    }

    #[test]
    fn splits_lines_and_keeps_a_last_line_without_newline() {
        let got = collect(b"a\r\n\nlast");
        assert_eq!(
            got,
            vec![(1, b"a".to_vec(), false), (2, b"".to_vec(), false), (3, b"last".to_vec(), false)]
        );
    }

    #[test]
    fn caps_a_huge_line_across_small_buffer_refills() {
        let mut data = vec![b'x'; MAX_LINE + 10];
        data.extend_from_slice(b"\nnext\n");
        let mut reader = io::BufReader::with_capacity(4096, &data[..]);
        let mut lines = Lines::new(&mut reader);
        let first = lines.next_line().unwrap().unwrap();
        assert!(first.truncated);
        assert_eq!(first.text.len(), MAX_LINE);
        let second = lines.next_line().unwrap().unwrap();
        assert_eq!((second.number, second.text), (2, &b"next"[..]));
        assert!(lines.next_line().unwrap().is_none());
    }
}
