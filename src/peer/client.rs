//! Asking peers. Every call has a connect deadline and a call deadline
//! (`connectionDeadline`), and a hard bound around both; fan-out runs in
//! parallel. Errors become [`PeerView::Unreachable`] values, so callers
//! decide with them instead of failing.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tonic::transport::{ClientTlsConfig, Endpoint};

use super::proto::cluster_info_client::ClusterInfoClient;
use super::proto::{IKnow, WhatYouKnow};
use super::tls::{self, TlsError};
use crate::config::Grpc;
use crate::error_text::one_line;

/// Why a peer gave no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    /// The configured address is not a URI tonic accepts.
    #[error("bad address {0:?}")]
    BadAddress(String),
    /// No answer within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Nothing listens at the address.
    #[error("connection refused")]
    Refused,
    /// The connection failed otherwise (TLS, unreachable, reset, …).
    #[error("cannot connect: {}", one_line(.0.as_ref()))]
    Connect(#[source] Arc<tonic::transport::Error>),
    /// The peer answered with an error status.
    #[error("answered {code:?}: {message}")]
    Status {
        /// The gRPC status code.
        code: tonic::Code,
        /// The peer's message (at most 200 characters of it).
        message: String,
    },
    /// The peer belongs to another cluster.
    #[error("ignored: system identifier {theirs}, not {ours}")]
    OtherSystem {
        /// The peer's system identifier.
        theirs: u64,
        /// Ours (or the majority's).
        ours: u64,
    },
}

/// A peer's answer, or why there is none. (Answers are the common case,
/// held briefly, and a handful at a time, so they are not boxed.)
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum PeerView {
    /// What the peer said.
    Answered(IKnow),
    /// Why it said nothing.
    Unreachable(PeerError),
}

/// Asks peers on behalf of this node (`me`).
#[derive(Clone)]
pub struct PeerClient {
    inner: Arc<Inner>,
}

struct Inner {
    me: WhatYouKnow,
    tls: Option<ClientTlsConfig>,
    server_host_override: Option<String>,
    deadline: Duration,
    /// The source address of outbound asks: this node's own `bindAddress`
    /// when it names one, so that peers know the ask comes from a
    /// configured voter (see the peer server's verification slots).
    local: Option<std::net::IpAddr>,
}

impl PeerClient {
    /// A client with the config's TLS and deadline; `me` is sent as the asker.
    pub fn new(grpc: &Grpc, me: WhatYouKnow) -> Result<PeerClient, TlsError> {
        Ok(PeerClient {
            inner: Arc::new(Inner {
                me,
                tls: tls::client_config(&grpc.tls)?,
                server_host_override: grpc.server_host_override.clone(),
                deadline: grpc.connection_deadline,
                local: grpc
                    .bind_address
                    .parse::<std::net::IpAddr>()
                    .ok()
                    .filter(|ip| !ip.is_unspecified()),
            }),
        })
    }

    /// The same client with another deadline.
    pub fn with_deadline(&self, deadline: Duration) -> PeerClient {
        PeerClient {
            inner: Arc::new(Inner {
                me: self.inner.me.clone(),
                tls: self.inner.tls.clone(),
                server_host_override: self.inner.server_host_override.clone(),
                deadline,
                local: self.inner.local,
            }),
        }
    }

    /// The per-call deadline.
    pub fn deadline(&self) -> Duration {
        self.inner.deadline
    }

    /// Asks the peer at `addr` (`host:port`), within the deadline.
    pub async fn ask(&self, addr: &str) -> PeerView {
        let deadline = self.inner.deadline;
        match tokio::time::timeout(deadline, self.call(addr, deadline)).await {
            Ok(Ok(answer)) => PeerView::Answered(answer),
            Ok(Err(e)) => PeerView::Unreachable(e),
            Err(_) => PeerView::Unreachable(PeerError::Timeout(deadline)),
        }
    }

    async fn call(&self, addr: &str, deadline: Duration) -> Result<IKnow, PeerError> {
        let scheme = if self.inner.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let bad = || PeerError::BadAddress(addr.to_string());
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|_| bad())?
            .connect_timeout(deadline)
            .timeout(deadline);
        // Only towards an address of the same family: a name may resolve
        // to either, and a source of the other family cannot connect.
        let dest = crate::config::host_of(addr)
            .parse::<std::net::IpAddr>()
            .ok();
        if let (Some(local), Some(dest)) = (self.inner.local, dest) {
            if local.is_ipv4() == dest.is_ipv4() {
                endpoint = endpoint.local_address(Some(local));
            }
        }
        if let Some(tls) = &self.inner.tls {
            let host = crate::config::host_of(addr);
            let name = self.inner.server_host_override.as_deref().unwrap_or(host);
            endpoint = endpoint
                .tls_config(tls.clone().domain_name(name))
                .map_err(|e| PeerError::Connect(Arc::new(e)))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| connect_error(e, deadline))?;
        let mut request = tonic::Request::new(self.inner.me.clone());
        request.set_timeout(deadline);
        match ClusterInfoClient::new(channel)
            .get_cluster_info(request)
            .await
        {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(match status.code() {
                tonic::Code::Cancelled | tonic::Code::DeadlineExceeded => {
                    PeerError::Timeout(deadline)
                }
                code => PeerError::Status {
                    code,
                    message: status.message().chars().take(200).collect(),
                },
            }),
        }
    }

    /// Asks every peer in parallel; answers come back in `addrs` order.
    pub async fn ask_all(&self, addrs: &[String]) -> Vec<(String, PeerView)> {
        let mut set = JoinSet::new();
        for (i, addr) in addrs.iter().enumerate() {
            let client = self.clone();
            let addr = addr.clone();
            set.spawn(async move { (i, client.ask(&addr).await) });
        }
        let mut views: Vec<Option<PeerView>> = vec![None; addrs.len()];
        while let Some(joined) = set.join_next().await {
            if let Ok((i, view)) = joined {
                views[i] = Some(view);
            }
        }
        addrs
            .iter()
            .cloned()
            .zip(views)
            .map(|(addr, view)| {
                (
                    addr,
                    // A task that panicked or was cancelled gave no answer in time.
                    view.unwrap_or(PeerView::Unreachable(PeerError::Timeout(self.deadline()))),
                )
            })
            .collect()
    }
}

/// Classifies a failed connect by the errors it is made of: an I/O error
/// saying "refused" or "timed out", or tonic's own connect timeout.
fn connect_error(e: tonic::transport::Error, deadline: Duration) -> PeerError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if s.is::<tonic::TimeoutExpired>() {
            return PeerError::Timeout(deadline);
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return PeerError::Refused,
                std::io::ErrorKind::TimedOut => return PeerError::Timeout(deadline),
                _ => {}
            }
        }
        source = s.source();
    }
    PeerError::Connect(Arc::new(e))
}
