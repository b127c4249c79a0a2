//! bootproof's own HTTP server for installer runs: serves the local Debian mirror and
//! a run's own files (the preseed) on `127.0.0.1:<ephemeral port>`, which the guest
//! reaches as `http://10.0.2.100/` through QEMU's `guestfwd`.
//!
//! Each root is a URL prefix mapped to a directory (`/debian` → the mirror, `/d-i` →
//! the run's files). A request is answered only from a regular file inside a root,
//! reached without a symlink at any component and without `..`: the guest never
//! reads a byte of the host outside what bootproof chose to show it. Every request
//! is logged (time, peer, method, path, status, bytes sent; never a body) to the file
//! the caller names, line by line as it is answered, so a hung installer still leaves
//! the list of what it fetched.
//!
//! HTTP itself is `tiny_http`'s. The server listens on loopback only and stops when
//! the [`Server`] is dropped: the drop waits for the workers (no answer is cut
//! short after it returns); the listening socket closes moments later, when
//! tiny_http's own accept thread sees the stop.
//!
//! **How the guest's connections arrive.** `guestfwd=tcp:10.0.2.100:80-tcp:127.0.0.1:PORT`
//! names a character device: QEMU opens one connection to the server when it starts
//! and feeds every guest connection into it (measured: the whole install's requests
//! came from one host port), which breaks as soon as a guest client gives up
//! mid-answer or asks to close. The runtime's `-cmd:socat ...` form starts one relay
//! per guest connection instead (see `vm::argv`).
//!
//! Must not: listen on anything but loopback, follow symlinks, list directories,
//! accept writes, or log request or response bodies.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Worker threads: apt in the target keeps a pipeline on one connection while d-i's
/// wget may open another; a large file on one must not stall the other.
const WORKERS: usize = 4;

/// A URL prefix served from a directory.
#[derive(Debug, Clone)]
pub struct Root {
    /// `/debian`: requests for `/debian/<rest>` read `<dir>/<rest>`.
    pub prefix: String,
    pub dir: PathBuf,
}

impl Root {
    pub fn new(prefix: &str, dir: impl Into<PathBuf>) -> Root {
        Root { prefix: format!("/{}", prefix.trim_matches('/')), dir: dir.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("installer HTTP server: cannot listen on 127.0.0.1: {0}")]
    Listen(String),
    #[error("installer HTTP server: request log {}: {source}", path.display())]
    Log { path: PathBuf, source: std::io::Error },
    #[error("installer HTTP server: root `{prefix}` is {}: {reason}", dir.display())]
    BadRoot { prefix: String, dir: PathBuf, reason: String },
}

/// A running server; dropping it stops it and waits for its workers.
pub struct Server {
    http: Arc<tiny_http::Server>,
    addr: SocketAddr,
    workers: Vec<JoinHandle<()>>,
}

impl Server {
    /// Starts serving `roots` on an ephemeral loopback port, appending one line per
    /// request to `log` (created if missing).
    pub fn start(roots: Vec<Root>, log: &Path) -> Result<Server, ServeError> {
        for root in &roots {
            check_root(root)?;
        }
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| ServeError::Log { path: log.to_path_buf(), source })?;
        let http = tiny_http::Server::http("127.0.0.1:0").map_err(|e| ServeError::Listen(e.to_string()))?;
        let addr = http.server_addr().to_ip().ok_or_else(|| ServeError::Listen("not an IP socket".into()))?;
        let http = Arc::new(http);
        let shared = Arc::new(Shared { roots, log: Mutex::new(log_file) });
        let workers = (0..WORKERS)
            .map(|_| {
                let (http, shared) = (Arc::clone(&http), Arc::clone(&shared));
                std::thread::spawn(move || {
                    // `recv` fails only once the server is unblocked: that is the stop.
                    while let Ok(request) = http.recv() {
                        shared.answer(request);
                    }
                })
            })
            .collect();
        Ok(Server { http, addr, workers })
    }

    /// The loopback port, for `guestfwd=tcp:10.0.2.100:80-tcp:127.0.0.1:<port>`.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port>`, for host-side clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // One unblock wakes one waiting `recv`.
        for _ in 0..self.workers.len() {
            self.http.unblock();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn check_root(root: &Root) -> Result<(), ServeError> {
    let bad = |reason: &str| ServeError::BadRoot {
        prefix: root.prefix.clone(),
        dir: root.dir.clone(),
        reason: reason.to_string(),
    };
    if root.prefix == "/" || root.prefix.contains("..") {
        return Err(bad("the prefix must name one path below /"));
    }
    match std::fs::symlink_metadata(&root.dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(bad("not a directory (a symlink to one is refused too)")),
        Err(e) => Err(bad(&e.to_string())),
    }
}

struct Shared {
    roots: Vec<Root>,
    log: Mutex<File>,
}

/// Why a request got no file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400: not a path (bad percent-encoding, NUL) or one with `.`/`..` components.
    BadPath,
    /// 403: a symlink on the way.
    Symlink,
    /// 404: no such regular file under any root.
    NotFound,
}

impl Refusal {
    fn status(self) -> u16 {
        match self {
            Refusal::BadPath => 400,
            Refusal::Symlink => 403,
            Refusal::NotFound => 404,
        }
    }
}

impl Shared {
    fn answer(&self, request: tiny_http::Request) {
        let method = request.method().clone();
        let url = request.url().to_string();
        let peer = request.remote_addr().map(|a| a.to_string()).unwrap_or_else(|| "-".into());
        let head = method == tiny_http::Method::Head;
        let (status, bytes, result) = if method != tiny_http::Method::Get && !head {
            (405, 0, request.respond(tiny_http::Response::empty(405)))
        } else {
            match open(&self.roots, &url) {
                Ok((file, len)) => {
                    let sent = if head { 0 } else { len };
                    let response = tiny_http::Response::new(
                        tiny_http::StatusCode(200),
                        Vec::new(),
                        file,
                        Some(len as usize),
                        None,
                    );
                    // tiny_http sends headers only for HEAD.
                    (200, sent, request.respond(response))
                }
                Err(refusal) => {
                    (refusal.status(), 0, request.respond(tiny_http::Response::empty(refusal.status())))
                }
            }
        };
        let outcome = if result.is_ok() { String::new() } else { " (client went away)".to_string() };
        let time = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        if let Ok(mut log) = self.log.lock() {
            let _ = writeln!(log, "{time} {peer} {method} {} {status} {bytes}{outcome}", loggable(&url));
        }
    }
}

/// The request path as logged: printable ASCII only, so a guest cannot forge lines.
fn loggable(url: &str) -> String {
    url.chars().map(|c| if c.is_ascii_graphic() { c } else { '?' }).collect()
}

/// Opens the regular file `url` names under one of `roots`, with its length.
pub fn open(roots: &[Root], url: &str) -> Result<(File, u64), Refusal> {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_decode(path).ok_or(Refusal::BadPath)?;
    let rel = Path::new(&decoded);
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(p) => parts.push(p),
            _ => return Err(Refusal::BadPath),
        }
    }
    // `Path::components` drops `.` in the middle silently; refuse it like `..`.
    if decoded.split('/').any(|s| s == "." || s == "..") {
        return Err(Refusal::BadPath);
    }
    let root = roots
        .iter()
        .find(|r| {
            let prefix: Vec<&str> = r.prefix.split('/').filter(|s| !s.is_empty()).collect();
            parts.len() > prefix.len()
                && prefix.iter().zip(&parts).all(|(a, b)| std::ffi::OsStr::new(a) == *b)
        })
        .ok_or(Refusal::NotFound)?;
    let skip = root.prefix.split('/').filter(|s| !s.is_empty()).count();
    let mut at = root.dir.clone();
    for part in &parts[skip..] {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => return Err(Refusal::Symlink),
            Ok(_) => {}
            Err(_) => return Err(Refusal::NotFound),
        }
    }
    // O_NOFOLLOW: a symlink swapped in after the walk above is refused by the kernel.
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&at).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) { Refusal::Symlink } else { Refusal::NotFound }
    })?;
    let meta = file.metadata().map_err(|_| Refusal::NotFound)?;
    if !meta.is_file() {
        return Err(Refusal::NotFound);
    }
    Ok((file, meta.len()))
}

/// `%xx` decoding of a URL path; `None` for a broken escape, NUL or invalid UTF-8.
fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.contains(&0) {
        return None;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(dir: &Path) -> Vec<Root> {
        vec![Root::new("debian", dir.join("mirror")), Root::new("/d-i/", dir.join("run"))]
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("mirror/pool/main")).unwrap();
        std::fs::create_dir_all(dir.path().join("run")).unwrap();
        std::fs::write(dir.path().join("mirror/pool/main/libstdc++6_1_amd64.deb"), b"deb").unwrap();
        std::fs::write(dir.path().join("run/preseed.cfg"), b"d-i x").unwrap();
        std::fs::write(dir.path().join("secret"), b"host file").unwrap();
        dir
    }

    #[test]
    fn files_under_a_root_open_with_their_length() {
        let dir = tree();
        let (_, len) = open(&roots(dir.path()), "/d-i/preseed.cfg").unwrap();
        assert_eq!(len, 5);
        // apt escapes `+` in pool file names.
        assert!(open(&roots(dir.path()), "/debian/pool/main/libstdc%2b%2b6_1_amd64.deb").is_ok());
        assert!(open(&roots(dir.path()), "/debian/pool/main/libstdc++6_1_amd64.deb?x=1").is_ok());
    }

    #[test]
    fn dot_dot_and_broken_paths_are_bad_requests() {
        let dir = tree();
        for url in [
            "/d-i/../secret",
            "/debian/pool/../../secret",
            "/d-i/%2e%2e/secret",
            "/d-i/./preseed.cfg",
            "/d-i/%zz",
            "/d-i/a%00b",
        ] {
            assert_eq!(open(&roots(dir.path()), url).unwrap_err(), Refusal::BadPath, "{url}");
        }
    }

    #[test]
    fn symlinks_are_refused_wherever_they_are() {
        let dir = tree();
        std::os::unix::fs::symlink(dir.path().join("secret"), dir.path().join("run/link")).unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("mirror/up")).unwrap();
        assert_eq!(open(&roots(dir.path()), "/d-i/link").unwrap_err(), Refusal::Symlink);
        assert_eq!(open(&roots(dir.path()), "/debian/up/secret").unwrap_err(), Refusal::Symlink);
    }

    #[test]
    fn nothing_outside_the_roots_and_no_directories() {
        let dir = tree();
        for url in ["/secret", "/", "/debian", "/debian/pool", "/debianx/pool/main/x", "/d-i/missing"] {
            assert_eq!(open(&roots(dir.path()), url).unwrap_err(), Refusal::NotFound, "{url}");
        }
    }

    #[test]
    fn logged_paths_cannot_break_a_line() {
        assert_eq!(loggable("/a b\nc"), "/a?b?c");
    }
}
