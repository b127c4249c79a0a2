//! How many VMs may run at once on this host, across every process.
//!
//! Test threads, nextest's one-process-per-test and several `bootproof run`s all draw
//! from one pool of slots: lock files in the cache directory, each held with `flock`
//! for as long as its VM runs (the kernel releases it if the process dies). The pool
//! size is `BOOTPROOF_MAX_VMS`, or what memory and cores allow, whatever the thread
//! count (two 2-GiB VMs on a small CI runner get OOM-killed, as bcvk learnt).

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

/// Memory a VM costs beyond its guest RAM (QEMU itself, TCG's code cache, swtpm).
const OVERHEAD_MIB: u64 = 384;

/// A held slot; dropping it frees the slot.
#[derive(Debug)]
pub struct VmSlot {
    _file: std::fs::File,
    pub index: usize,
}

/// The pool size for VMs of `guest_mib` each.
pub fn max_vms(guest_mib: u64) -> usize {
    if let Some(n) = std::env::var("BOOTPROOF_MAX_VMS").ok().and_then(|v| v.parse::<usize>().ok()) {
        return n.max(1);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let by_memory = (available_mib() * 7 / 10 / (guest_mib + OVERHEAD_MIB)) as usize;
    cores.min(by_memory).max(1)
}

fn available_mib() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(2048, |kib| kib / 1024)
}

fn slot_dir() -> PathBuf {
    crate::cache::cache_dir().join("vm-slots")
}

/// Waits for a free slot; `on_wait` is told once when the wait begins.
pub async fn acquire(guest_mib: u64, on_wait: impl FnOnce(usize)) -> std::io::Result<VmSlot> {
    let max = max_vms(guest_mib);
    let dir = slot_dir();
    std::fs::create_dir_all(&dir)?;
    let mut on_wait = Some(on_wait);
    loop {
        for index in 0..max {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(format!("slot-{index}.lock")))?;
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(VmSlot { _file: file, index });
            }
        }
        if let Some(f) = on_wait.take() {
            f(max);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pool_has_at_least_one_slot() {
        assert!(super::max_vms(1 << 30) >= 1);
        assert!(super::max_vms(512) >= 1);
    }
}
