//! Journal parsers on fixtures written here (`tests/fixtures/logs/journal/`: one boot in
//! journalctl's export, JSON and short forms, see its README; binary export fields built
//! below), and on damaged and hostile input. The same checks over real journals are in
//! `tests/corpus`.

use std::io::{BufReader, Cursor};

use super::export::{ExportParser, MAX_FIELD};
use super::*;
use crate::logs::fixture;

const EXPORT: &[u8] = fixture!("journal/boot.export");
const JSON: &[u8] = fixture!("journal/boot.json");
const SHORT_PRECISE: &[u8] = fixture!("journal/boot.short-precise.txt");
const SHORT_MONOTONIC: &[u8] = fixture!("journal/boot.short-monotonic.txt");

/// Entries of `data` fed in chunks of `size`, as owned (line, lines, fields, truncated).
type OwnedEntry = (u64, u64, Vec<(Vec<u8>, Vec<u8>)>, bool);

fn entries_in_chunks(data: &[u8], size: usize) -> (Vec<OwnedEntry>, u64) {
    let own = |e: Entry| {
        let fields = e.fields.iter().map(|f| (f.name.to_vec(), f.value.to_vec())).collect();
        (e.line, e.lines, fields, e.truncated)
    };
    let mut parser = ExportParser::new();
    let mut out = Vec::new();
    for chunk in data.chunks(size) {
        out.extend(parser.feed(chunk).map(own));
    }
    out.extend(parser.finish().map(own));
    (out, parser.stray_lines())
}

/// A parser's tally function over a reader.
type Tallier<'a> = &'a dyn Fn(&mut dyn BufRead) -> (Tally, Vec<Finding>);

fn tally_of(analyzer: Tallier, data: &[u8]) -> (Tally, Vec<Finding>) {
    let mut reader = BufReader::new(Cursor::new(data.to_vec()));
    analyzer(&mut reader)
}

fn export_tally(data: &[u8]) -> (Tally, Vec<Finding>) {
    tally_of(&|r| JournalExport.tally(r, Path::new("x.export")).unwrap(), data)
}

fn json_tally(data: &[u8]) -> (Tally, Vec<Finding>) {
    tally_of(&|r| JournalJson.tally(r, Path::new("x.json")).unwrap(), data)
}

fn short_tally(data: &[u8]) -> (Tally, Vec<Finding>) {
    tally_of(&|r| JournalShort.tally(r, Path::new("x.txt")).unwrap(), data)
}

fn count_lines_of(data: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', data).count() as u64 + u64::from(!data.ends_with(b"\n"))
}

/// A field in the export format's binary form: `NAME\n`, u64 LE length, value, `\n`.
fn binary_field(name: &str, value: &[u8]) -> Vec<u8> {
    let mut field = format!("{name}\n").into_bytes();
    field.extend_from_slice(&(value.len() as u64).to_le_bytes());
    field.extend_from_slice(value);
    field.push(b'\n');
    field
}

/// One entry as systemd 252's journalctl exports it when values need the binary form:
/// a multi-line MESSAGE, an SELinux label ending in a newline, pointer bytes.
fn entry_with_binary_fields() -> Vec<u8> {
    let mut entry =
        b"__CURSOR=s=5d2c9a8f3e1b4c7d9a6e0f1b2c3d4e5f;i=1b07\n__REALTIME_TIMESTAMP=1712912455000000\n\
        _TRANSPORT=journal\nSYSLOG_IDENTIFIER=wireplumber\n"
            .to_vec();
    entry.extend(binary_field("_SELINUX_CONTEXT", b"system_u:system_r:xdm_t:s0\n"));
    entry.extend(binary_field("MESSAGE", b"first line\nsecond line"));
    entry.extend(binary_field("WP_OBJECT", &[0x90, 0x3c, 0xa1, 0xfe, 0x7f, 0, 0, 0]));
    entry.extend_from_slice(b"PRIORITY=4\n\n");
    entry
}

/// The first lines of the fixture's entries, found without the parser.
fn cursor_lines(export: &[u8]) -> Vec<u64> {
    let lines = export.split(|b| *b == b'\n');
    lines.enumerate().filter(|(_, l)| l.starts_with(b"__CURSOR=")).map(|(i, _)| i as u64 + 1).collect()
}

#[test]
fn export_entries_fields_lines_and_accounting() {
    let (entries, stray) = entries_in_chunks(EXPORT, EXPORT.len());
    assert_eq!(stray, 0);
    assert_eq!(entries.iter().map(|e| e.0).collect::<Vec<_>>(), cursor_lines(EXPORT));
    assert_eq!(entries.len(), 9);
    // Every line belongs to one entry; each ends with its empty line.
    assert_eq!(entries.iter().map(|e| e.1).sum::<u64>(), count_lines_of(EXPORT));
    let sddm = &entries[4].2;
    let value = |name: &[u8]| sddm.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice());
    assert_eq!(value(b"SYSLOG_IDENTIFIER"), Some(&b"sddm"[..]));
    assert_eq!(value(b"MESSAGE"), Some(&b"Display server failed to start. Exiting"[..]));
    assert_eq!(value(b"_SOURCE_REALTIME_TIMESTAMP"), Some(&b"1712912403002315"[..]));
    assert!(entries.iter().all(|e| !e.3), "no entry is cut short");

    let (tally, findings) = export_tally(EXPORT);
    let lines = count_lines_of(EXPORT);
    assert_eq!(tally, Tally { lines, records: 9, continuation_lines: lines - 9, unparsed_lines: 0 });
    assert!(!findings.iter().any(|f| f.kind == FindingKind::TruncatedLog));
}

#[test]
fn binary_fields_in_any_chunking() {
    let mut data = EXPORT.to_vec();
    data.extend(entry_with_binary_fields());
    let (whole, _) = entries_in_chunks(&data, data.len());
    for size in [1, 7, 61, 4096] {
        assert_eq!(entries_in_chunks(&data, size).0, whole, "chunks of {size}");
    }
    let last = whole.last().unwrap();
    let value = |name: &[u8]| last.2.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    assert_eq!(value(b"_SELINUX_CONTEXT"), Some(b"system_u:system_r:xdm_t:s0\n".to_vec()));
    assert_eq!(value(b"MESSAGE"), Some(b"first line\nsecond line".to_vec()));
    assert_eq!(value(b"WP_OBJECT"), Some(vec![0x90, 0x3c, 0xa1, 0xfe, 0x7f, 0, 0, 0]));
    assert_eq!(value(b"PRIORITY"), Some(b"4".to_vec()));
    // The entry's first line is the one after the fixture's last; a value's own
    // newlines are lines of the file too.
    assert_eq!(last.0, count_lines_of(EXPORT) + 1);
    assert_eq!(whole.iter().map(|e| e.1).sum::<u64>(), count_lines_of(&data));
    let (tally, _) = export_tally(&data);
    assert_eq!((tally.records, tally.unparsed_lines), (10, 0));
}

/// What each form of the fixture boot must report, in order: (kind, severity, summary).
fn expected_findings() -> Vec<(FindingKind, Severity, &'static str)> {
    vec![
        (
            FindingKind::AvcDenial,
            Severity::Error,
            "SELinux denied { read } to sddm-greeter (pid 812): system_u:system_r:xdm_t:s0-s0:c0.c1023 \
             -> system_u:object_r:user_home_t:s0 tclass=file",
        ),
        (
            FindingKind::Segfault,
            Severity::Warning,
            "sddm-greeter[812]: segfault at 0 ip 00007f3c2a1b4e10 sp 00007ffd5c3e9a40 error 4 in \
             libQt5Core.so.5.15.13[7f3c2a000000+2ff000] likely on CPU 0 (core 0, socket 0)",
        ),
        (
            FindingKind::DisplayManagerFailure,
            Severity::Error,
            "SDDM: Display server failed to start. Exiting",
        ),
        (
            FindingKind::FailedUnit,
            Severity::Error,
            "unit sddm.service failed: sddm.service: Failed with result 'exit-code'.",
        ),
        (
            FindingKind::FailedUnit,
            Severity::Warning,
            "unit graphical.target failed: Dependency failed for graphical.target - Graphical Interface.",
        ),
    ]
}

fn what(findings: &[Finding]) -> Vec<(FindingKind, Severity, &str)> {
    findings.iter().map(|f| (f.kind, f.severity, f.summary.as_str())).collect()
}

/// The same boot in every form gives the same failures, at its own lines and times.
#[test]
fn every_form_of_one_boot_gives_the_same_findings() {
    let (export, from_export) = export_tally(EXPORT);
    let (json, from_json) = json_tally(JSON);
    let (short, from_short) = short_tally(SHORT_PRECISE);
    let (monotonic, from_monotonic) = short_tally(SHORT_MONOTONIC);
    for findings in [&from_export, &from_json, &from_short, &from_monotonic] {
        assert_eq!(what(findings), expected_findings());
    }
    // The failed unit's two messages are one finding.
    assert_eq!(from_export[3].evidence.len(), 2);
    assert_eq!(from_short[3].evidence.len(), 2);

    // Export and JSON say when the message was made (`_SOURCE_REALTIME_TIMESTAMP`, else
    // journald's own time), in UTC; short forms keep their text.
    let times = |f: &[Finding]| f.iter().map(|f| f.time.clone().unwrap()).collect::<Vec<_>>();
    let utc = [
        "2024-04-12T09:00:00.770910Z",
        "2024-04-12T09:00:02.305118Z",
        "2024-04-12T09:00:03.002315Z",
        "2024-04-12T09:00:03.010169Z",
        "2024-04-12T09:00:03.010943Z",
    ];
    assert_eq!(times(&from_export), utc);
    assert_eq!(times(&from_json), utc);
    assert_eq!(times(&from_short)[0], "Apr 12 09:00:00.770910");
    assert_eq!(times(&from_monotonic)[0], "[   12.772010]");

    // An entry is one line of JSON and of short text, and many lines of export.
    let entry_lines: Vec<u64> = [3, 4, 5, 7, 9].into_iter().map(|n| cursor_lines(EXPORT)[n - 1]).collect();
    assert_eq!(from_export.iter().map(|f| f.line).collect::<Vec<_>>(), entry_lines);
    assert_eq!(from_json.iter().map(|f| f.line).collect::<Vec<_>>(), [3, 4, 5, 7, 9]);
    assert_eq!(from_short.iter().map(|f| f.line).collect::<Vec<_>>(), [3, 4, 5, 7, 9]);
    for tally in [json, short, monotonic] {
        assert_eq!(tally, Tally { lines: 9, records: 9, continuation_lines: 0, unparsed_lines: 0 });
    }
    assert_eq!(export.records, 9);
}

#[test]
fn each_form_is_recognised_by_its_own_analyzer() {
    assert_eq!(JournalExport.sniff(EXPORT, "x"), 95);
    assert_eq!(JournalJson.sniff(JSON, "x"), 95);
    for short in [SHORT_PRECISE, SHORT_MONOTONIC] {
        assert!(JournalShort.sniff(short, "x") >= 90);
        assert_eq!(JournalExport.sniff(short, "x"), 0);
        assert_eq!(JournalJson.sniff(short, "x"), 0);
    }
    assert_eq!(JournalJson.sniff(EXPORT, "x"), 0);
    assert!(JournalShort.sniff(EXPORT, "x") < 40);
    // A JSON object without any journal field is some other JSON.
    assert_eq!(JournalJson.sniff(b"{\"blockdevices\": []}\n", "x"), 0);
}

#[test]
fn json_lines_that_are_not_entries_are_unparsed() {
    let mut data = JSON.to_vec();
    data.extend_from_slice(b"not json\n{\"MESSAGE\":[300]}\n");
    // A non-UTF-8 message arrives as its bytes, a repeated field as an array.
    data.extend_from_slice(
        b"{\"__REALTIME_TIMESTAMP\":\"1712912460000000\",\"SYSLOG_IDENTIFIER\":[\"sddm\",\"sddm\"],\
          \"MESSAGE\":[83,68,68,77,58,32,71,114,101,101,116,101,114,32,115,101,115,115,105,111,110,32,102,97,105,108,101,100,32,116,111,32,115,116,97,114,116,255]}\n",
    );
    let (tally, findings) = json_tally(&data);
    assert_eq!(tally, Tally { lines: 12, records: 10, continuation_lines: 0, unparsed_lines: 2 });
    let greeter = findings.last().unwrap();
    assert_eq!(
        (greeter.kind, greeter.severity, greeter.line),
        (FindingKind::DisplayManagerFailure, Severity::Error, 12)
    );
    assert_eq!(greeter.time.as_deref(), Some("2024-04-12T09:01:00.000000Z"));
}

/// journalctl's own lines (`-- ... --`, `--catalog` explanations) are records; an
/// indented line continues a message only right after one.
#[test]
fn short_markers_continuations_and_strays() {
    // Written in journalctl 252's short form, with --catalog.
    let short =
        b"-- Journal begins at Thu 2024-04-11 20:00:01 UTC, ends at Fri 2024-04-12 09:00:03 UTC. --\n\
        Apr 12 08:59:48 fedora kernel: Linux version 6.8.5-301.fc40.x86_64\n\
        Apr 12 09:00:01 fedora python3[1702]: Traceback (most recent call last):\n\
        \x20                                       File \"/usr/bin/tool\", line 3, in <module>\n\
        \x20                                     KeyError: 'x'\n\
        -- Boot 4c708e1fd0744336be16f3931aa861fb --\n\
        \x20 an indented line after a marker\n\
        Apr 12 09:05:00 fedora systemd[1]: Started sshd.service - OpenSSH server daemon.\n\
        -- Subject: A start job for unit sshd.service has finished successfully\n\
        -- Defined-By: systemd\n\
        this is not a journal line\n\
        -- Reboot --\n";
    let (tally, findings) = short_tally(short);
    assert_eq!(tally, Tally { lines: 12, records: 8, continuation_lines: 2, unparsed_lines: 2 });
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn truncated_export_is_reported_not_lost() {
    let binary = entry_with_binary_fields();
    let cut = memchr::memmem::find(&binary, b"first line\nsec").unwrap() + 14;
    let mut damaged = EXPORT.to_vec();
    damaged.extend_from_slice(&binary[..cut]);
    let (tally, findings) = export_tally(&damaged);
    assert_eq!(tally.records, 10);
    let truncated: Vec<_> = findings.iter().filter(|f| f.kind == FindingKind::TruncatedLog).collect();
    assert_eq!(truncated.len(), 1);
    assert_eq!(truncated[0].line, count_lines_of(EXPORT) + 1);
    assert!(tally.unparsed_lines > 0);
    assert_eq!(tally.records + tally.continuation_lines + tally.unparsed_lines, tally.lines);
    assert_eq!(tally.lines, count_lines_of(&damaged));

    // The last entry may lack its empty line, and its last field its newline.
    let unterminated = &EXPORT[..EXPORT.len() - 2];
    let (tally, findings) = export_tally(unterminated);
    assert_eq!(tally.records, 9);
    assert!(!findings.iter().any(|f| f.kind == FindingKind::TruncatedLog));
    assert_eq!(tally.unparsed_lines, 0);
}

/// A kernel message longer than the old 64 KiB line cap is still a record: lines are cut
/// at `lines::MAX_LINE` (1 MiB) for every parser.
#[test]
fn a_long_short_line_is_still_a_record() {
    let mut line = b"Apr 12 09:00:04.000000 fedora kernel: ".to_vec();
    line.extend(std::iter::repeat_n(b'x', 200 * 1024));
    line.push(b'\n');
    let (tally, _) = short_tally(&line);
    assert_eq!((tally.records, tally.unparsed_lines), (1, 0));
}

#[test]
fn oversize_binary_value_is_skipped_in_bounded_memory() {
    let value_len = 3 * MAX_FIELD;
    let mut data = b"__CURSOR=s=1\nMESSAGE=before\nCOREDUMP\n".to_vec();
    data.extend_from_slice(&(value_len as u64).to_le_bytes());
    data.extend(std::iter::repeat_n(b"ab\n".iter().copied(), value_len / 3).flatten());
    data.extend_from_slice(b"\nMESSAGE_ID=x\n\nMESSAGE=next\n\n");
    let mut parser = ExportParser::new();
    let mut seen = Vec::new();
    for chunk in data.chunks(64 * 1024) {
        for e in parser.feed(chunk) {
            seen.push((
                e.get(b"COREDUMP").map(<[u8]>::len),
                e.get(b"MESSAGE_ID").is_some(),
                e.lines,
                e.unparsed_lines,
            ));
        }
        assert!(parser.buffered() < 2 * MAX_FIELD);
    }
    seen.extend(
        parser.finish().map(|e| (e.get(b"COREDUMP").map(<[u8]>::len), false, e.lines, e.unparsed_lines)),
    );
    let value_lines = (value_len / 3) as u64;
    assert_eq!(seen, vec![(Some(0), true, 6 + value_lines, value_lines), (None, false, 2, 0)]);
}

#[test]
fn hostile_input_is_counted_not_trusted() {
    // A 100 MB line without a newline, streamed: memory stays bounded.
    let mut parser = ExportParser::new();
    let chunk = vec![b'A'; 1 << 20];
    for _ in 0..100 {
        assert_eq!(parser.feed(&chunk).count(), 0);
        assert!(parser.buffered() < 8 * MAX_FIELD);
    }
    let last: Vec<_> = parser.finish().map(|e| (e.lines, e.unparsed_lines, e.fields.len())).collect();
    assert_eq!(last, vec![(1, 1, 0)]);

    // Garbage then a binary-looking length that would swallow the rest.
    let (tally, _) = export_tally(b"hello\nMESSAGE=a text that is long enough\n\n");
    assert_eq!(tally.records, 1);
    assert_eq!(tally.unparsed_lines, 1);

    // Binary data, non-UTF-8 lines, an empty file.
    let noise: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    for data in [&noise[..], b"\xff\xfe\n\x00\n", b""] {
        let (tally, _) = export_tally(data);
        assert!(
            (tally.records + tally.continuation_lines + tally.unparsed_lines == tally.lines),
            "{tally:?}"
        );
        assert_eq!(tally.lines, if data.is_empty() { 0 } else { count_lines_of(data) });
        let json = tally_of(&|r| JournalJson.tally(r, Path::new("j")).unwrap(), data).0;
        assert_eq!(json.records, 0);
        let short = tally_of(&|r| JournalShort.tally(r, Path::new("s")).unwrap(), data).0;
        assert_eq!(short.records, 0);
    }
}

/// Found by fuzzing: a binary length just under the plausibility cap, in a stream that
/// ends long before the value does; the last line was counted twice.
#[test]
fn stream_ending_inside_a_dropped_value_counts_its_lines_once() {
    let mut data = b"__CURSOR=s=1\nMESSAGE\n".to_vec();
    data.extend_from_slice(&0x2d00_0007u64.to_le_bytes());
    data.extend_from_slice(b"foo\nbar\nCODE_FILE=x\n\n");
    for chunk in [1, 5, data.len()] {
        let (entries, stray) = entries_in_chunks(&data, chunk);
        let lines: u64 = entries.iter().map(|e| e.1).sum::<u64>() + stray;
        assert_eq!(lines, count_lines_of(&data), "chunks of {chunk}");
        assert!(entries.last().unwrap().3, "the entry is truncated");
    }
}

/// A line over the cap is not understood whether it arrives whole or in pieces, and a
/// "name" over journald's 64 bytes is no field name.
#[test]
fn long_lines_are_judged_the_same_in_any_chunking() {
    let mut data = b"MESSAGE=".to_vec();
    data.extend(std::iter::repeat_n(b'x', 2 * MAX_FIELD));
    data.extend_from_slice(b"\nA=b\n\n");
    data.extend(std::iter::repeat_n(b'N', 65));
    data.extend_from_slice(b"=v\nB=c\n\n");
    let (whole, _) = entries_in_chunks(&data, data.len());
    assert_eq!(entries_in_chunks(&data, 64 * 1024).0, whole);
    let summary: Vec<(u64, usize)> = whole.iter().map(|e| (e.1, e.2.len())).collect();
    assert_eq!(summary, vec![(3, 1), (3, 1)]);
    let (tally, _) = export_tally(&data);
    assert_eq!((tally.records, tally.unparsed_lines, tally.lines), (2, 2, 6));
}

/// Found by fuzzing: a binary length whose bytes hold 0x0a is a line break of the
/// file too; it was not counted.
#[test]
fn newlines_inside_a_binary_length_are_lines() {
    let mut data = b"__CURSOR=s=1\n_SELINUX_CONTEXT\n".to_vec();
    data.extend_from_slice(&10u64.to_le_bytes());
    data.extend_from_slice(b"unconfined\n\nCOREDUMP\n");
    // Oversize, with a 0x0a among its length bytes, and cut short by the stream's end.
    data.extend_from_slice(&(0x0a00_0000u64).to_le_bytes());
    data.extend_from_slice(b"core\n");
    for chunk in [1, 7, data.len()] {
        let (entries, stray) = entries_in_chunks(&data, chunk);
        let lines: u64 = entries.iter().map(|e| e.1).sum::<u64>() + stray;
        assert_eq!(lines, count_lines_of(&data), "chunks of {chunk}");
        assert_eq!(entries[0].2[1].1, b"unconfined");
    }
}
