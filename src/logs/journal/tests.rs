//! Journal parsers against the real corpus, and against damaged and hostile input.

use std::io::{BufReader, Cursor};

use super::export::{ExportParser, MAX_FIELD};
use super::*;
use crate::logs::lines::testing::{corpus_file, count_lines};

const FEDORA37: &str =
    "journal/derived-by-journalctl-252/fedora37-rpi4-nortc-boot-4c708e1fd0744336be16f3931aa861fb";

fn read(relative: &str) -> Vec<u8> {
    std::fs::read(corpus_file(relative)).unwrap()
}

/// Entries of `data` fed in chunks of `size`, as owned (line, lines, fields) triples.
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

#[test]
fn binary_fields_of_the_kjournald_example() {
    let data = read("journal/export/kjournald-journalexportformat_binary_example.export");
    let (entries, stray) = entries_in_chunks(&data, 1);
    assert_eq!(entries.len(), 1);
    assert_eq!(stray, 0);
    let fields = &entries[0].2;
    let value = |name: &[u8]| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    assert_eq!(value(b"_SELINUX_CONTEXT"), Some(b"unconfined\n".to_vec()));
    assert_eq!(value(b"MESSAGE"), Some(b"foo\nbar".to_vec()));
    assert_eq!(value(b"_PID"), Some(b"19336".to_vec()));
    assert_eq!(
        entries[0].1,
        count_lines(&corpus_file("journal/export/kjournald-journalexportformat_binary_example.export"))
    );
}

#[test]
fn any_chunking_gives_the_same_entries() {
    let data = read(&format!("{FEDORA37}.export"));
    let (whole, _) = entries_in_chunks(&data, data.len());
    for size in [1, 61, 4096, 65536] {
        assert_eq!(entries_in_chunks(&data, size).0, whole, "chunks of {size}");
    }
    let cursors = memchr::memmem::find_iter(&data, b"\n__CURSOR=").count() + 1;
    assert_eq!(whole.len(), cursors);
    // WP_OBJECT holds pointer bytes, so journalctl wrote it in binary form.
    let wp = whole.iter().flat_map(|e| &e.2).find(|(n, _)| n == b"WP_OBJECT").unwrap();
    assert_eq!(wp.1.len(), 8);
    assert!(std::str::from_utf8(&wp.1).is_err());
}

#[test]
fn export_accounts_for_every_line() {
    for name in [
        format!("{FEDORA37}.export"),
        "journal/export/kjournald-journalexportformat_example.export".into(),
        "journal/export/systemd-test-journal-data-journal-2.txt".into(),
        "journal/export/fuzz-seed-semisynthetic/systemd-fuzz-journal-remote-sample.txt".into(),
        "sddm/kjournald-rpi4-sddm.journal.export".into(),
    ] {
        let path = corpus_file(&name);
        let (tally, findings) = export_tally(&std::fs::read(&path).unwrap());
        assert_eq!(tally.lines, count_lines(&path), "{name}");
        assert!(
            (tally.records + tally.continuation_lines + tally.unparsed_lines == tally.lines),
            "{name}: {tally:?}"
        );
        assert_eq!(tally.unparsed_lines, 0, "{name}");
        assert!(!findings.iter().any(|f| f.kind == FindingKind::TruncatedLog), "{name}");
    }
}

/// The same journal in three forms gives the same failures.
#[test]
fn failed_units_agree_across_export_json_and_short() {
    let summaries = |findings: &[Finding]| -> Vec<(FindingKind, String)> {
        findings.iter().map(|f| (f.kind, f.summary.clone())).collect()
    };
    let (export, from_export) = export_tally(&read(&format!("{FEDORA37}.export")));
    let json_data = read(&format!("{FEDORA37}.json"));
    let (json, from_json) = tally_of(&|r| JournalJson.tally(r, Path::new("x.json")).unwrap(), &json_data);
    let short_data = read(&format!("{FEDORA37}.short-precise.txt"));
    let (short, from_short) = tally_of(&|r| JournalShort.tally(r, Path::new("x.txt")).unwrap(), &short_data);

    let failed: Vec<_> = from_export
        .iter()
        .filter(|f| f.kind == FindingKind::FailedUnit && f.severity == Severity::Error)
        .collect();
    assert_eq!(failed.len(), 3);
    let dependency: Vec<_> = from_export
        .iter()
        .filter(|f| f.kind == FindingKind::FailedUnit && f.severity == Severity::Warning)
        .collect();
    assert_eq!(dependency.len(), 1);
    assert!(
        dependency[0]
            .summary
            .starts_with("unit org.gnome.SettingsDaemon.XSettings.service failed: Dependency failed for")
    );
    assert!(failed[0].summary.contains("gnome\\x2dkeyring\\x2dpkcs11-1650.scope"));
    assert!(failed[0].summary.contains("'resources'"));
    assert_eq!(failed[0].evidence.len(), 2);
    assert_eq!(failed[0].time.as_deref(), Some("2022-10-24T04:04:54.966974Z"));
    assert_eq!(summaries(&from_export), summaries(&from_json));
    assert_eq!(summaries(&from_export), summaries(&from_short));
    let times = |f: &[Finding]| f.iter().map(|f| f.time.clone()).collect::<Vec<_>>();
    assert_eq!(times(&from_export), times(&from_json));

    assert_eq!(json.records, export.records);
    assert_eq!(json.unparsed_lines, 0);
    assert_eq!(short.unparsed_lines, 0);
    assert!((short.records + short.continuation_lines + short.unparsed_lines == short.lines));
    assert_eq!(short.records + short.continuation_lines, short.lines);
}

#[test]
fn sddm_failures_in_every_journal_form() {
    for (name, analyzer) in [
        ("sddm/kjournald-rpi4-sddm.journal.export", &JournalExport as &dyn Analyzer),
        ("sddm/kjournald-rpi4-sddm.journal.json", &JournalJson),
        ("sddm/kjournald-rpi4-sddm.journal.short-precise.txt", &JournalShort),
    ] {
        let path = corpus_file(name);
        let mut reader = BufReader::new(std::fs::File::open(&path).unwrap());
        let analysis = analyzer.analyze(&mut reader, &path).unwrap();
        let sddm: Vec<&str> = analysis
            .findings
            .iter()
            .filter(|f| f.kind == FindingKind::DisplayManagerFailure)
            .map(|f| f.summary.as_str())
            .collect();
        assert!(sddm.contains(&"SDDM: Auth: sddm-helper crashed (exit code 15)"), "{name}: {sddm:?}");
        assert!(sddm.contains(&"SDDM: Display server failed to start. Exiting"), "{name}: {sddm:?}");
        assert!(sddm.contains(&"SDDM: Failed to read display number from pipe"), "{name}");
        let helper_exit =
            analysis.findings.iter().find(|f| f.summary == "SDDM: Auth: sddm-helper exited with 15").unwrap();
        assert_eq!(helper_exit.severity, Severity::Warning);
        assert_eq!(analysis.unparsed_lines, 0, "{name}");
    }
}

#[test]
fn avc_denials_and_catalog_lines_in_short_journals() {
    let path = corpus_file("anaconda/centos7-logssrv/journal.log");
    let data = std::fs::read(&path).unwrap();
    let denials = memchr::memmem::find_iter(&data, b"avc:  denied").count();
    let (tally, findings) = tally_of(&|r| JournalShort.tally(r, Path::new("journal.log")).unwrap(), &data);
    let avcs: Vec<_> = findings.iter().filter(|f| f.kind == FindingKind::AvcDenial).collect();
    assert_eq!(avcs.len(), denials);
    assert_eq!(avcs[0].time.as_deref(), Some("Jul 05 03:09:13"));
    assert!(avcs[0].summary.contains("in:imjournal"));
    assert!((tally.records + tally.continuation_lines + tally.unparsed_lines == tally.lines));

    let path = corpus_file("journal/short/rhcos-sosreport-journalctl_--no-pager_--catalog_--boot_-1");
    let data = std::fs::read(&path).unwrap();
    let (tally, _) = tally_of(&|r| JournalShort.tally(r, Path::new("rhcos")).unwrap(), &data);
    assert_eq!(tally.lines, count_lines(&path));
    assert_eq!(tally.unparsed_lines, 0, "{tally:?}");
    assert!(tally.continuation_lines > 0);
}

#[test]
fn truncated_export_is_reported_not_lost() {
    let data = read("journal/export/kjournald-journalexportformat_example.export");
    let binary = read("journal/export/kjournald-journalexportformat_binary_example.export");
    let cut = memchr::memmem::find(&binary, b"foo\nbar").unwrap() + 2;
    let mut damaged = data.clone();
    damaged.extend_from_slice(&binary[..cut]);
    let (tally, findings) = export_tally(&damaged);
    assert_eq!(tally.records, 3);
    let truncated: Vec<_> = findings.iter().filter(|f| f.kind == FindingKind::TruncatedLog).collect();
    assert_eq!(truncated.len(), 1);
    assert_eq!(truncated[0].line, count_lines_of(&data) + 1);
    assert!(tally.unparsed_lines > 0);
    assert!((tally.records + tally.continuation_lines + tally.unparsed_lines == tally.lines), "{tally:?}");
    assert_eq!(tally.lines, count_lines_of(&damaged));

    // The last entry may lack its empty line, and its last field its newline.
    let mut unterminated = data.clone();
    unterminated.truncate(data.len() - 2);
    let (tally, findings) = export_tally(&unterminated);
    assert_eq!(tally.records, 2);
    assert!(findings.is_empty());
    assert_eq!(tally.unparsed_lines, 0);
}

fn count_lines_of(data: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', data).count() as u64 + u64::from(!data.ends_with(b"\n"))
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

/// The journalctl section quoted inside the Fedora 43 anaconda-tb has real segfault
/// lines; fed as a short journal, each is one finding.
#[test]
fn segfaults_from_kernel_lines() {
    let tb = read("anaconda/fedora43-bonsai-failed/anaconda-tb-yj11b8m4");
    let kernel_lines: Vec<&[u8]> =
        tb.split(|&b| b == b'\n').filter(|l| memchr::memmem::find(l, b" kernel: ").is_some()).collect();
    let expected =
        kernel_lines.iter().filter(|l| memchr::memmem::find(l, b" segfault at ").is_some()).count();
    assert!(expected > 0);
    let journal = kernel_lines.join(&b'\n');
    let (tally, findings) = tally_of(&|r| JournalShort.tally(r, Path::new("journal")).unwrap(), &journal);
    assert_eq!(tally.unparsed_lines, 0);
    let segfaults: Vec<_> = findings.iter().filter(|f| f.kind == FindingKind::Segfault).collect();
    assert_eq!(segfaults.len(), expected);
    assert!(segfaults[0].summary.starts_with("lsof[21449]: segfault at 7ffcffd01718"));
    assert_eq!(segfaults[0].time.as_deref(), Some("Apr 19 09:06:24"));
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
