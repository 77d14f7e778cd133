//! The phases of one run, each with a typed result: this node's facts
//! ([`gather`]), the voters' answers ([`ask_voters`]), this voter's own
//! record raised with what the run saw ([`raise_record`]), and the
//! decision ([`decide_run`]). A run is these four, then its acts (the
//! verdict, pg_hba.conf, the sessions: `super::act`); `promote-check`
//! shares the first two.

use std::time::Duration;

use anyhow::Context;
use tokio_postgres::Client;

use crate::config::Config;
use crate::fencing::claims::{Claim, Highest};
use crate::fencing::clock::{self, Now};
use crate::fencing::decide::{self, Decision, LocalFacts, PeerAnswer, PeerState, Previous};
use crate::fencing::verdict::{Identity, VerdictKind, VerdictRead};
use crate::fencing::{claims_store, timing};
use crate::peer::client::{PeerClient, PeerView};
use crate::peer::opinion;
use crate::peer::proto::{Role, WhatYouKnow};
use crate::pg::{self, facts::NodeFacts};
use crate::runtime_files;

/// The longest a host name may take to resolve (within `checkTimeout`).
const RESOLVE_BOUND: Duration = Duration::from_secs(1);

/// This node's Postgres, as the run found it.
pub(crate) struct Gathered {
    /// The connection, kept for the acts (`None`: Postgres could not be
    /// asked).
    pub client: Option<Client>,
    /// Its facts as `decide` reads them.
    pub local: Option<LocalFacts>,
    /// Why Postgres could not be asked, when it could not.
    pub error: Option<String>,
}

/// Asks this node's Postgres for its facts, in one connection bounded by
/// `checkTimeout`; with `resolve`, a standby's upstream host name is
/// resolved too (what `decide` matches its primary by). It logs nothing:
/// the caller says what a failure means to it.
pub(crate) async fn gather(config: &Config, resolve: bool) -> anyhow::Result<Gathered> {
    let bound = config.responder.check_timeout;
    let pg_config = pg::parse_conninfo(&config.responder.conninfo)?;
    let connected = tokio::time::timeout(bound, async {
        let (client, driver) = pg::connect(&pg_config).await?;
        let facts = pg::facts::query(&client).await?;
        Ok::<_, pg::ProbeError>((client, driver, facts))
    })
    .await
    .unwrap_or(Err(pg::ProbeError::Timeout(bound)));
    let (client, facts, error) = match connected {
        Ok((client, _driver, facts)) => (Some(client), Some(facts), None),
        Err(e) => (None, None, Some(crate::error_text::one_line(&e))),
    };
    let mut local = facts.as_ref().and_then(local_facts);
    // What the standby's upstream stands for, whatever its spelling.
    if let Some(l) = local.as_mut().filter(|l| resolve && l.in_recovery) {
        if let Some(host) = &l.upstream {
            l.upstream_addrs = crate::resolve::addresses(host, resolve_bound(config)).await;
        }
    }
    Ok(Gathered {
        client,
        local,
        error,
    })
}

fn resolve_bound(config: &Config) -> Duration {
    config.responder.check_timeout.min(RESOLVE_BOUND)
}

/// This node's facts as `decide` reads them.
fn local_facts(f: &NodeFacts) -> Option<LocalFacts> {
    Some(LocalFacts {
        in_recovery: f.in_recovery,
        identity: Identity {
            system_identifier: f.system_identifier,
            timeline: f.timeline?,
            postmaster_start_us: f.postmaster_start_us,
        },
        upstream: f.sender_host.clone(),
        upstream_addrs: Vec::new(),
        streaming: f.streaming(),
        lag_bytes: f.lag_bytes(),
    })
}

/// What the voters answered.
pub(crate) struct Asked {
    /// When the answers were in (before any host name was resolved).
    pub now: Now,
    /// Every other voter, by address, as `decide` reads it.
    pub peers: Vec<(String, PeerState)>,
    /// This node's own peer's answer (its lease clock and the record it
    /// returned): this node's vote in the wait.
    pub own_answer: Option<PeerAnswer>,
    /// Why this node's own peer did not answer, with its address.
    pub own_error: Option<String>,
    /// How many voters are configured.
    pub voters: usize,
}

/// The claim this node's asks carry.
fn asker(config: &Config, local: Option<&LocalFacts>) -> WhatYouKnow {
    WhatYouKnow {
        ip: config.primary_ip.to_string(),
        node_name: config.node_name.clone(),
        role: match local {
            Some(l) if !l.in_recovery => Role::Primary as i32,
            Some(_) => Role::Standby as i32,
            None => Role::Down as i32,
        },
        timeline: local.map_or(0, |l| l.identity.timeline),
        system_identifier: local.map_or(0, |l| l.identity.system_identifier),
        postmaster_start_us: local.map_or(0, |l| l.identity.postmaster_start_us),
        ..WhatYouKnow::default()
    }
}

/// Asks every other voter once (the config's repeats and this node left
/// out) and this node's own peer, all at once, each under the deadline;
/// the asks carry this node's claim from `local`. With `resolve`, a peer
/// configured by host name is also known by the addresses it stands for
/// (only a standby's decision needs them).
pub(crate) async fn ask_voters(
    config: &Config,
    local: Option<&LocalFacts>,
    resolve: bool,
) -> anyhow::Result<Asked> {
    let (addrs, voters) = super::super::voters(config).await;
    // This node's own peer too, for its lease clock (its record is read
    // from the file): it is a voter like the others.
    let client = PeerClient::new(&config.grpc, asker(config, local))?;
    let own = super::own_peer(config);
    let (views, own_view) = tokio::join!(client.ask_all(&addrs), client.ask(&own));
    let own_error = match &own_view {
        PeerView::Unreachable(e) => Some(format!("{own}: {e}")),
        _ => None,
    };
    let now = clock::now().context("cannot read CLOCK_BOOTTIME")?;
    for (addr, view) in &views {
        if let PeerView::Unreachable(e) = view {
            log::debug!("peer {addr}: {e}");
        }
    }
    let sysid = local.map_or(0, |l| l.identity.system_identifier);
    let own_answer = match opinion::as_peer_state(&own, &own_view, sysid) {
        PeerState::Answered(a) if a.system_identifier == 0 || a.system_identifier == sysid => {
            Some(a)
        }
        _ => None,
    };
    let mut peers: Vec<(String, PeerState)> = views
        .iter()
        .map(|(addr, view)| (addr.clone(), opinion::as_peer_state(addr, view, sysid)))
        .collect();
    // A peer configured by host name is also known by what the name
    // stands for (only a standby's decision needs it).
    if resolve && local.is_some_and(|l| l.in_recovery) {
        for (addr, state) in &mut peers {
            let host = crate::config::host_of(addr);
            if let (PeerState::Answered(a), Err(_)) = (state, host.parse::<std::net::IpAddr>()) {
                a.addrs
                    .extend(crate::resolve::addresses(host, resolve_bound(config)).await);
            }
        }
    }
    Ok(Asked {
        now,
        peers,
        own_answer,
        own_error,
        voters,
    })
}

/// This voter's own record after the run raised it: `Some(highest)` when
/// it votes, `None` when it abstains (catching up after `claims init`, or
/// unreadable).
pub(crate) type OwnRecord = Option<Option<Highest>>;

/// Raises this voter's record with what the run saw and reads it back; a
/// record catching up (re-initialised) rises to what the other voters'
/// records hold once more than half of them answered. A dry run only
/// reads it.
pub(crate) async fn raise_record(
    config: &Config,
    local: &LocalFacts,
    asked: &Asked,
    dry_run: bool,
) -> anyhow::Result<OwnRecord> {
    let sysid = local.identity.system_identifier;
    let peers = &asked.peers;
    let observed = decide::observed_claims(&config.node_name, Some(local), peers, sysid);
    let read: Vec<Vec<Claim>> = decide::distinct_voters(&config.node_name, peers, sysid)
        .counted
        .iter()
        .filter_map(|a| a.record.as_ref())
        .map(|h| {
            h.iter()
                .flat_map(|h| {
                    h.nodes.iter().map(|node| Claim {
                        system_identifier: sysid,
                        timeline: h.timeline,
                        node: node.clone(),
                    })
                })
                .collect()
        })
        .collect();
    let others = asked.voters - 1;
    let state_dir = config.state_dir.clone();
    let record = tokio::task::spawn_blocking(move || {
        if dry_run {
            return claims_store::load(&state_dir);
        }
        let record = claims_store::raise(&state_dir, &observed)?;
        if record.catching_up {
            // Caught up here, or by this node's peer meanwhile: read again.
            claims_store::catch_up(&state_dir, others, &read)?;
            return claims_store::load(&state_dir);
        }
        Ok(record)
    })
    .await
    .context("the claim record task failed")?;
    Ok(match record {
        Ok(record) if record.catching_up => {
            let usable = peers
                .iter()
                .filter(|(_, state)| matches!(state, PeerState::Answered(a) if a.record.is_some()))
                .count();
            log::warn!(
                "{}: this node's claim record is catching up after `claims init`: it casts no \
                 vote until more than half of the {others} other voters' records are read \
                 ({usable} usable now; a record catching up itself is not one). If every \
                 voter's record was re-initialised (a cluster being set up, every disk lost), \
                 none can catch up from another: with one primary running, run `pgsql-state \
                 claims init --new-cluster` on every voter",
                config.node_name
            );
            None
        }
        Ok(record) => Some(record.highest(sysid).cloned()),
        Err(e) => {
            log::error!("{e}");
            None
        }
    })
}

/// The previous verdict, when it was written on this boot for some
/// postmaster.
fn previous_verdict(verdict: &VerdictRead, now: &Now) -> Option<Previous> {
    match verdict {
        VerdictRead::Present(v) if v.written.boot_id == now.boot_id => Some(Previous {
            identity: v.identity.clone()?,
            kind: v.kind,
            wait_until_ms: v.wait_until_ms,
            wait_for: v.wait_for.clone(),
        }),
        _ => None,
    }
}

/// The decision, from the run's phases and the verdict now on disk.
pub(crate) fn decide_run(
    config: &Config,
    t0: &Now,
    local: &LocalFacts,
    asked: &Asked,
    own: &OwnRecord,
) -> Decision {
    let sysid = local.identity.system_identifier;
    let verdict_read = runtime_files::read_verdict(&config.responder.runtime_dir);
    let previous = previous_verdict(&verdict_read, &asked.now);
    warn_if_late(config, &verdict_read, t0);
    let lease = config.responder.lease;
    let wait = timing::wait(lease, &config.haproxy_check);
    for line in decide::distinct_voters(&config.node_name, &asked.peers, sysid).left_out {
        log::warn!("{}: {line}", config.node_name);
    }
    let own_answer = asked.own_answer.as_ref();
    decide::decide(&decide::Inputs {
        me: &config.node_name,
        my_ip: &config.primary_ip.to_string(),
        local: Some(local),
        peers: &asked.peers,
        own_record: own.as_ref().map(Option::as_ref),
        voters: asked.voters,
        previous: previous.as_ref(),
        own_clock: own_answer.and_then(|a| a.clock.as_ref()),
        own_peer_record: own_answer
            .and_then(|a| a.record.as_ref())
            .map(Option::as_ref),
        t0_ms: t0.boottime_ms,
        now_ms: asked.now.boottime_ms,
        lease_ms: lease.as_millis() as u64,
        wait_ms: wait.as_millis() as u64,
        short_wait_ms: timing::haproxy_wait(&config.haproxy_check).as_millis() as u64,
        max_lag_bytes: config.responder.max_lag_bytes,
    })
}

/// The lease a confirming verdict gives (2 × watchDog + deadline) assumes a
/// run at least every watchDog. Says so, loudly, when the previous run of
/// a confirmed primary started longer ago than that: a timer slower than
/// watchDog lets the lease lapse between runs, and the node answers
/// `fenced` with nothing else saying why.
fn warn_if_late(config: &Config, previous: &VerdictRead, t0: &Now) {
    let VerdictRead::Present(v) = previous else {
        return;
    };
    if v.kind != VerdictKind::Production || v.written.boot_id != t0.boot_id {
        return;
    }
    let gap = t0.boottime_ms.saturating_sub(v.written.boottime_ms);
    let allowed = (config.watchdog + config.grpc.connection_deadline).as_millis() as u64;
    if gap > allowed {
        log::warn!(
            "{}: the previous run started {:.1} s ago, more than watchDog ({} s): the lease \
             assumes a run at least every watchDog, so this primary's lapsed in between; \
             make the timer's OnUnitActiveSec at most watchDog",
            config.node_name,
            gap as f64 / 1000.0,
            config.watchdog.as_secs_f64()
        );
    }
}
