//! Checking a parsed file, as pure functions: every problem is collected
//! with its key path and line. The responder's keys are a
//! [`ResponderFragment`], which the command line's flags also are, so a
//! flag is refused exactly when the same value in the file would be.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::deserialize::locate_dotted;
use super::grpc::validate_grpc;
use super::raw::RawConfig;
use super::{
    AgentMaintenance, Config, Fencing, Format, Grpc, Problem, ResponderSettings,
    DEFAULT_CHECK_TIMEOUT, DEFAULT_CONNECTION_DEADLINE, DEFAULT_CONNINFO, DEFAULT_RUNTIME_DIR,
    DEFAULT_STATE_DIR, DEFAULT_WATCHDOG, MIN_WATCHDOG,
};

/// The responder's settings as written, every one optional: the file's
/// keys, or the command line's flags. [`ResponderFragment::overlay`] puts
/// flags on top of the file; [`ResponderFragment::validate`] checks either.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponderFragment {
    /// `postgres.conninfo` / `--conninfo`.
    pub conninfo: Option<String>,
    /// `checkTimeout` / `--check-timeout`, in seconds.
    pub check_timeout: Option<f64>,
    /// `maxLagBytes` / `--max-lag-bytes`.
    pub max_lag_bytes: Option<u64>,
    /// `fencing` / `--fencing`.
    pub fencing: Option<Fencing>,
    /// `runtimeDir` / `--runtime-dir`.
    pub runtime_dir: Option<PathBuf>,
    /// `responder.format` / `--format`.
    pub format: Option<Format>,
    /// `responder.agentMaintenance` / `--agent-maintenance`.
    pub agent_maintenance: Option<AgentMaintenance>,
}

/// Where a fragment came from, which decides how its problems are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentSource {
    /// The YAML file: problems name the key path.
    File,
    /// The command line: problems name the flag.
    Flags,
}

impl FragmentSource {
    fn name(self, setting: &'static str) -> &'static str {
        let (file, flag) = match setting {
            "conninfo" => ("harepd.postgres.conninfo", "--conninfo"),
            "checkTimeout" => ("harepd.checkTimeout", "--check-timeout"),
            "maxLagBytes" => ("harepd.maxLagBytes", "--max-lag-bytes"),
            "runtimeDir" => ("harepd.runtimeDir", "--runtime-dir"),
            _ => (setting, setting),
        };
        match self {
            FragmentSource::File => file,
            FragmentSource::Flags => flag,
        }
    }
}

impl ResponderFragment {
    /// This fragment with every setting of `top` that is set put over it.
    pub fn overlay(self, top: ResponderFragment) -> ResponderFragment {
        ResponderFragment {
            conninfo: top.conninfo.or(self.conninfo),
            check_timeout: top.check_timeout.or(self.check_timeout),
            max_lag_bytes: top.max_lag_bytes.or(self.max_lag_bytes),
            fencing: top.fencing.or(self.fencing),
            runtime_dir: top.runtime_dir.or(self.runtime_dir),
            format: top.format.or(self.format),
            agent_maintenance: top.agent_maintenance.or(self.agent_maintenance),
        }
    }

    /// Checks the fragment and fills in the defaults; `lease` comes from
    /// the file's watchDog and connectionDeadline. `text` is the file's
    /// text, for lines (empty for flags).
    pub fn validate(
        &self,
        source: FragmentSource,
        text: &str,
        lease: Duration,
    ) -> Result<ResponderSettings, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let mut c = Checker {
            text,
            problems: &mut problems,
            warnings: &mut warnings,
        };
        let settings = self.check(&mut c, source, lease);
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(problems)
        }
    }

    fn check(
        &self,
        c: &mut Checker<'_>,
        source: FragmentSource,
        lease: Duration,
    ) -> ResponderSettings {
        let conninfo = self
            .conninfo
            .clone()
            .unwrap_or_else(|| DEFAULT_CONNINFO.to_string());
        if let Err(error) = conninfo.parse::<tokio_postgres::Config>() {
            c.report(
                source.name("conninfo"),
                format!(
                    "not a valid conninfo: {}",
                    crate::error_text::one_line(&error)
                ),
            );
        }
        if self.max_lag_bytes == Some(0) {
            c.report(
                source.name("maxLagBytes"),
                "must be above 0 (leave it unset for no bound)",
            );
        }
        let check_timeout = c.seconds(
            source.name("checkTimeout"),
            self.check_timeout,
            DEFAULT_CHECK_TIMEOUT,
        );
        let runtime_dir = self
            .runtime_dir
            .clone()
            .unwrap_or_else(|| DEFAULT_RUNTIME_DIR.into());
        if !runtime_dir.is_absolute() {
            c.report(source.name("runtimeDir"), "must be an absolute path");
        }
        ResponderSettings {
            conninfo,
            check_timeout,
            max_lag_bytes: self.max_lag_bytes,
            fencing: self.fencing.unwrap_or_default(),
            runtime_dir,
            format: self.format.unwrap_or_default(),
            agent_maintenance: self.agent_maintenance.unwrap_or_default(),
            lease,
        }
    }
}

/// Collects problems while checking one file.
pub(super) struct Checker<'a> {
    pub(super) text: &'a str,
    pub(super) problems: &'a mut Vec<Problem>,
    pub(super) warnings: &'a mut Vec<Problem>,
}

impl Checker<'_> {
    pub(super) fn report(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_string(),
            line: locate_dotted(self.text, path),
            message: message.into(),
        });
    }

    /// A warning: the file loads, and the operator is told.
    pub(super) fn warn(&mut self, path: &str, message: impl Into<String>) {
        self.warnings.push(Problem {
            path: path.to_string(),
            line: locate_dotted(self.text, path),
            message: message.into(),
        });
    }

    pub(super) fn required<T>(&mut self, path: &str, value: Option<T>) -> Option<T> {
        // A value of the wrong type was already reported (and left out).
        if value.is_none() && problems_lack(self.problems, path) {
            self.report(path, "missing (required)");
        }
        value
    }

    pub(super) fn ip(&mut self, path: &str, text: &str) -> Option<IpAddr> {
        match text.trim().parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.report(path, format!("{text:?} is not an IP address"));
                None
            }
        }
    }

    pub(super) fn seconds(
        &mut self,
        path: &str,
        value: Option<f64>,
        default: Duration,
    ) -> Duration {
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

    pub(super) fn non_empty(&mut self, path: &str, value: Option<String>) -> Option<String> {
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
pub(super) fn validate(
    raw: super::RawFile,
    text: &str,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) -> Option<(Config, ResponderFragment)> {
    let mut c = Checker {
        text,
        problems,
        warnings,
    };
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
        state_dir,
        responder,
    } = raw;
    if logs.is_some() {
        c.warn("harepd.logs", "ignored: pgsql-state logs to the journal");
    }

    let node_name = c.non_empty("harepd.nodeName", node_name);
    let node_name = c.required("harepd.nodeName", node_name).filter(|name| {
        match crate::fencing::claims::check_node_name(name) {
            Ok(()) => true,
            Err(why) => {
                c.report(
                    "harepd.nodeName",
                    format!(
                        "{name:?} cannot be a node name: {why} (a node name is one word of at \
                         most {} bytes, with no white space or control characters, like \
                         repmgr's node_name)",
                        crate::fencing::claims::MAX_NODE_NAME_BYTES
                    ),
                );
                false
            }
        }
    });
    let primary_ip = c
        .required("harepd.primaryIP", primary_ip)
        .and_then(|ip| c.ip("harepd.primaryIP", &ip));
    let allow_ro = allow_ro.unwrap_or(false);

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
    let haproxy_check = check_timing(&mut c, haproxy.check);
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

    let grpc = validate_grpc(&mut c, grpc, primary_ip);
    let watchdog = c.seconds("harepd.watchDog", watch_dog, DEFAULT_WATCHDOG);
    // The reconcile timer runs every watchDog, and its service has no
    // start limit: a millisecond would run it back to back.
    let watchdog = if watchdog < MIN_WATCHDOG {
        c.warn(
            "harepd.watchDog",
            format!(
                "{} s is below the floor of {} s: taken as {} s (the reconcile timer \
                 would otherwise run back to back)",
                watchdog.as_secs_f64(),
                MIN_WATCHDOG.as_secs_f64(),
                MIN_WATCHDOG.as_secs_f64()
            ),
        );
        MIN_WATCHDOG
    } else {
        watchdog
    };

    let connection_deadline = grpc
        .as_ref()
        .map_or(DEFAULT_CONNECTION_DEADLINE, |g| g.connection_deadline);
    // The witness has no Postgres: its hbaConfig and postgres keys (which
    // harepd's template has) are optional and ignored.
    let witness = grpc.as_ref().is_some_and(Grpc::is_witness);
    let hba_config = if witness {
        None
    } else {
        let hba_config = c.non_empty("harepd.hbaConfig", hba_config);
        c.required("harepd.hbaConfig", hba_config)
            .map(PathBuf::from)
    };
    let fragment = ResponderFragment {
        conninfo: postgres.and_then(|p| p.conninfo).filter(|_| !witness),
        check_timeout,
        max_lag_bytes,
        fencing,
        runtime_dir: runtime_dir.map(PathBuf::from),
        format: responder.as_ref().and_then(|r| r.format),
        agent_maintenance: responder.as_ref().and_then(|r| r.agent_maintenance),
    };
    let responder = fragment.check(
        &mut c,
        FragmentSource::File,
        crate::fencing::timing::lease(watchdog, connection_deadline),
    );
    let fence_users = fence_users.unwrap_or_default();
    check_roles(
        &mut c,
        &RolesInUse {
            read_write: read_write_user.as_deref(),
            read_only: read_only_user.as_deref(),
            fence_users: &fence_users,
            conninfo_user: conninfo_user(&responder.conninfo),
            repmgr_user: repmgr.user.as_deref(),
        },
    );
    let hba_ok = witness || hba_config.is_some();
    if let Some(dir) = &state_dir {
        if !dir.starts_with('/') {
            c.report("harepd.stateDir", "must be an absolute path");
        } else if dir.starts_with("/run/") || dir == "/run" {
            c.report(
                "harepd.stateDir",
                "must survive a reboot: not under /run (the claim record is durable)",
            );
        }
    }

    if !hba_ok {
        return None;
    }
    let config = Config {
        node_name: node_name?,
        primary_ip: primary_ip?,
        allow_ro,
        hba_config,
        haproxy_servers,
        read_write_user: read_write_user?,
        read_only_user,
        auth_allow,
        auth_deny,
        repmgr_user: repmgr.user,
        repmgr_db: repmgr.db,
        grpc: grpc?,
        watchdog,
        fence_users,
        state_dir: PathBuf::from(state_dir.unwrap_or_else(|| DEFAULT_STATE_DIR.into())),
        haproxy_check,
        responder,
    };
    Some((config, fragment))
}

/// The roles the config names, and the ones `fenceUsers` must not.
struct RolesInUse<'a> {
    read_write: Option<&'a str>,
    read_only: Option<&'a str>,
    fence_users: &'a [String],
    /// The role `postgres.conninfo` logs in as (the reconciler's).
    conninfo_user: String,
    /// `repmgr.user`, which repmgr's replication and promotion use.
    repmgr_user: Option<&'a str>,
}

/// The role `conninfo` logs in as: its `user`, or `postgres` (the
/// service user, which libpq takes when none is written).
fn conninfo_user(conninfo: &str) -> String {
    crate::pg::parse_conninfo(conninfo)
        .ok()
        .and_then(|c| c.get_user().map(str::to_string))
        .unwrap_or_else(|| "postgres".into())
}

/// Every role name goes into pg_hba.conf lines: each must be one that
/// PostgreSQL's pg_hba.conf reads back as that role and nothing more
/// ([`role_name_problem`]). `fenceUsers` are rejected while fenced, so
/// none may be the reconciler's own role (it could never connect again to
/// lift the fence), the replication user, or `all`.
fn check_roles(c: &mut Checker<'_>, roles: &RolesInUse<'_>) {
    let named = [
        (
            "harepd.haproxy.users.readWrite".to_string(),
            roles.read_write,
        ),
        ("harepd.haproxy.users.readOnly".to_string(), roles.read_only),
    ];
    for (path, name) in named {
        if let Some(why) = name.and_then(role_name_problem) {
            c.report(&path, why);
        }
    }
    for (i, user) in roles.fence_users.iter().enumerate() {
        let path = format!("harepd.fenceUsers.{i}");
        if user == "all" {
            c.report(
                &path,
                "`all` would shut every role out of a fenced node, the reconciler's own \
                 included, and it could never lift the fence: name the application roles",
            );
        } else if let Some(why) = role_name_problem(user) {
            c.report(&path, why);
        } else if *user == roles.conninfo_user {
            c.report(
                &path,
                format!(
                    "{user:?} is the role postgres.conninfo logs in as: fenced, the reconciler \
                     could never connect again to lift the fence"
                ),
            );
        } else if roles.repmgr_user == Some(user.as_str()) {
            c.report(
                &path,
                format!(
                    "{user:?} is repmgr.user, the replication user: fenced, standbys and repmgr \
                     could not reach this node"
                ),
            );
        }
    }
}

/// Why `name` cannot be written as a role in pg_hba.conf, if it cannot:
/// PostgreSQL's limit of 63 bytes; no control character, white space,
/// comma, double quote or `#` (each would end the token, start another
/// rule, or start a comment); no leading `+` (a group) or `@` (a file);
/// and none of pg_hba.conf's keywords (`all`, `sameuser`, `samerole`,
/// `samegroup`, `replication`), since the database field repeats the
/// user's name. Pure.
pub fn role_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > 63 {
        return Some(format!(
            "{:?} is {} bytes; PostgreSQL role names have at most 63",
            name,
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|ch| ch.is_control() || ch.is_whitespace() || matches!(ch, ',' | '"' | '#'))
    {
        return Some(format!(
            "{name:?} has {bad:?}, which pg_hba.conf would read as the end of the role (or a new \
             line of rules): a role name here has no white space, control character, comma, \
             quote or #"
        ));
    }
    if name.starts_with('+') || name.starts_with('@') {
        return Some(format!(
            "{name:?} starts with {:?}, which pg_hba.conf reads as a group or a file of names",
            &name[..1]
        ));
    }
    if matches!(
        name,
        "all" | "sameuser" | "samerole" | "samegroup" | "replication"
    ) {
        return Some(format!(
            "{name:?} is a pg_hba.conf keyword, not a role, in the user or database field"
        ));
    }
    None
}

/// `haproxy.check`, with the shipped configs' values as defaults.
fn check_timing(
    c: &mut Checker<'_>,
    raw: Option<super::raw::RawCheck>,
) -> crate::fencing::timing::HaproxyCheck {
    let d = crate::fencing::timing::HaproxyCheck::default();
    let Some(raw) = raw else {
        return d;
    };
    let count = |c: &mut Checker<'_>, path: &str, value: Option<u32>, default: u32| match value {
        Some(0) => {
            c.report(path, "must be at least 1");
            default
        }
        Some(n) => n,
        None => default,
    };
    crate::fencing::timing::HaproxyCheck {
        inter: c.seconds("harepd.haproxy.check.inter", raw.inter, d.inter),
        fastinter: c.seconds("harepd.haproxy.check.fastinter", raw.fastinter, d.fastinter),
        rise: count(c, "harepd.haproxy.check.rise", raw.rise, d.rise),
        fall: count(c, "harepd.haproxy.check.fall", raw.fall, d.fall),
        timeout_check: c.seconds(
            "harepd.haproxy.check.timeoutCheck",
            raw.timeout_check,
            d.timeout_check,
        ),
    }
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
