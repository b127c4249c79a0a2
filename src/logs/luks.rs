//! `cryptsetup luksDump` output, LUKS1 and LUKS2.
//!
//! Owns: the typed header ([`parse_dump`]) that scenario checks compare (version,
//! cipher, sector size, keyslots with their PBKDF and costs, tokens, digests), and the
//! analyzer that recognises the output. Must not: read devices or judge the values.
//!
//! The dump is indentation-structured: header fields at column 0, sections
//! (`Keyslots:`) at column 0 with nothing after the colon, items as `  N: type`, their
//! fields indented by a tab, and multi-line values continued on indented lines without
//! a colon: hex dumps (salts, digests), and the `(null)` under an empty `tpm2-pubkey:`
//! of a systemd-tpm2 token.

use std::io::BufRead;
use std::path::Path;

use nom::{
    IResult, Parser,
    bytes::complete::{tag, take_till1, take_while1},
    character::complete::{char, space0, space1},
    combinator::{all_consuming, map, map_res, opt, rest},
    sequence::{preceded, terminated},
};

pub use super::lines::ParseError;
use super::lines::{LineClass, each_line, is_text, tally_stream};
use super::{Analysis, Analyzer, LogError, LogKind};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LuksHeader {
    pub version: u8,
    pub uuid: Option<String>,
    pub label: Option<String>,
    /// `aes-xts-plain64`: LUKS1's cipher name and mode joined, LUKS2's first segment.
    pub cipher: Option<String>,
    /// LUKS1 `Hash spec`.
    pub hash: Option<String>,
    /// Bytes per encryption sector: LUKS1 always uses 512, LUKS2 says per segment.
    pub sector_size: Option<u32>,
    /// LUKS1 `MK bits`.
    pub key_bits: Option<u32>,
    pub segments: Vec<Segment>,
    pub keyslots: Vec<Keyslot>,
    pub tokens: Vec<Token>,
    pub digests: Vec<Digest>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Segment {
    pub id: u32,
    pub kind: String,
    pub offset: Option<u64>,
    pub cipher: Option<String>,
    pub sector_size: Option<u32>,
    pub integrity: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keyslot {
    pub id: u32,
    /// LUKS1 `DISABLED` slots are listed but hold no key.
    pub enabled: bool,
    /// LUKS2 keyslot type (`luks2`).
    pub kind: Option<String>,
    pub key_bits: Option<u32>,
    pub priority: Option<String>,
    pub cipher: Option<String>,
    /// `argon2id`, `argon2i`, `pbkdf2`. LUKS1 keyslots are always PBKDF2.
    pub pbkdf: Option<String>,
    /// Argon2 iterations.
    pub time_cost: Option<u64>,
    /// Argon2 memory, KiB.
    pub memory: Option<u64>,
    pub threads: Option<u32>,
    /// PBKDF2 iterations.
    pub iterations: Option<u64>,
    pub af_stripes: Option<u32>,
    pub af_hash: Option<String>,
    pub digest_id: Option<u32>,
    pub line: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Token {
    pub id: u32,
    /// `systemd-tpm2`, `systemd-fido2`, …
    pub kind: String,
    pub keyslots: Vec<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digest {
    pub id: u32,
    pub kind: String,
    pub hash: Option<String>,
    pub iterations: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Header,
    Segments,
    Keyslots,
    Tokens,
    Digests,
}

/// One line of a dump.
#[derive(Debug, PartialEq, Eq)]
enum Line<'a> {
    Title,
    Blank,
    Section(Section),
    /// `  0: luks2`
    Item(u32, &'a [u8]),
    /// `Key Slot 0: ENABLED`
    Luks1Slot(u32, bool),
    /// `Label: value` at column 0, or indented under an item.
    Field(&'a [u8], &'a [u8]),
    /// The indented rest of a multi-line value.
    Continuation,
}

fn number<T: std::str::FromStr>(i: &[u8]) -> IResult<&[u8], T> {
    map_res(take_while1(|b: u8| b.is_ascii_digit()), |d: &[u8]| {
        std::str::from_utf8(d).unwrap_or("x").parse::<T>()
    })
    .parse(i)
}

fn title(i: &[u8]) -> IResult<&[u8], Line<'_>> {
    map((tag(&b"LUKS header information"[..]), rest), |_| Line::Title).parse(i)
}

fn section(i: &[u8]) -> Option<Section> {
    Some(match i {
        b"Data segments:" => Section::Segments,
        b"Keyslots:" => Section::Keyslots,
        b"Tokens:" => Section::Tokens,
        b"Digests:" => Section::Digests,
        _ => return None,
    })
}

fn item(i: &[u8]) -> IResult<&[u8], Line<'_>> {
    map((space1, terminated(number, tag(&b": "[..])), rest), |(_, id, kind)| Line::Item(id, kind)).parse(i)
}

fn luks1_slot(i: &[u8]) -> IResult<&[u8], Line<'_>> {
    map(
        (tag(&b"Key Slot "[..]), terminated(number, tag(&b": "[..])), rest),
        |(_, id, state): (_, u32, &[u8])| Line::Luks1Slot(id, state == b"ENABLED"),
    )
    .parse(i)
}

/// `Time cost:  4`, `Area offset:32768 [bytes]`, `MK bits:       \t512`.
fn field(i: &[u8]) -> IResult<&[u8], Line<'_>> {
    map(
        (
            opt(take_while1(|b: u8| b == b'\t' || b == b' ')),
            take_till1(|b: u8| b == b':'),
            char(':'),
            space0,
            rest,
        ),
        |(_, label, _, _, value): (_, &[u8], _, _, &[u8])| Line::Field(label, value.trim_ascii()),
    )
    .parse(i)
}

/// Indented and without a colon, which every field and item has.
fn continuation(i: &[u8]) -> IResult<&[u8], Line<'_>> {
    map(preceded(take_while1(|b: u8| b == b'\t' || b == b' '), take_while1(|b: u8| b != b':')), |_| {
        Line::Continuation
    })
    .parse(i)
}

fn line(i: &[u8]) -> Option<Line<'_>> {
    if i.trim_ascii().is_empty() {
        return Some(Line::Blank);
    }
    if let Some(s) = section(i) {
        return Some(Line::Section(s));
    }
    let parsed = title(i)
        .or_else(|_| luks1_slot(i))
        .or_else(|_| item(i))
        .or_else(|_| all_consuming(continuation).parse(i))
        .or_else(|_| field(i));
    parsed.ok().map(|(_, line)| line)
}

fn text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}

/// The leading number of `16777216 [bytes]`, `512 bits`, `4`.
fn leading<T: std::str::FromStr>(value: &[u8]) -> Option<T> {
    number::<T>(value).ok().map(|(_, n)| n)
}

/// Builds the header from lines.
#[derive(Default)]
struct Builder {
    header: LuksHeader,
    section: Option<Section>,
    luks1_cipher: (Option<String>, Option<String>),
    seen_title: bool,
}

impl Builder {
    fn feed(&mut self, number: u64, line: Line<'_>) -> Result<(), ParseError> {
        match line {
            Line::Title => {
                self.seen_title = true;
                self.section = Some(Section::Header);
            }
            Line::Blank | Line::Continuation => {}
            Line::Section(s) => self.section = Some(s),
            Line::Luks1Slot(id, enabled) => {
                self.section = Some(Section::Keyslots);
                self.header.keyslots.push(Keyslot {
                    id,
                    enabled,
                    // LUKS1 has only PBKDF2 keyslots.
                    pbkdf: enabled.then(|| "pbkdf2".to_owned()),
                    line: number,
                    ..Keyslot::default()
                });
            }
            Line::Item(id, kind) => self.item(number, id, text(kind))?,
            Line::Field(label, value) => self.field(number, label, value)?,
        }
        Ok(())
    }

    fn item(&mut self, number: u64, id: u32, kind: String) -> Result<(), ParseError> {
        let h = &mut self.header;
        match self.section {
            Some(Section::Segments) => h.segments.push(Segment { id, kind, ..Segment::default() }),
            Some(Section::Keyslots) => h.keyslots.push(Keyslot {
                id,
                enabled: true,
                kind: Some(kind),
                line: number,
                ..Keyslot::default()
            }),
            Some(Section::Tokens) => h.tokens.push(Token { id, kind, keyslots: Vec::new() }),
            Some(Section::Digests) => h.digests.push(Digest { id, kind, ..Digest::default() }),
            _ => {
                return Err(ParseError::malformed(number, "numbered item outside a section"));
            }
        }
        Ok(())
    }

    fn field(&mut self, number: u64, label: &[u8], value: &[u8]) -> Result<(), ParseError> {
        if !self.seen_title {
            return Err(ParseError::malformed(number, "no `LUKS header information` line before"));
        }
        let h = &mut self.header;
        match self.section {
            Some(Section::Header) => match label {
                b"Version" => {
                    h.version = leading(value)
                        .ok_or_else(|| ParseError::malformed(number, "version is not a number"))?;
                }
                b"UUID" => h.uuid = Some(text(value)),
                b"Label" => h.label = (value != b"(no label)").then(|| text(value)),
                b"Cipher name" => self.luks1_cipher.0 = Some(text(value)),
                b"Cipher mode" => self.luks1_cipher.1 = Some(text(value)),
                b"Hash spec" => h.hash = Some(text(value)),
                b"MK bits" => h.key_bits = leading(value),
                _ => {}
            },
            Some(Section::Segments) => {
                if let Some(s) = h.segments.last_mut() {
                    match label {
                        b"offset" => s.offset = leading(value),
                        b"cipher" => s.cipher = Some(text(value)),
                        b"sector" => s.sector_size = leading(value),
                        b"integrity" => s.integrity = Some(text(value)),
                        _ => {}
                    }
                }
            }
            Some(Section::Keyslots) => {
                if let Some(k) = h.keyslots.last_mut() {
                    match label {
                        b"Key" => k.key_bits = leading(value),
                        b"Priority" => k.priority = Some(text(value)),
                        b"Cipher" => k.cipher = Some(text(value)),
                        b"PBKDF" => k.pbkdf = Some(text(value)),
                        b"Time cost" => k.time_cost = leading(value),
                        b"Memory" => k.memory = leading(value),
                        b"Threads" => k.threads = leading(value),
                        b"Iterations" => k.iterations = leading(value),
                        b"AF stripes" => k.af_stripes = leading(value),
                        b"AF hash" => k.af_hash = Some(text(value)),
                        b"Digest ID" => k.digest_id = leading(value),
                        _ => {}
                    }
                }
            }
            Some(Section::Tokens) => {
                if let (Some(t), b"Keyslot") = (h.tokens.last_mut(), label) {
                    t.keyslots.extend(leading::<u32>(value));
                }
            }
            Some(Section::Digests) => {
                if let Some(d) = h.digests.last_mut() {
                    match label {
                        b"Hash" => d.hash = Some(text(value)),
                        b"Iterations" => d.iterations = leading(value),
                        _ => {}
                    }
                }
            }
            None => return Err(ParseError::malformed(number, "field before the header")),
        }
        Ok(())
    }

    fn finish(mut self, lines: u64) -> Result<LuksHeader, ParseError> {
        if self.header.version == 0 {
            return Err(ParseError::malformed(lines.max(1), "no `Version:` line"));
        }
        if self.header.version == 1 {
            if let (Some(name), Some(mode)) = self.luks1_cipher {
                self.header.cipher = Some(format!("{name}-{mode}"));
            }
            self.header.sector_size = Some(512);
        } else if let Some(first) = self.header.segments.first() {
            self.header.cipher = first.cipher.clone();
            self.header.sector_size = first.sector_size;
        }
        Ok(self.header)
    }
}

/// The whole header of one `luksDump`.
pub fn parse_dump(input: &[u8]) -> Result<LuksHeader, ParseError> {
    let mut builder = Builder::default();
    let lines = each_line(input, |number, text| match line(text) {
        Some(line) => builder.feed(number, line),
        None => Err(ParseError::malformed(number, "not a luksDump line")),
    })?;
    builder.finish(lines)
}

pub fn analyzers() -> Vec<Box<dyn Analyzer>> {
    vec![Box::new(LuksDump)]
}

struct LuksDump;

impl Analyzer for LuksDump {
    fn kind(&self) -> LogKind {
        LogKind::LuksDump
    }

    fn sniff(&self, head: &[u8], _file_name: &str) -> u8 {
        if is_text(head) && head.starts_with(b"LUKS header information") { 100 } else { 0 }
    }

    fn analyze(&self, input: &mut dyn BufRead, file: &Path) -> Result<Analysis, LogError> {
        let tally = tally_stream(input, file, |text| match line(text) {
            Some(Line::Continuation | Line::Blank) => LineClass::Continuation,
            Some(_) => LineClass::Record,
            None => LineClass::Unparsed,
        })?;
        Ok(tally.into_analysis(Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cryptsetup luksDump` of a LUKS2 header with a systemd-tpm2 token and of a LUKS1
    /// header, written here (see `tests/fixtures/logs/README.md`).
    const LUKS2: &[u8] = crate::logs::fixture!("luks/luksDump-luks2.txt");
    const LUKS1: &[u8] = crate::logs::fixture!("luks/luksDump-luks1.txt");

    #[test]
    fn luks2_keyslots_pbkdf_costs_segment_token_and_digest() {
        let h = parse_dump(LUKS2).unwrap();
        assert_eq!(h.version, 2);
        assert_eq!(h.uuid.as_deref(), Some("5a1c9e2b-7d3f-4e8a-b6c0-2f9d8e7a6b5c"));
        assert_eq!(h.label, None);
        assert_eq!((h.cipher.as_deref(), h.sector_size), (Some("aes-xts-plain64"), Some(4096)));
        assert_eq!(
            h.segments,
            [Segment {
                id: 0,
                kind: "crypt".into(),
                offset: Some(16777216),
                cipher: Some("aes-xts-plain64".into()),
                sector_size: Some(4096),
                integrity: None,
            }]
        );
        let [argon, pbkdf2] = &h.keyslots[..] else { panic!("{:?}", h.keyslots) };
        assert_eq!(
            (
                argon.id,
                argon.kind.as_deref(),
                argon.pbkdf.as_deref(),
                argon.time_cost,
                argon.memory,
                argon.threads
            ),
            (0, Some("luks2"), Some("argon2id"), Some(6), Some(1048576), Some(2))
        );
        assert_eq!(
            (argon.key_bits, argon.af_stripes, argon.digest_id, argon.line),
            (Some(512), Some(4000), Some(0), 19)
        );
        assert_eq!(argon.af_hash.as_deref(), Some("sha256"));
        assert_eq!(
            (pbkdf2.id, pbkdf2.pbkdf.as_deref(), pbkdf2.iterations, pbkdf2.line),
            (1, Some("pbkdf2"), Some(1000), 35)
        );
        assert_eq!((pbkdf2.time_cost, pbkdf2.memory), (None, None));
        // The token's multi-line values (`(null)` under an empty pubkey, hex dumps)
        // do not hide its keyslot.
        assert_eq!(h.tokens, [Token { id: 0, kind: "systemd-tpm2".into(), keyslots: vec![1] }]);
        assert_eq!(
            h.digests,
            [Digest { id: 0, kind: "pbkdf2".into(), hash: Some("sha256".into()), iterations: Some(164087) }]
        );
    }

    #[test]
    fn luks1_slots_and_cipher() {
        let h = parse_dump(LUKS1).unwrap();
        assert_eq!(h.version, 1);
        assert_eq!(h.uuid.as_deref(), Some("1e7f3c90-2b4d-4a6e-9c81-5d0f7e3a2b19"));
        // LUKS1 names cipher and mode apart, and always encrypts 512-byte sectors.
        assert_eq!((h.cipher.as_deref(), h.sector_size), (Some("aes-xts-plain64"), Some(512)));
        assert_eq!((h.hash.as_deref(), h.key_bits), (Some("sha256"), Some(512)));
        assert_eq!(h.keyslots.len(), 8);
        let enabled: Vec<_> = h.keyslots.iter().filter(|k| k.enabled).collect();
        let [slot] = &enabled[..] else { panic!("{enabled:?}") };
        assert_eq!(
            (slot.id, slot.line, slot.iterations, slot.af_stripes),
            (0, 15, Some(1572864), Some(4000))
        );
        assert_eq!(slot.pbkdf.as_deref(), Some("pbkdf2"));
        assert!(h.keyslots[1..].iter().all(|k| !k.enabled && k.pbkdf.is_none()));
        assert!(h.segments.is_empty() && h.tokens.is_empty());
    }

    #[test]
    fn tokens_name_their_keyslots() {
        let dump = b"LUKS header information\nVersion:       \t2\nKeyslots:\n  1: luks2\n\tPBKDF:      pbkdf2\n\tIterations: 1000\nTokens:\n  0: systemd-tpm2\n\ttpm2-pcrs:  7\n\tKeyslot:    1\nDigests:\n";
        let h = parse_dump(dump).unwrap();
        assert_eq!(h.tokens, vec![Token { id: 0, kind: "systemd-tpm2".into(), keyslots: vec![1] }]);
        assert_eq!(h.keyslots[0].iterations, Some(1000));
    }

    #[test]
    fn a_systemd_tpm2_token_with_multi_line_values() {
        // From reference:installed-tpm after `systemd-cryptenroll --tpm2-pcrs=7`
        // (systemd 252, cryptsetup 2.6), shortened hex dumps.
        let dump =
            b"LUKS header information\nVersion:       \t2\nKeyslots:\n  1: luks2\n\tPBKDF:      pbkdf2\n\
            Tokens:\n  0: systemd-tpm2\n\ttpm2-hash-pcrs:   7\n\ttpm2-pcr-bank:    sha256\n\
            \ttpm2-pubkey:\n\t            (null)\n\ttpm2-pubkey-pcrs: n/a\n\ttpm2-primary-alg: ecc\n\
            \ttpm2-blob:        00 9e 00 20 f6 b0 9d 6d 53 94 e3 aa d0 30 00 ca\n\
            \t            4b 50 eb 68 ac ea 1d e5 d9 9a 9d 18 7f d2 cd 95\n\ttpm2-policy-hash:\n\
            \t            4c c4 80 43 ae da ae 48 74 52 bb 40 7e 8f c2 1d\n\ttpm2-pin:         false\n\
            \tKeyslot:    1\nDigests:\n  0: pbkdf2\n";
        let h = parse_dump(dump).unwrap();
        assert_eq!(h.tokens, vec![Token { id: 0, kind: "systemd-tpm2".into(), keyslots: vec![1] }]);
        let a = LuksDump.analyze(&mut &dump[..], Path::new("dump")).unwrap();
        assert_eq!(a.unparsed_lines, 0);
    }

    #[test]
    fn analyzer_accounts_for_every_line_and_errors_name_the_line() {
        // Blank lines and the indented rest of multi-line values continue a record.
        for (dump, records, continuation) in [(LUKS2, 62, 9), (LUKS1, 23, 4)] {
            assert_eq!(LuksDump.sniff(dump, "x"), 100);
            let a = LuksDump.analyze(&mut &dump[..], Path::new("dump")).unwrap();
            assert_eq!((a.records, a.continuation_lines, a.unparsed_lines), (records, continuation, 0));
            assert_eq!(a.lines, dump.iter().filter(|b| **b == b'\n').count() as u64);
        }
        let err = parse_dump(b"LUKS header information\nVersion: x\n").unwrap_err();
        assert_eq!(err.line(), 2);
        assert!(parse_dump(b"").is_err());
        let err = parse_dump(b"Version:       \t2\n").unwrap_err();
        assert_eq!(err, ParseError::malformed(1, "no `LUKS header information` line before"));
        let err = parse_dump(b"LUKS header information\n  0: luks2\n").unwrap_err();
        assert_eq!(err, ParseError::malformed(2, "numbered item outside a section"));
    }
}
