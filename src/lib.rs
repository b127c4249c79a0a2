//! bootproof boots built OS images and installer ISOs in QEMU and proves, as ordinary
//! `cargo test` tests, that they work.
//!
//! The path of one run: a [`profile::Profile`] (machine, firmware, TPM, disks, shares)
//! and an image become a plan; [`vm`] launches QEMU (and swtpm) under supervision, with
//! the serial [`console`] and [`qmp`] wired to sockets in the run directory; everything
//! the guest shows is written to that directory as it happens; [`logs`] turns the
//! captured logs into findings.

pub mod agent;
pub mod cache;
pub mod checks;
pub mod console;
pub mod host;
pub mod images;
pub mod inspect;
pub mod logs;
pub mod profile;
pub mod qmp;
pub mod report;
pub mod scenario;
pub mod vm;
