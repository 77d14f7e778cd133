//! Putting a new pg_hba.conf in place without ever tearing it: the old
//! text is backed up, the new one written atomically (keeping mode and
//! owner), Postgres's own parse of the file on disk is checked, and on any
//! error the old text goes back before anything is reloaded.

use std::path::{Path, PathBuf};

use tokio_postgres::Client;

use crate::fsutil::write_atomic;
use crate::pg::{admin, ProbeError};

/// Why the new pg_hba.conf was not put in place. In every case the file
/// holds the old text (or, for `Restore`, the backup does).
#[derive(Debug, thiserror::Error)]
pub enum HbaApplyError {
    /// The backup could not be written; nothing was changed.
    #[error("cannot write the backup {path}: {source}")]
    Backup {
        /// The backup file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The new file could not be written; the old one is untouched.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The pg_hba.conf.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Postgres found errors in the new file; the old text was restored.
    #[error("Postgres rejects the new pg_hba.conf ({}); the old one was restored and nothing reloaded", .0.join("; "))]
    Rejected(Vec<String>),
    /// Postgres could not be asked to check or reload.
    #[error("cannot check or reload pg_hba.conf: {0}")]
    Postgres(#[source] ProbeError),
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
}

/// The backup's path: beside the file, so it is on the same filesystem
/// and in the directory the reconciler may write.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".pgsql-state-backup");
    path.with_file_name(name)
}

/// Replaces `path` (holding `old`) with `new`, checks it with Postgres,
/// and reloads; restores `old` if Postgres rejects it. The caller holds
/// the run lock (and has removed temp files a killed run left).
pub async fn apply(
    client: &Client,
    path: &Path,
    old: &str,
    new: &str,
) -> Result<(), HbaApplyError> {
    let backup = backup_path(path);
    write_atomic(&backup, old.as_bytes(), 0o600).map_err(|source| HbaApplyError::Backup {
        path: backup.clone(),
        source,
    })?;
    write_atomic(path, new.as_bytes(), 0o640).map_err(|source| HbaApplyError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    let errors = admin::hba_errors(client).await;
    let errors = match errors {
        Ok(errors) => errors,
        Err(e) => {
            restore(path, &backup, old)?;
            return Err(HbaApplyError::Postgres(e));
        }
    };
    if !errors.is_empty() {
        restore(path, &backup, old)?;
        return Err(HbaApplyError::Rejected(errors));
    }
    admin::reload(client).await.map_err(HbaApplyError::Postgres)
}

fn restore(path: &Path, backup: &Path, old: &str) -> Result<(), HbaApplyError> {
    write_atomic(path, old.as_bytes(), 0o640).map_err(|source| HbaApplyError::Restore {
        path: path.to_path_buf(),
        backup: backup.to_path_buf(),
        source,
    })
}
