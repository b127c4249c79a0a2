//! bootproof boots built OS images and installer ISOs in QEMU and proves, as ordinary
//! `cargo test` tests, that they work.
//!
//! The path of one run: a [`profile::Profile`] (machine, firmware, TPM, disks, shares)
//! and an image become a plan; [`vm`] launches QEMU (and swtpm) under supervision, with
//! the serial [`console`] and [`qmp`] wired to sockets in the run directory; everything
//! the guest shows is written to that directory as it happens; [`logs`] turns the
//! captured logs into findings; [`scenario`] runs steps and [`checks`] against a VM
//! and [`report`] says what happened.
//!
//! A test in Rust that boots the tiny reference guest with a TPM, waits for its report
//! on the serial console, asks the guest a question through the agent, and powers off:
//!
//! ```no_run
//! use std::time::Duration;
//! use bootproof::{profile, vm};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! bootproof::host::ensure_runtime()?; // installs QEMU, OVMF, swtpm when allowed
//! let mut profile = profile::resolve("uefi-tpm")?;
//! profile.agent = profile::AgentKind::Auto;
//! let layout = vm::rundir::RunLayout::create("artifacts/example/1".as_ref())?;
//! let image = vm::boot::resolve_image("reference:tiny")?; // built and cached on first use
//! let host = vm::boot::host_facts(&profile, &layout.share_dir())?; // KVM only if it really works
//! let plan = vm::plan::Plan::new(&profile, Some(&image), &host, &layout)?;
//! let mut machine = vm::Vm::launch(plan, vm::VmOptions::default()).await?;
//!
//! let report = regex::bytes::Regex::new(r"bootproof-tiny: efi=1 .* tpm=2")?;
//! machine.console().wait_for(&report, host.accel.scale(Duration::from_secs(60))).await?;
//! let agent = machine.agent(host.accel.scale(Duration::from_secs(60))).await?;
//! let out = agent.run("cat /sys/class/tpm/tpm0/tpm_version_major", Duration::from_secs(30)).await?;
//! assert_eq!(out.stdout, b"2\n");
//! machine.qmp().screendump("artifacts/example/1/screen.png".as_ref()).await?;
//! machine.shutdown(Duration::from_secs(30)).await; // power button, then quit, then kill
//! # Ok(()) }
//! ```

pub mod agent;
pub mod cache;
pub mod checks;
pub mod console;
pub mod doctor;
pub mod host;
pub mod images;
pub mod inspect;
pub mod installer;
pub mod logs;
pub mod pattern;
pub mod profile;
pub mod qmp;
pub mod redact;
pub mod report;
pub mod reporter;
pub mod scenario;
pub mod screen;
pub mod share;
pub mod vm;
