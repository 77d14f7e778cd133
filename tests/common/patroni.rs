//! Patroni, for the benchmarks that measure beside it: a venv with the
//! release measured, from PyPI, made once under target/.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::cluster::run;

/// The Patroni release measured (the anchors' figures are 4.1.5's).
pub const PATRONI: &str = "patroni[raft]==4.1.5";

/// A venv with Patroni, made once under target/ (readable by postgres).
pub fn patroni_venv() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("patroni-venv");
    if !venv.join("bin/patroni").exists() {
        run(Command::new("/usr/bin/python3")
            .args(["-m", "venv"])
            .arg(&venv));
        run(Command::new(venv.join("bin/pip")).args(["install", "-q", PATRONI, "psycopg2-binary"]));
    }
    for dir in [Path::new(env!("CARGO_TARGET_TMPDIR")), &venv] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    venv
}
