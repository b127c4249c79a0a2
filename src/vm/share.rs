//! Host side of the 9p shares: preparing them, and reading what a guest left in them
//! without ever being pointed outside.
//!
//! QEMU runs the shares with a mapped security model (see `argv`), so a guest symlink
//! or device node lands on the host as a plain file. Collection still trusts nothing:
//! entries are examined with `lstat`, files are opened component by component with
//! `O_NOFOLLOW` below the share's own directory fd, and sizes are capped.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::plan::ShareSecurity;

#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("{}: `{name}` is not a plain relative path inside the share", share.display())]
    OutsideShare { share: PathBuf, name: String },
    #[error("{}: `{name}` is a symlink or special file written by the guest; not followed", share.display())]
    NotRegular { share: PathBuf, name: String },
    #[error("{}: `{name}` is {size} bytes, over the {limit}-byte limit", share.display())]
    TooLarge { share: PathBuf, name: String, size: u64, limit: u64 },
    #[error("{}: `{name}`: {source}", share.display())]
    Io {
        share: PathBuf,
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// The security model QEMU can use for a share directory: extended attributes when the
/// file system takes `user.*` xattrs, else metadata files.
pub fn security_for(dir: &Path) -> ShareSecurity {
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else {
        return ShareSecurity::MappedFile;
    };
    let name = c"user.bootproof.probe";
    // SAFETY: valid NUL-terminated strings and a 1-byte buffer.
    let ok = unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), b"1".as_ptr().cast(), 1, 0) } == 0;
    if ok {
        // SAFETY: as above.
        unsafe { libc::removexattr(path.as_ptr(), name.as_ptr()) };
        ShareSecurity::MappedXattr
    } else {
        ShareSecurity::MappedFile
    }
}

/// Reads `name` (relative, no `..`) from `share`, refusing symlinks at every component
/// and anything but a regular file, and files over `limit` bytes.
pub fn read_file(share: &Path, name: &str, limit: u64) -> Result<Vec<u8>, ShareError> {
    let file = open_beneath(share, name)?;
    let io = |source| ShareError::Io { share: share.into(), name: name.into(), source };
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(ShareError::NotRegular { share: share.into(), name: name.into() });
    }
    if meta.len() > limit {
        return Err(ShareError::TooLarge { share: share.into(), name: name.into(), size: meta.len(), limit });
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    use std::io::Read;
    file.take(limit + 1).read_to_end(&mut buf).map_err(io)?;
    if buf.len() as u64 > limit {
        return Err(ShareError::TooLarge {
            share: share.into(),
            name: name.into(),
            size: buf.len() as u64,
            limit,
        });
    }
    Ok(buf)
}

fn open_beneath(share: &Path, name: &str) -> Result<std::fs::File, ShareError> {
    let outside = || ShareError::OutsideShare { share: share.into(), name: name.into() };
    let io = |source| ShareError::Io { share: share.into(), name: name.into(), source };
    let components: Vec<&std::ffi::OsStr> = Path::new(name)
        .components()
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            _ => Err(outside()),
        })
        .collect::<Result<_, _>>()?;
    if components.is_empty() {
        return Err(outside());
    }
    let root = CString::new(share.as_os_str().as_bytes()).map_err(|_| outside())?;
    let mut dir = openat(libc::AT_FDCWD, &root, libc::O_DIRECTORY).map_err(io)?;
    let (last, parents) = components.split_last().expect("non-empty");
    for part in parents {
        let c = CString::new(part.as_bytes()).map_err(|_| outside())?;
        dir = openat(dir.as_raw_fd(), &c, libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .map_err(|e| not_followed(e, share, name))?;
    }
    let c = CString::new(last.as_bytes()).map_err(|_| outside())?;
    let fd = openat(dir.as_raw_fd(), &c, libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .map_err(|e| not_followed(e, share, name))?;
    Ok(std::fs::File::from(fd))
}

/// `O_NOFOLLOW` on a symlink fails with ELOOP (ENOTDIR with `O_DIRECTORY`).
fn not_followed(e: std::io::Error, share: &Path, name: &str) -> ShareError {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
            ShareError::NotRegular { share: share.into(), name: name.into() }
        }
        _ => ShareError::Io { share: share.into(), name: name.into(), source: e },
    }
}

fn openat(dir: i32, name: &CString, flags: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: valid NUL-terminated path; the returned fd is owned by us.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What a guest left in a share: every entry, described without following anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    pub kind: EntryKind,
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    /// A symlink, device, fifo or socket on the host: listed, never opened.
    Special,
}

/// Lists a share recursively (at most `max_entries`), never following symlinks. QEMU's
/// own metadata (`.virtfs_metadata`) is left out.
pub fn list(share: &Path, max_entries: usize) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(share.join(&rel))? {
            let entry = entry?;
            if entry.file_name() == ".virtfs_metadata" {
                continue;
            }
            let meta = std::fs::symlink_metadata(entry.path())?;
            let path = rel.join(entry.file_name());
            let kind = if meta.is_file() {
                EntryKind::File
            } else if meta.is_dir() {
                stack.push(path.clone());
                EntryKind::Dir
            } else {
                EntryKind::Special
            };
            out.push(Entry { path, kind, size: meta.len() });
            if out.len() >= max_entries {
                return Ok(out);
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_are_never_followed() {
        let share = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "host secret").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), share.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), share.path().join("dirlink")).unwrap();
        std::fs::write(share.path().join("ok.txt"), "fine").unwrap();
        assert_eq!(read_file(share.path(), "ok.txt", 100).unwrap(), b"fine");
        assert!(matches!(read_file(share.path(), "link", 100), Err(ShareError::NotRegular { .. })));
        assert!(matches!(read_file(share.path(), "dirlink/secret", 100), Err(ShareError::NotRegular { .. })));
        assert!(matches!(read_file(share.path(), "../x", 100), Err(ShareError::OutsideShare { .. })));
        assert!(matches!(read_file(share.path(), "/etc/passwd", 100), Err(ShareError::OutsideShare { .. })));
        assert!(matches!(read_file(share.path(), "ok.txt", 2), Err(ShareError::TooLarge { .. })));
        let listed = list(share.path(), 100).unwrap();
        let kinds: Vec<_> = listed.iter().map(|e| (e.path.to_str().unwrap(), e.kind)).collect();
        assert_eq!(
            kinds,
            [("dirlink", EntryKind::Special), ("link", EntryKind::Special), ("ok.txt", EntryKind::File)]
        );
    }
}
