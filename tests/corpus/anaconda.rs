//! The installer-log analyzers (`logs::anaconda`) over the real installs of the corpus:
//! CentOS 6 and 7, Fedora 10, Rocky 9.1 (successful) and Fedora 43 (failed, with its
//! `anaconda-tb-*` dump).

use std::io::BufReader;
use std::path::Path;

use bootproof::logs::anaconda::{self, dump, grammar, program};
use bootproof::logs::{Analysis, Analyzer, FindingKind, LogKind, Severity};

use crate::{Check, Corpus};

pub fn checks() -> Vec<Check> {
    checks![
        every_installer_file_is_detected_as_its_kind,
        every_line_is_accounted_for,
        nothing_error_level_in_the_successful_rocky_install,
        fedora43_crash_dump_names_the_payload_failure_and_the_raising_frame,
        command_failures_that_matter_are_found_and_probes_are_not,
        tracebacks_inside_line_logs_carry_exception_and_frame,
        clock_jumping_backwards_keeps_every_record,
        tool_outputs_and_installer_logs_are_told_apart_by_content,
        harmless_storage_and_x_server_errors_of_real_installs_stay_quiet,
        rsyslog_folded_traceback_from_anaconda_is_unfolded,
        real_warnings_keep_their_kind_and_stay_below_error,
        a_failed_command_that_matters_is_an_error_with_its_output,
        kernel_ring_buffers_are_not_claimed_as_installer_syslog,
        rocky_program_log_commands_with_output_and_codes,
        storage_log_commands_and_their_failures,
    ]
}

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
    anaconda::analyzers()
        .iter()
        .map(|a| (a.kind(), a.sniff(&head, name)))
        .max_by_key(|(_, score)| *score)
        .unwrap()
}

fn analyze(c: &Corpus, relative: &str) -> Analysis {
    let path = c.file(&format!("anaconda/{relative}"));
    let name = path.file_name().unwrap().to_str().unwrap().to_owned();
    let (kind, _) = best(&path, &name);
    let analyzer = anaconda::analyzers().into_iter().find(|a| a.kind() == kind).unwrap();
    let mut input = BufReader::new(std::fs::File::open(&path).unwrap());
    analyzer.analyze(&mut input, &path).unwrap()
}

/// Lines as `wc -l` counts them, plus a last line without a newline.
fn count_lines(data: &[u8]) -> u64 {
    let newlines = data.iter().filter(|b| **b == b'\n').count() as u64;
    newlines + u64::from(!data.is_empty() && !data.ends_with(b"\n"))
}

fn every_installer_file_is_detected_as_its_kind(c: &Corpus) {
    for (relative, expected) in FILES {
        let path = c.file(&format!("anaconda/{relative}"));
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

fn every_line_is_accounted_for(c: &Corpus) {
    for (relative, kind) in FILES {
        let data = c.read(&format!("anaconda/{relative}"));
        let analysis = analyze(c, relative);
        assert_eq!(analysis.lines, count_lines(&data), "{relative}");
        assert_eq!(
            analysis.records + analysis.continuation_lines + analysis.unparsed_lines,
            analysis.lines,
            "{relative}"
        );
        if *kind == LogKind::AnacondaTraceback {
            continue;
        }
        let (tally, _) = anaconda::read_records(*kind, &mut &data[..], Path::new(relative)).unwrap();
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

fn nothing_error_level_in_the_successful_rocky_install(c: &Corpus) {
    for (relative, _) in FILES.iter().filter(|(f, _)| f.starts_with("rocky9.1")) {
        for finding in analyze(c, relative).findings {
            assert!(finding.severity < Severity::Error, "{relative}: {finding:?}");
        }
    }
}

fn fedora43_crash_dump_names_the_payload_failure_and_the_raising_frame(c: &Corpus) {
    let path = c.file("anaconda/fedora43-bonsai-failed/anaconda-tb-yj11b8m4");
    let mut input = BufReader::new(std::fs::File::open(&path).unwrap());
    let dump = dump::parse(&mut input, &path).unwrap();
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
    let analysis = analyze(c, "fedora43-bonsai-failed/anaconda-tb-yj11b8m4");
    assert_eq!(analysis.findings, dump.findings);
    assert_eq!(analysis.unparsed_lines, 0);
}

fn command_failures_that_matter_are_found_and_probes_are_not(c: &Corpus) {
    let program = analyze(c, "centos7-logssrv/program.log");
    let failed: Vec<_> = program.findings.iter().filter(|f| f.kind == FindingKind::CommandFailed).collect();
    // multipath -c, fcoe_edd.sh, spice-vdagent and checks of the live image are probes.
    for finding in &failed {
        assert!(!finding.summary.contains("multipath"), "{finding:?}");
        assert!(!finding.summary.contains("/dev/loop"), "{finding:?}");
    }
    let rocky = analyze(c, "rocky9.1-paperdragon/storage.log");
    assert!(rocky.findings.is_empty(), "{:?}", rocky.findings);
}

fn tracebacks_inside_line_logs_carry_exception_and_frame(c: &Corpus) {
    let data = c.read("anaconda/fedora43-bonsai-failed/anaconda-tb-yj11b8m4");
    // The anaconda.log section alone, as if it were the file /tmp/anaconda.log.
    let start = data.windows(19).position(|w| w == b"\n/tmp/anaconda.log:").unwrap() + 20;
    let end = data.windows(20).position(|w| w == b"\n/tmp/packaging.log:").unwrap();
    let section = &data[start..end];
    let (_, findings) =
        anaconda::read_records(LogKind::AnacondaLog, &mut &section[..], Path::new("anaconda.log")).unwrap();
    let tb = findings
        .iter()
        .find(|f| f.kind == FindingKind::InstallerTraceback)
        .expect("the CRT exception traceback");
    assert!(tb.summary.contains("PayloadInstallationError"), "{}", tb.summary);
    assert!(tb.summary.contains("handler.py:509 in _handle_method_error"), "{}", tb.summary);
    assert_eq!(tb.time.as_deref(), Some("09:24:09,912"));

    // CentOS 7: NetworkManager's harmless debug traceback is not the installer's.
    let syslog = analyze(c, "centos7-logssrv/syslog");
    assert!(!syslog.findings.iter().any(|f| f.kind == FindingKind::InstallerTraceback));
}

fn clock_jumping_backwards_keeps_every_record(c: &Corpus) {
    // centos6 anaconda.log: 18:56:43 is followed by 00:26:43 after setuptime.
    let analysis = analyze(c, "centos6-webskitters/anaconda.log");
    let data = c.read("anaconda/centos6-webskitters/anaconda.log");
    let timed = data.split(|b| *b == b'\n').filter(|l| grammar::anaconda_entry(l).is_some()).count() as u64;
    assert_eq!(analysis.records, timed);
    assert!(memchr::memmem::find(&data, b"00:26:43,094 WARNING").is_some());
}

/// All analyzers of the installer logs and the tool outputs.
fn installer_and_tool_analyzers() -> Vec<Box<dyn Analyzer>> {
    let mut all = anaconda::analyzers();
    all.extend(bootproof::logs::sysctl::analyzers());
    all.extend(bootproof::logs::btrfs::analyzers());
    all.extend(bootproof::logs::luks::analyzers());
    all.extend(bootproof::logs::lsblk::analyzers());
    all
}

fn tool_outputs_and_installer_logs_are_told_apart_by_content(c: &Corpus) {
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
        let path = c.file(&relative);
        let name = path.file_name().unwrap().to_str().unwrap();
        let head = head(&path);
        let mut scores: Vec<_> =
            installer_and_tool_analyzers().iter().map(|a| (a.sniff(&head, name), a.kind())).collect();
        scores.sort();
        let (best, kind) = scores.pop().unwrap();
        let (runner_up, other) = scores.pop().unwrap();
        assert_eq!(kind, expected, "{relative}");
        assert!(best > runner_up, "{relative}: tie between {kind:?} and {other:?} at {best}");
    }
}

fn harmless_storage_and_x_server_errors_of_real_installs_stay_quiet(c: &Corpus) {
    // Fedora 43's FCoE probe errors, CentOS 7's EDD matching.
    for quiet in ["fedora43-bonsai-failed/storage.log", "centos7-logssrv/storage.log"] {
        assert!(analyze(c, quiet).findings.is_empty(), "{quiet}");
    }
    // centos6's HDA "PreInit returned 8" and centos7's AIGLX fallback are (EE) but not fatal.
    for quiet in ["centos6-webskitters/Xorg.9.log", "centos7-logssrv/X.log"] {
        assert!(analyze(c, quiet).findings.is_empty(), "{quiet}");
    }
}

fn rsyslog_folded_traceback_from_anaconda_is_unfolded(c: &Corpus) {
    // The CentOS 7 syslog's folded NetworkManager traceback, as anaconda would log it.
    let data = c.read("anaconda/centos7-logssrv/syslog");
    let line = data
        .split(|b| *b == b'\n')
        .find(|l| memchr::memmem::find(l, b"Traceback (most recent call last):#012").is_some())
        .unwrap();
    let message = &line[memchr::memmem::find(line, b"agent failed").unwrap()..];
    let mut folded = b"03:13:10,368 ERR anaconda:".to_vec();
    folded.extend_from_slice(message);
    let (_, found) = anaconda::read_records(LogKind::Syslog, &mut &folded[..], Path::new("syslog")).unwrap();
    assert_eq!(found.len(), 1);
    assert!(found[0].summary.contains("UnknownMethodException"), "{}", found[0].summary);
    assert!(found[0].summary.contains("service.py:246 in _method_lookup"), "{}", found[0].summary);
}

fn real_warnings_keep_their_kind_and_stay_below_error(c: &Corpus) {
    let script = analyze(c, "rocky9.1-paperdragon/ks-script-6p_ia1t7.log");
    assert_eq!(script.findings.len(), 1);
    let missing = &script.findings[0];
    assert_eq!(
        (missing.kind, missing.severity, missing.line),
        (FindingKind::CommandFailed, Severity::Warning, 2)
    );
    assert!(missing.summary.contains("restorecon: command not found"));

    let dnf = analyze(c, "fedora43-bonsai-failed/dnf.log");
    assert_eq!(dnf.findings.len(), 1);
    let excluded = &dnf.findings[0];
    assert_eq!(
        (excluded.kind, excluded.severity, excluded.line),
        (FindingKind::PayloadError, Severity::Warning, 32)
    );
    assert_eq!(excluded.evidence.len(), 4, "the four ERROR lines are one finding");
}

fn a_failed_command_that_matters_is_an_error_with_its_output(c: &Corpus) {
    // Rocky's program.log with its dosfs run turned into a failure, line for line.
    let data = c.read("anaconda/rocky9.1-paperdragon/program.log");
    let text = String::from_utf8(data)
        .unwrap()
        .replace("...done [1] (exit code: 0)", "...done [1] (exit code: 1)")
        .replace("Running [1] mkdosfs --help ...", "Running [1] mkfs.vfat /dev/vda1 ...");
    let (_, found) =
        anaconda::read_records(LogKind::ProgramLog, &mut text.as_bytes(), Path::new("program.log")).unwrap();
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

fn kernel_ring_buffers_are_not_claimed_as_installer_syslog(c: &Corpus) {
    // vmcore-dmesg uses the same `<N>message` form as anaconda 11's anaconda.syslog;
    // only the installer's file name makes that form the installer's.
    let vmcore = c.file("kernel/vmcore-dmesg-windxrunner.txt");
    let (_, score) = best(&vmcore, "vmcore-dmesg.txt");
    assert!(score <= 60, "{score}");
    let (kind, score) = best(&c.file("anaconda/fedora10-thebetjr/anaconda.syslog"), "anaconda.syslog");
    assert_eq!(kind, LogKind::Syslog);
    assert!(score > 60, "{score}");
}

fn runs(c: &Corpus, relative: &str, kind: LogKind) -> Vec<program::CommandRun> {
    let data = c.read(relative);
    program::commands(kind, &mut &data[..], Path::new(relative)).unwrap()
}

fn rocky_program_log_commands_with_output_and_codes(c: &Corpus) {
    let all = runs(c, "anaconda/rocky9.1-paperdragon/program.log", LogKind::ProgramLog);
    let count = c
        .read("anaconda/rocky9.1-paperdragon/program.log")
        .split(|b| *b == b'\n')
        .filter(|l| memchr::memmem::find(l, b"program: Running").is_some())
        .count();
    assert_eq!(all.len(), count);
    assert_eq!(all[0].command, "systemctl restart rsyslog");
    assert_eq!((all[0].line, all[0].return_code), (1, Some(0)));
    let mkdosfs = all.iter().find(|r| r.command == "mkdosfs --help").unwrap();
    assert_eq!(mkdosfs.return_code, Some(0));
    assert_eq!(mkdosfs.output[0], "stdout[1]: mkfs.fat 4.2 (2021-01-31)");
    assert!(mkdosfs.output.iter().any(|l| l.starts_with("  --help ")));
    let virt = all.iter().find(|r| r.command == "systemd-detect-virt").unwrap();
    assert_eq!((virt.output.as_slice(), virt.return_code), (&["kvm".to_owned()][..], Some(0)));
    // A %post script run in the chroot, with its error output.
    let script = all.iter().find(|r| r.command == "/bin/sh /tmp/ks-script-6p_ia1t7").unwrap();
    assert!(script.output.iter().any(|l| l.contains("restorecon: command not found")));
}

fn storage_log_commands_and_their_failures(c: &Corpus) {
    let all = runs(c, "anaconda/rocky9.1-paperdragon/storage.log", LogKind::StorageLog);
    let failed: Vec<_> =
        all.iter().filter(|r| r.return_code.is_some_and(|c| c != 0)).map(|r| r.command.as_str()).collect();
    assert_eq!(failed.len(), 5, "{failed:?}");
    assert!(failed.contains(&"/usr/libexec/fcoe/fcoe_edd.sh -i"));
    assert!(failed.contains(&"findmnt -rn /mnt/sysroot"));
    let edd = all.iter().find(|r| r.command.ends_with("fcoe_edd.sh -i")).unwrap();
    assert_eq!(edd.output, ["stdout:", "No FCoE boot disk information is found in EDD!"]);
}
