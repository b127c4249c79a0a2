//! Checkpoints: a booted machine saved once and restored as many forks.
//!
//! Saving is QEMU's own migration, to a file: `stop`, then `migrate` to
//! `exec:cat > STATE` (memory and device state, the TPM's state blobs included, since
//! QEMU's `tpm-emulator` migrates swtpm's state), then QEMU is quit and the files the
//! stream does not carry are kept beside it: each writable disk's qcow2 (the build's
//! overlay, whose backing file stays the image), the UEFI VARS file and swtpm's state
//! directory. A fork is a new QEMU with the same argv (its own run directory, sockets
//! and a fresh qcow2 overlay on each saved disk) plus `-incoming defer`, then
//! `migrate-incoming` from `exec:cat STATE`; QEMU starts the guest once the state is
//! in. Measured here (QEMU 7.2, TCG): 1 GiB tiny guest, 0.9 s to save, 0.2 s to restore.
//!
//! What migration refuses is refused at once by QEMU's `migrate` with the blocking
//! device named (an `nvme` disk: "non-migratable device 0000:00:04.0/nvme"; a mounted
//! virtio-9p export): bootproof reports that text as the checkpoint's failure, it never
//! waits on a migration that cannot start. The runner unmounts the guest's 9P mounts
//! through the agent before saving and mounts them again in each fork (their lines of
//! `/proc/mounts` are kept in `checkpoint.json`), so the per-run share never blocks it
//! and each fork mounts its own share.
//!
//! The cache (`<cache>/checkpoints/<name>/<key>/`) is keyed by everything that can
//! change the saved machine ([`key`]): the checkpoint's steps and secret sources (never
//! values), the profile, the image files (path, size, modification time, inode: a
//! content hash of a multi-gigabyte image per run would cost more than the checkpoint
//! saves; reference images live under their recipe's hash anyway), QEMU's version and
//! its argv with every per-run path replaced. An entry appears in one rename, complete;
//! builds of one key are serialised by a lock file (and within a process by a mutex),
//! so concurrent scenarios and processes build it once. A new key of the same name and
//! image replaces the old entry.
//!
//! Owns: the key, the cache entry, QMP's save and restore. Must not: run steps (the
//! runner builds a checkpoint with its own step machinery).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::plan::{Drive, Plan};
use crate::agent::quote;
use crate::qmp::Qmp;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(
        "QEMU cannot save this machine: {detail}. A checkpoint needs every device to support \
         migration; start this scenario cold (no `start`), or change the profile"
    )]
    Unsaveable { detail: String },
    #[error("saving the machine failed: {0}")]
    SaveFailed(String),
    #[error("restoring checkpoint {}: {detail} (QEMU's log: {})", state.display(), log.display())]
    RestoreFailed { state: PathBuf, detail: String, log: PathBuf },
    #[error(
        "the saved machine holds a secret of this run in plain or encoded form ({file} at byte \
         {offset}); a checkpoint would keep it in the cache, so none was kept. Make the guest \
         forget it before the checkpoint's last step, or start this scenario cold"
    )]
    SecretInState { file: String, offset: u64 },
    #[error("checkpoint cache {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Qmp(#[from] crate::qmp::QmpError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.to_path_buf(), source }
}

/// A guest 9P mount, as `/proc/mounts` shows it, taken down before saving and put back
/// in each fork.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestMount {
    pub source: String,
    pub target: String,
    pub options: String,
}

impl GuestMount {
    /// The 9P mounts of a `/proc/mounts` text, in mount order.
    pub fn parse_proc_mounts(text: &str) -> Vec<GuestMount> {
        text.lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                (f.len() >= 4 && f[2] == "9p").then(|| GuestMount {
                    source: unescape_mount_field(f[0]),
                    target: unescape_mount_field(f[1]),
                    options: f[3].to_string(),
                })
            })
            .collect()
    }

    pub fn umount_command(&self) -> String {
        format!("umount {}", quote(&self.target))
    }

    pub fn mount_command(&self) -> String {
        format!("mount -t 9p -o {} {} {}", quote(&self.options), quote(&self.source), quote(&self.target))
    }
}

/// `/proc/mounts` writes space, tab, newline and backslash as octal escapes.
fn unescape_mount_field(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `checkpoint.json` in a cache entry: what a fork needs besides the files.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub name: String,
    pub key: String,
    pub file: PathBuf,
    pub image: String,
    pub qemu_version: String,
    pub created_unix: f64,
    /// Seconds the build took, boot included.
    pub build_secs: f64,
    /// The run directory of the build (its steps' logs).
    pub build_run_dir: PathBuf,
    pub mounts: Vec<GuestMount>,
    /// The saved disks, by drive index (`None` for a disc).
    pub disks: Vec<Option<String>>,
    pub vars: bool,
    pub tpm: bool,
}

/// A complete cache entry.
#[derive(Debug, Clone)]
pub struct Saved {
    pub dir: PathBuf,
    pub meta: Meta,
}

const STATE: &str = "state";
const VARS: &str = "vars.fd";
const TPM: &str = "tpm";
const META: &str = "checkpoint.json";
/// The build's console log, kept with the checkpoint and copied into every fork's run
/// directory (as [`FORK_CONSOLE`]).
pub const CONSOLE: &str = "console.log";
/// Where a fork's run directory keeps the checkpoint's console log.
pub const FORK_CONSOLE: &str = "checkpoint-console.log";

impl Saved {
    pub fn state(&self) -> PathBuf {
        self.dir.join(STATE)
    }
    pub fn console(&self) -> PathBuf {
        self.dir.join(CONSOLE)
    }
    fn disk(&self, index: usize) -> Option<PathBuf> {
        self.meta.disks.get(index)?.as_ref().map(|f| self.dir.join(f))
    }

    /// Points `plan` at this checkpoint: each writable drive's overlay is made on the
    /// saved disk instead of the image, the VARS copy comes from the saved file.
    pub fn apply(&self, plan: &mut Plan) {
        for (i, drive) in plan.drives.iter_mut().enumerate() {
            let Some(saved) = self.disk(i) else { continue };
            let (overlay, interface) = match drive {
                Drive::Disk { overlay, interface, .. } => (overlay.clone(), *interface),
                Drive::Blank { path, interface, .. } => (path.clone(), *interface),
                Drive::Cdrom { .. } => continue,
            };
            *drive = Drive::Disk {
                overlay,
                base: saved,
                base_format: Some(crate::profile::DiskFormat::Qcow2),
                interface,
            };
        }
        if let Some(fw) = &mut plan.firmware
            && self.meta.vars
        {
            fw.vars_template = self.dir.join(VARS);
        }
    }

    /// What [`super::Vm::restore`] needs.
    pub fn incoming(&self) -> Incoming {
        Incoming { state: self.state(), tpm_state: self.meta.tpm.then(|| self.dir.join(TPM)) }
    }
}

/// A fork's start: the state stream, and swtpm's saved state directory.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub state: PathBuf,
    pub tpm_state: Option<PathBuf>,
}

/// The cache key: a SHA-256 of everything that can change the saved machine (module
/// docs), hex. `steps` is the checkpoint's steps and secret sources as text.
pub fn key(plan: &Plan, profile_text: &str, steps_text: &str) -> String {
    let mut h = Sha256::new();
    let mut part = |label: &str, value: &[u8]| {
        h.update(label.as_bytes());
        h.update((value.len() as u64).to_le_bytes());
        h.update(value);
    };
    part("format", b"bootproof checkpoint 1");
    part("steps", steps_text.as_bytes());
    part("profile", profile_text.as_bytes());
    part("qemu", qemu_version(&plan.qemu).as_bytes());
    part("argv", normalized_argv(plan).as_bytes());
    for file in input_files(plan) {
        part("file", fingerprint(&file).as_bytes());
    }
    hex::encode(h.finalize())
}

/// The files the machine is made of that the argv names only through a per-run copy
/// (disk bases, the VARS template) or directly (discs).
fn input_files(plan: &Plan) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = plan
        .drives
        .iter()
        .filter_map(|d| match d {
            Drive::Disk { base, .. } => Some(base.clone()),
            Drive::Cdrom { path } => Some(path.clone()),
            Drive::Blank { .. } => None,
        })
        .collect();
    files.extend(plan.firmware.as_ref().map(|f| f.vars_template.clone()));
    files
}

/// Path, size, modification time and inode: a file replaced or rewritten changes it.
fn fingerprint(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    match std::fs::metadata(&abs) {
        Ok(m) => format!("{} {} {}.{} {}", abs.display(), m.len(), m.mtime(), m.mtime_nsec(), m.ino()),
        Err(e) => format!("{} unreadable: {e}", abs.display()),
    }
}

/// The argv as text, with the run directory, the socket directory, the bootproof
/// program and loopback ports replaced: two runs of one scenario give the same text.
pub fn normalized_argv(plan: &Plan) -> String {
    let argv = super::argv::argv(plan);
    let mut text = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join("\u{0}");
    let l = &plan.layout;
    let mut replace =
        vec![(l.dir.display().to_string(), "$RUN_DIR"), (l.socket_dir.display().to_string(), "$SOCKETS")];
    if let Some(s) = &plan.share_server {
        replace.push((s.program.display().to_string(), "$BOOTPROOF"));
    }
    // Longest first: the socket directory may lie inside the run directory.
    replace.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
    for (from, to) in replace {
        if !from.is_empty() {
            text = text.replace(&from, to);
        }
    }
    static PORT: OnceLock<regex::Regex> = OnceLock::new();
    let port = PORT.get_or_init(|| regex::Regex::new(r"127\.0\.0\.1:[0-9]+").expect("valid"));
    port.replace_all(&text, "127.0.0.1:$$PORT").into_owned()
}

/// `qemu --version`'s first line, asked once per program and process.
pub fn qemu_version(qemu: &Path) -> String {
    static SEEN: Mutex<Option<HashMap<PathBuf, String>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let seen = seen.get_or_insert_with(HashMap::new);
    seen.entry(qemu.to_path_buf())
        .or_insert_with(|| {
            std::process::Command::new(qemu).arg("--version").output().map_or_else(
                |e| format!("unknown ({e})"),
                |o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string(),
            )
        })
        .clone()
}

/// The checkpoint cache: `<cache>/checkpoints`.
pub fn root() -> PathBuf {
    crate::cache::cache_dir().join("checkpoints")
}

/// The entry's directory: the key shortened to 16 hex digits (the whole key is in
/// `checkpoint.json`).
pub fn entry_dir(root: &Path, name: &str, key: &str) -> PathBuf {
    root.join(name).join(&key[..16.min(key.len())])
}

/// The complete entry for `key`, if there is one.
pub fn lookup(root: &Path, name: &str, key: &str) -> Option<Saved> {
    let dir = entry_dir(root, name, key);
    let meta: Meta = serde_json::from_slice(&std::fs::read(dir.join(META)).ok()?).ok()?;
    let disks = meta.disks.iter().flatten().all(|d| dir.join(d).is_file());
    let vars = !meta.vars || dir.join(VARS).is_file();
    (meta.key == key && dir.join(STATE).is_file() && disks && vars).then_some(Saved { dir, meta })
}

/// Held while a key is looked up and, if missing, built.
pub struct BuildLock {
    _file: std::fs::File,
    _inner: tokio::sync::OwnedMutexGuard<()>,
}

/// Waits for the right to build `key`: one builder per key in this process (a mutex)
/// and across processes (an exclusive lock on `<name>/<key>.lock`).
pub async fn lock(root: &Path, name: &str, key: &str) -> Result<BuildLock, CheckpointError> {
    static MUTEXES: Mutex<Option<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = Mutex::new(None);
    let mutex = {
        let mut all = MUTEXES.lock().unwrap_or_else(|e| e.into_inner());
        all.get_or_insert_with(HashMap::new).entry(key.to_string()).or_default().clone()
    };
    let inner = mutex.lock_owned().await;
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let path = dir.join(format!("{}.lock", &key[..16.min(key.len())]));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => tokio::time::sleep(Duration::from_millis(250)).await,
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
    }
    remove_abandoned_staging(&dir);
    Ok(BuildLock { _file: file, _inner: inner })
}

/// Staging directories (`.staging-<pid>-<id>`) of processes that are gone: a build
/// killed half-way leaves one.
fn remove_abandoned_staging(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(".staging-").and_then(|r| r.split('-').next()) else { continue };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Stops the guest and writes its memory and device state to `state`; returns once
/// QEMU says the migration completed. A device that blocks migration fails at once.
pub async fn save_state(qmp: &Qmp, state: &Path, timeout: Duration) -> Result<(), CheckpointError> {
    qmp.execute("stop", None).await?;
    // QEMU throttles migration to 128 MiB/s by default; a file takes what it gets.
    let _ =
        qmp.execute("migrate-set-parameters", Some(serde_json::json!({ "max-bandwidth": 8u64 << 30 }))).await;
    let uri = format!("exec:cat > {}", quote(&state.display().to_string()));
    if let Err(e) = qmp.execute("migrate", Some(serde_json::json!({ "uri": uri }))).await {
        return Err(match e {
            crate::qmp::QmpError::Command { desc, .. } => CheckpointError::Unsaveable { detail: desc },
            other => other.into(),
        });
    }
    wait_migration(qmp, timeout).await.map_err(CheckpointError::SaveFailed)
}

/// Polls `query-migrate` until it completes (`Ok`) or fails (QEMU's reason).
async fn wait_migration(qmp: &Qmp, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let v = qmp.execute("query-migrate", None).await.map_err(|e| e.to_string())?;
        match v["status"].as_str() {
            Some("completed") => return Ok(()),
            Some(s @ ("failed" | "cancelled")) => {
                let why = v["error-desc"].as_str().unwrap_or("no reason given");
                return Err(format!("migration {s}: {why}"));
            }
            _ => {}
        }
        if Instant::now() > deadline {
            return Err(format!("migration not complete after {timeout:?}: {v}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Loads the state into a QEMU started with `-incoming defer`; QEMU runs the guest
/// when it is in.
pub async fn restore_state(qmp: &Qmp, incoming: &Incoming, timeout: Duration) -> Result<(), String> {
    let uri = format!("exec:cat {}", quote(&incoming.state.display().to_string()));
    qmp.execute("migrate-incoming", Some(serde_json::json!({ "uri": uri })))
        .await
        .map_err(|e| e.to_string())?;
    wait_migration(qmp, timeout).await?;
    // The source was stopped before it was saved, so the fork arrives paused.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match qmp.query_status().await.map_err(|e| e.to_string())?.as_str() {
            "running" => return Ok(()),
            "paused" => {
                qmp.execute("cont", None).await.map_err(|e| e.to_string())?;
            }
            other if Instant::now() > deadline => {
                return Err(format!("the restored machine is `{other}`, not running"));
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// After QEMU has quit: moves the build's writable disks, VARS and TPM state into
/// `staging` next to the state file, writes `checkpoint.json`, and makes `staging` the
/// entry for `meta.key` in one rename. Older entries of the same name and image go.
pub fn commit(plan: &Plan, staging: &Path, console: &Path, mut meta: Meta) -> Result<Saved, CheckpointError> {
    for (i, drive) in plan.drives.iter().enumerate() {
        let (Drive::Disk { overlay: file, .. } | Drive::Blank { path: file, .. }) = drive else {
            meta.disks.push(None);
            continue;
        };
        let name = format!("disk-{i}.qcow2");
        move_file(file, &staging.join(&name))?;
        meta.disks.push(Some(name));
    }
    if let Some(fw) = &plan.firmware {
        std::fs::copy(&fw.vars, staging.join(VARS)).map_err(io(&fw.vars))?;
        meta.vars = true;
    }
    if plan.tpm {
        let tpm = plan.layout.tpm_state();
        copy_dir(&tpm, &staging.join(TPM)).map_err(io(&tpm))?;
        meta.tpm = true;
    }
    if console.is_file() {
        std::fs::copy(console, staging.join(CONSOLE)).map_err(io(console))?;
    }
    // What the cache keeps never holds a secret: the guest's memory and disks are
    // searched for every form the redactor knows (the console log was redacted as it
    // was written).
    let secrets = SecretSearch::new().map_err(io(staging))?;
    for entry in walk(staging)? {
        if entry.file_name().is_some_and(|n| n == CONSOLE) {
            continue;
        }
        if let Some(offset) = secrets.find(&entry)? {
            let file = entry.strip_prefix(staging).unwrap_or(&entry).display().to_string();
            return Err(CheckpointError::SecretInState { file, offset });
        }
    }
    let json = serde_json::to_vec_pretty(&meta).expect("meta serialises");
    std::fs::write(staging.join(META), json).map_err(io(staging))?;
    let root = staging.parent().and_then(Path::parent).unwrap_or(staging);
    let dir = entry_dir(root, &meta.name, &meta.key);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    std::fs::rename(staging, &dir).map_err(io(&dir))?;
    evict_older(&dir, &meta);
    Ok(Saved { dir, meta })
}

/// Removes the other entries of `meta.name` built on the same image: a new key there
/// means the steps, profile or image changed, and the old one will not be asked for.
fn evict_older(kept: &Path, meta: &Meta) {
    let Some(parent) = kept.parent() else { return };
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path == kept || !path.is_dir() {
            continue;
        }
        let Ok(bytes) = std::fs::read(path.join(META)) else { continue };
        let Ok(other) = serde_json::from_slice::<Meta>(&bytes) else { continue };
        if other.image == meta.image && other.key != meta.key {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Result<Vec<PathBuf>, CheckpointError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_dir() {
            files.extend(walk(&path)?);
        } else {
            files.push(path);
        }
    }
    Ok(files)
}

/// Every form of every registered secret that [`crate::redact`] replaces, as one
/// regex over bytes, built once for all the files of an entry.
struct SecretSearch {
    re: Option<regex::bytes::Regex>,
    /// Bytes a piece keeps from the one before: the longest form less one.
    keep: usize,
}

impl SecretSearch {
    fn new() -> std::io::Result<SecretSearch> {
        let forms = crate::redact::forms();
        if forms.is_empty() {
            return Ok(SecretSearch { re: None, keep: 0 });
        }
        let alternation: Vec<String> =
            forms.iter().map(|f| regex::escape(&String::from_utf8_lossy(f))).collect();
        let re = regex::bytes::RegexBuilder::new(&alternation.join("|"))
            .unicode(false)
            .size_limit(64 << 20)
            .build()
            .map_err(|e| std::io::Error::other(format!("the secrets' search: {e}")))?;
        let keep = forms.iter().map(Vec::len).max().unwrap_or(1).saturating_sub(1);
        Ok(SecretSearch { re: Some(re), keep })
    }

    /// The offset of the first secret in `file`, read in 8 MiB pieces that overlap by
    /// the longest form.
    fn find(&self, file: &Path) -> Result<Option<u64>, CheckpointError> {
        use std::io::Read;
        let Some(re) = &self.re else { return Ok(None) };
        let mut f = std::fs::File::open(file).map_err(io(file))?;
        let mut buf: Vec<u8> = Vec::with_capacity(8 << 20);
        let mut base: u64 = 0;
        let mut piece = vec![0u8; 8 << 20];
        loop {
            let n = f.read(&mut piece).map_err(io(file))?;
            if n == 0 {
                return Ok(None);
            }
            buf.extend_from_slice(&piece[..n]);
            if let Some(m) = re.find(&buf) {
                return Ok(Some(base + m.start() as u64));
            }
            let drop = buf.len().saturating_sub(self.keep);
            buf.drain(..drop);
            base += drop as u64;
        }
    }
}

fn move_file(from: &Path, to: &Path) -> Result<(), CheckpointError> {
    if std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to).map_err(io(from))?;
    let _ = std::fs::remove_file(from);
    Ok(())
}

/// Copies the files of `from` (not its subdirectories) into `to`.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// Copies a saved TPM state directory into a fork's run directory.
pub fn copy_tpm_state(from: &Path, to: &Path) -> std::io::Result<()> {
    copy_dir(from, to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;
    use crate::vm::plan::{HostFacts, Image};
    use crate::vm::rundir::RunLayout;

    fn plan(run_dir: &str, image: &Path, program: &str, profile: &str) -> Plan {
        let profile =
            Profile::parse(&format!("firmware = \"bios\"\n{profile}"), Path::new("p.toml")).unwrap();
        let host = HostFacts { bootproof_program: Some(program.into()), ..HostFacts::for_tests() };
        let image = Image::Disk { path: image.to_path_buf(), format: None };
        Plan::new(&profile, Some(&image), &host, &RunLayout::at(run_dir)).unwrap()
    }

    #[test]
    fn the_key_leaves_out_per_run_paths_and_follows_what_changes_the_machine() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.qcow2");
        std::fs::write(&image, b"one").unwrap();
        let p2 = "share_backend = \"p9\"\n";
        let k = |run: &str, program: &str, profile: &str, steps: &str| {
            key(&plan(run, &image, program, profile), profile, steps)
        };
        let first = k("/art/a/1", "/t/deps/x-1", p2, "steps");
        assert_eq!(first.len(), 64);
        // Another run directory and another program path (a test binary vs the CLI).
        assert_eq!(first, k("/other/b/2", "/usr/bin/bootproof", p2, "steps"));
        assert_ne!(first, k("/art/a/1", "/t/deps/x-1", p2, "other steps"), "steps");
        assert_ne!(first, k("/art/a/1", "/t/deps/x-1", "memory = \"2G\"\n", "steps"), "profile");
        // The image rewritten in place: size and modification time change.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&image, b"two, longer").unwrap();
        assert_ne!(first, k("/art/a/1", "/t/deps/x-1", p2, "steps"), "image");
    }

    #[test]
    fn a_normalized_argv_names_no_run_directory() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.qcow2");
        std::fs::write(&image, b"x").unwrap();
        let text = normalized_argv(&plan("/art/s/run-7", &image, "/t/deps/x-1", "share_backend = \"p9\"\n"));
        assert!(!text.contains("/art/s/run-7") && !text.contains("/t/deps/x-1"), "{text}");
        assert!(text.contains("$RUN_DIR/disk0.qcow2") || text.contains("$RUN_DIR"), "{text}");
        assert!(text.contains("$BOOTPROOF share-relay"), "{text}");
    }

    #[test]
    fn a_secret_is_found_across_the_pieces_a_state_file_is_read_in() {
        let secret = "checkpoint-scan-Secret-7f3a";
        crate::redact::register(secret);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state");
        let at = (8 << 20) - 10; // straddles the first piece's end
        let mut bytes = vec![0x55u8; 12 << 20];
        bytes[at..at + secret.len()].copy_from_slice(secret.as_bytes());
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(SecretSearch::new().unwrap().find(&file).unwrap(), Some(at as u64));
        // Its base64, as a guest program might keep it, is found too.
        let mut bytes = vec![0x55u8; 1 << 20];
        let encoded = base64_of(secret);
        bytes[100..100 + encoded.len()].copy_from_slice(encoded.as_bytes());
        std::fs::write(&file, &bytes).unwrap();
        assert!(SecretSearch::new().unwrap().find(&file).unwrap().is_some(), "base64 form");
        std::fs::write(&file, vec![0x55u8; 1 << 20]).unwrap();
        assert_eq!(SecretSearch::new().unwrap().find(&file).unwrap(), None);
    }

    fn base64_of(s: &str) -> String {
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b = s.as_bytes();
        let mut out = String::new();
        for c in b.chunks(3) {
            let n =
                (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..=c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn an_entry_missing_a_file_is_not_found_and_abandoned_staging_goes() {
        let root = tempfile::tempdir().unwrap();
        let key = "ab".repeat(32);
        let dir = entry_dir(root.path(), "x", &key);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(STATE), b"s").unwrap();
        let meta = Meta {
            name: "x".into(),
            key: key.clone(),
            file: "x.toml".into(),
            image: "reference:tiny".into(),
            qemu_version: String::new(),
            created_unix: 0.0,
            build_secs: 0.0,
            build_run_dir: "r".into(),
            mounts: Vec::new(),
            disks: vec![Some("disk-0.qcow2".into()), None],
            vars: false,
            tpm: false,
        };
        std::fs::write(dir.join(META), serde_json::to_vec(&meta).unwrap()).unwrap();
        assert!(lookup(root.path(), "x", &key).is_none(), "disk-0.qcow2 is missing");
        std::fs::write(dir.join("disk-0.qcow2"), b"d").unwrap();
        assert!(lookup(root.path(), "x", &key).is_some());
        assert!(lookup(root.path(), "x", &"cd".repeat(32)).is_none(), "another key");

        let gone = root.path().join("x/.staging-999999999-1");
        let ours = root.path().join(format!("x/.staging-{}-2", std::process::id()));
        for d in [&gone, &ours] {
            std::fs::create_dir_all(d).unwrap();
        }
        remove_abandoned_staging(&root.path().join("x"));
        assert!(!gone.exists() && ours.exists());
    }

    #[test]
    fn nine_p_mounts_are_read_from_proc_mounts_with_their_escapes() {
        let text = "proc /proc proc rw 0 0\n\
                    bootproof /mnt/bootproof 9p rw,sync,dirsync,relatime,access=client,msize=262144,trans=virtio 0 0\n\
                    inputs /mnt/my\\040inputs 9p ro,relatime,trans=virtio 0 0\n";
        let mounts = GuestMount::parse_proc_mounts(text);
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].source, "bootproof");
        assert_eq!(mounts[0].target, "/mnt/bootproof");
        assert!(mounts[0].options.ends_with("trans=virtio"));
        assert_eq!(mounts[1].target, "/mnt/my inputs");
        assert_eq!(
            mounts[1].mount_command(),
            "mount -t 9p -o 'ro,relatime,trans=virtio' inputs '/mnt/my inputs'"
        );
        assert_eq!(mounts[1].umount_command(), "umount '/mnt/my inputs'");
    }
}
