//! The filters, tried for real in a thread of their own (a filter binds
//! the thread that installs it and the threads it starts later, so the
//! test harness's other threads stay free). Each refusal is checked by its
//! error number, which only the filter gives: unfiltered, the same calls
//! succeed (as root) or fail otherwise.

use std::io::Error;

use super::restrict_syscalls;

/// The errno of the last failed call.
fn errno() -> i32 {
    Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `socket(family, SOCK_STREAM or SOCK_RAW, 0)`: Ok, or the errno.
fn socket(family: libc::c_int, kind: libc::c_int) -> Result<(), i32> {
    // SAFETY: socket() takes plain integers; the fd is closed at once.
    let fd = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: fd is a descriptor this function just opened.
    unsafe { libc::close(fd) };
    Ok(())
}

/// `mmap` of one anonymous page with `prot`: Ok(address), or the errno.
fn map(prot: libc::c_int) -> Result<*mut libc::c_void, i32> {
    // SAFETY: an anonymous private mapping; no existing memory is touched.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        Err(errno())
    } else {
        Ok(page)
    }
}

fn unmap(page: *mut libc::c_void) {
    // SAFETY: `page` is a one-page mapping from `map`.
    unsafe { libc::munmap(page, 4096) };
}

/// `clone(flags | SIGCHLD)` as a raw call. A child, should the filter let
/// one through, exits at once; the parent reaps it.
fn raw_clone(flags: libc::c_int) -> Result<(), i32> {
    // SAFETY: clone without CLONE_VM gives the child a copy of memory; it
    // only calls _exit, which is async-signal-safe.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match pid {
        0 => unsafe { libc::_exit(0) },
        p if p < 0 => Err(errno()),
        p => {
            let mut status = 0;
            // SAFETY: waits for the child this call made.
            unsafe { libc::waitpid(p as libc::pid_t, &mut status, 0) };
            Ok(())
        }
    }
}

/// What the filtered thread saw, in a form the test can compare.
fn probe() -> Vec<(&'static str, Result<(), i32>)> {
    let page = |r: Result<*mut libc::c_void, i32>| {
        r.map(|p| {
            unmap(p);
        })
    };
    // SAFETY (the three calls below): plain-integer system calls; the
    // clone3 call passes a null argument, which only an unfiltered kernel
    // reads (and refuses with EFAULT or EINVAL).
    let unshare = |flags| unsafe {
        if libc::unshare(flags) == 0 {
            Ok(())
        } else {
            Err(errno())
        }
    };
    let clone3 = unsafe {
        if libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) < 0 {
            Err(errno())
        } else {
            Ok(())
        }
    };
    let uts = std::fs::File::open("/proc/self/ns/uts").expect("open the uts namespace");
    let setns = unsafe {
        use std::os::fd::AsRawFd;
        if libc::setns(uts.as_raw_fd(), 0) == 0 {
            Ok(())
        } else {
            Err(errno())
        }
    };
    let rw = map(libc::PROT_READ | libc::PROT_WRITE).expect("a read-write page");
    // SAFETY: `rw` is a one-page mapping made above.
    let mprotect = unsafe {
        if libc::mprotect(rw, 4096, libc::PROT_READ | libc::PROT_EXEC) == 0 {
            Ok(())
        } else {
            Err(errno())
        }
    };
    unmap(rw);
    vec![
        ("socket AF_INET", socket(libc::AF_INET, libc::SOCK_STREAM)),
        ("socket AF_INET6", socket(libc::AF_INET6, libc::SOCK_STREAM)),
        ("socket AF_UNIX", socket(libc::AF_UNIX, libc::SOCK_STREAM)),
        (
            "socket AF_NETLINK",
            socket(libc::AF_NETLINK, libc::SOCK_RAW),
        ),
        ("socket AF_PACKET", socket(libc::AF_PACKET, libc::SOCK_RAW)),
        ("unshare nothing", unshare(0)),
        ("unshare CLONE_NEWUTS", unshare(libc::CLONE_NEWUTS)),
        ("unshare CLONE_NEWUSER", unshare(libc::CLONE_NEWUSER)),
        ("unshare CLONE_NEWNET", unshare(libc::CLONE_NEWNET)),
        ("clone CLONE_NEWUTS", raw_clone(libc::CLONE_NEWUTS)),
        ("clone3", clone3),
        ("setns", setns),
        (
            "mmap read-write",
            page(map(libc::PROT_READ | libc::PROT_WRITE)),
        ),
        (
            "mmap read-exec",
            page(map(libc::PROT_READ | libc::PROT_EXEC)),
        ),
        (
            "mmap write-exec",
            page(map(libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC)),
        ),
        ("mprotect adding exec", mprotect),
    ]
}

/// What the filters must give, call by call.
fn expected() -> Vec<(&'static str, Result<(), i32>)> {
    vec![
        ("socket AF_INET", Ok(())),
        ("socket AF_INET6", Ok(())),
        ("socket AF_UNIX", Ok(())),
        ("socket AF_NETLINK", Err(libc::EAFNOSUPPORT)),
        ("socket AF_PACKET", Err(libc::EAFNOSUPPORT)),
        ("unshare nothing", Ok(())),
        ("unshare CLONE_NEWUTS", Err(libc::EPERM)),
        ("unshare CLONE_NEWUSER", Err(libc::EPERM)),
        ("unshare CLONE_NEWNET", Err(libc::EPERM)),
        ("clone CLONE_NEWUTS", Err(libc::EPERM)),
        ("clone3", Err(libc::ENOSYS)),
        ("setns", Err(libc::EPERM)),
        ("mmap read-write", Ok(())),
        ("mmap read-exec", Ok(())),
        ("mmap write-exec", Err(libc::EPERM)),
        ("mprotect adding exec", Err(libc::EPERM)),
    ]
}

#[test]
fn a_filtered_thread_and_the_threads_it_starts_are_refused_what_systemd_refused() {
    let (filtered, later) = std::thread::spawn(|| {
        restrict_syscalls().expect("install the filters");
        let filtered = probe();
        // Threads still start (clone3 falls back to clone) and inherit it.
        let later = std::thread::spawn(probe).join().expect("a later thread");
        (filtered, later)
    })
    .join()
    .expect("the filtered thread");
    assert_eq!(filtered, expected());
    assert_eq!(later, expected());
}

#[test]
fn an_unfiltered_thread_is_not_refused() {
    let seen = std::thread::spawn(probe).join().expect("the thread");
    let get = |name: &str| {
        seen.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| *r)
            .expect("probed")
    };
    // Any other answer than the filter's: the filter made the difference.
    assert_eq!(get("socket AF_NETLINK"), Ok(()));
    assert_ne!(get("clone3"), Err(libc::ENOSYS));
    assert_eq!(get("mmap write-exec"), Ok(()));
    assert_eq!(get("mprotect adding exec"), Ok(()));
}
