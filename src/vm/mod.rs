//! A running VM: the launcher, process supervision, and the run directory.
//!
//! Owns: turning a [`plan::Plan`] into QEMU (and swtpm, vhost-device-vsock) processes,
//! wiring the serial console, QMP and the guest agent's channels, and stopping them:
//! gracefully, on a timeout after collecting evidence, or by killing the process group
//! when the [`Vm`] is dropped.
//! Must not: decide what a test expects; that is the caller's (`boot`, scenarios).

pub mod argv;
pub mod boot;
pub mod checkpoint;
pub mod disk;
pub mod logport;
pub mod plan;
pub mod process;
pub mod rundir;
pub mod share;
pub mod tpm;

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};
use tokio::net::UnixListener;

use crate::agent::{Agent, AgentError, AgentLog};
use crate::console::{CaptureFiles, Console};
use crate::host::setup::find_command;
use crate::qmp::Qmp;
use plan::{Drive, Plan, VsockDevice};
use process::Supervised;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Disk(#[from] disk::DiskError),
    #[error("{0} not found on PATH; run `bootproof doctor`")]
    MissingTool(&'static str),
    #[error("QEMU exited during start-up ({status}); its messages (run dir {}):\n{log}", run_dir.display())]
    EarlyExit { status: String, log: String, run_dir: PathBuf },
    #[error("QEMU did not connect its {channel} within {timeout:?} (run dir {})", run_dir.display())]
    NoConnect { channel: &'static str, timeout: Duration, run_dir: PathBuf },
    #[error(transparent)]
    Qmp(#[from] crate::qmp::QmpError),
    #[error(transparent)]
    Setup(#[from] crate::host::setup::SetupError),
    #[error("vhost-device-vsock did not start ({status}); its messages:\n{log}")]
    VsockDevice { status: String, log: String },
    #[error(transparent)]
    Restore(#[from] checkpoint::CheckpointError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmError {
    let what = what.into();
    move |source| VmError::Io { what, source }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct VmOptions {
    /// Print console lines on stderr as they arrive.
    pub echo_console: bool,
}

/// How a VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// QEMU exited by itself; `reason` is the SHUTDOWN event's (`guest-shutdown`,
    /// `guest-reset`, `guest-panic`, ...), when it sent one.
    Exited { status: Option<i32>, reason: Option<String> },
    /// bootproof stopped it.
    Stopped { how: &'static str },
}

/// What was collected before a VM was stopped on a failure.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Evidence {
    pub screenshot: Option<PathBuf>,
    pub status: Option<String>,
    pub notes: Vec<String>,
}

pub struct Vm {
    plan: Plan,
    qemu: Supervised,
    swtpm: Option<Supervised>,
    vsock_device: Option<Supervised>,
    /// The p9 backend's `bootproof share-server`s, one per share.
    share_servers: Vec<Supervised>,
    console: Console,
    qmp: Qmp,
    agent_ports: crate::agent::Ports,
    agent: tokio::sync::OnceCell<Agent>,
    log_ports: Vec<logport::LogPortHandle>,
    started: Instant,
}

/// Starts the p9 backend's servers (one per share, see [`plan::ShareServerPlan`]) and
/// waits for their sockets, so the guest's first mount finds them listening.
async fn start_share_servers(plan: &Plan) -> Result<Vec<Supervised>, VmError> {
    let Some(server) = &plan.share_server else { return Ok(Vec::new()) };
    let layout = &plan.layout;
    let mut started = Vec::new();
    for (i, share) in plan.shares.iter().enumerate() {
        let socket = layout.share_socket(i);
        let _ = std::fs::remove_file(&socket);
        let mut cmd = tokio::process::Command::new(&server.program);
        cmd.arg("share-server")
            .arg("--shared-dir")
            .arg(&share.path)
            .arg("--socket-path")
            .arg(&socket)
            .arg("--events")
            .arg(layout.share_events(&share.tag));
        if share.readonly {
            cmd.arg("--readonly");
        }
        if let (Some(q), false) = (server.quota, share.readonly) {
            cmd.arg("--quota").arg(q.to_string());
        }
        let log = layout.share_server_log(&share.tag);
        let what = format!("starting {} share-server for share `{}`", server.program.display(), share.tag);
        let mut child = Supervised::spawn("share-server", cmd, &log).map_err(io(what.clone()))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            let exited = tokio::time::timeout(Duration::from_millis(20), child.wait()).await;
            if exited.is_ok() || Instant::now() > deadline {
                let said = process::log_tail(&log, 5);
                let e = std::io::Error::other(format!("it made no socket at {}: {said}", socket.display()));
                return Err(io(what)(e));
            }
        }
        started.push(child);
    }
    Ok(started)
}

/// How long QEMU gets to connect its console and QMP after it starts.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

impl Vm {
    /// Prepares the run directory (VARS copy, overlays, command file), starts swtpm and
    /// QEMU, and connects the console and QMP.
    pub async fn launch(plan: Plan, options: VmOptions) -> Result<Vm, VmError> {
        Vm::start(plan, options, None).await
    }

    /// Starts a fork of a checkpoint: `plan` already points at its disks and VARS
    /// ([`checkpoint::Saved::apply`]); QEMU starts with `-incoming defer`, every channel
    /// connects as for a boot, then the saved state is loaded and the guest runs on.
    pub async fn restore(
        plan: Plan,
        options: VmOptions,
        incoming: &checkpoint::Incoming,
    ) -> Result<Vm, VmError> {
        Vm::start(plan, options, Some(incoming)).await
    }

    async fn start(
        plan: Plan,
        options: VmOptions,
        incoming: Option<&checkpoint::Incoming>,
    ) -> Result<Vm, VmError> {
        prepare(&plan, incoming)?;
        let layout = &plan.layout;
        let serial = bind(&layout.serial_socket())?;
        let qmp_listener = bind(&layout.qmp_socket())?;
        let swtpm = if plan.tpm {
            let bin = find_command("swtpm").ok_or(VmError::MissingTool("swtpm"))?;
            Some(tpm::start(&bin, layout).map_err(io("starting swtpm"))?)
        } else {
            None
        };
        let agent_listeners = AgentListeners::bind(&plan)?;
        let log_listeners: Vec<UnixListener> =
            plan.log_ports.iter().map(|p| bind(&p.socket)).collect::<Result<_, _>>()?;
        let vsock_device = match plan.agent.vsock {
            Some(VsockDevice::VhostUser) => Some(start_vsock_device(layout).await?),
            _ => None,
        };
        let share_servers = start_share_servers(&plan).await?;
        let argv = full_argv(&plan, incoming);
        tracing::debug!(run_dir = %layout.dir.display(), argv = %argv::shell_command(&argv), "starting QEMU");
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        let started = Instant::now();
        let mut qemu = Supervised::spawn("QEMU", cmd, &layout.qemu_log())
            .map_err(io(format!("starting {}", plan.qemu.display())))?;
        let (serial_stream, qmp_stream) = match accept_both(&serial, &qmp_listener, &mut qemu).await {
            Ok(streams) => streams,
            Err(e) => return Err(e.into_vm_error(layout)),
        };
        let files = CaptureFiles {
            raw: &layout.console_raw(),
            text: &layout.console_log(),
            echo: options.echo_console,
        };
        let console = Console::capture(serial_stream, files, started).map_err(io("console capture files"))?;
        console.explain_closing_with(qemu.exit_watch());
        // QEMU connects its sockets before it creates the devices, so a device it
        // refuses ends it only now: a closed QMP connection, or an agent port never
        // connected. Its exit status and log say why.
        let qmp = match Qmp::connect(qmp_stream, &layout.qmp_log(), started).await {
            Ok(qmp) => qmp,
            Err(e) => return Err(exit_or(&mut qemu, layout, e.into()).await),
        };
        qmp.explain_closing_with(qemu.exit_watch());
        mark_resets(&console, &qmp);
        let agent_ports = match agent_listeners.accept(&plan, started).await {
            Ok(ports) => ports,
            Err(e) => return Err(exit_or(&mut qemu, layout, e).await),
        };
        let log_ports = match accept_log_ports(&plan, log_listeners, started).await {
            Ok(ports) => ports,
            Err(e) => return Err(exit_or(&mut qemu, layout, e).await),
        };
        if let Some(incoming) = incoming
            && let Err(detail) = checkpoint::restore_state(&qmp, incoming, Duration::from_secs(120)).await
        {
            let e = checkpoint::CheckpointError::RestoreFailed {
                state: incoming.state.clone(),
                detail,
                log: layout.qemu_log(),
            };
            return Err(exit_or(&mut qemu, layout, e.into()).await);
        }
        let agent = tokio::sync::OnceCell::new();
        Ok(Vm {
            plan,
            qemu,
            swtpm,
            vsock_device,
            share_servers,
            console,
            qmp,
            agent_ports,
            agent,
            log_ports,
            started,
        })
    }

    /// The guest agent, once one answers on the plan's channels (qemu-guest-agent
    /// preferred, then vsock, then the shell), waiting up to `timeout` (not scaled for
    /// TCG; the caller knows what its guest needs). The first success is kept: later
    /// calls return it at once. A failed wait can be retried.
    pub async fn agent(&self, timeout: Duration) -> Result<Agent, AgentError> {
        let agent = self.agent.get_or_try_init(|| crate::agent::connect(&self.agent_ports, timeout)).await?;
        Ok(agent.clone())
    }

    /// Forgets the agent found so far: after a guest reboot its connection is stale.
    pub fn forget_agent(&mut self) {
        self.agent.take();
    }

    /// A secret that must never reach a file of the run directory or a message: the
    /// console logs, the tail shown on failure and `agent.log` show `[REDACTED]`.
    pub fn redact(&self, secret: &str) {
        self.console.redact(secret);
        self.agent_ports.log().redact(secret);
    }

    pub fn console(&self) -> &Console {
        &self.console
    }

    /// The profile's log ports, being captured into the run directory.
    pub fn log_ports(&self) -> &[logport::LogPortHandle] {
        &self.log_ports
    }

    pub fn qmp(&self) -> &Qmp {
        &self.qmp
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn run_dir(&self) -> &Path {
        &self.plan.layout.dir
    }

    /// Time since QEMU started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Process ids of QEMU and its helpers (swtpm, vhost-device-vsock), for supervision
    /// tests and diagnostics.
    pub fn pids(&self) -> Vec<u32> {
        let helpers = [&self.swtpm, &self.vsock_device];
        let shares = self.share_servers.iter().filter_map(|s| s.pid());
        self.qemu
            .pid()
            .into_iter()
            .chain(helpers.into_iter().flatten().filter_map(|s| s.pid()))
            .chain(shares)
            .collect()
    }

    /// Waits for QEMU to exit by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<Ending> {
        let status = tokio::time::timeout(timeout, self.qemu.wait()).await.ok()?.ok();
        Some(self.exited(status).await)
    }

    async fn exited(&mut self, status: Option<ExitStatus>) -> Ending {
        // Let the capture read QEMU's last bytes before anyone looks at the console.
        self.console.closed(Duration::from_secs(2)).await;
        if let Some(swtpm) = &mut self.swtpm {
            // swtpm --terminate leaves with QEMU; give it a moment, then make sure.
            if tokio::time::timeout(Duration::from_secs(2), swtpm.wait()).await.is_err() {
                swtpm.kill().await;
            }
        }
        // vhost-device-vsock outlives its VM's disconnect: it serves the next one.
        if let Some(device) = &mut self.vsock_device {
            device.kill().await;
        }
        for server in &mut self.share_servers {
            server.kill().await;
        }
        let reason = self
            .qmp
            .seen_events()
            .into_iter()
            .rev()
            .find(|e| e.name == "SHUTDOWN")
            .and_then(|e| e.data["reason"].as_str().map(String::from));
        Ending::Exited { status: status.and_then(|s| s.code()), reason }
    }

    /// Presses the power button and waits `grace` for the guest to power off; then asks
    /// QEMU to quit, and kills it if even that fails.
    pub async fn shutdown(&mut self, grace: Duration) -> Ending {
        if self.qmp.system_powerdown().await.is_ok()
            && let Some(ending) = self.wait_exit(grace).await
        {
            return ending;
        }
        self.quit().await
    }

    /// Ends QEMU now: `quit` over QMP, then a kill if it does not leave.
    pub async fn quit(&mut self) -> Ending {
        if self.qmp.quit().await.is_ok() && self.wait_exit(Duration::from_secs(10)).await.is_some() {
            return Ending::Stopped { how: "quit" };
        }
        self.kill().await;
        Ending::Stopped { how: "killed" }
    }

    /// Collects what can still be learnt from a VM that is about to be stopped for a
    /// failure: a screenshot (when there is a display), its run state, flushed logs.
    pub async fn collect_evidence(&mut self, name: &str) -> Evidence {
        let mut ev = Evidence::default();
        if self.plan.display != crate::profile::Display::None {
            let path = self.plan.layout.screenshot(name);
            match tokio::time::timeout(Duration::from_secs(10), self.qmp.screendump(&path)).await {
                Ok(Ok(())) => ev.screenshot = Some(path),
                Ok(Err(e)) => ev.notes.push(format!("screenshot failed: {e}")),
                Err(_) => ev.notes.push("screenshot timed out".into()),
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), self.qmp.query_status()).await {
            Ok(Ok(s)) => ev.status = Some(s),
            Ok(Err(e)) => ev.notes.push(format!("query-status failed: {e}")),
            Err(_) => ev.notes.push("query-status timed out".into()),
        }
        ev
    }

    /// Kills QEMU and its helpers (their whole process groups) and reaps them.
    pub async fn kill(&mut self) {
        self.qemu.kill().await;
        for helper in [&mut self.swtpm, &mut self.vsock_device].into_iter().flatten() {
            helper.kill().await;
        }
        for server in &mut self.share_servers {
            server.kill().await;
        }
        self.console.closed(Duration::from_secs(2)).await;
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        // The processes die with their `Supervised` handles; the sockets are useless
        // after the run, and a private socket directory must not pile up in /tmp.
        let l = &self.plan.layout;
        let agent = [l.qga_socket(), l.shell_socket(), l.vhost_vsock_socket(), l.vsock_socket()];
        let logs = self.plan.log_ports.iter().map(|p| p.socket.clone());
        let shares: Vec<PathBuf> = (0..self.share_servers.len()).map(|i| l.share_socket(i)).collect();
        let logs = logs.chain(shares);
        for s in [l.serial_socket(), l.qmp_socket(), l.tpm_socket()].into_iter().chain(agent).chain(logs) {
            let _ = std::fs::remove_file(s);
        }
        if l.socket_dir != l.dir {
            let _ = std::fs::remove_dir(&l.socket_dir);
        }
    }
}

/// Every machine reset QEMU reports starts a new boot on the console: waits after it
/// match only what the new boot prints, never the old boot's last lines.
fn mark_resets(console: &Console, qmp: &Qmp) {
    let (console, mut events) = (console.clone(), qmp.events());
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(e) if e.name == "RESET" => console.mark_reset().await,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}

fn bind(path: &Path) -> Result<UnixListener, VmError> {
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path).map_err(io(format!("binding {}", path.display())))
}

/// Takes QEMU's connection to each log port's socket and starts capturing it.
async fn accept_log_ports(
    plan: &Plan,
    listeners: Vec<UnixListener>,
    started: Instant,
) -> Result<Vec<logport::LogPortHandle>, VmError> {
    let mut ports = Vec::new();
    for (port, listener) in plan.log_ports.iter().zip(listeners) {
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, listener.accept()).await {
            Ok(Ok((stream, _))) => stream,
            Ok(Err(e)) => {
                return Err(VmError::Io { what: format!("accepting log port {}", port.name), source: e });
            }
            Err(_) => {
                let run_dir = plan.layout.dir.clone();
                return Err(VmError::NoConnect { channel: "log port", timeout: CONNECT_TIMEOUT, run_dir });
            }
        };
        let handle = logport::capture(&port.name, stream, &port.file, started)
            .map_err(io(format!("creating {}", port.file.display())))?;
        ports.push(handle);
    }
    Ok(ports)
}

/// Sockets for the agent's virtio-serial ports, bound before QEMU starts.
struct AgentListeners {
    qga: Option<UnixListener>,
    shell: Option<UnixListener>,
}

impl AgentListeners {
    fn bind(plan: &Plan) -> Result<AgentListeners, VmError> {
        let l = &plan.layout;
        Ok(AgentListeners {
            qga: plan.agent.qga.then(|| bind(&l.qga_socket())).transpose()?,
            shell: plan.agent.shell.then(|| bind(&l.shell_socket())).transpose()?,
        })
    }

    /// Takes QEMU's connections (made while it starts, before the guest runs) and
    /// opens `agent.log`.
    async fn accept(self, plan: &Plan, started: Instant) -> Result<crate::agent::Ports, VmError> {
        let accept = |listener: Option<UnixListener>, channel: &'static str| async move {
            let Some(listener) = listener else { return Ok(None) };
            match tokio::time::timeout(CONNECT_TIMEOUT, listener.accept()).await {
                Ok(Ok((stream, _))) => Ok(Some(Box::new(stream) as Box<dyn crate::agent::Stream>)),
                Ok(Err(e)) => Err(VmError::Io { what: format!("accepting QEMU's {channel}"), source: e }),
                Err(_) => Err(VmError::NoConnect {
                    channel,
                    timeout: CONNECT_TIMEOUT,
                    run_dir: plan.layout.dir.clone(),
                }),
            }
        };
        let qga = accept(self.qga, "qemu-guest-agent port").await?;
        let shell = accept(self.shell, "agent shell port").await?;
        let vsock = plan.agent.vsock.map(|device| match device {
            VsockDevice::VhostUser => crate::agent::Vsock::VhostUser { uds: plan.layout.vsock_socket() },
            VsockDevice::Kernel { cid } => crate::agent::Vsock::Kernel { cid },
        });
        let log_path = plan.layout.agent_log();
        let log =
            AgentLog::create(&log_path, started).map_err(io(format!("creating {}", log_path.display())))?;
        Ok(crate::agent::Ports::new(qga, shell, vsock, std::sync::Arc::new(log)))
    }
}

/// How long vhost-device-vsock gets to create its socket.
const VSOCK_DEVICE_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts vhost-device-vsock (installing it first when allowed) and waits until its
/// vhost-user socket exists, since QEMU connects to it at start-up. The guest always
/// has context id 3: each VM has its own device process.
async fn start_vsock_device(layout: &rundir::RunLayout) -> Result<Supervised, VmError> {
    let bin = crate::host::setup::ensure_cargo_tool(crate::host::VHOST_DEVICE_VSOCK)?;
    let socket = layout.vhost_vsock_socket();
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(layout.vsock_socket());
    let mut cmd = tokio::process::Command::new(&bin);
    cmd.args(["--guest-cid", "3", "--socket"]).arg(&socket).arg("--uds-path").arg(layout.vsock_socket());
    let mut device = Supervised::spawn("vhost-device-vsock", cmd, &layout.vsock_log())
        .map_err(io(format!("starting {}", bin.display())))?;
    let deadline = Instant::now() + VSOCK_DEVICE_TIMEOUT;
    while !socket.exists() {
        if let Ok(Some(status)) = device.child.try_wait() {
            let log = std::fs::read_to_string(layout.vsock_log()).unwrap_or_default();
            return Err(VmError::VsockDevice { status: status.to_string(), log });
        }
        if Instant::now() > deadline {
            device.kill().await;
            let log = std::fs::read_to_string(layout.vsock_log()).unwrap_or_default();
            let status = format!("no socket {} after {VSOCK_DEVICE_TIMEOUT:?}", socket.display());
            return Err(VmError::VsockDevice { status, log });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(device)
}

/// The argv, with `-incoming defer` for a fork.
fn full_argv(plan: &Plan, incoming: Option<&checkpoint::Incoming>) -> Vec<std::ffi::OsString> {
    let mut argv = argv::argv(plan);
    if incoming.is_some() {
        argv.extend(["-incoming".into(), "defer".into()]);
    }
    argv
}

/// Copies the VARS template (and a fork's TPM state), creates the disk overlays, and
/// records the command line.
fn prepare(plan: &Plan, incoming: Option<&checkpoint::Incoming>) -> Result<(), VmError> {
    let layout = &plan.layout;
    if let Some(tpm) = incoming.and_then(|i| i.tpm_state.as_ref()) {
        checkpoint::copy_tpm_state(tpm, &layout.tpm_state())
            .map_err(io(format!("copying the checkpoint's TPM state {}", tpm.display())))?;
    }
    if let Some(fw) = &plan.firmware {
        std::fs::copy(&fw.vars_template, &fw.vars).map_err(io(format!(
            "copying {} to {}",
            fw.vars_template.display(),
            fw.vars.display()
        )))?;
    }
    let qemu_img = || find_command("qemu-img").ok_or(VmError::MissingTool("qemu-img"));
    for d in &plan.drives {
        match d {
            Drive::Disk { overlay, base, base_format, .. } => {
                let qemu_img = qemu_img()?;
                if !base.exists() {
                    return Err(disk::DiskError::Missing { path: base.clone() }.into());
                }
                let format = match base_format {
                    Some(f) => *f,
                    None => disk::detect_format(&qemu_img, base)?,
                };
                disk::create_overlay(&qemu_img, base, format, overlay)?;
            }
            Drive::Blank { path, bytes, .. } => disk::create_blank(&qemu_img()?, path, *bytes)?,
            Drive::Cdrom { .. } => {}
        }
    }
    for d in &plan.drives {
        if let Drive::Cdrom { path } = d
            && !path.exists()
        {
            return Err(disk::DiskError::Missing { path: path.clone() }.into());
        }
    }
    let command = argv::shell_command(&full_argv(plan, incoming));
    std::fs::write(layout.command_file(), format!("#!/bin/sh\n# The QEMU command bootproof ran (sockets must be listened on to rerun it).\n{command}\n"))
        .map_err(io("writing the command file"))?;
    Ok(())
}

enum AcceptError {
    Exited(String),
    Timeout(&'static str),
    Io(std::io::Error),
}

/// How long QEMU gets to finish exiting once one of its channels has closed.
const EXIT_GRACE: Duration = Duration::from_secs(3);

/// `error`, or QEMU's exit during start-up when that is what caused it.
async fn exit_or(qemu: &mut Supervised, layout: &rundir::RunLayout, error: VmError) -> VmError {
    match tokio::time::timeout(EXIT_GRACE, qemu.wait()).await {
        Ok(Ok(status)) => early_exit(status.to_string(), layout),
        _ => error,
    }
}

fn early_exit(status: String, layout: &rundir::RunLayout) -> VmError {
    let log = process::log_tail(&layout.qemu_log(), process::LOG_TAIL_LINES);
    VmError::EarlyExit { status, log, run_dir: layout.dir.clone() }
}

impl AcceptError {
    fn into_vm_error(self, layout: &rundir::RunLayout) -> VmError {
        match self {
            AcceptError::Exited(status) => early_exit(status, layout),
            AcceptError::Timeout(channel) => {
                VmError::NoConnect { channel, timeout: CONNECT_TIMEOUT, run_dir: layout.dir.clone() }
            }
            AcceptError::Io(e) => VmError::Io { what: "accepting QEMU's connections".into(), source: e },
        }
    }
}

/// Accepts QEMU's serial and QMP connections, noticing if QEMU dies instead.
async fn accept_both(
    serial: &UnixListener,
    qmp: &UnixListener,
    qemu: &mut Supervised,
) -> Result<(tokio::net::UnixStream, tokio::net::UnixStream), AcceptError> {
    let accept = async {
        let s = serial.accept().await.map_err(AcceptError::Io)?.0;
        let q = qmp.accept().await.map_err(AcceptError::Io)?.0;
        Ok((s, q))
    };
    tokio::select! {
        r = tokio::time::timeout(CONNECT_TIMEOUT, accept) => r.unwrap_or(Err(AcceptError::Timeout("serial console and QMP"))),
        status = qemu.wait() => Err(AcceptError::Exited(status.map_or_else(|e| e.to_string(), |s| s.to_string()))),
    }
}
