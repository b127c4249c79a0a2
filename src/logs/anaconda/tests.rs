//! The installer-log analyzers on fixtures written here in each generation's format
//! (`tests/fixtures/logs/anaconda/`, see its README), and on damaged and hostile input.
//! The same checks over the real installs of the corpus are in `tests/corpus`.

use std::io::BufReader;
use std::path::Path;

use crate::logs::lines::{MAX_LINE, Tally};
use crate::logs::{Analysis, Analyzer, Finding, FindingKind, LogKind, Severity, fixture};

/// Every installer fixture, by the name anaconda gives the file, with its kind.
const FIXTURES: &[(&str, &[u8], LogKind)] = &[
    ("anaconda.log", fixture!("anaconda/fedora40-failed/anaconda.log"), LogKind::AnacondaLog),
    ("program.log", fixture!("anaconda/fedora40-failed/program.log"), LogKind::ProgramLog),
    ("storage.log", fixture!("anaconda/fedora40-failed/storage.log"), LogKind::StorageLog),
    ("packaging.log", fixture!("anaconda/fedora40-failed/packaging.log"), LogKind::PackagingLog),
    ("dnf.log", fixture!("anaconda/fedora40-failed/dnf.log"), LogKind::DnfLog),
    ("dnf.librepo.log", fixture!("anaconda/fedora40-failed/dnf.librepo.log"), LogKind::DnfLibrepoLog),
    ("syslog", fixture!("anaconda/fedora40-failed/syslog"), LogKind::Syslog),
    ("journal.log", fixture!("anaconda/fedora40-failed/journal.log"), LogKind::JournalShort),
    ("X.log", fixture!("anaconda/fedora40-failed/X.log"), LogKind::XorgLog),
    (
        "ks-script-3lp1kx9w.log",
        fixture!("anaconda/fedora40-failed/ks-script-3lp1kx9w.log"),
        LogKind::KsScriptLog,
    ),
    (
        "anaconda-tb-q7x1k0ze",
        fixture!("anaconda/fedora40-failed/anaconda-tb-q7x1k0ze"),
        LogKind::AnacondaTraceback,
    ),
    ("anaconda.log", fixture!("anaconda/rhel6/anaconda.log"), LogKind::AnacondaLog),
    ("anaconda.program.log", fixture!("anaconda/rhel6/anaconda.program.log"), LogKind::ProgramLog),
    ("anaconda.storage.log", fixture!("anaconda/rhel6/anaconda.storage.log"), LogKind::StorageLog),
    ("anaconda.yum.log", fixture!("anaconda/rhel6/anaconda.yum.log"), LogKind::PackagingLog),
    ("anaconda.log", fixture!("anaconda/fedora10/anaconda.log"), LogKind::AnacondaLog),
    ("anaconda.syslog", fixture!("anaconda/fedora10/anaconda.syslog"), LogKind::Syslog),
];

/// The fixture of that name in the failed Fedora 40 install.
fn fedora40(name: &str) -> &'static [u8] {
    FIXTURES.iter().find(|(n, _, _)| *n == name).map(|(_, data, _)| *data).unwrap()
}

/// The installer analyzer scoring highest on `data` under `name`.
fn best(data: &[u8], name: &str) -> (LogKind, u8) {
    super::analyzers()
        .iter()
        .map(|a| (a.kind(), a.sniff(data, name)))
        .max_by_key(|(_, score)| *score)
        .unwrap()
}

fn analyze(kind: LogKind, data: &[u8], name: &str) -> Analysis {
    let analyzer = super::analyzers().into_iter().find(|a| a.kind() == kind).unwrap();
    analyzer.analyze(&mut &data[..], Path::new(name)).unwrap()
}

fn read(kind: LogKind, data: &[u8]) -> (Tally, Vec<Finding>) {
    super::read_records(kind, &mut &data[..], Path::new("fixture")).unwrap()
}

/// Lines as `wc -l` counts them, plus a last line without a newline.
fn count_lines(data: &[u8]) -> u64 {
    let newlines = data.iter().filter(|b| **b == b'\n').count() as u64;
    newlines + u64::from(!data.is_empty() && !data.ends_with(b"\n"))
}

#[test]
fn every_fixture_is_detected_as_its_kind() {
    for (name, data, expected) in FIXTURES {
        let (kind, score) = best(data, name);
        assert_eq!(kind, *expected, "{name} (score {score})");
        assert!(score >= 60, "{name}: weak score {score}");
        // The content alone, under a neutral name, still says what most files are.
        if !matches!(expected, LogKind::KsScriptLog | LogKind::JournalShort) {
            assert_eq!(best(data, "captured.txt").0, *expected, "{name} without its name");
        }
    }
}

#[test]
fn every_fixture_line_is_accounted_for() {
    for (name, data, kind) in FIXTURES {
        let analysis = analyze(*kind, data, name);
        assert_eq!(analysis.lines, count_lines(data), "{name}");
        assert_eq!(analysis.records + analysis.continuation_lines + analysis.unparsed_lines, analysis.lines);
        // Every fixture starts with a record, and only lines before the first record
        // can be unparsed.
        assert_eq!(analysis.unparsed_lines, 0, "{name}");
        if *kind != LogKind::AnacondaTraceback {
            let (tally, findings) = read(*kind, data);
            assert_eq!(tally.records, analysis.records, "{name}");
            assert_eq!(findings, analysis.findings.iter().map(|f| relabel(f, "fixture")).collect::<Vec<_>>());
        }
    }
}

/// `finding` as the same analysis of a file of another name reports it.
fn relabel(finding: &Finding, file: &str) -> Finding {
    Finding { file: file.into(), ..finding.clone() }
}

#[test]
fn modern_anaconda_log_records_continuations_and_findings() {
    let (tally, findings) = read(LogKind::AnacondaLog, fedora40("anaconda.log"));
    // The py.warnings message and the traceback continue the entries above them.
    assert_eq!(tally, Tally { lines: 15, records: 7, continuation_lines: 8, unparsed_lines: 0 });
    let [error, crash] = &findings[..] else { panic!("{findings:#?}") };
    assert_eq!(
        (error.kind, error.severity, error.line, error.time.as_deref()),
        (FindingKind::InstallerError, Severity::Error, 7, Some("09:12:41,660"))
    );
    assert_eq!(
        error.summary,
        "installer error: Installation failed: boot loader installation did not finish"
    );
    assert_eq!(
        (crash.kind, crash.severity, crash.line, crash.time.as_deref()),
        (FindingKind::InstallerTraceback, Severity::Critical, 8, Some("09:12:41,662"))
    );
    // Python prints the innermost frame last.
    assert_eq!(
        crash.summary,
        "installer traceback: pyanaconda.modules.common.errors.installation.\
         BootloaderInstallationError: failed to write boot loader configuration (raised at \
         /usr/lib64/python3.12/site-packages/pyanaconda/modules/storage/bootloader/installation.py:118 in run)"
    );
    // The header, two frames with their code lines, the exception, the empty line.
    assert_eq!(crash.evidence.len(), 7, "{:#?}", crash.evidence);
    assert_eq!(crash.evidence[0], "Traceback (most recent call last):");
}

#[test]
fn a_clock_stepping_backwards_keeps_every_record_and_known_errors_stay_quiet() {
    // RHEL 6: 14:02:30 is followed by 09:32:30 after setuptime; the treeinfo and
    // `lang=us` ERROR lines of a successful install are known to be harmless.
    let data = fixture!("anaconda/rhel6/anaconda.log");
    let (tally, findings) = read(LogKind::AnacondaLog, data);
    let timed = data.split(|b| *b == b'\n').filter(|l| super::grammar::anaconda_entry(l).is_some()).count();
    assert_eq!((tally.records, timed), (7, 7));
    assert_eq!((tally.continuation_lines, tally.unparsed_lines), (1, 0));
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn program_log_failures_are_judged_by_what_the_command_does() {
    let (tally, findings) = read(LogKind::ProgramLog, fedora40("program.log"));
    // Two lines of mkfs.xfs's usage text have no time: they continue its output.
    assert_eq!(tally, Tally { lines: 16, records: 14, continuation_lines: 2, unparsed_lines: 0 });
    let [mkfs, restorecon] = &findings[..] else { panic!("{findings:#?}") };
    // A file system that cannot be made is an error, with the command's output.
    assert_eq!((mkfs.kind, mkfs.severity, mkfs.line), (FindingKind::CommandFailed, Severity::Error, 5));
    assert_eq!(mkfs.summary, "command failed with code 1: mkfs.xfs -f /dev/vda2");
    assert_eq!(mkfs.time.as_deref(), Some("09:11:06,004"));
    assert_eq!(
        mkfs.evidence,
        [
            "Running... mkfs.xfs -f /dev/vda2",
            "stdout[1]: meta-data=/dev/vda2              isize=512    agcount=4, agsize=1245120 blks",
            "stderr[1]: mkfs.xfs: cannot open /dev/vda2: Device or resource busy",
            "Usage: mkfs.xfs",
            "/* blocksize */\t\t[-b size=num]",
            "(line 10) return code 1",
        ]
    );
    // Any other command that fails is worth a look; findmnt's "not mounted" is no failure.
    assert_eq!((restorecon.severity, restorecon.line), (Severity::Warning, 11));
    assert_eq!(restorecon.summary, "command failed with code 255: /usr/sbin/restorecon -ir /boot");
}

#[test]
fn program_log_commands_with_their_output_and_codes() {
    let data = fedora40("program.log");
    let runs =
        super::program::commands(LogKind::ProgramLog, &mut &data[..], Path::new("program.log")).unwrap();
    let summary: Vec<_> = runs.iter().map(|r| (r.line, r.command.as_str(), r.return_code)).collect();
    assert_eq!(
        summary,
        [
            (1, "systemctl restart rsyslog", Some(0)),
            (3, "findmnt -rn /mnt/sysimage", Some(1)),
            (5, "mkfs.xfs -f /dev/vda2", Some(1)),
            (11, "/usr/sbin/restorecon -ir /boot", Some(255)),
            (14, "systemd-detect-virt", Some(0)),
        ]
    );
    assert_eq!(runs[2].time.as_deref(), Some("09:11:06,004"));
    assert_eq!((runs[2].output.len(), runs[2].output_lines), (4, 4));
    assert_eq!(runs[2].output[3], "/* blocksize */\t\t[-b size=num]");
    assert_eq!(runs[4].output, ["kvm"]);
    assert!(runs[0].output.is_empty());
}

#[test]
fn rhel6_loader_commands_come_before_python_logging() {
    let data = fixture!("anaconda/rhel6/anaconda.program.log");
    let runs = super::program::commands(LogKind::ProgramLog, &mut &data[..], Path::new("p")).unwrap();
    let commands: Vec<_> = runs.iter().map(|r| (r.line, r.time.is_some(), r.command.as_str())).collect();
    assert_eq!(
        commands,
        [
            (1, false, "/bin/mount -n -t nfs -o ro,nolock 192.168.122.1:/srv/centos6/images /mnt/stage2"),
            (2, false, "/bin/mount -n -t auto -o ro,loop=/dev/loop1 /tmp/install.img /mnt/runtime"),
            (3, true, "['udevadm', 'trigger', '--action=add', '--subsystem-match=block']"),
            (4, true, "['modprobe', 'dm-mod']"),
            (5, true, "['lvm', 'vgs', '--noheadings', '--nosuffix', '--units', 'm']"),
            (7, true, "['udevadm', 'settle', '--timeout=300']"),
        ]
    );
    // RHEL 6 logs no return codes; output is logged at INFO with the same padding.
    assert!(runs.iter().all(|r| r.return_code.is_none()));
    assert_eq!(runs[4].output, ["  No volume groups found"]);
}

#[test]
fn storage_log_probes_stay_quiet_and_real_failures_do_not() {
    let data = fedora40("storage.log");
    let (tally, findings) = read(LogKind::StorageLog, data);
    assert_eq!(tally, Tally { lines: 15, records: 14, continuation_lines: 1, unparsed_lines: 0 });
    // The FCoE probes (libfc already loaded, fcoe_edd.sh finding no EDD) are harmless.
    let [wipefs, commit] = &findings[..] else { panic!("{findings:#?}") };
    assert_eq!(
        (wipefs.kind, wipefs.severity, wipefs.line),
        (FindingKind::CommandFailed, Severity::Error, 10)
    );
    assert_eq!(
        wipefs.evidence,
        [
            "Running... wipefs -a /dev/vdb",
            "stderr:",
            "wipefs: error: /dev/vdb: probing initialization failed: Device or resource busy",
            "(line 13) return code 1",
        ]
    );
    assert_eq!(wipefs.time, None);
    assert_eq!((commit.kind, commit.severity, commit.line), (FindingKind::StorageError, Severity::Error, 15));
    assert!(
        commit.summary.starts_with("storage error: failed to commit changes to disk vdb"),
        "{}",
        commit.summary
    );

    let runs = super::program::commands(LogKind::StorageLog, &mut &data[..], Path::new("s")).unwrap();
    let failed: Vec<_> = runs
        .iter()
        .filter(|r| r.return_code != Some(0))
        .map(|r| (r.command.as_str(), r.output.len()))
        .collect();
    assert_eq!(failed, [("/usr/libexec/fcoe/fcoe_edd.sh -i", 2), ("wipefs -a /dev/vdb", 2)]);
}

#[test]
fn failed_downloads_are_one_payload_error_and_the_task_traceback_another() {
    let (tally, findings) = read(LogKind::PackagingLog, fedora40("packaging.log"));
    assert_eq!(tally, Tally { lines: 9, records: 6, continuation_lines: 3, unparsed_lines: 0 });
    let [download, task] = &findings[..] else { panic!("{findings:#?}") };
    assert_eq!(
        (download.kind, download.severity, download.line),
        (FindingKind::PayloadError, Severity::Error, 3)
    );
    assert!(download.summary.starts_with("package download failed: Failed to download 'kernel-core-"));
    // Both packages are one finding, one line of evidence each.
    assert_eq!(download.evidence.len(), 2);
    assert!(download.evidence[1].starts_with("Failed to download 'grub2-efi-x64-"));
    assert_eq!(
        (task.kind, task.severity, task.line),
        (FindingKind::InstallerTraceback, Severity::Critical, 6)
    );
    assert!(task.summary.contains("PayloadInstallationError: Failed to download the following packages"));
    assert!(task.summary.ends_with("dnf_manager.py:731 in download_packages)"), "{}", task.summary);
}

#[test]
fn excluded_packages_are_one_warning_and_old_yum_noise_is_quiet() {
    let (_, findings) = read(LogKind::DnfLog, fedora40("dnf.log"));
    let [excluded] = &findings[..] else { panic!("{findings:#?}") };
    assert_eq!(
        (excluded.kind, excluded.severity, excluded.line, excluded.time.as_deref()),
        (FindingKind::PayloadError, Severity::Warning, 3, Some("2024-04-12T09:01:05+0000"))
    );
    assert_eq!(
        excluded.evidence,
        [
            "Argument 'nano-default-editor' matches only excluded packages.",
            "Argument 'firefox' matches only excluded packages."
        ]
    );
    // RHEL 6 yum logs an empty comps group at ERROR.
    let (tally, findings) = read(LogKind::PackagingLog, fixture!("anaconda/rhel6/anaconda.yum.log"));
    assert_eq!(tally.records, 4);
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn folded_syslog_tracebacks_count_only_from_anaconda() {
    let (tally, findings) = read(LogKind::Syslog, fedora40("syslog"));
    assert_eq!((tally.records, tally.lines), (6, 6));
    // NetworkManager's debug traceback from anaconda's secret agent is not the installer's.
    let [crash] = &findings[..] else { panic!("{findings:#?}") };
    assert_eq!(
        (crash.kind, crash.line, crash.time.as_deref()),
        (FindingKind::InstallerTraceback, 5, Some("09:02:10,004"))
    );
    assert_eq!(
        crash.summary,
        "installer traceback: pyanaconda.modules.storage.bootloader.base.BootLoaderError: Failed to \
         set new efi boot target. (raised at \
         /usr/lib64/python3.12/site-packages/pyanaconda/modules/storage/bootloader/efi.py:84 in install)"
    );
    // Each `#012` is a line of the traceback.
    assert_eq!(crash.evidence.len(), 6, "{:#?}", crash.evidence);
}

#[test]
fn a_traceback_spread_over_journal_entries_of_one_process() {
    let (tally, findings) = read(LogKind::JournalShort, fedora40("journal.log"));
    assert_eq!((tally.records, tally.lines), (10, 10));
    let [crash] = &findings[..] else { panic!("{findings:#?}") };
    assert_eq!((crash.line, crash.time.as_deref()), (3, Some("Apr 12 09:02:10")));
    assert!(crash.summary.ends_with("threads.py:280 in run)"), "{}", crash.summary);
    assert!(crash.summary.contains("BootLoaderError: Failed to set new efi boot target."));
}

#[test]
fn x_server_banner_continues_and_its_errors_are_not_fatal() {
    let (tally, findings) = read(LogKind::XorgLog, fedora40("X.log"));
    assert_eq!(tally, Tally { lines: 8, records: 6, continuation_lines: 2, unparsed_lines: 0 });
    // A missing fbdev module and no DRM device: (EE), yet the server runs on.
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn a_missing_command_in_a_kickstart_script_is_a_warning() {
    let (tally, findings) = read(LogKind::KsScriptLog, fedora40("ks-script-3lp1kx9w.log"));
    assert_eq!((tally.records, tally.lines), (3, 3));
    let [missing] = &findings[..] else { panic!("{findings:#?}") };
    assert_eq!(
        (missing.kind, missing.severity, missing.line),
        (FindingKind::CommandFailed, Severity::Warning, 2)
    );
    assert_eq!(
        missing.summary,
        "kickstart script command missing: /tmp/ks-script-3lp1kx9w: line 4: authselect: command not found"
    );
}

#[test]
fn crash_dump_sections_findings_and_accounting() {
    let data = fedora40("anaconda-tb-q7x1k0ze");
    let path = Path::new("anaconda-tb-q7x1k0ze");
    let dump = super::dump::parse(&mut &data[..], path).unwrap();
    assert_eq!(dump.version.as_deref(), Some("40.22.3"));
    assert_eq!(dump.traceback_line, 2);
    assert!(dump.traceback.most_recent_first);
    assert_eq!(dump.traceback.frames.len(), 3);
    let innermost = dump.traceback.innermost().unwrap();
    assert_eq!((innermost.line, innermost.function.as_str()), (497, "_handle_method_error"));
    assert_eq!(
        dump.traceback.exception_type(),
        Some("pyanaconda.modules.common.errors.installation.PayloadInstallationError")
    );
    let sections: Vec<_> = dump.sections.iter().map(|s| (s.name.as_str(), s.line, s.kind)).collect();
    assert_eq!(
        sections,
        [
            ("Local variables in innermost frame", 11, None),
            ("Registered callbacks", 20, None),
            ("lsblk_output", 21, None),
            ("journalctl", 26, Some(LogKind::JournalShort)),
            ("/tmp/anaconda.log", 34, Some(LogKind::AnacondaLog)),
            ("/tmp/packaging.log", 42, Some(LogKind::PackagingLog)),
            ("/tmp/program.log", 48, Some(LogKind::ProgramLog)),
            ("/tmp/storage.log", 53, Some(LogKind::StorageLog)),
            ("/proc/cmdline", 61, None),
            ("/tmp/dbus.log", 65, None),
        ]
    );
    // `/dev/vda1:` inside storage.log is a line of it, not a section.
    let storage = &dump.sections[7].tally;
    assert_eq!((storage.records, storage.continuation_lines), (4, 3));

    // The crash; the download failure, from packaging.log (the journal has it too); an
    // unmount traceback only the journal kept. The crash logged again in anaconda.log
    // is not a second finding, and the FCoE probe in storage.log is no finding.
    let found: Vec<_> = dump.findings.iter().map(|f| (f.kind, f.line)).collect();
    assert_eq!(
        found,
        [
            (FindingKind::InstallerTraceback, 2),
            (FindingKind::PayloadError, 44),
            (FindingKind::InstallerTraceback, 28),
        ]
    );
    let crash = &dump.findings[0];
    assert_eq!(crash.severity, Severity::Critical);
    assert!(crash.summary.ends_with("handler.py:497 in _handle_method_error)"), "{}", crash.summary);
    assert_eq!(crash.evidence.len(), 4, "three frames and the exception");
    assert!(dump.findings[1].summary.ends_with("[in /tmp/packaging.log]"), "{}", dump.findings[1].summary);
    assert_eq!(dump.findings[1].evidence.len(), 2);
    assert!(
        dump.findings[2].summary.starts_with("installer traceback: blivet.errors.FSError: umount failed")
    );
    assert!(dump.findings[2].summary.ends_with("[in journalctl]"), "{}", dump.findings[2].summary);

    // Head: report and traceback line records, 8 lines of traceback; ten section
    // headers; journal 5, anaconda.log 2, packaging.log 3, program.log 2, storage.log 4
    // records; everything else continues a record.
    assert_eq!(dump.tally, Tally { lines: 66, records: 28, continuation_lines: 38, unparsed_lines: 0 });
    let analysis = analyze(LogKind::AnacondaTraceback, data, "anaconda-tb-q7x1k0ze");
    assert_eq!(analysis.findings, dump.findings);
    assert_eq!(analysis.records, 28);
    assert_eq!(super::CrashDump.sniff(data, "dump"), 100);
}

#[test]
fn kernel_ring_buffers_are_the_installer_syslog_only_under_its_name() {
    // anaconda 11's anaconda.syslog is the `<N>message` form any ring buffer dump has.
    let data = fixture!("anaconda/fedora10/anaconda.syslog");
    let (kind, score) = best(data, "anaconda.syslog");
    assert_eq!(kind, LogKind::Syslog);
    assert!(score > 60, "{score}");
    let (_, score) = best(data, "vmcore-dmesg.txt");
    assert!(score <= 60, "{score}");
}

/// All analyzers of this module and the tool outputs'.
fn all_mine() -> Vec<Box<dyn Analyzer>> {
    let mut all = super::analyzers();
    all.extend(crate::logs::sysctl::analyzers());
    all.extend(crate::logs::btrfs::analyzers());
    all.extend(crate::logs::luks::analyzers());
    all.extend(crate::logs::lsblk::analyzers());
    all
}

#[test]
fn tool_outputs_and_installer_logs_are_told_apart_by_content() {
    let tools: &[(&str, &[u8], LogKind)] = &[
        ("sysctl-a.txt", fixture!("sysctl/sysctl-a.txt"), LogKind::Sysctl),
        ("list.txt", fixture!("btrfs/subvolume-list-a-puq.txt"), LogKind::BtrfsSubvolumeList),
        ("luks1.txt", fixture!("luks/luksDump-luks1.txt"), LogKind::LuksDump),
        ("luks2.txt", fixture!("luks/luksDump-luks2.txt"), LogKind::LuksDump),
        ("lsblk.txt", fixture!("lsblk/lsblk.txt"), LogKind::Lsblk),
        ("lsblk-t.txt", fixture!("lsblk/lsblk-t.txt"), LogKind::Lsblk),
        ("lsblk.json", fixture!("lsblk/lsblk-J.json"), LogKind::LsblkJson),
    ];
    for (name, data, expected) in tools.iter().chain(FIXTURES) {
        let mut scores: Vec<_> = all_mine().iter().map(|a| (a.sniff(data, name), a.kind())).collect();
        scores.sort();
        let (best, kind) = scores.pop().unwrap();
        let (runner_up, other) = scores.pop().unwrap();
        assert_eq!(kind, *expected, "{name}");
        assert!(best > runner_up, "{name}: tie between {kind:?} and {other:?} at {best}");
    }
}

#[test]
fn storage_and_x_server_rules_fire_on_their_lines_only() {
    // Single lines in the real formats: storage.log's Python form, and the old X
    // server's `Fatal server error:` on a line of its own.
    let storage = b"DEBUG:blivet:looking\nERROR:blivet:failed to create device: Partition too large\n";
    let (_, found) = read(LogKind::StorageLog, storage);
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].kind, found[0].severity, found[0].line),
        (FindingKind::StorageError, Severity::Error, 2)
    );

    let x = b"[    24.357] (EE) no screens found(EE)\n[    24.358] (EE) \nFatal server error:\n[    24.358] (EE) no screens found(EE) \n";
    let (_, found) = read(LogKind::XorgLog, x);
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].kind, found[0].line), (FindingKind::XServerFatal, 3));
}

/// Inputs no real log has: none may panic, each line is still accounted for.
fn bad_inputs() -> Vec<(&'static str, Vec<u8>, u64)> {
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let binary_lines = binary.iter().filter(|b| **b == b'\n').count() as u64 + 1;
    vec![
        ("empty", Vec::new(), 0),
        ("binary", binary, binary_lines),
        ("non-UTF-8 line", b"19:31:43,453 ERR program: \xff\xfe bad\n\xc3\x28\n".to_vec(), 2),
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
                    assert_eq!(
                        a.records + a.continuation_lines + a.unparsed_lines,
                        a.lines,
                        "{kind:?} on {what}"
                    );
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
    let huge = vec![b'x'; MAX_LINE + 1];
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
fn findings_per_log_are_capped_without_losing_the_accounting() {
    // Thousands of distinct failing commands, then a rule's first match after the cap.
    let mut log = String::new();
    for i in 0..3000 {
        log.push_str(&format!("03:09:25,488 INFO program: Running... mkfs.ext4 /dev/vd{i}\n"));
        log.push_str("03:09:25,519 DEBUG program: Return code: 1\n");
    }
    // The second match would add evidence to a finding that was never kept.
    log.push_str("ERROR:blivet:failed to commit\nERROR:blivet:failed again\n");
    let (tally, found) = read(LogKind::StorageLog, log.as_bytes());
    assert_eq!(tally.records, 6002);
    assert_eq!(found.len(), 1000);
    assert!(found.iter().all(|f| f.kind == FindingKind::CommandFailed));
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
