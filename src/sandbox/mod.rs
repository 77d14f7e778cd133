//! The responder's own sandbox, which the process applies to itself
//! before it reads a byte from the network: Landlock (here) and seccomp
//! filters ([`syscalls`]: sockets, namespaces, writable-executable memory).
//!
//! The responder answers strangers on 5431 and needs only to read its
//! config, the verdict and maintenance files, and to talk to Postgres. So
//! it drops, for itself and every thread it starts later:
//! - every file-system write (create, remove, write, truncate, rename,
//!   link, device ioctl), everywhere: `/run/pgsql-state` (the verdict),
//!   the data directory and `/tmp` included;
//! - executing any program;
//! - signalling processes outside itself (kernels with Landlock ABI 6 and
//!   later), so it cannot signal the postmaster it runs beside.
//!
//! Reading stays allowed everywhere. This replaces, for the per-connection
//! unit, systemd's `ProtectSystem=strict`, `ReadOnlyPaths=/run` and
//! `PrivateTmp=`, whose mount namespace systemd 252 builds at every start:
//! 35 ms a check against 10 ms without it (BENCHMARKS.md). Landlock costs a
//! few system calls. It is best effort: a
//! kernel without Landlock (before 5.13, or built without it) leaves the
//! unit's other hardening, and the responder says so in its log.
//!
//! The rules are pinned to ABI 6: later ABIs add rights (ABI 9 controls
//! connecting to Unix sockets) that would otherwise be denied by default
//! and cut the responder off from Postgres's socket.

pub mod syscalls;

pub use syscalls::{restrict_syscalls, SyscallFilterError};

use landlock::{
    Access, AccessFs, CompatLevel, Compatible, RestrictionStatus, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

/// The Landlock ABI whose rights the sandbox handles.
const PINNED_ABI: ABI = ABI::V6;

/// How much of the sandbox the kernel enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confinement {
    /// Every requested restriction holds.
    Full,
    /// An older Landlock: file-system writes and exec are denied, some
    /// newer rights (truncate, device ioctl, signal scoping) are not.
    Partial,
    /// The kernel has no Landlock; only the unit's hardening applies.
    None,
}

impl Confinement {
    /// The log line's words for it.
    pub fn describe(self) -> &'static str {
        match self {
            Confinement::Full => {
                "Landlock fully enforced: read-only file system, no exec, no signals outside"
            }
            Confinement::Partial => {
                "Landlock partly enforced (older kernel): no file-system writes, no exec"
            }
            Confinement::None => "Landlock is not available in this kernel: not confined",
        }
    }
}

/// Landlock refused the ruleset (not: the kernel lacks Landlock, which is
/// [`Confinement::None`]).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The kernel refused a step of building or applying the rules.
    #[error("cannot confine the responder with Landlock: {0}")]
    Ruleset(#[from] landlock::RulesetError),
    /// `/` could not be opened to allow reading beneath it.
    #[error("cannot confine the responder with Landlock: {0}")]
    Root(#[from] landlock::PathFdError),
}

/// Confines the calling thread, and every thread and child it starts
/// later, to reading. Call it before starting a runtime.
pub fn confine_to_reading() -> Result<Confinement, SandboxError> {
    let reads = AccessFs::ReadFile | AccessFs::ReadDir;
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(PINNED_ABI))?
        .scope(Scope::Signal)?
        .create()?
        .add_rule(landlock::PathBeneath::new(
            landlock::PathFd::new("/")?,
            reads,
        ))?
        .restrict_self()?;
    Ok(confinement(&status))
}

fn confinement(status: &RestrictionStatus) -> Confinement {
    match status.ruleset {
        RulesetStatus::FullyEnforced => Confinement::Full,
        RulesetStatus::PartiallyEnforced => Confinement::Partial,
        RulesetStatus::NotEnforced => Confinement::None,
    }
}

#[cfg(test)]
mod tests;
