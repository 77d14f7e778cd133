//! Caps on accepted connections, so that strangers cannot starve the
//! checks HAProxy and the peers make.
//!
//! - [`ConnLimiter`] admits a connection only while its source has fewer
//!   than `per_source` open, and the strangers together fewer than
//!   `total`. A refused connection is closed at once. A source is an IPv4
//!   address or an IPv6 /64 ([`source_key`]).
//! - [`Reserved`] addresses (the configured voters at the peer port;
//!   HAProxy's addresses and loopback at the responder) are never refused
//!   because strangers hold the slots: they count against their own
//!   per-address cap only.
//! - [`SetupDeadline`] wraps a stream that must finish setting up within a
//!   bound: its first byte (the responder), or its first whole request
//!   (the peer port: the TLS handshake, HTTP/2's preface and SETTINGS,
//!   and a request's headers, as [`SetupTracker`] hears of it). A client
//!   that dawdles gets an error, and its slot back.
//! - [`LimitedIncoming`] is the peer server's accept loop: a stream of
//!   admitted connections under setup deadlines, for tonic.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

/// Addresses whose connections are never refused for strangers' sake.
/// Cheap to clone; the set can be replaced while in use (a host name's
/// addresses change).
#[derive(Clone, Default)]
pub struct Reserved {
    addrs: Arc<RwLock<HashSet<IpAddr>>>,
    loopback: bool,
}

impl Reserved {
    /// `addrs`, and when `loopback` the two loopback addresses a local
    /// client comes from (127.0.0.1 and ::1; not the rest of 127.0.0.0/8,
    /// which any local process can bind).
    pub fn new(addrs: impl IntoIterator<Item = IpAddr>, loopback: bool) -> Reserved {
        let reserved = Reserved {
            addrs: Arc::default(),
            loopback,
        };
        reserved.set(addrs);
        reserved
    }

    /// Replaces the addresses.
    pub fn set(&self, addrs: impl IntoIterator<Item = IpAddr>) {
        let addrs: HashSet<IpAddr> = addrs.into_iter().map(|ip| ip.to_canonical()).collect();
        match self.addrs.write() {
            Ok(mut known) => *known = addrs,
            Err(poisoned) => *poisoned.into_inner() = addrs,
        }
    }

    /// Whether `ip` is reserved (in any spelling).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if self.loopback
            && (ip == IpAddr::from(std::net::Ipv4Addr::LOCALHOST)
                || ip == IpAddr::from(std::net::Ipv6Addr::LOCALHOST))
        {
            return true;
        }
        match self.addrs.read() {
            Ok(known) => known.contains(&ip),
            Err(poisoned) => poisoned.into_inner().contains(&ip),
        }
    }
}

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

/// Admits connections under a per-source and a total cap, reserved
/// addresses apart. Cheap to clone.
#[derive(Clone)]
pub struct ConnLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    per_source: usize,
    total: usize,
    reserved: Reserved,
    open: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    /// Every open connection, reserved ones included.
    total: usize,
    /// Open connections of sources that are not reserved.
    strangers: usize,
    /// Per source key (or per reserved address).
    by_source: HashMap<IpAddr, usize>,
}

impl ConnLimiter {
    /// A limiter allowing `per_source` connections from one source and
    /// `total` from all sources that are not reserved.
    pub fn new(per_source: usize, total: usize) -> ConnLimiter {
        ConnLimiter::with_reserved(per_source, total, Reserved::default())
    }

    /// [`ConnLimiter::new`], with `reserved` addresses that only their own
    /// per-address cap (`per_source`) bounds.
    pub fn with_reserved(per_source: usize, total: usize, reserved: Reserved) -> ConnLimiter {
        ConnLimiter {
            inner: Arc::new(Inner {
                per_source,
                total,
                reserved,
                open: Mutex::new(Counts::default()),
            }),
        }
    }

    /// The reserved addresses (to replace them).
    pub fn reserved(&self) -> &Reserved {
        &self.inner.reserved
    }

    /// Admits a connection from `source` (`None` for a Unix socket, which
    /// only the total bounds), or refuses it when a cap is reached. The
    /// slot is held until the returned [`Admission`] is dropped.
    pub fn admit(&self, source: Option<IpAddr>) -> Option<Admission> {
        let reserved = source.is_some_and(|ip| self.inner.reserved.contains(ip));
        let key = source.map(|ip| {
            if reserved {
                ip.to_canonical()
            } else {
                source_key(ip)
            }
        });
        let mut open = self.lock();
        if !reserved && open.strangers >= self.inner.total {
            return None;
        }
        if let Some(key) = key {
            let n = open.by_source.entry(key).or_default();
            if *n >= self.inner.per_source {
                return None;
            }
            *n += 1;
        }
        open.total += 1;
        if !reserved {
            open.strangers += 1;
        }
        Some(Admission {
            limiter: self.clone(),
            key,
            reserved,
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
    key: Option<IpAddr>,
    reserved: bool,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = self.limiter.lock();
        open.total = open.total.saturating_sub(1);
        if !self.reserved {
            open.strangers = open.strangers.saturating_sub(1);
        }
        if let Some(key) = self.key {
            if let Some(n) = open.by_source.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    open.by_source.remove(&key);
                }
            }
        }
    }
}

/// Which connections of a server have set up: the server's service marks
/// a connection (by its remote address) when a request arrives on it, and
/// its [`SetupDeadline`] then stops counting. Cheap to clone.
#[derive(Clone, Default)]
pub struct SetupTracker {
    open: Arc<Mutex<HashMap<SocketAddr, Arc<AtomicBool>>>>,
}

impl SetupTracker {
    /// Marks the connection from `remote` as set up (a request came).
    pub fn established(&self, remote: SocketAddr) {
        let open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(flag) = open.get(&remote) {
            flag.store(true, Ordering::Release);
        }
    }

    /// Registers a new connection; the returned guard forgets it on drop.
    fn register(&self, remote: SocketAddr) -> Registration {
        let flag = Arc::new(AtomicBool::new(false));
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(remote, flag.clone());
        Registration {
            tracker: self.clone(),
            remote,
            flag,
        }
    }
}

/// A connection known to a [`SetupTracker`], forgotten on drop.
struct Registration {
    tracker: SetupTracker,
    remote: SocketAddr,
    flag: Arc<AtomicBool>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut open = self
            .tracker
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // A later connection from the same address and port has its own.
        if open
            .get(&self.remote)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flag))
        {
            open.remove(&self.remote);
        }
    }
}

/// What ends a stream's set-up.
enum SetupEnd {
    /// Its first byte.
    FirstByte,
    /// Its first request, as a [`SetupTracker`] hears of it.
    Request(Registration),
}

/// A stream that must finish setting up before a deadline; it also holds
/// the connection's [`Admission`], so the slot lives as long as the stream.
pub struct SetupDeadline<S> {
    inner: S,
    deadline: Option<Pin<Box<Sleep>>>,
    end: SetupEnd,
    _admission: Option<Admission>,
}

impl<S> SetupDeadline<S> {
    /// Wraps `inner`: reads fail with `TimedOut` if nothing arrived within
    /// `bound` of now.
    pub fn first_byte(inner: S, bound: Duration, admission: Option<Admission>) -> SetupDeadline<S> {
        SetupDeadline {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(bound))),
            end: SetupEnd::FirstByte,
            _admission: admission,
        }
    }

    /// Wraps `inner` from `remote`: reads fail with `TimedOut` unless
    /// `tracker` hears of a request on it within `bound` of now.
    pub fn first_request(
        inner: S,
        bound: Duration,
        admission: Option<Admission>,
        tracker: &SetupTracker,
        remote: SocketAddr,
    ) -> SetupDeadline<S> {
        SetupDeadline {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(bound))),
            end: SetupEnd::Request(tracker.register(remote)),
            _admission: admission,
        }
    }

    /// Whether the set-up is over (so the deadline no longer counts).
    fn set_up(&self, read_something: bool) -> bool {
        match &self.end {
            SetupEnd::FirstByte => read_something,
            SetupEnd::Request(r) => r.flag.load(Ordering::Acquire),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SetupDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.deadline.is_some() && this.set_up(buf.filled().len() > before) {
            this.deadline = None;
        }
        match result {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => {
                let expired = match this.deadline.as_mut() {
                    Some(deadline) => deadline.as_mut().poll(cx).is_ready(),
                    None => false,
                };
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client did not set up in time",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SetupDeadline<S> {
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

impl tonic::transport::server::Connected for SetupDeadline<TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// The peer server's accept loop as a stream: each accepted connection is
/// admitted by the limiter (or closed at once) and must set up (a first
/// request, as `tracker` hears) within `setup_timeout`.
pub struct LimitedIncoming {
    listener: TcpListener,
    limiter: ConnLimiter,
    tracker: SetupTracker,
    setup_timeout: Duration,
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
        tracker: SetupTracker,
        setup_timeout: Duration,
        keepalive: Option<Duration>,
    ) -> LimitedIncoming {
        LimitedIncoming {
            listener,
            limiter,
            tracker,
            setup_timeout,
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
    type Item = io::Result<SetupDeadline<TcpStream>>;

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
                    return Poll::Ready(Some(Ok(SetupDeadline::first_request(
                        stream,
                        this.setup_timeout,
                        Some(admission),
                        &this.tracker,
                        addr,
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

    #[test]
    fn reserved_addresses_pass_a_full_house_and_a_v6_host_is_one_source() {
        let voter: IpAddr = "10.0.0.2".parse().expect("an address");
        let limiter = ConnLimiter::with_reserved(2, 2, Reserved::new([voter], true));
        let s1: IpAddr = "192.0.2.1".parse().expect("an address");
        let s2: IpAddr = "192.0.2.2".parse().expect("an address");
        let held = [limiter.admit(Some(s1)), limiter.admit(Some(s2))];
        assert!(held.iter().all(Option::is_some));
        assert!(limiter.admit(Some(s1)).is_none(), "strangers are full");
        // The voter, in either spelling, and local clients still get in,
        // up to their own per-address cap.
        let mapped: IpAddr = "::ffff:10.0.0.2".parse().expect("an address");
        let v = [limiter.admit(Some(voter)), limiter.admit(Some(mapped))];
        assert!(v.iter().all(Option::is_some));
        assert!(limiter.admit(Some(voter)).is_none(), "its own cap");
        let local = limiter.admit(Some("127.0.0.1".parse().expect("an address")));
        assert!(local.is_some(), "a local nc");
        let other_local: IpAddr = "127.0.0.77".parse().expect("an address");
        assert!(
            limiter.admit(Some(other_local)).is_none(),
            "the rest of 127/8 is anyone's"
        );
        assert_eq!(limiter.open(), 5);
        drop((held, v, local));
        // Every address of one IPv6 /64 is one source.
        let limiter = ConnLimiter::new(2, 100);
        let a = [
            limiter.admit(Some("2001:db8::1".parse().expect("an address"))),
            limiter.admit(Some("2001:db8::ffff:2".parse().expect("an address"))),
        ];
        assert!(a.iter().all(Option::is_some));
        assert!(limiter
            .admit(Some("2001:db8::3".parse().expect("an address")))
            .is_none());
        assert!(limiter
            .admit(Some("2001:db8:0:1::3".parse().expect("an address")))
            .is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_times_out_and_one_with_does_not() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tracker = SetupTracker::default();
        let remote: SocketAddr = "192.0.2.1:4000".parse().expect("an address");
        // It talks (an HTTP/2 preface, say), but no request comes.
        let (mut client, server) = tokio::io::duplex(64);
        let mut dawdler =
            SetupDeadline::first_request(server, Duration::from_secs(3), None, &tracker, remote);
        client.write_all(b"P").await.expect("write");
        let mut buf = [0u8; 8];
        assert_eq!(dawdler.read(&mut buf).await.expect("a byte"), 1);
        let err = dawdler
            .read(&mut buf)
            .await
            .expect_err("no request in time");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(dawdler);
        // A request came: quiet spells after it are no error.
        let (mut client, server) = tokio::io::duplex(64);
        let mut asker =
            SetupDeadline::first_request(server, Duration::from_secs(3), None, &tracker, remote);
        tracker.established(remote);
        tokio::time::sleep(Duration::from_secs(5)).await;
        client.write_all(b"!").await.expect("write");
        assert_eq!(asker.read(&mut buf).await.expect("read"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_times_out_and_a_talking_one_does_not() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, server) = tokio::io::duplex(64);
        let mut silent = SetupDeadline::first_byte(server, Duration::from_secs(1), None);
        let mut buf = [0u8; 8];
        let err = silent.read(&mut buf).await.expect_err("nothing was sent");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(client);

        let (mut client, server) = tokio::io::duplex(64);
        let mut talking = SetupDeadline::first_byte(server, Duration::from_secs(1), None);
        client.write_all(b"GET").await.expect("write");
        assert_eq!(talking.read(&mut buf).await.expect("read"), 3);
        // Past the head deadline, a quiet spell is no longer an error.
        tokio::time::sleep(Duration::from_secs(5)).await;
        client.write_all(b"!").await.expect("write");
        assert_eq!(talking.read(&mut buf).await.expect("read"), 1);
    }
}
