//! What this machine offers: the QEMU binary and its version, acceleration, OVMF
//! firmware, swtpm, the image-building tools, and host setup.
//!
//! Must not: start guests for anything but the acceleration probe.

pub mod setup;
