//! The phase of each boot in a log (starting, up, shutting down), followed from the
//! markers that systemd, logind and the kernel write, so that the rules can judge a
//! message by when it came: SIGTERM at power-off kills what a running system must keep.
//!
//! Owns: which messages mark a phase, and where one boot ends and the next begins.
//! Must not: parse log formats (the carriers hand their messages in), or judge messages
//! (that is `rules`, which asks [`Phases::current`]).
//!
//! Only what the log shows is claimed. A log starts with no phase; a journal's boot is in
//! [`Phase::Startup`] from its kernel banner and [`Phase::Running`] from PID 1's
//! `Startup finished`. A kernel log (dmesg, a console) never shows that line, so after
//! its banner the phase stays unknown until the shutdown's own markers.

use super::Phase;

/// PID 1 reached a target that only a going-down system reaches: shutdown.target comes
/// before umount, final and poweroff/reboot, so it is the one to look for. systemd >= 247
/// names the unit, older ones give its description only.
const SHUTDOWN_REACHED: &[&[u8]] = &[b"Reached target shutdown.target", b"Reached target Shutdown."];

/// Targets of the boot itself that PID 1 stops only when the system leaves its running
/// state (power-off, reboot, `systemctl isolate` of a smaller target). Not any target:
/// device-bound ones such as bluetooth.target or sound.target stop whenever their
/// device goes away (a suspend, an unplugged adapter), on a system that stays up.
const BOOT_TARGETS: &[&[u8]] = &[
    b"graphical.target",
    b"multi-user.target",
    b"getty.target",
    b"timers.target",
    b"basic.target",
    b"sysinit.target",
    b"Graphical Interface.",
    b"Multi-User System.",
    b"Basic System.",
    b"System Initialization.",
];

/// What logind logs (MESSAGE_ID 98268866d1d54a499c4e98921d93bc40, "System shutdown
/// initiated") when it starts a power-off, reboot, halt or kexec, which `systemctl`,
/// the power button and desktops all go through. It comes before systemd stops a unit.
const LOGIND_SHUTDOWN: &[&[u8]] =
    &[b"System is powering down", b"System is rebooting", b"System is halting", b"System is soft-rebooting"];

/// The phase of the boot being read, message by message.
#[derive(Debug, Default)]
pub struct Phases {
    current: Option<Phase>,
    /// The `_BOOT_ID` of the last journal entry that had one.
    boot_id: Vec<u8>,
}

impl Phases {
    /// The phase of the message handed in last; `None` when the log has not shown it.
    pub fn current(&self) -> Option<Phase> {
        self.current
    }

    /// A boundary between two boots (journalctl's `-- Boot ID --` or `-- Reboot --`, a
    /// new `_BOOT_ID`, firmware output): nothing is known of the new boot until its own
    /// markers come.
    pub fn new_boot(&mut self) {
        self.current = None;
    }

    /// The `_BOOT_ID` of a journal entry; a change is a new boot.
    pub fn boot_id(&mut self, id: &[u8]) {
        if id != self.boot_id.as_slice() {
            self.boot_id.clear();
            self.boot_id.extend_from_slice(id);
            self.new_boot();
        }
    }

    /// One journal message, by who wrote it: `pid` is `_PID` (else `SYSLOG_PID`), which
    /// tells PID 1 apart from the user managers that log the same lines for their own
    /// targets (a user's `Reached target shutdown.target` is a logout).
    pub fn journal(&mut self, identifier: &[u8], pid: Option<&[u8]>, text: &[u8]) {
        match identifier {
            b"systemd" if pid == Some(b"1") => self.manager(text),
            b"systemd-logind" if starts_with_any(text, LOGIND_SHUTDOWN) => self.going_down(),
            b"systemd-shutdown" => self.going_down(),
            b"kernel" if text.starts_with(b"Linux version ") => self.current = Some(Phase::Startup),
            _ => {}
        }
    }

    /// One message of a kernel log: dmesg, or any line of a serial console, where
    /// systemd also prints its status lines (`[  OK  ] Reached target ...`, always PID
    /// 1's), and where PID 1, `systemd-shutdown` and the kernel write once the journal has
    /// stopped. Only the shutdown is claimed: PID 1 writes to the kernel log until
    /// journald runs, so its banner is there but never its `Startup finished`.
    pub fn kernel_log(&mut self, message: &[u8]) {
        let pid_1 = message.strip_prefix(b"[  OK  ] ").or_else(|| message.strip_prefix(b"systemd[1]: "));
        if message.starts_with(b"Linux version ") {
            self.new_boot();
        } else if message.starts_with(b"systemd-shutdown[")
            || message.starts_with(b"reboot: ")
            || pid_1.is_some_and(|text| starts_with_any(text, SHUTDOWN_REACHED))
        {
            self.going_down();
        }
    }

    /// A message of the system manager, PID 1.
    fn manager(&mut self, text: &[u8]) {
        let phase = self.current;
        if text.starts_with(b"Startup finished in ") {
            if phase != Some(Phase::Shutdown) {
                self.current = Some(Phase::Running);
            }
        } else if starts_with_any(text, SHUTDOWN_REACHED) {
            self.going_down();
        } else if let Some(target) = text.strip_prefix(b"Stopped target ") {
            // Only once the boot has finished: the initrd stops its targets too, for
            // the switch to the real root, and never logs `Startup finished`.
            if phase == Some(Phase::Running) && starts_with_any(target, BOOT_TARGETS) {
                self.going_down();
            }
        } else if text.starts_with(b"systemd ")
            && memchr::memmem::find(text, b" running in system mode").is_some()
        {
            // PID 1's banner: a boot whose kernel lines are not in this log, or a
            // soft-reboot's new userspace (same boot ID). A daemon-reexec of a running
            // system logs it too, and changes nothing.
            if matches!(phase, None | Some(Phase::Shutdown)) {
                self.current = Some(Phase::Startup);
            }
        }
    }

    fn going_down(&mut self) {
        self.current = Some(Phase::Shutdown);
    }
}

fn starts_with_any(text: &[u8], prefixes: &[&[u8]]) -> bool {
    prefixes.iter().any(|p| text.starts_with(p))
}

#[cfg(test)]
mod tests;
