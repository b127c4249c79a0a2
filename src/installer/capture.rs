//! Log capture for the Debian installer, as preseed hooks: what bootproof adds to
//! `preseed/early_command` and `preseed/late_command` so every installer log comes
//! home, live and after the install (the anaconda equivalent is
//! `overlay/kickstart/bootproof-capture.ks`).
//!
//! Live: the early command finds the virtio-serial port of each `di-syslog` log port
//! by its name in sysfs and starts `tail -f` of d-i's `/var/log/syslog` into it, in the
//! background, detached from the hook's output (d-i's `log-output` would otherwise
//! wait for it). After the install: the late command mounts the run's share and
//! copies the installer's logs into `installer/d-i/`.
//!
//! Must not: answer any question of the installer (the preseed template does).

use crate::profile::LogPortFormat;
use crate::vm::plan::{PlannedLogPort, SHARE_TAG};

/// Hooks for a run's log ports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    pub early: Vec<String>,
    pub late: Vec<String>,
}

/// The early command for each `di-syslog` port, and the share copy at the end.
pub fn for_ports(ports: &[PlannedLogPort]) -> Hooks {
    let early = ports
        .iter()
        .filter(|p| p.format == Some(LogPortFormat::DiSyslog))
        .map(|p| {
            format!(
                "for p in /sys/class/virtio-ports/vport*; do [ \"$(cat $p/name)\" = {} ] && d=/dev/${{p##*/}}; done; \
                 [ -n \"$d\" ] && (tail -n +1 -f /var/log/syslog </dev/null >$d 2>/dev/null &)",
                p.name
            )
        })
        .collect();
    let late = vec![format!(
        "modprobe 9pnet_virtio; modprobe 9p; mkdir -p /mnt/bootproof && \
         mount -t 9p -o trans=virtio,version=9p2000.L {SHARE_TAG} /mnt/bootproof && \
         mkdir -p /mnt/bootproof/installer/d-i && \
         cp -r /var/log/syslog /var/log/partman /var/log/installer /mnt/bootproof/installer/d-i/ 2>/dev/null; \
         sync; umount /mnt/bootproof"
    )];
    Hooks { early, late }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syslog_port_gets_a_tail_and_every_run_the_share_copy() {
        let port = |format| PlannedLogPort {
            name: "org.bootproof.installer.syslog.0".into(),
            socket: "/r/log0.sock".into(),
            file: "/r/installer/syslog".into(),
            format,
        };
        let hooks = for_ports(&[port(Some(LogPortFormat::DiSyslog)), port(None)]);
        assert_eq!(hooks.early.len(), 1);
        assert!(hooks.early[0].contains("= org.bootproof.installer.syslog.0 ]"), "{}", hooks.early[0]);
        assert!(
            hooks.early[0].contains("tail -n +1 -f /var/log/syslog </dev/null >$d"),
            "{}",
            hooks.early[0]
        );
        assert!(hooks.late[0].contains("mount -t 9p") && hooks.late[0].contains("installer/d-i"));
        assert!(
            hooks.early.iter().chain(&hooks.late).all(|c| !c.contains('\n')),
            "preseed answers are one line"
        );
    }
}
