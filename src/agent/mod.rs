//! The guest agent: run a shell command in the guest and get its exit code, stdout and
//! stderr, within a timeout.
//!
//! Owns: three transports and the choice between them. [`qga`] speaks
//! qemu-guest-agent's protocol on virtio-serial port `org.qemu.guest_agent.0`;
//! `shell` drives a guest shell on virtio console port `org.bootproof.shell.0`
//! (`/dev/hvc0`), as the NixOS test driver's backdoor does; [`vsock`] opens a
//! connection per command to a guest shell listening on vsock port [`vsock::PORT`].
//! The two shell transports share the [`marker`] protocol. Every exchange is logged
//! to `agent.log` in the run directory.
//! Must not: start QEMU or helpers, or decide what a command's result means.
//!
//! Output is capped at [`marker::OUTPUT_CAP`] (16 MiB) per stream; a cut stream ends
//! with a `[bootproof: ... cut at 16 MiB]` line.

pub mod marker;
pub mod qga;
mod shell;
pub mod vsock;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};

pub use vsock::Vsock;

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Host time from sending the command to having its answer.
    pub duration: Duration,
}

impl CommandOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "`{command}` did not finish within {timeout:?} over the {transport} agent ({after}); \
         pass a longer timeout if it needs one"
    )]
    Timeout { command: String, timeout: Duration, transport: &'static str, after: &'static str },
    #[error(
        "the {transport} agent's channel failed: {source}; the guest may have stopped or \
         restarted its agent (see agent.log and console.log in the run directory)"
    )]
    Transport {
        transport: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the {transport} agent answered something unreadable: {detail}; see agent.log in the run directory"
    )]
    Protocol { transport: &'static str, detail: String },
    #[error(
        "qemu-guest-agent refused `{request}`: {class}: {desc}; check that the guest's agent \
         allows guest-exec (it may be blocked with --block-rpcs or an allow-list)"
    )]
    Refused { request: String, class: String, desc: String },
    #[error("no guest agent answered (tried: {}): {why}", listed(tried))]
    NotAvailable { tried: Vec<&'static str>, why: String },
}

/// Replaces runs of base64 (the marker protocol's script and output lines, QGA's data
/// fields) with their length: the log keeps the protocol's shape, not the payload.
fn elide_payloads(text: &str) -> String {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 16 && run.bytes().any(|b| b.is_ascii_digit() || b.is_ascii_uppercase()) {
            out.push_str(&format!("[base64, {} chars]", run.len()));
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if is_b64(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// `value` quoted for the guest's POSIX shell: every name, path or key a check or step
/// splices into a guest command goes through here (shlex). A NUL byte cannot be
/// passed to a shell at all; scenario loading refuses such values, and here it makes
/// an empty word rather than a broken command.
pub fn quote(value: &str) -> String {
    shlex::try_quote(value).map(|q| q.into_owned()).unwrap_or_else(|_| "''".to_string())
}

fn listed(tried: &[&str]) -> String {
    if tried.is_empty() { "nothing".to_string() } else { tried.join(", ") }
}

/// A byte stream to an agent: a socket QEMU connected, or a vsock connection.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// `agent.log`: one line per message, stamped with host seconds since it was opened
/// (QEMU's start, for a VM's agent). Long messages are cut.
///
/// Commands are logged as the plain command (redacted, like every line); payloads the
/// transports encode (the shell's base64 script and output, qemu-guest-agent's
/// `out-data`/`err-data`) are logged by size only, so no encoding of a secret can
/// slip past the redactor's forms (a payload is wrapped at any column).
pub struct AgentLog {
    file: Mutex<std::fs::File>,
    started: Instant,
}

/// Characters of one message kept in the log.
const LOG_MESSAGE: usize = 2048;

impl AgentLog {
    pub fn create(path: &Path, started: Instant) -> std::io::Result<AgentLog> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AgentLog { file: Mutex::new(file), started })
    }

    /// Text that must never reach the log (secrets in commands and their output); see
    /// [`crate::redact::register`].
    pub fn redact(&self, secret: &str) {
        crate::redact::register(secret);
    }

    /// Protocol traffic: like [`AgentLog::write`], with encoded payloads replaced by
    /// their size.
    fn write_wire(&self, transport: &str, direction: &str, text: &str) {
        self.write(transport, direction, &elide_payloads(text));
    }

    fn write(&self, transport: &str, direction: &str, text: &str) {
        let text = crate::redact::text(text);
        let mut cut: String = text.chars().take(LOG_MESSAGE).collect();
        if cut.len() < text.len() {
            cut += &format!(" [... {} bytes]", text.len());
        }
        let t = self.started.elapsed().as_secs_f64();
        if let Ok(mut f) = self.file.lock() {
            let _ = writeln!(f, "{t:10.3} {transport} {direction} {}", cut.escape_debug());
        }
    }
}

#[derive(Clone)]
enum Transport {
    Qga(qga::Qga),
    Shell(shell::Shell),
    Vsock(Vsock),
}

/// A guest agent that answered. Cheap to clone; clones share the channel, and `run`
/// may be called from many tasks at once.
#[derive(Clone)]
pub struct Agent {
    transport: Transport,
    log: Arc<AgentLog>,
}

impl Agent {
    /// Runs `command` with `sh -c` in the guest, stdin from nothing. `timeout` covers
    /// waiting for the channel, the command and its output.
    pub async fn run(&self, command: &str, timeout: Duration) -> Result<CommandOutput, AgentError> {
        let name = self.transport();
        self.log.write(name, "run", command);
        let started = Instant::now();
        let result = self.exchange(command, timeout).await;
        let duration = started.elapsed();
        match &result {
            Ok((code, out, err)) => self.log.write(
                name,
                "done",
                &format!("exit={code} stdout={}B stderr={}B in {duration:.3?}", out.len(), err.len()),
            ),
            Err(e) => self.log.write(name, "failed", &e.to_string()),
        }
        let (exit_code, stdout, stderr) = result?;
        Ok(CommandOutput { exit_code, stdout, stderr, duration })
    }

    async fn exchange(
        &self,
        command: &str,
        timeout: Duration,
    ) -> Result<(i32, Vec<u8>, Vec<u8>), AgentError> {
        match &self.transport {
            Transport::Qga(q) => {
                let e = q.run(command, timeout).await?;
                Ok((
                    e.exit_code,
                    cap("stdout", e.stdout, e.stdout_truncated),
                    cap("stderr", e.stderr, e.stderr_truncated),
                ))
            }
            Transport::Shell(s) => {
                let r = s.run(&self.log, command, timeout).await;
                shell_reply(r.map_err(|e| e.into_agent_error(SHELL, command, timeout))?)
            }
            Transport::Vsock(v) => {
                let r = v.run(&self.log, command, timeout).await;
                shell_reply(r.map_err(|e| e.into_agent_error(vsock::NAME, command, timeout))?)
            }
        }
    }

    /// `"qemu-guest-agent"`, `"shell"` or `"vsock"`.
    pub fn transport(&self) -> &'static str {
        match self.transport {
            Transport::Qga(_) => qga::NAME,
            Transport::Shell(_) => SHELL,
            Transport::Vsock(_) => vsock::NAME,
        }
    }

    /// A qemu-guest-agent on any stream (a VM's port, or `qemu-ga --method=unix-listen`),
    /// once it answers a sync within `timeout`.
    pub async fn qga(
        stream: impl Stream + 'static,
        log: Arc<AgentLog>,
        timeout: Duration,
    ) -> Result<Agent, AgentError> {
        let q = qga::Qga::new(Box::new(stream), log.clone());
        q.probe(timeout).await.map_err(|e| match e {
            AgentError::Timeout { .. } => silent(qga::NAME, timeout, "is qemu-ga running on the other end?"),
            e => e,
        })?;
        Ok(Agent { transport: Transport::Qga(q), log })
    }

    /// A POSIX shell on any stream (a console, a socket), once it answers a probe
    /// within `timeout`. It needs `base64`, `timeout`, `mktemp` and `head -c`.
    pub async fn shell(
        stream: impl Stream + 'static,
        log: Arc<AgentLog>,
        timeout: Duration,
    ) -> Result<Agent, AgentError> {
        let s = shell::Shell::new(Box::new(stream));
        s.probe(&log, timeout).await.map_err(|e| match e {
            shell::ExchangeError::Timeout => silent(SHELL, timeout, "is a shell reading the other end?"),
            e => e.into_agent_error(SHELL, "a probe", timeout),
        })?;
        Ok(Agent { transport: Transport::Shell(s), log })
    }
}

const SHELL: &str = shell::NAME;

fn silent(transport: &'static str, timeout: Duration, hint: &str) -> AgentError {
    AgentError::NotAvailable { tried: vec![transport], why: format!("no answer within {timeout:?}; {hint}") }
}

fn shell_reply(r: marker::Reply) -> Result<(i32, Vec<u8>, Vec<u8>), AgentError> {
    let cut = |name, data: Vec<u8>| {
        let over = data.len() > marker::OUTPUT_CAP;
        cap(name, data, over)
    };
    Ok((r.exit_code, cut("stdout", r.stdout), cut("stderr", r.stderr)))
}

/// Keeps at most [`marker::OUTPUT_CAP`] bytes and says so when the stream was cut.
fn cap(name: &str, mut data: Vec<u8>, truncated: bool) -> Vec<u8> {
    if truncated {
        data.truncate(marker::OUTPUT_CAP);
        data.extend(format!("\n[bootproof: {name} cut at {} MiB]\n", marker::OUTPUT_CAP >> 20).into_bytes());
    }
    data
}

/// The agent channels a VM's plan gave it, before any has answered. Probing them
/// leaves them usable, so a failed wait can be retried.
pub struct Ports {
    qga: Option<qga::Qga>,
    shell: Option<shell::Shell>,
    vsock: Option<Vsock>,
    log: Arc<AgentLog>,
}

impl Ports {
    /// The log every transport of these ports writes to.
    pub fn log(&self) -> &Arc<AgentLog> {
        &self.log
    }

    pub fn new(
        qga: Option<Box<dyn Stream>>,
        shell: Option<Box<dyn Stream>>,
        vsock: Option<Vsock>,
        log: Arc<AgentLog>,
    ) -> Ports {
        let qga = qga.map(|io| qga::Qga::new(io, log.clone()));
        Ports { qga, shell: shell.map(shell::Shell::new), vsock, log }
    }
}

/// How long one round of probing waits for an answer before asking again.
const PROBE_ROUND: Duration = Duration::from_secs(2);

/// Waits up to `timeout` for an agent on `ports`; when several answer in the same
/// round, qemu-guest-agent wins over vsock, and vsock over the shell.
pub async fn connect(ports: &Ports, timeout: Duration) -> Result<Agent, AgentError> {
    let Ports { qga, shell, vsock, log } = ports;
    let tried: Vec<&'static str> =
        [(qga.is_some(), qga::NAME), (vsock.is_some(), vsock::NAME), (shell.is_some(), SHELL)]
            .into_iter()
            .filter_map(|(has, name)| has.then_some(name))
            .collect();
    if tried.is_empty() {
        let why = "the VM has no agent channel; set `agent = \"auto\"` (or \"qga\", \"shell\", \"vsock\") \
                   in its profile";
        return Err(AgentError::NotAvailable { tried, why: why.into() });
    }
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let started = Instant::now();
        let (best, failures) = probe_round(ports, PROBE_ROUND.min(left)).await;
        let transport = match best {
            Some(0) => qga.clone().map(Transport::Qga),
            Some(1) => vsock.clone().map(Transport::Vsock),
            Some(_) => shell.clone().map(Transport::Shell),
            None => None,
        };
        if let Some(transport) = transport {
            let agent = Agent { transport, log: log.clone() };
            tracing::debug!(transport = agent.transport(), after = ?started.elapsed(), "guest agent answered");
            agent.log.write(agent.transport(), "ready", &format!("answered in {:.3?}", started.elapsed()));
            return Ok(agent);
        }
        if Instant::now() >= deadline {
            let why = format!(
                "waited {timeout:?}; the guest must run qemu-guest-agent on port org.qemu.guest_agent.0, a shell \
                 on /dev/hvc0, or a shell on vsock port {}; see console.log and agent.log in the run \
                 directory (last round: {})",
                vsock::PORT,
                failures.join("; ")
            );
            return Err(AgentError::NotAvailable { tried, why });
        }
        // Failures that come back at once (vsock refused) must not spin.
        tokio::time::sleep(Duration::from_millis(200).saturating_sub(started.elapsed())).await;
    }
}

/// How long a preferred transport still gets once a lesser one answered in a round.
const PREFERENCE_GRACE: Duration = Duration::from_millis(300);

/// Probes every channel at once for up to `round`: the rank of the best that answered
/// (0 qemu-guest-agent, 1 vsock, 2 shell), and what the others said. A probe left
/// running when a better one wins holds only its own channel, which is not chosen.
async fn probe_round(ports: &Ports, round: Duration) -> (Option<usize>, Vec<String>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Result<(), String>)>();
    if let Some(q) = ports.qga.clone() {
        let tx = tx.clone();
        tokio::spawn(async move {
            let r = q.probe(round).await.map_err(|e| match e {
                AgentError::Timeout { .. } => "no answer".to_string(),
                e => e.to_string(),
            });
            let _ = tx.send((0, r));
        });
    }
    if let Some(v) = ports.vsock.clone() {
        let (tx, log) = (tx.clone(), ports.log.clone());
        tokio::spawn(async move {
            let _ = tx.send((1, v.probe(&log, round).await.map_err(|e| e.describe())));
        });
    }
    if let Some(s) = ports.shell.clone() {
        let (tx, log) = (tx.clone(), ports.log.clone());
        tokio::spawn(async move {
            let _ = tx.send((2, s.probe(&log, round).await.map_err(|e| e.describe())));
        });
    }
    drop(tx);
    let names = [qga::NAME, vsock::NAME, SHELL];
    let mut until = tokio::time::Instant::now() + round;
    let (mut best, mut failures) = (None::<usize>, Vec::new());
    while let Ok(Some((rank, result))) = tokio::time::timeout_at(until, rx.recv()).await {
        match result {
            Ok(()) if rank == 0 => return (Some(0), failures),
            Ok(()) => {
                best = Some(best.map_or(rank, |b| b.min(rank)));
                until = until.min(tokio::time::Instant::now() + PREFERENCE_GRACE);
            }
            Err(e) => failures.push(format!("{}: {e}", names[rank])),
        }
    }
    (best, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_logged_by_size_and_words_stay() {
        let line = r#"{"return":{"exitcode":0,"out-data":"Ym9vdHByb29mLWx1a3MK","exited":true}}"#;
        assert_eq!(
            elide_payloads(line),
            r#"{"return":{"exitcode":0,"out-data":"[base64, 20 chars]","exited":true}}"#
        );
        assert_eq!(elide_payloads("BPO-1f2e\nsystemctl is-active"), "BPO-1f2e\nsystemctl is-active");
    }

    #[test]
    fn a_cut_stream_says_so() {
        let out = cap("stdout", vec![b'x'; marker::OUTPUT_CAP + 1], true);
        assert!(out.ends_with(b"\n[bootproof: stdout cut at 16 MiB]\n"));
        assert_eq!(out.iter().filter(|&&b| b == b'x').count(), marker::OUTPUT_CAP);
        assert_eq!(cap("stderr", b"ok".to_vec(), false), b"ok");
    }

    #[tokio::test]
    async fn no_channel_means_not_available_with_the_profile_fix() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(AgentLog::create(&dir.path().join("agent.log"), Instant::now()).unwrap());
        let e = connect(&Ports::new(None, None, None, log), Duration::from_secs(1)).await.err().unwrap();
        assert!(e.to_string().contains("agent = \"auto\""), "{e}");
    }
}
