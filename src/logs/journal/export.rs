//! The journal export format (`journalctl -o export`), parsed as it streams in.
//!
//! Owns: the export grammar (text fields `NAME=value\n`, binary fields `NAME\n` + u64 LE
//! length + bytes + `\n`, entries ended by an empty line) and a push parser that can be
//! fed chunks of any size as they arrive from a guest.
//! Must not: buffer more than one entry (capped at [`MAX_ENTRY`]) plus one chunk, or
//! interpret field values; that is the journal carrier's job.

use nom::bytes::streaming::{tag, take, take_until, take_while_m_n};
use nom::number::streaming::le_u64;
use nom::sequence::terminated;
use nom::{IResult, Parser};

/// Largest field value kept; larger binary values (a coredump, say) are skipped as they
/// stream past, and their lines counted as not understood: `inspect` has no use for
/// them, and holding them would make memory depend on the input.
pub const MAX_FIELD: usize = 1024 * 1024;
/// Longest line kept: a field's name (at most 64 bytes), `=` and a value of
/// [`MAX_FIELD`]; a binary field's header and value fit too. Longer lines are not
/// understood, whether they arrive whole or in pieces.
const MAX_LINE: usize = MAX_FIELD + 256;
/// Longest value systemd's journal importer accepts (`DATA_SIZE_MAX`, 768 MiB); a
/// binary length above it means the `NAME\n` line was garbage followed by text, not a
/// field.
const MAX_PLAUSIBLE_FIELD: u64 = 768 << 20;
/// Largest entry kept in memory; a longer one is cut into pieces.
pub const MAX_ENTRY: usize = 8 * 1024 * 1024;

/// One `NAME=value` (or binary) field, borrowed from the parser's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// 1-based line of the entry's first field.
    pub line: u64,
    /// Lines the entry spans, its closing empty line included.
    pub lines: u64,
    /// Of those, lines not understood (garbage, oversize values).
    pub unparsed_lines: u64,
    /// In stream order; a name may repeat.
    pub fields: Vec<Field<'a>>,
    /// The stream ended, or the entry hit [`MAX_ENTRY`], before its empty line.
    pub truncated: bool,
}

impl<'a> Entry<'a> {
    /// The first value of `name`.
    pub fn get(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.fields.iter().find(|f| f.name == name).map(|f| f.value)
    }
}

/// What the grammar recognised at the start of the unparsed input.
#[derive(Debug, PartialEq, Eq)]
enum Step<'a> {
    Field {
        field: Field<'a>,
        len: usize,
        lines: u64,
    },
    /// The empty line that ends an entry.
    EntryEnd,
    /// A binary field whose value exceeds [`MAX_FIELD`]: `header` bytes of name and
    /// length, then `value` bytes to skip.
    Oversize {
        header: usize,
        value: u64,
    },
    /// A line that is no field; `len` includes its `\n` when present.
    Garbage {
        len: usize,
    },
    /// More input is needed.
    Incomplete,
}

/// Bytes allowed in a field name, as a table: this test runs on every name byte.
static NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'_';
        b += 1;
    }
    table
};

fn is_name_byte(b: u8) -> bool {
    NAME_BYTES[usize::from(b)]
}

/// At most 64 bytes, as journald allows; a longer "name" is not a field.
fn field_name(input: &[u8]) -> IResult<&[u8], &[u8]> {
    take_while_m_n(1, 64, is_name_byte).parse(input)
}

/// `NAME=value\n`.
fn text_field(input: &[u8]) -> IResult<&[u8], Field<'_>> {
    (terminated(field_name, tag("=")), terminated(take_until("\n"), tag("\n")))
        .map(|(name, value)| Field { name, value })
        .parse(input)
}

/// `NAME\n` + u64 LE length: the head of a binary field.
fn binary_header(input: &[u8]) -> IResult<&[u8], (&[u8], u64)> {
    (terminated(field_name, tag("\n")), le_u64).parse(input)
}

/// The value and closing `\n` of a binary field of `len` bytes.
fn binary_value(input: &[u8], len: usize) -> IResult<&[u8], &[u8]> {
    terminated(take(len), tag("\n")).parse(input)
}

/// One production of the export grammar at the start of `input`.
fn step(input: &[u8]) -> Step<'_> {
    match input.first() {
        None => return Step::Incomplete,
        Some(b'\n') => return Step::EntryEnd,
        Some(_) => {}
    }
    match text_field(input) {
        Ok((rest, field)) => {
            let len = input.len() - rest.len();
            if len > MAX_LINE {
                return Step::Garbage { len };
            }
            return Step::Field { field, len, lines: 1 };
        }
        Err(nom::Err::Incomplete(_)) if memchr::memchr(b'\n', input).is_none() => {
            return Step::Incomplete;
        }
        Err(_) => {}
    }
    match binary_header(input) {
        Ok((_, (_, value))) if value > MAX_PLAUSIBLE_FIELD => garbage_line(input),
        Ok((rest, (name, value))) => {
            let header = input.len() - rest.len();
            match usize::try_from(value) {
                Ok(len) if len <= MAX_FIELD => match binary_value(rest, len) {
                    Ok((after, value)) => {
                        let len = input.len() - after.len();
                        // The length bytes may hold a 0x0a too: count the whole field.
                        let lines = memchr::memchr_iter(b'\n', &input[..len]).count() as u64;
                        let field = Field { name, value };
                        Step::Field { field, len, lines }
                    }
                    Err(nom::Err::Incomplete(_)) => Step::Incomplete,
                    Err(_) => garbage_line(input),
                },
                _ => Step::Oversize { header, value },
            }
        }
        Err(nom::Err::Incomplete(_)) => Step::Incomplete,
        Err(_) => garbage_line(input),
    }
}

fn garbage_line(input: &[u8]) -> Step<'_> {
    match memchr::memchr(b'\n', input) {
        Some(i) => Step::Garbage { len: i + 1 },
        None => Step::Incomplete,
    }
}

/// Bytes of the stream that are being dropped instead of buffered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Skip {
    #[default]
    Nothing,
    /// The rest of an oversize binary value and its closing `\n`.
    Bytes(u64),
    /// The rest of an overlong line, through its `\n`.
    Line,
}

/// A push parser: [`feed`](ExportParser::feed) chunks as they arrive, take the complete
/// entries, call [`finish`](ExportParser::finish) at the end of the stream.
#[derive(Debug, Default)]
pub struct ExportParser {
    /// Unparsed input: the start of the entry in progress and what follows it.
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out (dropped at the next `feed`).
    consumed: usize,
    /// Line number of `buf[consumed]`.
    line: u64,
    skip: Skip,
    /// Lines of the current entry dropped by `skip`.
    skipped_lines: u64,
    /// Lines outside any entry (stray empty lines), for the accounting.
    stray_lines: u64,
    /// An oversize value met by the last iteration: where in `buf` its bytes start and
    /// how many there are. Dropped at the next `feed` or `finish`.
    pending_oversize: Option<(usize, u64)>,
    /// Where a line longer than [`MAX_LINE`] without its `\n` yet starts in `buf`.
    /// Dropped at the next `feed` or `finish`, so a 100 MB line costs no more than a
    /// large field.
    pending_long_line: Option<usize>,
    progress: Progress,
    /// The last byte dropped by `skip`: when the stream ends inside a dropped value, it
    /// says whether the last line was terminated.
    last_dropped: Option<u8>,
    at_end: bool,
}

impl ExportParser {
    pub fn new() -> Self {
        ExportParser { line: 1, ..ExportParser::default() }
    }

    /// Adds `chunk` to the stream and returns the entries it completes. Entries not
    /// taken from the iterator are returned again by the next call. Oversize data is
    /// dropped once the iterator has reached it, so memory stays bounded only while the
    /// entries are taken.
    pub fn feed(&mut self, chunk: &[u8]) -> Entries<'_> {
        self.compact();
        let chunk = self.skip_dropped(chunk);
        self.buf.extend_from_slice(chunk);
        self.entries()
    }

    /// Ends the stream: returns the last entries, the final one possibly without its
    /// empty line or cut short (`truncated`).
    pub fn finish(&mut self) -> Entries<'_> {
        self.compact();
        self.at_end = true;
        self.entries()
    }

    /// Bytes held: the entry in progress and input not parsed yet.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.consumed
    }

    /// Lines seen outside entries (empty lines between them).
    pub fn stray_lines(&self) -> u64 {
        self.stray_lines
    }

    fn entries(&mut self) -> Entries<'_> {
        let tail_ends_line = match (self.at_end, self.skip) {
            (true, Skip::Bytes(_)) => self.last_dropped.map(|b| b == b'\n'),
            _ => None,
        };
        Entries {
            tail_ends_line,
            buf: &self.buf,
            consumed: &mut self.consumed,
            line: &mut self.line,
            skipped_lines: &mut self.skipped_lines,
            stray_lines: &mut self.stray_lines,
            pending_oversize: &mut self.pending_oversize,
            pending_long_line: &mut self.pending_long_line,
            progress: &mut self.progress,
            at_end: self.at_end,
        }
    }

    /// Forgets the bytes handed out, and the oversize value or line in progress.
    fn compact(&mut self) {
        self.buf.drain(..self.consumed);
        if let Some((at, len)) = self.pending_oversize.take() {
            self.drop_value(at - self.consumed, len);
        }
        if let Some(at) = self.pending_long_line.take() {
            self.buf.truncate(at - self.consumed);
            // Stands for the dropped line: a garbage line the grammar will count.
            self.buf.extend_from_slice(b"\x00\n");
            self.skip = Skip::Line;
        }
        self.consumed = 0;
    }

    /// Turns the binary field whose value starts at `at` into an empty one and drops
    /// its `len` value bytes, those buffered now and those still to come.
    fn drop_value(&mut self, at: usize, len: u64) {
        // The length bytes' own newlines vanish with them; they were lines of the input.
        let length_bytes = &mut self.buf[at - 8..at];
        self.skipped_lines += memchr::memchr_iter(b'\n', length_bytes).count() as u64;
        length_bytes.copy_from_slice(&0u64.to_le_bytes());
        let present = self.buf.len() - at;
        let now = usize::try_from(len).map_or(present, |l| l.min(present));
        self.skipped_lines += memchr::memchr_iter(b'\n', &self.buf[at..at + now]).count() as u64;
        if now > 0 {
            self.last_dropped = Some(self.buf[at + now - 1]);
        }
        self.buf.drain(at..at + now);
        let left = len - now as u64;
        if left > 0 {
            self.skip = Skip::Bytes(left);
        }
    }

    /// Drops what `skip` says from the front of `chunk`, counting its lines.
    fn skip_dropped<'c>(&mut self, chunk: &'c [u8]) -> &'c [u8] {
        match self.skip {
            Skip::Nothing => chunk,
            Skip::Bytes(left) => {
                let n = usize::try_from(left).map_or(chunk.len(), |l| l.min(chunk.len()));
                self.skipped_lines += memchr::memchr_iter(b'\n', &chunk[..n]).count() as u64;
                if n > 0 {
                    self.last_dropped = Some(chunk[n - 1]);
                }
                let left = left - n as u64;
                self.skip = if left == 0 { Skip::Nothing } else { Skip::Bytes(left) };
                &chunk[n..]
            }
            Skip::Line => match memchr::memchr(b'\n', chunk) {
                Some(i) => {
                    self.skip = Skip::Nothing;
                    &chunk[i + 1..]
                }
                None => &[],
            },
        }
    }
}

/// The complete entries of the buffer; each borrows the parser's buffer.
pub struct Entries<'p> {
    buf: &'p [u8],
    consumed: &'p mut usize,
    line: &'p mut u64,
    skipped_lines: &'p mut u64,
    stray_lines: &'p mut u64,
    pending_oversize: &'p mut Option<(usize, u64)>,
    pending_long_line: &'p mut Option<usize>,
    progress: &'p mut Progress,
    /// `Some` when the stream ended inside a dropped value: whether it ended a line.
    tail_ends_line: Option<bool>,
    at_end: bool,
}

impl<'p> Iterator for Entries<'p> {
    type Item = Entry<'p>;

    fn next(&mut self) -> Option<Entry<'p>> {
        loop {
            let input = &self.buf[*self.consumed..];
            if input.is_empty() {
                return None;
            }
            if input[0] == b'\n' {
                // An empty line where an entry should start.
                *self.consumed += 1;
                *self.line += 1;
                *self.stray_lines += 1;
                continue;
            }
            return self.entry(input);
        }
    }
}

impl<'p> Entries<'p> {
    /// Parses (or goes on parsing) the entry at the start of `input`, which is
    /// `self.buf[consumed..]`.
    fn entry(&mut self, input: &'p [u8]) -> Option<Entry<'p>> {
        loop {
            let at = self.progress.pos;
            if at > MAX_ENTRY {
                return Some(self.emit(input, true));
            }
            match step(&input[at..]) {
                Step::Field { field, len, lines } => {
                    self.progress.push(input, field, len, lines);
                }
                Step::EntryEnd => {
                    self.progress.advance(1, 1, 0);
                    return Some(self.emit(input, false));
                }
                Step::Garbage { len } => self.progress.advance(len, 1, 1),
                Step::Oversize { .. } if self.at_end => {
                    // A second oversize value in what `finish` got: damaged to the end.
                    let n = self.final_lines(&input[at..]);
                    self.progress.advance(input.len() - at, n, n);
                    return Some(self.emit(input, true));
                }
                Step::Oversize { header, value } => {
                    // Dropped by the next `feed` or `finish`; the entry comes out then.
                    *self.pending_oversize = Some((*self.consumed + at + header, value));
                    return None;
                }
                Step::Incomplete if !self.at_end => {
                    let rest = &input[at..];
                    if rest.len() > MAX_LINE && memchr::memchr(b'\n', rest).is_none() {
                        *self.pending_long_line = Some(*self.consumed + at);
                    }
                    return None;
                }
                Step::Incomplete => return Some(self.last_entry(input)),
            }
        }
    }

    /// At the end of the stream: the last entry, which may lack its empty line or be cut
    /// inside a field.
    fn last_entry(&mut self, input: &'p [u8]) -> Entry<'p> {
        let at = self.progress.pos;
        let rest = &input[at..];
        if rest.is_empty() {
            return self.emit(input, false);
        }
        // A final text field without its `\n` is complete; anything else was cut short.
        if let Ok((value, name)) = terminated(field_name, tag("=")).parse(rest)
            && memchr::memchr(b'\n', value).is_none()
        {
            self.progress.push(input, Field { name, value }, rest.len(), 1);
            return self.emit(input, false);
        }
        let n = self.final_lines(rest);
        self.progress.advance(rest.len(), n, n);
        self.emit(input, true)
    }

    /// Lines in the last bytes of the stream that are still buffered.
    fn final_lines(&self, rest: &[u8]) -> u64 {
        match self.tail_ends_line {
            // The stream went on (and ended) in dropped bytes.
            Some(ends) => memchr::memchr_iter(b'\n', rest).count() as u64 + u64::from(!ends),
            None => lines_in(rest),
        }
    }

    /// Hands out the entry parsed so far and starts the next one.
    fn emit(&mut self, input: &'p [u8], truncated: bool) -> Entry<'p> {
        let progress = std::mem::take(self.progress);
        let extra = std::mem::take(self.skipped_lines);
        let fields = progress
            .fields
            .iter()
            .map(|&[name, name_end, value, value_end]| Field {
                name: &input[name..name_end],
                value: &input[value..value_end],
            })
            .collect();
        let entry = Entry {
            line: *self.line,
            lines: progress.lines + extra,
            unparsed_lines: progress.unparsed + extra,
            fields,
            truncated,
        };
        *self.consumed += progress.pos;
        *self.line += progress.lines + extra;
        // Keep the offsets' allocation for the next entry.
        *self.progress = Progress { fields: progress.fields, ..Progress::default() };
        self.progress.fields.clear();
        entry
    }
}

/// How far the entry in progress has been parsed, kept between `feed` calls so a
/// stream arriving in small chunks is parsed once, not again from the entry's start.
#[derive(Debug, Default)]
struct Progress {
    /// Offset after the last production, from the entry's start.
    pos: usize,
    lines: u64,
    unparsed: u64,
    /// `[name, name_end, value, value_end]` offsets from the entry's start: offsets, not
    /// slices, because the buffer grows (and moves) between calls.
    fields: Vec<[usize; 4]>,
}

impl Progress {
    fn advance(&mut self, len: usize, lines: u64, unparsed: u64) {
        self.pos += len;
        self.lines += lines;
        self.unparsed += unparsed;
    }

    /// Records `field`, a slice of `input` (the entry and what follows it).
    fn push(&mut self, input: &[u8], field: Field, len: usize, lines: u64) {
        let start = input.as_ptr() as usize;
        let name = field.name.as_ptr() as usize - start;
        let value = field.value.as_ptr() as usize - start;
        self.fields.push([name, name + field.name.len(), value, value + field.value.len()]);
        self.advance(len, lines, 0);
    }
}

/// Lines in a piece of input, counting an unterminated last one.
fn lines_in(bytes: &[u8]) -> u64 {
    let newlines = memchr::memchr_iter(b'\n', bytes).count() as u64;
    newlines + u64::from(!bytes.is_empty() && !bytes.ends_with(b"\n"))
}
