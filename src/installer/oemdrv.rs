//! The OEMDRV disk: how a kickstart reaches anaconda without editing the ISO's boot
//! menu. With no `inst.ks=` on its command line, anaconda's initramfs looks for a
//! volume labelled `OEMDRV` and loads `/ks.cfg` from it by itself (dracut's
//! `kickstart-genrules.sh`), and leaves that disk out of the installation.
//!
//! Owns: making such a disk (a small FAT image, `mkfs.vfat -n OEMDRV` and `mcopy`, the
//! tools the reference images are built with) and reading one back. Must not: decide
//! what the kickstart says; the scenario's file, with its secrets filled in, is copied
//! as it is. The image holds those secrets: the runner removes it when the run ends
//! and keeps a redacted copy of the kickstart instead.

use std::path::Path;
use std::process::Command;

use crate::host::setup::{self, Requirement};
use crate::images::tools::{MCOPY, MKFS_VFAT};

/// The volume label anaconda looks for.
pub const LABEL: &str = "OEMDRV";
/// Size of the image in KiB: room for a kickstart and its includes.
const SIZE_KIB: u32 = 1440;

#[derive(Debug, thiserror::Error)]
pub enum OemdrvError {
    #[error(transparent)]
    Setup(#[from] setup::SetupError),
    #[error("`{command}` failed: {detail}")]
    Tool { command: String, detail: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The tools a kickstart disk needs.
pub fn requirements() -> [Requirement; 2] {
    [MKFS_VFAT, MCOPY]
}

/// Writes a FAT image labelled `OEMDRV` holding `ks.cfg` = `kickstart` to `image`.
pub fn make(kickstart: &str, image: &Path) -> Result<(), OemdrvError> {
    setup::ensure(&requirements())?;
    let io = |source| OemdrvError::Io { path: image.to_path_buf(), source };
    let _ = std::fs::remove_file(image);
    run(Command::new("mkfs.vfat").args(["-n", LABEL, "-C"]).arg(image).arg(SIZE_KIB.to_string()))?;
    let dir = tempfile::tempdir().map_err(io)?;
    let ks = dir.path().join("ks.cfg");
    std::fs::write(&ks, kickstart).map_err(io)?;
    run(Command::new("mcopy").arg("-i").arg(image).arg(&ks).arg("::ks.cfg"))
}

/// The volume label and `ks.cfg` of an image made by [`make`] (mtools reads it back
/// without mounting anything).
pub fn read_back(image: &Path) -> Result<(String, String), OemdrvError> {
    setup::ensure(&requirements())?;
    let label = run_out(Command::new("mlabel").arg("-i").arg(image).args(["-s", "::"]))?;
    let label = label.trim().strip_prefix("Volume label is ").unwrap_or(label.trim()).trim().to_string();
    let ks = run_out(Command::new("mtype").arg("-i").arg(image).arg("::ks.cfg"))?;
    Ok((label, ks))
}

fn run(cmd: &mut Command) -> Result<(), OemdrvError> {
    run_out(cmd).map(drop)
}

fn run_out(cmd: &mut Command) -> Result<String, OemdrvError> {
    let command = format!("{cmd:?}").replace('"', "");
    let out =
        cmd.output().map_err(|e| OemdrvError::Tool { command: command.clone(), detail: e.to_string() })?;
    if !out.status.success() {
        let detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(OemdrvError::Tool { command, detail });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
