//! The clock verdicts are judged by: CLOCK_BOOTTIME, with this boot's id.
//!
//! CLOCK_BOOTTIME keeps counting through suspend and VM pauses, which
//! CLOCK_MONOTONIC (Rust's `Instant`) does not, so a lease read after a
//! pause is never taken for younger than it is. A reading is only
//! comparable with one of the same boot, hence the boot id.

use std::io;

/// A point on the CLOCK_BOOTTIME clock of one boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Now {
    /// `/proc/sys/kernel/random/boot_id`; empty when unknown.
    pub boot_id: String,
    /// Milliseconds since boot, counting time spent suspended.
    pub boottime_ms: u64,
}

impl Now {
    /// A reading against which no verdict is fresh (no boot id matches).
    pub fn unknown() -> Now {
        Now {
            boot_id: String::new(),
            boottime_ms: 0,
        }
    }
}

/// Now, on this boot's CLOCK_BOOTTIME.
pub fn now() -> io::Result<Now> {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?;
    Ok(Now {
        boot_id: boot_id.trim().to_string(),
        boottime_ms: boottime_ms(),
    })
}

/// Milliseconds since boot on CLOCK_BOOTTIME, without the boot id: for
/// spans measured inside one process (a peer's confirmations).
pub fn boottime_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}
