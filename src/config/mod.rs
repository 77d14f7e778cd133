//! The configuration: harepd's `conf.yml`, read unchanged, plus
//! pgsql-state's own optional keys (see `conf/pgsql-state.yml`).
//!
//! Loading is `text → RawFile (serde) → validate() → Config`. `validate` is
//! pure and collects every problem, each with its key path and line, so
//! `check-config` can print them all at once.

mod locate;
mod raw;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use raw::RawFile;
use raw::{RawConfig, RawGrpc};

/// Where the config is read from when `-f` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/pgsql-state/pgsql-state.yml";
/// `postgres.conninfo` when unset.
pub const DEFAULT_CONNINFO: &str =
    "host=/var/run/postgresql port=5432 user=postgres dbname=postgres";
/// `runtimeDir` when unset.
pub const DEFAULT_RUNTIME_DIR: &str = "/run/pgsql-state";
/// `checkTimeout` when unset.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// `gRPC.connectionDeadline` when unset (harepd's template value).
pub const DEFAULT_CONNECTION_DEADLINE: Duration = Duration::from_secs(5);
/// `watchDog` when unset (harepd's template value).
pub const DEFAULT_WATCHDOG: Duration = Duration::from_secs(15);

/// How the responder uses the reconciler's verdict (`fencing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fencing {
    /// Ignore verdicts: plain pgsql-state behaviour.
    Off,
    /// A fencing verdict turns `production` into `fenced`, even when stale.
    #[default]
    Verdict,
    /// `production` needs a fresh, confirming verdict bound to this postmaster.
    Strict,
}

impl Fencing {
    /// Parses the config or flag spelling.
    pub fn parse(text: &str) -> Option<Fencing> {
        match text {
            "off" => Some(Fencing::Off),
            "verdict" => Some(Fencing::Verdict),
            "strict" => Some(Fencing::Strict),
            _ => None,
        }
    }
}

/// The responder's output format (`responder.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// The word and a newline.
    #[default]
    Text,
    /// Patroni-style HTTP status codes by path.
    Http,
    /// HAProxy agent-check replies.
    Agent,
}

impl Format {
    /// Parses the config or flag spelling.
    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "text" => Some(Format::Text),
            "http" => Some(Format::Http),
            "agent" => Some(Format::Agent),
            _ => None,
        }
    }
}

/// What the responder needs. It has defaults for everything, so `respond`
/// works with no config file at all.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponderSettings {
    pub conninfo: String,
    pub check_timeout: Duration,
    pub max_lag_bytes: Option<u64>,
    pub fencing: Fencing,
    pub runtime_dir: PathBuf,
    pub format: Format,
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
            lease: 2 * DEFAULT_WATCHDOG + DEFAULT_CONNECTION_DEADLINE,
        }
    }
}

/// TLS for the peer protocol (`gRPC.tls`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tls {
    pub enabled: bool,
    /// Mutual TLS: the peer server accepts only clients whose certificate
    /// `ca` signed. Off by default, since harepd's client sends none.
    pub require_client_cert: bool,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// The peer protocol settings (`gRPC`).
#[derive(Debug, Clone, PartialEq)]
pub struct Grpc {
    pub tls: Tls,
    pub bind_address: String,
    pub bind_port: u16,
    pub server_host_override: Option<String>,
    /// `host:port` of each data-node peer.
    pub neighbours: Vec<String>,
    /// `host:port` of the witness; a witness given without a port takes `bindPort`.
    pub witness: Option<String>,
    pub connection_deadline: Duration,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub node_name: String,
    pub primary_ip: IpAddr,
    pub allow_ro: bool,
    pub hba_config: PathBuf,
    pub haproxy_servers: Vec<IpAddr>,
    pub read_write_user: String,
    pub read_only_user: Option<String>,
    pub auth_allow: String,
    pub auth_deny: String,
    pub repmgr_user: Option<String>,
    pub repmgr_db: Option<String>,
    pub grpc: Grpc,
    pub watchdog: Duration,
    pub fence_users: Vec<String>,
    pub responder: ResponderSettings,
}

/// One thing wrong with the file: where, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Dotted key path, e.g. `harepd.gRPC.bindPort`.
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
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
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", render_problems(.path, .problems))]
    Invalid {
        path: PathBuf,
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
    pub config: Config,
    pub warnings: Vec<Problem>,
    /// Identifies this version of the file (FNV-1a of its bytes), so peers
    /// can tell when nodes run different configs.
    pub generation: u64,
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
    let raw = deserialize_all(text, &mut problems).ok_or_else(|| problems.clone())?;
    let mut warnings = Vec::new();
    let config = validate(raw, text, &mut problems, &mut warnings);
    match config {
        Some(config) if problems.is_empty() => Ok(Loaded {
            config,
            warnings,
            generation: fingerprint(text),
        }),
        _ => Err(problems),
    }
}

/// Deserializes the file, collecting every unknown key and every value of
/// the wrong type rather than stopping at the first: a value that fails is
/// reported and removed, and the rest is deserialized again. Returns the
/// file (with failing values left out) unless the YAML itself is broken.
fn deserialize_all(text: &str, problems: &mut Vec<Problem>) -> Option<RawFile> {
    let mut value: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(value) => value,
        Err(error) => {
            problems.push(yaml_problem(&error));
            return None;
        }
    };
    // Each retry removes one value, so this ends; the bound is a backstop.
    for _ in 0..1000 {
        let mut unknown = Vec::new();
        let mut note_unknown = |path: serde_ignored::Path<'_>| unknown.push(dotted_path(&path));
        let ignoring = serde_ignored::Deserializer::new(value.clone(), &mut note_unknown);
        match serde_path_to_error::deserialize::<_, RawFile>(ignoring) {
            Ok(raw) => {
                for path in unknown {
                    problems.push(Problem {
                        line: locate_dotted(text, &path),
                        path,
                        message: "unknown key".to_string(),
                    });
                }
                return Some(raw);
            }
            Err(error) => {
                let keys: Vec<String> = error.path().iter().filter_map(segment_key).collect();
                let path = keys.join(".");
                problems.push(Problem {
                    line: locate_dotted(text, &path),
                    path: if path.is_empty() { ".".into() } else { path },
                    message: error.into_inner().to_string(),
                });
                if keys.is_empty() || !remove_path(&mut value, &keys) {
                    return None;
                }
            }
        }
    }
    None
}

fn segment_key(segment: &serde_path_to_error::Segment) -> Option<String> {
    use serde_path_to_error::Segment;
    match segment {
        Segment::Map { key } => Some(key.clone()),
        Segment::Seq { index } => Some(index.to_string()),
        Segment::Enum { variant } => Some(variant.clone()),
        Segment::Unknown => None,
    }
}

/// Removes the value at `keys` (map keys or sequence indexes).
fn remove_path(value: &mut serde_yaml::Value, keys: &[String]) -> bool {
    let Some((last, parents)) = keys.split_last() else {
        return false;
    };
    let mut node = value;
    for key in parents {
        let next = match node {
            serde_yaml::Value::Mapping(map) => map.get_mut(key.as_str()),
            serde_yaml::Value::Sequence(seq) => {
                key.parse::<usize>().ok().and_then(|i| seq.get_mut(i))
            }
            _ => None,
        };
        match next {
            Some(next) => node = next,
            None => return false,
        }
    }
    match node {
        serde_yaml::Value::Mapping(map) => map.remove(last.as_str()).is_some(),
        serde_yaml::Value::Sequence(seq) => match last.parse::<usize>() {
            Ok(i) if i < seq.len() => {
                seq.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// `harepd.gRPC.x` for an ignored key, leaving out serde's `?` for options.
fn dotted_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => join(dotted_path(parent), &index.to_string()),
        Path::Map { parent, key } => join(dotted_path(parent), key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => dotted_path(parent),
    }
}

fn join(parent: String, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// A YAML syntax error, with its line.
fn yaml_problem(error: &serde_yaml::Error) -> Problem {
    Problem {
        path: "(yaml syntax)".to_string(),
        line: error.location().map(|l| l.line()),
        message: error.to_string(),
    }
}

fn locate_dotted(text: &str, dotted: &str) -> Option<usize> {
    let parts: Vec<&str> = dotted.split('.').collect();
    locate::line_of(text, &parts)
}

/// Collects problems while checking one file.
struct Checker<'a> {
    text: &'a str,
    problems: &'a mut Vec<Problem>,
}

impl Checker<'_> {
    fn report(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_string(),
            line: locate_dotted(self.text, path),
            message: message.into(),
        });
    }

    fn required<T>(&mut self, path: &str, value: Option<T>) -> Option<T> {
        // A value of the wrong type was already reported (and left out).
        if value.is_none() && problems_lack(self.problems, path) {
            self.report(path, "missing (required)");
        }
        value
    }

    fn ip(&mut self, path: &str, text: &str) -> Option<IpAddr> {
        match text.trim().parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.report(path, format!("{text:?} is not an IP address"));
                None
            }
        }
    }

    fn seconds(&mut self, path: &str, value: Option<f64>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Duration::from_secs_f64(s),
            Some(s) => {
                self.report(
                    path,
                    format!("{s} is not a number of seconds in (0, 86400]"),
                );
                default
            }
        }
    }

    fn non_empty(&mut self, path: &str, value: Option<String>) -> Option<String> {
        match value {
            Some(s) if s.trim().is_empty() => {
                self.report(path, "must not be empty");
                None
            }
            other => other,
        }
    }
}

/// Checks a parsed file; returns a config when nothing required is missing.
/// Problems and warnings are pushed; the caller rejects the config when
/// `problems` is not empty.
fn validate(
    raw: RawFile,
    text: &str,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) -> Option<Config> {
    let mut c = Checker { text, problems };
    let Some(raw) = raw.harepd else {
        c.report(
            "harepd",
            "missing: the file must have the root key `harepd`",
        );
        return None;
    };
    let RawConfig {
        node_name,
        primary_ip,
        allow_ro,
        hba_config,
        haproxy,
        auth_modes,
        repmgr,
        grpc,
        watch_dog,
        logs,
        postgres,
        check_timeout,
        max_lag_bytes,
        fencing,
        fence_users,
        runtime_dir,
        responder,
    } = raw;
    if logs.is_some() {
        warnings.push(Problem {
            path: "harepd.logs".into(),
            line: locate_dotted(text, "harepd.logs"),
            message: "ignored: pgsql-state logs to the journal".into(),
        });
    }

    let node_name = c.non_empty("harepd.nodeName", node_name);
    let node_name = c.required("harepd.nodeName", node_name);
    let primary_ip = c
        .required("harepd.primaryIP", primary_ip)
        .and_then(|ip| c.ip("harepd.primaryIP", &ip));
    let allow_ro = allow_ro.unwrap_or(false);
    let hba_config = c.non_empty("harepd.hbaConfig", hba_config);
    let hba_config = c
        .required("harepd.hbaConfig", hba_config)
        .map(PathBuf::from);

    let haproxy = c.required("harepd.haproxy", haproxy).unwrap_or_default();
    let servers = c
        .required("harepd.haproxy.server", haproxy.server)
        .unwrap_or_default();
    let mut haproxy_servers = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        if let Some(ip) = c.ip(&format!("harepd.haproxy.server.{i}"), server) {
            haproxy_servers.push(ip);
        }
    }
    if servers.is_empty() && problems_lack(c.problems, "harepd.haproxy.server") {
        c.report(
            "harepd.haproxy.server",
            "must list at least one HAProxy address",
        );
    }
    let users = haproxy.users.unwrap_or_default();
    let read_write_user = c.non_empty("harepd.haproxy.users.readWrite", users.read_write);
    let read_write_user = c.required("harepd.haproxy.users.readWrite", read_write_user);
    let read_only_user = c.non_empty("harepd.haproxy.users.readOnly", users.read_only);
    if allow_ro && read_only_user.is_none() {
        c.report(
            "harepd.haproxy.users.readOnly",
            "required when allowRO is true",
        );
    }

    let auth = auth_modes.unwrap_or_default();
    let auth_allow = auth.allow.unwrap_or_else(|| "md5".into());
    let auth_deny = auth.deny.unwrap_or_else(|| "reject".into());
    for (path, method) in [
        ("harepd.authModes.allow", &auth_allow),
        ("harepd.authModes.deny", &auth_deny),
    ] {
        if !is_hba_method(method) {
            c.report(path, format!("{method:?} is not a pg_hba.conf auth method"));
        }
    }
    let repmgr = repmgr.unwrap_or_default();

    let grpc = validate_grpc(&mut c, grpc);
    let watchdog = c.seconds("harepd.watchDog", watch_dog, DEFAULT_WATCHDOG);

    let fencing = match fencing {
        None => Fencing::default(),
        Some(text) => Fencing::parse(&text).unwrap_or_else(|| {
            c.report(
                "harepd.fencing",
                format!("{text:?} is not one of off, verdict, strict"),
            );
            Fencing::default()
        }),
    };
    let format = match responder.and_then(|r| r.format) {
        None => Format::default(),
        Some(text) => Format::parse(&text).unwrap_or_else(|| {
            c.report(
                "harepd.responder.format",
                format!("{text:?} is not one of text, http, agent"),
            );
            Format::default()
        }),
    };
    let conninfo = postgres
        .and_then(|p| p.conninfo)
        .unwrap_or_else(|| DEFAULT_CONNINFO.to_string());
    if let Err(error) = conninfo.parse::<tokio_postgres::Config>() {
        c.report(
            "harepd.postgres.conninfo",
            format!("not a valid conninfo: {error}"),
        );
    }
    if max_lag_bytes == Some(0) {
        c.report(
            "harepd.maxLagBytes",
            "must be above 0 (leave it unset for no bound)",
        );
    }
    let check_timeout = c.seconds("harepd.checkTimeout", check_timeout, DEFAULT_CHECK_TIMEOUT);
    let runtime_dir = runtime_dir.unwrap_or_else(|| DEFAULT_RUNTIME_DIR.into());
    if !runtime_dir.starts_with('/') {
        c.report("harepd.runtimeDir", "must be an absolute path");
    }
    let connection_deadline = grpc
        .as_ref()
        .map_or(DEFAULT_CONNECTION_DEADLINE, |g| g.connection_deadline);

    Some(Config {
        node_name: node_name?,
        primary_ip: primary_ip?,
        allow_ro,
        hba_config: hba_config?,
        haproxy_servers,
        read_write_user: read_write_user?,
        read_only_user,
        auth_allow,
        auth_deny,
        repmgr_user: repmgr.user,
        repmgr_db: repmgr.db,
        grpc: grpc?,
        watchdog,
        fence_users: fence_users.unwrap_or_default(),
        responder: ResponderSettings {
            conninfo,
            check_timeout,
            max_lag_bytes,
            fencing,
            runtime_dir: PathBuf::from(runtime_dir),
            format,
            lease: 2 * watchdog + connection_deadline,
        },
    })
}

fn problems_lack(problems: &[Problem], path: &str) -> bool {
    !problems.iter().any(|p| p.path == path)
}

/// The methods pg_hba.conf accepts (PostgreSQL 15).
fn is_hba_method(method: &str) -> bool {
    matches!(
        method,
        "trust"
            | "reject"
            | "scram-sha-256"
            | "md5"
            | "password"
            | "gss"
            | "sspi"
            | "ident"
            | "peer"
            | "pam"
            | "ldap"
            | "radius"
            | "cert"
    )
}

fn validate_grpc(c: &mut Checker<'_>, grpc: Option<RawGrpc>) -> Option<Grpc> {
    let g = c.required("harepd.gRPC", grpc)?;
    let tls_block = g.tls.unwrap_or_default();
    let mut tls_key =
        |name: &str, nested: Option<String>, flat: Option<String>| -> Option<PathBuf> {
            if nested.is_some() && flat.is_some() {
                c.report(
                    &format!("harepd.gRPC.{name}"),
                    format!("set both here and under gRPC.tls.{name}; keep one"),
                );
            }
            nested.or(flat).map(PathBuf::from)
        };
    let ca = tls_key("ca", tls_block.ca, g.ca);
    let cert = tls_key("cert", tls_block.cert, g.cert);
    let key = tls_key("key", tls_block.key, g.key);
    if tls_block.enabled.is_some() && g.enabled.is_some() {
        c.report(
            "harepd.gRPC.enabled",
            "set both here and under gRPC.tls.enabled; keep one",
        );
    }
    let enabled = tls_block.enabled.or(g.enabled).unwrap_or(false);
    let require_client_cert = tls_block.require_client_cert.unwrap_or(false);
    if require_client_cert && ca.is_none() {
        c.report(
            "harepd.gRPC.tls.requireClientCert",
            "needs gRPC.tls.ca, the CA that signs client certificates",
        );
    }
    if enabled {
        for (name, value) in [("cert", &cert), ("key", &key)] {
            if value.is_none() {
                c.report(
                    &format!("harepd.gRPC.tls.{name}"),
                    "required when TLS is enabled",
                );
            }
        }
    }
    let bind_port = c.required("harepd.gRPC.bindPort", g.bind_port);
    if bind_port == Some(0) {
        c.report("harepd.gRPC.bindPort", "must be a port number above 0");
    }
    let bind_address = c.non_empty("harepd.gRPC.bindAddress", g.bind_address);
    let bind_address = c
        .required("harepd.gRPC.bindAddress", bind_address)
        .filter(|a| c.ip("harepd.gRPC.bindAddress", a).is_some());
    let port = bind_port.unwrap_or(0);
    let mut neighbours = Vec::new();
    for (i, n) in g.neighbours.unwrap_or_default().iter().enumerate() {
        match host_port(n, port) {
            Ok(hp) => neighbours.push(hp),
            Err(message) => c.report(&format!("harepd.gRPC.neighbours.{i}"), message),
        }
    }
    let witness = match g.witness.filter(|w| !w.trim().is_empty()) {
        None => None,
        Some(w) => match host_port(&w, port) {
            Ok(hp) => Some(hp),
            Err(message) => {
                c.report("harepd.gRPC.witness", message);
                None
            }
        },
    };
    let connection_deadline = c.seconds(
        "harepd.gRPC.connectionDeadline",
        g.connection_deadline,
        DEFAULT_CONNECTION_DEADLINE,
    );
    Some(Grpc {
        tls: Tls {
            enabled,
            require_client_cert,
            ca,
            cert,
            key,
        },
        bind_address: bind_address?,
        bind_port: bind_port?,
        server_host_override: g.server_host_override.filter(|s| !s.is_empty()),
        neighbours,
        witness,
        connection_deadline,
    })
}

/// Normalizes `ip`, `ip:port`, `[v6]:port` or `host:port` to `host:port`,
/// taking `default_port` when none is written.
pub fn host_port(text: &str, default_port: u16) -> Result<String, String> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(v4) => Ok(format!("{v4}:{default_port}")),
            IpAddr::V6(v6) => Ok(format!("[{v6}]:{default_port}")),
        };
    }
    if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        return Ok(addr.to_string());
    }
    match text.rsplit_once(':') {
        Some((host, port)) if is_hostname(host) => match port.parse::<u16>() {
            Ok(p) if p > 0 => Ok(format!("{host}:{p}")),
            _ => Err(format!("{text:?}: {port:?} is not a port")),
        },
        None if is_hostname(text) => Ok(format!("{text}:{default_port}")),
        _ => Err(format!(
            "{text:?} is not an address, address:port or host:port"
        )),
    }
}

fn is_hostname(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
        })
}

#[cfg(test)]
mod tests;
