//! `pgsql-state peer`: the gRPC server. A data node answers with its own
//! Postgres facts and opinion; the witness asks the data nodes (in
//! parallel, within half of `connectionDeadline`) and answers with what it
//! saw, caching that for a second so a storm of questions is not a storm
//! of fan-outs. A slow or dead Postgres or peer never makes an answer late.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::server::TcpIncoming;
use tonic::transport::{Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use super::client::{PeerClient, PeerView};
use super::opinion::{self, Me};
use super::proto::cluster_info_server::{ClusterInfo, ClusterInfoServer};
use super::proto::{IKnow, Role, WhatYouKnow};
use crate::config::Config;
use crate::facts;
use crate::probe::{self, ProbeError};
use crate::state;
use crate::warm::WarmConnection;

/// How long the witness reuses one fan-out's answer.
pub const WITNESS_CACHE_TTL: Duration = Duration::from_secs(1);
/// How often a data node refreshes its name → address directory.
pub const DIRECTORY_REFRESH: Duration = Duration::from_secs(5);

/// The ClusterInfo service. Cheap to clone.
#[derive(Clone)]
pub struct PeerService {
    inner: Arc<PeerState>,
}

struct PeerState {
    me: Me,
    kind: Kind,
}

enum Kind {
    Data(DataNode),
    Witness(Witness),
}

struct DataNode {
    pg: Result<tokio_postgres::Config, String>,
    warm: WarmConnection,
    facts_timeout: Duration,
    runtime_dir: PathBuf,
    /// Node name → replication address, learned from askers and neighbours.
    directory: Mutex<HashMap<String, String>>,
    neighbours: Vec<String>,
    client: PeerClient,
}

struct Witness {
    client: PeerClient,
    neighbours: Vec<String>,
    cache: tokio::sync::Mutex<Option<(Instant, IKnow)>>,
}

/// Whether this node is the witness: its own `bindAddress:bindPort` is the
/// configured `gRPC.witness`.
pub fn is_witness(config: &Config) -> bool {
    let own = crate::config::host_port(
        &format!("{}:{}", config.grpc.bind_address, config.grpc.bind_port),
        config.grpc.bind_port,
    );
    own.is_ok() && config.grpc.witness.as_deref() == own.as_deref().ok()
}

impl PeerService {
    /// Builds the service for `config`; `generation` identifies the file.
    pub fn new(config: &Config, generation: u64) -> Result<PeerService, super::tls::TlsError> {
        let me = Me {
            node_name: config.node_name.clone(),
            primary_ip: config.primary_ip.to_string(),
            witness: config.grpc.witness.clone().unwrap_or_default(),
            config_generation: generation,
        };
        let asker = WhatYouKnow {
            ip: me.primary_ip.clone(),
            node_id: 0,
            node_name: me.node_name.clone(),
        };
        let client = PeerClient::new(&config.grpc, asker)?;
        let deadline = config.grpc.connection_deadline;
        let kind = if is_witness(config) {
            Kind::Witness(Witness {
                client: client.with_deadline(deadline / 2),
                neighbours: config.grpc.neighbours.clone(),
                cache: tokio::sync::Mutex::new(None),
            })
        } else {
            let pg = probe::parse_conninfo(&config.responder.conninfo).map_err(|e| e.to_string());
            let directory = HashMap::from([(me.node_name.clone(), me.primary_ip.clone())]);
            Kind::Data(DataNode {
                pg,
                warm: WarmConnection::default(),
                facts_timeout: config.responder.check_timeout.min(deadline / 2),
                runtime_dir: config.responder.runtime_dir.clone(),
                directory: Mutex::new(directory),
                neighbours: config.grpc.neighbours.clone(),
                client,
            })
        };
        Ok(PeerService {
            inner: Arc::new(PeerState { me, kind }),
        })
    }

    /// Whether this service runs as the witness.
    pub fn is_witness(&self) -> bool {
        matches!(self.inner.kind, Kind::Witness(_))
    }

    /// This node's current answer, as any asker would get it.
    pub async fn answer(&self, asker: Option<&WhatYouKnow>) -> IKnow {
        match &self.inner.kind {
            Kind::Data(node) => {
                if let Some(asker) = asker.filter(|a| !a.node_name.is_empty() && !a.ip.is_empty()) {
                    node.learn(&asker.node_name, &asker.ip);
                }
                node.answer(&self.inner.me).await
            }
            Kind::Witness(w) => w.answer(&self.inner.me).await,
        }
    }

    /// Work a data node does in the background: refreshing its directory
    /// from its neighbours, and the sd_notify status line. Runs forever.
    pub async fn background(self, mut status: impl FnMut(&str)) {
        let mut tick = tokio::time::interval(DIRECTORY_REFRESH);
        loop {
            tick.tick().await;
            let answer = match &self.inner.kind {
                Kind::Data(node) => {
                    node.refresh_directory().await;
                    node.answer(&self.inner.me).await
                }
                Kind::Witness(w) => w.answer(&self.inner.me).await,
            };
            status(&status_line(&answer));
        }
    }
}

/// One line for systemd's STATUS=.
pub fn status_line(a: &IKnow) -> String {
    let role = Role::try_from(a.role).unwrap_or(Role::Unknown);
    match role {
        Role::Witness => format!(
            "witness: master {:?}, slaves {:?}, {} unreachable",
            a.master,
            a.slaves,
            a.unreachable.len()
        ),
        Role::Down => format!("postgres down: {}", a.postgres_error),
        _ => format!(
            "{} on timeline {}: master {:?}, slaves {:?}",
            role.as_str_name().to_lowercase(),
            a.timeline,
            a.master,
            a.slaves
        ),
    }
}

impl DataNode {
    fn learn(&self, name: &str, ip: &str) {
        if let Ok(mut dir) = self.directory.lock() {
            dir.insert(name.to_string(), ip.to_string());
        }
    }

    async fn answer(&self, me: &Me) -> IKnow {
        let facts = match &self.pg {
            Ok(config) => {
                self.warm
                    .run(config, self.facts_timeout, |client| async move {
                        facts::query(&client).await
                    })
                    .await
            }
            Err(why) => Err(ProbeError::Conninfo(why.clone())),
        };
        if let Err(e) = &facts {
            log::warn!("postgres: {}", crate::error_text::one_line(e));
        }
        let verdict = state::read_verdict(&self.runtime_dir);
        let now = match &verdict {
            state::VerdictRead::Present(_) => state::now().ok(),
            _ => None,
        };
        let directory = self.directory.lock().map(|d| d.clone()).unwrap_or_default();
        let error = facts.as_ref().err().map(|e| e.down_reason().to_string());
        let facts = match (&facts, &error) {
            (Ok(f), _) => Ok(f),
            (Err(_), Some(why)) => Err(why.as_str()),
            (Err(_), None) => Err("unknown"),
        };
        opinion::data_node_answer(me, facts, &verdict, now.as_ref(), &directory)
    }

    /// Asks the neighbours who they are, to map standby names to addresses.
    /// A neighbour of another system identifier is ignored, with a log line.
    async fn refresh_directory(&self) {
        let ours = match &self.pg {
            Ok(config) => self
                .warm
                .run(config, self.facts_timeout, |client| async move {
                    facts::query(&client).await
                })
                .await
                .ok()
                .map(|f| f.system_identifier),
            Err(_) => None,
        };
        for (addr, view) in self.client.ask_all(&self.neighbours).await {
            match view {
                PeerView::Answered(a)
                    if ours
                        .is_some_and(|o| a.system_identifier != 0 && a.system_identifier != o) =>
                {
                    log::warn!(
                        "peer {addr} ({}) ignored: system identifier {}, ours is {}",
                        a.node_name,
                        a.system_identifier,
                        ours.unwrap_or(0)
                    );
                }
                PeerView::Answered(a) if !a.node_name.is_empty() && !a.ip.is_empty() => {
                    self.learn(&a.node_name, &a.ip)
                }
                PeerView::Answered(_) => {}
                PeerView::Unreachable(e) => log::info!("peer {addr}: {e}"),
            }
        }
    }
}

impl Witness {
    async fn answer(&self, me: &Me) -> IKnow {
        // One fan-out at a time; the others wait for it and share its answer.
        let mut cache = self.cache.lock().await;
        if let Some((at, answer)) = cache.as_ref() {
            if at.elapsed() < WITNESS_CACHE_TTL {
                return answer.clone();
            }
        }
        let views = self.client.ask_all(&self.neighbours).await;
        for (addr, view) in &views {
            if let PeerView::Unreachable(e) = view {
                log::info!("witness: peer {addr}: {e}");
            }
        }
        let answer = opinion::witness_answer(me, &views);
        for u in answer
            .unreachable
            .iter()
            .filter(|u| u.reason.starts_with("ignored"))
        {
            log::warn!("witness: peer {} {}", u.address, u.reason);
        }
        *cache = Some((Instant::now(), answer.clone()));
        answer
    }
}

#[tonic::async_trait]
impl ClusterInfo for PeerService {
    async fn get_cluster_info(
        &self,
        request: Request<WhatYouKnow>,
    ) -> Result<Response<IKnow>, Status> {
        let asker = request.into_inner();
        Ok(Response::new(self.answer(Some(&asker)).await))
    }
}

/// Serves `service` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<ServerTlsConfig>,
    service: PeerService,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    builder
        .add_service(ClusterInfoServer::new(service))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}
