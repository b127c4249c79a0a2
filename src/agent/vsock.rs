//! The vsock transport: a fresh connection to the guest's vsock shell per command,
//! speaking the [`marker`](super::marker) protocol.
//!
//! Owns: reaching guest port [`PORT`], through vhost-device-vsock's Unix socket
//! (`CONNECT <port>\n` → `OK <port>\n`), or through the kernel's `AF_VSOCK` when the
//! host has `/dev/vhost-vsock` (the `vsock` crate's `VsockStream`, its descriptor then
//! driven by tokio). The kernel path is not exercised on the development hosts (they
//! have no `/dev/vhost-vsock`), so it is kept to that one call; the vhost-user one is.
//! Must not: start or stop vhost-device-vsock; the VM supervises it.
//!
//! A connection per command means commands run concurrently in the guest (each gets
//! its own shell) and a command that timed out leaves nothing behind in a stream.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::marker::Reply;
use super::shell::{self, ExchangeError, Wire};
use super::{AgentLog, Stream};

pub(super) const NAME: &str = "vsock";

/// The guest port the tiny guest's `vsock-shell` listens on.
pub const PORT: u32 = 5000;

/// Pause between connection attempts while the guest does not listen yet.
const RETRY: Duration = Duration::from_millis(200);

/// Where the guest's vsock shell is reached from the host.
#[derive(Debug, Clone)]
pub enum Vsock {
    /// vhost-device-vsock's host-side socket (its `uds-path`).
    VhostUser { uds: PathBuf },
    /// The kernel's vhost-vsock: the guest's context id.
    Kernel { cid: u32 },
}

impl Vsock {
    pub(super) async fn run(
        &self,
        log: &AgentLog,
        command: &str,
        timeout: Duration,
    ) -> Result<Reply, ExchangeError> {
        let deadline = Instant::now() + timeout;
        let mut io = self.connect(deadline).await?;
        let wire = Wire { log, transport: NAME, nudge: false };
        shell::command(io.as_mut(), &mut Vec::new(), wire, command, timeout, deadline).await
    }

    pub(super) async fn probe(&self, log: &AgentLog, timeout: Duration) -> Result<(), ExchangeError> {
        let deadline = Instant::now() + timeout;
        let mut io = self.connect(deadline).await?;
        shell::probe(io.as_mut(), &mut Vec::new(), Wire { log, transport: NAME, nudge: false }, deadline)
            .await
    }

    /// Connects, retrying until `deadline`: the guest may not listen yet.
    async fn connect(&self, deadline: Instant) -> Result<Box<dyn Stream>, ExchangeError> {
        loop {
            let attempt = tokio::time::timeout_at(deadline, self.connect_once()).await;
            match attempt {
                Ok(Ok(io)) => return Ok(io),
                Err(_) => return Err(ExchangeError::Timeout),
                Ok(Err(e)) if Instant::now() + RETRY >= deadline => return Err(ExchangeError::Io(e)),
                Ok(Err(_)) => tokio::time::sleep(RETRY).await,
            }
        }
    }

    async fn connect_once(&self) -> std::io::Result<Box<dyn Stream>> {
        match self {
            Vsock::VhostUser { uds } => {
                let mut s = tokio::net::UnixStream::connect(uds).await?;
                s.write_all(format!("CONNECT {PORT}\n").as_bytes()).await?;
                let answer = read_line(&mut s).await?;
                if answer != format!("OK {PORT}") {
                    let why = format!("vhost-device-vsock answered {answer:?} to CONNECT {PORT}");
                    return Err(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, why));
                }
                Ok(Box::new(s))
            }
            Vsock::Kernel { cid } => {
                let (cid, port) = (*cid, PORT);
                let fd = tokio::task::spawn_blocking(move || connect_kernel(cid, port)).await??;
                Ok(Box::new(tokio::fs::File::from_std(std::fs::File::from(fd))))
            }
        }
    }
}

/// One line, read a byte at a time so nothing after it is consumed.
async fn read_line(s: &mut tokio::net::UnixStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    loop {
        let b = s.read_u8().await?;
        if b == b'\n' || line.len() > 64 {
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        line.push(b);
    }
}

/// A blocking `AF_VSOCK` connection to `cid:port`, through the `vsock` crate.
fn connect_kernel(cid: u32, port: u32) -> std::io::Result<OwnedFd> {
    Ok(vsock::VsockStream::connect_with_cid_port(cid, port)?.into())
}
