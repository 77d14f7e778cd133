//! The peer protocol: `models.ClusterInfo/GetClusterInfo`, wire-compatible
//! with harepd's messaging.proto (fields 1–6) and extended (7+).
//!
//! - [`proto`]: the generated messages, client and server.
//! - [`client`]: asking peers, in parallel and under deadlines; an
//!   unreachable peer is a value ([`client::PeerView::Unreachable`]).
//! - [`opinion`]: pure functions that build a data node's or the
//!   witness's answer from plain facts.
//! - [`server`]: `pgsql-state peer`, serving a listener it is given.
//! - [`tls`]: loading the PEM files of `gRPC.tls`.

pub mod client;
pub mod opinion;
pub mod server;
pub mod tls;

/// The generated protocol code (`proto/messaging.proto`).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("models");
}
