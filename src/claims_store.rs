//! The claim record's file, `stateDir/claims`: read, raised and
//! (re)initialised under an flock, written atomically and fsynced before
//! anything reports it. Both the peer and the reconciler raise it.
//!
//! A missing record is never created implicitly: a voter whose record was
//! lost (a new disk, a wiped state directory) abstains, loudly, until an
//! operator runs `pgsql-state claims init` (counterexample C5).

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::claims::{Claim, ClaimParseError, ClaimRecord};
use crate::fsutil::write_atomic;

/// The record's file name inside `stateDir`.
pub const CLAIMS_FILE: &str = "claims";
/// The lock that serialises raising the record.
pub const LOCK_FILE: &str = "claims.lock";

/// Why a voter has no usable record, and so casts no vote.
#[derive(Debug, thiserror::Error)]
pub enum ClaimStoreError {
    /// No record: it was never initialised, or it was lost.
    #[error("no claim record at {0}: this node casts no vote until `pgsql-state claims init`")]
    Missing(PathBuf),
    /// The file cannot be parsed.
    #[error("claim record {path} is unreadable ({source}): this node casts no vote until `pgsql-state claims init`")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: ClaimParseError,
    },
    /// The file or its lock cannot be read or written.
    #[error("claim record {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// The record's path in `state_dir`.
pub fn claims_path(state_dir: &Path) -> PathBuf {
    state_dir.join(CLAIMS_FILE)
}

/// Holds the state directory's lock while alive (the flock goes with the
/// file).
struct Locked {
    _file: File,
}

fn lock(state_dir: &Path) -> Result<Locked, ClaimStoreError> {
    let path = state_dir.join(LOCK_FILE);
    let io_error = |source| ClaimStoreError::Io {
        path: path.clone(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error)?;
    rustix::fs::flock(file.as_fd(), rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io_error(e.into()))?;
    Ok(Locked { _file: file })
}

/// Reads the record.
pub fn load(state_dir: &Path) -> Result<ClaimRecord, ClaimStoreError> {
    let path = claims_path(state_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => ClaimRecord::parse(&text).map_err(|source| ClaimStoreError::Corrupt {
            path: path.clone(),
            source,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ClaimStoreError::Missing(path)),
        Err(source) => Err(ClaimStoreError::Io { path, source }),
    }
}

/// Raises the record with `claims`, writing it (fsynced) when it changed,
/// and returns it as it now stands. Call this before reporting the record.
pub fn raise(state_dir: &Path, claims: &[Claim]) -> Result<ClaimRecord, ClaimStoreError> {
    let _lock = lock(state_dir)?;
    // Under the lock nobody else writes the record: a killed writer's temp
    // file can go.
    crate::fsutil::remove_stale_temps(&claims_path(state_dir));
    let mut record = load(state_dir)?;
    let mut changed = false;
    for claim in claims {
        if record.raise(claim) {
            log::info!("claim record raised: {claim}");
            changed = true;
        }
    }
    if changed {
        let path = claims_path(state_dir);
        write_atomic(&path, record.render().as_bytes(), 0o640)
            .map_err(|source| ClaimStoreError::Io { path, source })?;
    }
    Ok(record)
}

/// (Re)creates an empty record, forgetting every claim and tie. For
/// installation, and for an operator who has cleared a tie or replaced a
/// voter's disk.
pub fn init(state_dir: &Path) -> Result<ClaimRecord, ClaimStoreError> {
    let _lock = lock(state_dir)?;
    let record = ClaimRecord::default();
    let path = claims_path(state_dir);
    write_atomic(&path, record.render().as_bytes(), 0o640)
        .map_err(|source| ClaimStoreError::Io { path, source })?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_until_init_then_raised_durably() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let claim = Claim {
            system_identifier: 9,
            timeline: 2,
            node: "node_2".into(),
        };
        assert!(matches!(load(dir.path()), Err(ClaimStoreError::Missing(_))));
        assert!(
            matches!(
                raise(dir.path(), std::slice::from_ref(&claim)),
                Err(ClaimStoreError::Missing(_))
            ),
            "a missing record is not created by a raise"
        );
        init(dir.path()).expect("init");
        let raised = raise(dir.path(), std::slice::from_ref(&claim)).expect("raise");
        assert_eq!(raised.claims(9), std::slice::from_ref(&claim));
        assert_eq!(load(dir.path()).expect("load"), raised);
        std::fs::write(claims_path(dir.path()), "garbage").expect("corrupt it");
        assert!(matches!(
            load(dir.path()),
            Err(ClaimStoreError::Corrupt { .. })
        ));
        init(dir.path()).expect("re-init");
        assert_eq!(load(dir.path()).expect("load"), ClaimRecord::default());
    }
}
