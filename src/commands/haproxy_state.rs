//! `pgsql-state haproxy-state HAPROXY_CFG`: writes HAProxy's server-state
//! file so that HAProxy starts every server DOWN (see `haproxy_state`).
//! Run it before HAProxy starts and before each reload, as the shipped
//! drop-in `units/haproxy.service.d/pgsql-state.conf` does. At a reload it
//! asks the running HAProxy (`show servers state` on the config's stats
//! socket) and carries over the servers it already checked.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::cli::HaproxyStateArgs;
use crate::fsutil;
use crate::haproxy_state;

/// How long the running HAProxy gets to dump its servers' state.
const DUMP_TIMEOUT: Duration = Duration::from_secs(2);
/// The most of a dump read (a row is about 100 bytes).
const DUMP_LIMIT: u64 = 4 << 20;

pub fn run(args: HaproxyStateArgs) -> anyhow::Result<()> {
    let cfg = &args.haproxy_cfg;
    let text =
        std::fs::read_to_string(cfg).with_context(|| format!("cannot read {}", cfg.display()))?;
    let owned = haproxy_state::servers(&text, args.check_port)
        .with_context(|| cfg.display().to_string())?;
    let servers = haproxy_state::resolve(&owned, resolve_as_haproxy)
        .with_context(|| cfg.display().to_string())?;
    let out = match &args.out {
        Some(out) => out.clone(),
        None => haproxy_state::state_file(&text).with_context(|| cfg.display().to_string())?,
    };
    let running = match (args.all_down, haproxy_state::stats_socket(&text)) {
        (false, Some(socket)) => dump(&socket)
            .map_err(|error| {
                log::info!(
                    "no running HAProxy at {} ({error}); every server starts DOWN",
                    socket.display()
                )
            })
            .ok(),
        _ => None,
    };
    let (rendered, carried) = haproxy_state::render(&servers, running.as_deref());
    fsutil::write_atomic(&out, rendered.as_bytes(), 0o644)
        .with_context(|| format!("cannot write {}", out.display()))?;
    log::info!(
        "{}: {} servers, {} carried over from the running HAProxy, {} starting DOWN",
        out.display(),
        servers.len(),
        carried,
        servers.len() - carried
    );
    Ok(())
}

/// A host name as HAProxy resolves it at start: libc, the first address.
fn resolve_as_haproxy(name: &str) -> Option<std::net::IpAddr> {
    use std::net::ToSocketAddrs;
    (name, 0).to_socket_addrs().ok()?.next().map(|a| a.ip())
}

/// `show servers state` from the HAProxy listening on `socket`.
fn dump(socket: &Path) -> std::io::Result<String> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(DUMP_TIMEOUT))?;
    stream.set_write_timeout(Some(DUMP_TIMEOUT))?;
    stream.write_all(b"show servers state\n")?;
    let mut out = String::new();
    stream.take(DUMP_LIMIT).read_to_string(&mut out)?;
    if !out.starts_with("1\n") {
        return Err(std::io::Error::other(format!(
            "unexpected answer {:?}",
            out.lines().next().unwrap_or("")
        )));
    }
    Ok(out)
}
