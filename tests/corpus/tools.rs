//! The tool-output parsers over real output: `sysctl -a` of an RHCOS sosreport,
//! `btrfs subvolume list` and `cryptsetup luksDump` from libstorage-ng's and leapp's
//! test data, util-linux's and sosreport's `lsblk` (text and `-J`), and
//! `systemctl list-units` from check_systemd's fixtures.

use std::io::BufReader;
use std::path::Path;

use bootproof::logs::lsblk::{self, BlockDevice};
use bootproof::logs::{Analysis, Analyzer, Finding, FindingKind, LogKind, btrfs, luks, sysctl};

use crate::{Check, Corpus};

pub fn checks() -> Vec<Check> {
    checks![
        real_sysctl_output_values_and_lines,
        sysctl_analyzer_detects_and_accounts_for_every_line,
        real_btrfs_list_with_parents_uuids_and_fs_tree_paths,
        btrfs_analyzer_detects_the_real_list,
        luks2_keyslot_pbkdf_costs_segment_and_digest,
        luks2_with_integrity,
        luks1_slots_and_cipher,
        luks_analyzer_accounts_for_every_line,
        lsblk_tree_table_with_children_and_mountpoints,
        lsblk_list_form_with_filesystems,
        lsblk_topology_columns,
        lsblk_lvm_children_and_json_agree_with_text,
        lsblk_analyzers_detect_every_lsblk_file,
        systemctl_masked_failed_unit,
        systemctl_two_failed_units,
        systemctl_healthy_list_has_no_finding,
        systemctl_marked_failed_unit_of_systemd_246,
    ]
}

fn analyzer(kind: LogKind) -> Box<dyn Analyzer> {
    bootproof::logs::registry().into_iter().find(|a| a.kind() == kind).unwrap()
}

fn newlines(data: &[u8]) -> u64 {
    data.iter().filter(|b| **b == b'\n').count() as u64
}

const RHCOS_SYSCTL: &str = "sysctl/rhcos-sosreport-sysctl_-a";

fn real_sysctl_output_values_and_lines(c: &Corpus) {
    let data = c.read(RHCOS_SYSCTL);
    let settings = sysctl::parse(&data).unwrap();
    let get = |key: &str| settings.iter().find(|s| s.key == key).unwrap();
    assert_eq!((get("abi.vsyscall32").value.as_str(), get("abi.vsyscall32").line), ("1", 1));
    assert_eq!(get("fs.dentry-state").value, "101373\t80467\t45\t0\t0\t0");
    assert_eq!(get("net.ipv4.route.error_burst").value, "5000");
    // The multi-line dev.cdrom.info keeps one entry per line, empty ones included.
    let cdrom: Vec<_> = settings.iter().filter(|s| s.key == "dev.cdrom.info").collect();
    assert_eq!(cdrom[0].value, "CD-ROM information, Id: cdrom.c 3.20 2003/12/17");
    assert_eq!(cdrom[1].value, "");
    assert_eq!(cdrom[2].value, "drive name:\t\tsr0");
    let map = sysctl::by_key(&settings);
    assert_eq!(map["kernel.pid_max"], get("kernel.pid_max").value);
    assert!(
        map["dev.cdrom.info"].starts_with("CD-ROM information, Id: cdrom.c 3.20 2003/12/17\n\ndrive name:")
    );
    assert_eq!(map["dev.cdrom.info"].split('\n').count(), cdrom.len());
    // Every line but the one `sysctl:` diagnostic is a setting.
    assert_eq!(settings.len() as u64, newlines(&data) - 1);
}

fn sysctl_analyzer_detects_and_accounts_for_every_line(c: &Corpus) {
    let data = c.read(RHCOS_SYSCTL);
    let analyzer = analyzer(LogKind::Sysctl);
    assert_eq!(analyzer.sniff(&data[..data.len().min(65536)], "x"), 95);
    let analysis = analyzer.analyze(&mut &data[..], Path::new(RHCOS_SYSCTL)).unwrap();
    let lines = newlines(&data);
    assert_eq!((analysis.lines, analysis.records, analysis.unparsed_lines), (lines, lines, 0));
}

const BTRFS_LIST: &str = "btrfs/extracted-from-libstorage-ng-btrfs1-mockup.btrfs_subvolume_list_-a_-puq.txt";

fn real_btrfs_list_with_parents_uuids_and_fs_tree_paths(c: &Corpus) {
    let data = c.read(BTRFS_LIST);
    let all = btrfs::parse_subvolume_list(&data).unwrap();
    let first = &all[0];
    assert_eq!(
        (first.id, first.generation, first.parent, first.top_level, first.path.as_str()),
        (256, 30, Some(5), 5, "@")
    );
    assert_eq!(first.parent_uuid, None);
    assert_eq!(first.uuid.as_deref(), Some("891bfe67-410b-904e-a0b0-0d6a6ada05d7"));
    let var = all.iter().find(|s| s.id == 258).unwrap();
    assert_eq!((var.parent, var.path.as_str()), (Some(256), "<FS_TREE>/@/var"));
    let snapshot = all.iter().find(|s| s.id == 285).unwrap();
    assert_eq!(snapshot.path, "<FS_TREE>/@/.snapshots/8/snapshot");
    assert_eq!(snapshot.parent_uuid.as_deref(), Some("f0456f81-3acb-5a4a-b42a-568618cecf52"));
    let lines = data.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
    assert_eq!(all.len(), lines);
    assert_eq!(all.last().unwrap().line, lines as u64);
}

fn btrfs_analyzer_detects_the_real_list(c: &Corpus) {
    let data = c.read(BTRFS_LIST);
    let analyzer = analyzer(LogKind::BtrfsSubvolumeList);
    assert_eq!(analyzer.sniff(&data, "out.txt"), 95);
    let analysis = analyzer.analyze(&mut &data[..], Path::new(BTRFS_LIST)).unwrap();
    assert_eq!((analysis.records, analysis.unparsed_lines), (analysis.lines, 0));
}

fn luks2_keyslot_pbkdf_costs_segment_and_digest(c: &Corpus) {
    let h = luks::parse_dump(&c.read("luks/leapp-luksDump_nvme0n1p3_luks2.txt")).unwrap();
    assert_eq!(h.version, 2);
    assert_eq!(h.uuid.as_deref(), Some("dfd8db30-2b65-4be9-8cae-65f5fac4a06f"));
    assert_eq!(h.label, None);
    assert_eq!((h.cipher.as_deref(), h.sector_size), (Some("aes-xts-plain64"), Some(512)));
    assert_eq!(h.segments[0].offset, Some(16777216));
    assert_eq!(h.keyslots.len(), 1);
    let k = &h.keyslots[0];
    assert_eq!(
        (k.id, k.kind.as_deref(), k.pbkdf.as_deref(), k.time_cost, k.memory, k.threads),
        (0, Some("luks2"), Some("argon2id"), Some(7), Some(1048576), Some(4))
    );
    assert_eq!((k.key_bits, k.af_stripes, k.digest_id, k.line), (Some(512), Some(4000), Some(0), 19));
    assert!(h.tokens.is_empty());
    assert_eq!(h.digests[0].kind, "pbkdf2");
    assert_eq!(h.digests[0].iterations, Some(99750));
}

fn luks2_with_integrity(c: &Corpus) {
    let path = "luks/extracted-from-libstorage-ng-integrity-mockup.cryptsetup_luksDump_LUKS2.txt";
    let h = luks::parse_dump(&c.read(path)).unwrap();
    assert_eq!(h.cipher.as_deref(), Some("aegis128-random"));
    assert_eq!(h.segments[0].integrity.as_deref(), Some("aead"));
    assert_eq!((h.keyslots[0].time_cost, h.keyslots[0].memory), (Some(4), Some(638696)));
}

fn luks1_slots_and_cipher(c: &Corpus) {
    for (path, iterations) in [
        ("luks/leapp-luksDump_nvme0n1p3_luks1.txt", 1879168),
        ("luks/extracted-from-libstorage-ng-luks4-mockup.cryptsetup_luksDump.txt", 2432890),
    ] {
        let h = luks::parse_dump(&c.read(path)).unwrap();
        assert_eq!(h.version, 1, "{path}");
        assert_eq!(h.cipher.as_deref(), Some("aes-xts-plain64"));
        assert_eq!((h.hash.as_deref(), h.key_bits), (Some("sha256"), Some(512)));
        assert_eq!(h.keyslots.len(), 8);
        let enabled: Vec<_> = h.keyslots.iter().filter(|k| k.enabled).collect();
        assert_eq!(enabled.len(), 1);
        assert_eq!(enabled[0].iterations, Some(iterations));
        assert_eq!(enabled[0].pbkdf.as_deref(), Some("pbkdf2"));
    }
}

fn luks_analyzer_accounts_for_every_line(c: &Corpus) {
    let analyzer = analyzer(LogKind::LuksDump);
    for path in [
        "luks/leapp-luksDump_nvme0n1p3_luks1.txt",
        "luks/leapp-luksDump_nvme0n1p3_luks2.txt",
        "luks/extracted-from-libstorage-ng-luks4-mockup.cryptsetup_luksDump.txt",
        "luks/extracted-from-libstorage-ng-integrity-mockup.cryptsetup_luksDump_LUKS2.txt",
    ] {
        let data = c.read(path);
        assert_eq!(analyzer.sniff(&data, "x"), 100);
        let a = analyzer.analyze(&mut &data[..], Path::new(path)).unwrap();
        assert_eq!(a.unparsed_lines, 0, "{path}");
        assert_eq!(a.lines, newlines(&data));
    }
}

fn names(devices: &[BlockDevice]) -> Vec<&str> {
    devices.iter().map(|d| d.name.as_str()).collect()
}

fn lsblk_tree_table_with_children_and_mountpoints(c: &Corpus) {
    let all = lsblk::parse_text(&c.read("lsblk/rhcos-sosreport-lsblk")).unwrap();
    assert_eq!(names(&all), ["sda", "sr0"]);
    assert_eq!(names(&all[0].children), ["sda1", "sda2", "sda3"]);
    let sda3 = &all[0].children[2];
    assert_eq!(sda3.mountpoints, ["/sysroot"]);
    assert_eq!((sda3.size.as_deref(), sda3.kind.as_deref()), (Some("125.9G"), Some("part")));
    assert_eq!((sda3.column("MAJ:MIN"), sda3.line), (Some("8:3"), Some(5)));
    assert!(all[0].mountpoints.is_empty());
    assert_eq!(all[1].kind.as_deref(), Some("rom"));
}

fn lsblk_list_form_with_filesystems(c: &Corpus) {
    let all = lsblk::parse_text(&c.read("lsblk/rhcos-sosreport-lsblk_-f_-a_-l")).unwrap();
    assert_eq!(names(&all), ["sda", "sda1", "sda2", "sda3", "sr0"]);
    assert_eq!(all[0].fstype, None);
    assert_eq!((all[1].fstype.as_deref(), all[1].uuid.as_deref()), (Some("vfat"), Some("9AF0-40EA")));
    assert_eq!(all[1].label, None);
    assert_eq!(
        (all[3].label.as_deref(), all[3].mountpoints.as_slice()),
        (Some("root"), &["/sysroot".to_owned()][..])
    );
    assert_eq!(all[4].uuid.as_deref(), Some("2019-08-28-14-05-37-00"));
}

fn lsblk_topology_columns(c: &Corpus) {
    let all = lsblk::parse_text(&c.read("lsblk/rhcos-sosreport-lsblk_-t")).unwrap();
    let sda1 = &all[0].children[0];
    assert_eq!(sda1.column("PHY-SEC"), Some("4096"));
    assert_eq!(sda1.column("SCHED"), Some("mq-deadline"));
    assert_eq!(all[1].column("LOG-SEC"), Some("2048"));
}

fn lsblk_lvm_children_and_json_agree_with_text(c: &Corpus) {
    let text = lsblk::parse_text(&c.read("lsblk/util-linux-lsblk-simple-lvm-basic")).unwrap();
    let json_path = c.file("lsblk/derived-by-lsblk-2.38.1/util-linux-dump-simple-lvm.lsblk-J.json");
    let json = lsblk::parse_json(&mut std::fs::File::open(json_path).unwrap()).unwrap();
    assert_eq!(names(&text), names(&json));
    for (t, j) in text.iter().zip(&json) {
        assert_eq!(names(&t.children), names(&j.children), "{}", t.name);
        assert_eq!(t.kind, j.kind);
        assert_eq!(t.mountpoints, j.mountpoints, "{}", t.name);
    }
    assert_eq!(text[0].children[0].name, "vg_foo.4059-lv_foo.4059");
    assert_eq!(text[0].children[0].column("KNAME"), Some("dm-0"));
    let sdb1 = &json.iter().find(|d| d.name == "sdb").unwrap().children[0];
    assert_eq!(sdb1.mountpoints, ["/home/archive"]);
    assert_eq!(sdb1.column("rm"), Some("false"));
}

fn lsblk_analyzers_detect_every_lsblk_file(c: &Corpus) {
    let dir = c.dir().join("lsblk");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.extend(std::fs::read_dir(dir.join("derived-by-lsblk-2.38.1")).unwrap().map(|e| e.unwrap().path()));
    let (text, json) = (analyzer(LogKind::Lsblk), analyzer(LogKind::LsblkJson));
    let mut seen = 0;
    for path in files.iter().filter(|p| p.is_file()) {
        let data = std::fs::read(path).unwrap();
        let is_json = path.extension().is_some_and(|e| e == "json");
        let (ours, other) = if is_json { (&json, &text) } else { (&text, &json) };
        assert!(ours.sniff(&data, "x") >= 90, "{}", path.display());
        assert_eq!(other.sniff(&data, "x"), 0, "{}", path.display());
        let a = ours.analyze(&mut &data[..], path).unwrap();
        assert_eq!(a.unparsed_lines, 0, "{}", path.display());
        assert_eq!(a.lines, newlines(&data) + u64::from(!data.ends_with(b"\n")));
        if !is_json {
            lsblk::parse_text(&data).unwrap();
        }
        seen += 1;
    }
    assert_eq!(seen, 10);
}

/// `systemctl list-units` output through its analyzer, with every line accounted for.
fn list_units(c: &Corpus, name: &str) -> Analysis {
    let path = c.file(name);
    let mut reader = BufReader::new(std::fs::File::open(&path).unwrap());
    let analysis = analyzer(LogKind::SystemctlListUnits).analyze(&mut reader, &path).unwrap();
    let data = std::fs::read(&path).unwrap();
    assert_eq!(
        analysis.lines,
        newlines(&data) + u64::from(!data.is_empty() && !data.ends_with(b"\n")),
        "{name}"
    );
    assert_eq!(
        analysis.records + analysis.continuation_lines + analysis.unparsed_lines,
        analysis.lines,
        "{name}: {analysis:?}"
    );
    assert_eq!(analysis.unparsed_lines, 0, "{name}");
    analysis
}

fn failed_units(findings: &[Finding]) -> Vec<(u64, String)> {
    findings
        .iter()
        .filter(|f| f.kind == FindingKind::FailedUnit)
        .map(|f| (f.line, f.summary.clone()))
        .collect()
}

fn systemctl_masked_failed_unit(c: &Corpus) {
    let analysis = list_units(c, "systemctl/check_systemd-systemctl-list-units_failed.txt");
    assert_eq!(analysis.records, 4);
    assert_eq!(
        failed_units(&analysis.findings),
        vec![(4, "unit smartd.service failed (load masked, active failed, sub dead)".to_string())]
    );
}

fn systemctl_two_failed_units(c: &Corpus) {
    let analysis = list_units(c, "systemctl/check_systemd-systemctl-list-units_multiple-failure.txt");
    let units: Vec<u64> = failed_units(&analysis.findings).iter().map(|(l, _)| *l).collect();
    assert_eq!(units, vec![2, 4]);
}

/// Units counted independently of the parser: lines whose second word (after the
/// `●` mark) is a load state.
fn units_in(c: &Corpus, name: &str) -> usize {
    let text = String::from_utf8(c.read(name)).unwrap();
    text.lines()
        .filter(|l| {
            let load = l.trim_start_matches('\u{25cf}').split_whitespace().nth(1);
            ["loaded", "not-found", "masked"].contains(&load.unwrap_or_default())
                && !l.contains("units listed")
        })
        .count()
}

fn systemctl_healthy_list_has_no_finding(c: &Corpus) {
    let name = "systemctl/check_systemd-systemctl-list-units_ok.txt";
    let analysis = list_units(c, name);
    assert!(analysis.findings.is_empty());
    assert_eq!(analysis.records as usize, units_in(c, name) + 1);
}

fn systemctl_marked_failed_unit_of_systemd_246(c: &Corpus) {
    let name = "systemctl/check_systemd-systemctl-list-units_v246.txt";
    let analysis = list_units(c, name);
    assert_eq!(analysis.records as usize, units_in(c, name) + 1);
    assert_eq!(
        failed_units(&analysis.findings),
        vec![(
            205,
            "unit nm-wait-online.service failed (load loaded, active failed, sub failed)".to_string()
        )]
    );
}
