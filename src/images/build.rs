//! The mechanics of one image build: the temporary build directory and its
//! `build.log`, numbered progress steps, running external commands with their output
//! in the log, the per-image lock, and the atomic move into the cache.
//!
//! Must not: know what an image contains (that is `tiny`'s and `recipe`'s business).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{CommandFailed, ImageError};

/// How many lines of a failed command's output the error repeats.
const TAIL_LINES: usize = 20;

/// An exclusive `flock` held until dropped, so concurrent builders of one image wait
/// for each other instead of writing into the same directory.
pub struct Lock(File);

impl Lock {
    pub fn exclusive(path: &Path) -> std::io::Result<Lock> {
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
        loop {
            // SAFETY: the descriptor is open for the whole call.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Lock(file));
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: as above; closing the file would release the lock anyway.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Where a finished image `name` with recipe hash `hash` lives.
pub fn final_dir(images: &Path, name: &str, hash: &str) -> PathBuf {
    images.join(format!("{name}-{hash}"))
}

/// A build in progress lives here; only a complete build is renamed to `final_dir`.
pub fn temp_dir(images: &Path, name: &str, hash: &str) -> PathBuf {
    images.join(format!(".tmp-{name}-{hash}-{}", std::process::id()))
}

/// The cached image file, if a complete build of this recipe is in the cache. Only
/// `final_dir` counts: a temporary directory left by an interrupted build never does.
pub fn cached(images: &Path, name: &str, hash: &str, file_name: &str) -> Option<PathBuf> {
    Some(final_dir(images, name, hash).join(file_name)).filter(|p| p.is_file())
}

/// Removes temporary directories that interrupted or failed builds of `name` left
/// behind. Call it only while holding the image's lock, so no live build is among them.
/// Complete builds of older recipes stay: a running test may still boot one.
pub fn remove_stale(images: &Path, name: &str) -> std::io::Result<()> {
    let prefix = format!(".tmp-{name}-");
    for entry in fs::read_dir(images)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_string_lossy().strip_prefix(&prefix).map(str::to_string) else {
            continue;
        };
        // `<hash>-<pid>`: anything with more dashes belongs to a longer name
        // (`.tmp-tiny-sb-…` is not tiny's).
        if rest.split('-').count() == 2 && entry.path().is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    Ok(())
}

/// Removes complete builds of `name` from other recipes (other hashes) last written
/// more than `age` ago. A newer recipe replaced them; only a test that started before
/// the replacement could still be booting one, hence the age.
pub fn remove_superseded(images: &Path, name: &str, keep_hash: &str, age: Duration) -> std::io::Result<()> {
    let prefix = format!("{name}-");
    for entry in fs::read_dir(images)? {
        let entry = entry?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        // `tiny-sb-<hash>` starts with `tiny-` too; only a bare hash may follow.
        let Some(hash) = file_name.strip_prefix(&prefix).filter(|h| is_hash(h)) else {
            continue;
        };
        let old = entry.metadata()?.modified()?.elapsed().is_ok_and(|e| e > age);
        if hash != keep_hash && old && entry.path().is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    Ok(())
}

/// Removes the directory tree `dir` after detaching whatever is still mounted below
/// it, and never crosses into another file system.
///
/// A build that chroots mounts /proc, /sys and /dev/pts into its tree; one killed
/// before it unmounted them (a session or CI job ended mid-build) left them mounted,
/// and `remove_dir_all` would walk into them: into a read-only sysfs (`EROFS`, which
/// once failed every later build of the image) or, for a bind mount of /dev, into the
/// host's own files. Builds now mount only in a private mount namespace (`unshare`,
/// see `installed`), which the kernel tears down with the process; this cleans up
/// after older ones and anything else.
pub fn remove_tree(dir: &Path) -> std::io::Result<()> {
    unmount_below(dir)?;
    use std::os::unix::fs::MetadataExt;
    let dev = fs::symlink_metadata(dir)?.dev();
    remove_same_fs(dir, dev)
}

fn remove_same_fs(dir: &Path, dev: u64) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            if meta.dev() != dev {
                return Err(std::io::Error::other(format!(
                    "{} is another file system mounted in a build tree; not removing it",
                    path.display()
                )));
            }
            remove_same_fs(&path, dev)?;
        } else {
            fs::remove_file(&path)?;
        }
    }
    fs::remove_dir(dir)
}

/// Lazily detaches every mount at or below `dir`, deepest first.
pub fn unmount_below(dir: &Path) -> std::io::Result<()> {
    let dir = fs::canonicalize(dir)?;
    let mut points: Vec<PathBuf> = mount_points()?.into_iter().filter(|p| p.starts_with(&dir)).collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in points {
        let c =
            std::ffi::CString::new(point.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?;
        // SAFETY: a valid NUL-terminated path; MNT_DETACH needs no other state.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
            let err = std::io::Error::last_os_error();
            return Err(std::io::Error::new(err.kind(), format!("unmounting {}: {err}", point.display())));
        }
    }
    Ok(())
}

/// This process's mount points, from `/proc/self/mountinfo` (field 5, with the
/// kernel's octal escapes for space, tab, newline and backslash undone).
fn mount_points() -> std::io::Result<Vec<PathBuf>> {
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(info.lines().filter_map(|l| l.split(' ').nth(4)).map(unescape_mount_point).collect())
}

fn unescape_mount_point(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

fn is_hash(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One build: its directory, log, step counter and progress sink.
pub struct Build<'p> {
    image: String,
    dir: PathBuf,
    log_path: PathBuf,
    log: File,
    step: String,
    index: usize,
    total: usize,
    progress: &'p mut dyn FnMut(&str),
}

impl<'p> Build<'p> {
    /// Starts a build in `dir` (created here) with `total` steps.
    pub fn start(
        image: &str,
        dir: PathBuf,
        total: usize,
        progress: &'p mut dyn FnMut(&str),
    ) -> Result<Build<'p>, ImageError> {
        let io = |path: &Path, source| ImageError::Io {
            image: image.to_string(),
            step: "preparing the build directory".to_string(),
            path: path.to_path_buf(),
            source,
        };
        fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let log_path = dir.join("build.log");
        let log = File::create(&log_path).map_err(|e| io(&log_path, e))?;
        Ok(Build {
            image: image.to_string(),
            dir,
            log_path,
            log,
            step: "preparing the build directory".to_string(),
            index: 0,
            total,
            progress,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Begins the next numbered step and tells the user.
    pub fn step(&mut self, label: &str) {
        self.index += 1;
        self.step = label.to_string();
        let line = format!("building reference:{}: [{}/{}] {label}", self.image, self.index, self.total);
        let _ = writeln!(self.log, "== {line}");
        (self.progress)(&line);
    }

    /// Runs `cmd` with its output appended to `build.log`.
    pub fn run(&mut self, cmd: &mut Command) -> Result<(), ImageError> {
        self.run_with_input(cmd, None)
    }

    /// Runs `cmd` with `input` on its stdin and its output appended to `build.log`.
    pub fn run_with_input(&mut self, cmd: &mut Command, input: Option<&[u8]>) -> Result<(), ImageError> {
        self.run_inner(cmd, input, None)
    }

    fn run_inner(
        &mut self,
        cmd: &mut Command,
        input: Option<&[u8]>,
        stdout: Option<File>,
    ) -> Result<(), ImageError> {
        let command = describe(cmd);
        let _ = writeln!(self.log, "$ {command}");
        let start = self.log.stream_position().unwrap_or(0);
        let spawn_err = |source| ImageError::Spawn {
            image: self.image.clone(),
            step: self.step.clone(),
            command: command.clone(),
            source,
        };
        let out = match stdout {
            Some(file) => file,
            None => self.log.try_clone().map_err(spawn_err)?,
        };
        let err = self.log.try_clone().map_err(spawn_err)?;
        let mut child = cmd
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(spawn_err)?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(input).map_err(spawn_err)?;
        }
        let status = child.wait().map_err(spawn_err)?;
        if status.success() {
            return Ok(());
        }
        Err(ImageError::Command(Box::new(CommandFailed {
            image: self.image.clone(),
            step: self.step.clone(),
            command,
            status: status.to_string(),
            tail: self.log_tail(start),
            log: self.log_path.clone(),
        })))
    }

    /// The last lines the log got since `start`.
    fn log_tail(&self, start: u64) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log_path) {
            let _ = f.seek(SeekFrom::Start(start));
            let _ = f.read_to_string(&mut text);
        }
        tail(&text, TAIL_LINES)
    }

    /// Runs `cmd` like [`Build::run`], but a non-zero exit is an answer, not an
    /// error: for commands that report partial success that way (`apt-get download`
    /// of files some of which the archive does not serve).
    pub fn run_tolerant(&mut self, cmd: &mut Command) -> Result<bool, ImageError> {
        match self.run(cmd) {
            Ok(()) => Ok(true),
            Err(ImageError::Command(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Runs `cmd` with its stdout written to `out` and its stderr to `build.log`.
    pub fn run_to_file(&mut self, cmd: &mut Command, out: &Path) -> Result<(), ImageError> {
        let file = self.io(out, File::create(out))?;
        self.run_inner(cmd, None, Some(file))
    }

    /// Names the step and file in an I/O error.
    pub fn io<T>(&self, path: &Path, result: std::io::Result<T>) -> Result<T, ImageError> {
        result.map_err(|source| ImageError::Io {
            image: self.image.clone(),
            step: self.step.clone(),
            path: path.to_path_buf(),
            source,
        })
    }

    pub fn create_dir(&self, path: &Path) -> Result<(), ImageError> {
        self.io(path, fs::create_dir_all(path))
    }

    pub fn write(&self, path: &Path, contents: impl AsRef<[u8]>) -> Result<(), ImageError> {
        self.io(path, fs::write(path, contents))
    }

    /// An error about what the build found (a missing file, a bad checksum).
    pub fn content(&self, message: String) -> ImageError {
        ImageError::Content {
            image: self.image.clone(),
            step: self.step.clone(),
            message,
            log: self.log_path.clone(),
        }
    }

    /// Moves the finished build to `dest` in one rename, replacing an older copy.
    pub fn finish(self, dest: &Path) -> Result<(), ImageError> {
        debug_assert_eq!(self.index, self.total, "step count of {}", self.image);
        if dest.exists() {
            let old = self.dir.with_extension("old");
            self.io(dest, fs::rename(dest, &old))?;
            self.io(&old, fs::remove_dir_all(&old))?;
        }
        self.io(dest, fs::rename(&self.dir, dest))
    }
}

/// A command as a user would type it, for the log and for errors.
fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.is_empty() || a.contains([' ', '"', '\'']) {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(n);
    lines[from..].iter().map(|l| format!("  | {l}")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_quotes_what_a_shell_would_split() {
        let mut cmd = Command::new("mcopy");
        cmd.args(["-i", "esp img", "::/EFI/BOOT/BOOTX64.EFI", "it's"]);
        assert_eq!(describe(&cmd), r"mcopy -i 'esp img' ::/EFI/BOOT/BOOTX64.EFI 'it'\''s'");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "  | b\n  | c");
        assert_eq!(tail("", 2), "");
    }

    #[test]
    fn an_interrupted_build_is_not_cached() {
        let images = tempfile::tempdir().unwrap();
        let tmp = temp_dir(images.path(), "tiny", "abc");
        fs::create_dir_all(&tmp).unwrap();
        fs::write(tmp.join("tiny.raw"), b"half").unwrap();
        assert_eq!(cached(images.path(), "tiny", "abc", "tiny.raw"), None);

        let done = final_dir(images.path(), "tiny", "abc");
        fs::rename(&tmp, &done).unwrap();
        assert_eq!(cached(images.path(), "tiny", "abc", "tiny.raw"), Some(done.join("tiny.raw")));
    }

    #[test]
    fn mount_points_are_unescaped_as_the_kernel_escapes_them() {
        assert_eq!(unescape_mount_point(r"/tmp/a\040b\011c\134d"), PathBuf::from("/tmp/a b\tc\\d"));
        assert_eq!(unescape_mount_point(r"/x\04"), PathBuf::from(r"/x\04"));
    }

    #[test]
    fn a_killed_builds_read_only_mount_is_detached_and_its_tree_removed() {
        // What a chroot build killed mid-way left: a read-only mount (like its /sys)
        // inside its temporary tree. remove_dir_all failed on it with EROFS.
        let images = tempfile::tempdir().unwrap();
        let stale = images.path().join(".tmp-installed-0123456789abcdef-7");
        let sys = stale.join("work/tree/sys");
        fs::create_dir_all(&sys).unwrap();
        let mount = |args: &[&str]| {
            let out = Command::new("mount").args(args).arg(&sys).output().expect("mount runs");
            assert!(
                out.status.success(),
                "this test mounts a tmpfs and needs root: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        mount(&["-t", "tmpfs", "leftover"]);
        fs::write(sys.join("kernel"), b"x").unwrap();
        mount(&["-o", "remount,ro"]);
        assert!(fs::remove_dir_all(&stale).is_err(), "the read-only mount refuses removal");
        remove_stale(images.path(), "installed").unwrap();
        assert!(!stale.exists());
        let left: Vec<PathBuf> =
            mount_points().unwrap().into_iter().filter(|p| p.starts_with(images.path())).collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn removal_refuses_to_cross_into_another_file_system() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        // A device number no file system here has.
        let err = remove_same_fs(dir.path(), u64::MAX).unwrap_err();
        assert!(err.to_string().contains("another file system"), "{err}");
        assert!(dir.path().join("sub").exists(), "nothing removed across the boundary");
    }

    #[test]
    fn stale_temp_dirs_of_this_image_only_are_removed() {
        let images = tempfile::tempdir().unwrap();
        let mine = images.path().join(".tmp-tiny-abc-1");
        let other = images.path().join(".tmp-tiny-sb-abc-1");
        let done = final_dir(images.path(), "tiny", "abc");
        for d in [&mine, &other, &done] {
            fs::create_dir_all(d).unwrap();
        }
        remove_stale(images.path(), "tiny").unwrap();
        assert!(!mine.exists());
        assert!(done.exists());
        assert!(other.exists(), "tiny-sb's build is not tiny's to remove");
    }

    #[test]
    fn only_old_builds_of_other_recipes_of_this_image_are_superseded() {
        let images = tempfile::tempdir().unwrap();
        let dir = |n: &str| images.path().join(n);
        let names = [
            "tiny-0000000000000001",
            "tiny-0000000000000002",
            "tiny-0000000000000003",
            "tiny-sb-0000000000000001",
        ];
        for n in names {
            fs::create_dir_all(dir(n)).unwrap();
        }
        let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 86400);
        for n in ["tiny-0000000000000001", "tiny-0000000000000003", "tiny-sb-0000000000000001"] {
            File::open(dir(n)).unwrap().set_modified(two_days_ago).unwrap();
        }
        let day = Duration::from_secs(86400);
        remove_superseded(images.path(), "tiny", "0000000000000003", day).unwrap();
        assert!(!dir("tiny-0000000000000001").exists(), "old and superseded");
        assert!(dir("tiny-0000000000000002").exists(), "too recent");
        assert!(dir("tiny-0000000000000003").exists(), "the current recipe");
        assert!(dir("tiny-sb-0000000000000001").exists(), "another image");
    }

    #[test]
    fn a_failed_command_names_step_command_status_tail_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut progress = |_: &str| {};
        let mut b = Build::start("tiny", dir.path().join("b"), 1, &mut progress).unwrap();
        b.step("building initramfs");
        let err =
            b.run(Command::new("sh").args(["-c", "echo one; echo two >&2; exit 3"])).unwrap_err().to_string();
        assert!(err.contains("step `building initramfs`"), "{err}");
        assert!(err.contains("sh -c 'echo one; echo two >&2; exit 3'"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.contains("  | one\n  | two"), "{err}");
        assert!(err.contains("b/build.log"), "{err}");
    }

    #[test]
    fn steps_are_numbered_for_the_user() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = Vec::new();
        let mut progress = |l: &str| lines.push(l.to_string());
        let mut b = Build::start("tiny", dir.path().join("b"), 2, &mut progress).unwrap();
        b.step("downloading packages");
        b.step("building initramfs");
        drop(b);
        assert_eq!(
            lines,
            [
                "building reference:tiny: [1/2] downloading packages",
                "building reference:tiny: [2/2] building initramfs"
            ]
        );
    }
}
