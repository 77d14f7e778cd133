//! `pgsql-state promote-check`: may this standby be promoted now? For a
//! promoter's hook (repmgr's `failover_validation_command`): it asks this
//! node's Postgres, its own peer and every other voter (under the
//! deadline), applies [`crate::fencing::promote_check`], prints one line
//! and exits 0 (yes) or 1 (no, and why). It changes nothing.

use std::path::Path;

use anyhow::Context;

use crate::fencing::promote_check::{self, Inputs};
use crate::peer::client::{PeerClient, PeerView};
use crate::peer::opinion;
use crate::peer::proto::{Role, WhatYouKnow};
use crate::pg;

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

/// Gathers and checks: the line to print after yes or no.
async fn check(config: &crate::config::Config) -> anyhow::Result<Result<String, String>> {
    let bound = config.responder.check_timeout;
    let pg_config = pg::parse_conninfo(&config.responder.conninfo)?;
    let facts = tokio::time::timeout(bound, async {
        let (client, _driver) = pg::connect(&pg_config).await?;
        pg::facts::query(&client).await
    })
    .await
    .unwrap_or(Err(pg::ProbeError::Timeout(bound)));
    let facts = match facts {
        Ok(facts) => facts,
        Err(e) => {
            return Ok(Err(format!(
                "this node's Postgres could not be asked: {}",
                crate::error_text::one_line(&e)
            )))
        }
    };
    let timeline = facts.timeline.unwrap_or(0);
    let asker = WhatYouKnow {
        ip: config.primary_ip.to_string(),
        node_name: config.node_name.clone(),
        role: if facts.in_recovery {
            Role::Standby as i32
        } else {
            Role::Primary as i32
        },
        timeline,
        system_identifier: facts.system_identifier,
        postmaster_start_us: facts.postmaster_start_us,
        ..WhatYouKnow::default()
    };
    // Each other voter once (the config left out this node and repeats).
    let (addrs, voters) = super::voters(config).await;
    let client = PeerClient::new(&config.grpc, asker)?;
    let own_addr = super::reconcile::own_peer(config);
    let (views, own_view) = tokio::join!(client.ask_all(&addrs), client.ask(&own_addr));
    let sysid = facts.system_identifier;
    let own = match opinion::as_peer_state(&own_addr, &own_view, sysid) {
        crate::fencing::decide::PeerState::Answered(a) => Some(a),
        crate::fencing::decide::PeerState::Unreachable => None,
    };
    if let PeerView::Unreachable(e) = &own_view {
        log::warn!("this node's own peer at {own_addr}: {e}");
    }
    let peers: Vec<_> = views
        .iter()
        .map(|(addr, view)| (addr.clone(), opinion::as_peer_state(addr, view, sysid)))
        .collect();
    for line in crate::fencing::decide::distinct_voters(&config.node_name, &peers, sysid).left_out {
        log::warn!("{}: {line}", config.node_name);
    }
    let primary_ip = config.primary_ip.to_string();
    let verdict = promote_check::promote_check(&Inputs {
        me: &config.node_name,
        my_ip: &primary_ip,
        system_identifier: sysid,
        timeline,
        voters,
        own: own.as_ref(),
        peers: &peers,
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
