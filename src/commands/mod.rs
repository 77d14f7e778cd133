//! One function per subcommand, and the mapping of errors to exit codes.
//! This is the command layer: anyhow with context, I/O at the edges.

mod check_config;
mod claims;
mod doctor;
mod haproxy_state;
mod maintenance;
mod peer;
mod promote_check;
mod reconcile;
mod respond;
mod status;
mod systemd_generator;

use std::path::{Path, PathBuf};

use crate::cli::{Cli, Command};
use crate::config::{self, ConfigError, Loaded};

/// Exit code for a config error (EX_CONFIG).
pub const EXIT_CONFIG: i32 = 78;
/// Exit code for a usage error.
pub const EXIT_USAGE: i32 = 2;

/// An error the command already printed where its reader looks (its one
/// line on stdout): exit 1, and nothing more on stderr.
#[derive(Debug, thiserror::Error)]
#[error("(already reported)")]
pub struct Reported;

/// A usage error found after parsing (e.g. a bad `--listen` address).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Respond(args) => respond::run(cli.config.as_deref(), args),
        Command::CheckConfig(args) => check_config::run(cli.config.as_deref(), args),
        Command::Maintenance(args) => maintenance::run(cli.config.as_deref(), args),
        Command::Peer(args) => peer::run(cli.config.as_deref(), args),
        Command::Status(args) => status::run(cli.config.as_deref(), args),
        Command::Reconcile(args) => reconcile::run(cli.config.as_deref(), args),
        Command::PromoteCheck => promote_check::run(cli.config.as_deref()),
        Command::Claims(args) => claims::run(cli.config.as_deref(), args),
        Command::HaproxyState(args) => haproxy_state::run(args),
        Command::Doctor(args) => doctor::run(cli.config.as_deref(), args),
        Command::SystemdGenerator(args) => systemd_generator::run(cli.config.as_deref(), args),
    }
}

/// The exit code for an error: 78 for config errors, 2 for usage, else 1.
pub fn exit_code(error: &anyhow::Error) -> i32 {
    if error
        .chain()
        .any(|e| e.is::<ConfigError>() || e.is::<crate::haproxy_state::ServerStateError>())
    {
        EXIT_CONFIG
    } else if error.chain().any(|e| e.is::<UsageError>()) {
        EXIT_USAGE
    } else {
        1
    }
}

/// Loads the config named by `-f`, or the default file. Without `-f`, a
/// missing default file is `None` when `optional`.
fn load_config(explicit: Option<&Path>, optional: bool) -> Result<Option<Loaded>, ConfigError> {
    let path: PathBuf = explicit.map_or_else(
        || PathBuf::from(config::DEFAULT_CONFIG_PATH),
        Path::to_path_buf,
    );
    if explicit.is_none() && optional && !path.exists() {
        return Ok(None);
    }
    let loaded = config::load(&path)?;
    for warning in &loaded.warnings {
        log::warn!("{}: {warning}", path.display());
    }
    Ok(Some(loaded))
}

/// What this node's timing costs, in lines ([`crate::fencing::price`]).
pub(crate) fn timing_price(config: &crate::config::Config) -> Vec<String> {
    use crate::fencing::price;
    price::price(price::Timing {
        watchdog: config.watchdog,
        connection_deadline: config.grpc.connection_deadline,
        check_timeout: config.responder.check_timeout,
        haproxy: config.haproxy_check,
    })
    .lines(config.responder.fencing == crate::config::Fencing::Strict)
}

/// The other voters' peers to ask, each once, and how many voters are
/// configured (this node among them). An entry whose host name resolves
/// to this node itself is not asked (said in the journal), but it still
/// counts among the configured voters: a resolver's answer (a host file
/// cloned from another node, a spoofed reply) must never shrink the count
/// a majority is taken of. Counting one too many only fences, and the
/// wait counts an entry that gave no vote as a voter that may still
/// confirm anyone.
pub(crate) async fn voters(config: &crate::config::Config) -> (Vec<String>, usize) {
    let bound = std::time::Duration::from_secs(1).min(config.grpc.connection_deadline);
    let entries = config.grpc.other_voters();
    let resolved = futures_resolve(&entries, bound).await;
    let mut others = Vec::new();
    for (entry, addrs) in entries.into_iter().zip(resolved) {
        if config
            .grpc
            .resolves_to_self(&entry, &addrs, config.primary_ip)
        {
            log::warn!(
                "{}: harepd.gRPC.neighbours: {entry} resolves to this node's own peer: not \
                 asked (this node votes with its own record), but still counted among the \
                 configured voters, so a majority needs one more; list only the other nodes",
                config.node_name
            );
        } else {
            others.push(entry);
        }
    }
    (others, config.grpc.voter_count())
}

/// Resolves the host names among `entries` in parallel (addresses are
/// taken as written).
async fn futures_resolve(
    entries: &[String],
    bound: std::time::Duration,
) -> Vec<Vec<std::net::IpAddr>> {
    let mut set = tokio::task::JoinSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let host = crate::config::host_of(entry).to_string();
        set.spawn(async move { (i, crate::resolve::addresses(&host, bound).await) });
    }
    let mut out = vec![Vec::new(); entries.len()];
    while let Some(joined) = set.join_next().await {
        if let Ok((i, addrs)) = joined {
            out[i] = addrs;
        }
    }
    out
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            log::error!("cannot listen for signals; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

/// Binds a TCP listener on `addr` (ip:port); a malformed address is a usage error.
fn bind_tcp(addr: &str, what: &str) -> anyhow::Result<std::net::TcpListener> {
    use anyhow::Context;
    let sockaddr: std::net::SocketAddr = addr
        .parse()
        .map_err(|_| UsageError(format!("{what} {addr:?}: expected ip:port")))?;
    std::net::TcpListener::bind(sockaddr).with_context(|| format!("cannot listen on {addr}"))
}
