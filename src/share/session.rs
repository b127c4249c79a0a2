//! One 9P session: the frame filter in front of `p9::Server`.
//!
//! Owns: the policy every request passes before the crate serves it: confinement (names
//! are single components, never `.`, `..` or containing `/`; no walk through a symlink;
//! no symlinks or device nodes made), `--readonly` (nothing that changes the directory),
//! the quota (writes past it are cut short at the quota, then refused with `EDQUOT`), and
//! the file events (created, written, closed, removed, renamed, refused). It keeps its
//! own map of fid → path (relative to the share's root) from the replies the crate sends.
//! Must not: touch the socket (the caller reads frames and writes replies) or serve any
//! request itself but refusals.
//!
//! Quota accounting is by apparent size: every regular file's length plus
//! [`ENTRY_COST`] bytes per directory entry (so a guest cannot fill the host with empty
//! files either). It is shared by every session of one server.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Cursor, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::wire::{self, Request};

/// What one directory entry counts against the quota, whatever its size.
pub const ENTRY_COST: u64 = 512;
/// The most `written` events one open file reports per second (a `closed` event always
/// follows with the final size).
const WRITTEN_EVERY: Duration = Duration::from_millis(250);

/// 9P2000.L open flags (Linux's values).
const O_ACCMODE: u32 = 0o3;
const O_TRUNC: u32 = 0o1000;
const O_APPEND: u32 = 0o2000;
/// `Tsetattr` valid bit for the size.
const SETATTR_SIZE: u32 = 0x8;

/// State shared by every session of one server.
pub struct Shared {
    pub root: PathBuf,
    pub readonly: bool,
    pub quota: Option<u64>,
    pub msize: u32,
    /// Bytes counted against the quota (see the module doc).
    pub used: Mutex<u64>,
    events: Option<Mutex<File>>,
}

impl Shared {
    /// `root` must exist and be a directory; `events` is appended to, one JSON line each.
    pub fn new(
        root: PathBuf,
        readonly: bool,
        quota: Option<u64>,
        msize: u32,
        events: Option<File>,
    ) -> std::io::Result<Shared> {
        let used = if quota.is_some() { usage(&root)? } else { 0 };
        Ok(Shared { root, readonly, quota, msize, used: Mutex::new(used), events: events.map(Mutex::new) })
    }

    /// Appends one event line (best effort: a full disk must not stop the share).
    pub fn event(&self, value: serde_json::Value) {
        let Some(events) = &self.events else { return };
        let mut line = value.to_string().into_bytes();
        line.push(b'\n');
        if let Ok(mut f) = events.lock() {
            let _ = f.write_all(&line);
        }
    }

    fn used(&self) -> std::sync::MutexGuard<'_, u64> {
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What [`usage`] counts for a directory tree (see the module doc); symlinks are not
/// followed.
pub fn usage(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.path().symlink_metadata()?;
        total += ENTRY_COST;
        if meta.is_dir() {
            total += usage(&entry.path())?;
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

#[derive(Debug, Clone)]
struct FidInfo {
    /// Relative to the root; empty for the root itself.
    path: PathBuf,
    writable: bool,
    append: bool,
    wrote: bool,
    last_written_event: Option<Instant>,
}

impl FidInfo {
    fn at(path: PathBuf) -> FidInfo {
        FidInfo { path, writable: false, append: false, wrote: false, last_written_event: None }
    }
}

/// A refusal: the errno the guest sees and why, for the event log.
struct Refusal(i32, String);

/// Bookkeeping done after the crate's reply, by what the request was.
enum After {
    Nothing,
    Attach(u32),
    Walk { newfid: u32, path: PathBuf, names: usize },
    Open { fid: u32, writable: bool, append: bool },
    Create { fid: u32, path: PathBuf, writable: bool, append: bool },
    Made { path: PathBuf, kind: &'static str },
    Write { fid: u32, path: PathBuf, old: u64, offset: u64 },
    Truncate { path: PathBuf, old: u64, new: u64 },
    Clunk(u32),
    Unlink { path: PathBuf, freed: u64 },
    Rename { from: PathBuf, to: PathBuf, freed: u64 },
    Version,
}

/// One connection's session.
pub struct Session<'s> {
    shared: &'s Shared,
    server: p9::Server,
    fids: HashMap<u32, FidInfo>,
    /// The frame size in force: the server's until `Tversion` negotiates a smaller one.
    pub msize: u32,
}

impl<'s> Session<'s> {
    pub fn new(shared: &'s Shared) -> std::io::Result<Session<'s>> {
        let server = p9::Server::with_config(p9::Config {
            root: shared.root.clone().into_boxed_path(),
            msize: shared.msize,
            uid_map: Default::default(),
            gid_map: Default::default(),
            ascii_casefold: false,
        })?;
        Ok(Session { shared, server, fids: HashMap::new(), msize: shared.msize })
    }

    /// Serves one whole frame (as [`wire::read_frame`] read it) and returns the reply.
    pub fn handle(&mut self, frame: &[u8]) -> Vec<u8> {
        let (_, tag) = wire::header(frame);
        let req = match wire::decode(frame) {
            Ok(req) => req,
            Err(e) => {
                let errno = match e {
                    wire::BodyError::UnknownType(_) => libc::EOPNOTSUPP,
                    _ => libc::EINVAL,
                };
                self.refused("frame", None, errno, &e.to_string());
                return wire::rlerror(tag, errno);
            }
        };
        let (after, rewritten) = match self.admit(&req, frame) {
            Ok(ok) => ok,
            Err(Refusal(errno, why)) => {
                let path = self.describe(&req);
                self.refused(req.name(), path.as_deref(), errno, &why);
                return wire::rlerror(tag, errno);
            }
        };
        let mut out = Vec::new();
        let input = rewritten.as_deref().unwrap_or(frame);
        if let Err(e) = self.server.handle_message(&mut Cursor::new(input), &mut out) {
            self.refused(req.name(), None, libc::EIO, &format!("the p9 server failed: {e}"));
            return wire::rlerror(tag, libc::EIO);
        }
        let (ty, extra) = wire::reply_summary(&out);
        if ty != wire::RLERROR {
            self.after(after, ty, extra);
        }
        out
    }

    /// A best-effort path for a refused request, for its event.
    fn describe(&self, req: &Request) -> Option<String> {
        let (fid, name) = match req {
            Request::Walk { fid, names, .. } => {
                let base = self.fids.get(fid)?.path.clone();
                let mut s = base.display().to_string();
                for n in names {
                    s.push('/');
                    s.push_str(&String::from_utf8_lossy(n));
                }
                return Some(s.trim_start_matches('/').to_string());
            }
            Request::Lcreate { fid, name, .. } | Request::Symlink { fid, name, .. } => (fid, Some(*name)),
            Request::Mknod { dfid, name }
            | Request::Mkdir { dfid, name }
            | Request::Link { dfid, name, .. } => (dfid, Some(*name)),
            Request::Rename { dfid, name, .. } => (dfid, Some(*name)),
            Request::RenameAt { newdir, newname, .. } => (newdir, Some(*newname)),
            Request::UnlinkAt { dir, name, .. } => (dir, Some(*name)),
            Request::Write { fid, .. }
            | Request::Lopen { fid, .. }
            | Request::Setattr { fid, .. }
            | Request::Remove { fid } => (fid, None),
            _ => return None,
        };
        let base = self.fids.get(fid)?.path.clone();
        let p = match name {
            Some(n) => base.join(String::from_utf8_lossy(n).as_ref()),
            None => base,
        };
        Some(p.display().to_string())
    }

    fn fid(&self, fid: u32) -> Result<&FidInfo, Refusal> {
        self.fids.get(&fid).ok_or_else(|| Refusal(libc::EBADF, format!("fid {fid} is not in use")))
    }

    fn host(&self, rel: &Path) -> PathBuf {
        self.shared.root.join(rel)
    }

    fn writable(&self) -> Result<(), Refusal> {
        if self.shared.readonly {
            return Err(Refusal(libc::EROFS, "the share is read-only".into()));
        }
        Ok(())
    }

    /// Room for `bytes` more under the quota, or `EDQUOT`.
    fn room_for(&self, bytes: u64) -> Result<(), Refusal> {
        if let Some(q) = self.shared.quota {
            let used = *self.shared.used();
            if used.saturating_add(bytes) > q {
                return Err(Refusal(libc::EDQUOT, format!("quota of {q} bytes reached ({used} used)")));
            }
        }
        Ok(())
    }

    /// A child of the fid's directory, the name checked.
    fn child(&self, dfid: u32, name: &[u8]) -> Result<PathBuf, Refusal> {
        check_name(name)?;
        let dir = self.fid(dfid)?.path.clone();
        Ok(dir.join(std::ffi::OsStr::from_bytes(name)))
    }

    /// The policy: refuse, or say what to record once the crate has answered.
    fn admit(&mut self, req: &Request, frame: &[u8]) -> Result<(After, Option<Vec<u8>>), Refusal> {
        let after = match req {
            Request::Version { .. } => After::Version,
            Request::Auth { .. } => return Err(Refusal(libc::EOPNOTSUPP, "no authentication".into())),
            Request::Attach { fid, .. } => After::Attach(*fid),
            Request::Walk { fid, newfid, names } => {
                let mut path = self.fid(*fid)?.path.clone();
                for name in names {
                    check_name(name)?;
                    path.push(std::ffi::OsStr::from_bytes(name));
                    if let Ok(meta) = self.host(&path).symlink_metadata()
                        && meta.file_type().is_symlink()
                    {
                        return Err(Refusal(libc::ELOOP, format!("{} is a symlink", path.display())));
                    }
                }
                After::Walk { newfid: *newfid, path, names: names.len() }
            }
            Request::Lopen { fid, flags } => {
                self.fid(*fid)?;
                let writable = flags & O_ACCMODE != 0;
                if writable || flags & O_TRUNC != 0 {
                    self.writable()?;
                }
                After::Open { fid: *fid, writable, append: flags & O_APPEND != 0 }
            }
            Request::Lcreate { fid, name, flags, .. } => {
                self.writable()?;
                let path = self.child(*fid, name)?;
                self.room_for(ENTRY_COST)?;
                After::Create {
                    fid: *fid,
                    path,
                    writable: flags & O_ACCMODE != 0,
                    append: flags & O_APPEND != 0,
                }
            }
            Request::Mkdir { dfid, name } => {
                self.writable()?;
                let path = self.child(*dfid, name)?;
                self.room_for(ENTRY_COST)?;
                After::Made { path, kind: "dir" }
            }
            Request::Link { dfid, fid, name } => {
                self.writable()?;
                self.fid(*fid)?;
                let path = self.child(*dfid, name)?;
                self.room_for(ENTRY_COST)?;
                After::Made { path, kind: "link" }
            }
            Request::Symlink { fid, name, .. } => {
                self.writable()?;
                self.child(*fid, name)?;
                return Err(Refusal(libc::EPERM, "symlinks are not made on a bootproof share".into()));
            }
            Request::Mknod { dfid, name } => {
                self.writable()?;
                self.child(*dfid, name)?;
                return Err(Refusal(
                    libc::EPERM,
                    "device nodes and fifos are not made on a bootproof share".into(),
                ));
            }
            Request::XattrWalk { .. } | Request::XattrCreate { .. } => {
                return Err(Refusal(libc::EOPNOTSUPP, "no extended attributes on a bootproof share".into()));
            }
            Request::Rename { fid, dfid, name } => {
                self.writable()?;
                let from = self.fid(*fid)?.path.clone();
                let to = self.child(*dfid, name)?;
                After::Rename { freed: self.replaced(&to), from, to }
            }
            Request::RenameAt { olddir, oldname, newdir, newname } => {
                self.writable()?;
                let from = self.child(*olddir, oldname)?;
                let to = self.child(*newdir, newname)?;
                After::Rename { freed: self.replaced(&to), from, to }
            }
            Request::UnlinkAt { dir, name, .. } => {
                self.writable()?;
                let path = self.child(*dir, name)?;
                After::Unlink { freed: self.replaced(&path), path }
            }
            Request::Remove { fid } => {
                self.writable()?;
                self.fid(*fid)?;
                After::Nothing
            }
            Request::Setattr { fid, valid, size } => {
                self.writable()?;
                let path = self.fid(*fid)?.path.clone();
                if valid & SETATTR_SIZE == 0 {
                    After::Nothing
                } else {
                    let old = self.host(&path).symlink_metadata().map(|m| m.len()).unwrap_or(0);
                    if *size > old {
                        self.room_for(size - old)?;
                    }
                    After::Truncate { path, old, new: *size }
                }
            }
            Request::Write { fid, offset, data } => {
                self.writable()?;
                let info = self.fid(*fid)?.clone();
                let old = self.host(&info.path).symlink_metadata().map(|m| m.len()).unwrap_or(0);
                let end = if info.append {
                    old + data.len() as u64
                } else {
                    offset.saturating_add(data.len() as u64)
                };
                let rewritten = match self.shared.quota {
                    Some(q) if end > old => {
                        let used = *self.shared.used();
                        let room = q.saturating_sub(used);
                        if end - old > room {
                            // Keep what fits: the file stops exactly at the quota.
                            let start = if info.append { old } else { *offset };
                            let keep = (old + room).saturating_sub(start).min(data.len() as u64) as usize;
                            if keep == 0 {
                                return Err(Refusal(
                                    libc::EDQUOT,
                                    format!("quota of {q} bytes reached ({used} used)"),
                                ));
                            }
                            Some(wire::shorten_write(frame, keep))
                        } else {
                            None
                        }
                    }
                    _ => None,
                };
                return Ok((After::Write { fid: *fid, path: info.path, old, offset: *offset }, rewritten));
            }
            Request::Clunk { fid } => After::Clunk(*fid),
            Request::Flush { .. }
            | Request::Read { .. }
            | Request::Statfs { .. }
            | Request::Readlink { .. }
            | Request::Getattr { .. }
            | Request::Readdir { .. }
            | Request::Fsync { .. }
            | Request::Lock { .. }
            | Request::GetLock { .. } => After::Nothing,
        };
        Ok((after, None))
    }

    /// What removing or replacing the entry at `path` gives back to the quota.
    fn replaced(&self, path: &Path) -> u64 {
        match self.host(path).symlink_metadata() {
            Ok(m) if m.is_file() && m.nlink() == 1 => ENTRY_COST + m.len(),
            Ok(_) => ENTRY_COST,
            Err(_) => 0,
        }
    }

    fn after(&mut self, after: After, reply_type: u8, extra: u32) {
        match after {
            After::Nothing => {}
            After::Version => {
                self.fids.clear();
                if reply_type == wire::RVERSION {
                    self.msize = extra.min(self.shared.msize);
                }
            }
            After::Attach(fid) => {
                self.fids.insert(fid, FidInfo::at(PathBuf::new()));
            }
            After::Walk { newfid, path, names } => {
                if reply_type == wire::RWALK && extra as usize == names {
                    self.fids.insert(newfid, FidInfo::at(path));
                }
            }
            After::Open { fid, writable, append } => {
                if let Some(f) = self.fids.get_mut(&fid) {
                    f.writable = writable;
                    f.append = append;
                }
            }
            After::Create { fid, path, writable, append } => {
                self.charge(ENTRY_COST as i64);
                self.shared.event(event("created", &path, &[("kind", "file".into())]));
                self.fids
                    .insert(fid, FidInfo { path, writable, append, wrote: false, last_written_event: None });
            }
            After::Made { path, kind } => {
                self.charge(ENTRY_COST as i64);
                self.shared.event(event("created", &path, &[("kind", kind.into())]));
            }
            After::Write { fid, path, old, offset } => {
                let new = self.host(&path).symlink_metadata().map(|m| m.len()).unwrap_or(old);
                self.charge(new as i64 - old as i64);
                let now = Instant::now();
                if let Some(f) = self.fids.get_mut(&fid) {
                    f.wrote = true;
                    let due = f.last_written_event.is_none_or(|t| now.duration_since(t) >= WRITTEN_EVERY);
                    if due {
                        f.last_written_event = Some(now);
                        let fields = [("size", new.into()), ("offset", offset.into())];
                        self.shared.event(event("written", &path, &fields));
                    }
                }
            }
            After::Truncate { path, old, new } => {
                self.charge(new as i64 - old as i64);
                self.shared.event(event("written", &path, &[("size", new.into())]));
            }
            After::Clunk(fid) => {
                if let Some(f) = self.fids.remove(&fid)
                    && f.wrote
                {
                    let size = self.host(&f.path).symlink_metadata().map(|m| m.len()).unwrap_or(0);
                    self.shared.event(event("closed", &f.path, &[("size", size.into())]));
                }
            }
            After::Unlink { path, freed } => {
                self.charge(-(freed as i64));
                self.shared.event(event("removed", &path, &[]));
            }
            After::Rename { from, to, freed } => {
                self.charge(-(freed as i64));
                for f in self.fids.values_mut() {
                    if let Ok(rest) = f.path.strip_prefix(&from) {
                        f.path = if rest.as_os_str().is_empty() { to.clone() } else { to.join(rest) };
                    }
                }
                self.shared.event(event("renamed", &to, &[("from", from.display().to_string().into())]));
            }
        }
    }

    fn charge(&self, delta: i64) {
        if self.shared.quota.is_some() {
            let mut used = self.shared.used();
            *used = (*used as i64 + delta).max(0) as u64;
        }
    }

    fn refused(&self, op: &str, path: Option<&str>, errno: i32, why: &str) {
        let mut v = serde_json::json!({
            "time": unix_time(), "event": "refused", "op": op, "errno": errno, "why": why,
        });
        if let Some(p) = path {
            v["path"] = p.into();
        }
        self.shared.event(v);
    }
}

/// A name a request may carry: one component, never `.` or `..`, no `/`, no NUL.
fn check_name(name: &[u8]) -> Result<(), Refusal> {
    let shown = String::from_utf8_lossy(name);
    if name.is_empty() || name.contains(&0) || name.len() > 255 {
        return Err(Refusal(libc::EINVAL, format!("name {shown:?} is empty, too long or has a NUL")));
    }
    if name == b"." || name == b".." || name.contains(&b'/') {
        return Err(Refusal(libc::EPERM, format!("name {shown:?} would leave its directory")));
    }
    Ok(())
}

fn unix_time() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn event(kind: &str, path: &Path, fields: &[(&str, serde_json::Value)]) -> serde_json::Value {
    let mut v = serde_json::json!({
        "time": unix_time(), "event": kind, "path": path.display().to_string(),
    });
    for (k, val) in fields {
        v[*k] = val.clone();
    }
    v
}
