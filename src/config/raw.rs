//! The YAML file as written: harepd's `conf.yml` schema plus pgsql-state's
//! optional keys. Every field is optional here so that one parse can report
//! every missing key at once; `validate` turns this into a [`super::Config`].

use serde::Deserialize;

/// The whole file: a single root key, `harepd`, as in harepd's template.
#[derive(Debug, Default, Deserialize)]
pub struct RawFile {
    /// The only root key.
    pub harepd: Option<RawConfig>,
}

/// Everything under `harepd:`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawConfig {
    pub node_name: Option<String>,
    #[serde(rename = "primaryIP")]
    pub primary_ip: Option<String>,
    #[serde(rename = "allowRO")]
    pub allow_ro: Option<bool>,
    pub hba_config: Option<String>,
    pub haproxy: Option<RawHaproxy>,
    pub auth_modes: Option<RawAuthModes>,
    pub repmgr: Option<RawRepmgr>,
    #[serde(rename = "gRPC")]
    pub grpc: Option<RawGrpc>,
    pub watch_dog: Option<f64>,
    /// Accepted for harepd compatibility and ignored: logs go to the journal.
    pub logs: Option<serde_yaml::Value>,
    // pgsql-state's own keys.
    pub postgres: Option<RawPostgres>,
    pub check_timeout: Option<f64>,
    pub max_lag_bytes: Option<u64>,
    pub fencing: Option<super::Fencing>,
    pub fence_users: Option<Vec<String>>,
    pub runtime_dir: Option<String>,
    pub state_dir: Option<String>,
    pub responder: Option<RawResponder>,
}

/// `haproxy:`: where the health checks come from and which users they use.
#[derive(Debug, Default, Deserialize)]
pub struct RawHaproxy {
    pub server: Option<Vec<String>>,
    pub users: Option<RawUsers>,
    pub check: Option<RawCheck>,
}

/// `haproxy.check:`: HAProxy's check timing, in seconds, which the new
/// primary's wait must cover.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawCheck {
    pub inter: Option<f64>,
    pub fastinter: Option<f64>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    pub timeout_check: Option<f64>,
}

/// `haproxy.users:`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawUsers {
    pub read_only: Option<String>,
    pub read_write: Option<String>,
}

/// `authModes:`: the pg_hba methods for allowed and rejected check users.
#[derive(Debug, Default, Deserialize)]
pub struct RawAuthModes {
    pub allow: Option<String>,
    pub deny: Option<String>,
}

/// `repmgr:`: kept for harepd compatibility.
#[derive(Debug, Default, Deserialize)]
pub struct RawRepmgr {
    pub user: Option<String>,
    pub db: Option<String>,
}

/// `gRPC:`. The TLS keys may sit under `tls:` (harepd's `conf.yml`) or
/// directly under `gRPC:` beside an empty `tls:` (harepd's README prints the
/// template that way).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawGrpc {
    pub tls: Option<RawTls>,
    pub enabled: Option<bool>,
    pub ca: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub bind_port: Option<u16>,
    pub bind_address: Option<String>,
    pub server_host_override: Option<String>,
    pub neighbours: Option<Vec<String>>,
    pub witness: Option<String>,
    pub connection_deadline: Option<f64>,
}

/// `gRPC.tls:`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawTls {
    pub enabled: Option<bool>,
    pub require_client_cert: Option<bool>,
    pub ca: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// `postgres:`: how to reach the local Postgres.
#[derive(Debug, Default, Deserialize)]
pub struct RawPostgres {
    pub conninfo: Option<String>,
}

/// `responder:`: how `respond` answers.
#[derive(Debug, Default, Deserialize)]
pub struct RawResponder {
    pub format: Option<super::Format>,
    #[serde(rename = "agentMaintenance")]
    pub agent_maintenance: Option<super::AgentMaintenance>,
}
