//! `btrfs subvolume list` output, plain or with `-a -p -u -q -c -g -R`.
//!
//! Owns: the typed list of subvolumes ([`parse_subvolume_list`]) that scenario checks
//! compare, and the analyzer that recognises the output. Must not: run btrfs or judge
//! the layout (a check does).

use std::io::BufRead;
use std::path::Path;

use nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::{tag, take_till1, take_while1},
    character::complete::{space0, space1},
    combinator::{map, map_res, rest},
    multi::many0,
    sequence::{preceded, terminated},
};

pub use super::lines::ParseError;
use super::lines::{LineClass, each_line, head_lines, is_text, tally_stream};
use super::{Analysis, Analyzer, LogError, LogKind};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subvolume {
    pub id: u64,
    pub generation: u64,
    /// `-c`: generation at creation.
    pub cgen: Option<u64>,
    /// `-p`: the subvolume that contains this one.
    pub parent: Option<u64>,
    pub top_level: u64,
    /// `-s`/`-o` listings with times: `2020-01-31 10:00:00`.
    pub otime: Option<String>,
    /// `-q`: the subvolume this is a snapshot of; `None` for `-`.
    pub parent_uuid: Option<String>,
    /// `-R`
    pub received_uuid: Option<String>,
    /// `-u`
    pub uuid: Option<String>,
    /// As printed: relative, or from `<FS_TREE>/` with `-a`.
    pub path: String,
    pub line: u64,
}

enum Field {
    Gen(u64),
    Cgen(u64),
    Parent(u64),
    TopLevel(u64),
    Otime(String),
    ParentUuid(Option<String>),
    ReceivedUuid(Option<String>),
    Uuid(Option<String>),
}

fn number(i: &[u8]) -> IResult<&[u8], u64> {
    map_res(take_while1(|b: u8| b.is_ascii_digit()), |d: &[u8]| {
        std::str::from_utf8(d).unwrap_or("x").parse::<u64>()
    })
    .parse(i)
}

/// A UUID, or `-` for none.
fn uuid(i: &[u8]) -> IResult<&[u8], Option<String>> {
    map(take_till1(|b: u8| b == b' '), |u: &[u8]| {
        (u != b"-").then(|| String::from_utf8_lossy(u).into_owned())
    })
    .parse(i)
}

/// `2020-01-31 10:00:00`, or `-`.
fn otime(i: &[u8]) -> IResult<&[u8], String> {
    alt((
        map(
            (take_till1(|b: u8| b == b' '), tag(&b" "[..]), take_till1(|b: u8| b == b' ')),
            |(d, _, t): (&[u8], _, &[u8])| {
                format!("{} {}", String::from_utf8_lossy(d), String::from_utf8_lossy(t))
            },
        ),
        map(tag(&b"-"[..]), |_| "-".to_owned()),
    ))
    .parse(i)
}

fn field(i: &[u8]) -> IResult<&[u8], Field> {
    terminated(
        alt((
            map(preceded(tag(&b"gen "[..]), number), Field::Gen),
            map(preceded(tag(&b"cgen "[..]), number), Field::Cgen),
            map(preceded(tag(&b"parent "[..]), number), Field::Parent),
            map(preceded(tag(&b"top level "[..]), number), Field::TopLevel),
            map(preceded(tag(&b"otime "[..]), otime), Field::Otime),
            map(preceded(tag(&b"parent_uuid "[..]), uuid), Field::ParentUuid),
            map(preceded(tag(&b"received_uuid "[..]), uuid), Field::ReceivedUuid),
            map(preceded(tag(&b"uuid "[..]), uuid), Field::Uuid),
        )),
        space1,
    )
    .parse(i)
}

fn path(i: &[u8]) -> IResult<&[u8], &[u8]> {
    preceded(tag(&b"path "[..]), rest).parse(i)
}

/// `ID 256 gen 30 [field …] path @`
fn subvolume(i: &[u8]) -> IResult<&[u8], Subvolume> {
    map(
        (preceded(tag(&b"ID "[..]), terminated(number, space1)), many0(field), preceded(space0, path)),
        |(id, fields, path)| {
            let mut subvolume =
                Subvolume { id, path: String::from_utf8_lossy(path).into_owned(), ..Subvolume::default() };
            for field in fields {
                match field {
                    Field::Gen(n) => subvolume.generation = n,
                    Field::Cgen(n) => subvolume.cgen = Some(n),
                    Field::Parent(n) => subvolume.parent = Some(n),
                    Field::TopLevel(n) => subvolume.top_level = n,
                    Field::Otime(t) => subvolume.otime = Some(t),
                    Field::ParentUuid(u) => subvolume.parent_uuid = u,
                    Field::ReceivedUuid(u) => subvolume.received_uuid = u,
                    Field::Uuid(u) => subvolume.uuid = u,
                }
            }
            subvolume
        },
    )
    .parse(i)
}

fn parse_line(text: &[u8]) -> Option<Subvolume> {
    subvolume(text).ok().map(|(_, s)| s)
}

/// Every subvolume listed; a line that is not one is an error naming it.
pub fn parse_subvolume_list(input: &[u8]) -> Result<Vec<Subvolume>, ParseError> {
    let mut all = Vec::new();
    each_line(input, |number, text| {
        if text.is_empty() {
            return Ok(());
        }
        let mut subvolume = parse_line(text)
            .ok_or_else(|| ParseError::malformed(number, "not a `ID n gen n … path p` line"))?;
        subvolume.line = number;
        all.push(subvolume);
        Ok(())
    })?;
    Ok(all)
}

pub fn analyzers() -> Vec<Box<dyn Analyzer>> {
    vec![Box::new(SubvolumeList)]
}

struct SubvolumeList;

impl Analyzer for SubvolumeList {
    fn kind(&self) -> LogKind {
        LogKind::BtrfsSubvolumeList
    }

    /// Lines starting `ID n gen n` and ending in `path …` are unmistakable.
    fn sniff(&self, head: &[u8], _file_name: &str) -> u8 {
        if !is_text(head) {
            return 0;
        }
        let mut lines = head_lines(head).take(200).filter(|l| !l.is_empty()).peekable();
        if lines.peek().is_none() {
            return 0;
        }
        if lines.all(|l| parse_line(l).is_some()) { 95 } else { 0 }
    }

    fn analyze(&self, input: &mut dyn BufRead, file: &Path) -> Result<Analysis, LogError> {
        let tally = tally_stream(input, file, |text| match parse_line(text) {
            Some(_) => LineClass::Record,
            None => LineClass::Unparsed,
        })?;
        Ok(tally.into_analysis(Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `btrfs subvolume list -a -p -u -q` of a snapper layout, written here (see
    /// `tests/fixtures/logs/README.md`).
    const LIST: &[u8] = crate::logs::fixture!("btrfs/subvolume-list-a-puq.txt");

    #[test]
    fn list_with_parents_uuids_and_fs_tree_paths() {
        let all = parse_subvolume_list(LIST).unwrap();
        let summary: Vec<_> =
            all.iter().map(|s| (s.id, s.parent, s.top_level, s.path.as_str(), s.line)).collect();
        assert_eq!(
            summary,
            [
                (256, Some(5), 5, "<FS_TREE>/@", 1),
                (257, Some(256), 256, "<FS_TREE>/@/home", 2),
                (258, Some(256), 256, "<FS_TREE>/@/var", 3),
                (259, Some(256), 256, "<FS_TREE>/@/.snapshots", 4),
                (260, Some(259), 259, "<FS_TREE>/@/.snapshots/1/snapshot", 5),
            ]
        );
        let root = &all[0];
        assert_eq!((root.generation, root.parent_uuid.as_deref()), (412, None));
        assert_eq!(root.uuid.as_deref(), Some("3d7bd1a2-5c2e-0b4f-9d0c-6a1e2f3b4c5d"));
        // The snapshot names the subvolume it was taken of.
        assert_eq!(all[4].parent_uuid, root.uuid);
        assert_eq!(
            (all[4].cgen, all[4].otime.as_deref(), all[4].received_uuid.as_deref()),
            (None, None, None)
        );
    }

    #[test]
    fn plain_and_snapshot_forms_and_errors() {
        let plain = parse_subvolume_list(b"ID 256 gen 8 top level 5 path root\n").unwrap();
        assert_eq!((plain[0].parent, plain[0].top_level, plain[0].path.as_str()), (None, 5, "root"));
        // `-s -c -R`: creation generation and time, and a received subvolume.
        let snapshots = parse_subvolume_list(
            b"ID 260 gen 405 cgen 405 top level 259 otime 2024-04-12 09:10:11 received_uuid 2b8e6f3a-0c1d-4e5f-9a7b-3c4d5e6f7a8b path @/.snapshots/1/snapshot\n\n",
        )
        .unwrap();
        let s = &snapshots[0];
        assert_eq!((s.cgen, s.otime.as_deref()), (Some(405), Some("2024-04-12 09:10:11")));
        assert_eq!(s.received_uuid.as_deref(), Some("2b8e6f3a-0c1d-4e5f-9a7b-3c4d5e6f7a8b"));
        assert_eq!(s.path, "@/.snapshots/1/snapshot");
        // A path may hold blanks: everything after `path ` is the path.
        let spaced = parse_subvolume_list(b"ID 300 gen 9 top level 5 path my files\n").unwrap();
        assert_eq!(spaced[0].path, "my files");
        let err = parse_subvolume_list(b"ID 256 gen 8 top level 5 path home\nID x\n").unwrap_err();
        assert_eq!(err.line(), 2);
    }

    #[test]
    fn analyzer_detects_the_list_and_nothing_else() {
        assert_eq!(SubvolumeList.sniff(LIST, "out.txt"), 95);
        let analysis = SubvolumeList.analyze(&mut &LIST[..], Path::new("list")).unwrap();
        assert_eq!((analysis.records, analysis.unparsed_lines, analysis.lines), (5, 0, 5));
        let mut damaged = LIST.to_vec();
        damaged.extend_from_slice(b"ERROR: can't access '/mnt'\n");
        assert_eq!(SubvolumeList.sniff(&damaged, "x"), 0);
        let analysis = SubvolumeList.analyze(&mut &damaged[..], Path::new("list")).unwrap();
        assert_eq!((analysis.records, analysis.unparsed_lines), (5, 1));
    }
}
