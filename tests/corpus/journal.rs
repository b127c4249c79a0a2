//! The journal parsers (`logs::journal`) over real journals: journalctl 252's export,
//! JSON and short-precise renderings of one Fedora 37 boot, kjournald's and systemd's
//! export examples, SDDM journal excerpts, sosreport and anaconda `journal.log` files.

use std::io::{BufRead, BufReader, Cursor};
use std::path::Path;

use bootproof::logs::journal::export::{Entry, ExportParser};
use bootproof::logs::journal::{JournalExport, JournalJson, JournalShort};
use bootproof::logs::lines::Tally;
use bootproof::logs::{Analyzer, Finding, FindingKind, Severity};

use crate::{Check, Corpus};

pub fn checks() -> Vec<Check> {
    checks![
        binary_fields_of_the_kjournald_example,
        any_chunking_gives_the_same_entries,
        export_accounts_for_every_line,
        failed_units_agree_across_export_json_and_short,
        sddm_failures_in_every_journal_form,
        avc_denials_and_catalog_lines_in_short_journals,
        truncated_export_is_reported_not_lost,
        segfaults_from_kernel_lines,
    ]
}

const FEDORA37: &str =
    "journal/derived-by-journalctl-252/fedora37-rpi4-nortc-boot-4c708e1fd0744336be16f3931aa861fb";

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

/// Lines as `inspect` counts them: `\n`-terminated, plus a last unterminated one.
fn count_lines(data: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', data).count() as u64 + u64::from(!data.is_empty() && !data.ends_with(b"\n"))
}

fn accounts_for_every_line(tally: &Tally) -> bool {
    tally.records + tally.continuation_lines + tally.unparsed_lines == tally.lines
}

fn binary_fields_of_the_kjournald_example(c: &Corpus) {
    let data = c.read("journal/export/kjournald-journalexportformat_binary_example.export");
    let (entries, stray) = entries_in_chunks(&data, 1);
    assert_eq!(entries.len(), 1);
    assert_eq!(stray, 0);
    let fields = &entries[0].2;
    let value = |name: &[u8]| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    assert_eq!(value(b"_SELINUX_CONTEXT"), Some(b"unconfined\n".to_vec()));
    assert_eq!(value(b"MESSAGE"), Some(b"foo\nbar".to_vec()));
    assert_eq!(value(b"_PID"), Some(b"19336".to_vec()));
    assert_eq!(entries[0].1, count_lines(&data));
}

fn any_chunking_gives_the_same_entries(c: &Corpus) {
    let data = c.read(&format!("{FEDORA37}.export"));
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

fn export_accounts_for_every_line(c: &Corpus) {
    for name in [
        format!("{FEDORA37}.export"),
        "journal/export/kjournald-journalexportformat_example.export".into(),
        "journal/export/systemd-test-journal-data-journal-2.txt".into(),
        "journal/export/fuzz-seed-semisynthetic/systemd-fuzz-journal-remote-sample.txt".into(),
        "sddm/kjournald-rpi4-sddm.journal.export".into(),
    ] {
        let data = c.read(&name);
        let (tally, findings) = export_tally(&data);
        assert_eq!(tally.lines, count_lines(&data), "{name}");
        assert!(accounts_for_every_line(&tally), "{name}: {tally:?}");
        assert_eq!(tally.unparsed_lines, 0, "{name}");
        assert!(!findings.iter().any(|f| f.kind == FindingKind::TruncatedLog), "{name}");
    }
}

/// The same journal in three forms gives the same failures.
fn failed_units_agree_across_export_json_and_short(c: &Corpus) {
    let summaries = |findings: &[Finding]| -> Vec<(FindingKind, String)> {
        findings.iter().map(|f| (f.kind, f.summary.clone())).collect()
    };
    let (export, from_export) = export_tally(&c.read(&format!("{FEDORA37}.export")));
    let json_data = c.read(&format!("{FEDORA37}.json"));
    let (json, from_json) = tally_of(&|r| JournalJson.tally(r, Path::new("x.json")).unwrap(), &json_data);
    let short_data = c.read(&format!("{FEDORA37}.short-precise.txt"));
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
    assert!(accounts_for_every_line(&short));
    assert_eq!(short.records + short.continuation_lines, short.lines);
}

fn sddm_failures_in_every_journal_form(c: &Corpus) {
    for (name, analyzer) in [
        ("sddm/kjournald-rpi4-sddm.journal.export", &JournalExport as &dyn Analyzer),
        ("sddm/kjournald-rpi4-sddm.journal.json", &JournalJson),
        ("sddm/kjournald-rpi4-sddm.journal.short-precise.txt", &JournalShort),
    ] {
        let path = c.file(name);
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

fn avc_denials_and_catalog_lines_in_short_journals(c: &Corpus) {
    let data = c.read("anaconda/centos7-logssrv/journal.log");
    let denials = memchr::memmem::find_iter(&data, b"avc:  denied").count();
    let (tally, findings) = tally_of(&|r| JournalShort.tally(r, Path::new("journal.log")).unwrap(), &data);
    let avcs: Vec<_> = findings.iter().filter(|f| f.kind == FindingKind::AvcDenial).collect();
    assert_eq!(avcs.len(), denials);
    assert_eq!(avcs[0].time.as_deref(), Some("Jul 05 03:09:13"));
    assert!(avcs[0].summary.contains("in:imjournal"));
    assert!(accounts_for_every_line(&tally));

    let data = c.read("journal/short/rhcos-sosreport-journalctl_--no-pager_--catalog_--boot_-1");
    let (tally, _) = tally_of(&|r| JournalShort.tally(r, Path::new("rhcos")).unwrap(), &data);
    assert_eq!(tally.lines, count_lines(&data));
    assert_eq!(tally.unparsed_lines, 0, "{tally:?}");
    assert!(tally.continuation_lines > 0);
}

fn truncated_export_is_reported_not_lost(c: &Corpus) {
    let data = c.read("journal/export/kjournald-journalexportformat_example.export");
    let binary = c.read("journal/export/kjournald-journalexportformat_binary_example.export");
    let cut = memchr::memmem::find(&binary, b"foo\nbar").unwrap() + 2;
    let mut damaged = data.clone();
    damaged.extend_from_slice(&binary[..cut]);
    let (tally, findings) = export_tally(&damaged);
    assert_eq!(tally.records, 3);
    let truncated: Vec<_> = findings.iter().filter(|f| f.kind == FindingKind::TruncatedLog).collect();
    assert_eq!(truncated.len(), 1);
    assert_eq!(truncated[0].line, count_lines(&data) + 1);
    assert!(tally.unparsed_lines > 0);
    assert!(accounts_for_every_line(&tally), "{tally:?}");
    assert_eq!(tally.lines, count_lines(&damaged));

    // The last entry may lack its empty line, and its last field its newline.
    let mut unterminated = data.clone();
    unterminated.truncate(data.len() - 2);
    let (tally, findings) = export_tally(&unterminated);
    assert_eq!(tally.records, 2);
    assert!(findings.is_empty());
    assert_eq!(tally.unparsed_lines, 0);
}

/// The journalctl section quoted inside the Fedora 43 anaconda-tb has real segfault
/// lines; fed as a short journal, each is one finding.
fn segfaults_from_kernel_lines(c: &Corpus) {
    let tb = c.read("anaconda/fedora43-bonsai-failed/anaconda-tb-yj11b8m4");
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
