//! Putting a new pg_hba.conf in place without ever tearing it, and making
//! sure Postgres has loaded what is on disk.
//!
//! - A new text: the old one is backed up, the new one written atomically
//!   (keeping mode and owner) and stamped, Postgres's own parse of the file
//!   on disk is checked, and on any error the old text goes back before
//!   anything is reloaded. Then Postgres reloads.
//! - The same text: Postgres may still not have loaded it. A run killed
//!   between its rename and its reload, a reload that failed, or an edit by
//!   hand leave a file newer than Postgres's last load
//!   (`pg_conf_load_time()`), and every later run renders the same text.
//!   [`loaded`] compares the two instants, and [`reload_stale`] reloads.
//! - Those instants are wall-clock times, and a clock stepped back between
//!   Postgres's last load and a killed run's write makes the unloaded file
//!   look loaded. So [`apply`] also leaves a mark (`pending`, in the
//!   runtime directory) before it writes, and takes it away only after
//!   Postgres reloaded: a mark left means a reload is owed, whatever the
//!   clocks say ([`needs_reload`]).
//!
//! Every query is bounded by the caller's `bound`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::Client;

use crate::fsutil::write_atomic;
use crate::pg::{admin, ProbeError};

/// Why pg_hba.conf is not in place and loaded. Each variant says which
/// file Postgres now has on disk and which rules it runs with.
#[derive(Debug, thiserror::Error)]
pub enum HbaApplyError {
    /// The backup could not be written; nothing was changed.
    #[error("cannot write the backup {path}: {source}; pg_hba.conf left as it was")]
    Backup {
        /// The backup file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The new file could not be written; the old one is untouched.
    #[error("cannot write {path}: {source}; it was left as it was")]
    Write {
        /// The pg_hba.conf.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file changed between this run's read and its write (an edit
    /// by hand, or another tool's): the edit is kept, nothing is written,
    /// and the next run renders the block into the new text.
    #[error("the file changed while this run rendered it (an edit by hand, or another tool's): the edit was kept, nothing was written, and the next run renders the block into it")]
    Changed {
        /// The pg_hba.conf.
        path: PathBuf,
    },
    /// The file could not be read back before the write.
    #[error("cannot read {path} again before writing it: {source}; it was left as it was")]
    Read {
        /// The pg_hba.conf.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Postgres found errors in the new file; the old text was restored.
    #[error("Postgres rejects the new pg_hba.conf ({}); the old one was restored and nothing reloaded", .0.join("; "))]
    Rejected(Vec<String>),
    /// Postgres could not check the new file; the old text was restored.
    #[error("cannot ask Postgres to check the new pg_hba.conf ({0}); the old one was restored and nothing reloaded")]
    Check(#[source] ProbeError),
    /// The new file was rejected and the old text could not be put back.
    #[error("Postgres rejects the new pg_hba.conf, and restoring {path} failed ({source}); the old text is in {backup}")]
    Restore {
        /// The pg_hba.conf.
        path: PathBuf,
        /// The backup holding the old text.
        backup: PathBuf,
        /// Why the restore failed.
        source: std::io::Error,
    },
    /// The file on disk is right, but Postgres did not confirm the reload:
    /// it may still run the older rules. The next run reloads again.
    #[error("the new pg_hba.conf is in place, but Postgres did not confirm the reload ({0}); the next run reloads it")]
    Reload(#[source] ProbeError),
    /// The file on disk is newer than Postgres's last load and has errors,
    /// so it cannot be loaded: Postgres runs older rules.
    #[error("pg_hba.conf on disk is newer than what Postgres loaded, and Postgres rejects it ({}); it was not reloaded, so Postgres keeps its older rules: fix the file", .0.join("; "))]
    StaleRejected(Vec<String>),
    /// Postgres could not say when it last loaded its configuration.
    #[error("cannot tell whether Postgres loaded pg_hba.conf: {0}")]
    LoadTime(#[source] ProbeError),
    /// The file could not be examined.
    #[error("cannot stat {path}: {source}")]
    Stat {
        /// The pg_hba.conf.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The backup's path: beside the file, so it is on the same filesystem
/// and in the directory the reconciler may write.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".pgsql-state-backup");
    path.with_file_name(name)
}

/// Runs one query under `bound`; a late answer is a timeout.
async fn bounded<T>(
    bound: Duration,
    query: impl std::future::Future<Output = Result<T, ProbeError>>,
) -> Result<T, ProbeError> {
    tokio::time::timeout(bound, query)
        .await
        .unwrap_or(Err(ProbeError::Timeout(bound)))
}

/// Replaces `path` (holding `old`) with `new`, checks it with Postgres,
/// and reloads; restores `old` if Postgres rejects it. The caller holds
/// the run lock (and has removed temp files a killed run left). Each query
/// is bounded by `bound`.
pub async fn apply(
    client: &Client,
    path: &Path,
    pending: &Path,
    old: &str,
    new: &str,
    bound: Duration,
) -> Result<(), HbaApplyError> {
    let backup = backup_path(path);
    // A file read while an editor had it truncated is caught here, before
    // the backup takes that text for the last good one.
    unchanged(path, old)?;
    // The mark first: a run killed from here on leaves it, and the next
    // run reloads whatever the clocks say.
    let owed_before = pending.exists();
    write_atomic(pending, path.as_os_str().as_encoded_bytes(), 0o600).map_err(|source| {
        HbaApplyError::Write {
            path: pending.to_path_buf(),
            source,
        }
    })?;
    write_atomic(&backup, old.as_bytes(), 0o600).map_err(|source| HbaApplyError::Backup {
        path: backup.clone(),
        source,
    })?;
    // Checked again once the new text is on disk, just before the rename:
    // the window left for an edit to be lost is that read to the rename.
    let mut checked = None;
    let written = crate::fsutil::write_atomic_then(path, new.as_bytes(), 0o640, || {
        let check = unchanged(path, old);
        let failed = check.is_err();
        checked = Some(check);
        if failed {
            return Err(std::io::Error::other("changed"));
        }
        Ok(())
    });
    if let Some(Err(e)) = checked {
        if !owed_before {
            clear_pending(pending);
        }
        return Err(e);
    }
    written.map_err(|source| HbaApplyError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    stamp(path);
    let errors = match bounded(bound, admin::hba_errors(client)).await {
        Ok(errors) => errors,
        Err(e) => {
            restore(path, &backup, old, new)?;
            return Err(HbaApplyError::Check(e));
        }
    };
    if !errors.is_empty() {
        restore(path, &backup, old, new)?;
        return Err(HbaApplyError::Rejected(errors));
    }
    bounded(bound, admin::reload(client))
        .await
        .map_err(HbaApplyError::Reload)?;
    clear_pending(pending);
    Ok(())
}

/// Whether `path` still holds `old`, the text the new one was rendered
/// from. An editor that truncates and rewrites in place (as most do) may
/// have been caught half-way by the run's read, and renaming over its file
/// would throw its edit away. A file gone (an editor that renames the
/// original away before writing the new one) has changed too.
fn unchanged(path: &Path, old: &str) -> Result<(), HbaApplyError> {
    match std::fs::read_to_string(path) {
        Ok(now) if now == old => Ok(()),
        Ok(_) => Err(HbaApplyError::Changed {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(HbaApplyError::Changed {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(HbaApplyError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Takes the reload-owed mark away, after a reload.
pub fn clear_pending(pending: &Path) {
    match std::fs::remove_file(pending) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("cannot remove {}: {e}", pending.display()),
    }
}

/// Whether Postgres must reload pg_hba.conf: a run left the mark that a
/// reload is owed, or the file changed after Postgres's last load began.
/// Pure.
pub fn needs_reload(pending: bool, changed_at_us: i64, load_time_us: i64) -> bool {
    pending || !is_loaded(changed_at_us, load_time_us)
}

/// Sets the file's modification time to now, read after the rename: a
/// load that Postgres starts later than this instant reads the new text.
/// (The rename itself also moves the change time, but with the kernel's
/// coarse clock.) A file this user may not stamp keeps the rename's time.
fn stamp(path: &Path) {
    let stamped = std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now()));
    if let Err(e) = stamped {
        log::debug!("cannot set {}'s modification time: {e}", path.display());
    }
}

/// When the file last changed, in µs since the Unix epoch: the later of
/// its modification time (which an editor or `cp -p` may set) and its
/// change time (which nobody can set back).
fn changed_at_us(path: &Path) -> Result<i64, HbaApplyError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|source| HbaApplyError::Stat {
        path: path.to_path_buf(),
        source,
    })?;
    let us = |secs: i64, nanos: i64| secs.saturating_mul(1_000_000) + nanos / 1_000;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(i64::MIN, |d| d.as_micros() as i64);
    Ok(modified.max(us(meta.ctime(), meta.ctime_nsec())))
}

/// Whether Postgres has loaded pg_hba.conf as it is on disk: its last load
/// began after the file last changed. Pure, over the two instants (µs).
pub fn is_loaded(changed_at_us: i64, load_time_us: i64) -> bool {
    load_time_us > changed_at_us
}

/// Whether Postgres has loaded `path` as it is on disk now: no reload is
/// owed (`pending` is absent) and its last load began after the file
/// last changed.
pub async fn loaded(
    client: &Client,
    path: &Path,
    pending: &Path,
    bound: Duration,
) -> Result<bool, HbaApplyError> {
    let load_time = bounded(bound, admin::conf_load_time_us(client))
        .await
        .map_err(HbaApplyError::LoadTime)?;
    Ok(!needs_reload(
        pending.exists(),
        changed_at_us(path)?,
        load_time,
    ))
}

/// Reloads a pg_hba.conf that is on disk but not loaded, once Postgres's
/// own parse of it shows no error. A file with errors is left alone (it
/// may be someone's edit in progress) and reported.
pub async fn reload_stale(client: &Client, bound: Duration) -> Result<(), HbaApplyError> {
    let errors = bounded(bound, admin::hba_errors(client))
        .await
        .map_err(HbaApplyError::LoadTime)?;
    if !errors.is_empty() {
        return Err(HbaApplyError::StaleRejected(errors));
    }
    bounded(bound, admin::reload(client))
        .await
        .map_err(HbaApplyError::Reload)
}

/// Puts `old` back over the rejected `new`, unless the file was edited
/// meanwhile (an operator fixing the line Postgres rejected): that edit is
/// kept.
fn restore(path: &Path, backup: &Path, old: &str, new: &str) -> Result<(), HbaApplyError> {
    unchanged(path, new)?;
    write_atomic(path, old.as_bytes(), 0o640).map_err(|source| HbaApplyError::Restore {
        path: path.to_path_buf(),
        backup: backup.to_path_buf(),
        source,
    })?;
    stamp(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_made_after_the_read_is_never_renamed_over() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("pg_hba.conf");
        std::fs::write(&path, "local all all peer\n").expect("write");
        assert!(unchanged(&path, "local all all peer\n").is_ok());
        // Read while an editor had truncated it, then written in full.
        assert!(matches!(
            unchanged(&path, ""),
            Err(HbaApplyError::Changed { .. })
        ));
        std::fs::remove_file(&path).expect("remove");
        assert!(matches!(
            unchanged(&path, "local all all peer\n"),
            Err(HbaApplyError::Changed { .. })
        ));
    }

    #[test]
    fn a_file_changed_after_the_last_load_is_not_loaded() {
        // (changed at, load began at, loaded)
        let cases = [
            (1_000, 2_000, true),
            (2_000, 2_000, false),
            (2_001, 2_000, false),
            (i64::MIN, 0, true),
        ];
        for (changed, load, want) in cases {
            assert_eq!(is_loaded(changed, load), want, "{changed} {load}");
        }
    }

    /// A clock stepped back after Postgres's last load: a killed run's
    /// write then looks older than the load (changed 1_000 by the stepped
    /// clock, loaded at 2_000 by the clock before the step). Only the mark
    /// the run left tells that a reload is owed.
    #[test]
    fn a_reload_owed_is_told_by_the_mark_not_by_the_clocks() {
        // (mark left, changed at, load began at, needs a reload)
        let cases = [
            (false, 1_000, 2_000, false),
            (true, 1_000, 2_000, true),
            (false, 2_001, 2_000, true),
            (true, 2_001, 2_000, true),
        ];
        for (pending, changed, load, want) in cases {
            assert_eq!(
                needs_reload(pending, changed, load),
                want,
                "{pending} {changed} {load}"
            );
        }
    }

    #[test]
    fn stamping_moves_the_change_instant_to_after_the_write() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("pg_hba.conf");
        std::fs::write(&path, "x\n").expect("write");
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(old))
            .expect("set an old mtime");
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after the epoch")
            .as_micros() as i64;
        stamp(&path);
        let changed = changed_at_us(&path).expect("stat");
        assert!(changed >= before, "{changed} < {before}");
    }
}
