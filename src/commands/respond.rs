//! `pgsql-state respond`: finds its socket, builds the settings from the
//! config and flags, and answers once or serves.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use super::UsageError;
use crate::activation::{self, ClientSocket, Inherited, ListenSocket};
use crate::cli::RespondArgs;
use crate::config::{self, Format, FragmentSource, ResponderFragment, ResponderSettings};
use crate::respond::server::{self, Listener};
use crate::respond::{self as responder, Mode, Responder};
use crate::sandbox::Confinement;

pub fn run(explicit: Option<&Path>, args: RespondArgs) -> anyhow::Result<()> {
    // Before anything else: listenfd edits the environment, and must run
    // before the tokio runtime starts.
    let inherited = activation::take_inherited().context("cannot take the inherited socket")?;
    crate::logging::init(activation::stderr_is_client_socket());
    let (settings, haproxy) = match settings(explicit, &args) {
        Ok(settings) => settings,
        Err(error) => {
            // Still tell the client why, then fail with the config error.
            if let Inherited::Client(client) = inherited {
                answer_config_error(client, args.format.unwrap_or_default());
            }
            return Err(error);
        }
    };
    #[cfg(debug_assertions)]
    if std::env::var_os("PGSQL_STATE_TEST_PANIC").is_some() {
        // Test builds only: lets a test show where a panic message goes.
        panic!("a test asked for a panic (this text must never reach a client)");
    }
    // Confined before a byte arrives from the network and before any
    // thread starts, once `--listen` has made its socket: the responder
    // only reads from then on.
    match (inherited, args.listen.as_deref()) {
        (Inherited::Client(client), _) => {
            confine();
            one_shot(client, settings)
        }
        (_, Some(addr)) => {
            let listener = bind(addr)?;
            confine();
            serve(listener, settings, haproxy)
        }
        (Inherited::Listener(listener), None) => {
            confine();
            serve(listener, settings, haproxy)
        }
        (Inherited::Nothing, None) => {
            confine();
            terminal(settings)
        }
    }
}

/// Applies [`crate::sandbox`]: Landlock, then the system-call filters. A
/// kernel that refuses either leaves the unit's own hardening and a
/// warning; the answer matters more than the extra layer, so the
/// responder goes on.
fn confine() {
    // Words, not a String: this runs at every one-shot check's start.
    let filters = match crate::sandbox::restrict_syscalls() {
        Ok(()) => "system calls filtered (sockets AF_UNIX/AF_INET/AF_INET6 only, no namespaces, no writable-executable memory)",
        Err(error) => {
            log::warn!("sandbox: {error}; system calls not filtered");
            "system calls not filtered"
        }
    };
    match crate::sandbox::confine_to_reading() {
        Ok(Confinement::None) => {
            log::info!("sandbox: {}; {filters}", Confinement::None.describe())
        }
        Ok(confinement) => log::debug!("sandbox: {}; {filters}", confinement.describe()),
        Err(error) => log::warn!("sandbox: {error}; not confined; {filters}"),
    }
}

/// The config's responder settings (or the defaults), with flags on top,
/// and the config's `haproxy.server` addresses (none without a file). The
/// flags are a config fragment checked by the same validation as the
/// file's keys; a bad flag is a usage error naming the flag.
fn settings(
    explicit: Option<&Path>,
    args: &RespondArgs,
) -> anyhow::Result<(ResponderSettings, Vec<IpAddr>)> {
    let flags = args.fragment();
    let (file, lease, haproxy) = match super::load_config(explicit, true)? {
        Some(loaded) => (
            loaded.responder_fragment,
            loaded.config.responder.lease,
            // This node's own address too: an `nc` run on the node itself.
            [loaded.config.primary_ip]
                .into_iter()
                .chain(loaded.config.haproxy_servers)
                .collect(),
        ),
        None => (
            ResponderFragment::default(),
            ResponderSettings::default().lease,
            Vec::new(),
        ),
    };
    let flag_problems = |problems: Vec<config::Problem>| {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        UsageError(lines.join("; "))
    };
    // The file's part was validated when it was loaded, so a problem in
    // the merged fragment comes from a flag, and is named as one.
    let settings = file
        .overlay(flags)
        .validate(FragmentSource::Flags, "", lease)
        .map_err(flag_problems)?;
    Ok((settings, haproxy))
}

/// A runtime for one answer: one thread, started in microseconds.
fn current_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

fn one_shot(client: ClientSocket, settings: ResponderSettings) -> anyhow::Result<()> {
    let runtime = current_thread()?;
    let responder = Responder::new(settings, Mode::OneShot);
    runtime.block_on(async {
        let (delivered, goodbye) = match client {
            ClientSocket::Tcp(s) => {
                s.set_nonblocking(true)?;
                let _ = s.set_nodelay(true);
                responder.answer(tokio::net::TcpStream::from_std(s)?).await
            }
            ClientSocket::Unix(s) => {
                s.set_nonblocking(true)?;
                responder.answer(tokio::net::UnixStream::from_std(s)?).await
            }
        };
        responder::close_goodbye(goodbye).await;
        match delivered {
            Err(e) if !responder::client_left(&e) => {
                Err(anyhow::Error::new(e).context("cannot answer the client"))
            }
            // A client that left early (HAProxy may) is no failure.
            _ => Ok(()),
        }
    })
}

fn answer_config_error(client: ClientSocket, format: Format) {
    let word = responder::config_error_word();
    let reply = match format {
        Format::Text => crate::respond::format::text_reply(word),
        Format::Http => crate::respond::format::http_reply(b"GET / HTTP/1.0\r\n\r\n", word),
        Format::Agent => crate::respond::format::agent_reply(
            crate::respond::format::AgentPool::Unnamed,
            word,
            crate::config::AgentMaintenance::default(),
            None,
        ),
    };
    use std::io::Write;
    let _ = match client {
        ClientSocket::Tcp(mut s) => s.write_all(reply.as_bytes()),
        ClientSocket::Unix(mut s) => s.write_all(reply.as_bytes()),
    };
}

fn bind(addr: &str) -> anyhow::Result<ListenSocket> {
    if addr.starts_with('/') {
        remove_stale_socket(Path::new(addr))?;
        let listener = std::os::unix::net::UnixListener::bind(addr)
            .with_context(|| format!("cannot listen on {addr}"))?;
        return Ok(ListenSocket::Unix(listener));
    }
    let sockaddr: std::net::SocketAddr = addr.parse().map_err(|_| {
        UsageError(format!(
            "--listen {addr:?}: expected ip:port or a socket path"
        ))
    })?;
    let listener = std::net::TcpListener::bind(sockaddr)
        .with_context(|| format!("cannot listen on {addr}"))?;
    Ok(ListenSocket::Tcp(listener))
}

/// Clears the way for a Unix listener at `path`: a socket left by an
/// earlier server is removed, but never a socket a server still answers
/// on, and never a file that is not a socket.
fn remove_stale_socket(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot look at {}", path.display()))),
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!("{} is in use by a running server", path.display());
            }
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove the stale socket {}", path.display()))
        }
        Ok(_) => Err(UsageError(format!(
            "--listen {}: exists and is not a socket; refusing to replace it",
            path.display()
        ))
        .into()),
    }
}

/// Serves until a signal. HAProxy's addresses and this node's own
/// (`haproxy`) and loopback (the on-call engineer's `nc`) are never
/// refused because strangers hold the connection slots.
fn serve(
    listener: ListenSocket,
    settings: ResponderSettings,
    haproxy: Vec<IpAddr>,
) -> anyhow::Result<()> {
    // One thread: a check is a few microseconds of work between waits, and
    // keeping the accept loop, the answer and the Postgres connection on one
    // thread avoids cross-thread wake-ups. Measured (BENCHMARKS.md): p50
    // 0.073 ms and 33k checks/s multi-threaded, 0.032 ms and 58k/s here,
    // with Postgres on the other core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let responder = Arc::new(Responder::new(settings, Mode::LongLived));
    runtime.block_on(async {
        let listener = match listener {
            ListenSocket::Tcp(l) => {
                l.set_nonblocking(true)?;
                Listener::Tcp(tokio::net::TcpListener::from_std(l)?)
            }
            ListenSocket::Unix(l) => {
                l.set_nonblocking(true)?;
                Listener::Unix(tokio::net::UnixListener::from_std(l)?)
            }
        };
        responder.startup_check().await;
        crate::systemd::ready("answering health checks");
        let reserved = crate::conn_limit::Reserved::new(haproxy, true);
        server::serve(listener, super::shutdown_signal(), responder, reserved).await?;
        Ok(())
    })
}

/// Started by hand: print the word, as the psql one-liner would.
fn terminal(settings: ResponderSettings) -> anyhow::Result<()> {
    let runtime = current_thread()?;
    let responder = Responder::new(settings, Mode::OneShot);
    let word = runtime.block_on(responder.word_for_terminal());
    println!("{word}");
    Ok(())
}
