//! Caps on accepted connections, so that strangers cannot starve the
//! checks HAProxy and the peers make.
//!
//! - [`ConnLimiter`] admits a connection only while its source address has
//!   fewer than `per_source` open, and the server fewer than `total`. A
//!   refused connection is closed at once. 1,000 idle connections from one
//!   address then hold `per_source` slots, not the server.
//! - [`HeadTimeout`] wraps a stream whose first byte must arrive within a
//!   bound; a client that connects and says nothing gets an error (and its
//!   slot back) instead of holding the connection open.
//! - [`LimitedIncoming`] is the peer server's accept loop: a stream of
//!   admitted, head-timed connections for tonic.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

/// The unit a per-source cap counts: an IPv4 address, or an IPv6 /64
/// (one host holds a whole /64, so its single addresses count for nothing).
/// An IPv4-mapped IPv6 address counts as its IPv4 address.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// Admits connections under a per-source and a total cap. Cheap to clone.
#[derive(Clone)]
pub struct ConnLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    per_source: usize,
    total: usize,
    open: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

impl ConnLimiter {
    /// A limiter allowing `per_source` connections from one address and
    /// `total` in all.
    pub fn new(per_source: usize, total: usize) -> ConnLimiter {
        ConnLimiter {
            inner: Arc::new(Inner {
                per_source,
                total,
                open: Mutex::new(Counts::default()),
            }),
        }
    }

    /// Admits a connection from `source` (`None` for a Unix socket, which
    /// only the total bounds), or refuses it when a cap is reached. The
    /// slot is held until the returned [`Admission`] is dropped.
    pub fn admit(&self, source: Option<IpAddr>) -> Option<Admission> {
        let mut open = self.lock();
        if open.total >= self.inner.total {
            return None;
        }
        if let Some(ip) = source {
            let n = open.by_source.entry(ip).or_default();
            if *n >= self.inner.per_source {
                return None;
            }
            *n += 1;
        }
        open.total += 1;
        Some(Admission {
            limiter: self.clone(),
            source,
        })
    }

    /// How many connections are open now.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counts are updated in a few lines that cannot panic; a
        // poisoned lock still holds consistent counts.
        self.inner
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One admitted connection's slot, given back on drop.
pub struct Admission {
    limiter: ConnLimiter,
    source: Option<IpAddr>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = self.limiter.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(ip) = self.source {
            if let Some(n) = open.by_source.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    open.by_source.remove(&ip);
                }
            }
        }
    }
}

/// A stream whose first byte must arrive before a deadline; it also holds
/// the connection's [`Admission`], so the slot lives as long as the stream.
pub struct HeadTimeout<S> {
    inner: S,
    head: Option<Pin<Box<Sleep>>>,
    _admission: Option<Admission>,
}

impl<S> HeadTimeout<S> {
    /// Wraps `inner`: reads fail with `TimedOut` if nothing arrived within
    /// `bound` of now.
    pub fn new(inner: S, bound: Duration, admission: Option<Admission>) -> HeadTimeout<S> {
        HeadTimeout {
            inner,
            head: Some(Box::pin(tokio::time::sleep(bound))),
            _admission: admission,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.head = None;
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let expired = match this.head.as_mut() {
                    Some(deadline) => deadline.as_mut().poll(cx).is_ready(),
                    None => false,
                };
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client sent nothing in time",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for HeadTimeout<TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// The peer server's accept loop as a stream: each accepted connection is
/// admitted by the limiter (or closed at once) and wrapped in a
/// [`HeadTimeout`].
pub struct LimitedIncoming {
    listener: TcpListener,
    limiter: ConnLimiter,
    head_timeout: Duration,
    keepalive: Option<Duration>,
    /// After an accept error (EMFILE and the like), a pause, so the loop
    /// does not spin.
    backoff: Option<Pin<Box<Sleep>>>,
}

/// How long the accept loop pauses after an error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

impl LimitedIncoming {
    /// Accepts on `listener` under `limiter`; `keepalive` turns on TCP
    /// keepalive after that much idle time, so dead peers are noticed.
    pub fn new(
        listener: TcpListener,
        limiter: ConnLimiter,
        head_timeout: Duration,
        keepalive: Option<Duration>,
    ) -> LimitedIncoming {
        LimitedIncoming {
            listener,
            limiter,
            head_timeout,
            keepalive,
            backoff: None,
        }
    }
}

/// Turns on TCP keepalive after `idle`; failures only cost the keepalive.
pub fn set_keepalive(stream: &TcpStream, idle: Duration) {
    use rustix::net::sockopt;
    let _ = sockopt::set_socket_keepalive(stream, true);
    let _ = sockopt::set_tcp_keepidle(stream, idle);
    let _ = sockopt::set_tcp_keepintvl(stream, idle);
    let _ = sockopt::set_tcp_keepcnt(stream, 3);
}

impl tokio_stream::Stream for LimitedIncoming {
    type Item = io::Result<HeadTimeout<TcpStream>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(pause) = this.backoff.as_mut() {
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.backoff = None;
        }
        loop {
            match this.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    // tonic logs it and asks again; the pause comes first.
                    this.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Ok((stream, addr))) => {
                    let Some(admission) = this.limiter.admit(Some(addr.ip())) else {
                        log::debug!("refused a connection from {addr}: over the cap");
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    if let Some(idle) = this.keepalive {
                        set_keepalive(&stream, idle);
                    }
                    return Poll::Ready(Some(Ok(HeadTimeout::new(
                        stream,
                        this.head_timeout,
                        Some(admission),
                    ))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_source_and_in_all() {
        let limiter = ConnLimiter::new(2, 3);
        let a: IpAddr = "127.0.0.77".parse().expect("an address");
        let b: IpAddr = "127.0.0.1".parse().expect("an address");
        let a1 = limiter.admit(Some(a)).expect("first from a");
        let a2 = limiter.admit(Some(a)).expect("second from a");
        assert!(
            limiter.admit(Some(a)).is_none(),
            "a third from a is over its cap"
        );
        let b1 = limiter.admit(Some(b)).expect("b has its own cap");
        assert!(limiter.admit(Some(b)).is_none(), "the total is reached");
        assert!(
            limiter.admit(None).is_none(),
            "a Unix client counts in the total"
        );
        drop(a1);
        assert_eq!(limiter.open(), 2);
        let a3 = limiter.admit(Some(a)).expect("a slot came back");
        drop((a2, a3, b1));
        assert_eq!(limiter.open(), 0);
        assert!(limiter.admit(None).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_times_out_and_a_talking_one_does_not() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, server) = tokio::io::duplex(64);
        let mut silent = HeadTimeout::new(server, Duration::from_secs(1), None);
        let mut buf = [0u8; 8];
        let err = silent.read(&mut buf).await.expect_err("nothing was sent");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(client);

        let (mut client, server) = tokio::io::duplex(64);
        let mut talking = HeadTimeout::new(server, Duration::from_secs(1), None);
        client.write_all(b"GET").await.expect("write");
        assert_eq!(talking.read(&mut buf).await.expect("read"), 3);
        // Past the head deadline, a quiet spell is no longer an error.
        tokio::time::sleep(Duration::from_secs(5)).await;
        client.write_all(b"!").await.expect("write");
        assert_eq!(talking.read(&mut buf).await.expect("read"), 1);
    }
}
