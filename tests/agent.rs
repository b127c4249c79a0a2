//! The guest agent end to end. Each transport against the real thing: the shell
//! protocol against the host's own `sh` (fast, no VM); qemu-guest-agent against the
//! host's `qemu-ga` on a Unix socket (the tiny guest has no qemu-guest-agent, and
//! packing Debian's, with glib and its other libraries, into the busybox initramfs
//! would make it neither tiny nor simple); the shell and vsock transports against the
//! tiny guest under QEMU, one boot each.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bootproof::agent::{Agent, AgentError, AgentLog};

/// What every transport must do, on one agent: plain output, stderr and exit codes,
/// every byte value, a timeout that leaves the agent working, concurrent callers.
async fn exercise(agent: &Agent, slow: Duration) {
    let t = Duration::from_secs(30);
    let out = agent.run("echo hello", t).await.unwrap();
    assert_eq!((out.exit_code, out.stdout_text().as_str(), out.stderr_text().as_str()), (0, "hello\n", ""));

    let out = agent.run("echo out; echo err >&2; exit 3", t).await.unwrap();
    assert_eq!(
        (out.exit_code, out.stdout_text().as_str(), out.stderr_text().as_str()),
        (3, "out\n", "err\n")
    );

    let all = "i=0; while [ $i -lt 256 ]; do printf \"\\\\$(printf %o $i)\"; i=$((i+1)); done";
    let out = agent.run(all, t).await.unwrap();
    assert_eq!(out.stdout, (0..=255u8).collect::<Vec<_>>(), "every byte value, in order");

    let started = Instant::now();
    let e = agent.run("sleep 30", slow).await.unwrap_err();
    assert!(matches!(e, AgentError::Timeout { .. }), "{e}");
    assert!(started.elapsed() < slow + Duration::from_secs(3), "took {:?}", started.elapsed());
    let out = agent.run("echo still here", t).await.unwrap();
    assert_eq!(out.stdout_text(), "still here\n");

    let (a, b) = tokio::join!(agent.run("sleep 1; echo one", t), agent.run("echo two >&2; exit 2", t));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.exit_code, a.stdout_text().as_str()), (0, "one\n"));
    assert_eq!((b.exit_code, b.stderr_text().as_str()), (2, "two\n"));
}

/// 17 MB of output comes back as 16 MiB and a line that says it was cut.
fn assert_cut_at_16_mib(stdout: &[u8]) {
    let trailer = b"\n[bootproof: stdout cut at 16 MiB]\n";
    assert!(stdout.ends_with(trailer), "no trailer on {} bytes", stdout.len());
    assert_eq!(stdout.len(), (16 << 20) + trailer.len());
}

fn log(dir: &std::path::Path) -> Arc<AgentLog> {
    Arc::new(AgentLog::create(&dir.join("agent.log"), Instant::now()).unwrap())
}

#[tokio::test]
async fn shell_protocol_against_the_hosts_sh() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let theirs = std::os::fd::OwnedFd::from(theirs);
    let mut sh = tokio::process::Command::new("sh")
        .stdin(theirs.try_clone().unwrap())
        .stdout(theirs.try_clone().unwrap())
        .stderr(theirs)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    ours.set_nonblocking(true).unwrap();
    let stream = tokio::net::UnixStream::from_std(ours).unwrap();
    let agent = Agent::shell(stream, log(dir.path()), Duration::from_secs(10)).await.unwrap();
    assert_eq!(agent.transport(), "shell");
    exercise(&agent, Duration::from_secs(2)).await;
    let big = agent.run("head -c 17000000 /dev/zero | tr '\\0' x", Duration::from_secs(120)).await.unwrap();
    assert_cut_at_16_mib(&big.stdout);
    sh.kill().await.unwrap();
}

/// The host's qemu-ga, started the way a guest's would be, but listening on a Unix
/// socket; requests it runs are host commands, so the test's commands are harmless.
#[tokio::test]
async fn qemu_guest_agent_protocol_against_a_real_qemu_ga() {
    if let Err(e) = bootproof::host::setup::ensure(&[bootproof::host::setup::Requirement::command(
        "qemu-ga",
        "qemu-guest-agent",
        "qemu-guest-agent",
        "the QGA transport's test peer",
    )]) {
        panic!("{e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("qga.sock");
    let qga = bootproof::host::setup::find_command("qemu-ga").unwrap();
    let mut ga = tokio::process::Command::new(qga)
        .args(["-m", "unix-listen", "-p"])
        .arg(&socket)
        .arg("-f")
        .arg(dir.path().join("qga.pid"))
        .arg("-t")
        .arg(dir.path())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let stream = loop {
        match tokio::net::UnixStream::connect(&socket).await {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => panic!("qemu-ga did not listen: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let agent = Agent::qga(stream, log(dir.path()), Duration::from_secs(10)).await.unwrap();
    assert_eq!(agent.transport(), "qemu-guest-agent");
    let out = agent.run("true", Duration::from_secs(10)).await.unwrap();
    eprintln!("qemu-guest-agent: round trip of `true` {:.3?}", out.duration);
    exercise(&agent, Duration::from_secs(2)).await;
    let big = agent.run("head -c 17000000 /dev/zero | tr '\\0' x", Duration::from_secs(120)).await.unwrap();
    assert_cut_at_16_mib(&big.stdout);
    let logged = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    assert!(logged.contains("guest-sync-delimited") && logged.contains("guest-exec-status"), "{logged}");
    ga.kill().await.unwrap();
}

/// Boots the tiny guest with `agent`, gets its agent, runs [`exercise`] on it, and
/// presses the power button (which the guest must still obey while it serves).
async fn tiny_guest_agent(agent: bootproof::profile::AgentKind, transport: &str) {
    use bootproof::vm::boot::{host_facts, resolve_image};
    use bootproof::vm::{Ending, Vm, VmOptions, plan::Plan, rundir::RunLayout};
    if let Err(e) = bootproof::host::ensure_runtime() {
        panic!("this test boots a real VM and the host lacks what it needs:\n{e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut profile = bootproof::profile::resolve("uefi").unwrap();
    profile.agent = agent;
    let layout = RunLayout::create(&dir.path().join("run")).unwrap();
    let image = resolve_image("reference:tiny").unwrap();
    let host = host_facts(&profile, &layout.share_dir()).unwrap();
    let plan = Plan::new(&profile, Some(&image), &host, &layout).unwrap();
    let mut vm = Vm::launch(plan, VmOptions::default()).await.unwrap();
    let a = vm.agent(host.accel.scale(Duration::from_secs(60))).await.unwrap_or_else(|e| {
        panic!("{e}\nconsole: {:#?}", vm.console().tail());
    });
    eprintln!("{transport}: agent ready {:.2?} after QEMU started", vm.elapsed());
    assert_eq!(a.transport(), transport);
    let same = vm.agent(Duration::from_millis(1)).await.unwrap();
    assert_eq!(same.transport(), transport, "the first agent is kept");
    for _ in 0..3 {
        let out = a.run("true", Duration::from_secs(30)).await.unwrap();
        eprintln!("{transport}: round trip of `true` {:.3?}", out.duration);
    }
    exercise(&a, Duration::from_secs(3)).await;
    let logged = std::fs::read_to_string(layout.agent_log()).unwrap();
    assert!(logged.contains("echo hello"), "{logged}");
    let ending = vm.shutdown(host.accel.scale(Duration::from_secs(20))).await;
    assert_eq!(ending, Ending::Exited { status: Some(0), reason: Some("guest-shutdown".into()) });
}

/// `auto` offers both virtio-serial ports; the tiny guest has no qemu-guest-agent, so
/// the shell on hvc0 must be the one that answers.
#[tokio::test]
async fn tiny_guest_over_the_shell_console() {
    tiny_guest_agent(bootproof::profile::AgentKind::Auto, "shell").await;
}

#[tokio::test]
async fn tiny_guest_over_vsock() {
    tiny_guest_agent(bootproof::profile::AgentKind::Vsock, "vsock").await;
}

/// Nothing on the other end: the constructors say which agent stayed silent, and how
/// long they waited, instead of a command timeout.
#[tokio::test]
async fn a_silent_peer_is_not_available() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, _silent) = tokio::net::UnixStream::pair().unwrap();
    let e = Agent::qga(ours, log(dir.path()), Duration::from_millis(300)).await.err().unwrap();
    assert!(matches!(&e, AgentError::NotAvailable { tried, .. } if tried == &["qemu-guest-agent"]), "{e}");
    assert!(e.to_string().contains("300ms"), "{e}");
    let (ours, _silent) = tokio::net::UnixStream::pair().unwrap();
    let e = Agent::shell(ours, log(dir.path()), Duration::from_millis(300)).await.err().unwrap();
    assert!(matches!(&e, AgentError::NotAvailable { tried, .. } if tried == &["shell"]), "{e}");
}
