//! Disks and discs: classifying an image, and the per-run qcow2 overlay that keeps the
//! user's image untouched.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::profile::DiskFormat;

use super::plan::Image;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error(
        "image {} does not exist\n  fix: pass an existing .qcow2/.raw/.img/.iso path, or a reference \
         image such as reference:tiny (see `bootproof images list`)",
        path.display()
    )]
    Missing { path: PathBuf },
    #[error("image {}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`qemu-img {args}` failed: {detail}")]
    QemuImg { args: String, detail: String },
    #[error("image {}: format `{format}` is not supported (raw, qcow2 and ISO 9660 are)", path.display())]
    Format { path: PathBuf, format: String },
    #[error("image `{spec}`: {why}; write e.g. `blank:20G` for an empty 20 GiB disk")]
    BlankSize { spec: String, why: String },
}

/// `blank:SIZE` → an empty disk of that size (`20G`, `512M`), made per run.
pub fn blank(spec: &str) -> Option<Result<Image, DiskError>> {
    let size = spec.strip_prefix("blank:")?;
    let bad = |why: String| DiskError::BlankSize { spec: spec.to_string(), why };
    Some(
        crate::profile::parse_memory_mib(size)
            .map_err(bad)
            .map(|mib| Image::Blank { bytes: mib * 1024 * 1024 }),
    )
}

/// Classifies an image by content: ISO 9660 (`CD001` at sector 16) boots as a disc,
/// anything else as a disk whose format `qemu-img` detects later.
pub fn classify(path: &Path) -> Result<Image, DiskError> {
    if !path.exists() {
        return Err(DiskError::Missing { path: path.to_path_buf() });
    }
    let read = |source| DiskError::Read { path: path.to_path_buf(), source };
    let mut f = std::fs::File::open(path).map_err(read)?;
    let mut magic = [0u8; 5];
    let is_iso =
        f.seek(SeekFrom::Start(0x8001)).is_ok() && f.read_exact(&mut magic).is_ok() && &magic == b"CD001";
    let path = std::path::absolute(path).map_err(read)?;
    Ok(if is_iso { Image::Iso { path } } else { Image::Disk { path, format: None } })
}

/// The format `qemu-img info` sees.
pub fn detect_format(qemu_img: &Path, path: &Path) -> Result<DiskFormat, DiskError> {
    let out = qemu_img_run(qemu_img, &["info", "--output=json", "-U"], &[path])?;
    let info: serde_json::Value = serde_json::from_slice(&out).map_err(|e| DiskError::QemuImg {
        args: format!("info {}", path.display()),
        detail: e.to_string(),
    })?;
    match info["format"].as_str() {
        Some("raw") => Ok(DiskFormat::Raw),
        Some("qcow2") => Ok(DiskFormat::Qcow2),
        other => Err(DiskError::Format { path: path.into(), format: other.unwrap_or("unknown").into() }),
    }
}

/// Creates `overlay` backed by `base` (by absolute path, as qemu-img requires).
pub fn create_overlay(
    qemu_img: &Path,
    base: &Path,
    format: DiskFormat,
    overlay: &Path,
) -> Result<(), DiskError> {
    let base = std::path::absolute(base).map_err(|source| DiskError::Read { path: base.into(), source })?;
    qemu_img_run(qemu_img, &["create", "-q", "-f", "qcow2", "-F", format.as_str(), "-b"], &[&base, overlay])?;
    Ok(())
}

/// Creates an empty qcow2 disk of `bytes` (an installer's target).
pub fn create_blank(qemu_img: &Path, path: &Path, bytes: u64) -> Result<(), DiskError> {
    let size = bytes.to_string();
    qemu_img_run(qemu_img, &["create", "-q", "-f", "qcow2"], &[path, Path::new(&size)])?;
    Ok(())
}

fn qemu_img_run(qemu_img: &Path, args: &[&str], paths: &[&Path]) -> Result<Vec<u8>, DiskError> {
    let shown = || {
        let mut s = args.join(" ");
        for p in paths {
            s.push(' ');
            s.push_str(&p.display().to_string());
        }
        s
    };
    let out = Command::new(qemu_img)
        .args(args)
        .args(paths)
        .output()
        .map_err(|e| DiskError::QemuImg { args: shown(), detail: e.to_string() })?;
    if !out.status.success() {
        let detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(DiskError::QemuImg { args: shown(), detail });
    }
    Ok(out.stdout)
}
