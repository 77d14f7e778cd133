//! Checking the `gRPC` section, and the `host:port` forms peers are
//! written in.

use std::net::IpAddr;
use std::path::PathBuf;

use super::raw::RawGrpc;
use super::validate::Checker;
use super::{Grpc, Tls, DEFAULT_CONNECTION_DEADLINE};

pub(super) fn validate_grpc(
    c: &mut Checker<'_>,
    grpc: Option<RawGrpc>,
    primary_ip: Option<IpAddr>,
) -> Option<Grpc> {
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
    if require_client_cert && !enabled {
        // A port the operator means to close to strangers would accept
        // anyone in plain text.
        c.report(
            "harepd.gRPC.tls.requireClientCert",
            "is true while harepd.gRPC.tls.enabled is false: TLS is off, so no client \
             certificate is asked for and any client is served; set gRPC.tls.enabled: true \
             (with cert, key and ca), or remove requireClientCert",
        );
    } else if !enabled && (ca.is_some() || cert.is_some() || key.is_some()) {
        // harepd's own template sets these with TLS off, so they are not
        // an error; they do nothing, and the operator is told.
        c.warn(
            "harepd.gRPC.tls",
            "ca, cert and key are ignored while harepd.gRPC.tls.enabled is false: \
             the peer port is plain text",
        );
    }
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
            Ok(hp) => neighbours.push((i, hp)),
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
    if let Some(bind_address) = &bind_address {
        let own = Own {
            bind: format!("{bind_address}:{port}"),
            bind_unspecified: bind_address
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_unspecified()),
            primary: primary_ip.map(|ip| std::net::SocketAddr::new(ip, port).to_string()),
            port,
        };
        neighbours = distinct_neighbours(c, neighbours, witness.as_deref(), &own);
    }
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
        neighbours: neighbours.into_iter().map(|(_, hp)| hp).collect(),
        witness,
        connection_deadline,
    })
}

/// How this node's own peer may be written in `neighbours`.
struct Own {
    /// `bindAddress:bindPort`.
    bind: String,
    /// Whether it binds every address (then any loopback address at its
    /// port is this node too).
    bind_unspecified: bool,
    /// `primaryIP:bindPort`.
    primary: Option<String>,
    /// `bindPort`.
    port: u16,
}

/// Whether two `host:port` entries name the same peer as written: the
/// same address (in any spelling of it) or the same host name (in any
/// case), and the same port. Two names for one host are not found here;
/// the answers' node names tell them apart at run time.
pub fn same_peer(a: &str, b: &str) -> bool {
    match (
        a.parse::<std::net::SocketAddr>(),
        b.parse::<std::net::SocketAddr>(),
    ) {
        (Ok(a), Ok(b)) => a.ip().to_canonical() == b.ip().to_canonical() && a.port() == b.port(),
        (Err(_), Err(_)) => a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

/// Whether `entry` is this node's own peer.
fn is_own(entry: &str, own: &Own) -> bool {
    if same_peer(entry, &own.bind) || own.primary.as_deref().is_some_and(|p| same_peer(entry, p)) {
        return true;
    }
    own.bind_unspecified
        && entry
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.port() == own.port && a.ip().to_canonical().is_loopback())
}

/// `neighbours` with every voter once: an entry that is this node (its
/// vote is its own record), the witness (counted by `gRPC.witness`) or a
/// repeat of an earlier entry is left out, with a warning naming its key
/// and line. Not an error: `check-config` runs before the peer starts, and
/// refusing such files at an upgrade would stop every peer and fence every
/// primary. Counting them was the error: a node listed twice made 3 of
/// "5" voters a majority.
fn distinct_neighbours(
    c: &mut Checker<'_>,
    entries: Vec<(usize, String)>,
    witness: Option<&str>,
    own: &Own,
) -> Vec<(usize, String)> {
    let mut kept: Vec<(usize, String)> = Vec::new();
    for (i, entry) in entries {
        let key = format!("harepd.gRPC.neighbours.{i}");
        if is_own(&entry, own) {
            c.warn(
                &key,
                format!(
                    "{entry} is this node's own peer: left out (this node's vote is its own \
                     record, counted once); list only the other nodes"
                ),
            );
        } else if witness.is_some_and(|w| same_peer(&entry, w)) {
            c.warn(
                &key,
                format!(
                    "{entry} is the witness, already a voter through gRPC.witness: left out, \
                     so it is counted once"
                ),
            );
        } else if let Some((first, _)) = kept.iter().find(|(_, k)| same_peer(&entry, k)) {
            c.warn(
                &key,
                format!(
                    "{entry} repeats harepd.gRPC.neighbours.{first}: left out, so that voter \
                     is counted once"
                ),
            );
        } else {
            kept.push((i, entry));
        }
    }
    kept
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

/// The host part of a `host:port` written by [`host_port`]: a name, an
/// IPv4 address, or an IPv6 address without its brackets.
pub fn host_of(host_port: &str) -> &str {
    host_port
        .rsplit_once(':')
        .map_or(host_port, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']')
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
