//! HAProxy's server-state file, which closes HAProxy's start-up window.
//!
//! HAProxy 2.6 (Debian 12) starts every server UP until its first check,
//! so for up to `inter` after a start or a reload a standby or a fenced
//! zombie is UP in `prod`. `init-state down` fixes that only from HAProxy
//! 3.4. On 2.6 the way is a server-state file (`server-state-file` in
//! `global`, `load-server-state-from-file global` in `defaults`) whose rows
//! say DOWN: HAProxy then starts those servers DOWN and they rise only by
//! passing `rise` checks.
//!
//! Only the servers pgsql-state checks get a row: those whose health
//! check reads the responder's port (`tcp-check connect port 5431` in
//! their section, `port 5431` or `agent-port 5431` on them or their
//! `default-server`) and those of a section that routes on its pg_hba
//! edits (`option pgsql-check`). Every other server of the file is left to
//! HAProxy as it is, whatever its address: an unrelated backend never
//! stops HAProxy's start. A server written by host name is resolved as
//! HAProxy resolves it at start (libc, the first address), since a row's
//! address is the one HAProxy takes (`init-addr last` comes first).
//!
//! Pure: [`servers`] reads a haproxy.cfg's servers, [`resolve`] gives
//! them addresses with a resolver passed in, [`render`] writes the
//! file. A row of a server HAProxy knows (the `show servers state` dump of
//! the running process, at a reload) is carried over as HAProxy wrote it,
//! so a reload keeps what the checks already proved; every other server
//! gets a DOWN row. Rows match by backend and server name (ids 0, not
//! forced). A row overrides the config's weight, check port and agent
//! port, so those are copied from the config into it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Why a server-state file cannot be made from a haproxy.cfg.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerStateError {
    /// `global` has no `server-state-file`.
    #[error("`global` has no `server-state-file`; add `server-state-file /var/lib/haproxy/pgsql-state.servers` there and `load-server-state-from-file global` to `defaults`")]
    NoStateFile,
    /// A server line HAProxy's state file cannot describe.
    #[error("line {line}: server {name}: {problem}")]
    BadServer {
        /// The 1-based line.
        line: usize,
        /// The server's name.
        name: String,
        /// What is wrong.
        problem: String,
    },
}

/// One `server` line, with what its row must repeat from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateServer {
    /// The `listen` or `backend` section.
    pub backend: String,
    /// The server's name.
    pub name: String,
    /// Its address (an IP: the state file carries no names).
    pub addr: IpAddr,
    /// Its traffic port (0 when the line gives none).
    pub port: u16,
    /// `weight` (HAProxy's default is 1).
    pub weight: u32,
    /// `port`, the check port (0: the traffic port or the tcp-check rule's).
    pub check_port: u16,
    /// `agent-port` (0: none).
    pub agent_port: u16,
}

/// A server's address as haproxy.cfg writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IP address.
    Ip(IpAddr),
    /// A host name, resolved at start.
    Name(String),
}

/// A `server` line that pgsql-state checks, before its name is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedServer {
    /// The 1-based line.
    pub line: usize,
    /// Its row, but for the address.
    pub row: StateServer,
    /// Its address as written.
    pub host: Host,
}

/// The per-server keys a row repeats, as set so far.
#[derive(Debug, Clone, Default)]
struct Keys {
    weight: Option<u32>,
    check_port: Option<u16>,
    agent_port: Option<u16>,
}

impl Keys {
    /// Reads `weight`, `port` and `agent-port` from a server's keywords.
    /// Every key is read, past one that is not a number (the first such
    /// is the error), so a broken `weight` does not hide a `port 5431`.
    fn read(&mut self, words: &[&str]) -> Result<(), String> {
        let mut first_error = None;
        for (i, key) in words.iter().enumerate() {
            let Some(value) = words.get(i + 1) else {
                break;
            };
            let bad = || format!("{key} {value:?} is not a number");
            let slot = match *key {
                "weight" => value.parse().map(|v| self.weight = Some(v)),
                "port" => value.parse().map(|v| self.check_port = Some(v)),
                "agent-port" => value.parse().map(|v| self.agent_port = Some(v)),
                _ => Ok(()),
            };
            if slot.is_err() && first_error.is_none() {
                first_error = Some(bad());
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// `self` with every unset key taken from `under`.
    fn over(&self, under: &Keys) -> Keys {
        Keys {
            weight: self.weight.or(under.weight),
            check_port: self.check_port.or(under.check_port),
            agent_port: self.agent_port.or(under.agent_port),
        }
    }
}

/// The keywords that open a section of haproxy.cfg.
const SECTIONS: [&str; 13] = [
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "resolvers",
    "peers",
    "userlist",
    "program",
    "http-errors",
    "ring",
    "cache",
    "mailers",
];

/// The words of a config line, without its comment.
fn words(raw: &str) -> Vec<&str> {
    raw.split('#')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect()
}

/// What a section says of its checks: the ports its `tcp-check connect`
/// rules reach, and whether it routes on `option pgsql-check`.
#[derive(Debug, Clone, Default)]
struct SectionChecks {
    tcp_check_ports: Vec<u16>,
    /// Whether the section has `tcp-check connect` rules of its own.
    has_tcp_check_connect: bool,
    pgsql_check: bool,
}

/// Each `listen` and `backend` section's checks, by name (a first pass:
/// a section's rules may come after its servers). A section without
/// `tcp-check connect` rules of its own takes those of the `defaults`
/// section before it, and `option pgsql-check` there too, as HAProxy
/// does.
fn section_checks(text: &str) -> std::collections::HashMap<String, SectionChecks> {
    let mut own: std::collections::HashMap<String, SectionChecks> = Default::default();
    let mut inherited: std::collections::HashMap<String, SectionChecks> = Default::default();
    let mut defaults = SectionChecks::default();
    // The section being read: a name, or `None` for `defaults`.
    let mut current: Option<Option<String>> = None;
    for raw in text.lines() {
        let w = words(raw);
        match w.as_slice() {
            ["defaults", ..] => {
                defaults = SectionChecks::default();
                current = Some(None);
            }
            ["listen" | "backend", name, ..] => {
                current = Some(Some(name.to_string()));
                own.entry(name.to_string()).or_default();
                inherited.insert(name.to_string(), defaults.clone());
            }
            [first, ..] if SECTIONS.contains(first) => current = None,
            ["tcp-check", "connect", rest @ ..] => {
                let port = rest
                    .windows(2)
                    .find(|kv| kv[0] == "port")
                    .and_then(|kv| kv[1].parse::<u16>().ok());
                let section = match &current {
                    Some(Some(name)) => own.get_mut(name),
                    Some(None) => Some(&mut defaults),
                    None => None,
                };
                if let Some(section) = section {
                    section.tcp_check_ports.extend(port);
                    section.has_tcp_check_connect = true;
                }
            }
            ["option", "pgsql-check", ..] => {
                let section = match &current {
                    Some(Some(name)) => own.get_mut(name),
                    Some(None) => Some(&mut defaults),
                    None => None,
                };
                if let Some(section) = section {
                    section.pgsql_check = true;
                }
            }
            _ => {}
        }
    }
    own.into_iter()
        .map(|(name, mut checks)| {
            let from = inherited.remove(&name).unwrap_or_default();
            if !checks.has_tcp_check_connect {
                checks.tcp_check_ports = from.tcp_check_ports;
            }
            checks.pgsql_check |= from.pgsql_check;
            (name, checks)
        })
        .collect()
}

/// Every `server` that pgsql-state checks (see the module's docs) in the
/// `listen` and `backend` sections of `text`, with `default-server` keys
/// (the section's, else `defaults'`) applied; `responder_port` is the
/// responder's port (5431). A line pgsql-state does not check is never an
/// error, whatever it says.
pub fn servers(text: &str, responder_port: u16) -> Result<Vec<OwnedServer>, ServerStateError> {
    let checks = section_checks(text);
    let mut defaults = Keys::default();
    let mut section_keys = Keys::default();
    let mut backend: Option<String> = None;
    let mut in_defaults = false;
    let mut keys_broken: Option<BadServerAt> = None;
    let mut out = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let w = words(raw);
        let Some(first) = w.first() else {
            continue;
        };
        match *first {
            "defaults" => {
                (in_defaults, backend) = (true, None);
                defaults = Keys::default();
                continue;
            }
            "listen" | "backend" => {
                in_defaults = false;
                backend = w.get(1).map(|s| s.to_string());
                section_keys = Keys::default();
                keys_broken = None;
                continue;
            }
            other if SECTIONS.contains(&other) => {
                (in_defaults, backend) = (false, None);
                continue;
            }
            _ => {}
        }
        let line = index + 1;
        match (w.as_slice(), in_defaults, &backend) {
            (["default-server", rest @ ..], true, _) => {
                if let Err(problem) = defaults.read(rest) {
                    keys_broken.get_or_insert(BadServerAt { line, problem });
                }
            }
            (["default-server", rest @ ..], false, Some(_)) => {
                if let Err(problem) = section_keys.read(rest) {
                    keys_broken = Some(BadServerAt { line, problem });
                }
            }
            (["server", name, address, rest @ ..], false, Some(backend)) => {
                let bad = |problem: String| BadServer {
                    line,
                    name: name.to_string(),
                    problem,
                };
                let mut own = Keys::default();
                let own_broken = own.read(rest).err();
                let keys = own.over(&section_keys.over(&defaults));
                let section = checks.get(backend).cloned().unwrap_or_default();
                let checked = section.pgsql_check
                    || section.tcp_check_ports.contains(&responder_port)
                    || keys.check_port == Some(responder_port)
                    || keys.agent_port == Some(responder_port);
                if !checked {
                    continue;
                }
                if let Some(problem) = own_broken {
                    return Err(bad(problem));
                }
                if let Some(at) = &keys_broken {
                    return Err(BadServer {
                        line: at.line,
                        name: "default-server".into(),
                        problem: at.problem.clone(),
                    });
                }
                let (host, port) = split_address(address).map_err(bad)?;
                out.push(OwnedServer {
                    line,
                    host,
                    row: StateServer {
                        backend: backend.clone(),
                        name: name.to_string(),
                        addr: IpAddr::from([0, 0, 0, 0]),
                        port,
                        weight: keys.weight.unwrap_or(1),
                        check_port: keys.check_port.unwrap_or(0),
                        agent_port: keys.agent_port.unwrap_or(0),
                    },
                });
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A `default-server` line whose keys could not be read: an error only
/// for a server pgsql-state checks.
#[derive(Debug, Clone)]
struct BadServerAt {
    line: usize,
    problem: String,
}

/// The rows of `servers`, each with its address: an IP as written, a name
/// as `resolve_name` gives it (`None`: it does not resolve, an error that
/// names the line and the server, since HAProxy would not start either).
pub fn resolve(
    servers: &[OwnedServer],
    resolve_name: impl Fn(&str) -> Option<IpAddr>,
) -> Result<Vec<StateServer>, ServerStateError> {
    servers
        .iter()
        .map(|s| {
            let addr = match &s.host {
                Host::Ip(ip) => *ip,
                Host::Name(name) => resolve_name(name).ok_or_else(|| BadServer {
                    line: s.line,
                    name: s.row.name.clone(),
                    problem: format!("{name:?} does not resolve"),
                })?,
            };
            Ok(StateServer {
                addr,
                ..s.row.clone()
            })
        })
        .collect()
}

use ServerStateError::BadServer;

/// `ip:port`, `ip`, `[v6]:port`, `name:port` or `name`.
fn split_address(text: &str) -> Result<(Host, u16), String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok((Host::Ip(ip), 0));
    }
    if let Ok(sock) = text.parse::<std::net::SocketAddr>() {
        return Ok((Host::Ip(sock.ip()), sock.port()));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse::<u16>()
                .map_err(|_| format!("port of {text:?} is not a number"))?,
        ),
        None => (text, 0),
    };
    let name_like = !host.is_empty()
        && host
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_'));
    if !name_like {
        return Err(format!(
            "address {text:?} is neither an IP address nor a host name"
        ));
    }
    Ok((Host::Name(host.to_string()), port))
}

/// The lines of the `global` section, as words.
fn global_lines(text: &str) -> Vec<Vec<&str>> {
    let mut in_global = false;
    let mut out = Vec::new();
    for raw in text.lines() {
        let w = words(raw);
        match w.first() {
            None => {}
            Some(&"global") => in_global = true,
            Some(first) if SECTIONS.contains(first) => in_global = false,
            Some(_) if in_global => out.push(w),
            Some(_) => {}
        }
    }
    out
}

/// A `global` setting's value, e.g. `server-state-file`.
fn global_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    global_lines(text)
        .into_iter()
        .rev()
        .find(|w| w.len() >= 2 && w[0] == key)
        .map(|w| w[1])
}

/// Where HAProxy reads the server-state file: `server-state-file`, under
/// `server-state-base` when it is relative.
pub fn state_file(text: &str) -> Result<PathBuf, ServerStateError> {
    let file = global_value(text, "server-state-file").ok_or(ServerStateError::NoStateFile)?;
    Ok(match global_value(text, "server-state-base") {
        Some(base) if !Path::new(file).is_absolute() => Path::new(base).join(file),
        _ => PathBuf::from(file),
    })
}

/// The path of the first Unix `stats socket` in `global`.
pub fn stats_socket(text: &str) -> Option<PathBuf> {
    global_lines(text)
        .into_iter()
        .find(|w| w.len() >= 3 && w[0] == "stats" && w[1] == "socket" && w[2].starts_with('/'))
        .map(|w| PathBuf::from(w[2]))
}

/// The header of a version-1 server-state file, as HAProxy 2.6 writes it.
pub const HEADER: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n";

/// A row that starts `server` DOWN: operational state 0 (stopped), check
/// status 13 (L4 connection problem) and result 2 (failed) with health 0,
/// so it must pass `rise` checks before it carries traffic. (A row with
/// check status and result 0 leaves the server DOWN for good.)
pub fn down_row(server: &StateServer) -> String {
    let (weight, port) = (server.weight, server.port);
    format!(
        "0 {} 0 {} {} 0 0 {weight} {weight} 0 13 2 0 6 0 0 0 - {port} - 0 {} - - {}",
        server.backend, server.name, server.addr, server.check_port, server.agent_port
    )
}

/// The (backend, server) a `show servers state` row is about.
fn row_key(row: &str) -> Option<(&str, &str)> {
    let f: Vec<&str> = row.split_whitespace().collect();
    (f.len() > 4 && !row.starts_with('#')).then(|| (f[1], f[3]))
}

/// The server-state file for `servers`: each server's row from `running`
/// (a `show servers state` dump of the HAProxy being reloaded) when it has
/// one, else a DOWN row; and how many rows were carried over.
pub fn render(servers: &[StateServer], running: Option<&str>) -> (String, usize) {
    let mut out = String::from(HEADER);
    let mut n_carried = 0;
    for server in servers {
        let carried = running.and_then(|dump| {
            dump.lines()
                .find(|row| row_key(row) == Some((&server.backend, &server.name)))
        });
        match carried {
            Some(row) => {
                n_carried += 1;
                out.push_str(row.trim_end())
            }
            None => out.push_str(&down_row(server)),
        }
        out.push('\n');
    }
    (out, n_carried)
}

#[cfg(test)]
mod tests;
