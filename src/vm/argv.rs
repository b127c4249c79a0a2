//! The QEMU command line, built from a [`Plan`] by a pure function: one small function
//! per device group, each saying why its flags are what they are.

use std::ffi::OsString;

use crate::host::accel::Accel;
use crate::profile::{DiskInterface, Display, Machine};

use super::plan::{Drive, Plan, VsockDevice};

/// The full argv, program first.
pub fn argv(plan: &Plan) -> Vec<OsString> {
    let mut a = Args(vec![plan.qemu.clone().into_os_string()]);
    base_args(&mut a, plan);
    firmware_args(&mut a, plan);
    channel_args(&mut a, plan);
    display_args(&mut a, plan);
    tpm_args(&mut a, plan);
    drive_args(&mut a, plan);
    kernel_args(&mut a, plan);
    share_args(&mut a, plan);
    agent_serial_args(&mut a, plan);
    log_port_args(&mut a, plan);
    vsock_args(&mut a, plan);
    network_args(&mut a, plan);
    a.0.extend(plan.extra_args.iter().map(OsString::from));
    a.0
}

struct Args(Vec<OsString>);

impl Args {
    fn push(&mut self, flag: &str, value: impl Into<OsString>) {
        self.0.push(flag.into());
        self.0.push(value.into());
    }
    fn flag(&mut self, flag: &str) {
        self.0.push(flag.into());
    }
}

fn path_value(prefix: &str, path: &std::path::Path, suffix: &str) -> OsString {
    let mut s = OsString::from(prefix);
    s.push(escape_commas(path));
    s.push(suffix);
    s
}

/// QEMU option values are comma-separated; a literal comma is written twice.
fn escape_commas(path: &std::path::Path) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let bytes = path.as_os_str().as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

/// `-nodefaults` so that every device is one bootproof asked for (no stray NIC, no
/// empty DVD drive that OVMF tries first). Guests get no network at all (`-nic none`).
/// Under TCG the CPU model is `max`: the default `qemu64` lacks x86-64-v2, which
/// current distribution kernels require, and the translation cache is
/// [`TCG_TB_SIZE_MIB`]. Without `allow_reboot`, a reboot ends QEMU.
fn base_args(a: &mut Args, plan: &Plan) {
    a.push("-name", format!("bootproof-{},process=bootproof-{}", plan.name, plan.name));
    a.flag("-nodefaults");
    a.flag("-no-user-config");
    let smm = plan.firmware.as_ref().is_some_and(|f| f.smm);
    let machine = match (plan.machine, smm) {
        (Machine::Q35, true) => "q35,smm=on".to_string(),
        (Machine::Q35, false) => "q35,smm=off".to_string(),
        (Machine::Pc, _) => "pc".to_string(),
    };
    a.push("-machine", machine);
    // S3 in the ACPI tables only when the profile asks: QEMU's own default (offered,
    // on both machines in 7.2) differs from libvirt's (disabled) and has changed
    // before, so bootproof always says which.
    let pm = match plan.machine {
        Machine::Q35 => "ICH9-LPC",
        Machine::Pc => "PIIX4_PM",
    };
    a.push("-global", format!("{pm}.disable_s3={}", u8::from(!plan.acpi_s3)));
    a.push("-accel", accel_value(plan.accel));
    a.push("-cpu", if plan.accel == Accel::Kvm { "host" } else { "max" });
    a.push("-m", plan.memory_mib.to_string());
    a.push("-smp", plan.cpus.to_string());
    if plan.network.is_none() {
        a.push("-nic", "none");
    }
    if !plan.allow_reboot {
        a.flag("-no-reboot");
    }
}

/// TCG's translation cache, MiB, instead of QEMU's default of 1 GiB. Measured on the
/// 2-core development host (QEMU 7.2) with the installed system under swtpm: with the
/// default, the first boot reached its login prompt 91–101 s after QEMU started, and
/// after each guest reboot OVMF took 24–95 s instead of 5 s to reach the kernel, once
/// more than 7 minutes; with 64 MiB, 52–61 s and 4–5 s (`luks-tpm-unlock`, three
/// boots: 339 s before, 223 s after). A smaller cache is flushed whole more often;
/// here that costs far less than whatever slows the large one (not pinned down: host
/// page faults in a 1 GiB buffer, or a previous boot's translations kept after a reset).
pub const TCG_TB_SIZE_MIB: u32 = 64;

fn accel_value(accel: Accel) -> String {
    match accel {
        Accel::Kvm => accel.as_str().to_string(),
        Accel::Tcg => format!("tcg,tb-size={TCG_TB_SIZE_MIB}"),
    }
}

/// OVMF as two pflash drives: CODE read-only, VARS the run's own copy. Secure Boot
/// builds need SMM and the secure pflash property, or OVMF refuses to start.
fn firmware_args(a: &mut Args, plan: &Plan) {
    let Some(fw) = &plan.firmware else { return };
    if fw.smm {
        a.push("-global", "driver=cfi.pflash01,property=secure,value=on");
    }
    a.push("-drive", path_value("if=pflash,format=raw,unit=0,readonly=on,file=", &fw.code, ""));
    a.push("-drive", path_value("if=pflash,format=raw,unit=1,file=", &fw.vars, ""));
}

/// Serial console and QMP connect to sockets bootproof already listens on (QEMU is the
/// client), so not one byte is written before someone reads it, and no start-up race
/// with socket files exists.
fn channel_args(a: &mut Args, plan: &Plan) {
    let l = &plan.layout;
    a.push("-chardev", path_value("socket,id=serial0,path=", &l.serial_socket(), ""));
    a.push("-serial", "chardev:serial0");
    a.push("-chardev", path_value("socket,id=qmp,path=", &l.qmp_socket(), ""));
    a.push("-mon", "chardev=qmp,mode=control");
}

/// Never a window: a framebuffer only when screenshots are wanted.
fn display_args(a: &mut Args, plan: &Plan) {
    a.push("-display", "none");
    match plan.display {
        Display::None => a.push("-vga", "none"),
        Display::Std => a.push("-vga", "std"),
    }
}

/// swtpm on a socket in the run dir; CRB on q35 (what current guests expect), TIS on pc.
fn tpm_args(a: &mut Args, plan: &Plan) {
    if !plan.tpm {
        return;
    }
    a.push("-chardev", path_value("socket,id=chrtpm,path=", &plan.layout.tpm_socket(), ""));
    a.push("-tpmdev", "emulator,id=tpm0,chardev=chrtpm");
    let device = match plan.machine {
        Machine::Q35 => "tpm-crb,tpmdev=tpm0",
        Machine::Pc => "tpm-tis,tpmdev=tpm0",
    };
    a.push("-device", device);
}

/// Every disk is a per-run qcow2 overlay, so the user's image is never written; discs
/// are read-only. Boot order follows the plan's drive order, from
/// [`first_drive_bootindex`] on; IDE devices get the slots of [`ide_slot`].
fn drive_args(a: &mut Args, plan: &Plan) {
    let mut scsi_bus = false;
    let mut ide = 0;
    let mut next_ide = || {
        ide += 1;
        ide_slot(plan.machine, ide - 1)
    };
    let first = first_drive_bootindex(plan);
    for (i, drive) in plan.drives.iter().enumerate() {
        let id = format!("drive{i}");
        let boot = format!(",bootindex={}", first + i);
        match drive {
            Drive::Cdrom { path } => {
                let opts = format!(",format=raw,if=none,id={id},media=cdrom,readonly=on");
                a.push("-drive", path_value("file=", path, &opts));
                a.push("-device", format!("ide-cd,drive={id}{}{boot}", next_ide()));
            }
            Drive::Disk { overlay: disk, interface, .. } | Drive::Blank { path: disk, interface, .. } => {
                a.push("-drive", path_value("file=", disk, &format!(",format=qcow2,if=none,id={id}")));
                let device = match interface {
                    DiskInterface::Virtio => format!("virtio-blk-pci,drive={id}{boot}"),
                    DiskInterface::Nvme => format!("nvme,drive={id},serial=bootproof{i}{boot}"),
                    DiskInterface::Ide => format!("ide-hd,drive={id}{}{boot}", next_ide()),
                    DiskInterface::Scsi => {
                        if !scsi_bus {
                            a.push("-device", "virtio-scsi-pci,id=scsi0");
                            scsi_bus = true;
                        }
                        format!("scsi-hd,drive={id},bus=scsi0.0{boot}")
                    }
                };
                a.push("-device", device);
            }
        }
    }
}

/// Where the `n`th IDE device (disc or `ide` disk) goes. QEMU does not spread IDE
/// devices over the buses by itself: without `bus=` each lands on `ide.0`, and the
/// second is refused ("Can't create IDE unit 1, bus supports only 1 units" on q35,
/// whose AHCI ports take one device each; "IDE unit 1 is in use" on pc). q35 has six
/// AHCI ports `ide.0`-`ide.5`; pc's PIIX has two buses of two units.
/// [`super::plan::Plan::new`] refuses more than [`ide_slots`].
fn ide_slot(machine: Machine, n: usize) -> String {
    match machine {
        Machine::Q35 => format!(",bus=ide.{n}"),
        Machine::Pc => format!(",bus=ide.{},unit={}", n / 2, n % 2),
    }
}

/// How many IDE devices a machine takes (see [`ide_slot`]).
pub fn ide_slots(machine: Machine) -> usize {
    match machine {
        Machine::Q35 => 6,
        Machine::Pc => 4,
    }
}

/// The boot index of the plan's first drive: 0, or 1 with direct kernel boot.
///
/// `-kernel` makes QEMU add its own loader option ROM (`linuxboot_dma.bin`) at boot
/// index 0 (`x86_load_linux` in QEMU's hw/i386/x86.c), and QEMU refuses to start when
/// a device asks for an index already taken: "The bootindex 0 has already been used".
/// That is how an installer's kernel with a blank disk failed. So the kernel keeps 0,
/// as the thing to boot, and the drives count from 1 in their usual order behind it.
/// SeaBIOS runs that option ROM first; OVMF boots the kernel it reads from fw_cfg
/// ahead of the drives, a bootable disk among them (tests/direct_kernel.rs).
fn first_drive_bootindex(plan: &Plan) -> usize {
    usize::from(plan.kernel.is_some())
}

/// Direct kernel boot: QEMU loads the kernel and initrd itself, and the firmware
/// starts it before any drive (see [`first_drive_bootindex`]).
fn kernel_args(a: &mut Args, plan: &Plan) {
    let Some(k) = &plan.kernel else { return };
    a.push("-kernel", k.kernel.clone());
    if let Some(initrd) = &k.initrd {
        a.push("-initrd", initrd.clone());
    }
    if !k.append.is_empty() {
        a.push("-append", k.append.clone());
    }
}

/// virtio-9p shares with a mapped security model: guest symlinks and device nodes are
/// stored as plain files, so nothing in a share can point the host elsewhere.
///
/// Under the p9 backend there is no 9p device: the guest reads which TCP port serves
/// each tag from `fw_cfg` (`opt/org.bootproof/shares`, words of `tag:port`) and mounts
/// with `trans=tcp` through the restricted network (see [`network_args`]).
fn share_args(a: &mut Args, plan: &Plan) {
    if plan.share_server.is_some() {
        let words: Vec<String> = plan.shares.iter().map(|s| format!("{}:{}", s.tag, s.port)).collect();
        a.push("-fw_cfg", format!("name={SHARES_FW_CFG},string={}", words.join(" ")));
        return;
    }
    for (i, s) in plan.shares.iter().enumerate() {
        let ro = if s.readonly { ",readonly=on" } else { "" };
        let opts = format!(",security_model={}{ro}", plan.share_security.as_str());
        a.push("-fsdev", path_value(&format!("local,id=fsdev{i},path="), &s.path, &opts));
        a.push("-device", format!("virtio-9p-pci,fsdev=fsdev{i},mount_tag={}", s.tag));
    }
}

/// The qemu-guest-agent and shell ports share one virtio-serial bus. Like the console,
/// QEMU connects to sockets bootproof listens on, so a command written before the
/// guest opens its port waits in the socket instead of being lost. The agent shell is
/// a `virtconsole` (guest `/dev/hvc0`, a tty) so any image's getty or shell can serve
/// it; the guest agent's port name is the one qemu-guest-agent looks for.
fn agent_serial_args(a: &mut Args, plan: &Plan) {
    let (qga, shell) = (plan.agent.qga, plan.agent.shell);
    if !qga && !shell {
        return;
    }
    let l = &plan.layout;
    a.push("-device", "virtio-serial-pci,id=agentbus");
    if qga {
        a.push("-chardev", path_value("socket,id=qga0,path=", &l.qga_socket(), ""));
        a.push("-device", "virtserialport,bus=agentbus.0,chardev=qga0,name=org.qemu.guest_agent.0");
    }
    if shell {
        a.push("-chardev", path_value("socket,id=shell0,path=", &l.shell_socket(), ""));
        a.push("-device", "virtconsole,bus=agentbus.0,chardev=shell0,name=org.bootproof.shell.0");
    }
}

/// Log ports on a virtio-serial bus of their own, each connecting to a socket bootproof
/// listens on before QEMU starts (as the console does), so no byte is written before
/// someone reads it. A guest that never opens its port costs nothing.
fn log_port_args(a: &mut Args, plan: &Plan) {
    if plan.log_ports.is_empty() {
        return;
    }
    a.push("-device", "virtio-serial-pci,id=logbus");
    for (i, port) in plan.log_ports.iter().enumerate() {
        a.push("-chardev", path_value(&format!("socket,id=log{i},path="), &port.socket, ""));
        a.push("-device", format!("virtserialport,bus=logbus.0,chardev=log{i},name={}", port.name));
    }
}

/// `network = "restricted"`: a virtio NIC on QEMU's user network with `restrict=on`,
/// which drops every packet the guest sends beyond DHCP and the `guestfwd` forwards
/// (libslirp answers DHCP itself; DNS and everything else go nowhere), so the guest
/// reaches only bootproof's servers on host loopback. No IPv6: nothing needs it.
///
/// Each forward runs `socat` per guest connection (`cmd:`, its stdin and stdout are
/// the connection) to the server's loopback port. The other form, `tcp:HOST:PORT`, is
/// a chardev QEMU opens once when it starts: every guest connection would share that
/// one stream, which no HTTP client survives (measured: QEMU also refuses to start
/// unless the server already listens).
fn network_args(a: &mut Args, plan: &Plan) {
    let Some(net) = &plan.network else { return };
    let mut netdev = netdev_value("net0", &net.forwards);
    if let Some(server) = &plan.share_server {
        for (i, s) in plan.shares.iter().enumerate() {
            // One `share-relay` per guest connection joins it to the share's server.
            // libslirp splits the command as a shell would (`g_shell_parse_argv`), so
            // each path is quoted as for a shell: a program path with a space in it
            // stays one word.
            let relay = format!(
                "{} share-relay {}",
                shell_word(&server.program),
                shell_word(&plan.layout.share_socket(i))
            );
            let ip = super::plan::SERVER_IP;
            netdev.push_str(&format!(",guestfwd=tcp:{ip}:{}-cmd:{}", s.port, relay.replace(',', ",,")));
        }
    }
    a.push("-netdev", netdev);
    a.push("-device", "virtio-net-pci,netdev=net0,romfile=");
}

/// `path` as one word of a POSIX shell command line (quoted only when it must be).
fn shell_word(path: &std::path::Path) -> String {
    let text = path.to_string_lossy();
    shlex::try_quote(&text).map_or_else(|_| format!("'{text}'"), |q| q.into_owned())
}

/// The `-netdev` value of the restricted network with its forwards (also what
/// `bootproof installer serve` prints for a QEMU started by hand).
pub fn netdev_value(id: &str, forwards: &[super::plan::Forward]) -> String {
    let mut netdev = format!("user,id={id},restrict=on,ipv6=off");
    for f in forwards {
        let (ip, port, host_port) = (super::plan::SERVER_IP, f.port, f.host_port);
        netdev.push_str(&format!(",guestfwd=tcp:{ip}:{port}-cmd:socat STDIO TCP:127.0.0.1:{host_port}"));
    }
    netdev
}

/// vsock for the agent. vhost-user-vsock moves the device into vhost-device-vsock,
/// which must map guest memory: hence RAM from a shared memfd, attached as the one
/// NUMA node. The kernel's vhost-vsock needs only a context id.
fn vsock_args(a: &mut Args, plan: &Plan) {
    match plan.agent.vsock {
        None => {}
        Some(VsockDevice::VhostUser) => {
            let mem = format!("memory-backend-memfd,id=mem,size={}M,share=on", plan.memory_mib);
            a.push("-object", mem);
            a.push("-numa", "node,memdev=mem");
            a.push("-chardev", path_value("socket,id=vsock0,path=", &plan.layout.vhost_vsock_socket(), ""));
            a.push("-device", "vhost-user-vsock-pci,chardev=vsock0");
        }
        Some(VsockDevice::Kernel { cid }) => a.push("-device", format!("vhost-vsock-pci,guest-cid={cid}")),
    }
}

/// The `fw_cfg` item naming each share's port under the p9 backend.
pub const SHARES_FW_CFG: &str = "opt/org.bootproof/shares";

/// The argv as a shell command, quoted so it can be pasted to rerun the VM by hand.
pub fn shell_command(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| {
            let s = a.to_string_lossy();
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_=,./:+@".contains(&b)) {
                s.into_owned()
            } else {
                format!("'{}'", s.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::shell_word;
    use std::path::Path;

    #[test]
    fn relay_paths_are_one_shell_word_each() {
        assert_eq!(shell_word(Path::new("/usr/bin/bootproof")), "/usr/bin/bootproof");
        assert_eq!(shell_word(Path::new("/home/a b/bootproof")), "'/home/a b/bootproof'");
        // What libslirp's g_shell_parse_argv reads back as one word.
        let odd = "/tmp/it's here/x";
        assert_eq!(shlex::split(&shell_word(Path::new(odd))).unwrap(), [odd]);
    }
}
