//! Installer runs: what an installer ISO needs from bootproof beyond a VM. The
//! kickstart disk anaconda reads by itself ([`oemdrv`]), and what an unattended
//! install of Debian's own installer (d-i), the reference installer, needs around
//! it: the local Debian mirror it installs from (built and cached by
//! [`crate::images::mirror`]), bootproof's HTTP server that shows the mirror and the
//! run's preseed to the guest ([`serve`]), and the preseed itself, rendered per run
//! from a template without secrets ([`preseed`]). The ISO is the reference image
//! `reference:installer` ([`crate::images::installer_iso`]); docs/installer.md.
//!
//! How the Debian pieces meet in a run:
//!
//! ```no_run
//! use bootproof::installer::{self, preseed, serve};
//! # fn example(run_dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
//! let mirror = bootproof::images::mirror::ensure()?;          // cached by recipe hash
//! assert!(mirror.complete(), "the archive did not serve {:?}", mirror.missing);
//! let iso = bootproof::images::ensure("reference:installer")?; // the ISO
//! let secrets = preseed::Secrets { luks_passphrase: "…".into(), admin_password: "…".into() };
//! let files = run_dir.join("d-i");
//! std::fs::create_dir_all(&files)?;
//! std::fs::write(files.join(preseed::FILE_NAME), preseed::render(&secrets, &preseed::Extras::default())?)?;
//! let server = serve::Server::start(installer::roots(&mirror, &files), &run_dir.join("http.log"))?;
//! // The plan's network forwards the guest's 10.0.2.100:80 to the server (see vm::argv).
//! let forward = bootproof::vm::plan::Forward { port: 80, host_port: server.port() };
//! # let _ = (iso, forward); Ok(()) }
//! ```
//!
//! Must not: run VMs or judge logs (the runner and `logs` do), or let a guest reach
//! anything but the server (`restrict=on` and one `guestfwd`, `vm::argv`).

pub mod capture;
pub mod oemdrv;
pub mod preseed;
pub mod serve;

use std::path::Path;

use crate::images::mirror::Mirror;

/// The server's roots for a run: the mirror at `/debian`, the run's files (the
/// rendered preseed) at `/d-i`.
pub fn roots(mirror: &Mirror, run_files: &Path) -> Vec<serve::Root> {
    vec![serve::Root::new("debian", &mirror.root), serve::Root::new("d-i", run_files)]
}
