//! bootproof's own 9P2000.L share server: `bootproof share-server`.
//!
//! Owns: serving one host directory to guests over a unix socket, one session per
//! connection, each on its own thread; the `p9` crate (pinned at 0.3.2) does the file
//! system work, behind [`session`]'s frame filter (confinement, read-only, quota, file
//! events) and [`wire`]'s strict frame reader; confining the whole process to the
//! directory with Landlock where the kernel has it ([`confine`]); and [`relay`], the
//! per-connection program QEMU's `guestfwd=...-cmd:` runs, which joins one guest TCP
//! connection to the server's socket.
//! Must not: know about VMs or runs; `vm` starts the server and wires it to QEMU.
//!
//! Why a server of our own (virtiofsd's option names, standing in for it): RHEL-family
//! `qemu-kvm` has no virtfs, QEMU's virtio-9p has no quota, and the runner learns about a
//! file only after the run. The crate walks `..` out of its root (measured in
//! `../shared/notes/qemu-channels.md`; upstream's fix is unreleased): the filter refuses
//! such names and Landlock, where present, stops the process itself from opening
//! anything outside the directory.

pub mod session;
pub mod tail;
pub mod wire;

use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use session::Shared;

/// The largest frame the server offers: 1 MiB of payload plus the header room, as the
/// Linux client's `msize=1048576` mount option asks (measured faster than 64 KiB).
pub const MAX_MSIZE: u32 = 1024 * 1024 + 24;

/// `bootproof share-server`'s settings (virtiofsd's option names).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub shared_dir: PathBuf,
    pub socket_path: PathBuf,
    pub readonly: bool,
    pub quota: Option<u64>,
    /// JSON lines, one per file event and refusal, appended.
    pub events: Option<PathBuf>,
    pub msize: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("shared directory {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("socket {path}: {source}")]
    Socket { path: PathBuf, source: std::io::Error },
    #[error("events file {path}: {source}")]
    Events { path: PathBuf, source: std::io::Error },
    #[error("confining the share server with Landlock: {0}")]
    Landlock(String),
}

/// How far the process is confined to the shared directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confinement {
    /// Landlock enforces every access right this kernel knows.
    Full,
    /// Landlock enforces some rights (an older kernel ABI).
    Partial,
    /// The kernel has no Landlock: the frame filter is the only confinement.
    FilterOnly,
}

impl std::fmt::Display for Confinement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Confinement::Full => "landlock (full) + frame filter",
            Confinement::Partial => "landlock (partial) + frame filter",
            Confinement::FilterOnly => "frame filter only (this kernel has no Landlock)",
        })
    }
}

/// A server bound to its socket, confined, ready to [`Server::serve`].
pub struct Server {
    listener: UnixListener,
    shared: Arc<Shared>,
    pub confinement: Confinement,
}

impl Server {
    /// Checks the directory, binds the socket (a stale socket file is replaced; anything
    /// else at that path is an error), opens the events file, then confines the process.
    pub fn bind(cfg: &ServerConfig, landlock: bool) -> Result<Server, ShareError> {
        let dir_err = |source| ShareError::Dir { path: cfg.shared_dir.clone(), source };
        let root = cfg.shared_dir.canonicalize().map_err(dir_err)?;
        if !root.is_dir() {
            return Err(dir_err(std::io::Error::from_raw_os_error(libc::ENOTDIR)));
        }
        let events = match &cfg.events {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|source| ShareError::Events { path: p.clone(), source })?,
            ),
            None => None,
        };
        let shared =
            Shared::new(root.clone(), cfg.readonly, cfg.quota, cfg.msize, events).map_err(dir_err)?;
        let sock_err = |source| ShareError::Socket { path: cfg.socket_path.clone(), source };
        if let Ok(meta) = cfg.socket_path.symlink_metadata() {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(sock_err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "exists and is not a socket",
                )));
            }
            std::fs::remove_file(&cfg.socket_path).map_err(sock_err)?;
        }
        let listener = UnixListener::bind(&cfg.socket_path).map_err(sock_err)?;
        let confinement = if landlock { confine(&root, cfg.readonly)? } else { Confinement::FilterOnly };
        Ok(Server { listener, shared: Arc::new(shared), confinement })
    }

    /// Accepts connections until the process ends; each gets a thread and a session.
    pub fn serve(self) -> std::io::Result<()> {
        loop {
            let (stream, _) = self.listener.accept()?;
            let shared = self.shared.clone();
            std::thread::spawn(move || serve_connection(&shared, stream));
        }
    }
}

/// Serves one connection until the peer closes it or sends what cannot be framed; the
/// reason a session ended badly is an event written before the connection closes.
pub fn serve_connection(shared: &Shared, stream: UnixStream) -> Result<(), wire::FrameError> {
    let mut reader = BufReader::with_capacity(MAX_MSIZE as usize + 4096, stream.try_clone()?);
    let mut writer = BufWriter::with_capacity(MAX_MSIZE as usize + 4096, stream);
    let end = session_loop(shared, &mut reader, &mut writer);
    let _ = writer.flush();
    if let Err(e) = &end {
        shared.event(serde_json::json!({"event": "session-ended", "why": e.to_string()}));
    }
    end
}

fn session_loop(
    shared: &Shared,
    reader: &mut BufReader<UnixStream>,
    writer: &mut impl Write,
) -> Result<(), wire::FrameError> {
    let mut session = session::Session::new(shared)?;
    let mut frame = Vec::new();
    loop {
        match wire::read_frame(reader, &mut frame, session.msize) {
            Ok(()) => {}
            Err(wire::FrameError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        }
        let reply = session.handle(&frame);
        writer.write_all(&reply)?;
        // Replies go out together while more requests are already waiting.
        if reader.buffer().is_empty() {
            writer.flush()?;
        }
    }
}

/// Confines this process to `dir` with Landlock: read (and, unless `readonly`, write)
/// beneath it, nothing elsewhere. Descriptors opened before (the socket, the events
/// file, the crate's `/proc` handle) stay usable.
pub fn confine(dir: &Path, readonly: bool) -> Result<Confinement, ShareError> {
    use landlock::{
        ABI, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, path_beneath_rules,
    };
    let abi = ABI::V5;
    let rights = if readonly { AccessFs::from_read(abi) } else { AccessFs::from_all(abi) };
    let err = |e: &dyn std::fmt::Display| ShareError::Landlock(e.to_string());
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| err(&e))?
        .create()
        .map_err(|e| err(&e))?
        .add_rules(path_beneath_rules([dir], rights))
        .map_err(|e| err(&e))?
        .restrict_self()
        .map_err(|e| err(&e))?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Confinement::Full,
        RulesetStatus::PartiallyEnforced => Confinement::Partial,
        RulesetStatus::NotEnforced => Confinement::FilterOnly,
    })
}

/// Joins stdin/stdout (QEMU's `guestfwd` `cmd:` gives a guest connection as both) to the
/// server at `socket` until either side closes.
pub fn relay(socket: &Path) -> std::io::Result<()> {
    let stream = UnixStream::connect(socket)?;
    let mut to_server = stream.try_clone()?;
    let up = std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let r = copy(&mut stdin, &mut to_server);
        let _ = to_server.shutdown(std::net::Shutdown::Write);
        r
    });
    let mut from_server = stream;
    let mut stdout = std::io::stdout().lock();
    let down = copy(&mut from_server, &mut stdout);
    let _ = up.join();
    down
}

fn copy(from: &mut impl Read, to: &mut impl Write) -> std::io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return to.flush(),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        to.flush()?;
    }
}

/// The `bootproof` program for the p9 backend: `BOOTPROOF_PROGRAM`; this program when it
/// is bootproof; `bootproof` beside this program or one directory up (a test binary in
/// `target/<profile>/deps/` finds `target/<profile>/bootproof`, which cargo builds for
/// the package's integration tests); else `bootproof` on PATH.
pub fn find_program() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BOOTPROOF_PROGRAM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    if exe.file_name().is_some_and(|n| n == "bootproof") {
        return Some(exe);
    }
    let dir = exe.parent()?;
    let beside = [dir.join("bootproof"), dir.parent().map(|d| d.join("bootproof")).unwrap_or_default()];
    if let Some(p) = beside.into_iter().find(|p| p.is_file()) {
        return Some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join("bootproof")).find(|p| p.is_file())
}

/// Gives the guest an address on QEMU's user network unless it has one (a DHCP client,
/// or an earlier mount): with `ip` where the guest has it, else a runtime
/// systemd-networkd file for every Ethernet link (Debian's minimal systems have no
/// iproute2), waiting up to 10 s for the address; neither is named as missing (exit 3).
const NET_UP: &str = r#"has_addr() { grep -qs '10\.0\.2\.[0-9]' /proc/net/fib_trie; }; has_addr || if command -v ip >/dev/null; then dev=$(ls /sys/class/net | grep -v '^lo$' | head -n 1); ip link set "$dev" up && ip addr add 10.0.2.15/24 dev "$dev"; elif command -v networkctl >/dev/null; then mkdir -p /run/systemd/network && printf '[Match]\nType=ether\n[Network]\nAddress=10.0.2.15/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' > /run/systemd/network/10-bootproof-share.network && systemctl restart systemd-networkd && i=0 && while ! has_addr && [ $i -lt 50 ]; do sleep 0.2; i=$((i+1)); done && has_addr; else echo 'the guest has neither ip nor systemd-networkd to bring its NIC up for the p9 share backend'; exit 3; fi"#;

/// The shell command that mounts `share` at `path` in a Linux guest: by tag over
/// virtio-9p, or (`p9`) over TCP to bootproof's server at the plan's address, bringing
/// the first NIC up with QEMU's user-network address when it has none. Each kernel
/// piece is loaded and checked first; a missing one is named (exit 3).
pub fn guest_mount_command(share: &crate::vm::plan::PlannedShare, p9: bool, path: &str) -> String {
    let ro = if share.readonly { ",ro" } else { "" };
    let need = |modules: &[&str]| {
        modules
            .iter()
            .map(|m| {
                format!(
                    "modprobe -q {m} 2>/dev/null; [ -d /sys/module/{m} ] || grep -qs '/{m}.ko' \
                     /lib/modules/$(uname -r)/modules.builtin || {{ echo 'the guest kernel has no {m} \
                     module (9P{}); install it or choose the other share_backend'; exit 3; }}; ",
                    if *m == "9pnet_fd" { " over TCP" } else { "" }
                )
            })
            .collect::<String>()
    };
    if p9 {
        let ip = crate::vm::plan::SERVER_IP;
        format!(
            "{}mkdir -p '{path}' && {{ {NET_UP} }} && \
             mount -t 9p -o trans=tcp,port={},version=9p2000.L,msize=1048576{ro} {ip} '{path}'",
            need(&["9pnet", "9pnet_fd", "9p"]),
            share.port
        )
    } else {
        format!(
            "{}mkdir -p '{path}' && mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144{ro} {} '{path}'",
            need(&["9pnet", "9pnet_virtio", "9p"]),
            share.tag
        )
    }
}

/// A size as `--quota` takes it: bytes, or a number with `K`, `M`, `G` or `T` (powers of
/// 1024; an optional `iB`/`B` after the letter).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size (e.g. 512K, 64M, 1G or bytes)"))?;
    let shift = match unit.trim().to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (K, M, G or T)")),
    };
    n.checked_mul(1 << shift).ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::{guest_mount_command, parse_size};
    use crate::vm::plan::PlannedShare;

    /// The command runs in a real shell against a fake guest: a missing module is named.
    #[test]
    fn the_mount_command_names_a_missing_kernel_module() {
        let share = PlannedShare { tag: "inputs".into(), path: "/x".into(), readonly: true, port: 565 };
        let p9 = guest_mount_command(&share, true, "/run/inputs");
        assert!(
            p9.contains(
                "mount -t 9p -o trans=tcp,port=565,version=9p2000.L,msize=1048576,ro 10.0.2.100 '/run/inputs'"
            ),
            "{p9}"
        );
        let virtfs = guest_mount_command(&share, false, "/run/inputs");
        assert!(
            virtfs.contains("trans=virtio,version=9p2000.L,msize=262144,ro inputs '/run/inputs'"),
            "{virtfs}"
        );
        // This host has no 9pnet_fd loaded (nor modprobe rights in a test): the check speaks.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(p9.replace("modprobe -q", "false").replace("/sys/module/", "/nonexistent/"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("the guest kernel has no 9pnet module (9P)"), "{said}");
    }

    #[test]
    fn sizes_parse_like_virtiofsd_users_write_them() {
        assert_eq!(parse_size("512K"), Ok(512 * 1024));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12Q").unwrap_err().contains("unknown unit"));
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999T").unwrap_err().contains("too large"));
    }
}
