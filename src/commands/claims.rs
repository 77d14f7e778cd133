//! `pgsql-state claims init|show`: the voter's durable claim record. `init`
//! is run at install (and by the playground); an operator runs it again to
//! clear a tie, or after a voter lost its state directory.

use std::path::Path;

use anyhow::Context;

use crate::cli::{ClaimsAction, ClaimsArgs};
use crate::config;
use crate::fencing::claims_store;

pub fn run(explicit: Option<&Path>, args: ClaimsArgs) -> anyhow::Result<()> {
    let state_dir = match args.state_dir {
        Some(dir) => dir,
        None => super::load_config(explicit, true)?
            .map(|l| l.config.state_dir)
            .unwrap_or_else(|| config::DEFAULT_STATE_DIR.into()),
    };
    match args.action {
        ClaimsAction::Init => {
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
                    "  TIE: fences every candidate until `claims init`"
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
