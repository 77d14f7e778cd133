//! The system-call half of the responder's sandbox: seccomp filters the
//! process installs on itself, in place of the unit options systemd 252
//! compiles into a filter at every exec (about 0.3 ms a check each):
//! - `RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6`: `socket()` of any
//!   other family fails with EAFNOSUPPORT (netlink, packet, vsock, …);
//! - `RestrictNamespaces=yes`: `unshare()` and `clone()` with a
//!   `CLONE_NEW*` flag, and every `setns()`, fail with EPERM; `clone3()`
//!   fails with ENOSYS, as under systemd, so that the C library falls
//!   back to `clone()`, whose flags a filter can read;
//! - `MemoryDenyWriteExecute=yes`: memory that is writable and executable
//!   at once, or made executable later, is refused with EPERM (`mmap` with
//!   both, `mprotect`/`pkey_mprotect` adding exec, `shmat` with SHM_EXEC).
//!
//! The rules are systemd's, so the responder runs under them exactly as it
//! ran under the unit. seccompiler builds the filters in microseconds. A
//! filter binds the calling thread and every thread it starts later, and
//! no filter can be removed. `SystemCallArchitectures=native` stays in the
//! unit: a filter here matches this architecture's numbers, and the x32
//! numbers on x86_64 would pass it.

use std::collections::BTreeMap;

use seccompiler::{
    BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

/// The address families the responder may open sockets in.
const ALLOWED_FAMILIES: [libc::c_int; 3] = [libc::AF_UNIX, libc::AF_INET, libc::AF_INET6];

/// The `clone()` flags that make a namespace. `CLONE_NEWTIME` is left out
/// here: in `clone()`'s flags its bit belongs to the exit signal.
const CLONE_NAMESPACE_FLAGS: [libc::c_int; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];

/// `CLONE_NEWTIME`, which `unshare()` takes (linux/sched.h).
const CLONE_NEWTIME: libc::c_int = 0x80;

/// A filter could not be built or the kernel refused it.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the responder's system-call filter: {0}")]
pub struct SyscallFilterError(#[from] seccompiler::Error);

/// Installs the three filters on the calling thread (and what it starts
/// later). Call it before starting a runtime.
pub fn restrict_syscalls() -> Result<(), SyscallFilterError> {
    for program in programs()? {
        seccompiler::apply_filter(&program)?;
    }
    Ok(())
}

/// The filters, one per error number they answer with.
fn programs() -> Result<Vec<BpfProgram>, seccompiler::Error> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)?;
    let filter = |rules: BTreeMap<i64, Vec<SeccompRule>>, errno: libc::c_int| {
        BpfProgram::try_from(SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            arch,
        )?)
    };
    Ok(vec![
        filter(address_family_rules()?, libc::EAFNOSUPPORT)?,
        filter(namespace_and_memory_rules()?, libc::EPERM)?,
        // An empty rule list matches every call.
        filter(BTreeMap::from([(libc::SYS_clone3, vec![])]), libc::ENOSYS)?,
    ])
}

/// `socket(domain, …)` where `domain` is none of [`ALLOWED_FAMILIES`].
fn address_family_rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, BackendError> {
    let other_family = ALLOWED_FAMILIES
        .iter()
        .map(|family| {
            SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, *family as u64)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(BTreeMap::from([(
        libc::SYS_socket,
        vec![SeccompRule::new(other_family)?],
    )]))
}

/// Namespaces (`unshare`, `clone`, `setns`) and memory both writable and
/// executable (`mmap`, `mprotect`, `pkey_mprotect`, `shmat`).
fn namespace_and_memory_rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, BackendError> {
    let unshare_flags: Vec<libc::c_int> = CLONE_NAMESPACE_FLAGS
        .iter()
        .copied()
        .chain([CLONE_NEWTIME])
        .collect();
    let write_exec = (libc::PROT_WRITE | libc::PROT_EXEC) as u64;
    let exec = libc::PROT_EXEC as u64;
    Ok(BTreeMap::from([
        (
            libc::SYS_unshare,
            any_bit(0, SeccompCmpArgLen::Dword, &unshare_flags)?,
        ),
        (
            libc::SYS_clone,
            any_bit(0, SeccompCmpArgLen::Qword, &CLONE_NAMESPACE_FLAGS)?,
        ),
        (libc::SYS_setns, vec![]),
        (libc::SYS_mmap, vec![masked(2, write_exec)?]),
        (libc::SYS_mprotect, vec![masked(2, exec)?]),
        (libc::SYS_pkey_mprotect, vec![masked(2, exec)?]),
        (libc::SYS_shmat, vec![masked(2, libc::SHM_EXEC as u64)?]),
    ]))
}

/// One rule per flag: argument `arg` has that bit set.
fn any_bit(
    arg: u8,
    len: SeccompCmpArgLen,
    flags: &[libc::c_int],
) -> Result<Vec<SeccompRule>, BackendError> {
    flags
        .iter()
        .map(|flag| {
            let bit = *flag as u32 as u64;
            SeccompRule::new(vec![SeccompCondition::new(
                arg,
                len.clone(),
                SeccompCmpOp::MaskedEq(bit),
                bit,
            )?])
        })
        .collect()
}

/// Argument `arg` (an int) has every bit of `bits` set.
fn masked(arg: u8, bits: u64) -> Result<SeccompRule, BackendError> {
    SeccompRule::new(vec![SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::MaskedEq(bits),
        bits,
    )?])
}

#[cfg(test)]
mod tests;
