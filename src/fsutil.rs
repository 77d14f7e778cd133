//! Writing files so that a crash leaves the old file or the new one, never
//! a torn one, and the new one keeps the old one's mode and owner. This is
//! what the verdict, the maintenance flag and pg_hba.conf are written with.

use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Writes `path` atomically:
/// - a temp file with an unpredictable name is created exclusively
///   (`O_EXCL`) in the same directory, so nobody can plant it beforehand
///   and the rename stays on one filesystem;
/// - it gets the old file's mode (its permission bits only: never setuid,
///   setgid or sticky) and owner; a new file, or a symbolic link at
///   `path`, gets `new_mode` and this process's owner (a link's target is
///   never looked at, and the rename replaces the link itself);
/// - it is written and fsynced, renamed over `path`, and the directory is
///   fsynced, so the rename itself survives a crash.
///
/// On any error the temp file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8], new_mode: u32) -> io::Result<()> {
    write_atomic_then(path, bytes, new_mode, || Ok(()))
}

/// [`write_atomic`], with `before_rename` called once the new text is
/// written and synced, just before the rename: an error from it leaves
/// `path` untouched (and the temp file removed).
pub fn write_atomic_then(
    path: &Path,
    bytes: &[u8],
    new_mode: u32,
    before_rename: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)?;
    match std::fs::symlink_metadata(path) {
        Ok(old) if old.file_type().is_symlink() => {
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(new_mode))?;
        }
        Ok(old) => {
            if old.uid() != rustix::process::geteuid().as_raw()
                || old.gid() != rustix::process::getegid().as_raw()
            {
                std::os::unix::fs::fchown(tmp.as_file(), Some(old.uid()), Some(old.gid()))?;
            }
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(old.mode() & 0o777))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(new_mode))?;
        }
        Err(e) => return Err(e),
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    before_rename()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Removes the temp files a writer of `path` killed mid-write left behind
/// (`.NAME.*.tmp` in its directory). Only call it while holding the lock
/// that serialises the writers of `path`, or a live writer's temp file
/// could go.
pub fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let file = file.to_string_lossy();
        if file.starts_with(&prefix) && file.ends_with(".tmp") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => log::info!(
                    "removed {}, left by a writer that was killed",
                    entry.path().display()
                ),
                Err(e) => log::warn!("cannot remove {}: {e}", entry.path().display()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_check_before_the_rename_leaves_the_file_and_no_temp() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("pg_hba.conf");
        std::fs::write(&path, "an operator's edit\n").expect("write");
        let mut called = false;
        let got = write_atomic_then(&path, b"ours\n", 0o640, || {
            called = true;
            Err(io::Error::other("changed"))
        });
        assert!(got.is_err() && called);
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "an operator's edit\n"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("pg_hba.conf")]);
    }

    #[test]
    fn replaces_keeps_mode_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("pg_hba.conf");
        write_atomic(&path, b"first\n", 0o640).expect("create");
        assert_eq!(std::fs::read(&path).expect("read"), b"first\n");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").mode() & 0o7777;
        assert_eq!(mode(&path), 0o640, "a new file gets new_mode");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        write_atomic(&path, b"second\n", 0o644).expect("replace");
        assert_eq!(std::fs::read(&path).expect("read"), b"second\n");
        assert_eq!(mode(&path), 0o600, "a replaced file keeps its mode");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["pg_hba.conf"], "no temp file left behind");
    }

    /// Issue 25, item 5: a setuid bit on the old file is not copied, and
    /// a symbolic link at the path is replaced as a new file (new mode,
    /// this process's owner), its target never read or written.
    #[test]
    fn no_setuid_bit_is_copied_and_a_link_is_never_followed() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("f");
        std::fs::write(&path, "old").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o4755)).expect("chmod");
        write_atomic(&path, b"new", 0o600).expect("write");
        let mode = std::fs::metadata(&path).expect("stat").mode() & 0o7777;
        assert_eq!(mode, 0o755);
        let target = dir.path().join("target");
        std::fs::write(&target, "theirs").expect("write");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        write_atomic(&link, b"mine", 0o640).expect("write");
        let meta = std::fs::symlink_metadata(&link).expect("lstat");
        assert!(meta.file_type().is_file(), "the link was replaced");
        assert_eq!(meta.mode() & 0o7777, 0o640);
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "theirs");
    }

    #[test]
    fn stale_temps_of_one_file_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("pg_hba.conf");
        for name in [
            ".pg_hba.conf.abc123.tmp",
            ".pg_hba.conf.x.tmp",
            ".other.x.tmp",
            "pg_ident.conf",
        ] {
            std::fs::write(dir.path().join(name), "x").expect("write");
        }
        remove_stale_temps(&path);
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [".other.x.tmp", "pg_ident.conf"]);
    }

    /// Set in the child process of [`a_failed_write_leaves_the_old_file`].
    const CHILD: &str = "PGSQL_STATE_FSUTIL_CHILD_DIR";

    /// A write that fails after its temp file exists (the file-size limit
    /// is reached while writing it, which binds root too) leaves the old
    /// bytes and no temp file. It runs in a child process of this test
    /// binary, since the limit is the whole process's.
    #[test]
    fn a_failed_write_leaves_the_old_file() {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("verdict");
        write_atomic(&path, b"old\n", 0o644).expect("create");
        let mut child = std::process::Command::new(std::env::current_exe().expect("this binary"));
        child
            .args([
                "--exact",
                "fsutil::tests::a_write_over_the_size_limit_fails",
                "--test-threads=1",
            ])
            .env(CHILD, dir.path());
        // SAFETY: between fork and exec, only async-signal-safe calls
        // (setrlimit, signal) with plain values.
        unsafe {
            child.pre_exec(|| {
                // Writes past 4 bytes fail with EFBIG instead of killing the
                // process with SIGXFSZ.
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let limit = libc::rlimit {
                    rlim_cur: 4,
                    rlim_max: 4,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            })
        };
        let out = child.output().expect("run the child");
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{report}");
        assert!(
            report.contains("1 passed"),
            "the child ran nothing: {report}"
        );
        assert_eq!(std::fs::read(&path).expect("read"), b"old\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["verdict"], "a temp file was left behind");
    }

    /// The child's half of [`a_failed_write_leaves_the_old_file`]: under a
    /// 4-byte file-size limit, a 64-byte write fails mid-way.
    #[test]
    fn a_write_over_the_size_limit_fails() {
        let Some(dir) = std::env::var_os(CHILD) else {
            return; // only meaningful in the child
        };
        let path = Path::new(&dir).join("verdict");
        let error = write_atomic(&path, &[b'x'; 64], 0o644).expect_err("over the limit");
        assert_eq!(error.kind(), io::ErrorKind::FileTooLarge, "{error}");
    }
}
