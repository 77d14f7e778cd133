//! The sandbox, tried for real: each test confines a thread of its own
//! (Landlock confines the calling thread and what it starts later, so the
//! test harness's other threads stay free) and tries what it must refuse.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::{confine_to_reading, Confinement};

/// A fresh directory holding one file, made before confinement.
fn scratch(name: &str) -> (PathBuf, PathBuf) {
    let dir =
        std::env::temp_dir().join(format!("pgsql-state-sandbox-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("make the scratch directory");
    let file = dir.join("verdict");
    std::fs::write(&file, "production\n").expect("write the scratch file");
    (dir, file)
}

/// The kernel's Landlock ABI version, or 0 without Landlock.
fn kernel_abi() -> i64 {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
    // only returns a number; it reads and writes no memory.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32,
        )
    };
    abi.max(0)
}

fn denied(result: std::io::Result<impl Sized>, what: &str) {
    match result {
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {}
        Err(e) => panic!("{what}: failed, but not by the sandbox: {e}"),
        Ok(_) => panic!("{what}: the sandbox let it through"),
    }
}

fn writes_are_refused(dir: &Path, file: &Path) {
    denied(std::fs::write(file, "fenced\n"), "overwrite a file");
    denied(
        std::fs::OpenOptions::new().append(true).open(file),
        "open a file for appending",
    );
    denied(std::fs::write(dir.join("new"), "x"), "create a file");
    denied(std::fs::remove_file(file), "remove a file");
    denied(std::fs::create_dir(dir.join("sub")), "make a directory");
    denied(std::fs::rename(file, dir.join("moved")), "rename a file");
    denied(
        std::process::Command::new("/bin/true").status(),
        "execute a program",
    );
}

#[test]
fn a_confined_thread_reads_but_cannot_write_exec_or_signal() {
    let (dir, file) = scratch("confined");
    let mut outsider = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("start sleep");
    let outsider_pid = outsider.id() as i32;
    let (d, f) = (dir.clone(), file.clone());
    let confinement = std::thread::spawn(move || {
        let confinement = confine_to_reading().expect("confine");
        assert_eq!(
            std::fs::read_to_string(&f).expect("read the file"),
            "production\n"
        );
        assert!(std::fs::read_dir(&d).expect("list the directory").count() == 1);
        assert!(
            std::fs::read_to_string("/etc/hostname").is_ok() || Path::new("/etc/passwd").exists()
        );
        writes_are_refused(&d, &f);
        // A thread started after confinement is confined too.
        let (d2, f2) = (d.clone(), f.clone());
        std::thread::spawn(move || writes_are_refused(&d2, &f2))
            .join()
            .expect("the later thread's checks");
        // SAFETY: kill(pid, 0) sends no signal; it only checks permission.
        let signal = unsafe { libc::kill(outsider_pid, 0) };
        (confinement, signal, std::io::Error::last_os_error())
    })
    .join();
    let _ = outsider.kill();
    let _ = outsider.wait();
    // The test's own thread was never confined: it can clean up.
    let unconfined_write = std::fs::write(dir.join("after"), "x");
    let _ = std::fs::remove_dir_all(&dir);
    let (confinement, signal, signal_error) = confinement.expect("the confined thread's checks");
    unconfined_write.expect("the unconfined thread still writes");
    let abi = kernel_abi();
    assert!(
        abi >= 1,
        "this machine's kernel has no Landlock; the sandbox cannot be tried"
    );
    if abi >= 6 {
        assert_eq!(confinement, Confinement::Full);
        assert_eq!(
            signal, -1,
            "signalling a process outside the sandbox was allowed"
        );
        assert_eq!(signal_error.raw_os_error(), Some(libc::EPERM));
    } else {
        assert_eq!(confinement, Confinement::Partial, "kernel ABI {abi}");
    }
}

#[test]
fn every_confinement_has_words_for_the_log() {
    for c in [Confinement::Full, Confinement::Partial, Confinement::None] {
        assert!(c.describe().contains("Landlock"), "{c:?}");
    }
}
