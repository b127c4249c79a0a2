//! `bootproof share-server` spoken to in raw 9P2000.L over its unix socket, as a hostile
//! guest program could (the Linux client never sends `..`, so a guest kernel would hide
//! what the filter refuses): every escape reads nothing outside the directory,
//! `--readonly` changes nothing, `--quota` stops the file at the quota with EDQUOT, bad
//! frames get errors or a closed connection, and file events are reported.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EPERM: u32 = 1;
const EBADF: u32 = 9;
const EINVAL: u32 = 22;
const EROFS: u32 = 30;
const ELOOP: u32 = 40;
const EOPNOTSUPP: u32 = 95;
const EDQUOT: u32 = 122;

const O_RDONLY: u32 = 0;
const O_WRONLY: u32 = 1;
const O_RDWR: u32 = 2;

struct ShareServer {
    child: Child,
    socket: PathBuf,
    events: PathBuf,
    stderr_file: PathBuf,
}

impl Drop for ShareServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ShareServer {
    fn start(work: &Path, extra: &[&str]) -> ShareServer {
        let socket = work.join("share.sock");
        let events = work.join("events.jsonl");
        let stderr_file = work.join("server.stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_bootproof"))
            .arg("share-server")
            .arg("--shared-dir")
            .arg(work.join("share"))
            .arg("--socket-path")
            .arg(&socket)
            .arg("--events")
            .arg(&events)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_file).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "share-server made no socket: {}",
                std::fs::read_to_string(&stderr_file).unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        ShareServer { child, socket, events, stderr_file }
    }

    fn client(&self) -> Client {
        let s = UnixStream::connect(&self.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Client { s, tag: 0 };
        c.version(1 << 20);
        c.attach(0);
        c
    }

    fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// A tree with a secret beside the shared directory and a way to it by every trick.
fn tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("outside.txt"), "SECRET-OUTSIDE").unwrap();
    let share = t.path().join("share");
    std::fs::create_dir_all(share.join("sub")).unwrap();
    std::fs::write(share.join("sub/inside.txt"), "inside").unwrap();
    std::os::unix::fs::symlink("../outside.txt", share.join("link")).unwrap();
    std::os::unix::fs::symlink("..", share.join("updir")).unwrap();
    std::os::unix::fs::symlink("/etc", share.join("sub/etc")).unwrap();
    t
}

#[derive(Debug)]
enum Reply {
    Ok(u8, Vec<u8>),
    Err(u32),
}

impl Reply {
    fn ok(self, what: &str) -> Vec<u8> {
        match self {
            Reply::Ok(_, body) => body,
            Reply::Err(e) => panic!("{what}: errno {e}"),
        }
    }
    fn errno(self, what: &str) -> u32 {
        match self {
            Reply::Err(e) => e,
            Reply::Ok(ty, body) => panic!("{what} succeeded: type {ty}, {body:?}"),
        }
    }
}

struct Client {
    s: UnixStream,
    tag: u16,
}

fn s(b: &[u8]) -> Vec<u8> {
    let mut v = (b.len() as u16).to_le_bytes().to_vec();
    v.extend_from_slice(b);
    v
}

impl Client {
    fn raw(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    fn call(&mut self, ty: u8, body: &[u8]) -> Reply {
        self.tag = self.tag.wrapping_add(1);
        let mut f = ((7 + body.len()) as u32).to_le_bytes().to_vec();
        f.push(ty);
        f.extend_from_slice(&self.tag.to_le_bytes());
        f.extend_from_slice(body);
        self.raw(&f);
        self.reply()
    }

    fn reply(&mut self) -> Reply {
        let mut head = [0u8; 7];
        self.s.read_exact(&mut head).unwrap();
        let size = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        let mut body = vec![0u8; size - 7];
        self.s.read_exact(&mut body).unwrap();
        if head[4] == 7 {
            Reply::Err(u32::from_le_bytes(body[..4].try_into().unwrap()))
        } else {
            Reply::Ok(head[4], body)
        }
    }

    fn version(&mut self, msize: u32) {
        let mut b = msize.to_le_bytes().to_vec();
        b.extend(s(b"9P2000.L"));
        self.call(100, &b).ok("Tversion");
    }

    fn attach(&mut self, fid: u32) {
        let mut b = fid.to_le_bytes().to_vec();
        b.extend(u32::MAX.to_le_bytes());
        b.extend(s(b"root"));
        b.extend(s(b""));
        b.extend(0u32.to_le_bytes());
        self.call(104, &b).ok("Tattach");
    }

    fn walk(&mut self, fid: u32, newfid: u32, names: &[&[u8]]) -> Reply {
        let mut b = fid.to_le_bytes().to_vec();
        b.extend(newfid.to_le_bytes());
        b.extend((names.len() as u16).to_le_bytes());
        for n in names {
            b.extend(s(n));
        }
        self.call(110, &b)
    }

    fn lopen(&mut self, fid: u32, flags: u32) -> Reply {
        let mut b = fid.to_le_bytes().to_vec();
        b.extend(flags.to_le_bytes());
        self.call(12, &b)
    }

    fn read(&mut self, fid: u32, count: u32) -> Vec<u8> {
        let mut b = fid.to_le_bytes().to_vec();
        b.extend(0u64.to_le_bytes());
        b.extend(count.to_le_bytes());
        let body = self.call(116, &b).ok("Tread");
        body[4..].to_vec()
    }

    fn lcreate(&mut self, fid: u32, name: &[u8], flags: u32) -> Reply {
        let mut b = fid.to_le_bytes().to_vec();
        b.extend(s(name));
        b.extend(flags.to_le_bytes());
        b.extend(0o644u32.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        self.call(14, &b)
    }

    fn write(&mut self, fid: u32, offset: u64, data: &[u8]) -> Reply {
        let mut b = fid.to_le_bytes().to_vec();
        b.extend(offset.to_le_bytes());
        b.extend((data.len() as u32).to_le_bytes());
        b.extend_from_slice(data);
        self.call(118, &b)
    }

    fn written(&mut self, fid: u32, offset: u64, data: &[u8]) -> u32 {
        let body = self.write(fid, offset, data).ok("Twrite");
        u32::from_le_bytes(body[..4].try_into().unwrap())
    }

    fn clunk(&mut self, fid: u32) -> Reply {
        self.call(120, &fid.to_le_bytes())
    }

    fn mkdir(&mut self, dfid: u32, name: &[u8]) -> Reply {
        let mut b = dfid.to_le_bytes().to_vec();
        b.extend(s(name));
        b.extend(0o755u32.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        self.call(72, &b)
    }

    fn symlink(&mut self, fid: u32, name: &[u8], target: &[u8]) -> Reply {
        let mut b = fid.to_le_bytes().to_vec();
        b.extend(s(name));
        b.extend(s(target));
        b.extend(0u32.to_le_bytes());
        self.call(16, &b)
    }

    fn renameat(&mut self, olddir: u32, old: &[u8], newdir: u32, new: &[u8]) -> Reply {
        let mut b = olddir.to_le_bytes().to_vec();
        b.extend(s(old));
        b.extend(newdir.to_le_bytes());
        b.extend(s(new));
        self.call(74, &b)
    }

    fn unlinkat(&mut self, dir: u32, name: &[u8]) -> Reply {
        let mut b = dir.to_le_bytes().to_vec();
        b.extend(s(name));
        b.extend(0u32.to_le_bytes());
        self.call(76, &b)
    }

    fn truncate(&mut self, fid: u32, size: u64) -> Reply {
        let mut b = fid.to_le_bytes().to_vec();
        b.extend(0x8u32.to_le_bytes());
        b.extend([0u8; 12]);
        b.extend(size.to_le_bytes());
        b.extend([0u8; 32]);
        self.call(26, &b)
    }
}

#[test]
fn no_walk_leaves_the_shared_directory() {
    let t = tree();
    let server = ShareServer::start(t.path(), &[]);
    let mut c = server.client();

    // The way in works: a file inside is read.
    c.walk(0, 1, &[b"sub", b"inside.txt"]).ok("walk to sub/inside.txt");
    c.lopen(1, O_RDONLY).ok("open inside.txt");
    assert_eq!(c.read(1, 100), b"inside");

    // Every way out is refused before the crate walks it.
    let escapes: &[&[&[u8]]] = &[
        &[b".."],
        &[b"..", b"outside.txt"],
        &[b"../outside.txt"],
        &[b"sub", b"..", b"..", b"outside.txt"],
        &[b"sub/../../outside.txt"],
        &[b".", b"..", b"outside.txt"],
        &[b"/etc"],
    ];
    for (i, names) in escapes.iter().enumerate() {
        let e = c.walk(0, 10 + i as u32, names).errno(&format!("walk {names:?}"));
        assert_eq!(e, EPERM, "walk {names:?}");
        // The refused walk made no fid to read from.
        assert_eq!(c.lopen(10 + i as u32, O_RDONLY).errno("open of a refused walk's fid"), EBADF);
    }
    // Symlinks anywhere on the path, whatever they point at.
    for names in [&[b"link".as_slice()][..], &[b"updir", b"outside.txt"], &[b"sub", b"etc", b"hostname"]] {
        assert_eq!(c.walk(0, 30, names).errno(&format!("walk {names:?}")), ELOOP, "walk {names:?}");
    }
    // Names that would make or move something outside.
    c.walk(0, 2, &[b"sub"]).ok("walk sub");
    assert_eq!(c.lcreate(2, b"../created.txt", O_RDWR).errno("create ../created.txt"), EPERM);
    assert_eq!(c.mkdir(2, b"..").errno("mkdir .."), EPERM);
    assert_eq!(c.renameat(2, b"inside.txt", 0, b"../moved.txt").errno("rename out"), EPERM);
    assert_eq!(c.renameat(0, b"../outside.txt", 0, b"stolen.txt").errno("rename in"), EPERM);
    assert_eq!(c.unlinkat(0, b"../outside.txt").errno("unlink outside"), EPERM);
    assert_eq!(c.symlink(0, b"escape", b"/").errno("symlink"), EPERM);

    // Nothing outside was read, made, moved or removed.
    let names: Vec<_> =
        std::fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, ["events.jsonl", "outside.txt", "server.stderr", "share", "share.sock"]);
    assert_eq!(std::fs::read_to_string(t.path().join("outside.txt")).unwrap(), "SECRET-OUTSIDE");
    assert!(t.path().join("share/sub/inside.txt").exists());
    assert!(!t.path().join("share/escape").exists());

    // Each refusal is an event naming the request and why.
    let refused: Vec<_> = server.events().into_iter().filter(|e| e["event"] == "refused").collect();
    // (each escape, the open of its missing fid, the symlinks, the names)
    assert_eq!(refused.len(), escapes.len() * 2 + 3 + 6, "{refused:#?}");
    let walks: Vec<_> = refused.iter().filter(|e| e["op"] == "Twalk").collect();
    assert_eq!(walks.len(), escapes.len() + 3);
    assert_eq!(walks[1]["path"], "../outside.txt");
    assert_eq!(walks[1]["errno"], EPERM);
    assert!(walks[1]["why"].as_str().unwrap().contains("would leave its directory"), "{:?}", walks[1]);
    assert_eq!(walks[escapes.len()]["path"], "link");
    assert!(walks[escapes.len()]["why"].as_str().unwrap().contains("is a symlink"));
    let stderr = std::fs::read_to_string(&server.stderr_file).unwrap();
    assert!(stderr.contains("confinement: "), "{stderr}");
}

#[test]
fn readonly_changes_nothing() {
    let t = tree();
    let server = ShareServer::start(t.path(), &["--readonly"]);
    let mut c = server.client();
    c.walk(0, 1, &[b"sub", b"inside.txt"]).ok("walk");
    assert_eq!(c.lopen(1, O_WRONLY).errno("open for writing"), EROFS);
    assert_eq!(c.lopen(1, O_RDONLY | 0o1000).errno("open with O_TRUNC"), EROFS);
    assert_eq!(c.truncate(1, 0).errno("truncate"), EROFS);
    c.lopen(1, O_RDONLY).ok("open for reading");
    assert_eq!(c.read(1, 100), b"inside");
    assert_eq!(c.write(1, 0, b"x").errno("write"), EROFS);
    c.walk(0, 2, &[b"sub"]).ok("walk sub");
    assert_eq!(c.lcreate(2, b"new.txt", O_RDWR).errno("create"), EROFS);
    assert_eq!(c.mkdir(2, b"newdir").errno("mkdir"), EROFS);
    assert_eq!(c.renameat(2, b"inside.txt", 2, b"renamed.txt").errno("rename"), EROFS);
    assert_eq!(c.unlinkat(2, b"inside.txt").errno("unlink"), EROFS);
    let mut names: Vec<_> = std::fs::read_dir(t.path().join("share/sub"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["etc", "inside.txt"]);
    assert_eq!(std::fs::read_to_string(t.path().join("share/sub/inside.txt")).unwrap(), "inside");
}

#[test]
fn writes_stop_at_the_quota_with_edquot() {
    let t = tree();
    // What the tree already counts: 4 entries + 1 in sub + 6 bytes.
    let server = ShareServer::start(t.path(), &["--quota", "64K"]);
    let mut c = server.client();
    c.walk(0, 1, &[]).ok("clone root");
    c.lcreate(1, b"big.log", O_RDWR).ok("create big.log");
    let chunk = vec![b'x'; 32 * 1024];
    assert_eq!(c.written(1, 0, &chunk), 32 * 1024);
    // The second chunk fits only partly: the write is cut where the quota ends.
    let second = c.written(1, 32 * 1024, &chunk);
    assert!(second > 0 && second < 32 * 1024, "second write wrote {second}");
    // Past it: EDQUOT, the guest sees "Disk quota exceeded".
    assert_eq!(c.write(1, 64 * 1024, &chunk).errno("write past the quota"), EDQUOT);
    assert_eq!(c.truncate(1, 10 << 20).errno("grow by truncate past the quota"), EDQUOT);
    c.walk(0, 2, &[]).ok("clone root");
    assert_eq!(c.mkdir(2, b"more").errno("mkdir past the quota"), EDQUOT);

    let share = t.path().join("share");
    let size = std::fs::metadata(share.join("big.log")).unwrap().len();
    assert_eq!(size, 32 * 1024 + second as u64);
    let total = used(&share);
    assert!(total <= 64 * 1024, "the share holds {total} bytes against a 64 KiB quota");
    assert!(total > 64 * 1024 - 512, "the quota was not used up: {total}");

    // Freeing space makes room again.
    c.clunk(1).ok("clunk");
    c.truncate(2, 0).errno("truncating the root directory");
    c.walk(0, 3, &[b"big.log"]).ok("walk big.log");
    c.truncate(3, 1024).ok("shrink big.log");
    c.walk(0, 4, &[]).ok("clone root");
    c.mkdir(4, b"more").ok("mkdir after shrinking");
}

/// What the server counts against the quota: every entry 512 bytes plus file lengths.
fn used(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let m = e.unwrap().path().symlink_metadata().unwrap();
            512 + if m.is_file() { m.len() } else { 0 }
        })
        .sum::<u64>()
        + std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let p = e.unwrap().path();
                p.symlink_metadata().unwrap().is_dir().then(|| used(&p))
            })
            .sum::<u64>()
}

#[test]
fn bad_frames_get_errors_or_a_closed_connection_and_the_server_goes_on() {
    let t = tree();
    let server = ShareServer::start(t.path(), &[]);
    let mut c = server.client();
    // A type that is no T-message.
    assert_eq!(c.call(112, &[]).errno("Topen (9P2000, not .L)"), EOPNOTSUPP);
    assert_eq!(c.call(7, &[0; 4]).errno("an Rlerror sent as a request"), EOPNOTSUPP);
    // A string whose length runs past the frame.
    let mut b = 0u32.to_le_bytes().to_vec();
    b.extend(60000u16.to_le_bytes());
    b.extend(b"abc");
    assert_eq!(c.call(72, &b).errno("mkdir with a long-claimed name"), EINVAL);
    // A write claiming 4 GiB of data in a few bytes.
    let mut w = 0u32.to_le_bytes().to_vec();
    w.extend(0u64.to_le_bytes());
    w.extend(u32::MAX.to_le_bytes());
    assert_eq!(c.call(118, &w).errno("write claiming 4 GiB"), EINVAL);
    // A walk of 65535 names.
    let mut walk = 0u32.to_le_bytes().to_vec();
    walk.extend(1u32.to_le_bytes());
    walk.extend(65535u16.to_le_bytes());
    assert_eq!(c.call(110, &walk).errno("walk of 65535 names"), EINVAL);
    // A name with a NUL.
    assert_eq!(c.walk(0, 1, &[b"sub\0x"]).errno("walk with NUL"), EINVAL);
    // Still serving on this connection.
    c.walk(0, 1, &[b"sub"]).ok("walk after bad frames");

    // A frame claiming 2 GiB: the connection is closed, nothing is allocated for it.
    c.raw(&[0xff, 0xff, 0xff, 0x7f, 118, 1, 0]);
    let mut rest = Vec::new();
    let n = c.s.read_to_end(&mut rest).unwrap();
    assert_eq!(n, 0, "the server answered a 2 GiB frame: {rest:?}");
    // A frame too small to hold its header: closed too.
    let mut c2 = server.client();
    c2.raw(&[3, 0, 0, 0]);
    assert_eq!(c2.s.read_to_end(&mut Vec::new()).unwrap(), 0);
    // The server goes on.
    let mut c3 = server.client();
    c3.walk(0, 1, &[b"sub", b"inside.txt"]).ok("walk on a new connection");
    let ended: Vec<_> = server.events().into_iter().filter(|e| e["event"] == "session-ended").collect();
    assert_eq!(ended.len(), 2, "{ended:#?}");
    assert!(ended[0]["why"].as_str().unwrap().contains("frame size 2147483647"), "{ended:#?}");
}

#[test]
fn file_events_follow_what_the_guest_does() {
    let t = tree();
    let server = ShareServer::start(t.path(), &[]);
    let mut c = server.client();
    c.walk(0, 1, &[]).ok("clone root");
    c.mkdir(1, b"logs").ok("mkdir logs");
    c.walk(0, 2, &[b"logs"]).ok("walk logs");
    c.lcreate(2, b"install.log", O_WRONLY | 0o2000).ok("create install.log");
    assert_eq!(c.written(2, 0, b"line one\n"), 9);
    assert_eq!(c.written(2, 9, b"line two\n"), 9);
    c.clunk(2).ok("close");
    c.walk(0, 3, &[b"logs"]).ok("walk logs");
    c.renameat(3, b"install.log", 3, b"done.log").ok("rename");
    c.unlinkat(3, b"done.log").ok("unlink");
    let got: Vec<(String, String)> = server
        .events()
        .into_iter()
        .map(|e| (e["event"].as_str().unwrap().to_string(), e["path"].as_str().unwrap_or("").to_string()))
        .collect();
    let want = [
        ("created", "logs"),
        ("created", "logs/install.log"),
        ("written", "logs/install.log"),
        ("closed", "logs/install.log"),
        ("renamed", "logs/done.log"),
        ("removed", "logs/done.log"),
    ];
    let want: Vec<(String, String)> = want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(got, want);
    let closed = server.events().into_iter().find(|e| e["event"] == "closed").unwrap();
    assert_eq!(closed["size"], 18);
}

/// The second wall, alone: a process confined by `share::confine` opens nothing outside
/// the directory even when asked for it by path (the child is this test binary again).
#[test]
fn landlock_alone_keeps_the_process_in_the_directory() {
    if let Ok(dir) = std::env::var("BOOTPROOF_TEST_CONFINE_CHILD") {
        let dir = PathBuf::from(dir);
        let how = bootproof::share::confine(&dir.join("share"), false).expect("landlock");
        println!("confinement={how:?}");
        let outside = std::fs::read(dir.join("outside.txt")).map_err(|e| e.kind());
        println!("outside={outside:?}");
        let etc = std::fs::read("/etc/hostname").map_err(|e| e.kind());
        println!("etc={etc:?}");
        let inside = std::fs::read(dir.join("share/sub/inside.txt")).map_err(|e| e.kind());
        println!("inside={inside:?}");
        let created = std::fs::write(dir.join("share/new.txt"), b"ok").map_err(|e| e.kind());
        println!("created={created:?}");
        return;
    }
    let t = tree();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "landlock_alone_keeps_the_process_in_the_directory",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BOOTPROOF_TEST_CONFINE_CHILD", t.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("confinement=Full") || stdout.contains("confinement=Partial"),
        "this kernel has no Landlock (needs Linux 5.13+ with landlock in the lsm= list): {stdout}"
    );
    assert!(stdout.contains("outside=Err(PermissionDenied)"), "{stdout}");
    assert!(stdout.contains("etc=Err(PermissionDenied)"), "{stdout}");
    assert!(stdout.contains("inside=Ok([105, 110, 115, 105, 100, 101])"), "{stdout}");
    assert!(stdout.contains("created=Ok(())"), "{stdout}");
}
