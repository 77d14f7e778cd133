//! `pgsql-state reconcile`: one run of the reconciler, as the timer starts
//! it. It reads t0 (CLOCK_BOOTTIME), asks its own Postgres and every peer
//! (under the deadline), raises its claim record with what it saw, and
//! decides. Then it writes the verdict the responder obeys, puts the
//! managed block of pg_hba.conf in place (only when it changes), and, when
//! fenced, ends the open write sessions. One log line per run says what it
//! decided. `--dry-run` prints the decision and the pg_hba.conf diff and
//! changes nothing.

use std::os::fd::AsFd;
use std::path::Path;

use anyhow::Context;

use crate::cli::ReconcileArgs;
use crate::config::Config;
use crate::fencing::claims::{Claim, Highest};
use crate::fencing::clock::{self, Now};
use crate::fencing::decide::{self, Decision, LocalFacts, PeerState, Previous};
use crate::fencing::verdict::{Identity, Verdict, VerdictKind, VerdictRead};
use crate::fencing::{claims_store, timing};
use crate::hba::{apply, render};
use crate::peer::client::PeerClient;
use crate::peer::opinion;
use crate::peer::proto::{Role, WhatYouKnow};
use crate::pg::facts::NodeFacts;
use crate::pg::{self, admin};
use crate::runtime_files;

/// The lock that serialises runs, in `runtimeDir`.
const LOCK_FILE: &str = "reconcile.lock";
/// The longest a host name may take to resolve (within `checkTimeout`).
const RESOLVE_BOUND: std::time::Duration = std::time::Duration::from_secs(1);

pub fn run(explicit: Option<&Path>, args: ReconcileArgs) -> anyhow::Result<()> {
    // t0 comes first: before the config, the facts, or any ask.
    let t0 = clock::now().context("cannot read CLOCK_BOOTTIME and the boot id")?;
    crate::logging::init_at(false, log::LevelFilter::Info);
    let loaded = super::load_config(explicit, false)?
        .ok_or_else(|| anyhow::anyhow!("reconcile needs a config file"))?;
    let config = loaded.config;
    if config.is_witness() {
        log::info!(
            "{}: the witness has no Postgres; nothing to reconcile",
            config.node_name
        );
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let _lock = if args.dry_run {
        None
    } else {
        let lock = lock(&config.responder.runtime_dir)?;
        // Under the lock, nobody else writes these: whatever temp files a
        // killed run left behind can go, whether or not this run writes.
        crate::fsutil::remove_stale_temps(&runtime_files::verdict_path(
            &config.responder.runtime_dir,
        ));
        crate::fsutil::remove_stale_temps(&hba_pending(&config));
        if let Some(hba) = &config.hba_config {
            crate::fsutil::remove_stale_temps(hba);
            crate::fsutil::remove_stale_temps(&apply::backup_path(hba));
        }
        if let Err(e) = crate::fencing::claims_store::remove_stale_temps(&config.state_dir) {
            log::warn!("claim record: {}", crate::error_text::one_line(&e));
        }
        Some(lock)
    };
    let ran = runtime.block_on(async {
        let waiting_until = reconcile(&config, &t0, args.dry_run).await?;
        // A wait that ends before the timer's next run would leave the
        // node fenced until then: sit it out, and decide again at its end
        // (once; the timer goes on as ever).
        let Some(until) = waiting_until.filter(|_| !args.dry_run) else {
            return Ok(());
        };
        let now = clock::now().context("cannot read CLOCK_BOOTTIME")?;
        let left = until.saturating_sub(now.boottime_ms);
        if left > config.watchdog.as_millis() as u64 {
            return Ok(());
        }
        log::info!(
            "{}: deciding again when the wait ends, in {:.1} s",
            config.node_name,
            left as f64 / 1000.0
        );
        tokio::time::sleep(std::time::Duration::from_millis(left + RERUN_MARGIN_MS)).await;
        let t0 = clock::now().context("cannot read CLOCK_BOOTTIME and the boot id")?;
        reconcile(&config, &t0, false).await.map(|_| ())
    });
    // A name lookup that outlived its bound still holds a blocking thread:
    // the run is over, so leave it rather than wait for libc's resolver.
    runtime.shutdown_background();
    ran
}

/// How long after a wait's end a run that sat it out decides again.
const RERUN_MARGIN_MS: u64 = 50;

/// Holds the run lock while alive (the flock goes with the file).
struct RunLock {
    _file: std::fs::File,
}

fn lock(runtime_dir: &Path) -> anyhow::Result<RunLock> {
    let path = runtime_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open the run lock {}", path.display()))?;
    rustix::fs::flock(file.as_fd(), rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(RunLock { _file: file })
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

/// This node's own peer, as the other voters reach it: its bind address,
/// or loopback when it listens on every address.
pub(super) fn own_peer(config: &Config) -> String {
    let port = config.grpc.bind_port;
    match config.grpc.bind_address.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_unspecified() && ip.is_ipv6() => format!("[::1]:{port}"),
        Ok(ip) if ip.is_unspecified() => format!("127.0.0.1:{port}"),
        Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        _ => format!("{}:{port}", config.grpc.bind_address),
    }
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

/// One run. Returns when this node's wait ends, if it is sitting one out.
async fn reconcile(config: &Config, t0: &Now, dry_run: bool) -> anyhow::Result<Option<u64>> {
    let bound = config.responder.check_timeout;
    let pg_config = pg::parse_conninfo(&config.responder.conninfo)?;
    // This node's Postgres: one connection for the whole run.
    let connected = tokio::time::timeout(bound, async {
        let (client, driver) = pg::connect(&pg_config).await?;
        let facts = pg::facts::query(&client).await?;
        Ok::<_, pg::ProbeError>((client, driver, facts))
    })
    .await
    .unwrap_or(Err(pg::ProbeError::Timeout(bound)));
    let (client, facts) = match connected {
        Ok((client, _driver, facts)) => (Some(client), Some(facts)),
        Err(e) => {
            log::warn!("postgres: {}", crate::error_text::one_line(&e));
            (None, None)
        }
    };
    let mut local = facts.as_ref().and_then(local_facts);
    // What the standby's upstream stands for, whatever its spelling.
    let resolve_bound = bound.min(RESOLVE_BOUND);
    if let Some(l) = local.as_mut().filter(|l| l.in_recovery) {
        if let Some(host) = &l.upstream {
            l.upstream_addrs = crate::resolve::addresses(host, resolve_bound).await;
        }
    }

    // Every peer, with this node's claim in the ask.
    let asker = WhatYouKnow {
        ip: config.primary_ip.to_string(),
        node_name: config.node_name.clone(),
        role: match &local {
            Some(l) if !l.in_recovery => Role::Primary as i32,
            Some(_) => Role::Standby as i32,
            None => Role::Down as i32,
        },
        timeline: local.as_ref().map_or(0, |l| l.identity.timeline),
        system_identifier: local.as_ref().map_or(0, |l| l.identity.system_identifier),
        postmaster_start_us: local.as_ref().map_or(0, |l| l.identity.postmaster_start_us),
        ..WhatYouKnow::default()
    };
    // Each other voter once (the config left out this node and repeats).
    let (addrs, voters) = super::voters(config).await;
    // This node's own peer too, for its lease clock (its record is read
    // from the file): it is a voter like the others.
    let peers_client = PeerClient::new(&config.grpc, asker)?;
    let own = own_peer(config);
    let (views, own_view) = tokio::join!(peers_client.ask_all(&addrs), peers_client.ask(&own));
    if let crate::peer::client::PeerView::Unreachable(e) = &own_view {
        log::info!("this node's own peer: {e}; the wait counts its clock as 0");
    }
    let now = clock::now().context("cannot read CLOCK_BOOTTIME")?;
    for (addr, view) in &views {
        if let crate::peer::client::PeerView::Unreachable(e) = view {
            log::debug!("peer {addr}: {e}");
        }
    }

    let Some(local) = local else {
        log::warn!(
            "{}: no decision: postgres could not be asked; nothing changed",
            config.node_name
        );
        return Ok(None);
    };
    let sysid = local.identity.system_identifier;
    // This node's own peer's answer: its clock and the record it returned
    // with it are this node's vote in the wait.
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
    if local.in_recovery {
        for (addr, state) in &mut peers {
            let host = crate::config::host_of(addr);
            if let (PeerState::Answered(a), Err(_)) = (state, host.parse::<std::net::IpAddr>()) {
                a.addrs
                    .extend(crate::resolve::addresses(host, resolve_bound).await);
            }
        }
    }

    // Raise this voter's record with what this run saw; a record catching
    // up (re-initialised) rises to what the other voters' records hold
    // once more than half of them answered; then read it back.
    let observed = decide::observed_claims(&config.node_name, Some(&local), &peers, sysid);
    let read: Vec<Vec<Claim>> = decide::distinct_voters(&config.node_name, &peers, sysid)
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
    let others = voters - 1;
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
    let own: Option<Option<Highest>> = match record {
        Ok(record) if record.catching_up => {
            let usable = peers
                .iter()
                .filter(|(_, state)| {
                    matches!(state, decide::PeerState::Answered(a) if a.record.is_some())
                })
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
    };

    let runtime_dir = &config.responder.runtime_dir;
    let verdict_read = runtime_files::read_verdict(runtime_dir);
    let previous = previous_verdict(&verdict_read, &now);
    warn_if_late(config, &verdict_read, t0);
    let lease = config.responder.lease;
    let wait = timing::wait(lease, &config.haproxy_check);
    for line in decide::distinct_voters(&config.node_name, &peers, sysid).left_out {
        log::warn!("{}: {line}", config.node_name);
    }
    let decision = decide::decide(&decide::Inputs {
        me: &config.node_name,
        my_ip: &config.primary_ip.to_string(),
        local: Some(&local),
        peers: &peers,
        own_record: own.as_ref().map(Option::as_ref),
        voters,
        previous: previous.as_ref(),
        own_clock: own_answer.as_ref().and_then(|a| a.clock.as_ref()),
        own_peer_record: own_answer
            .as_ref()
            .and_then(|a| a.record.as_ref())
            .map(Option::as_ref),
        t0_ms: t0.boottime_ms,
        now_ms: now.boottime_ms,
        lease_ms: lease.as_millis() as u64,
        wait_ms: wait.as_millis() as u64,
        short_wait_ms: timing::haproxy_wait(&config.haproxy_check).as_millis() as u64,
        max_lag_bytes: config.responder.max_lag_bytes,
    });
    log::info!("{decision}");

    let Some(kind) = decision.kind else {
        return Ok(None);
    };
    let verdict = Verdict {
        kind,
        reason: decision.reason.clone(),
        written: t0.clone(),
        valid_ms: lease.as_millis() as u64,
        wait_until_ms: decision.wait_until_ms,
        wait_for: decision.wait_for.clone(),
        identity: decision.identity.clone(),
        tie: decision.tie,
    };
    if dry_run {
        println!("{decision}");
        match hba_texts(config, &decision) {
            Ok((path, old, new)) => {
                print_diff(path, &old, &new);
                if let (true, Some(client)) = (old == new, &client) {
                    let pending = hba_pending(config);
                    match apply::loaded(client, path, &pending, bound).await {
                        Ok(true) => {}
                        Ok(false) => println!(
                            "--- {}: newer than what Postgres loaded; a run would reload it",
                            path.display()
                        ),
                        Err(e) => println!("--- {}: {e}", path.display()),
                    }
                }
            }
            Err(e) => println!("--- pg_hba.conf: {e:#}"),
        }
        println!("--- the verdict it would write:\n{}", verdict.render());
        return Ok(None);
    }

    // The verdict first: it fences the responder at once, whatever then
    // happens to pg_hba.conf.
    let verdict_path = runtime_files::verdict_path(runtime_dir);
    crate::fsutil::write_atomic(&verdict_path, verdict.render().as_bytes(), 0o644)
        .with_context(|| format!("cannot write the verdict {}", verdict_path.display()))?;
    let client = client.context("the Postgres connection was lost")?;
    // Then pg_hba.conf, then the sessions: a fenced node's writers are
    // ended even when its pg_hba.conf cannot be edited, and after the new
    // rules are loaded, so they cannot log straight back in.
    let hba = async {
        let (path, old, new) = hba_texts(config, &decision)?;
        let context = || format!("pg_hba.conf {}", path.display());
        if new != old {
            apply::apply(&client, path, &hba_pending(config), &old, &new, bound)
                .await
                .with_context(context)?;
            log::info!(
                "{}: pg_hba.conf's managed block rewritten and reloaded",
                path.display()
            );
        } else if !apply::loaded(&client, path, &hba_pending(config), bound)
            .await
            .with_context(context)?
        {
            // What a run killed between its rename and its reload leaves
            // (or a reload that failed, or an edit by hand): the text is
            // right, the rules Postgres runs are not.
            apply::reload_stale(&client, bound)
                .await
                .with_context(context)?;
            apply::clear_pending(&hba_pending(config));
            log::warn!(
                "{}: pg_hba.conf on disk was newer than what Postgres had loaded \
                 (a run killed before its reload, which leaves its mark whatever the clocks \
                 say, or an edit by hand); reloaded",
                path.display()
            );
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if kind == VerdictKind::Fenced {
        let mut users = vec![config.read_write_user.clone()];
        users.extend(config.fence_users.iter().cloned());
        let ended = tokio::time::timeout(bound, admin::terminate_sessions(&client, &users))
            .await
            .unwrap_or(Err(pg::ProbeError::Timeout(bound)));
        match ended {
            Ok(0) => {}
            Ok(n) => log::warn!("fenced: ended {n} open session(s) of {}", users.join(", ")),
            Err(e) => log::error!(
                "fenced, but cannot end the write sessions of {}: {}",
                users.join(", "),
                crate::error_text::one_line(&e)
            ),
        }
    }
    hba?;
    Ok(decision
        .wait_until_ms
        .filter(|until| kind == VerdictKind::Fenced && *until > now.boottime_ms))
}

/// The mark a run leaves while a reload of pg_hba.conf is owed.
fn hba_pending(config: &Config) -> std::path::PathBuf {
    config.responder.runtime_dir.join(HBA_RELOAD_PENDING)
}

/// The mark's file name in `runtimeDir`.
const HBA_RELOAD_PENDING: &str = "hba-reload-pending";

/// pg_hba.conf's path, its text now, and its text with this decision's
/// managed block.
fn hba_texts<'c>(
    config: &'c Config,
    decision: &Decision,
) -> anyhow::Result<(&'c Path, String, String)> {
    let path = config
        .hba_config
        .as_deref()
        .context("harepd.hbaConfig is required on a data node")?;
    let old =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let new = render::render_hba(&old, &hba_rules(config, decision)).map_err(|e| match e {
        render::HbaError::NoRules => anyhow::anyhow!("{}: {e}", path.display()),
        _ => anyhow::anyhow!(
            "{} has a damaged managed block ({e}); fix it by hand",
            path.display()
        ),
    })?;
    Ok((path, old, new))
}

/// The managed block's rules for this decision.
fn hba_rules(config: &Config, d: &Decision) -> render::HbaRules {
    render::HbaRules {
        servers: config.haproxy_servers.clone(),
        read_write_user: config.read_write_user.clone(),
        read_only_user: config.read_only_user.clone().filter(|_| config.allow_ro),
        read_write_allowed: d.read_write_allowed,
        read_only_allowed: d.read_only_allowed,
        auth_allow: config.auth_allow.clone(),
        auth_deny: config.auth_deny.clone(),
        fenced_users: if d.fenced() {
            config.fence_users.clone()
        } else {
            Vec::new()
        },
        // Only the verdict: a line that changes every run would rewrite
        // the file every run.
        why: format!(
            "this node: {}",
            d.kind.map_or("unknown", VerdictKind::as_str)
        ),
    }
}

fn print_diff(path: &Path, old: &str, new: &str) {
    if old == new {
        println!("--- {}: no change", path.display());
        return;
    }
    let diff = similar::TextDiff::from_lines(old, new);
    print!(
        "{}",
        diff.unified_diff().context_radius(2).header(
            &path.display().to_string(),
            &format!("{} (new)", path.display())
        )
    );
}
