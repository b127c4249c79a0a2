//! The installer-log analyzers over the real corpus.

use std::io::BufReader;
use std::path::Path;

use super::corpus;
use crate::logs::{Analysis, FindingKind, LogKind, Severity};

/// Every installer file of the corpus this module must recognise, with its kind.
const FILES: &[(&str, LogKind)] = &[
    ("centos6-webskitters/Xorg.9.log", LogKind::XorgLog),
    ("centos6-webskitters/anaconda.log", LogKind::AnacondaLog),
    ("centos6-webskitters/anaconda.program.log", LogKind::ProgramLog),
    ("centos6-webskitters/anaconda.storage.log", LogKind::StorageLog),
    ("centos6-webskitters/anaconda.yum.log", LogKind::PackagingLog),
    ("centos7-logssrv/X.log", LogKind::XorgLog),
    ("centos7-logssrv/anaconda.log", LogKind::AnacondaLog),
    ("centos7-logssrv/journal.log", LogKind::JournalShort),
    ("centos7-logssrv/packaging.log", LogKind::PackagingLog),
    ("centos7-logssrv/program.log", LogKind::ProgramLog),
    ("centos7-logssrv/storage.log", LogKind::StorageLog),
    ("centos7-logssrv/syslog", LogKind::Syslog),
    ("fedora10-thebetjr/anaconda.log", LogKind::AnacondaLog),
    ("fedora10-thebetjr/anaconda.syslog", LogKind::Syslog),
    ("fedora43-bonsai-failed/anaconda-tb-yj11b8m4", LogKind::AnacondaTraceback),
    ("fedora43-bonsai-failed/anaconda.log", LogKind::AnacondaLog),
    ("fedora43-bonsai-failed/dnf.log", LogKind::DnfLog),
    ("fedora43-bonsai-failed/ks-script-2rkuvb8w.log", LogKind::KsScriptLog),
    ("fedora43-bonsai-failed/ks-script-ve0l83_b.log", LogKind::KsScriptLog),
    ("fedora43-bonsai-failed/packaging.log", LogKind::PackagingLog),
    ("fedora43-bonsai-failed/program.log", LogKind::ProgramLog),
    ("fedora43-bonsai-failed/storage.log", LogKind::StorageLog),
    ("rocky9.1-paperdragon/anaconda.log", LogKind::AnacondaLog),
    ("rocky9.1-paperdragon/dnf.librepo.log", LogKind::DnfLibrepoLog),
    ("rocky9.1-paperdragon/hawkey.log", LogKind::DnfLog),
    ("rocky9.1-paperdragon/journal.log", LogKind::JournalShort),
    ("rocky9.1-paperdragon/ks-script-6p_ia1t7.log", LogKind::KsScriptLog),
    ("rocky9.1-paperdragon/ks-script-vbyvgaxc.log", LogKind::KsScriptLog),
    ("rocky9.1-paperdragon/packaging.log", LogKind::PackagingLog),
    ("rocky9.1-paperdragon/program.log", LogKind::ProgramLog),
    ("rocky9.1-paperdragon/storage.log", LogKind::StorageLog),
    ("rocky9.1-paperdragon/syslog", LogKind::Syslog),
];

fn head(path: &Path) -> Vec<u8> {
    let data = std::fs::read(path).unwrap();
    data[..data.len().min(64 * 1024)].to_vec()
}

fn best(path: &Path, name: &str) -> (LogKind, u8) {
    let head = head(path);
    super::analyzers()
        .iter()
        .map(|a| (a.kind(), a.sniff(&head, name)))
        .max_by_key(|(_, score)| *score)
        .unwrap()
}

fn analyze(relative: &str) -> Analysis {
    let path = corpus::file(&format!("anaconda/{relative}"));
    let name = path.file_name().unwrap().to_str().unwrap().to_owned();
    let (kind, _) = best(&path, &name);
    let analyzer = super::analyzers().into_iter().find(|a| a.kind() == kind).unwrap();
    let mut input = BufReader::new(std::fs::File::open(&path).unwrap());
    analyzer.analyze(&mut input, &path).unwrap()
}

/// Lines as `wc -l` counts them, plus a last line without a newline.
fn count_lines(data: &[u8]) -> u64 {
    let newlines = data.iter().filter(|b| **b == b'\n').count() as u64;
    newlines + u64::from(!data.is_empty() && !data.ends_with(b"\n"))
}

#[test]
fn every_installer_file_is_detected_as_its_kind() {
    for (relative, expected) in FILES {
        let path = corpus::file(&format!("anaconda/{relative}"));
        let name = path.file_name().unwrap().to_str().unwrap();
        let (kind, score) = best(&path, name);
        assert_eq!(kind, *expected, "{relative} (score {score})");
        assert!(score >= 60, "{relative}: weak score {score}");
        // The content alone, under a neutral name, still says what most files are.
        if !matches!(expected, LogKind::KsScriptLog | LogKind::JournalShort) {
            let (kind, _) = best(&path, "captured.txt");
            assert_eq!(kind, *expected, "{relative} without its name");
        }
    }
}

#[test]
fn every_line_is_accounted_for() {
    for (relative, kind) in FILES {
        let data = corpus::read(&format!("anaconda/{relative}"));
        let analysis = analyze(relative);
        assert_eq!(analysis.lines, count_lines(&data), "{relative}");
        if *kind == LogKind::AnacondaTraceback {
            continue;
        }
        let (tally, _) = super::read_records(*kind, &mut &data[..], Path::new(relative)).unwrap();
        assert_eq!(
            tally.records + tally.continuation_lines + tally.unparsed_lines,
            tally.lines,
            "{relative}"
        );
        assert_eq!(tally.records, analysis.records, "{relative}");
        // Unparsed lines are only those before the first record.
        assert!(tally.unparsed_lines <= 2, "{relative}: {tally:?}");
    }
}

#[test]
fn nothing_error_level_in_the_successful_rocky_install() {
    for (relative, _) in FILES.iter().filter(|(f, _)| f.starts_with("rocky9.1")) {
        for finding in analyze(relative).findings {
            assert!(finding.severity < Severity::Error, "{relative}: {finding:?}");
        }
    }
}

#[test]
fn fedora43_crash_dump_names_the_payload_failure_and_the_raising_frame() {
    let path = corpus::file("anaconda/fedora43-bonsai-failed/anaconda-tb-yj11b8m4");
    let mut input = BufReader::new(std::fs::File::open(&path).unwrap());
    let dump = super::dump::parse(&mut input, &path).unwrap();
    assert_eq!(dump.version.as_deref(), Some("43.44"));
    assert_eq!(dump.traceback_line, 2);
    assert!(dump.traceback.most_recent_first);
    assert_eq!(dump.traceback.frames.len(), 7);
    assert_eq!(
        dump.traceback.exception_type(),
        Some("pyanaconda.modules.common.errors.installation.PayloadInstallationError")
    );
    let innermost = dump.traceback.innermost().unwrap();
    assert_eq!(
        (innermost.file.as_str(), innermost.line, innermost.function.as_str()),
        ("/usr/lib/python3.14/site-packages/dasbus/client/handler.py", 509, "_handle_method_error")
    );
    let sections: Vec<_> = dump.sections.iter().map(|s| (s.name.as_str(), s.line, s.kind)).collect();
    for expected in [
        ("journalctl", 304, Some(LogKind::JournalShort)),
        ("/tmp/anaconda.log", 14412, Some(LogKind::AnacondaLog)),
        ("/tmp/packaging.log", 14580, Some(LogKind::PackagingLog)),
        ("/tmp/program.log", 17047, Some(LogKind::ProgramLog)),
        ("/tmp/storage.log", 17069, Some(LogKind::StorageLog)),
        ("/proc/cmdline", 17657, None),
    ] {
        assert!(sections.contains(&expected), "{expected:?} not in {sections:?}");
    }

    let crash = &dump.findings[0];
    assert_eq!(
        (crash.kind, crash.severity, crash.line),
        (FindingKind::InstallerTraceback, Severity::Critical, 2)
    );
    assert!(crash.summary.contains("PayloadInstallationError: Failed to download"), "{}", crash.summary);
    assert!(crash.summary.contains("handler.py:509 in _handle_method_error"), "{}", crash.summary);
    // The same crash, logged again in the anaconda.log section, is not a second finding.
    let same = dump.findings.iter().filter(|f| f.summary.starts_with(&crash.summary)).count();
    assert_eq!(same, 1);

    let download = dump
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::PayloadError && f.summary.ends_with("[in /tmp/packaging.log]"))
        .expect("payload error from the packaging.log section");
    assert_eq!((download.line, download.severity), (16983, Severity::Error));
    assert!(download.summary.contains("glibc-all-langpacks"), "{}", download.summary);
    // The three packages that failed are one finding with three lines of evidence.
    assert_eq!(download.evidence.len(), 3);

    // The download failure is also in the journal section: reported once, from the file.
    let payload = dump.findings.iter().filter(|f| f.kind == FindingKind::PayloadError).count();
    assert_eq!(payload, 1);
    let lines: Vec<_> =
        dump.findings.iter().filter(|f| f.kind == FindingKind::InstallerTraceback).map(|f| f.line).collect();
    // The crash; the download task's traceback from packaging.log rather than from the
    // journal; two unmount failures of earlier attempts that only the journal kept.
    assert_eq!(lines, [2, 16987, 7498, 7592], "{:#?}", dump.findings);
    // The storage section's FCoE probe errors are known to be harmless.
    assert!(!dump.findings.iter().any(|f| f.kind == FindingKind::StorageError));
    // Through the Analyzer, the same findings and every line of the dump.
    let analysis = analyze("fedora43-bonsai-failed/anaconda-tb-yj11b8m4");
    assert_eq!(analysis.findings, dump.findings);
    assert_eq!(analysis.unparsed_lines, 0);
}

#[test]
fn command_failures_that_matter_are_found_and_probes_are_not() {
    let program = analyze("centos7-logssrv/program.log");
    let failed: Vec<_> = program.findings.iter().filter(|f| f.kind == FindingKind::CommandFailed).collect();
    // multipath -c, fcoe_edd.sh, spice-vdagent and checks of the live image are probes.
    for finding in &failed {
        assert!(!finding.summary.contains("multipath"), "{finding:?}");
        assert!(!finding.summary.contains("/dev/loop"), "{finding:?}");
    }
    let rocky = analyze("rocky9.1-paperdragon/storage.log");
    assert!(rocky.findings.is_empty(), "{:?}", rocky.findings);
}

#[test]
fn tracebacks_inside_line_logs_carry_exception_and_frame() {
    let data = corpus::read("anaconda/fedora43-bonsai-failed/anaconda-tb-yj11b8m4");
    // The anaconda.log section alone, as if it were the file /tmp/anaconda.log.
    let start = data.windows(19).position(|w| w == b"\n/tmp/anaconda.log:").unwrap() + 20;
    let end = data.windows(20).position(|w| w == b"\n/tmp/packaging.log:").unwrap();
    let section = &data[start..end];
    let (_, findings) =
        super::read_records(LogKind::AnacondaLog, &mut &section[..], Path::new("anaconda.log")).unwrap();
    let tb = findings
        .iter()
        .find(|f| f.kind == FindingKind::InstallerTraceback)
        .expect("the CRT exception traceback");
    assert!(tb.summary.contains("PayloadInstallationError"), "{}", tb.summary);
    assert!(tb.summary.contains("handler.py:509 in _handle_method_error"), "{}", tb.summary);
    assert_eq!(tb.time.as_deref(), Some("09:24:09,912"));

    // CentOS 7: NetworkManager's harmless debug traceback is not the installer's.
    let syslog = analyze("centos7-logssrv/syslog");
    assert!(!syslog.findings.iter().any(|f| f.kind == FindingKind::InstallerTraceback));
}

#[test]
fn clock_jumping_backwards_keeps_every_record() {
    // centos6 anaconda.log: 18:56:43 is followed by 00:26:43 after setuptime.
    let analysis = analyze("centos6-webskitters/anaconda.log");
    let data = corpus::read("anaconda/centos6-webskitters/anaconda.log");
    let timed =
        data.split(|b| *b == b'\n').filter(|l| super::grammar::anaconda_entry(l).is_some()).count() as u64;
    assert_eq!(analysis.records, timed);
    assert!(memchr::memmem::find(&data, b"00:26:43,094 WARNING").is_some());
}

/// All analyzers of this branch: installer logs and tool outputs.
fn all_mine() -> Vec<Box<dyn crate::logs::Analyzer>> {
    let mut all = super::analyzers();
    all.extend(crate::logs::sysctl::analyzers());
    all.extend(crate::logs::btrfs::analyzers());
    all.extend(crate::logs::luks::analyzers());
    all.extend(crate::logs::lsblk::analyzers());
    all
}

#[test]
fn tool_outputs_and_installer_logs_are_told_apart_by_content() {
    let tools: &[(&str, LogKind)] = &[
        ("sysctl/rhcos-sosreport-sysctl_-a", LogKind::Sysctl),
        (
            "btrfs/extracted-from-libstorage-ng-btrfs1-mockup.btrfs_subvolume_list_-a_-puq.txt",
            LogKind::BtrfsSubvolumeList,
        ),
        ("luks/leapp-luksDump_nvme0n1p3_luks1.txt", LogKind::LuksDump),
        ("luks/leapp-luksDump_nvme0n1p3_luks2.txt", LogKind::LuksDump),
        ("lsblk/rhcos-sosreport-lsblk_-t", LogKind::Lsblk),
        ("lsblk/util-linux-lsblk-simple-lvm-topo", LogKind::Lsblk),
        ("lsblk/derived-by-lsblk-2.38.1/util-linux-dump-simple-nvme.lsblk-J.json", LogKind::LsblkJson),
    ];
    let installer = FILES.iter().map(|(f, k)| (format!("anaconda/{f}"), *k));
    let everything = tools.iter().map(|(f, k)| (f.to_string(), *k)).chain(installer);
    for (relative, expected) in everything {
        let path = corpus::file(&relative);
        let name = path.file_name().unwrap().to_str().unwrap();
        let head = head(&path);
        let mut scores: Vec<_> = all_mine().iter().map(|a| (a.sniff(&head, name), a.kind())).collect();
        scores.sort();
        let (best, kind) = scores.pop().unwrap();
        let (runner_up, other) = scores.pop().unwrap();
        assert_eq!(kind, expected, "{relative}");
        assert!(best > runner_up, "{relative}: tie between {kind:?} and {other:?} at {best}");
    }
}

/// Inputs no real log has: none may panic, each line is still accounted for.
fn bad_inputs() -> Vec<(&'static str, Vec<u8>, u64)> {
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let binary_lines = binary.iter().filter(|b| **b == b'\n').count() as u64 + 1;
    vec![
        ("empty", Vec::new(), 0),
        ("binary", binary, binary_lines),
        (
            "non-UTF-8 line",
            b"19:31:43,453 ERR program: \xff\xfe bad\n\xc3\x28\n".to_vec(),
            2,
        ),
        (
            "truncated mid-line",
            b"09:24:09,912 CRT exception: Traceback (most recent call last):\n  File \"/x.py\", line 1, in f\n    rai".to_vec(),
            3,
        ),
        (
            "truncated dump",
            b"anaconda 43.44 exception report\nTraceback (most recent call first):\n  File \"/x.py\", line".to_vec(),
            3,
        ),
    ]
}

#[test]
fn bad_input_is_accounted_for_without_panicking() {
    for analyzer in all_mine() {
        for (what, data, lines) in bad_inputs() {
            let kind = analyzer.kind();
            match analyzer.analyze(&mut &data[..], Path::new(what)) {
                Ok(a) => {
                    assert_eq!(a.lines, lines, "{kind:?} on {what}");
                    assert!(a.records + a.unparsed_lines <= a.lines, "{kind:?} on {what}");
                }
                // Only a JSON document can be wrong as a whole; the error names a line.
                Err(crate::logs::LogError::Malformed { line, .. }) => {
                    assert_eq!(kind, LogKind::LsblkJson, "{what}");
                    assert!(line <= lines.max(1), "{what}");
                }
                Err(e) => panic!("{kind:?} on {what}: {e}"),
            }
            assert!(analyzer.sniff(&data, "x") < 90 || what.starts_with("truncated"), "{kind:?} {what}");
        }
    }
}

#[test]
fn a_100_mib_line_without_newline_is_one_unparsed_line() {
    use std::io::Read;
    for analyzer in all_mine().iter().filter(|a| a.kind() != LogKind::LsblkJson) {
        let endless = std::io::repeat(b'x').take(100 << 20);
        let mut input = BufReader::new(endless);
        let a = analyzer.analyze(&mut input, Path::new("huge")).unwrap();
        assert_eq!((a.lines, a.unparsed_lines), (1, 1), "{:?}", analyzer.kind());
    }
    // The JSON reader stops at its cap instead of growing.
    let endless = std::io::repeat(b' ').take(100 << 20);
    let err = crate::logs::lsblk::parse_json(&mut BufReader::new(endless)).unwrap_err();
    assert!(err.to_string().contains("at most"), "{err}");
}

#[test]
fn typed_parsers_reject_bad_input_with_a_line_number() {
    let huge = vec![b'x'; crate::logs::lines::MAX_LINE + 1];
    for (what, data, _) in bad_inputs().into_iter().chain([("huge", huge, 1)]) {
        let errors = [
            crate::logs::sysctl::parse(&data).err(),
            crate::logs::btrfs::parse_subvolume_list(&data).err(),
            crate::logs::luks::parse_dump(&data).err(),
            crate::logs::lsblk::parse_text(&data).err(),
        ];
        for (parser, error) in errors.iter().enumerate() {
            match error {
                Some(e) => assert!(e.line() >= 1, "parser {parser} on {what}: {e}"),
                // An empty output is an empty list, except where a header is required.
                None => assert!(what == "empty" && parser < 2, "parser {parser} accepted {what}"),
            }
        }
    }
}
#[test]
fn storage_and_x_server_rules_fire_on_their_lines_only() {
    // No install in the corpus failed in storage or X, so their rules are shown on
    // single real-format lines, and the real logs' harmless errors stay quiet.
    let storage = b"DEBUG:blivet:looking\nERROR:blivet:failed to create device: Partition too large\n";
    let (_, found) =
        super::read_records(LogKind::StorageLog, &mut &storage[..], Path::new("storage.log")).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].kind, found[0].severity, found[0].line),
        (FindingKind::StorageError, Severity::Error, 2)
    );
    for quiet in ["fedora43-bonsai-failed/storage.log", "centos7-logssrv/storage.log"] {
        assert!(analyze(quiet).findings.is_empty(), "{quiet}");
    }

    let x = b"[    24.357] (EE) no screens found(EE)\n[    24.358] (EE) \nFatal server error:\n[    24.358] (EE) no screens found(EE) \n";
    let (_, found) = super::read_records(LogKind::XorgLog, &mut &x[..], Path::new("X.log")).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].kind, found[0].line), (FindingKind::XServerFatal, 3));
    // centos6's HDA "PreInit returned 8" and centos7's AIGLX fallback are (EE) but not fatal.
    for quiet in ["centos6-webskitters/Xorg.9.log", "centos7-logssrv/X.log"] {
        assert!(analyze(quiet).findings.is_empty(), "{quiet}");
    }
}

#[test]
fn rsyslog_folded_traceback_from_anaconda_is_unfolded() {
    // The CentOS 7 syslog's folded NetworkManager traceback, as anaconda would log it.
    let data = corpus::read("anaconda/centos7-logssrv/syslog");
    let line = data
        .split(|b| *b == b'\n')
        .find(|l| memchr::memmem::find(l, b"Traceback (most recent call last):#012").is_some())
        .unwrap();
    let message = &line[memchr::memmem::find(line, b"agent failed").unwrap()..];
    let mut folded = b"03:13:10,368 ERR anaconda:".to_vec();
    folded.extend_from_slice(message);
    let (_, found) = super::read_records(LogKind::Syslog, &mut &folded[..], Path::new("syslog")).unwrap();
    assert_eq!(found.len(), 1);
    assert!(found[0].summary.contains("UnknownMethodException"), "{}", found[0].summary);
    assert!(found[0].summary.contains("service.py:246 in _method_lookup"), "{}", found[0].summary);
}

#[test]
fn real_warnings_keep_their_kind_and_stay_below_error() {
    let script = analyze("rocky9.1-paperdragon/ks-script-6p_ia1t7.log");
    assert_eq!(script.findings.len(), 1);
    let missing = &script.findings[0];
    assert_eq!(
        (missing.kind, missing.severity, missing.line),
        (FindingKind::CommandFailed, Severity::Warning, 2)
    );
    assert!(missing.summary.contains("restorecon: command not found"));

    let dnf = analyze("fedora43-bonsai-failed/dnf.log");
    assert_eq!(dnf.findings.len(), 1);
    let excluded = &dnf.findings[0];
    assert_eq!(
        (excluded.kind, excluded.severity, excluded.line),
        (FindingKind::PayloadError, Severity::Warning, 32)
    );
    assert_eq!(excluded.evidence.len(), 4, "the four ERROR lines are one finding");
}

#[test]
fn a_failed_command_that_matters_is_an_error_with_its_output() {
    // Rocky's program.log with its dosfs run turned into a failure, line for line.
    let data = corpus::read("anaconda/rocky9.1-paperdragon/program.log");
    let text = String::from_utf8(data)
        .unwrap()
        .replace("...done [1] (exit code: 0)", "...done [1] (exit code: 1)")
        .replace("Running [1] mkdosfs --help ...", "Running [1] mkfs.vfat /dev/vda1 ...");
    let (_, found) =
        super::read_records(LogKind::ProgramLog, &mut text.as_bytes(), Path::new("program.log")).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let failed = &found[0];
    assert_eq!(
        (failed.kind, failed.severity, failed.line),
        (FindingKind::CommandFailed, Severity::Error, 10)
    );
    assert_eq!(failed.summary, "command failed with code 1: mkfs.vfat /dev/vda1");
    assert_eq!(failed.evidence.last().unwrap(), "(line 48) return code 1");
    assert!(failed.evidence.iter().any(|l| l.contains("--help          Show this help")));
}

#[test]
fn findings_per_log_are_capped_without_losing_the_accounting() {
    // Thousands of distinct failing commands, then a rule's first match after the cap.
    let mut log = String::new();
    for i in 0..3000 {
        log.push_str(&format!("03:09:25,488 INFO program: Running... mkfs.ext4 /dev/vd{i}\n"));
        log.push_str("03:09:25,519 DEBUG program: Return code: 1\n");
    }
    // The second match would add evidence to a finding that was never kept.
    log.push_str("ERROR:blivet:failed to commit\nERROR:blivet:failed again\n");
    let (tally, found) =
        super::read_records(LogKind::StorageLog, &mut log.as_bytes(), Path::new("storage.log")).unwrap();
    assert_eq!(tally.records, 6002);
    assert_eq!(found.len(), 1000);
    assert!(found.iter().all(|f| f.kind == FindingKind::CommandFailed));
}
#[test]
fn kernel_ring_buffers_are_not_claimed_as_installer_syslog() {
    // vmcore-dmesg uses the same `<N>message` form as anaconda 11's anaconda.syslog;
    // only the installer's file name makes that form the installer's.
    let vmcore = corpus::file("kernel/vmcore-dmesg-windxrunner.txt");
    let (_, score) = best(&vmcore, "vmcore-dmesg.txt");
    assert!(score <= 60, "{score}");
    let (kind, score) = best(&corpus::file("anaconda/fedora10-thebetjr/anaconda.syslog"), "anaconda.syslog");
    assert_eq!(kind, LogKind::Syslog);
    assert!(score > 60, "{score}");
}

#[test]
fn a_dump_without_traceback_still_reads_its_sections() {
    let dump = b"Registered callbacks:\njournalctl:\nApr 19 09:24:09 host anaconda[1]: hi\n/tmp/storage.log:\nINFO:program:Running... blkid\n/dev/sda1:\nDEBUG:program:Return code: 0\nERROR:blivet:boom\n";
    let parsed = super::dump::parse(&mut &dump[..], Path::new("tb")).unwrap();
    let names: Vec<_> = parsed.sections.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Registered callbacks", "journalctl", "/tmp/storage.log"]);
    assert_eq!(parsed.tally.lines, 8);
    assert_eq!(parsed.tally.unparsed_lines, 0);
    let storage = &parsed.findings[0];
    assert_eq!((storage.kind, storage.line), (FindingKind::StorageError, 8));
}
