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

use crate::fencing::claims::{Claim, ClaimParseError, ClaimRecord};
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

/// Opens a file in the state directory without following a symbolic link
/// or blocking on a FIFO that someone planted there (the directory belongs
/// to the service user, and root runs `claims init` and `doctor`), and
/// refuses anything but a regular file.
fn open_regular(path: &Path, options: &mut std::fs::OpenOptions) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = options
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a link, FIFO or device was put in its place)",
        ));
    }
    Ok(file)
}

fn lock(state_dir: &Path) -> Result<Locked, ClaimStoreError> {
    let path = state_dir.join(LOCK_FILE);
    let io_error = |source| ClaimStoreError::Io {
        path: path.clone(),
        source,
    };
    let file = open_regular(
        &path,
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true),
    )
    .map_err(io_error)?;
    flock_within(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(io_error)?;
    Ok(Locked { _file: file })
}

/// The longest a reader or writer waits for the record's lock. A holder
/// stopped mid-raise (a reconcile run SIGSTOPped, an operator's `claims
/// init` suspended at a terminal) must not hang every answer of the peer:
/// past this the caller gets an error, and the voter abstains for that
/// answer.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Takes `operation` (a non-blocking flock) on `file`, retrying for at
/// most [`LOCK_WAIT`].
fn flock_within(file: &File, operation: rustix::fs::FlockOperation) -> io::Result<()> {
    let started = std::time::Instant::now();
    loop {
        match rustix::fs::flock(file.as_fd(), operation) {
            Ok(()) => return Ok(()),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK && started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the claim record's lock is held by another process for more than {} s",
                        LOCK_WAIT.as_secs()
                    ),
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Takes the lock shared, for a reader: it waits while a writer holds it,
/// so a record renamed into place but not yet fsynced (the directory) is
/// never reported. `None` when there is no lock file yet, and so no
/// writer: the first `claims init` creates it.
fn lock_shared(state_dir: &Path) -> Result<Option<Locked>, ClaimStoreError> {
    let path = state_dir.join(LOCK_FILE);
    let io_error = |source| ClaimStoreError::Io {
        path: path.clone(),
        source,
    };
    // flock works on a file opened for reading, so a reader that may not
    // write the state directory (an operator's `claims show`) still waits.
    let file = match open_regular(&path, std::fs::OpenOptions::new().read(true)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(e)),
    };
    flock_within(&file, rustix::fs::FlockOperation::NonBlockingLockShared).map_err(io_error)?;
    Ok(Some(Locked { _file: file }))
}

/// Reads the record as it is durably: after any raise in progress has
/// written and synced it.
pub fn load(state_dir: &Path) -> Result<ClaimRecord, ClaimStoreError> {
    let _shared = lock_shared(state_dir)?;
    load_locked(state_dir)
}

/// Reads the record and calls `then` with it while still holding the lock
/// shared: no raise can come between the read and what `then` does (a
/// voter confirms a claimant from exactly the record its answer returns).
pub fn read_then<R>(
    state_dir: &Path,
    then: impl FnOnce(&ClaimRecord) -> R,
) -> Result<(ClaimRecord, R), ClaimStoreError> {
    let _shared = lock_shared(state_dir)?;
    let record = load_locked(state_dir)?;
    let done = then(&record);
    Ok((record, done))
}

/// Reads the record; the caller holds the lock.
fn load_locked(state_dir: &Path) -> Result<ClaimRecord, ClaimStoreError> {
    let path = claims_path(state_dir);
    let read = open_regular(&path, std::fs::OpenOptions::new().read(true)).and_then(|mut f| {
        let mut text = String::new();
        io::Read::read_to_string(&mut f, &mut text).map(|_| text)
    });
    match read {
        Ok(text) => ClaimRecord::parse(&text).map_err(|source| ClaimStoreError::Corrupt {
            path: path.clone(),
            source,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ClaimStoreError::Missing(path)),
        Err(source) => Err(ClaimStoreError::Io { path, source }),
    }
}

/// Removes the temp files of the record that a writer killed mid-write
/// left behind, under the record's lock (a raise that changes nothing no
/// longer takes it, so the reconciler calls this once a run).
pub fn remove_stale_temps(state_dir: &Path) -> Result<(), ClaimStoreError> {
    let _lock = lock(state_dir)?;
    crate::fsutil::remove_stale_temps(&claims_path(state_dir));
    Ok(())
}

/// Raises the record with `claims`, writing it (fsynced) when it changed,
/// and returns it as it now stands. Call this before reporting the record.
pub fn raise(state_dir: &Path, claims: &[Claim]) -> Result<ClaimRecord, ClaimStoreError> {
    // Most raises change nothing (the peer raises with its own claim
    // before every answer, a stranger's ask included): those read under
    // the shared lock and never queue for the exclusive one, so a flood of
    // asks cannot hold up the reconciler's raise.
    let current = load(state_dir)?;
    let mut trial = current.clone();
    let valid = |c: &&Claim| crate::fencing::claims::check_node_name(&c.node).is_ok();
    // (Whether any claim would raise it: the trial copy is thrown away.)
    if !claims.iter().filter(valid).any(|c| trial.raise(c)) {
        return Ok(current);
    }
    let _lock = lock(state_dir)?;
    // Under the lock nobody else writes the record: a killed writer's temp
    // file can go.
    crate::fsutil::remove_stale_temps(&claims_path(state_dir));
    let mut record = load_locked(state_dir)?;
    let mut changed = false;
    for claim in claims {
        if let Err(why) = crate::fencing::claims::check_node_name(&claim.node) {
            log::warn!(
                "a claim for the node {:?} is not recorded: {why}",
                crate::fencing::claims::clip_name(&claim.node)
            );
            continue;
        }
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

/// (Re)creates an empty record, forgetting every claim and tie. With
/// `new_cluster` it votes at once: for the voters of a cluster being set
/// up, which nobody has voted in yet. Otherwise (a replaced disk, a voter
/// re-initialised) it is catching up: it casts no vote until it has risen
/// to what a majority of the other voters hold ([`catch_up`]).
pub fn init(state_dir: &Path, new_cluster: bool) -> Result<ClaimRecord, ClaimStoreError> {
    let _lock = lock(state_dir)?;
    let record = ClaimRecord {
        catching_up: !new_cluster,
        ..ClaimRecord::default()
    };
    let path = claims_path(state_dir);
    write_atomic(&path, record.render().as_bytes(), 0o640)
        .map_err(|source| ClaimStoreError::Io { path, source })?;
    Ok(record)
}

/// Ends a record's catching up when `read`, the records of distinct other
/// voters (each the claims it holds), are more than half of the `others`
/// configured: rises to every claim they hold and votes again. Returns
/// whether it did (false too when the record was not catching up).
pub fn catch_up(
    state_dir: &Path,
    others: usize,
    read: &[Vec<Claim>],
) -> Result<bool, ClaimStoreError> {
    let _lock = lock(state_dir)?;
    crate::fsutil::remove_stale_temps(&claims_path(state_dir));
    let mut record = load_locked(state_dir)?;
    if !record.catching_up {
        return Ok(false);
    }
    let Some(claims) = crate::fencing::claims::caught_up(others, read) else {
        return Ok(false);
    };
    for claim in &claims {
        record.raise(claim);
    }
    record.catching_up = false;
    let path = claims_path(state_dir);
    write_atomic(&path, record.render().as_bytes(), 0o640)
        .map_err(|source| ClaimStoreError::Io { path, source })?;
    log::warn!(
        "claim record caught up from {} of {others} other voters' records: it votes again",
        read.len()
    );
    Ok(true)
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
        init(dir.path(), true).expect("init");
        let raised = raise(dir.path(), std::slice::from_ref(&claim)).expect("raise");
        assert_eq!(raised.claims(9), std::slice::from_ref(&claim));
        assert_eq!(load(dir.path()).expect("load"), raised);
        std::fs::write(claims_path(dir.path()), "garbage").expect("corrupt it");
        assert!(matches!(
            load(dir.path()),
            Err(ClaimStoreError::Corrupt { .. })
        ));
        init(dir.path(), true).expect("re-init");
        assert_eq!(load(dir.path()).expect("load"), ClaimRecord::default());
        // A name that would read back as two is not recorded, and the
        // record stays readable.
        let spaced = Claim {
            node: "db 1".into(),
            ..claim.clone()
        };
        assert_eq!(
            raise(dir.path(), &[spaced]).expect("raise"),
            ClaimRecord::default()
        );
        assert_eq!(load(dir.path()).expect("load"), ClaimRecord::default());
    }

    /// `claims init` without `--new-cluster`: no vote until the records of
    /// more than half of the other voters were read and risen to.
    #[test]
    fn a_re_initialised_record_catches_up_before_it_votes() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let claim = |timeline, node: &str| Claim {
            system_identifier: 9,
            timeline,
            node: node.into(),
        };
        let record = init(dir.path(), false).expect("init");
        assert!(record.catching_up);
        // What it observes meanwhile is kept; it still casts no vote.
        let raised = raise(dir.path(), &[claim(1, "node_a")]).expect("raise");
        assert!(raised.catching_up);
        // One of two other voters read: not yet.
        assert!(!catch_up(dir.path(), 2, &[vec![claim(1, "node_a")]]).expect("catch up"));
        assert!(load(dir.path()).expect("load").catching_up);
        // Both: it rises to the highest and votes again, durably.
        let read = [vec![claim(1, "node_a")], vec![claim(2, "node_b")]];
        assert!(catch_up(dir.path(), 2, &read).expect("catch up"));
        let record = load(dir.path()).expect("load");
        assert!(!record.catching_up);
        assert_eq!(record.claims(9), [claim(2, "node_b")]);
        // Done once: a later read changes nothing.
        assert!(!catch_up(dir.path(), 2, &read).expect("catch up"));
    }

    /// Issue 25, item 5: what the service user may plant in its own state
    /// directory: a link where the lock goes (root's `claims init` once
    /// created a root-owned file where it pointed), and a FIFO (which hung
    /// `doctor`). Both are refused at once; the link's target is never
    /// created.
    #[test]
    fn a_planted_link_or_fifo_is_refused_not_followed() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let target = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, dir.path().join(LOCK_FILE)).expect("symlink");
        assert!(matches!(
            init(dir.path(), true),
            Err(ClaimStoreError::Io { .. })
        ));
        assert!(matches!(load(dir.path()), Err(ClaimStoreError::Io { .. })));
        assert!(!target.exists(), "the link was followed");
        std::fs::remove_file(dir.path().join(LOCK_FILE)).expect("remove the link");
        let fifo = dir.path().join(LOCK_FILE);
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .expect("mkfifo");
        let started = std::time::Instant::now();
        assert!(matches!(load(dir.path()), Err(ClaimStoreError::Io { .. })));
        assert!(matches!(
            init(dir.path(), true),
            Err(ClaimStoreError::Io { .. })
        ));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // A link in place of the record itself is not read either.
        std::fs::remove_file(&fifo).expect("remove the fifo");
        let elsewhere = dir.path().join("record-elsewhere");
        std::fs::write(&elsewhere, format!("{}\n", crate::fencing::claims::HEADER)).expect("write");
        std::os::unix::fs::symlink(&elsewhere, claims_path(dir.path())).expect("symlink");
        assert!(matches!(load(dir.path()), Err(ClaimStoreError::Io { .. })));
    }

    /// A holder that never lets go (stopped mid-raise) costs a reader at
    /// most [`LOCK_WAIT`], then an error: the voter abstains for that
    /// answer instead of hanging it.
    #[test]
    fn a_lock_held_for_good_is_waited_for_a_bounded_time() {
        let dir = tempfile::tempdir().expect("a temp dir");
        init(dir.path(), true).expect("init");
        let _stuck = lock(dir.path()).expect("the stuck writer's lock");
        let path = dir.path().to_path_buf();
        let started = std::time::Instant::now();
        let loaded = std::thread::spawn(move || load(&path).map(|_| ()))
            .join()
            .expect("the reader thread");
        let waited = started.elapsed();
        assert!(
            matches!(&loaded, Err(ClaimStoreError::Io { source, .. }) if source.kind() == io::ErrorKind::TimedOut),
            "{loaded:?}"
        );
        assert!(waited >= LOCK_WAIT && waited < LOCK_WAIT * 2, "{waited:?}");
    }

    /// A raise that changes nothing (the peer's own claim before every
    /// answer, a stranger's ask included) reads under the shared lock
    /// only: readers holding it do not hold it up. One that changes the
    /// record still waits for the exclusive lock.
    #[test]
    fn a_raise_that_changes_nothing_does_not_queue_for_the_writers_lock() {
        let dir = tempfile::tempdir().expect("a temp dir");
        init(dir.path(), true).expect("init");
        let held = Claim {
            system_identifier: 7,
            timeline: 1,
            node: "node_a".into(),
        };
        raise(dir.path(), std::slice::from_ref(&held)).expect("first raise");
        let _reader = lock_shared(dir.path()).expect("a reader's lock");
        let started = std::time::Instant::now();
        let record =
            raise(dir.path(), std::slice::from_ref(&held)).expect("a raise of nothing new");
        assert!(started.elapsed() < LOCK_WAIT / 2, "{:?}", started.elapsed());
        assert_eq!(record.claims(7), vec![held.clone()], "{record:?}");
        let higher = Claim {
            timeline: 2,
            ..held.clone()
        };
        let blocked = raise(dir.path(), &[higher]);
        assert!(
            matches!(&blocked, Err(ClaimStoreError::Io { source, .. }) if source.kind() == io::ErrorKind::TimedOut),
            "{blocked:?}"
        );
    }

    /// Review item 18.4: a reader must not report a record a writer has
    /// renamed into place but not yet made durable (the directory's
    /// fsync). The test plays the writer between its rename and its fsync,
    /// holding the lock as `raise` does, and a `load` must wait for it.
    #[test]
    fn a_load_waits_for_a_raise_in_progress() {
        use std::sync::mpsc;
        use std::time::Duration;
        let dir = tempfile::tempdir().expect("a temp dir");
        init(dir.path(), true).expect("init");
        let writer = lock(dir.path()).expect("the writer's lock");
        let mut raised = ClaimRecord::default();
        raised.raise(&Claim {
            system_identifier: 9,
            timeline: 3,
            node: "node_2".into(),
        });
        // Renamed into place; the directory is not fsynced yet.
        let tmp = dir.path().join(".claims.x.tmp");
        std::fs::write(&tmp, raised.render()).expect("write the temp file");
        std::fs::rename(&tmp, claims_path(dir.path())).expect("rename");
        let (tx, rx) = mpsc::channel();
        let path = dir.path().to_path_buf();
        let reader = std::thread::spawn(move || {
            let _ = tx.send(load(&path).map(|r| r.highest(9).map(|h| h.timeline)));
        });
        assert!(
            matches!(
                rx.recv_timeout(Duration::from_millis(300)),
                Err(mpsc::RecvTimeoutError::Timeout)
            ),
            "a load reported the record before the writer made it durable"
        );
        // The writer's fsync, then its lock goes.
        std::fs::File::open(dir.path())
            .and_then(|d| d.sync_all())
            .expect("fsync the directory");
        drop(writer);
        let seen = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the load ends once the writer is done")
            .expect("load");
        assert_eq!(seen, Some(3));
        reader.join().expect("the reader thread");
    }
}
