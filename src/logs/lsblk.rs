//! `lsblk` output: the text table (tree, `-l` list, `-f`, `-t`, any `-o` columns) and
//! `-J` JSON.
//!
//! Owns: the typed device tree ([`parse_text`], [`parse_json`]) that scenario checks
//! compare, and the analyzers that recognise both forms. Must not: run lsblk or judge
//! the layout.
//!
//! The text table is read by column position: lsblk left-aligns text columns under
//! their header and right-aligns numbers, so a value always overlaps its header word,
//! even when the value is empty in other rows (`FSTYPE` of a whole disk).

use std::io::{BufRead, Read};
use std::path::Path;

use nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::tag,
    combinator::{map, recognize},
    multi::many0,
    sequence::terminated,
};
use serde_json::Value;

pub use super::lines::ParseError;
use super::lines::{LineClass, Tally, each_line, head_lines, is_text, tally_stream};
use super::{Analysis, Analyzer, LogError, LogKind};

/// Largest `-J` document read; lsblk's JSON is a few KiB even with hundreds of devices.
pub const MAX_JSON: u64 = 16 << 20;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockDevice {
    pub name: String,
    /// `TYPE`: disk, part, lvm, crypt, loop, rom, …
    pub kind: Option<String>,
    pub size: Option<String>,
    pub fstype: Option<String>,
    pub label: Option<String>,
    pub uuid: Option<String>,
    pub mountpoints: Vec<String>,
    /// Every column as printed, by header name (`MAJ:MIN`, `PHY-SEC`, `SCHED`, …).
    pub columns: Vec<(String, String)>,
    pub children: Vec<BlockDevice>,
    /// Line of the text table; `None` for JSON.
    pub line: Option<u64>,
}

impl BlockDevice {
    pub fn column(&self, name: &str) -> Option<&str> {
        self.columns.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn set(&mut self, name: &str, value: String) {
        match name {
            "NAME" => self.name = value.clone(),
            "TYPE" => self.kind = Some(value.clone()),
            "SIZE" => self.size = Some(value.clone()),
            "FSTYPE" => self.fstype = Some(value.clone()),
            "LABEL" => self.label = Some(value.clone()),
            "UUID" => self.uuid = Some(value.clone()),
            "MOUNTPOINT" | "MOUNTPOINTS" => self.mountpoints.push(value.clone()),
            _ => {}
        }
        self.columns.push((name.to_owned(), value));
    }
}

/// One level of the tree drawn before a name: `|-`, `` `- ``, `├─`, `└─`, or an
/// ancestor's `| `, `│ `, `  `.
fn branch(i: &str) -> IResult<&str, &str> {
    alt((tag("|-"), tag("`-"), tag("├─"), tag("└─"))).parse(i)
}

fn ancestor(i: &str) -> IResult<&str, &str> {
    alt((tag("| "), tag("│ "), tag("  "))).parse(i)
}

/// The tree drawing before a device name and the device's depth (0 = top level).
fn tree(i: &str) -> IResult<&str, usize> {
    alt((
        map(recognize(terminated(many0(ancestor), branch)), |p: &str| p.chars().count() / 2),
        map(tag(""), |_| 0),
    ))
    .parse(i)
}

/// A header word and its columns (in characters).
struct Column {
    name: String,
    start: usize,
    end: usize,
}

fn header(text: &str) -> Option<Vec<Column>> {
    let columns: Vec<Column> = words(text)
        .map(|(start, word)| Column { name: word.to_owned(), start, end: start + word.chars().count() })
        .collect();
    let is_header = columns.first().is_some_and(|c| c.name == "NAME" || c.name == "KNAME")
        && columns.iter().all(|c| {
            c.name.bytes().all(|b| b.is_ascii_uppercase() || b"-:%".contains(&b) || b.is_ascii_digit())
        });
    is_header.then_some(columns)
}

/// Blank-separated words with their starting column in characters.
fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut column = 0;
    let mut rest = text;
    std::iter::from_fn(move || {
        let blanks = rest.chars().take_while(|c| *c == ' ').count();
        column += blanks;
        rest = &rest[blanks..];
        if rest.is_empty() {
            return None;
        }
        let len = rest.find(' ').unwrap_or(rest.len());
        let (word, after) = rest.split_at(len);
        let start = column;
        column += word.chars().count();
        rest = after;
        Some((start, word))
    })
}

/// The header column a value at `start..end` belongs to: the one it overlaps most, else
/// the nearest.
fn column_of(columns: &[Column], start: usize, end: usize) -> usize {
    let overlap = |c: &Column| end.min(c.end).saturating_sub(start.max(c.start));
    let distance = |c: &Column| c.start.abs_diff(start).min(c.end.abs_diff(end));
    (0..columns.len())
        .max_by_key(|&i| (overlap(&columns[i]), std::cmp::Reverse(distance(&columns[i]))))
        .unwrap_or(0)
}

fn row(columns: &[Column], text: &str, number: u64) -> (usize, BlockDevice) {
    let (after_tree, depth) = tree(text).unwrap_or((text, 0));
    let indent = text[..text.len() - after_tree.len()].chars().count();
    let mut values: Vec<Vec<&str>> = vec![Vec::new(); columns.len()];
    for (start, word) in words(after_tree) {
        let start = start + indent;
        let at = column_of(columns, start, start + word.chars().count());
        values[at].push(word);
    }
    // The tree drawing belongs to the name, whatever column it overlaps.
    let mut device = BlockDevice { line: Some(number), ..BlockDevice::default() };
    for (column, words) in columns.iter().zip(values) {
        if !words.is_empty() {
            device.set(&column.name, words.join(" "));
        }
    }
    (depth, device)
}

/// Attaches `device` at `depth` under the last device one level up.
fn attach(roots: &mut Vec<BlockDevice>, depth: usize, device: BlockDevice) {
    let mut siblings = roots;
    for _ in 0..depth {
        if siblings.is_empty() {
            break;
        }
        let last = siblings.len() - 1;
        siblings = &mut siblings[last].children;
    }
    siblings.push(device);
}

/// The device attached last: the end of the rightmost branch of the tree.
fn last_device(devices: &mut [BlockDevice]) -> Option<&mut BlockDevice> {
    let last = devices.last_mut()?;
    if last.children.is_empty() { Some(last) } else { last_device(&mut last.children) }
}

/// A line holding only more mountpoints of the device above: lsblk 2.37 and later print
/// each of a device's `MOUNTPOINTS` on a line of its own (a btrfs device with
/// subvolumes mounted at `/` and `/home`), after the tree's vertical bars when the
/// device has siblings below.
fn more_mountpoints<'t>(columns: &[Column], text: &'t str) -> Option<Vec<&'t str>> {
    let values = text.trim_start_matches(['|', '│', ' ']);
    let indent = text[..text.len() - values.len()].chars().count();
    let mut mountpoints = Vec::new();
    for (start, word) in words(values) {
        let start = start + indent;
        let at = column_of(columns, start, start + word.chars().count());
        if !matches!(columns[at].name.as_str(), "MOUNTPOINT" | "MOUNTPOINTS") {
            return None;
        }
        mountpoints.push(word);
    }
    (!mountpoints.is_empty()).then_some(mountpoints)
}

/// The devices of a text table, children under their parents.
pub fn parse_text(input: &[u8]) -> Result<Vec<BlockDevice>, ParseError> {
    let mut columns: Option<Vec<Column>> = None;
    let mut roots = Vec::new();
    each_line(input, |number, bytes| {
        let text = std::str::from_utf8(bytes).map_err(|_| ParseError::malformed(number, "not UTF-8"))?;
        match &columns {
            None => {
                columns =
                    Some(header(text).ok_or_else(|| ParseError::malformed(number, "no NAME … header line"))?);
            }
            Some(_) if text.trim().is_empty() => {}
            Some(columns) => {
                if let Some(more) = more_mountpoints(columns, text) {
                    let device = last_device(&mut roots)
                        .ok_or_else(|| ParseError::malformed(number, "mountpoints before any device"))?;
                    device.mountpoints.extend(more.into_iter().map(str::to_owned));
                    return Ok(());
                }
                let (depth, device) = row(columns, text, number);
                if device.name.is_empty() {
                    return Err(ParseError::malformed(number, "row without a device name"));
                }
                attach(&mut roots, depth, device);
            }
        }
        Ok(())
    })?;
    if columns.is_none() {
        return Err(ParseError::malformed(1, "empty lsblk output"));
    }
    Ok(roots)
}

/// The devices of `lsblk -J`, read from a stream of at most [`MAX_JSON`] bytes.
pub fn parse_json(input: &mut dyn Read) -> Result<Vec<BlockDevice>, ParseError> {
    let value: Value = serde_json::from_reader(input.take(MAX_JSON)).map_err(|e| {
        ParseError::malformed(e.line() as u64, format!("lsblk JSON (at most {MAX_JSON} bytes): {e}"))
    })?;
    let devices = value
        .get("blockdevices")
        .and_then(Value::as_array)
        .ok_or_else(|| ParseError::malformed(1, "no \"blockdevices\" array"))?;
    Ok(devices.iter().map(json_device).collect())
}

/// lsblk 2.38 writes booleans and a `mountpoints` array; older releases wrote strings
/// and one `mountpoint`, so every scalar is taken as its text.
fn json_device(value: &Value) -> BlockDevice {
    let mut device = BlockDevice::default();
    let Some(object) = value.as_object() else {
        return device;
    };
    for (key, value) in object {
        let name = key.to_ascii_uppercase();
        match value {
            Value::Array(items) if key == "children" => {
                device.children = items.iter().map(json_device).collect();
            }
            Value::Array(items) => {
                for item in items.iter().filter_map(scalar) {
                    device.set(&name, item);
                }
            }
            other => {
                if let Some(text) = scalar(other) {
                    device.set(&name, text);
                }
            }
        }
    }
    device
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub fn analyzers() -> Vec<Box<dyn Analyzer>> {
    vec![Box::new(Text), Box::new(Json)]
}

struct Text;

impl Analyzer for Text {
    fn kind(&self) -> LogKind {
        LogKind::Lsblk
    }

    /// A `NAME MAJ:MIN …` header of upper-case column names is unmistakable.
    fn sniff(&self, head: &[u8], _file_name: &str) -> u8 {
        let first = head_lines(head).next().unwrap_or_default();
        let columns = std::str::from_utf8(first).ok().and_then(header);
        match columns {
            Some(columns) if is_text(head) && columns.len() >= 2 => 90,
            _ => 0,
        }
    }

    /// The header and each device are records; a line of further mountpoints
    /// continues its device.
    fn analyze(&self, input: &mut dyn BufRead, file: &Path) -> Result<Analysis, LogError> {
        let mut columns: Option<Vec<Column>> = None;
        let tally = tally_stream(input, file, |bytes| {
            let text = std::str::from_utf8(bytes).ok();
            match (&columns, text) {
                (Some(_), Some(t)) if t.trim().is_empty() => LineClass::Unparsed,
                (Some(columns), Some(t)) if more_mountpoints(columns, t).is_some() => LineClass::Continuation,
                (Some(_), Some(_)) => LineClass::Record,
                (None, Some(t)) if header(t).is_some() => {
                    columns = header(t);
                    LineClass::Record
                }
                _ => LineClass::Unparsed,
            }
        })?;
        Ok(tally.into_analysis(Vec::new()))
    }
}

struct Json;

impl Analyzer for Json {
    fn kind(&self) -> LogKind {
        LogKind::LsblkJson
    }

    fn sniff(&self, head: &[u8], _file_name: &str) -> u8 {
        let starts_object = head.trim_ascii_start().starts_with(b"{");
        if starts_object && memchr::memmem::find(head, b"\"blockdevices\"").is_some() { 98 } else { 0 }
    }

    /// A JSON document is one record; its other lines continue it.
    fn analyze(&self, input: &mut dyn BufRead, file: &Path) -> Result<Analysis, LogError> {
        let mut counted = LineCounter { input, newlines: 0, last: None };
        parse_json(&mut counted).map_err(|e| e.into_log_error(file))?;
        let lines = counted.newlines + u64::from(counted.last.is_some_and(|b| b != b'\n'));
        let mut tally = Tally::default();
        tally.count(LineClass::Record, lines.min(1));
        tally.count(LineClass::Continuation, lines.saturating_sub(1));
        Ok(tally.into_analysis(Vec::new()))
    }
}

/// Counts the lines passing through, for the line accounting of a JSON document.
struct LineCounter<'r> {
    input: &'r mut dyn BufRead,
    newlines: u64,
    last: Option<u8>,
}

impl Read for LineCounter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.input.read(buf)?;
        self.newlines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
        if n > 0 {
            self.last = Some(buf[n - 1]);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::fixture;

    /// util-linux 2.38's `lsblk`, `lsblk -f -l`, `lsblk -t` and `lsblk -J` of one
    /// machine (a LUKS-encrypted btrfs device mounted twice), written here (see
    /// `tests/fixtures/logs/README.md`).
    const TREE: &[u8] = fixture!("lsblk/lsblk.txt");
    const FILESYSTEMS: &[u8] = fixture!("lsblk/lsblk-f-l.txt");
    const TOPOLOGY: &[u8] = fixture!("lsblk/lsblk-t.txt");
    const JSON: &[u8] = fixture!("lsblk/lsblk-J.json");

    fn names(devices: &[BlockDevice]) -> Vec<&str> {
        devices.iter().map(|d| d.name.as_str()).collect()
    }

    #[test]
    fn tree_table_with_children_and_mountpoints() {
        let all = parse_text(TREE).unwrap();
        assert_eq!(names(&all), ["sr0", "vda"]);
        assert_eq!(names(&all[1].children), ["vda1", "vda2", "vda3"]);
        let vda1 = &all[1].children[0];
        assert_eq!(vda1.mountpoints, ["/boot/efi"]);
        assert_eq!(
            (vda1.size.as_deref(), vda1.kind.as_deref(), vda1.line),
            (Some("600M"), Some("part"), Some(4))
        );
        assert_eq!(
            (vda1.column("MAJ:MIN"), vda1.column("RM"), vda1.column("RO")),
            (Some("252:1"), Some("0"), Some("0"))
        );
        let luks = &all[1].children[2].children[0];
        assert_eq!(
            (luks.name.as_str(), luks.kind.as_deref()),
            ("luks-5a1c9e2b-7d3f-4e8a-b6c0-2f9d8e7a6b5c", Some("crypt"))
        );
        // The line under it holds its second mountpoint.
        assert_eq!(luks.mountpoints, ["/home", "/"]);
        assert!(all[1].mountpoints.is_empty() && all[1].children[2].mountpoints.is_empty());
        assert_eq!((all[0].kind.as_deref(), all[0].column("RM")), (Some("rom"), Some("1")));
    }

    #[test]
    fn list_form_with_filesystems() {
        let all = parse_text(FILESYSTEMS).unwrap();
        assert_eq!(
            names(&all),
            ["sr0", "vda", "vda1", "vda2", "vda3", "luks-5a1c9e2b-7d3f-4e8a-b6c0-2f9d8e7a6b5c"]
        );
        assert!(all.iter().all(|d| d.children.is_empty()));
        assert_eq!((all[1].fstype.as_deref(), all[1].uuid.as_deref()), (None, None));
        assert_eq!((all[2].fstype.as_deref(), all[2].uuid.as_deref()), (Some("vfat"), Some("2A4C-81F0")));
        assert_eq!((all[2].column("FSVER"), all[2].column("FSUSE%")), (Some("FAT32"), Some("1%")));
        assert_eq!(all[2].label, None);
        assert_eq!((all[4].fstype.as_deref(), all[4].mountpoints.len()), (Some("crypto_LUKS"), 0));
        let root = &all[5];
        assert_eq!(
            (root.fstype.as_deref(), root.label.as_deref(), root.mountpoints.as_slice()),
            (Some("btrfs"), Some("fedora"), &["/".to_owned()][..])
        );
        assert_eq!(root.column("FSAVAIL"), Some("16.2G"));
    }

    #[test]
    fn topology_columns() {
        let all = parse_text(TOPOLOGY).unwrap();
        let vda1 = &all[1].children[0];
        assert_eq!(
            (vda1.column("PHY-SEC"), vda1.column("SCHED"), vda1.column("RQ-SIZE")),
            (Some("512"), Some("none"), Some("256"))
        );
        assert_eq!((all[0].column("LOG-SEC"), all[0].column("SCHED")), (Some("2048"), Some("mq-deadline")));
        // A device-mapper device has no scheduler: the column is empty, not shifted.
        let luks = &all[1].children[2].children[0];
        assert_eq!(
            (luks.column("SCHED"), luks.column("RQ-SIZE"), luks.column("PHY-SEC")),
            (None, Some("128"), Some("4096"))
        );
    }

    #[test]
    fn json_agrees_with_the_text_tree() {
        let text = parse_text(TREE).unwrap();
        let json = parse_json(&mut &JSON[..]).unwrap();
        fn same(t: &[BlockDevice], j: &[BlockDevice]) {
            assert_eq!(names(t), names(j));
            for (t, j) in t.iter().zip(j) {
                assert_eq!(
                    (&t.kind, &t.size, &t.mountpoints),
                    (&j.kind, &j.size, &j.mountpoints),
                    "{}",
                    t.name
                );
                same(&t.children, &j.children);
            }
        }
        same(&text, &json);
        // 2.38 writes booleans and `null` mountpoints; the first is a value, the second none.
        assert_eq!((json[0].column("rm"), json[1].column("rm")), (Some("true"), Some("false")));
        assert!(json[1].mountpoints.is_empty());
        assert_eq!(json[1].line, None);
    }

    #[test]
    fn unicode_tree_glyphs() {
        let table = "NAME        MAJ:MIN RM  SIZE RO TYPE  MOUNTPOINTS\nvda         252:0    0   20G  0 disk  \n├─vda1      252:1    0    1G  0 part  /boot\n└─vda2      252:2    0   19G  0 part  \n  └─luks-x  253:0    0   19G  0 crypt /\n";
        let all = parse_text(table.as_bytes()).unwrap();
        let vda2 = &all[0].children[1];
        assert_eq!(names(&all[0].children), ["vda1", "vda2"]);
        assert_eq!(vda2.children[0].kind.as_deref(), Some("crypt"));
        assert_eq!(vda2.children[0].mountpoints, ["/"]);
    }

    #[test]
    fn more_mountpoints_under_tree_bars_belong_to_the_device_above() {
        // lsblk 2.38 in a UTF-8 locale: a btrfs partition with three mountpoints and a
        // sibling below it.
        let table = "NAME   MAJ:MIN RM   SIZE RO TYPE MOUNTPOINTS\nsda      8:0    0 238.5G  0 disk \n├─sda1   8:1    0   512M  0 part /boot/efi\n├─sda2   8:2    0   237G  0 part /var/cache\n│                                /home\n│                                /\n└─sda3   8:3    0     1G  0 part [SWAP]\n";
        let all = parse_text(table.as_bytes()).unwrap();
        assert_eq!(names(&all[0].children), ["sda1", "sda2", "sda3"]);
        assert_eq!(all[0].children[1].mountpoints, ["/var/cache", "/home", "/"]);
        assert_eq!(all[0].children[2].mountpoints, ["[SWAP]"]);
        let analysis = Text.analyze(&mut table.as_bytes(), Path::new("lsblk")).unwrap();
        assert_eq!((analysis.records, analysis.continuation_lines, analysis.unparsed_lines), (5, 2, 0));
        // Mountpoints with no device above them are not a table lsblk prints.
        let err = parse_text(b"NAME MOUNTPOINTS\n     /home\n").unwrap_err();
        assert_eq!(err.line(), 2);
    }

    #[test]
    fn analyzers_detect_each_form_and_account_for_every_line() {
        for (name, data, continuation) in
            [("tree", TREE, 1), ("list", FILESYSTEMS, 0), ("topology", TOPOLOGY, 0)]
        {
            assert_eq!(Text.sniff(data, "x"), 90, "{name}");
            assert_eq!(Json.sniff(data, "x"), 0, "{name}");
            let a = Text.analyze(&mut &data[..], Path::new(name)).unwrap();
            let lines = data.iter().filter(|b| **b == b'\n').count() as u64;
            assert_eq!(
                (a.records, a.continuation_lines, a.unparsed_lines, a.lines),
                (lines - continuation, continuation, 0, lines),
                "{name}"
            );
        }
        assert_eq!((Json.sniff(JSON, "x"), Text.sniff(JSON, "x")), (98, 0));
        // A JSON document is one record; its other lines continue it.
        let a = Json.analyze(&mut &JSON[..], Path::new("lsblk.json")).unwrap();
        let lines = JSON.iter().filter(|b| **b == b'\n').count() as u64;
        assert_eq!((a.records, a.continuation_lines, a.unparsed_lines, a.lines), (1, lines - 1, 0, lines));
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(parse_text(b"NAME SIZE\nsda 1G\n\xff\n").unwrap_err().line(), 3);
        assert_eq!(parse_text(b"sda 8:0 disk\n").unwrap_err().line(), 1);
        assert_eq!(parse_json(&mut &b"{\"blockdevices\": [\n{\"name\": }"[..]).unwrap_err().line(), 2);
        assert_eq!(parse_json(&mut &b"{\"devices\": []}"[..]).unwrap_err().line(), 1);
    }
}
