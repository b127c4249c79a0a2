//! QMP client: capabilities, commands, events, screenshots, keys, power-down.
//!
//! Owns: the QMP connection of one VM and `qmp.log` (every message both ways, stamped).
//! Must not: interpret events beyond routing them; the VM supervisor decides what a
//! SHUTDOWN means.
//!
//! Hand-written over serde_json rather than the `qapi` crate: that crate's untagged
//! event enum drops the whole connection on an event its bundled schema does not know
//! (measured in notes/qemu-channels.md), and an unknown event must never cost us the
//! VM. Replies are matched by `id`; events go to a broadcast channel.

mod keys;

pub use keys::{KeyError, chord_qcodes, text_keystrokes};

use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{broadcast, oneshot};

use crate::vm::process::{ExitReport, ExitWatch};

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// `qemu` says how QEMU ended, when the VM supervisor gave the client an
    /// [`ExitWatch`] and QEMU has indeed exited.
    #[error("QMP connection closed{}", closed_because(qemu))]
    Closed { qemu: Option<ExitReport> },
    #[error("QMP: {0}")]
    Io(#[from] std::io::Error),
    #[error("QMP greeting was not understood: {0}")]
    Greeting(String),
    #[error("QMP command `{command}` failed: {class}: {desc}")]
    Command { command: String, class: String, desc: String },
    #[error("QMP command `{command}` got no reply within {timeout:?}")]
    NoReply { command: String, timeout: Duration },
    #[error("no QMP event {name} within {timeout:?}")]
    NoEvent { name: String, timeout: Duration },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("screenshot {}: {detail}", path.display())]
    Screenshot { path: PathBuf, detail: String },
}

fn closed_because(qemu: &Option<ExitReport>) -> String {
    qemu.as_ref().map_or_else(|| " (QEMU exited?)".to_string(), |r| format!(": {r}"))
}

/// An event awaited from the moment of [`Qmp::watch`].
pub struct EventWatch {
    name: String,
    /// How many such events had been seen then.
    before: usize,
    rx: broadcast::Receiver<Event>,
}

impl EventWatch {
    /// Whether a new event came within `timeout` (false when QMP closed first). The
    /// record of seen events answers too, also after the receiver lagged behind.
    pub async fn wait(mut self, qmp: &Qmp, timeout: Duration) -> bool {
        let fut = async {
            loop {
                if qmp.count_seen(&self.name) > self.before {
                    return true;
                }
                match self.rx.recv().await {
                    Ok(e) if e.name == self.name => return true,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return false,
                }
            }
        };
        tokio::time::timeout(timeout, fut).await.unwrap_or(false)
    }
}

/// An asynchronous event from QEMU, with the host time since QEMU started.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub data: Value,
    pub at: Duration,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

struct Log {
    file: std::fs::File,
    started: Instant,
}

impl Log {
    fn write(&mut self, direction: &str, msg: &Value) {
        let line = json!({"t": self.started.elapsed().as_secs_f64(), "dir": direction, "msg": msg});
        let _ = writeln!(self.file, "{}", crate::redact::text(&line.to_string()));
    }
}

/// A connected QMP client. Cheap to clone.
#[derive(Clone)]
pub struct Qmp {
    writer: Arc<tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>>,
    pending: Pending,
    events: broadcast::Sender<Event>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
    log: Arc<Mutex<Log>>,
    /// Events seen so far (names only), so a late waiter still finds an early event.
    seen: Arc<Mutex<Vec<Event>>>,
    /// How QEMU ended, asked when the connection closes.
    exit: Arc<OnceLock<ExitWatch>>,
}

/// How long a closed connection waits for QEMU's exit status (see [`ExitWatch::report`]).
const EXIT_GRACE: Duration = Duration::from_secs(3);

/// How long a plain command may take to be answered.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

impl Qmp {
    /// Reads the greeting, negotiates capabilities and starts routing messages.
    pub async fn connect<S>(stream: S, log_path: &Path, started: Instant) -> Result<Qmp, QmpError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (reader, writer) = tokio::io::split(stream);
        let mut lines = BufReader::new(reader).lines();
        let mut log = Log { file: std::fs::File::create(log_path)?, started };
        let greeting = lines.next_line().await?.ok_or(QmpError::Closed { qemu: None })?;
        let greeting: Value =
            serde_json::from_str(&greeting).map_err(|e| QmpError::Greeting(e.to_string()))?;
        log.write("in", &greeting);
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Greeting(greeting.to_string()));
        }
        let (events, _) = broadcast::channel(256);
        let qmp = Qmp {
            writer: Arc::new(tokio::sync::Mutex::new(Box::new(writer))),
            pending: Default::default(),
            events,
            next_id: Default::default(),
            log: Arc::new(Mutex::new(log)),
            seen: Default::default(),
            exit: Default::default(),
        };
        tokio::spawn(route(
            lines,
            qmp.pending.clone(),
            qmp.events.clone(),
            qmp.log.clone(),
            qmp.seen.clone(),
            started,
        ));
        qmp.execute("qmp_capabilities", None).await?;
        Ok(qmp)
    }

    /// From now on, an error for a closed connection says how QEMU ended, as `watch`
    /// tells (its exit status and the last lines of its log).
    pub fn explain_closing_with(&self, watch: ExitWatch) {
        let _ = self.exit.set(watch);
    }

    async fn closed(&self) -> QmpError {
        let qemu = match self.exit.get() {
            Some(watch) => watch.report(EXIT_GRACE).await,
            None => None,
        };
        QmpError::Closed { qemu }
    }

    /// Runs a command and returns its `return` value.
    pub async fn execute(&self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        self.execute_timeout(command, arguments, REPLY_TIMEOUT).await
    }

    pub async fn execute_timeout(
        &self,
        command: &str,
        arguments: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        self.execute_logged(command, arguments, timeout, true).await
    }

    /// Runs a command; `log_arguments: false` keeps its arguments out of `qmp.log`.
    async fn execute_logged(
        &self,
        command: &str,
        arguments: Option<Value>,
        timeout: Duration,
        log_arguments: bool,
    ) -> Result<Value, QmpError> {
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut msg = json!({"execute": command, "id": id});
        if let Some(args) = arguments {
            msg["arguments"] = args;
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id, tx);
        let logged = if log_arguments {
            msg.clone()
        } else {
            json!({"execute": command, "id": id, "arguments": "[REDACTED]"})
        };
        tracing::debug!(target: "bootproof::qmp", message = %logged, "QMP command");
        self.log.lock().unwrap_or_else(|p| p.into_inner()).write("out", &logged);
        let written = {
            let mut w = self.writer.lock().await;
            let mut bytes = serde_json::to_vec(&msg).expect("serialisable");
            bytes.push(b'\n');
            w.write_all(&bytes).await
        };
        if written.is_err() {
            return Err(self.closed().await);
        }
        let reply = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => return Err(self.closed().await),
            Err(_) => {
                return Err(QmpError::NoReply { command: command.into(), timeout });
            }
        };
        if let Some(err) = reply.get("error") {
            return Err(QmpError::Command {
                command: command.into(),
                class: err["class"].as_str().unwrap_or("?").into(),
                desc: err["desc"].as_str().unwrap_or("?").into(),
            });
        }
        Ok(reply.get("return").cloned().unwrap_or(Value::Null))
    }

    /// Subscribes to events from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Events received so far.
    pub fn seen_events(&self) -> Vec<Event> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Watches for the next event named `name`: taken before the command that causes
    /// it, so one that arrives before the wait starts is not missed, and one seen
    /// earlier (a previous reboot's) does not count.
    pub fn watch(&self, name: &str) -> EventWatch {
        EventWatch { name: name.to_string(), before: self.count_seen(name), rx: self.events() }
    }

    fn count_seen(&self, name: &str) -> usize {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).iter().filter(|e| e.name == name).count()
    }

    /// Waits for an event named `name` (already seen ones count).
    pub async fn wait_event(&self, name: &str, timeout: Duration) -> Result<Event, QmpError> {
        let mut rx = self.events();
        if let Some(e) = self.seen_events().into_iter().find(|e| e.name == name) {
            return Ok(e);
        }
        let fut = async {
            loop {
                match rx.recv().await {
                    Ok(e) if e.name == name => return Some(e),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(Some(event)) => Ok(event),
            Ok(None) => Err(self.closed().await),
            Err(_) => Err(QmpError::NoEvent { name: name.into(), timeout }),
        }
    }

    /// `query-status`: e.g. `running`, `paused`, `shutdown`, `internal-error`.
    pub async fn query_status(&self) -> Result<String, QmpError> {
        let r = self.execute("query-status", None).await?;
        Ok(r["status"].as_str().unwrap_or("unknown").to_string())
    }

    /// Saves the display as PNG. QEMU 7.1+ writes PNG itself; older QEMU writes PPM,
    /// which is converted here.
    pub async fn screendump(&self, path: &Path) -> Result<(), QmpError> {
        let args = json!({"filename": path, "format": "png"});
        match self.execute("screendump", Some(args)).await {
            Ok(_) => Ok(()),
            Err(QmpError::Command { desc, .. }) if desc.contains("format") => {
                let ppm = path.with_extension("ppm");
                self.execute("screendump", Some(json!({"filename": ppm}))).await?;
                let converted = ppm_to_png(&ppm, path);
                let _ = std::fs::remove_file(&ppm);
                converted.map_err(|detail| QmpError::Screenshot { path: path.into(), detail })
            }
            Err(e) => Err(e),
        }
    }

    /// Presses a chord such as `ctrl-alt-delete` or `ret`.
    pub async fn send_keys(&self, chord: &str) -> Result<(), QmpError> {
        self.send_qcodes(&chord_qcodes(chord)?).await
    }

    /// Presses keys together, by QEMU's names (`ctrl`, `alt`, `delete`).
    pub async fn send_qcodes(&self, qcodes: &[String]) -> Result<(), QmpError> {
        let keys: Vec<Value> = qcodes.iter().map(|q| json!({"type": "qcode", "data": q})).collect();
        self.execute("send-key", Some(json!({"keys": keys}))).await.map(drop)
    }

    /// Types text through the emulated keyboard, one `send-key` per character: QEMU
    /// paces those itself, while one batch of input events loses keys.
    pub async fn type_text(&self, text: &str) -> Result<(), QmpError> {
        for chord in text_keystrokes(text)? {
            let keys: Vec<Value> = chord.iter().map(|q| json!({"type": "qcode", "data": q})).collect();
            self.execute("send-key", Some(json!({"keys": keys}))).await?;
        }
        Ok(())
    }

    /// Types a secret: like [`Qmp::type_text`], but `qmp.log` records no keys.
    pub async fn type_secret(&self, text: &str) -> Result<(), QmpError> {
        for chord in text_keystrokes(text)? {
            let keys: Vec<Value> = chord.iter().map(|q| json!({"type": "qcode", "data": q})).collect();
            self.execute_logged("send-key", Some(json!({"keys": keys})), REPLY_TIMEOUT, false).await?;
        }
        Ok(())
    }

    /// Opens the tray of the drive whose block backend is `device` and takes the disc
    /// out, even if the guest locked it.
    pub async fn eject(&self, device: &str) -> Result<(), QmpError> {
        self.execute("eject", Some(json!({"device": device, "force": true}))).await.map(drop)
    }

    /// Presses the ACPI power button.
    pub async fn system_powerdown(&self) -> Result<(), QmpError> {
        self.execute("system_powerdown", None).await.map(drop)
    }

    /// Asks QEMU to exit now.
    pub async fn quit(&self) -> Result<(), QmpError> {
        match self.execute_timeout("quit", None, Duration::from_secs(5)).await {
            Ok(_) | Err(QmpError::Closed { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

async fn route<R: AsyncRead + Unpin>(
    mut lines: tokio::io::Lines<BufReader<R>>,
    pending: Pending,
    events: broadcast::Sender<Event>,
    log: Arc<Mutex<Log>>,
    seen: Arc<Mutex<Vec<Event>>>,
    started: Instant,
) {
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            log.lock().unwrap_or_else(|p| p.into_inner()).write("in-unparsed", &Value::String(line));
            continue;
        };
        log.lock().unwrap_or_else(|p| p.into_inner()).write("in", &msg);
        if let Some(name) = msg.get("event").and_then(Value::as_str) {
            let event = Event { name: name.to_string(), data: msg["data"].clone(), at: started.elapsed() };
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.len() < 1024 {
                seen.push(event.clone());
            }
            let _ = events.send(event);
        } else if let Some(id) = msg.get("id").and_then(Value::as_u64)
            && let Some(tx) = pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id)
        {
            let _ = tx.send(msg);
        }
    }
    // Dropping the senders tells every waiter the connection is gone.
    pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

/// Converts a PPM (QEMU's screendump without `format`) to PNG, with the `image` crate.
fn ppm_to_png(ppm: &Path, png_path: &Path) -> Result<(), String> {
    let img = image::ImageReader::open(ppm)
        .map_err(|e| e.to_string())?
        .with_guessed_format()
        .map_err(|e| e.to_string())?
        .decode()
        .map_err(|e| format!("{}: {e}", ppm.display()))?;
    img.to_rgb8().save_with_format(png_path, image::ImageFormat::Png).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ppm_converts_to_png_pixel_for_pixel() {
        let dir = tempfile::tempdir().unwrap();
        let ppm = dir.path().join("s.ppm");
        let mut data = b"P6\n2 1\n255\n".to_vec();
        data.extend_from_slice(&[255, 0, 0, 0, 0, 255]);
        std::fs::write(&ppm, data).unwrap();
        let png_path = dir.path().join("s.png");
        super::ppm_to_png(&ppm, &png_path).unwrap();
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png_path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (2, 1));
        assert_eq!(&buf[..6], &[255, 0, 0, 0, 0, 255]);
        // A truncated file is an error naming it, not a picture.
        std::fs::write(&ppm, b"P6\n2 1\n255\n\xff").unwrap();
        let e = super::ppm_to_png(&ppm, &png_path).unwrap_err();
        assert!(e.contains("s.ppm"), "{e}");
    }
}
