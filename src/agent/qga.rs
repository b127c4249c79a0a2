//! The qemu-guest-agent transport: QGA's JSON protocol on the virtio-serial port
//! `org.qemu.guest_agent.0`.
//!
//! Owns: the port's stream, resynchronisation (`guest-sync-delimited`), and
//! `guest-exec` / `guest-exec-status`. Message building and reading are pure
//! functions, tested below; the client is a thin loop around them.
//! Must not: trust that a reply belongs to the last request after anything went
//! wrong: QGA replies carry no id, so after a timeout the next request resyncs first.
//!
//! QGA 7.2 cannot kill a process it started. On a timeout bootproof asks it to run
//! `pkill -9 -P <pid>; kill -9 <pid>` (best effort: it works when the agent is still
//! responsive and the guest has those tools), and reports the timeout either way.

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::marker::{random_id, unb64};
use super::{AgentError, AgentLog, Stream};

pub(super) const NAME: &str = "qemu-guest-agent";

/// QGA's parser drops whatever partial input it holds when it reads 0xFF; it also
/// puts 0xFF before its answer to `guest-sync-delimited`, so everything before that
/// answer can be skipped.
const RESYNC: u8 = 0xff;

/// `guest-sync-delimited` with `id`, preceded by the parser reset byte.
pub fn sync_request(id: u64) -> Vec<u8> {
    let mut bytes = vec![RESYNC];
    bytes.extend(line(&json!({"execute": "guest-sync-delimited", "arguments": {"id": id}})));
    bytes
}

/// `guest-exec` of `sh -c command` with its output captured.
pub fn exec_request(command: &str) -> Value {
    json!({"execute": "guest-exec", "arguments": {
        "path": "/bin/sh", "arg": ["-c", command], "capture-output": true}})
}

pub fn status_request(pid: i64) -> Value {
    json!({"execute": "guest-exec-status", "arguments": {"pid": pid}})
}

fn line(msg: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(msg).expect("JSON values serialise");
    bytes.push(b'\n');
    bytes
}

/// Takes the complete messages (one JSON object a line) off the front of `buf`,
/// ignoring resync bytes and lines that are not JSON.
pub fn take_messages(buf: &mut Vec<u8>) -> Vec<Value> {
    let Some(end) = buf.iter().rposition(|&b| b == b'\n') else { return Vec::new() };
    let messages = buf[..end]
        .split(|&b| b == b'\n')
        .filter_map(|l| {
            let l: Vec<u8> = l.iter().copied().filter(|&b| b != RESYNC).collect();
            serde_json::from_slice::<Value>(&l).ok()
        })
        .filter(Value::is_object)
        .collect();
    buf.drain(..=end);
    messages
}

/// The exit of a finished `guest-exec` process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exited {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

/// Reads a `guest-exec-status` return: `None` while the process runs. A process
/// killed by a signal gets 128 + the signal, as a shell reports it.
pub fn exec_status(ret: &Value) -> Result<Option<Exited>, String> {
    if !ret["exited"].as_bool().ok_or_else(|| format!("no `exited` in {ret}"))? {
        return Ok(None);
    }
    let exit_code = match (ret["exitcode"].as_i64(), ret["signal"].as_i64()) {
        (Some(code), _) => code as i32,
        (None, Some(signal)) => 128 + signal as i32,
        (None, None) => return Err(format!("neither exitcode nor signal in {ret}")),
    };
    let data = |key: &str| unb64(ret[key].as_str().unwrap_or("").as_bytes());
    Ok(Some(Exited {
        exit_code,
        stdout: data("out-data")?,
        stderr: data("err-data")?,
        stdout_truncated: ret["out-truncated"].as_bool().unwrap_or(false),
        stderr_truncated: ret["err-truncated"].as_bool().unwrap_or(false),
    }))
}

/// A reply: `return`'s value, or QGA's error class and description.
pub fn reply(msg: &Value) -> Option<Result<Value, (String, String)>> {
    if let Some(ret) = msg.get("return") {
        return Some(Ok(ret.clone()));
    }
    let err = msg.get("error")?;
    let text = |k: &str| err[k].as_str().unwrap_or("").to_string();
    Some(Err((text("class"), text("desc"))))
}

struct Port {
    io: Box<dyn Stream>,
    pending: Vec<u8>,
    synced: bool,
}

/// A QGA connection. Clones share it; each request/reply pair holds the port, but a
/// command's polling does not, so commands run concurrently in the guest.
#[derive(Clone)]
pub(super) struct Qga {
    port: Arc<Mutex<Port>>,
    log: Arc<AgentLog>,
}

/// First and longest pause between `guest-exec-status` polls.
const POLL_FIRST: Duration = Duration::from_millis(10);
const POLL_MAX: Duration = Duration::from_millis(250);

impl Qga {
    pub(super) fn new(io: Box<dyn Stream>, log: Arc<AgentLog>) -> Qga {
        Qga { port: Arc::new(Mutex::new(Port { io, pending: Vec::new(), synced: false })), log }
    }

    /// Succeeds once the agent answered a sync.
    pub(super) async fn probe(&self, timeout: Duration) -> Result<(), AgentError> {
        let deadline = Instant::now() + timeout;
        let mut port = self.lock(deadline, "guest-sync-delimited").await?;
        self.sync(&mut port, deadline).await
    }

    pub(super) async fn run(&self, command: &str, timeout: Duration) -> Result<Exited, AgentError> {
        let deadline = Instant::now() + timeout;
        let mut pid = None;
        match self.exec_and_wait(command, deadline, &mut pid).await {
            Err(AgentError::Timeout { .. }) => {
                if let Some(pid) = pid {
                    self.kill(pid).await;
                }
                Err(AgentError::Timeout {
                    command: command.to_string(),
                    timeout,
                    transport: NAME,
                    after: "QGA cannot kill it; bootproof asked QGA to `kill -9` it and its children (best effort)",
                })
            }
            other => other,
        }
    }

    async fn exec_and_wait(
        &self,
        command: &str,
        deadline: Instant,
        pid: &mut Option<i64>,
    ) -> Result<Exited, AgentError> {
        let ret = self.request(exec_request(command), deadline).await?;
        let started = ret["pid"].as_i64().ok_or_else(|| protocol(format!("guest-exec returned {ret}")))?;
        *pid = Some(started);
        let mut pause = POLL_FIRST;
        loop {
            let status = self.request(status_request(started), deadline).await?;
            if let Some(exited) = exec_status(&status).map_err(protocol)? {
                return Ok(exited);
            }
            if Instant::now() + pause >= deadline {
                return Err(timeout("guest-exec-status"));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    /// Best effort: kill the process and its children through QGA (not its process
    /// group: that is QGA's own), then one status read so QGA forgets it.
    async fn kill(&self, pid: i64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let kill = json!({"execute": "guest-exec", "arguments": {
            "path": "/bin/sh", "arg": ["-c", format!("pkill -9 -P {pid}; kill -9 {pid}")]}});
        if self.request(kill, deadline).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = self.request(status_request(pid), deadline).await;
        }
    }

    async fn lock(
        &self,
        deadline: Instant,
        what: &str,
    ) -> Result<tokio::sync::MutexGuard<'_, Port>, AgentError> {
        tokio::time::timeout_at(deadline, self.port.lock()).await.map_err(|_| timeout(what))
    }

    /// One request and its reply; resyncs first when the last exchange went wrong.
    async fn request(&self, msg: Value, deadline: Instant) -> Result<Value, AgentError> {
        let what = msg["execute"].as_str().unwrap_or("request").to_string();
        let mut port = self.lock(deadline, &what).await?;
        if !port.synced {
            self.sync(&mut port, deadline).await?;
        }
        port.synced = false;
        self.log.write_wire(NAME, ">", &msg.to_string());
        let p = &mut *port;
        let reply = tokio::time::timeout_at(deadline, async {
            p.io.write_all(&line(&msg)).await?;
            loop {
                for m in next_messages(p).await? {
                    self.log.write_wire(NAME, "<", &m.to_string());
                    // A number is the answer to an earlier sync; anything else answers us.
                    if m.get("return").is_some_and(Value::is_number) {
                        continue;
                    }
                    if let Some(r) = reply(&m) {
                        return Ok::<_, std::io::Error>(r);
                    }
                }
            }
        })
        .await
        .map_err(|_| timeout(&what))?
        .map_err(|source| AgentError::Transport { transport: NAME, source })?;
        port.synced = true;
        reply.map_err(|(class, desc)| AgentError::Refused { request: what, class, desc })
    }

    /// Sends a sync with a fresh id and skips everything up to its answer.
    async fn sync(&self, port: &mut Port, deadline: Instant) -> Result<(), AgentError> {
        let id = random_id();
        self.log.write_wire(NAME, ">", &format!("0xff guest-sync-delimited id={id}"));
        let done = tokio::time::timeout_at(deadline, async {
            port.io.write_all(&sync_request(id)).await?;
            loop {
                for m in next_messages(port).await? {
                    self.log.write_wire(NAME, "<", &m.to_string());
                    if m.get("return").and_then(Value::as_u64) == Some(id) {
                        return Ok::<_, std::io::Error>(());
                    }
                }
            }
        })
        .await
        .map_err(|_| timeout("guest-sync-delimited"))?;
        done.map_err(|source| AgentError::Transport { transport: NAME, source })?;
        port.synced = true;
        Ok(())
    }
}

/// Reads until at least one complete line is buffered, and returns its messages.
/// Only chunks with a line end trigger parsing, so a 20 MB reply costs one pass.
async fn next_messages(port: &mut Port) -> std::io::Result<Vec<Value>> {
    let messages = take_messages(&mut port.pending);
    if !messages.is_empty() {
        return Ok(messages);
    }
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = port.io.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the guest agent's port closed",
            ));
        }
        port.pending.extend_from_slice(&chunk[..n]);
        if chunk[..n].contains(&b'\n') {
            let messages = take_messages(&mut port.pending);
            if !messages.is_empty() {
                return Ok(messages);
            }
        }
    }
}

fn protocol(detail: impl Into<String>) -> AgentError {
    AgentError::Protocol { transport: NAME, detail: detail.into() }
}

fn timeout(what: &str) -> AgentError {
    AgentError::Timeout {
        command: what.to_string(),
        timeout: Duration::ZERO,
        transport: NAME,
        after: "no reply from the agent",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_starts_with_the_reset_byte_and_ends_the_line() {
        let bytes = sync_request(42);
        assert_eq!(bytes[0], 0xff);
        assert_eq!(bytes.last(), Some(&b'\n'));
        let msg: Value = serde_json::from_slice(&bytes[1..]).unwrap();
        assert_eq!(msg, json!({"execute": "guest-sync-delimited", "arguments": {"id": 42}}));
    }

    #[test]
    fn exec_runs_sh_c_with_capture() {
        let msg = exec_request("echo 'a b'");
        assert_eq!(msg["arguments"]["path"], "/bin/sh");
        assert_eq!(msg["arguments"]["arg"], json!(["-c", "echo 'a b'"]));
        assert_eq!(msg["arguments"]["capture-output"], true);
    }

    #[test]
    fn messages_skip_resync_bytes_noise_and_keep_partial_lines() {
        let mut buf = [
            &b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}\n"[..],
            b"\xff{\"return\": 7}\nnot json\n{\"return\": {\"pi",
        ]
        .concat();
        let msgs = take_messages(&mut buf);
        assert_eq!(msgs.len(), 2);
        assert_eq!(reply(&msgs[0]), Some(Err(("GenericError".into(), "JSON parse error".into()))));
        assert_eq!(reply(&msgs[1]), Some(Ok(json!(7))));
        assert_eq!(buf, b"{\"return\": {\"pi");
        assert!(take_messages(&mut buf).is_empty());
    }

    #[test]
    fn status_decodes_output_and_signals() {
        assert_eq!(exec_status(&json!({"exited": false})).unwrap(), None);
        let done = exec_status(&json!({"exited": true, "exitcode": 3, "out-data": "aGVsbG8K",
            "err-data": "ZXJyCg==", "out-truncated": true}))
        .unwrap()
        .unwrap();
        assert_eq!(
            done,
            Exited {
                exit_code: 3,
                stdout: b"hello\n".to_vec(),
                stderr: b"err\n".to_vec(),
                stdout_truncated: true,
                stderr_truncated: false
            }
        );
        let killed = exec_status(&json!({"exited": true, "signal": 9})).unwrap().unwrap();
        assert_eq!((killed.exit_code, killed.stdout.len()), (137, 0));
        assert!(exec_status(&json!({"exited": true})).is_err());
    }
}
