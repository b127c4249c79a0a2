//! bootproof's installer HTTP server over real sockets: it serves a file and logs the
//! request, refuses `..` and symlinks with the status it documents, answers HEAD
//! without a body and other methods with 405, stops listening when dropped, and the
//! relay QEMU's guestfwd runs per guest connection (`socat STDIO TCP:...`, see
//! `vm::argv`) carries a whole request and answer, passing a binary answer on at once.
//!
//! Requests are written by hand on a TCP stream: HTTP clients normalise `..` away,
//! and the point is to send exactly what a guest could.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};

use bootproof::installer::serve::{Root, Server};

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("mirror/dists/bookworm")).unwrap();
    std::fs::create_dir_all(dir.path().join("run")).unwrap();
    std::fs::write(dir.path().join("mirror/dists/bookworm/Release"), b"Suite: bookworm\n").unwrap();
    std::fs::write(dir.path().join("run/preseed.cfg"), b"d-i debian-installer/locale string C\n").unwrap();
    std::fs::write(dir.path().join("host-secret"), b"not for the guest").unwrap();
    std::os::unix::fs::symlink(dir.path().join("host-secret"), dir.path().join("run/link.cfg")).unwrap();
    dir
}

fn start(dir: &Path) -> Server {
    let roots = vec![Root::new("debian", dir.join("mirror")), Root::new("d-i", dir.join("run"))];
    Server::start(roots, &dir.join("http.log")).unwrap()
}

/// Sends `request` and returns the status code and everything after the headers.
fn exchange(port: u16, request: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    parse(&answer)
}

fn parse(answer: &[u8]) -> (u16, Vec<u8>) {
    let text = String::from_utf8_lossy(answer);
    let status =
        text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{text}"));
    let body_at = answer.windows(4).position(|w| w == b"\r\n\r\n").map_or(answer.len(), |p| p + 4);
    (status, answer[body_at..].to_vec())
}

fn get(port: u16, path: &str) -> (u16, Vec<u8>) {
    exchange(port, &format!("GET {path} HTTP/1.1\r\nHost: 10.0.2.100\r\nConnection: close\r\n\r\n"))
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("http.log")).unwrap()
}

#[test]
fn serves_a_file_and_logs_the_request_without_its_body() {
    let dir = tree();
    let server = start(dir.path());
    let (status, body) = get(server.port(), "/d-i/preseed.cfg");
    assert_eq!(status, 200);
    assert_eq!(body, b"d-i debian-installer/locale string C\n");
    let (status, body) = get(server.port(), "/debian/dists/bookworm/Release");
    assert_eq!((status, body.as_slice()), (200, b"Suite: bookworm\n".as_slice()));
    drop(server);
    let log = log(dir.path());
    assert!(log.contains(" GET /d-i/preseed.cfg 200 37\n"), "{log}");
    assert!(log.contains(" GET /debian/dists/bookworm/Release 200 16\n"), "{log}");
    assert!(!log.contains("locale string"), "a body reached the log: {log}");
}

#[test]
fn refuses_dot_dot_and_symlinks_and_logs_the_refusal() {
    let dir = tree();
    let server = start(dir.path());
    for (path, want) in [
        ("/d-i/../host-secret", 400),
        ("/debian/dists/../../host-secret", 400),
        ("/d-i/%2e%2e/host-secret", 400),
        ("/d-i/link.cfg", 403),
        ("/host-secret", 404),
        ("/debian/dists", 404),
    ] {
        let (status, body) = get(server.port(), path);
        assert_eq!(status, want, "{path}");
        assert!(!String::from_utf8_lossy(&body).contains("not for the guest"), "{path} leaked the host file");
    }
    drop(server);
    let log = log(dir.path());
    assert!(log.contains(" GET /d-i/../host-secret 400 0\n"), "{log}");
    assert!(log.contains(" GET /d-i/link.cfg 403 0\n"), "{log}");
}

#[test]
fn head_has_no_body_and_writes_are_not_allowed() {
    let dir = tree();
    let server = start(dir.path());
    let (status, body) =
        exchange(server.port(), "HEAD /d-i/preseed.cfg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!((status, body.len()), (200, 0));
    let (status, _) = exchange(
        server.port(),
        "PUT /d-i/preseed.cfg HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    );
    assert_eq!(status, 405);
    assert_eq!(
        std::fs::read(dir.path().join("run/preseed.cfg")).unwrap(),
        b"d-i debian-installer/locale string C\n"
    );
}

#[test]
fn a_dropped_server_no_longer_listens() {
    let dir = tree();
    let server = start(dir.path());
    let port = server.port();
    assert_eq!(get(port, "/d-i/preseed.cfg").0, 200);
    drop(server);
    // tiny_http's accept thread notices the stop on its own, moments after the drop.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "port {port} still accepts connections 2 s after the drop"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_root_that_is_a_symlink_is_refused_at_start() {
    let dir = tree();
    std::os::unix::fs::symlink(dir.path().join("run"), dir.path().join("run-link")).unwrap();
    let roots = vec![Root::new("d-i", dir.path().join("run-link"))];
    let err = Server::start(roots, &dir.path().join("http.log")).err().expect("a symlinked root is refused");
    assert!(err.to_string().contains("symlink"), "{err}");
}

#[test]
fn the_relay_carries_one_guest_connection_to_the_server() {
    bootproof::host::ensure_runtime().expect("host set-up (socat)");
    let dir = tree();
    let server = start(dir.path());
    let mut relay = Command::new("socat")
        .args(["STDIO", &format!("TCP:127.0.0.1:{}", server.port())])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    relay
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET /d-i/preseed.cfg HTTP/1.1\r\nHost: 10.0.2.100\r\nConnection: close\r\n\r\n")
        .unwrap();
    let out = relay.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "stderr reaches the guest: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(parse(&out.stdout), (200, b"d-i debian-installer/locale string C\n".to_vec()));
}

#[test]
fn the_relay_passes_a_binary_answer_on_a_kept_alive_connection_at_once() {
    bootproof::host::ensure_runtime().expect("host set-up (socat)");
    let dir = tree();
    // No trailing newline: a line-buffered relay would hold the tail back.
    let body: Vec<u8> = (0..7203u32).map(|i| (i * 7 % 251) as u8).filter(|b| *b != b'\n').collect();
    std::fs::write(dir.path().join("mirror/Packages.gz"), &body).unwrap();
    let server = start(dir.path());
    let mut relay = Command::new("socat")
        .args(["STDIO", &format!("TCP:127.0.0.1:{}", server.port())])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = relay.stdin.take().unwrap();
    stdin.write_all(b"GET /debian/Packages.gz HTTP/1.1\r\nHost: 10.0.2.100\r\n\r\n").unwrap();
    let mut stdout = relay.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let want = body.len();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stdout.read(&mut buf).unwrap_or(0);
            got.extend_from_slice(&buf[..n]);
            seen2.lock().unwrap().extend_from_slice(&buf[..n]);
            let body_at = got.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
            let complete = body_at.is_some_and(|at| got.len() - at >= want);
            if n == 0 || complete {
                let _ = tx.send(got);
                return;
            }
        }
    });
    let got = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap_or_else(|_| {
        let seen = seen.lock().unwrap();
        panic!(
            "the answer did not arrive while the connection stayed open; got {} bytes: {:?}",
            seen.len(),
            String::from_utf8_lossy(&seen[..seen.len().min(200)])
        )
    });
    assert_eq!(parse(&got), (200, body));
    drop(stdin);
    assert!(relay.wait().unwrap().success());
}
