//! The command line (clap). `-f/--config` comes before the subcommand, as
//! in harepd; flags of a subcommand override the keys of the config file.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{AgentMaintenance, Fencing, Format, ResponderFragment};

/// Tells HAProxy which PostgreSQL node is the primary.
#[derive(Debug, Parser)]
#[command(name = "pgsql-state", version, about)]
pub struct Cli {
    /// The YAML config (harepd's conf.yml schema). `respond` works without one.
    #[arg(short = 'f', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Answer one health check (systemd Accept=yes, inetd), or serve them (--listen, Accept=no).
    Respond(RespondArgs),
    /// Validate the config and print every problem with its key and line.
    CheckConfig(CheckConfigArgs),
    /// Drain this node: the responder answers `maintenance` until turned off.
    Maintenance(MaintenanceArgs),
    /// Serve this node's facts and opinion over gRPC (models.ClusterInfo), as a data node or the witness.
    Peer(PeerArgs),
    /// Print the whole cluster: each node's role, timeline, lag, verdict and what its 5431 says.
    Status(StatusArgs),
    /// Decide by quorum and timeline, edit pg_hba.conf's managed block, and write the verdict.
    Reconcile(ReconcileArgs),
    /// May this standby be promoted now? Exit 0 only when it reaches a majority of the voters and none is, sees, or recently confirmed another primary (for repmgr's failover_validation_command).
    PromoteCheck,
    /// This voter's durable claim record: `init` (re)creates it, `show` prints it.
    Claims(ClaimsArgs),
    /// Write HAProxy's server-state file so HAProxy starts every server DOWN (before a start or reload).
    HaproxyState(HaproxyStateArgs),
    /// As a systemd generator: set the reconcile timer's interval to the config's watchDog.
    SystemdGenerator(SystemdGeneratorArgs),
    /// Check this node as installed, one line per finding with its fix; exit 0 only when nothing failed.
    Doctor(DoctorArgs),
}

/// `doctor` flags.
#[derive(Debug, Default, clap::Args)]
pub struct DoctorArgs {
    /// Also check this haproxy.cfg: its prod pool's timing against
    /// haproxy.check, and its server-state file.
    #[arg(long, value_name = "FILE")]
    pub haproxy: Option<PathBuf>,
}

/// `systemd-generator` arguments: the three directories systemd passes to
/// a generator (only the first is written).
#[derive(Debug, clap::Args)]
pub struct SystemdGeneratorArgs {
    /// Where generated units and drop-ins go (/run/systemd/generator).
    #[arg(value_name = "NORMAL_DIR")]
    pub normal_dir: PathBuf,
    /// The early directory (unused).
    #[arg(value_name = "EARLY_DIR")]
    pub early_dir: Option<PathBuf>,
    /// The late directory (unused).
    #[arg(value_name = "LATE_DIR")]
    pub late_dir: Option<PathBuf>,
}

/// `haproxy-state` arguments.
#[derive(Debug, clap::Args)]
pub struct HaproxyStateArgs {
    /// The haproxy.cfg whose servers to write (its `server-state-file` is where).
    #[arg(value_name = "HAPROXY_CFG")]
    pub haproxy_cfg: PathBuf,
    /// Write here instead of the config's `server-state-file`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Start every server DOWN, even those the running HAProxy already checked.
    #[arg(long)]
    pub all_down: bool,
    /// The responder's port: a server whose check reads it is one
    /// pgsql-state checks, and gets a row (no other server does).
    #[arg(long, value_name = "PORT", default_value_t = 5431)]
    pub check_port: u16,
}

/// `check-config` flags.
#[derive(Debug, Default, clap::Args)]
pub struct CheckConfigArgs {
    /// Also compare haproxy.check with the `prod` pool of this haproxy.cfg.
    #[arg(long, value_name = "FILE")]
    pub haproxy: Option<PathBuf>,
}

/// `reconcile` flags.
#[derive(Debug, Default, clap::Args)]
pub struct ReconcileArgs {
    /// Print the decision and the pg_hba.conf diff; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `claims` arguments.
#[derive(Debug, clap::Args)]
pub struct ClaimsArgs {
    /// `init` (re)creates an empty record, forgetting every claim and tie;
    /// `show` prints it.
    #[arg(value_enum)]
    pub action: ClaimsAction,
    /// Where the record lives (stateDir).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// With `init`: this voter belongs to a cluster being set up, in which
    /// nobody has voted yet, so it votes at once. Without it, a
    /// re-initialised record (a replaced disk, a cleared tie) casts no vote
    /// until it has read a majority of the other voters' records.
    #[arg(long)]
    pub new_cluster: bool,
}

/// What to do with the claim record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClaimsAction {
    /// (Re)create an empty record.
    Init,
    /// Print the record.
    Show,
}

/// `peer` flags.
#[derive(Debug, Default, clap::Args)]
pub struct PeerArgs {
    /// Listen on ADDR (ip:port) instead of gRPC.bindAddress:bindPort.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

/// `status` flags.
#[derive(Debug, Default, clap::Args)]
pub struct StatusArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// The port each node's responder listens on.
    #[arg(long, value_name = "PORT", default_value_t = 5431)]
    pub check_port: u16,
    /// Ask only the peer at HOST:PORT and print its whole answer as JSON.
    #[arg(long, value_name = "HOST:PORT")]
    pub ask: Option<String>,
    /// Refresh the table every --interval seconds, printing each change as
    /// it happens (like `patronictl list -W`), until interrupted.
    #[arg(long, short = 'W')]
    pub watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    pub interval: f64,
    /// With --watch, stop after this many refreshes.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

/// `respond` flags; each overrides its config key.
#[derive(Debug, Default, clap::Args)]
pub struct RespondArgs {
    /// libpq key=value conninfo of the local Postgres (postgres.conninfo).
    #[arg(long, value_name = "CONNINFO")]
    pub conninfo: Option<String>,
    /// Bound on one answer, in seconds (checkTimeout).
    #[arg(long, value_name = "SECONDS")]
    pub check_timeout: Option<f64>,
    /// Above this replay lag a standby answers `lagging` (maxLagBytes).
    #[arg(long, value_name = "BYTES")]
    pub max_lag_bytes: Option<u64>,
    /// How the reconciler's verdict is used (fencing).
    #[arg(long, value_enum)]
    pub fencing: Option<Fencing>,
    /// Where the verdict and maintenance files live (runtimeDir).
    #[arg(long, value_name = "DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// Output format (responder.format).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// What the agent format answers during maintenance
    /// (responder.agentMaintenance).
    #[arg(long, value_enum)]
    pub agent_maintenance: Option<AgentMaintenance>,
    /// Serve checks on ADDR (ip:port, or a Unix socket path) until stopped.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

impl RespondArgs {
    /// The flags as a config fragment, to be validated like the file's keys.
    pub fn fragment(&self) -> ResponderFragment {
        ResponderFragment {
            conninfo: self.conninfo.clone(),
            check_timeout: self.check_timeout,
            max_lag_bytes: self.max_lag_bytes,
            fencing: self.fencing,
            runtime_dir: self.runtime_dir.clone(),
            format: self.format,
            agent_maintenance: self.agent_maintenance,
        }
    }
}

/// `maintenance` arguments.
#[derive(Debug, clap::Args)]
pub struct MaintenanceArgs {
    /// `on` drains this node, `off` puts it back.
    #[arg(value_enum)]
    pub switch: Switch,
    /// Where the flag file lives (runtimeDir).
    #[arg(long, value_name = "DIR")]
    pub runtime_dir: Option<PathBuf>,
}

/// on / off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// Drain this node.
    On,
    /// Put it back.
    Off,
}
