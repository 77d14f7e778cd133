//! The small files in `runtimeDir` that steer the responder: the
//! reconciler's verdict and the operator's maintenance flag. Reading them
//! takes microseconds; what they mean is [`crate::fencing::verdict`]'s business.

use std::io;
use std::path::{Path, PathBuf};

use crate::fencing::verdict::{Verdict, VerdictRead};
use crate::fsutil::write_atomic;

/// The verdict file's name inside `runtimeDir`.
pub const VERDICT_FILE: &str = "verdict";
/// The maintenance flag's name inside `runtimeDir`.
pub const MAINTENANCE_FILE: &str = "maintenance";

/// The verdict file's path in `runtime_dir`.
pub fn verdict_path(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join(VERDICT_FILE)
}

/// Reads the verdict in `runtime_dir`.
pub fn read_verdict(runtime_dir: &Path) -> VerdictRead {
    let path = verdict_path(runtime_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => match Verdict::parse(&text) {
            Ok(verdict) => VerdictRead::Present(verdict),
            Err(why) => VerdictRead::Unreadable(format!("{}: {why}", path.display())),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => VerdictRead::Missing,
        Err(e) => VerdictRead::Unreadable(format!("{}: {e}", path.display())),
    }
}

/// Whether an operator drained this node. A flag that cannot be checked
/// (other than absent) counts as set: draining is the safe side.
pub fn maintenance_on(runtime_dir: &Path) -> bool {
    let path = runtime_dir.join(MAINTENANCE_FILE);
    match std::fs::symlink_metadata(&path) {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => {
            log::warn!(
                "cannot tell whether {} exists ({e}); draining to be safe",
                path.display()
            );
            true
        }
    }
}

/// Turns the maintenance flag on (with a note of who and when) or off.
pub fn set_maintenance(runtime_dir: &Path, on: bool, note: &str) -> io::Result<()> {
    let path = runtime_dir.join(MAINTENANCE_FILE);
    if on {
        write_atomic(&path, note.as_bytes(), 0o644)
    } else {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}
