//! `pgsql-state doctor`: checks this node as installed, one line per
//! finding with its fix ([`crate::doctor`]), and exits 0 only when nothing
//! failed: the config, the claim record, the runtime and state
//! directories and their owner, the reconcile unit's write paths against
//! `hbaConfig`, the timer's interval against watchDog, HAProxy's check
//! timing and server-state file (with `--haproxy`), what the timing costs
//! ([`crate::fencing::price`]), the kernel's Landlock
//! and seccomp, what the Postgres role may read, and every peer's answer
//! (a voter whose lease or HAProxy term differs from this node's is named).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::cli::DoctorArgs;
use crate::config::{self, Config};
use crate::doctor::{
    all_hold, compare_timing, unit_active_interval, write_paths_cover, Finding, TimingCheck,
};
use crate::fencing::claims_store;
use crate::peer::client::{PeerClient, PeerView};
use crate::peer::proto::{Role, WhatYouKnow};

/// What to do when systemd cannot be asked.
const NO_SYSTEMD: &str =
    "run doctor as root (sudo) on the node where systemd runs the units (without D-Bus, only root reaches systemd)";

/// The user the shipped units run as.
const SERVICE_USER: &str = "postgres";

pub fn run(explicit: Option<&Path>, args: DoctorArgs) -> anyhow::Result<()> {
    crate::logging::init(false);
    let path = explicit.unwrap_or(Path::new(config::DEFAULT_CONFIG_PATH));
    let mut findings = Vec::new();
    let config = match config::load(path) {
        Ok(loaded) => {
            findings.push(Finding::ok(
                "config",
                format!(
                    "{} is valid (node {}, watchDog {} s)",
                    path.display(),
                    loaded.config.node_name,
                    loaded.config.watchdog.as_secs_f64()
                ),
            ));
            // What the file still has that does nothing or is left out (a
            // neighbour that is this node, the witness again, a repeat),
            // with its key and line.
            for warning in &loaded.warnings {
                findings.push(Finding::warn(
                    "config",
                    format!("{}:{warning}", path.display()),
                    "edit the file as the message says; it loads as it is",
                ));
            }
            loaded.config
        }
        Err(e) => {
            let detail = match &e {
                config::ConfigError::Invalid { path, problems } => {
                    let each: Vec<String> = problems
                        .iter()
                        .map(|p| format!("{}:{p}", path.display()))
                        .collect();
                    each.join("; ")
                }
                other => crate::error_text::one_line(other),
            };
            findings.push(Finding::fail(
                "config",
                detail,
                format!(
                    "`pgsql-state -f {} check-config` lists every problem",
                    path.display()
                ),
            ));
            return report(&findings);
        }
    };
    // What this timing costs: facts to weigh, not faults.
    findings.extend(
        super::timing_price(&config)
            .into_iter()
            .map(|l| Finding::ok("timing", l)),
    );
    findings.push(claim_record(&config));
    findings.extend(directories(&config));
    findings.push(write_paths(&config));
    findings.push(timer_interval(&config));
    findings.extend(haproxy(&config, args.haproxy.as_deref()));
    findings.extend(kernel_sandbox());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if !config.is_witness() {
        findings.push(runtime.block_on(postgres_role(&config)));
    }
    findings.extend(runtime.block_on(peers(&config))?);
    report(&findings)
}

fn report(findings: &[Finding]) -> anyhow::Result<()> {
    for f in findings {
        println!("{f}");
    }
    if all_hold(findings) {
        Ok(())
    } else {
        Err(super::Reported.into())
    }
}

fn claim_record(config: &Config) -> Finding {
    let dir = &config.state_dir;
    let fix = format!(
        "`runuser -u {SERVICE_USER} -- pgsql-state claims init --new-cluster` on every voter of a cluster being set up; on a voter that may have voted before, plain `claims init` (it catches up from the other voters before it votes)"
    );
    match claims_store::load(dir) {
        Ok(record) => {
            let claims: Vec<String> = record
                .clusters
                .values()
                .map(|h| {
                    let nodes: Vec<&str> = h.nodes.iter().map(String::as_str).collect();
                    format!("timeline {} by {}", h.timeline, nodes.join(" and "))
                })
                .collect();
            let held = if claims.is_empty() {
                "empty (no claim yet)".to_string()
            } else {
                claims.join("; ")
            };
            if record.catching_up {
                return Finding::warn(
                    "claim record",
                    format!(
                        "{}: {held}, catching up after `claims init`: this node casts no vote yet",
                        dir.display()
                    ),
                    "start this node's peer and the other voters' peers; it votes once it has \
                     read more than half of the other voters' records (a record catching up \
                     gives none: if every voter is catching up, as after a plain `claims init` \
                     on a new cluster, run `claims init --new-cluster` on every voter)",
                );
            }
            Finding::ok("claim record", format!("{}: {held}", dir.display()))
        }
        Err(e) => Finding::fail("claim record", format!("{}: {e}", dir.display()), fix),
    }
}

/// The uid of the user the units run as, if it exists.
fn service_uid() -> Option<u32> {
    let name = std::ffi::CString::new(SERVICE_USER).ok()?;
    // SAFETY: getpwnam with a valid C string; the result is read at once
    // and not kept.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    // SAFETY: a non-null entry points to a valid passwd struct.
    (!entry.is_null()).then(|| unsafe { (*entry).pw_uid })
}

fn directories(config: &Config) -> Vec<Finding> {
    let uid = service_uid();
    let fix = "`systemd-tmpfiles --create /usr/lib/tmpfiles.d/pgsql-state.conf` (the package does it at install)";
    [
        ("runtime directory", &config.responder.runtime_dir),
        ("state directory", &config.state_dir),
    ]
    .into_iter()
    .map(|(what, dir)| match (std::fs::metadata(dir), uid) {
        (Err(e), _) => Finding::fail(what, format!("{}: {e}", dir.display()), fix),
        (Ok(m), _) if !m.is_dir() => {
            Finding::fail(what, format!("{} is not a directory", dir.display()), fix)
        }
        (Ok(m), Some(uid)) if m.uid() != uid => Finding::fail(
            what,
            format!(
                "{} belongs to uid {}, not {SERVICE_USER} ({uid}): the reconciler cannot write it",
                dir.display(),
                m.uid()
            ),
            format!("`chown {SERVICE_USER}: {}`", dir.display()),
        ),
        (Ok(_), None) => Finding::warn(
            what,
            format!(
                "{} exists; there is no {SERVICE_USER} user to own it",
                dir.display()
            ),
            "install PostgreSQL, whose package creates the user",
        ),
        (Ok(_), Some(_)) => {
            Finding::ok(what, format!("{}, owned by {SERVICE_USER}", dir.display()))
        }
    })
    .collect()
}

/// `systemctl show -P PROPERTY UNIT`, or why systemd could not be asked.
fn systemctl_show(unit: &str, property: &str) -> Result<String, String> {
    let out = Command::new("systemctl")
        .args(["show", "-P", property, unit])
        .output()
        .map_err(|e| format!("cannot run systemctl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "systemctl show {unit}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn write_paths(config: &Config) -> Finding {
    const WHAT: &str = "reconciler's write paths";
    let Some(hba) = &config.hba_config else {
        return Finding::ok(WHAT, "no hbaConfig (the witness)");
    };
    match systemctl_show("pgsql-state-reconcile.service", "ReadWritePaths") {
        Err(e) => Finding::warn(WHAT, e, NO_SYSTEMD),
        Ok(paths) if write_paths_cover(&paths, hba) => Finding::ok(
            WHAT,
            format!("{} is under ReadWritePaths ({paths})", hba.display()),
        ),
        Ok(paths) => Finding::fail(
            WHAT,
            format!(
                "hbaConfig {} is not under ReadWritePaths ({paths}): every run fails to write it",
                hba.display()
            ),
            format!(
                "`systemctl edit pgsql-state-reconcile.service`: [Service] ReadWritePaths={}",
                hba.parent().unwrap_or(Path::new("/")).display()
            ),
        ),
    }
}

fn timer_interval(config: &Config) -> Finding {
    const WHAT: &str = "reconcile timer";
    let watchdog = config.watchdog;
    match systemctl_show("pgsql-state-reconcile.timer", "TimersMonotonic") {
        Err(e) => Finding::warn(WHAT, e, NO_SYSTEMD),
        Ok(shown) => match unit_active_interval(&shown) {
            None => Finding::fail(
                WHAT,
                format!("no OnUnitActiveSec in {shown:?}: the reconciler runs once"),
                "`systemctl daemon-reload` (the generator sets it to watchDog)",
            ),
            Some(every) if every > watchdog => Finding::fail(
                WHAT,
                format!(
                    "every {} s, slower than watchDog ({} s): the primary's lease lapses between runs",
                    every.as_secs_f64(),
                    watchdog.as_secs_f64()
                ),
                "remove the timer drop-in that sets OnUnitActiveSec, then `systemctl daemon-reload` (the generator sets watchDog)",
            ),
            Some(every) => Finding::ok(
                WHAT,
                format!("every {} s (watchDog {} s)", every.as_secs_f64(), watchdog.as_secs_f64()),
            ),
        },
    }
}

fn haproxy(config: &Config, cfg: Option<&Path>) -> Vec<Finding> {
    let Some(cfg) = cfg else {
        return vec![Finding::warn(
            "HAProxy",
            "no --haproxy given: check timing and server-state file not checked",
            "`pgsql-state doctor --haproxy /etc/haproxy/haproxy.cfg` on the HAProxy host",
        )];
    };
    let text = match std::fs::read_to_string(cfg) {
        Ok(text) => text,
        Err(e) => {
            return vec![Finding::fail(
                "HAProxy",
                format!("cannot read {}: {e}", cfg.display()),
                "give the haproxy.cfg HAProxy runs with",
            )]
        }
    };
    let mut out = Vec::new();
    match crate::haproxy_cfg::check_timing(&text, "prod") {
        Err(e) => out.push(Finding::fail(
            "haproxy.check",
            format!("{}: {e}", cfg.display()),
            "see haproxy/haproxy.cfg in the package's examples",
        )),
        Ok(actual) => {
            let wrong = crate::haproxy_cfg::mismatches(&config.haproxy_check, &actual);
            if wrong.is_empty() {
                out.push(Finding::ok(
                    "haproxy.check",
                    format!("matches {}'s prod pool", cfg.display()),
                ));
            } else {
                let what: Vec<String> = wrong
                    .iter()
                    .map(|(key, ours, theirs)| format!("{key} is {ours}, HAProxy's {theirs}"))
                    .collect();
                out.push(Finding::fail(
                    "haproxy.check",
                    format!(
                        "{}: the new primary's wait would not cover HAProxy",
                        what.join(", ")
                    ),
                    format!("set harepd.haproxy.check to {}'s timing", cfg.display()),
                ));
            }
        }
    }
    match crate::haproxy_state::state_file(&text) {
        Err(e) => out.push(Finding::fail(
            "server-state file",
            format!("{}: {e}", cfg.display()),
            "`server-state-file` and `load-server-state-from-file global`, as the shipped haproxy.cfg",
        )),
        Ok(file) if file.is_file() => out.push(Finding::ok(
            "server-state file",
            format!("{} exists", file.display()),
        )),
        Ok(file) => out.push(Finding::fail(
            "server-state file",
            format!("{} does not exist: HAProxy starts every server UP", file.display()),
            "install the haproxy.service drop-in from the package's examples (it runs `pgsql-state haproxy-state` before each start), or run it once",
        )),
    }
    out
}

fn kernel_sandbox() -> Vec<Finding> {
    // SAFETY: landlock_create_ruleset with a null attribute, size 0 and
    // LANDLOCK_CREATE_RULESET_VERSION (1) only returns the ABI version.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    let landlock = if abi >= 6 {
        Finding::ok(
            "Landlock",
            format!("ABI {abi}: the responder is fully confined"),
        )
    } else if abi >= 1 {
        Finding::warn(
            "Landlock",
            format!("ABI {abi}: the responder is partly confined (no truncate, ioctl or signal scoping)"),
            "a kernel with Landlock ABI 6 (6.12 or later)",
        )
    } else {
        Finding::warn(
            "Landlock",
            "not available in this kernel: the responder runs with the unit's hardening only",
            "a kernel with CONFIG_SECURITY_LANDLOCK and landlock in lsm=",
        )
    };
    // SAFETY: PR_GET_SECCOMP takes no pointers.
    let mode = unsafe { libc::prctl(libc::PR_GET_SECCOMP) };
    let seccomp = if mode >= 0 {
        Finding::ok(
            "seccomp",
            "available: the responder filters its system calls",
        )
    } else {
        Finding::warn(
            "seccomp",
            "not available in this kernel: the responder's system calls are not filtered",
            "a kernel with CONFIG_SECCOMP_FILTER",
        )
    };
    vec![landlock, seccomp]
}

async fn postgres_role(config: &Config) -> Finding {
    const WHAT: &str = "Postgres role";
    let bound = config.responder.check_timeout;
    let asked = tokio::time::timeout(bound, async {
        let pg_config =
            crate::pg::parse_conninfo(&config.responder.conninfo).map_err(|e| e.to_string())?;
        let (client, _driver) = crate::pg::connect(&pg_config)
            .await
            .map_err(|e| crate::error_text::one_line(&e))?;
        let rows = client
            .simple_query("SELECT pg_has_role('pg_read_all_stats', 'USAGE')::text, current_user")
            .await
            .map_err(|e| e.to_string())?;
        rows.iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some((
                    r.get(0).unwrap_or("false") == "true",
                    r.get(1).unwrap_or("?").to_string(),
                )),
                _ => None,
            })
            .ok_or_else(|| "no row".to_string())
    })
    .await
    .unwrap_or_else(|_| {
        Err(format!(
            "no answer within checkTimeout ({} s)",
            bound.as_secs_f64()
        ))
    });
    match asked {
        Err(e) => Finding::fail(
            WHAT,
            format!("cannot ask Postgres with {}: {e}", config.responder.conninfo),
            "check postgres.conninfo and pg_hba.conf for the local connection",
        ),
        Ok((false, user)) if config.responder.max_lag_bytes.is_some() => Finding::fail(
            WHAT,
            format!("{user} cannot read pg_stat_wal_receiver, which maxLagBytes needs"),
            format!("`GRANT pg_read_all_stats TO {user}` (or pg_monitor)"),
        ),
        Ok((false, user)) => Finding::warn(
            WHAT,
            format!("{user} cannot read pg_stat_wal_receiver: a standby's upstream and timeline are hidden"),
            format!("`GRANT pg_read_all_stats TO {user}`"),
        ),
        Ok((true, user)) => Finding::ok(WHAT, format!("{user} reads what the checks need")),
    }
}

async fn peers(config: &Config) -> anyhow::Result<Vec<Finding>> {
    let own = config::host_port(
        &format!("{}:{}", config.grpc.bind_address, config.grpc.bind_port),
        config.grpc.bind_port,
    )
    .map_err(anyhow::Error::msg)?;
    let addrs = crate::status::peers_to_ask(
        &own,
        &config.grpc.neighbours,
        config.grpc.witness.as_deref(),
    );
    let client = PeerClient::new(&config.grpc, WhatYouKnow::default())?;
    let deadline = config.grpc.connection_deadline + Duration::from_secs(1);
    // This node's timing, as its own peer reports it to the others.
    let ours = (
        crate::fencing::timing::lease(config.watchdog, config.grpc.connection_deadline).as_millis()
            as u64,
        crate::fencing::timing::haproxy_term(&config.haproxy_check).as_millis() as u64,
    );
    let views = tokio::time::timeout(deadline * 2, client.ask_all(&addrs))
        .await
        .unwrap_or_default();
    Ok(addrs
        .iter()
        .map(
            |addr| match views.iter().find(|(a, _)| a == addr).map(|(_, v)| v) {
                Some(PeerView::Answered(a)) if *addr != own && a.node_name == config.node_name => {
                Finding::fail(
                    "peer",
                    format!(
                        "{addr} answers as {} itself: a neighbour that is this node counts its vote twice",
                        a.node_name
                    ),
                    "list the other nodes' peers in gRPC.neighbours, and the witness in gRPC.witness",
                )
            }
            Some(PeerView::Answered(a)) => {
                let answered = format!(
                    "{addr}: {} answered (timeline {}, sees master [{}])",
                    a.node_name,
                    a.timeline,
                    a.master.join(", ")
                );
                let role = crate::peer::opinion::role_of(a);
                match compare_timing(
                    ours,
                    (a.lease_ms, a.haproxy_term_ms),
                    role == Role::Primary,
                    role == Role::Witness,
                ) {
                    TimingCheck::Same => Finding::ok("peer", answered),
                    TimingCheck::Differs(words) if a.node_name == config.node_name => Finding::warn(
                        "peer",
                        format!("{addr}: this node's own peer runs another config: {words}"),
                        "restart pgsql-state-peer on this node (it reads its config when it starts)",
                    ),
                    TimingCheck::Differs(words) => Finding::warn(
                        "peer",
                        format!("{addr}: {} answered, but {words}", a.node_name),
                        "give every node the same watchDog, connectionDeadline and haproxy.check \
                         (README, \"Every node's timing must cover every other's\", gives the order)",
                    ),
                    TimingCheck::Uncovered(words) => Finding::fail(
                        "peer",
                        format!(
                            "{addr}: {} answers as the primary, and {words}: were it lost now, this \
                             node, promoted, would stop waiting before its lease and HAProxy's term \
                             are over",
                            a.node_name
                        ),
                        "give this node the primary's watchDog, connectionDeadline and \
                         haproxy.check (lengthen the standbys' first)",
                    ),
                }
            }
                Some(PeerView::Unreachable(e)) => Finding::fail(
                    "peer",
                    format!("{addr}: {e}"),
                    "is its pgsql-state-peer running, and port open from here?",
                ),
                None => Finding::fail(
                    "peer",
                    format!("{addr}: no answer in {} s", (deadline * 2).as_secs_f64()),
                    "is its pgsql-state-peer running, and port open from here?",
                ),
            },
        )
        .collect())
}
