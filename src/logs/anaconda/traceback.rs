//! Python tracebacks, as anaconda and its DBus modules log them.
//!
//! Owns: recognising the lines of one traceback (frames, code, chained exceptions, the
//! final exception line) wherever they appear: continuation lines of anaconda.log,
//! journal entries of one process, `#012`-joined rsyslog lines, or the head of an
//! `anaconda-tb-*` dump. Must not: decide severity or read files.

use std::sync::LazyLock;

use memchr::memmem::Finder;
use nom::{
    IResult, Parser,
    bytes::complete::{tag, take_till1, take_while1},
    combinator::{map, map_res, rest},
};

/// Frames kept per traceback; deeper ones are counted but not stored, so a runaway
/// recursion dump cannot grow memory.
const MAX_FRAMES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub file: String,
    pub line: u32,
    pub function: String,
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} in {}", self.file, self.line, self.function)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Traceback {
    /// anaconda's dumps print `most recent call first`; Python prints `last`.
    pub most_recent_first: bool,
    pub frames: Vec<Frame>,
    /// The final line, e.g. `pyanaconda…PayloadInstallationError: Failed to download …`.
    pub exception: Option<String>,
}

impl Traceback {
    /// The frame that raised.
    pub fn innermost(&self) -> Option<&Frame> {
        if self.most_recent_first { self.frames.first() } else { self.frames.last() }
    }

    /// `pyanaconda.modules.common.errors.installation.PayloadInstallationError`
    pub fn exception_type(&self) -> Option<&str> {
        let exception = self.exception.as_deref()?;
        Some(exception.split_once(':').map_or(exception, |(t, _)| t).trim())
    }
}

fn frame(i: &[u8]) -> IResult<&[u8], Frame> {
    map(
        (
            tag(&b"File \""[..]),
            take_till1(|b| b == b'"'),
            tag(&b"\", line "[..]),
            map_res(take_while1(|b: u8| b.is_ascii_digit()), |d: &[u8]| {
                std::str::from_utf8(d).unwrap_or("x").parse::<u32>()
            }),
            tag(&b", in "[..]),
            rest,
        ),
        |(_, file, _, line, _, function)| Frame {
            file: String::from_utf8_lossy(file).into_owned(),
            line,
            function: String::from_utf8_lossy(function).trim_end().to_owned(),
        },
    )
    .parse(i)
}

/// Starts a traceback: `Traceback (most recent call last):`, possibly after a prefix
/// such as `Thread X has failed: `.
pub fn starts_traceback(message: &[u8]) -> bool {
    static HEADER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"Traceback (most recent call"));
    HEADER.find(message).is_some()
}

/// Builds one traceback from its lines, fed one at a time.
#[derive(Debug, Default)]
pub struct Builder {
    traceback: Traceback,
    frame_indent: Option<usize>,
    finished: bool,
}

impl Builder {
    /// `header` is the line holding `Traceback (most recent call …)`.
    pub fn new(header: &[u8]) -> Builder {
        Builder {
            traceback: Traceback {
                most_recent_first: memchr::memmem::find(header, b"call first").is_some(),
                ..Traceback::default()
            },
            ..Builder::default()
        }
    }

    /// Offers the next line; returns whether it belongs to this traceback. Once a line
    /// is refused, every later line is refused too.
    pub fn feed(&mut self, line: &[u8]) -> bool {
        if self.finished {
            return false;
        }
        let indent = line.iter().take_while(|b| **b == b' ' || **b == b'\t').count();
        let text = &line[indent..];
        let accepted = if text.is_empty() || is_chaining(text) {
            true
        } else if let Ok((_, frame)) = frame(text) {
            if self.traceback.exception.is_some() {
                false
            } else {
                self.frame_indent = Some(indent);
                if self.traceback.frames.len() < MAX_FRAMES {
                    self.traceback.frames.push(frame);
                }
                true
            }
        } else {
            match self.frame_indent {
                Some(frames) if indent > frames && self.traceback.exception.is_none() => true,
                Some(_) if self.traceback.exception.is_none() => {
                    self.traceback.exception = Some(String::from_utf8_lossy(text).into_owned());
                    true
                }
                _ => false,
            }
        };
        if !accepted {
            self.finished = true;
        }
        accepted
    }

    /// The exception line has come: a Python traceback has nothing after it (a chained
    /// exception starts a traceback of its own).
    pub fn complete(&self) -> bool {
        self.traceback.exception.is_some()
    }

    pub fn finish(self) -> Traceback {
        self.traceback
    }
}

/// Chained exceptions restart the traceback; the last one is the one that escaped.
fn is_chaining(text: &[u8]) -> bool {
    starts_traceback(text)
        || text.starts_with(b"During handling of the above exception")
        || text.starts_with(b"The above exception was the direct cause")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_order_innermost_is_last_and_code_lines_are_skipped() {
        let mut b = Builder::new(b"Traceback (most recent call last):");
        for line in [
            "",
            "  File \"/usr/lib64/python3.14/threading.py\", line 1024, in run",
            "    self._target(*self._args, **self._kwargs)",
            "    ~~~~~~~~~~~~^^^^^",
            "  File \"/x/dnf_manager.py\", line 748, in download_packages",
            "    raise PayloadInstallationError(msg) from None",
            "pyanaconda.errors.PayloadInstallationError: Failed to download",
            "",
        ] {
            assert!(b.feed(line.as_bytes()), "{line:?}");
        }
        assert!(!b.feed(b"09:24:09,940 DBG misc: next record"));
        let tb = b.finish();
        assert_eq!(tb.frames.len(), 2);
        assert_eq!(tb.innermost().unwrap().to_string(), "/x/dnf_manager.py:748 in download_packages");
        assert_eq!(tb.exception_type(), Some("pyanaconda.errors.PayloadInstallationError"));
    }

    #[test]
    fn a_line_before_any_frame_is_not_part_of_it() {
        let mut b = Builder::new(b"Traceback (most recent call first):");
        assert!(!b.feed(b"some unrelated text"));
        assert_eq!(b.finish().exception, None);
    }
}
