//! `pgsql-state reconcile`: one run of the reconciler, as the timer starts
//! it. It reads t0 (CLOCK_BOOTTIME), asks its own Postgres and every peer
//! (under the deadline), raises its claim record with what it saw, and
//! decides. Then it writes the verdict the responder obeys, puts the
//! managed block of pg_hba.conf in place (only when it changes), and, when
//! fenced, ends the open write sessions. One log line per run says what it
//! decided. `--dry-run` prints the decision and the pg_hba.conf diff and
//! changes nothing.
//!
//! A run is named phases with typed results ([`phases`]: gather, ask the
//! voters, raise the record, decide), then its acts ([`act`]).

use std::os::fd::AsFd;
use std::path::Path;

use anyhow::Context;

use crate::cli::ReconcileArgs;
use crate::config::Config;
use crate::fencing::clock::{self, Now};
use crate::fencing::decide::Decision;
use crate::fencing::verdict::{Verdict, VerdictKind};
use crate::hba::{apply, render};
use crate::pg::{self, admin};
use crate::runtime_files;

pub(super) mod phases;

/// The lock that serialises runs, in `runtimeDir`.
const LOCK_FILE: &str = "reconcile.lock";

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

/// One run. Returns when this node's wait ends, if it is sitting one out.
async fn reconcile(config: &Config, t0: &Now, dry_run: bool) -> anyhow::Result<Option<u64>> {
    let gathered = phases::gather(config, true).await?;
    if let Some(e) = &gathered.error {
        log::warn!("postgres: {e}");
    }
    let asked = phases::ask_voters(config, gathered.local.as_ref(), true).await?;
    if let Some(e) = &asked.own_error {
        log::info!("this node's own peer at {e}; the wait counts its clock as 0");
    }
    let Some(local) = gathered.local else {
        log::warn!(
            "{}: no decision: postgres could not be asked; nothing changed",
            config.node_name
        );
        return Ok(None);
    };
    let own = phases::raise_record(config, &local, &asked, dry_run).await?;
    let decision = phases::decide_run(config, t0, &local, &asked, &own);
    log::info!("{decision}");
    act(config, t0, &asked.now, decision, gathered.client, dry_run).await
}

/// The acts of a run: the verdict first (it fences the responder at once),
/// then pg_hba.conf, then, when fenced, the open write sessions. A dry run
/// prints them instead. Returns when this node's wait ends, if it is
/// sitting one out.
async fn act(
    config: &Config,
    t0: &Now,
    now: &Now,
    decision: Decision,
    client: Option<tokio_postgres::Client>,
    dry_run: bool,
) -> anyhow::Result<Option<u64>> {
    let lease = config.responder.lease;
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
        print_dry_run(config, &decision, &verdict, client.as_ref()).await;
        return Ok(None);
    }

    // The verdict first: it fences the responder at once, whatever then
    // happens to pg_hba.conf.
    let verdict_path = runtime_files::verdict_path(&config.responder.runtime_dir);
    crate::fsutil::write_atomic(&verdict_path, verdict.render().as_bytes(), 0o644)
        .with_context(|| format!("cannot write the verdict {}", verdict_path.display()))?;
    let client = client.context("the Postgres connection was lost")?;
    // Then pg_hba.conf, then the sessions: a fenced node's writers are
    // ended even when its pg_hba.conf cannot be edited, and after the new
    // rules are loaded, so they cannot log straight back in.
    let hba = put_hba(config, &client, &decision).await;
    if kind == VerdictKind::Fenced {
        end_write_sessions(config, &client).await;
    }
    hba?;
    Ok(decision
        .wait_until_ms
        .filter(|until| kind == VerdictKind::Fenced && *until > now.boottime_ms))
}

/// What a run would do: the decision, the pg_hba.conf diff (and a reload
/// owed), the verdict.
async fn print_dry_run(
    config: &Config,
    decision: &Decision,
    verdict: &Verdict,
    client: Option<&tokio_postgres::Client>,
) {
    let bound = config.responder.check_timeout;
    println!("{decision}");
    match hba_texts(config, decision) {
        Ok((path, old, new)) => {
            print_diff(path, &old, &new);
            if let (true, Some(client)) = (old == new, client) {
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
}

/// Puts this decision's managed block in pg_hba.conf and has Postgres load
/// it (or reloads a file on disk that Postgres has not loaded).
async fn put_hba(
    config: &Config,
    client: &tokio_postgres::Client,
    decision: &Decision,
) -> anyhow::Result<()> {
    let bound = config.responder.check_timeout;
    let (path, old, new) = hba_texts(config, decision)?;
    let context = || format!("pg_hba.conf {}", path.display());
    if new != old {
        apply::apply(client, path, &hba_pending(config), &old, &new, bound)
            .await
            .with_context(context)?;
        log::info!(
            "{}: pg_hba.conf's managed block rewritten and reloaded",
            path.display()
        );
    } else if !apply::loaded(client, path, &hba_pending(config), bound)
        .await
        .with_context(context)?
    {
        // What a run killed between its rename and its reload leaves
        // (or a reload that failed, or an edit by hand): the text is
        // right, the rules Postgres runs are not.
        apply::reload_stale(client, bound)
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
    Ok(())
}

/// Ends the open sessions of the read-write user and `fenceUsers` on a
/// fenced node; a failure is logged, never fatal.
async fn end_write_sessions(config: &Config, client: &tokio_postgres::Client) {
    let bound = config.responder.check_timeout;
    let mut users = vec![config.read_write_user.clone()];
    users.extend(config.fence_users.iter().cloned());
    let ended = tokio::time::timeout(bound, admin::terminate_sessions(client, &users))
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
