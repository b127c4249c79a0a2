//! A [`Plan`]: everything QEMU will be told, decided from a profile, the image to boot
//! and the host's facts, before anything runs. Building it is pure, so that the argv of
//! every shipped profile can be golden-tested.

use std::path::PathBuf;

use crate::host::accel::Accel;
use crate::host::ovmf::FirmwarePair;
use crate::profile::{
    AgentKind, DirectKernel, DiskFormat, DiskInterface, Display, End, Machine, Network, Profile, Tpm,
};

use super::rundir::RunLayout;

/// The mount tag of the per-run read-write share.
pub const SHARE_TAG: &str = "bootproof";

/// Where the guest reaches bootproof's servers under `network = "restricted"`:
/// an address of QEMU's user network that only `guestfwd` forwards answer on.
pub const SERVER_IP: &str = "10.0.2.100";

/// What the host contributes to a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub qemu: PathBuf,
    pub accel: Accel,
    /// The resolved firmware; `None` boots SeaBIOS.
    pub firmware: Option<FirmwarePair>,
    /// How the shares store ownership, modes and special files (see `share`).
    pub share_security: ShareSecurity,
    /// `/dev/vhost-vsock` exists, so vsock can use the kernel's vhost-vsock instead
    /// of vhost-device-vsock.
    pub kernel_vsock: bool,
    /// QEMU has virtio-9p (`-fsdev local`); RHEL-family `qemu-kvm` has not.
    pub virtfs: bool,
    /// `BOOTPROOF_SHARE_BACKEND`, which overrides every profile's `share_backend`.
    pub share_backend_override: Option<crate::profile::ShareBackend>,
    /// The `bootproof` program that runs `share-server` and `share-relay` for the p9
    /// backend (see [`crate::share::find_program`]).
    pub bootproof_program: Option<PathBuf>,
}

#[cfg(test)]
impl HostFacts {
    /// A TCG host with virtfs, no firmware and no bootproof program, for unit tests
    /// to change what they are about.
    pub(crate) fn for_tests() -> HostFacts {
        HostFacts {
            qemu: "/q".into(),
            accel: Accel::Tcg,
            firmware: None,
            share_security: ShareSecurity::MappedXattr,
            kernel_vsock: false,
            virtfs: true,
            share_backend_override: None,
            bootproof_program: None,
        }
    }
}

/// QEMU 9p `security_model`s bootproof uses. Both store guest symlinks and device
/// nodes as plain files on the host, so nothing a guest writes becomes a host symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareSecurity {
    /// Metadata in `user.virtfs.*` extended attributes.
    MappedXattr,
    /// Metadata in `.virtfs_metadata` files, for file systems without user xattrs.
    MappedFile,
}

impl ShareSecurity {
    pub fn as_str(self) -> &'static str {
        match self {
            ShareSecurity::MappedXattr => "mapped-xattr",
            ShareSecurity::MappedFile => "mapped-file",
        }
    }
}

/// The image given to boot, already classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Image {
    Disk {
        path: PathBuf,
        format: Option<DiskFormat>,
    },
    Iso {
        path: PathBuf,
    },
    /// A new empty disk of this many bytes (`blank:20G`): an installer's target.
    Blank {
        bytes: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drive {
    /// A disk the guest writes to a per-run qcow2 overlay of; `base` is never written.
    Disk { overlay: PathBuf, base: PathBuf, base_format: Option<DiskFormat>, interface: DiskInterface },
    /// A new empty qcow2 disk in the run directory.
    Blank { path: PathBuf, bytes: u64, interface: DiskInterface },
    /// An optical disc, attached read-only.
    Cdrom { path: PathBuf },
}

/// The NIC and what it reaches, under `network = "restricted"`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkPlan {
    /// `SERVER_IP:port` in the guest → a server of bootproof's on host loopback. The
    /// caller adds them once its servers listen (their ports are known then).
    pub forwards: Vec<Forward>,
}

/// One `guestfwd`: TCP connections from the guest to `SERVER_IP:port` go to
/// `127.0.0.1:host_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub port: u16,
    pub host_port: u16,
}

/// A log port: a virtio-serial port whose chardev connects to a socket bootproof
/// listens on, its lines kept in `file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLogPort {
    pub name: String,
    pub socket: PathBuf,
    pub file: PathBuf,
    pub format: Option<crate::profile::LogPortFormat>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFirmware {
    pub code: PathBuf,
    /// The run's own copy of the VARS template.
    pub vars: PathBuf,
    pub vars_template: PathBuf,
    pub smm: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedShare {
    pub tag: String,
    pub path: PathBuf,
    pub readonly: bool,
    /// The guest's TCP port at [`SERVER_IP`] for this share under the p9 backend.
    pub port: u16,
}

/// The first share's port under the p9 backend (9P's registered port); the next
/// shares take the ports after it.
pub const FIRST_SHARE_PORT: u16 = 564;

/// The p9 backend: one `bootproof share-server` per share, reached by the guest with
/// `mount -t 9p -o trans=tcp,port=PORT SERVER_IP` through a `guestfwd` whose `cmd:`
/// runs `bootproof share-relay` per connection. The guest learns the ports from
/// `fw_cfg` (`opt/org.bootproof/shares`: `tag:port` words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareServerPlan {
    pub program: PathBuf,
    /// For the per-run read-write share.
    pub quota: Option<u64>,
}

/// The guest agent channels a machine gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AgentPlan {
    /// virtio-serial port `org.qemu.guest_agent.0` on `qga.sock`.
    pub qga: bool,
    /// virtio console port `org.bootproof.shell.0` on `shell.sock`.
    pub shell: bool,
    pub vsock: Option<VsockDevice>,
}

/// How the guest's vsock reaches the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VsockDevice {
    /// vhost-user-vsock-pci served by a supervised vhost-device-vsock; needs guest
    /// memory QEMU can share with it.
    VhostUser,
    /// The kernel's vhost-vsock-pci with this guest context id.
    Kernel { cid: u32 },
}

impl AgentPlan {
    fn new(kind: AgentKind, kernel_vsock: bool, layout: &RunLayout) -> AgentPlan {
        let vsock = || {
            Some(if kernel_vsock {
                VsockDevice::Kernel { cid: cid_for(layout) }
            } else {
                VsockDevice::VhostUser
            })
        };
        match kind {
            AgentKind::None => AgentPlan::default(),
            AgentKind::Auto => AgentPlan { qga: true, shell: true, vsock: None },
            AgentKind::Qga => AgentPlan { qga: true, ..AgentPlan::default() },
            AgentKind::Shell => AgentPlan { shell: true, ..AgentPlan::default() },
            AgentKind::Vsock => AgentPlan { vsock: vsock(), ..AgentPlan::default() },
        }
    }

    pub fn any(&self) -> bool {
        self.qga || self.shell || self.vsock.is_some()
    }
}

/// A context id for the kernel's vhost-vsock, unique per run directory (ids 0-2 are
/// reserved); two VMs on one host must not share one.
fn cid_for(layout: &RunLayout) -> u32 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(layout.dir.as_os_str().as_encoded_bytes());
    3 + u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]) % 0x7fff_0000
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    pub qemu: PathBuf,
    pub accel: Accel,
    pub machine: Machine,
    pub memory_mib: u64,
    pub cpus: u32,
    pub firmware: Option<PlannedFirmware>,
    pub tpm: bool,
    pub display: Display,
    pub allow_reboot: bool,
    pub acpi_s3: bool,
    /// In boot order: an ISO first (installers), then the image, then profile disks.
    pub drives: Vec<Drive>,
    pub kernel: Option<DirectKernel>,
    pub shares: Vec<PlannedShare>,
    pub share_security: ShareSecurity,
    /// `Some` for the p9 backend (no virtio-9p device), `None` for virtfs.
    pub share_server: Option<ShareServerPlan>,
    pub extra_args: Vec<String>,
    pub agent: AgentPlan,
    pub network: Option<NetworkPlan>,
    pub log_ports: Vec<PlannedLogPort>,
    pub end: End,
    pub layout: RunLayout,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "log port `{name}`: {why}; a port needs a name of letters, digits and `._-`, and a file \
         relative to the run directory without `..`"
    )]
    BadLogPort { name: String, why: &'static str },
    #[error("profile `{profile}` needs UEFI firmware, but none was resolved")]
    NoFirmware { profile: String },
    #[error("share tag `{tag}` is used twice (the per-run share is `{SHARE_TAG}`); tags must be unique")]
    DuplicateShareTag { tag: String },
    #[error(
        "profile `{profile}` asks for share_backend = \"virtfs\", but {qemu} has no virtio-9p \
         device (RHEL-family qemu-kvm is built without it); use share_backend = \"p9\" or \"auto\""
    )]
    NoVirtfs { profile: String, qemu: PathBuf },
    #[error(
        "profile `{profile}` sets share_quota, which only bootproof's own share server enforces; \
         use share_backend = \"p9\" or \"auto\" (the backend asked for is virtfs)"
    )]
    QuotaNeedsP9 { profile: String },
    #[error(
        "profile `{profile}` needs the p9 share backend ({why}), which runs `bootproof \
         share-server`, but no bootproof program was found: not this program, not beside it \
         (target/<profile>/bootproof after `cargo build`), not on PATH; build or install it, \
         or set BOOTPROOF_PROGRAM to its path"
    )]
    NoShareServer { profile: String, why: &'static str },
    #[error(
        "profile `{profile}` attaches {count} IDE devices (discs and `interface = \"ide\"` disks), \
         but a {} machine has room for {max}; use virtio, nvme or scsi for the disks",
        machine.as_str()
    )]
    TooManyIde { profile: String, machine: Machine, count: usize, max: usize },
}

impl Plan {
    pub fn new(
        profile: &Profile,
        image: Option<&Image>,
        host: &HostFacts,
        layout: &RunLayout,
    ) -> Result<Plan, PlanError> {
        let firmware = match (&host.firmware, profile.firmware.is_uefi()) {
            (_, false) => None,
            (Some(fw), true) => Some(PlannedFirmware {
                code: fw.code.clone(),
                vars: layout.vars(),
                vars_template: fw.vars.clone(),
                smm: fw.requires_smm,
            }),
            (None, true) => {
                return Err(PlanError::NoFirmware { profile: profile.name.clone() });
            }
        };
        let share_server = share_server(profile, host)?;
        let drives = drives(profile, image, layout);
        let ide = drives
            .iter()
            .filter(|d| {
                matches!(
                    d,
                    Drive::Cdrom { .. }
                        | Drive::Disk { interface: DiskInterface::Ide, .. }
                        | Drive::Blank { interface: DiskInterface::Ide, .. }
                )
            })
            .count();
        let max = super::argv::ide_slots(profile.machine);
        if ide > max {
            let (name, machine) = (profile.name.clone(), profile.machine);
            return Err(PlanError::TooManyIde { profile: name, machine, count: ide, max });
        }
        Ok(Plan {
            name: profile.name.clone(),
            qemu: host.qemu.clone(),
            accel: host.accel,
            machine: profile.machine,
            memory_mib: profile.memory,
            cpus: profile.cpus,
            firmware,
            tpm: profile.tpm == Tpm::V2,
            display: profile.display,
            allow_reboot: profile.allow_reboot,
            acpi_s3: profile.acpi_s3,
            drives,
            kernel: profile.kernel.clone(),
            shares: shares(profile, layout)?,
            share_security: host.share_security,
            share_server: share_server.clone(),
            extra_args: profile.extra_args.clone(),
            agent: AgentPlan::new(profile.agent, host.kernel_vsock, layout),
            network: (profile.network == Network::Restricted || share_server.is_some())
                .then(NetworkPlan::default),
            log_ports: log_ports(profile, layout)?,
            end: profile.end,
            layout: layout.clone(),
        })
    }
}

fn log_ports(profile: &Profile, layout: &RunLayout) -> Result<Vec<PlannedLogPort>, PlanError> {
    let mut ports: Vec<PlannedLogPort> = Vec::new();
    for (i, p) in profile.log_ports.iter().enumerate() {
        let bad = |why| PlanError::BadLogPort { name: p.name.clone(), why };
        let plain = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
        if p.name.is_empty() || !p.name.chars().all(plain) {
            return Err(bad("the name has other characters"));
        }
        let confined = p.file.components().all(|c| matches!(c, std::path::Component::Normal(_)));
        if !confined || p.file.as_os_str().is_empty() {
            return Err(bad("the file leaves the run directory"));
        }
        if ports.iter().any(|q| q.name == p.name || q.file == layout.dir.join(&p.file)) {
            return Err(bad("used twice"));
        }
        ports.push(PlannedLogPort {
            name: p.name.clone(),
            socket: layout.log_port_socket(i),
            file: layout.dir.join(&p.file),
            format: p.format(),
        });
    }
    Ok(ports)
}

fn drives(profile: &Profile, image: Option<&Image>, layout: &RunLayout) -> Vec<Drive> {
    let mut drives = Vec::new();
    if let Some(Image::Blank { bytes }) = image {
        let path = layout.overlay(0);
        drives.push(Drive::Blank { path, bytes: *bytes, interface: DiskInterface::Virtio });
    }
    let mut disk = |base: &PathBuf, base_format, interface| {
        let overlay = layout.overlay(drives.len());
        drives.push(Drive::Disk { overlay, base: base.clone(), base_format, interface });
    };
    let mut disks_first = Vec::new();
    if let Some(Image::Disk { path, format }) = image {
        disks_first.push((path, *format, DiskInterface::Virtio));
    }
    disks_first.extend(profile.disks.iter().map(|d| (&d.path, d.format, d.interface)));
    for (path, format, interface) in disks_first {
        disk(path, format, interface);
    }
    let mut cdroms: Vec<Drive> = Vec::new();
    if let Some(Image::Iso { path }) = image {
        cdroms.push(Drive::Cdrom { path: path.clone() });
    }
    if let Some(c) = &profile.cdrom {
        cdroms.push(Drive::Cdrom { path: c.clone() });
    }
    cdroms.extend(drives);
    cdroms
}

fn shares(profile: &Profile, layout: &RunLayout) -> Result<Vec<PlannedShare>, PlanError> {
    let mut shares = vec![PlannedShare {
        tag: SHARE_TAG.to_string(),
        path: layout.share_dir(),
        readonly: false,
        port: FIRST_SHARE_PORT,
    }];
    for s in &profile.shares {
        if shares.iter().any(|x| x.tag == s.tag) {
            return Err(PlanError::DuplicateShareTag { tag: s.tag.clone() });
        }
        let port = FIRST_SHARE_PORT + shares.len() as u16;
        shares.push(PlannedShare { tag: s.tag.clone(), path: s.path.clone(), readonly: s.readonly, port });
    }
    Ok(shares)
}

/// Which backend serves the shares: the override, else the profile's choice; `auto`
/// is virtfs where QEMU has it and no quota is asked, else p9.
fn share_server(profile: &Profile, host: &HostFacts) -> Result<Option<ShareServerPlan>, PlanError> {
    use crate::profile::ShareBackend;
    let wanted = host.share_backend_override.unwrap_or(profile.share_backend);
    let name = || profile.name.clone();
    let why = match wanted {
        ShareBackend::Virtfs if profile.share_quota.is_some() => {
            return Err(PlanError::QuotaNeedsP9 { profile: name() });
        }
        ShareBackend::Virtfs if !host.virtfs => {
            return Err(PlanError::NoVirtfs { profile: name(), qemu: host.qemu.clone() });
        }
        ShareBackend::Virtfs => return Ok(None),
        ShareBackend::P9 => "share_backend = \"p9\"",
        ShareBackend::Auto if profile.share_quota.is_some() => "share_quota is set",
        ShareBackend::Auto if !host.virtfs => "QEMU has no virtio-9p",
        ShareBackend::Auto => return Ok(None),
    };
    let program = host.bootproof_program.clone().ok_or(PlanError::NoShareServer { profile: name(), why })?;
    Ok(Some(ShareServerPlan { program, quota: profile.share_quota }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn plan(profile: &str, image: Option<&Image>) -> Result<Plan, PlanError> {
        let profile = Profile::parse(profile, Path::new("p.toml")).unwrap();
        Plan::new(&profile, image, &HostFacts::for_tests(), &RunLayout::at("/r"))
    }

    #[test]
    fn the_share_backend_is_the_override_else_the_profiles_else_what_qemu_has() {
        use crate::profile::ShareBackend;
        let host = |virtfs: bool, over: Option<ShareBackend>, program: bool| HostFacts {
            virtfs,
            share_backend_override: over,
            bootproof_program: program.then(|| "/b/bootproof".into()),
            ..HostFacts::for_tests()
        };
        let plan_on = |text: &str, h: &HostFacts| {
            let profile = Profile::parse(text, Path::new("p.toml")).unwrap();
            Plan::new(&profile, None, h, &RunLayout::at("/r"))
        };
        let bios = "firmware = \"bios\"\n";
        // auto: virtfs where QEMU has it...
        let p = plan_on(bios, &host(true, None, true)).unwrap();
        assert_eq!((p.share_server, p.network), (None, None));
        // ...p9 where it has not, which brings the restricted network with it.
        let p = plan_on(bios, &host(false, None, true)).unwrap();
        assert_eq!(p.share_server.unwrap().program, Path::new("/b/bootproof"));
        assert!(p.network.is_some());
        // A quota needs bootproof's server.
        let quota = format!("{bios}share_quota = \"64M\"\n");
        assert_eq!(
            plan_on(&quota, &host(true, None, true)).unwrap().share_server.unwrap().quota,
            Some(64 << 20)
        );
        let e =
            plan_on(&format!("{quota}share_backend = \"virtfs\"\n"), &host(true, None, true)).unwrap_err();
        assert!(e.to_string().contains("only bootproof's own share server enforces"), "{e}");
        // virtfs asked of a QEMU without it.
        let e =
            plan_on(&format!("{bios}share_backend = \"virtfs\"\n"), &host(false, None, true)).unwrap_err();
        assert!(e.to_string().contains("/q has no virtio-9p device"), "{e}");
        // The override beats the profile, both ways.
        let virtfs = format!("{bios}share_backend = \"virtfs\"\n");
        assert!(plan_on(&virtfs, &host(true, Some(ShareBackend::P9), true)).unwrap().share_server.is_some());
        let p9 = format!("{bios}share_backend = \"p9\"\n");
        assert!(plan_on(&p9, &host(true, Some(ShareBackend::Virtfs), true)).unwrap().share_server.is_none());
        // p9 without a bootproof program to run says how to get one.
        let e = plan_on(&p9, &host(true, None, false)).unwrap_err().to_string();
        assert!(e.contains("share_backend = \"p9\"") && e.contains("BOOTPROOF_PROGRAM"), "{e}");
        // Each share gets its own port, in order.
        let shares =
            format!("{p9}[[share]]\ntag = \"a\"\npath = \"/a\"\n[[share]]\ntag = \"b\"\npath = \"/b\"\n");
        let ports: Vec<u16> =
            plan_on(&shares, &host(true, None, true)).unwrap().shares.iter().map(|s| s.port).collect();
        assert_eq!(ports, [564, 565, 566]);
    }

    #[test]
    fn ide_devices_beyond_the_machines_slots_are_refused() {
        let disks = |n: usize| "[[disk]]\npath = \"/d.raw\"\ninterface = \"ide\"\n".repeat(n);
        let iso = Image::Iso { path: "/i.iso".into() };
        assert!(plan(&format!("firmware = \"bios\"\n{}", disks(5)), Some(&iso)).is_ok());
        let e = plan(&format!("firmware = \"bios\"\n{}", disks(6)), Some(&iso)).unwrap_err().to_string();
        assert!(e.contains("7 IDE devices") && e.contains("room for 6"), "{e}");
        let pc = format!("machine = \"pc\"\nfirmware = \"bios\"\n{}", disks(4));
        let e = plan(&pc, Some(&iso)).unwrap_err().to_string();
        assert!(e.contains("5 IDE devices") && e.contains("a pc machine has room for 4"), "{e}");
    }
}
