//! The configuration: harepd's `conf.yml`, read unchanged, plus
//! pgsql-state's own optional keys (see `conf/pgsql-state.yml`).
//!
//! Loading is `text → RawFile (serde, [`deserialize`]) → validate() →
//! Config`. Validation is pure and collects every problem, each with its key
//! path and line, so `check-config` can print them all at once.
//!
//! - `raw`: the file as written, every key optional.
//! - `deserialize`: serde with every problem's path and line.
//! - `validate`: the checks, and the [`ResponderFragment`] that the file
//!   and the command line's flags both go through.
//! - `grpc`: the `gRPC` section and `host:port` forms.
//! - `locate`: the line of a key path in block YAML.

mod deserialize;
mod grpc;
mod locate;
mod raw;
mod validate;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use grpc::{host_of, host_port};
use raw::RawFile;
pub use validate::{FragmentSource, ResponderFragment};

/// Where the config is read from when `-f` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/pgsql-state/pgsql-state.yml";
/// `postgres.conninfo` when unset.
pub const DEFAULT_CONNINFO: &str =
    "host=/var/run/postgresql port=5432 user=postgres dbname=postgres";
/// `runtimeDir` when unset.
pub const DEFAULT_RUNTIME_DIR: &str = "/run/pgsql-state";
/// `stateDir` when unset: where the durable claim record lives.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/pgsql-state";
/// `checkTimeout` when unset.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// `gRPC.connectionDeadline` when unset (harepd's template value).
pub const DEFAULT_CONNECTION_DEADLINE: Duration = Duration::from_secs(5);
/// `watchDog` when unset (harepd's template value).
pub const DEFAULT_WATCHDOG: Duration = Duration::from_secs(15);
/// The shortest `watchDog` taken: the reconcile timer runs at it.
pub const MIN_WATCHDOG: Duration = Duration::from_secs(1);

/// How the responder uses the reconciler's verdict (`fencing`, `--fencing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Fencing {
    /// Ignore verdicts: plain pgsql-state behaviour.
    Off,
    /// A fencing verdict turns `production` into `fenced`, even when stale.
    Verdict,
    /// `production` needs a fresh, confirming verdict bound to this
    /// postmaster, past its wait: the default, and the only mode in which
    /// two nodes never answer `production` at once.
    #[default]
    Strict,
}

/// The responder's output format (`responder.format`, `--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The word and a newline.
    #[default]
    Text,
    /// Patroni-style HTTP status codes by path.
    Http,
    /// HAProxy agent-check replies.
    Agent,
}

/// What an agent check answers during maintenance
/// (`responder.agentMaintenance`, `--agent-maintenance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AgentMaintenance {
    /// `drain`: HAProxy shows DRAIN; open sessions finish, no new ones.
    #[default]
    Drain,
    /// `maint`: HAProxy shows MAINT and takes the server out entirely.
    Maint,
}

/// What the responder needs. It has defaults for everything, so `respond`
/// works with no config file at all.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponderSettings {
    /// `postgres.conninfo`.
    pub conninfo: String,
    /// `checkTimeout`: the bound on one answer.
    pub check_timeout: Duration,
    /// `maxLagBytes`: above it a standby answers `lagging`.
    pub max_lag_bytes: Option<u64>,
    /// `fencing`.
    pub fencing: Fencing,
    /// `runtimeDir`: where the verdict and maintenance files live.
    pub runtime_dir: PathBuf,
    /// `responder.format`.
    pub format: Format,
    /// `responder.agentMaintenance`.
    pub agent_maintenance: AgentMaintenance,
    /// The lease a `strict` verdict is valid for: 2 × watchDog + connectionDeadline.
    pub lease: Duration,
}

impl Default for ResponderSettings {
    fn default() -> Self {
        ResponderSettings {
            conninfo: DEFAULT_CONNINFO.to_string(),
            check_timeout: DEFAULT_CHECK_TIMEOUT,
            max_lag_bytes: None,
            fencing: Fencing::default(),
            runtime_dir: PathBuf::from(DEFAULT_RUNTIME_DIR),
            format: Format::default(),
            agent_maintenance: AgentMaintenance::default(),
            lease: crate::fencing::timing::lease(DEFAULT_WATCHDOG, DEFAULT_CONNECTION_DEADLINE),
        }
    }
}

/// TLS for the peer protocol (`gRPC.tls`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tls {
    /// Whether the peer protocol uses TLS.
    pub enabled: bool,
    /// Mutual TLS: the peer server accepts only clients whose certificate
    /// `ca` signed. Off by default, since harepd's client sends none.
    pub require_client_cert: bool,
    /// The CA that signs the peers' certificates.
    pub ca: Option<PathBuf>,
    /// This node's certificate.
    pub cert: Option<PathBuf>,
    /// This node's private key.
    pub key: Option<PathBuf>,
}

/// The peer protocol settings (`gRPC`).
#[derive(Debug, Clone, PartialEq)]
pub struct Grpc {
    /// `gRPC.tls`.
    pub tls: Tls,
    /// The address the peer server binds.
    pub bind_address: String,
    /// The port the peer server binds.
    pub bind_port: u16,
    /// The name expected in peers' certificates, instead of their host.
    pub server_host_override: Option<String>,
    /// `host:port` of each other data node's peer, each once: entries that
    /// are this node, the witness or a repeat are left out (with a
    /// warning) when the file is read.
    pub neighbours: Vec<String>,
    /// `host:port` of the witness; a witness given without a port takes `bindPort`.
    pub witness: Option<String>,
    /// The per-call deadline of the peer protocol.
    pub connection_deadline: Duration,
}

impl Grpc {
    /// Whether this node is the witness: its own `bindAddress:bindPort` is
    /// the configured `gRPC.witness`.
    pub fn is_witness(&self) -> bool {
        let own = host_port(
            &format!("{}:{}", self.bind_address, self.bind_port),
            self.bind_port,
        );
        matches!((own, &self.witness), (Ok(own), Some(w)) if &own == w)
    }

    /// The other voters' peers, each once: the neighbours (validation left
    /// out this node and repeats), then the witness unless this node is
    /// it.
    pub fn other_voters(&self) -> Vec<String> {
        let mut voters = self.neighbours.clone();
        if !self.is_witness() {
            voters.extend(self.witness.iter().cloned());
        }
        voters
    }

    /// How many voters are configured: this node and [`Self::other_voters`].
    /// A majority is more than half of this.
    pub fn voter_count(&self) -> usize {
        1 + self.other_voters().len()
    }

    /// Whether `entry`, a `host:port` whose host name resolved to
    /// `resolved`, is this node's own peer: one of its addresses
    /// (`primary_ip`, `bindAddress`) at its port. The same config copied
    /// to every host (`neighbours: [node1, node2, node3]`) names each node
    /// itself by a name that only resolving tells.
    pub fn resolves_to_self(&self, entry: &str, resolved: &[IpAddr], primary_ip: IpAddr) -> bool {
        let port_is_ours = entry
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse::<u16>().ok())
            == Some(self.bind_port);
        let bind = self.bind_address.parse::<IpAddr>().ok();
        port_is_ours
            && resolved.iter().any(|ip| {
                let ip = ip.to_canonical();
                ip == primary_ip.to_canonical()
                    || bind.is_some_and(|b| !b.is_unspecified() && b.to_canonical() == ip)
                    || (bind.is_some_and(|b| b.is_unspecified()) && ip.is_loopback())
            })
    }
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `nodeName`, as in repmgr.conf.
    pub node_name: String,
    /// `primaryIP`: the address this node replicates on.
    pub primary_ip: IpAddr,
    /// `allowRO`: whether standbys serve read-only traffic.
    pub allow_ro: bool,
    /// `hbaConfig`; `None` on the witness, which has no Postgres.
    pub hba_config: Option<PathBuf>,
    /// `haproxy.server`: the addresses HAProxy connects from.
    pub haproxy_servers: Vec<IpAddr>,
    /// `haproxy.users.readWrite`.
    pub read_write_user: String,
    /// `haproxy.users.readOnly`.
    pub read_only_user: Option<String>,
    /// `authModes.allow`: the pg_hba method for allowed check users.
    pub auth_allow: String,
    /// `authModes.deny`: the pg_hba method for rejected check users.
    pub auth_deny: String,
    /// `repmgr.user`, kept for harepd compatibility.
    pub repmgr_user: Option<String>,
    /// `repmgr.db`, kept for harepd compatibility.
    pub repmgr_db: Option<String>,
    /// `gRPC`.
    pub grpc: Grpc,
    /// `watchDog`: the reconcile interval.
    pub watchdog: Duration,
    /// `fenceUsers`: roles rejected in pg_hba while this node is fenced.
    pub fence_users: Vec<String>,
    /// `stateDir`: where the durable claim record lives (never /run).
    pub state_dir: PathBuf,
    /// `haproxy.check`: the HAProxy timing the new primary's wait covers.
    pub haproxy_check: crate::fencing::timing::HaproxyCheck,
    /// The responder's settings.
    pub responder: ResponderSettings,
}

impl Config {
    /// Whether this node is the witness (see [`Grpc::is_witness`]).
    pub fn is_witness(&self) -> bool {
        self.grpc.is_witness()
    }
}

/// One thing wrong with the file (or a flag): where, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Dotted key path, e.g. `harepd.gRPC.bindPort`, or the flag.
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{line}: {}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// A config that cannot be used. Maps to exit code 78 (EX_CONFIG).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file has problems.
    #[error("{}", render_problems(.path, .problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let mut out = format!("{} has {} problem(s):", path.display(), problems.len());
    for problem in problems {
        out.push_str(&format!("\n  {}:{problem}", path.display()));
    }
    out
}

/// A successfully loaded config and the warnings it produced.
#[derive(Debug)]
pub struct Loaded {
    /// The validated config.
    pub config: Config,
    /// Problems that do not stop the config from being used.
    pub warnings: Vec<Problem>,
    /// Identifies this version of the file (FNV-1a of its bytes), so peers
    /// can tell when nodes run different configs.
    pub generation: u64,
    /// The responder's keys as the file wrote them, for flags to go on top.
    pub responder_fragment: ResponderFragment,
}

/// FNV-1a, 64 bits: a stable fingerprint of the config text.
fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|problems| ConfigError::Invalid {
        path: path.to_path_buf(),
        problems,
    })
}

/// Parses and validates config text. On failure, returns every problem found.
pub fn parse(text: &str) -> Result<Loaded, Vec<Problem>> {
    let mut problems = Vec::new();
    let Some(raw) = deserialize::deserialize_all(text, &mut problems) else {
        return Err(problems);
    };
    let mut warnings = Vec::new();
    let validated = validate::validate(raw, text, &mut problems, &mut warnings);
    match validated {
        Some((config, responder_fragment)) if problems.is_empty() => Ok(Loaded {
            config,
            warnings,
            generation: fingerprint(text),
            responder_fragment,
        }),
        _ => {
            // In the file's order, so an operator reads them top to bottom.
            problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests;
