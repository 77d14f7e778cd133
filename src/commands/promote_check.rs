//! `pgsql-state promote-check`: may this standby be promoted now? For a
//! promoter's hook (repmgr's `failover_validation_command`): it asks this
//! node's Postgres, its own peer and every other voter (under the
//! deadline), applies [`crate::fencing::promote_check`], prints one line
//! and exits 0 (yes) or 1 (no, and why). It changes nothing.

use std::path::Path;

use anyhow::Context;

use super::reconcile::phases;
use crate::fencing::promote_check::{self, Inputs};

pub fn run(explicit: Option<&Path>) -> anyhow::Result<()> {
    crate::logging::init_at(false, log::LevelFilter::Warn);
    let loaded = super::load_config(explicit, false)?
        .ok_or_else(|| anyhow::anyhow!("promote-check needs a config file"))?;
    let config = loaded.config;
    anyhow::ensure!(
        !config.is_witness(),
        "promote-check runs on a data node; {} is the witness",
        config.node_name
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let answer = runtime.block_on(check(&config));
    // A name lookup that outlived its bound still holds a blocking thread;
    // the answer is in, so leave it rather than wait for libc's resolver.
    runtime.shutdown_background();
    let answer = answer?;
    match answer {
        Ok(line) => {
            println!("promote-check: yes: {line}");
            Ok(())
        }
        Err(why) => {
            println!("promote-check: no: {why}");
            Err(super::Reported.into())
        }
    }
}

/// Gathers and checks (the reconciler's own phases): the line to print
/// after yes or no.
async fn check(config: &crate::config::Config) -> anyhow::Result<Result<String, String>> {
    // No name is resolved: the rule reads none, and it is on the
    // promoter's failover path.
    let gathered = phases::gather(config, false).await?;
    // The connection is not needed past the facts.
    drop(gathered.client);
    let Some(local) = gathered.local else {
        return Ok(Err(match gathered.error {
            Some(e) => format!("this node's Postgres could not be asked: {e}"),
            None => "this node's Postgres reported no timeline, so no promotion can be judged safe"
                .to_string(),
        }));
    };
    let asked = phases::ask_voters(config, Some(&local), false).await?;
    if let Some(e) = &asked.own_error {
        log::warn!("this node's own peer at {e}");
    }
    let sysid = local.identity.system_identifier;
    for line in
        crate::fencing::decide::distinct_voters(&config.node_name, &asked.peers, sysid).left_out
    {
        log::warn!("{}: {line}", config.node_name);
    }
    let primary_ip = config.primary_ip.to_string();
    let voters = asked.voters;
    let verdict = promote_check::promote_check(&Inputs {
        me: &config.node_name,
        my_ip: &primary_ip,
        system_identifier: sysid,
        timeline: local.identity.timeline,
        voters,
        own: asked.own_answer.as_ref(),
        peers: &asked.peers,
        watchdog_ms: config.watchdog.as_millis() as u64,
        maintenance: crate::runtime_files::maintenance_on(&config.responder.runtime_dir),
    });
    Ok(match verdict {
        Ok(reached) => Ok(format!(
            "{}: {reached}/{voters} voters reached; none is or sees another primary \
             alive, or confirmed another node's claim within watchDog",
            config.node_name
        )),
        Err(why) => Err(format!("{}: {why}", config.node_name)),
    })
}
