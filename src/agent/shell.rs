//! The shell transport: a guest shell on a virtio console port (`/dev/hvc0`), driven
//! with the [`marker`] protocol, one command at a time.
//!
//! Owns: the port's stream and the bytes read from it that no command claimed yet.
//! Must not: assume the guest's tty is raw or silent; echo and stale answers are
//! skipped by marker, so a cooked tty with echo works too.

use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::marker::{self, Reply, Scan};
use super::{AgentError, Stream};

/// Seconds the guest's `timeout` adds to the caller's, so the host gives up first and
/// the guest still ends the command soon after.
pub(super) const GUEST_GRACE: Duration = Duration::from_secs(1);

/// How a marker exchange failed.
pub(super) enum ExchangeError {
    Timeout,
    Io(std::io::Error),
    Garbled(String),
}

impl ExchangeError {
    pub(super) fn into_agent_error(
        self,
        transport: &'static str,
        command: &str,
        timeout: Duration,
    ) -> AgentError {
        match self {
            ExchangeError::Timeout => AgentError::Timeout {
                command: command.to_string(),
                timeout,
                transport,
                after: "the guest's `timeout` kills it one second later",
            },
            ExchangeError::Io(source) => AgentError::Transport { transport, source },
            ExchangeError::Garbled(detail) => AgentError::Protocol { transport, detail },
        }
    }
}

/// Sends `command` and reads until its answer, or until `deadline`. `pending` holds
/// bytes read earlier that may contain this answer's start (or stale ones).
pub(super) async fn exchange<S: Stream + ?Sized>(
    io: &mut S,
    pending: &mut Vec<u8>,
    command: &str,
    timeout: Duration,
    deadline: Instant,
) -> Result<Reply, ExchangeError> {
    let id = format!("{:x}", marker::random_id());
    let script = marker::script(&id, command, timeout + GUEST_GRACE);
    let work = async {
        io.write_all(script.as_bytes()).await.map_err(ExchangeError::Io)?;
        io.flush().await.map_err(ExchangeError::Io)?;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match marker::scan(pending, &id) {
                Scan::Done { reply, used } => {
                    pending.drain(..used);
                    return Ok(reply);
                }
                Scan::Garbled { detail, used } => {
                    pending.drain(..used);
                    return Err(ExchangeError::Garbled(detail));
                }
                Scan::Incomplete { discard } => {
                    pending.drain(..discard);
                }
            }
            let n = io.read(&mut chunk).await.map_err(ExchangeError::Io)?;
            if n == 0 {
                let eof =
                    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the guest closed the channel");
                return Err(ExchangeError::Io(eof));
            }
            pending.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout_at(deadline, work).await.unwrap_or(Err(ExchangeError::Timeout))
}

struct Port {
    io: Box<dyn Stream>,
    pending: Vec<u8>,
}

/// A shell on one console port. Clones share the port; commands take turns, since
/// one shell reads one command at a time.
#[derive(Clone)]
pub(super) struct Shell {
    port: Arc<Mutex<Port>>,
}

impl Shell {
    pub(super) fn new(io: Box<dyn Stream>) -> Shell {
        Shell { port: Arc::new(Mutex::new(Port { io, pending: Vec::new() })) }
    }

    /// Runs `command`; waiting for an earlier command's turn counts against `timeout`.
    pub(super) async fn run(&self, command: &str, timeout: Duration) -> Result<Reply, ExchangeError> {
        let deadline = Instant::now() + timeout;
        let mut port =
            tokio::time::timeout_at(deadline, self.port.lock()).await.map_err(|_| ExchangeError::Timeout)?;
        let Port { io, pending } = &mut *port;
        exchange(io.as_mut(), pending, command, timeout, deadline).await
    }
}
