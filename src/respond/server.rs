//! The long-lived responder: accepts connections on a listener it is given
//! (from systemd with `Accept=no`, or `--listen`) until `shutdown` resolves,
//! answering each with the shared [`Responder`] and its warm connection.
//!
//! One source may hold at most [`MAX_PER_SOURCE`] connections, and sources
//! that are not reserved [`MAX_IN_FLIGHT`] in all, so idle connections
//! from strangers cannot starve HAProxy's checks: the reserved addresses
//! (HAProxy's, and loopback) are never refused for strangers' sake. A
//! connection over a cap is closed at once.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;

use super::Responder;
use crate::conn_limit::{ConnLimiter, Reserved};

/// At most this many connections are answered at once; more wait in the
/// kernel's accept queue, so a flood cannot exhaust file descriptors.
pub const MAX_IN_FLIGHT: usize = 1024;

/// Room kept beyond [`MAX_IN_FLIGHT`] for the reserved addresses.
pub const RESERVED_IN_FLIGHT: usize = 256;

/// At most this many connections from one source address are open at once.
/// HAProxy runs one check per server at a time, so a few suffice.
pub const MAX_PER_SOURCE: usize = 128;

/// A listener of either family.
pub enum Listener {
    /// TCP: connections carry their source address.
    Tcp(TcpListener),
    /// A Unix socket.
    Unix(UnixListener),
}

impl Listener {
    /// The next connection and its source address (none for Unix sockets).
    async fn accept(&self) -> io::Result<(Box<dyn super::Conn>, Option<std::net::IpAddr>)> {
        Ok(match self {
            Listener::Tcp(l) => {
                let (stream, from) = l.accept().await?;
                let _ = stream.set_nodelay(true);
                (Box::new(stream), Some(from.ip()))
            }
            Listener::Unix(l) => (Box::new(l.accept().await?.0), None),
        })
    }
}

/// Serves until `shutdown` resolves, then waits (bounded by the check
/// timeout) for the answers in flight.
pub async fn serve(
    listener: Listener,
    shutdown: impl Future<Output = ()>,
    responder: Arc<Responder>,
    reserved: Reserved,
) -> io::Result<()> {
    // The permits bound the answers in flight, the reserved ones included,
    // so that file descriptors stay bounded; strangers get fewer.
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT + RESERVED_IN_FLIGHT));
    let per_source = ConnLimiter::with_reserved(MAX_PER_SOURCE, MAX_IN_FLIGHT, reserved);
    let bound = responder.settings().check_timeout * 2 + Duration::from_secs(1);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // the semaphore is never closed
            },
        };
        let (conn, admission) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((conn, from)) => match per_source.admit(from) {
                    Some(admission) => (conn, admission),
                    None => {
                        log::debug!("closed a connection from {from:?}: over the per-source cap");
                        continue;
                    }
                },
                Err(e) => {
                    // EMFILE and the like: pause instead of spinning.
                    log::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let responder = responder.clone();
        tokio::spawn(async move {
            if let Ok((Err(e), _)) = tokio::time::timeout(bound, responder.answer(conn)).await {
                if !super::client_left(&e) {
                    log::info!("answer not delivered: {e}");
                }
            }
            drop((permit, admission));
        });
    }
    // Wait for in-flight answers: all permits back, or the bound.
    let all = (MAX_IN_FLIGHT + RESERVED_IN_FLIGHT) as u32;
    let _ = tokio::time::timeout(bound, permits.acquire_many(all)).await;
    Ok(())
}
