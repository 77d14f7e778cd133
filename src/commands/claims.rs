//! `pgsql-state claims init|show`: the voter's durable claim record. `init`
//! is run at install (and by the playground); an operator runs it again to
//! clear a tie, or after a voter lost its state directory.

use std::path::Path;

use anyhow::Context;

use crate::cli::{ClaimsAction, ClaimsArgs};
use crate::config;
use crate::fencing::claims_store;

/// Run as root on a state directory that another user owns (the service
/// user's, as installed), becomes that user before touching anything in
/// it: what root creates there could otherwise be steered by a link that
/// user planted, and a record root owns is one the service cannot raise.
/// The command is single-threaded here (no runtime has started), so the
/// calling thread's ids are the process's.
fn become_owner_of(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let meta =
        std::fs::symlink_metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    anyhow::ensure!(
        meta.file_type().is_dir(),
        "{} is not a directory (a symbolic link is refused when run as root)",
        dir.display()
    );
    if meta.uid() == 0 {
        return Ok(());
    }
    let (uid, gid) = (
        rustix::process::Uid::from_raw(meta.uid()),
        rustix::process::Gid::from_raw(meta.gid()),
    );
    rustix::thread::set_thread_groups(&[])
        .and_then(|()| rustix::thread::set_thread_res_gid(gid, gid, gid))
        .and_then(|()| rustix::thread::set_thread_res_uid(uid, uid, uid))
        .with_context(|| {
            format!(
                "run as root: cannot become {}'s owner (uid {}) to write there",
                dir.display(),
                meta.uid()
            )
        })?;
    Ok(())
}

pub fn run(explicit: Option<&Path>, args: ClaimsArgs) -> anyhow::Result<()> {
    let state_dir = match args.state_dir {
        Some(dir) => dir,
        None => super::load_config(explicit, true)?
            .map(|l| l.config.state_dir)
            .unwrap_or_else(|| config::DEFAULT_STATE_DIR.into()),
    };
    match args.action {
        ClaimsAction::Init => {
            become_owner_of(&state_dir)?;
            claims_store::init(&state_dir, args.new_cluster).with_context(|| {
                format!(
                    "cannot initialise the claim record in {}",
                    state_dir.display()
                )
            })?;
            if args.new_cluster {
                println!(
                    "claim record initialised in {} for a new cluster: this node votes at once, \
                     and remembers claims from now on",
                    state_dir.display()
                );
            } else {
                println!(
                    "claim record initialised in {}: it is catching up, and this node casts no \
                     vote until its peer has read a majority of the other voters' records \
                     (`pgsql-state claims show` says when; for a cluster being set up, where \
                     nobody has voted yet, use `claims init --new-cluster`)",
                    state_dir.display()
                );
            }
        }
        ClaimsAction::Show => {
            if args.new_cluster {
                return Err(
                    super::UsageError("--new-cluster goes with `claims init`".into()).into(),
                );
            }
            let record = claims_store::load(&state_dir)?;
            if record.catching_up {
                println!(
                    "{}: catching up: no vote until a majority of the other voters' records \
                     have been read",
                    claims_store::claims_path(&state_dir).display()
                );
            }
            if record.clusters.is_empty() {
                println!(
                    "{}: no claim seen yet",
                    claims_store::claims_path(&state_dir).display()
                );
            }
            for (sysid, h) in &record.clusters {
                let nodes: Vec<&str> = h.nodes.iter().map(String::as_str).collect();
                let tie = if h.is_tie() {
                    "  TIE: fences every candidate until `claims init --new-cluster` on every voter"
                } else {
                    ""
                };
                println!(
                    "system identifier {sysid}: timeline {} claimed by {}{tie}",
                    h.timeline,
                    nodes.join(", ")
                );
            }
        }
    }
    Ok(())
}
