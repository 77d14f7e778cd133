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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("bad address {0:?}")]
    BadAddress(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connection refused")]
    Refused,
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("answered {code:?}: {message}")]
    Status { code: tonic::Code, message: String },
    #[error("ignored: system identifier {theirs}, not {ours}")]
    OtherSystem { theirs: u64, ours: u64 },
}

/// A peer's answer, or why there is none. (Answers are the common case,
/// held briefly, and a handful at a time, so they are not boxed.)
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum PeerView {
    Answered(IKnow),
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
        if let Some(tls) = &self.inner.tls {
            let host = addr
                .rsplit_once(':')
                .map_or(addr, |(h, _)| h)
                .trim_matches(['[', ']']);
            let name = self.inner.server_host_override.as_deref().unwrap_or(host);
            endpoint = endpoint
                .tls_config(tls.clone().domain_name(name))
                .map_err(|e| PeerError::Connect(one_line(&e)))?;
        }
        let channel = endpoint.connect().await.map_err(|e| connect_error(&e))?;
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
                    message: status.message().to_string(),
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
                    view.unwrap_or(PeerView::Unreachable(PeerError::Connect(
                        "task failed".into(),
                    ))),
                )
            })
            .collect()
    }
}

fn connect_error(e: &tonic::transport::Error) -> PeerError {
    let text = one_line(e);
    if text.contains("Connection refused") {
        PeerError::Refused
    } else if text.contains("timed out") {
        PeerError::Timeout(Duration::ZERO)
    } else {
        PeerError::Connect(text)
    }
}
