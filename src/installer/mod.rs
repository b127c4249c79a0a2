//! Installer runs: what an installer ISO needs from bootproof beyond a VM. The
//! kickstart disk anaconda reads by itself ([`oemdrv`]), and the local package mirror,
//! preseed and server of the Debian reference installer.
//!
//! Must not: run VMs or judge logs (the runner and `logs` do).

pub mod oemdrv;
