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
use super::{AgentError, AgentLog, Stream};

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

    pub(super) fn describe(&self) -> String {
        match self {
            ExchangeError::Timeout => "no answer".to_string(),
            ExchangeError::Io(e) => e.to_string(),
            ExchangeError::Garbled(d) => d.clone(),
        }
    }
}

/// Where an exchange logs what it sends and receives, and whether it nudges.
pub(super) struct Wire<'a> {
    pub log: &'a AgentLog,
    pub transport: &'static str,
    /// Send an empty line whenever the guest has been silent for [`NUDGE`]. Over a
    /// virtio console (TCG, Debian's 6.1 kernel) a command's answer came only after
    /// the host wrote once or twice more: with a 1 s nudge every round trip took 1 or
    /// 2 s; nudging from 50 ms on, 100-200 ms. To a shell an empty line is nothing.
    pub nudge: bool,
}

/// Silence after which the shell transport nudges; it doubles while the guest stays
/// silent (a long command), so a waiting shell gets a few empty lines a second, not 20.
const NUDGE: Duration = Duration::from_millis(50);
const NUDGE_MAX: Duration = Duration::from_millis(400);

/// Runs `command` with the marker protocol: sends its script, reads until the answer.
/// `pending` holds bytes read earlier that may contain it (or stale answers).
pub(super) async fn command<S: Stream + ?Sized>(
    io: &mut S,
    pending: &mut Vec<u8>,
    wire: Wire<'_>,
    command: &str,
    timeout: Duration,
    deadline: Instant,
) -> Result<Reply, ExchangeError> {
    let id = format!("{:x}", marker::random_id());
    let script = marker::script(&id, command, timeout + GUEST_GRACE);
    // The whole answer is parsed once its last line has come: looking for that line
    // in new bytes only keeps a 20 MB answer linear.
    let last = format!("BPR-{id} ");
    let mut searched = 0;
    let answered = move |pending: &mut Vec<u8>| {
        let from = searched.min(pending.len()).saturating_sub(last.len() + 16);
        searched = pending.len();
        memchr::memmem::find(&pending[from..], last.as_bytes())?;
        match marker::scan(pending, &id) {
            Scan::Done { reply, used } => {
                pending.drain(..used);
                Some(Ok(reply))
            }
            Scan::Garbled { detail, used } => {
                pending.drain(..used);
                Some(Err(ExchangeError::Garbled(detail)))
            }
            Scan::Incomplete { discard } => {
                pending.drain(..discard);
                searched -= discard;
                None
            }
        }
    };
    exchange(io, pending, wire, &script, answered, deadline).await
}

/// Sends a probe and waits for its answer.
pub(super) async fn probe<S: Stream + ?Sized>(
    io: &mut S,
    pending: &mut Vec<u8>,
    wire: Wire<'_>,
    deadline: Instant,
) -> Result<(), ExchangeError> {
    let id = format!("{:x}", marker::random_id());
    let answered = |pending: &mut Vec<u8>| match marker::scan_probe(pending, &id) {
        Ok(used) => {
            pending.drain(..used);
            Some(Ok(()))
        }
        Err(discard) => {
            pending.drain(..discard);
            None
        }
    };
    exchange(io, pending, wire, &marker::probe_script(&id), answered, deadline).await
}

async fn exchange<S: Stream + ?Sized, T>(
    io: &mut S,
    pending: &mut Vec<u8>,
    wire: Wire<'_>,
    script: &str,
    mut answered: impl FnMut(&mut Vec<u8>) -> Option<Result<T, ExchangeError>>,
    deadline: Instant,
) -> Result<T, ExchangeError> {
    let work = async {
        wire.log.write_wire(wire.transport, ">", script);
        io.write_all(script.as_bytes()).await.map_err(ExchangeError::Io)?;
        io.flush().await.map_err(ExchangeError::Io)?;
        let mut chunk = vec![0u8; 64 * 1024];
        let mut silence = NUDGE;
        loop {
            if let Some(result) = answered(pending) {
                return result;
            }
            let n = if wire.nudge {
                match tokio::time::timeout(silence, io.read(&mut chunk)).await {
                    Ok(n) => {
                        silence = NUDGE;
                        n.map_err(ExchangeError::Io)?
                    }
                    Err(_) => {
                        io.write_all(b"\n").await.map_err(ExchangeError::Io)?;
                        silence = (silence * 2).min(NUDGE_MAX);
                        continue;
                    }
                }
            } else {
                io.read(&mut chunk).await.map_err(ExchangeError::Io)?
            };
            if n == 0 {
                let eof =
                    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the guest closed the channel");
                return Err(ExchangeError::Io(eof));
            }
            wire.log.write_wire(wire.transport, "<", &String::from_utf8_lossy(&chunk[..n]));
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

pub(super) const NAME: &str = "shell";

impl Shell {
    pub(super) fn new(io: Box<dyn Stream>) -> Shell {
        Shell { port: Arc::new(Mutex::new(Port { io, pending: Vec::new() })) }
    }

    /// Runs `command`; waiting for an earlier command's turn counts against `timeout`.
    pub(super) async fn run(
        &self,
        log: &AgentLog,
        command: &str,
        timeout: Duration,
    ) -> Result<Reply, ExchangeError> {
        let deadline = Instant::now() + timeout;
        let mut port =
            tokio::time::timeout_at(deadline, self.port.lock()).await.map_err(|_| ExchangeError::Timeout)?;
        let Port { io, pending } = &mut *port;
        self::command(
            io.as_mut(),
            pending,
            Wire { log, transport: NAME, nudge: true },
            command,
            timeout,
            deadline,
        )
        .await
    }

    pub(super) async fn probe(&self, log: &AgentLog, timeout: Duration) -> Result<(), ExchangeError> {
        let deadline = Instant::now() + timeout;
        let mut port =
            tokio::time::timeout_at(deadline, self.port.lock()).await.map_err(|_| ExchangeError::Timeout)?;
        let Port { io, pending } = &mut *port;
        probe(io.as_mut(), pending, Wire { log, transport: NAME, nudge: true }, deadline).await
    }
}
