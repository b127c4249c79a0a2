//! `no_selinux_denials`: the SELinux AVC denials the guest logged, read from every log
//! they reach and each counted once.
//!
//! The kernel sends each audit record to auditd when one listens (then it is in
//! `/var/log/audit/audit.log`), else prints it as a kernel message (`audit: type=1400
//! audit(...): avc:  denied ...`); journald's audit socket gets a copy either way
//! (`_TRANSPORT=audit`, `AVC avc:  denied ...`). So on a system with auditd, denials from
//! before auditd started are only in the kernel log and the journal, and the journal
//! holds those twice. The check reads `audit.log` and the journal (the kernel log when
//! there is no journal) and takes one denial per audit event and decision text.
//!
//! Owns: which guest logs are read, when two records are one denial, the allow-list
//! and the message. Must not: parse log formats itself (`logs::audit` has the AVC
//! grammar, `logs::journal::export` the journal's), or do anything in the guest but
//! read.

use std::collections::HashSet;

use super::{Asked, CheckContext, CheckOutcome, ask};
use crate::logs::audit::{self, Avc, EventId};
use crate::logs::journal::export::{Entry, ExportParser};
use crate::pattern::Pattern;

const EXPECTED: &str = "no SELinux AVC denials outside the allow-list";

/// How a source's command says its log is not there (the `exit 3` of the commands).
const ABSENT: i32 = 3;

/// A guest log denials are read from.
struct Source {
    /// As messages name it.
    name: &'static str,
    command: &'static str,
    form: Form,
}

enum Form {
    /// One record a line, the audit stamp in each: `audit.log`, `dmesg`.
    Lines,
    /// `journalctl -o export`, the audit stamp in the message or in `_AUDIT_ID`.
    JournalExport,
}

const AUDIT_LOG: Source = Source {
    name: "/var/log/audit/audit.log",
    command: "test -r /var/log/audit/audit.log || exit 3; cat /var/log/audit/audit.log",
    form: Form::Lines,
};

/// Only the fields that find a denial and its event: the whole export of a boot is
/// several times larger.
const JOURNAL: Source = Source {
    name: "the journal",
    command: "command -v journalctl >/dev/null || exit 3; \
              journalctl -b --no-pager -o export --output-fields=MESSAGE,_AUDIT_ID,_SOURCE_REALTIME_TIMESTAMP",
    form: Form::JournalExport,
};

/// Read only when there is no journal, which holds the kernel log.
const KERNEL_LOG: Source = Source {
    name: "the kernel log",
    command: "command -v dmesg >/dev/null || exit 3; dmesg",
    form: Form::Lines,
};

pub(super) async fn no_selinux_denials(ctx: &CheckContext<'_>, allow: &[Pattern]) -> CheckOutcome {
    // Without SELinux enabled there is nothing that could deny, and nothing to read: a
    // pass would claim what was never looked at.
    let mode = match ask(ctx, EXPECTED, "cat /sys/fs/selinux/enforce").await {
        Ok(Asked::Output(out)) => mode(&out),
        Ok(Asked::Exited { .. }) => {
            return CheckOutcome::not_checked(
                EXPECTED,
                "SELinux is not enabled in this guest (no /sys/fs/selinux/enforce)",
            );
        }
        Err(outcome) => return outcome,
    };
    let mut denials = Denials::default();
    let mut read = Vec::new();
    for source in [&AUDIT_LOG, &JOURNAL, &KERNEL_LOG] {
        if source.name == KERNEL_LOG.name && read.contains(&JOURNAL.name) {
            continue;
        }
        match ask(ctx, EXPECTED, source.command).await {
            Ok(Asked::Output(out)) => {
                denials.add(&source.form, &out);
                read.push(source.name);
            }
            Ok(Asked::Exited { code: ABSENT, .. }) => {}
            Ok(Asked::Exited { code, stderr }) => {
                return CheckOutcome::not_checked(
                    EXPECTED,
                    format!("reading {} exited {code}: {stderr}", source.name),
                );
            }
            Err(outcome) => return outcome,
        }
    }
    if read.is_empty() {
        return CheckOutcome::not_checked(
            EXPECTED,
            "neither /var/log/audit/audit.log nor journalctl nor dmesg to read denials from",
        );
    }
    denials.judge(allow, &read.join(" and "), mode)
}

/// `/sys/fs/selinux/enforce`: 1 enforcing, 0 permissive.
fn mode(enforce: &[u8]) -> &'static str {
    match enforce.trim_ascii() {
        b"1" => "enforcing",
        b"0" => "permissive",
        _ => "in an unknown mode",
    }
}

/// One denial: its audit event, when the record says, and its decision text
/// (`avc:  denied  { ... } for  pid=... comm=... tclass=...`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Denial {
    event: Option<EventId>,
    text: String,
}

/// The denials read so far, each once, in the order first read.
#[derive(Debug, Default)]
struct Denials {
    seen: HashSet<Denial>,
    list: Vec<Denial>,
}

impl Denials {
    fn add(&mut self, form: &Form, out: &[u8]) {
        match form {
            Form::Lines => {
                for line in out.split(|&b| b == b'\n') {
                    if let Some(avc) = audit::find_avc(line) {
                        self.insert(avc.stamp.and_then(|s| s.event()), &avc);
                    }
                }
            }
            Form::JournalExport => {
                let mut parser = ExportParser::new();
                for entry in parser.feed(out) {
                    self.add_entry(&entry);
                }
                for entry in parser.finish() {
                    self.add_entry(&entry);
                }
            }
        }
    }

    fn add_entry(&mut self, entry: &Entry) {
        let Some(avc) = entry.get(b"MESSAGE").and_then(audit::find_avc) else {
            return;
        };
        // A kernel message carries the stamp in its text; the audit transport has
        // taken it out into fields.
        let event = avc.stamp.and_then(|s| s.event()).or_else(|| {
            EventId::from_journal(entry.get(b"_AUDIT_ID")?, entry.get(b"_SOURCE_REALTIME_TIMESTAMP")?)
        });
        self.insert(event, &avc);
    }

    /// An event may hold several decisions, so the text is part of what makes a denial
    /// the same one.
    fn insert(&mut self, event: Option<EventId>, avc: &Avc) {
        if !avc.denied {
            return;
        }
        let denial = Denial { event, text: String::from_utf8_lossy(avc.text).into_owned() };
        if self.seen.insert(denial.clone()) {
            self.list.push(denial);
        }
    }

    /// The outcome: failed when a denial matches no pattern of `allow`, earliest first.
    fn judge(self, allow: &[Pattern], read: &str, mode: &str) -> CheckOutcome {
        let total = self.list.len();
        let mut denied: Vec<Denial> =
            self.list.into_iter().filter(|d| !allow.iter().any(|re| re.is_match(&d.text))).collect();
        let allowed = total - denied.len();
        if denied.is_empty() {
            let seen = match total {
                0 => format!("none in {read} (SELinux {mode})"),
                n => format!("{n} denials in {read} (SELinux {mode}), all in the allow-list"),
            };
            return CheckOutcome::pass(EXPECTED, seen);
        }
        denied.sort_by_key(|d| (d.event.is_none(), d.event));
        let mut seen = format!("{} denials in {read} (SELinux {mode})", denied.len());
        if allowed > 0 {
            seen += &format!(", {allowed} more in the allow-list");
        }
        seen += ":";
        for d in denied.iter().take(SHOWN) {
            seen += &format!("\n{}", d.text);
        }
        if denied.len() > SHOWN {
            seen += &format!("\n... and {} more", denied.len() - SHOWN);
        }
        CheckOutcome::fail(EXPECTED, seen)
    }
}

/// Denials a failure message shows.
const SHOWN: usize = 5;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Verdict;

    // Written here in the formats a Debian 12 guest with auditd 3.0 and systemd 252
    // logs: auditd's raw audit.log, the kernel log while auditd was not yet running,
    // and journald's audit transport, which gets a copy of every record.
    const AUDIT_LOG_TEXT: &[u8] = b"type=DAEMON_START msg=audit(1800000040.100:5012): op=start ver=3.0.9 format=enriched kernel=6.1.0-57-amd64 auid=4294967295 pid=401 uid=0 ses=4294967295 subj=system_u:system_r:auditd_t:s0 res=success\x1dAUID=\"unset\" UID=\"root\"
type=SERVICE_START msg=audit(1800000041.020:21): pid=1 uid=0 auid=4294967295 ses=4294967295 subj=system_u:system_r:init_t:s0 msg='unit=auditd comm=\"systemd\" exe=\"/usr/lib/systemd/systemd\" hostname=? addr=? terminal=? res=success'\x1dUID=\"root\" AUID=\"unset\"
type=AVC msg=audit(1800000052.310:30): avc:  denied  { execmem } for  pid=470 comm=\"Xorg\" scontext=system_u:system_r:xserver_t:s0 tcontext=system_u:system_r:xserver_t:s0 tclass=process permissive=1
type=AVC msg=audit(1800000060.002:41): avc:  denied  { search } for  pid=602 comm=\"30-systemd-envi\" name=\"sddm\" dev=\"dm-0\" ino=17790 scontext=system_u:system_r:systemd_generator_t:s0 tcontext=system_u:object_r:xkb_var_lib_t:s0 tclass=dir permissive=1
type=AVC msg=audit(1800000060.002:41): avc:  denied  { getattr } for  pid=602 comm=\"30-systemd-envi\" path=\"/var/lib/sddm\" dev=\"dm-0\" ino=17790 scontext=system_u:system_r:systemd_generator_t:s0 tcontext=system_u:object_r:xkb_var_lib_t:s0 tclass=dir permissive=1
type=SYSCALL msg=audit(1800000060.002:41): arch=c000003e syscall=262 success=yes exit=0 a0=ffffff9c a1=7ffc8 a2=7ffc9 a3=0 items=0 ppid=600 pid=602 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm=\"30-systemd-envi\" exe=\"/usr/bin/bash\" subj=system_u:system_r:systemd_generator_t:s0 key=(null)\x1dARCH=x86_64 SYSCALL=newfstatat AUID=\"unset\" UID=\"root\"
";

    const KERNEL_LOG_TEXT: &[u8] = b"[    0.941210] audit: type=2000 audit(1800000011.612:1): state=initialized audit_enabled=0 res=1
[   17.501876] audit: type=1403 audit(1800000028.400:2): auid=4294967295 ses=4294967295 lsm=selinux res=1
[   29.118001] audit: type=1400 audit(1800000040.010:3): avc:  denied  { mount } for  pid=318 comm=\"mount\" name=\"/\" dev=\"9p\" ino=4412 scontext=system_u:system_r:mount_t:s0 tcontext=system_u:object_r:unlabeled_t:s0 tclass=filesystem permissive=1
[   29.902114] audit: type=1400 audit(1800000040.800:4): avc:  denied  { setrlimit } for  pid=330 comm=\"systemd-udevd\" scontext=system_u:system_r:udev_t:s0 tcontext=system_u:system_r:udev_t:s0 tclass=process permissive=1
";

    /// One entry in `journalctl -o export --output-fields=...` form.
    fn export_entry(fields: &[&str]) -> String {
        let mut entry = String::from("__CURSOR=s=0;i=1\n__REALTIME_TIMESTAMP=1800000041000000\n");
        for f in fields {
            entry += f;
            entry.push('\n');
        }
        entry + "\n"
    }

    /// The kernel's two denials from the kernel transport and again from the audit
    /// transport, the last two of audit.log from the audit transport, and an entry
    /// that is no denial.
    fn journal_export() -> Vec<u8> {
        [
            export_entry(&[
                "MESSAGE=audit: type=1400 audit(1800000040.010:3): avc:  denied  { mount } for  pid=318 comm=\"mount\" name=\"/\" dev=\"9p\" ino=4412 scontext=system_u:system_r:mount_t:s0 tcontext=system_u:object_r:unlabeled_t:s0 tclass=filesystem permissive=1",
            ]),
            export_entry(&[
                "_SOURCE_REALTIME_TIMESTAMP=1800000040010000",
                "_AUDIT_ID=3",
                "MESSAGE=AVC avc:  denied  { mount } for  pid=318 comm=\"mount\" name=\"/\" dev=\"9p\" ino=4412 scontext=system_u:system_r:mount_t:s0 tcontext=system_u:object_r:unlabeled_t:s0 tclass=filesystem permissive=1",
            ]),
            export_entry(&[
                "_SOURCE_REALTIME_TIMESTAMP=1800000040800000",
                "_AUDIT_ID=4",
                "MESSAGE=AVC avc:  denied  { setrlimit } for  pid=330 comm=\"systemd-udevd\" scontext=system_u:system_r:udev_t:s0 tcontext=system_u:system_r:udev_t:s0 tclass=process permissive=1",
            ]),
            export_entry(&[
                "MESSAGE=audit: type=1400 audit(1800000040.800:4): avc:  denied  { setrlimit } for  pid=330 comm=\"systemd-udevd\" scontext=system_u:system_r:udev_t:s0 tcontext=system_u:system_r:udev_t:s0 tclass=process permissive=1",
            ]),
            export_entry(&["MESSAGE=Started auditd.service - Security Auditing Service."]),
            export_entry(&[
                "_SOURCE_REALTIME_TIMESTAMP=1800000060002000",
                "_AUDIT_ID=41",
                "MESSAGE=AVC avc:  denied  { search } for  pid=602 comm=\"30-systemd-envi\" name=\"sddm\" dev=\"dm-0\" ino=17790 scontext=system_u:system_r:systemd_generator_t:s0 tcontext=system_u:object_r:xkb_var_lib_t:s0 tclass=dir permissive=1",
            ]),
            export_entry(&[
                "_SOURCE_REALTIME_TIMESTAMP=1800000060002000",
                "_AUDIT_ID=41",
                "MESSAGE=AVC avc:  denied  { getattr } for  pid=602 comm=\"30-systemd-envi\" path=\"/var/lib/sddm\" dev=\"dm-0\" ino=17790 scontext=system_u:system_r:systemd_generator_t:s0 tcontext=system_u:object_r:xkb_var_lib_t:s0 tclass=dir permissive=1",
            ]),
        ]
        .concat()
        .into_bytes()
    }

    fn read(sources: &[(Form, &[u8])]) -> Denials {
        let mut denials = Denials::default();
        for (form, out) in sources {
            denials.add(form, out);
        }
        denials
    }

    fn pattern(re: &str) -> Pattern {
        Pattern::new(re).unwrap()
    }

    #[test]
    fn audit_log_denials_each_with_its_event_and_decision_text() {
        let denials = read(&[(Form::Lines, AUDIT_LOG_TEXT)]);
        let events: Vec<_> = denials.list.iter().map(|d| d.event.map(|e| (e.millis, e.serial))).collect();
        assert_eq!(
            events,
            [Some((1_800_000_052_310, 30)), Some((1_800_000_060_002, 41)), Some((1_800_000_060_002, 41))]
        );
        assert_eq!(
            denials.list[0].text,
            "avc:  denied  { execmem } for  pid=470 comm=\"Xorg\" scontext=system_u:system_r:xserver_t:s0 \
             tcontext=system_u:system_r:xserver_t:s0 tclass=process permissive=1"
        );
    }

    #[test]
    fn the_journal_holds_each_kernel_denial_twice_and_it_counts_once() {
        let denials = read(&[(Form::JournalExport, &journal_export())]);
        let serials: Vec<_> = denials.list.iter().map(|d| d.event.unwrap().serial).collect();
        assert_eq!(serials, [3, 4, 41, 41]);
    }

    #[test]
    fn audit_log_and_journal_together_are_every_denial_once() {
        let denials = read(&[(Form::Lines, AUDIT_LOG_TEXT), (Form::JournalExport, &journal_export())]);
        assert_eq!(denials.list.len(), 5, "{:#?}", denials.list);
        let outcome = denials.judge(&[], "/var/log/audit/audit.log and the journal", "permissive");
        assert_eq!(outcome.verdict, Verdict::Failed);
        let lines: Vec<&str> = outcome.message.lines().collect();
        assert_eq!(lines[0], "5 denials in /var/log/audit/audit.log and the journal (SELinux permissive):");
        assert!(
            lines[1].starts_with("avc:  denied  { mount } for  pid=318 comm=\"mount\" "),
            "earliest first"
        );
        assert!(lines[2].contains("{ setrlimit }"), "{}", lines[2]);
        assert!(lines[3].contains("{ execmem }"), "{}", lines[3]);
        assert_eq!(lines.len(), 6);
    }

    #[test]
    fn the_kernel_log_alone_and_the_same_serial_in_another_boot() {
        let denials = read(&[(Form::Lines, KERNEL_LOG_TEXT)]);
        assert_eq!(denials.list.len(), 2);
        // A later boot numbers its events from 1 again: the time tells them apart.
        let later = KERNEL_LOG_TEXT.to_vec();
        let later = String::from_utf8(later).unwrap().replace("audit(18000000", "audit(18000100");
        let denials = read(&[(Form::Lines, KERNEL_LOG_TEXT), (Form::Lines, later.as_bytes())]);
        assert_eq!(denials.list.len(), 4);
    }

    #[test]
    fn the_allow_list_matches_the_decision_text_and_says_what_it_let_through() {
        let denials = || read(&[(Form::Lines, AUDIT_LOG_TEXT), (Form::Lines, KERNEL_LOG_TEXT)]);
        let some = [pattern(r#"comm="30-systemd-envi" .* tcontext=\S+:xkb_var_lib_t:"#)];
        let outcome = denials().judge(&some, "x", "enforcing");
        assert_eq!(outcome.verdict, Verdict::Failed);
        assert!(
            outcome.message.starts_with("3 denials in x (SELinux enforcing), 2 more in the allow-list:\n"),
            "{}",
            outcome.message
        );
        let all = [pattern(r"scontext=system_u:system_r:(xserver|systemd_generator|mount|udev)_t:")];
        let outcome = denials().judge(&all, "x", "permissive");
        assert_eq!(outcome.verdict, Verdict::Passed);
        assert_eq!(outcome.message, "5 denials in x (SELinux permissive), all in the allow-list");
        assert_eq!(Denials::default().judge(&[], "x", "enforcing").message, "none in x (SELinux enforcing)");
    }

    #[test]
    fn a_long_list_is_cut() {
        let many: String = (1..=8)
            .map(|n| format!("type=AVC msg=audit(1800000050.000:{n}): avc:  denied  {{ read }} for  pid={n} comm=\"c\" tclass=file permissive=0\n"))
            .collect();
        let outcome = read(&[(Form::Lines, many.as_bytes())]).judge(&[], "x", "enforcing");
        assert_eq!(outcome.message.lines().count(), 1 + SHOWN + 1);
        assert!(outcome.message.ends_with("\n... and 3 more"), "{}", outcome.message);
    }

    #[test]
    fn grants_and_policy_notices_are_no_denials() {
        let text = b"type=AVC msg=audit(1800000050.000:7): avc:  granted  { setenforce } for  pid=9 comm=\"setenforce\" tclass=security
type=USER_AVC msg=audit(1800000050.100:8): pid=1 uid=0 auid=4294967295 ses=4294967295 subj=system_u:system_r:init_t:s0 msg='avc:  received policyload notice (seqno=2)  exe=\"/usr/lib/systemd/systemd\" sauid=0 hostname=? addr=? terminal=?'
";
        assert!(read(&[(Form::Lines, text)]).list.is_empty());
    }

    #[test]
    fn the_mode_is_read_from_enforce() {
        assert_eq!(mode(b"0"), "permissive");
        assert_eq!(mode(b"1\n"), "enforcing");
        assert_eq!(mode(b""), "in an unknown mode");
    }
}
