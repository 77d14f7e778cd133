//! `pgsql-state peer`: the gRPC server. A data node answers with its own
//! Postgres facts and opinion; the witness asks the data nodes (in
//! parallel, within half of `connectionDeadline`) and answers with what it
//! saw, caching that for a second so a storm of questions is not a storm
//! of fan-outs. A slow or dead Postgres or peer never makes an answer late.
//!
//! The port is open to whoever can reach the node, so an inbound ask is
//! information, never an instruction: what this node knows about names and
//! addresses comes from its config and from the answers to its own asks.
//! The server caps message size, request time, streams per connection,
//! connection set-up time, and connections per source and in all
//! ([`crate::conn_limit`]); the configured voters' addresses are never
//! refused for strangers' sake.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::{Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use super::client::{PeerClient, PeerView};
use super::opinion::{self, Me};
use super::proto::cluster_info_server::{ClusterInfo, ClusterInfoServer};
use super::proto::{IKnow, Role, WhatYouKnow};
use crate::config::Config;
use crate::conn_limit::{ConnLimiter, LimitedIncoming};
use crate::fencing::claims::Claim;
use crate::fencing::clock;
use crate::pg::facts::{self, NodeFacts};
use crate::pg::warm::WarmConnection;
use crate::pg::{self, ProbeError};
use crate::runtime_files;

use crate::conn_limit::{Reserved, SetupTracker};
pub use crate::fencing::timing::{FACTS_CACHE_TTL, WITNESS_CACHE_TTL};
/// How often a data node refreshes its name → address directory.
pub const DIRECTORY_REFRESH: Duration = Duration::from_secs(5);
/// The largest request the server decodes. A `WhatYouKnow` is a few dozen
/// bytes; anything near this is not a peer.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Connections one source address may hold open at once.
pub const MAX_CONNECTIONS_PER_SOURCE: usize = 32;
/// Connections the server holds open at once.
pub const MAX_CONNECTIONS: usize = 512;
/// Requests served at once on one connection.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 16;
/// How long a new connection may take to set up (the TLS handshake,
/// HTTP/2's preface and SETTINGS, and its first request's headers) before
/// it is closed. Our own asks send all of it at once.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long any connection may live; peers ask on fresh connections.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);

/// The ClusterInfo service. Cheap to clone.
#[derive(Clone)]
pub struct PeerService {
    inner: Arc<PeerState>,
}

struct PeerState {
    me: Me,
    kind: Kind,
    /// Where this voter's claim record lives.
    state_dir: PathBuf,
    /// When a missing or unreadable record was last logged (ms since the
    /// epoch), so the warning is loud but not one line per ask.
    record_warned_ms: std::sync::atomic::AtomicU64,
    /// The configured voters' peer addresses (never the asker's word), and
    /// a client to ask them back when an inbound claim is to be verified.
    voters: Vec<String>,
    verify_client: PeerClient,
    /// Who may start a verification: one at a time for the configured
    /// voters' addresses, one for everyone else, so strangers' claims can
    /// neither become a storm of asks nor crowd out the real one.
    verify_gate: VerifyGate,
    /// The configured voters' addresses: the connection limiter reserves
    /// them, and the verification gate gives them their own slot.
    voter_addrs: Reserved,
    /// What the connection limiter never refuses for strangers' sake: the
    /// configured voters, this node's own addresses and loopback (its own
    /// reconciler and `promote-check` ask from there; counted as strangers,
    /// they lost their own vote to a flood).
    reserved_addrs: Reserved,
    /// This node's own addresses (`primaryIP`, and `bindAddress` unless it
    /// is every address).
    own_ips: Vec<std::net::IpAddr>,
    /// Which connections have sent a request (their set-up deadline ends).
    setup: SetupTracker,
    /// The lease's clock: per claimant, when (CLOCK_BOOTTIME, ms) this
    /// voter last returned a record holding its claim to its ask.
    confirmed: Mutex<HashMap<String, u64>>,
    /// When this voter started (CLOCK_BOOTTIME, ms): it cannot know what
    /// it answered before.
    started_ms: u64,
}

enum Kind {
    Data(DataNode),
    Witness(Witness),
}

struct DataNode {
    pg: Result<tokio_postgres::Config, Arc<ProbeError>>,
    warm: WarmConnection,
    facts_timeout: Duration,
    /// The last facts query and when it ended; asks within
    /// [`FACTS_CACHE_TTL`] share it, and one query runs at a time.
    facts_cache: tokio::sync::Mutex<Option<(Instant, FactsResult)>>,
    runtime_dir: PathBuf,
    /// Node name → replication address: this node's own from its config,
    /// the others' from the answers to this node's own asks. Never from
    /// whoever asks us.
    directory: Mutex<HashMap<String, String>>,
    neighbours: Vec<String>,
    client: PeerClient,
}

/// The facts, or the fixed reason they could not be had.
type FactsResult = Result<NodeFacts, crate::word::DownReason>;

struct Witness {
    client: PeerClient,
    neighbours: Vec<String>,
    cache: tokio::sync::Mutex<Option<(Instant, IKnow)>>,
}

impl PeerService {
    /// Builds the service for `config`; `generation` identifies the file.
    pub fn new(config: &Config, generation: u64) -> Result<PeerService, super::tls::TlsError> {
        let me = Me {
            node_name: config.node_name.clone(),
            primary_ip: config.primary_ip.to_string(),
            witness: config.grpc.witness.clone().unwrap_or_default(),
            config_generation: generation,
            lease_ms: crate::fencing::timing::lease(
                config.watchdog,
                config.grpc.connection_deadline,
            )
            .as_millis() as u64,
            haproxy_term_ms: crate::fencing::timing::haproxy_term(&config.haproxy_check).as_millis()
                as u64,
        };
        let asker = WhatYouKnow {
            ip: me.primary_ip.clone(),
            node_name: me.node_name.clone(),
            ..WhatYouKnow::default()
        };
        let client = PeerClient::new(&config.grpc, asker)?;
        let deadline = config.grpc.connection_deadline;
        // Each other voter once (the config left out this node and repeats).
        let voters = config.grpc.other_voters();
        // This node's own addresses: its reconciler, `promote-check` and
        // `status` ask its peer from them (or from loopback).
        let own_ips: Vec<std::net::IpAddr> = [config.primary_ip]
            .into_iter()
            .chain(
                config
                    .grpc
                    .bind_address
                    .parse::<std::net::IpAddr>()
                    .ok()
                    .filter(|ip| !ip.is_unspecified()),
            )
            .collect();
        let verify_client = client.with_deadline(crate::fencing::timing::fan_out_budget(deadline));
        let voter_addrs = Reserved::new(voter_addrs_of(&voters), false);
        let verify_gate = VerifyGate::new(voter_addrs.clone(), voters.len());
        let reserved_addrs =
            Reserved::new(voter_addrs_of(&voters).chain(own_ips.iter().copied()), true);
        let kind = if config.is_witness() {
            Kind::Witness(Witness {
                client: client.with_deadline(crate::fencing::timing::fan_out_budget(deadline)),
                neighbours: config.grpc.neighbours.clone(),
                cache: tokio::sync::Mutex::new(None),
            })
        } else {
            let pg = pg::parse_conninfo(&config.responder.conninfo).map_err(Arc::new);
            let directory = HashMap::from([(me.node_name.clone(), me.primary_ip.clone())]);
            Kind::Data(DataNode {
                pg,
                warm: WarmConnection::default(),
                facts_timeout: config
                    .responder
                    .check_timeout
                    .min(crate::fencing::timing::fan_out_budget(deadline)),
                facts_cache: tokio::sync::Mutex::new(None),
                runtime_dir: config.responder.runtime_dir.clone(),
                directory: Mutex::new(directory),
                neighbours: config.grpc.neighbours.clone(),
                client,
            })
        };
        Ok(PeerService {
            inner: Arc::new(PeerState {
                me,
                kind,
                state_dir: config.state_dir.clone(),
                record_warned_ms: std::sync::atomic::AtomicU64::new(0),
                voters,
                verify_client,
                verify_gate,
                voter_addrs,
                reserved_addrs,
                own_ips,
                setup: SetupTracker::default(),
                confirmed: Mutex::new(HashMap::new()),
                started_ms: clock::boottime_ms(),
            }),
        })
    }

    /// Whether this service runs as the witness.
    pub fn is_witness(&self) -> bool {
        matches!(self.inner.kind, Kind::Witness(_))
    }

    /// This node's current answer, the same for every asker but for which
    /// cluster's claim record it carries: `cluster`, the asker's system
    /// identifier (0: this node's own, or the one the witness sees).
    ///
    /// Before answering, the record is raised with what this node saw for
    /// itself (its own Postgres as a primary; the witness's fan-out), and
    /// fsynced, so it never reports a claim it could forget.
    pub async fn answer(&self, cluster: u64) -> IKnow {
        self.answer_with_cluster(cluster).await.0
    }

    /// [`PeerService::answer`], and the one cluster this voter's record
    /// holds a claim for, if it holds exactly one (what it can tell of its
    /// own cluster while its Postgres is down).
    async fn answer_with_cluster(&self, cluster: u64) -> (IKnow, Option<u64>) {
        let me = &self.inner.me;
        let (mut answer, claims) = match &self.inner.kind {
            Kind::Data(node) => {
                let answer = node.answer(me).await;
                let claims = own_claim(me, &answer).into_iter().collect();
                (answer, claims)
            }
            Kind::Witness(w) => w.answer(me).await,
        };
        let cluster = if cluster != 0 {
            cluster
        } else {
            answer.system_identifier
        };
        let record_cluster = self.attach_record(&mut answer, claims, cluster).await;
        (answer, record_cluster)
    }

    /// Work a data node does in the background: refreshing its directory
    /// from its neighbours, and the sd_notify status line. Runs forever.
    pub async fn background(self, mut status: impl FnMut(&str)) {
        let mut tick = tokio::time::interval(DIRECTORY_REFRESH);
        loop {
            tick.tick().await;
            self.refresh_voter_ips().await;
            self.catch_up_if_needed().await;
            if let Kind::Data(node) = &self.inner.kind {
                node.refresh_directory().await;
            }
            let answer = self.answer(0).await;
            status(&status_line(&answer));
        }
    }
}

impl PeerService {
    /// Resolves the configured voters' host names again (addresses stay
    /// as written), for [`VerifyGate`] and the connection limiter.
    async fn refresh_voter_ips(&self) {
        let mut ips = Vec::new();
        for voter in &self.inner.voters {
            ips.extend(
                crate::resolve::addresses(crate::config::host_of(voter), Duration::from_secs(1))
                    .await,
            );
        }
        self.inner.voter_addrs.set(ips.iter().copied());
        self.inner
            .reserved_addrs
            .set(ips.into_iter().chain(self.inner.own_ips.iter().copied()));
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
    /// Records a name → address learned from one of our own asks; only a
    /// real IP address is kept.
    fn learn(&self, name: &str, ip: &str) {
        if ip.parse::<std::net::IpAddr>().is_err() {
            log::warn!("peer {name:?} gave {ip:?} as its address, which is not an IP; ignored");
            return;
        }
        let mut dir = self
            .directory
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if dir.get(name).map(String::as_str) != Some(ip) {
            log::info!("learned that {name} replicates on {ip}");
            dir.insert(name.to_string(), ip.to_string());
        }
    }

    /// The facts, from the last query when it ended less than
    /// [`FACTS_CACHE_TTL`] ago. One query runs at a time: asks that arrive
    /// meanwhile wait for it (bounded by its timeout) and share it.
    async fn facts(&self) -> FactsResult {
        let mut cache = self.facts_cache.lock().await;
        if let Some((at, facts)) = cache.as_ref() {
            if at.elapsed() < FACTS_CACHE_TTL {
                return facts.clone();
            }
        }
        let facts = match &self.pg {
            Ok(config) => {
                self.warm
                    .run(config, self.facts_timeout, |client| async move {
                        facts::query(&client).await
                    })
                    .await
            }
            Err(why) => Err(ProbeError::Shared(why.clone())),
        };
        let facts = facts.map_err(|e| {
            log::warn!("postgres: {}", crate::error_text::one_line(&e));
            e.down_reason()
        });
        *cache = Some((Instant::now(), facts.clone()));
        facts
    }

    async fn answer(&self, me: &Me) -> IKnow {
        let facts = self.facts().await;
        let verdict = runtime_files::read_verdict(&self.runtime_dir);
        let now = match &verdict {
            crate::fencing::verdict::VerdictRead::Present(_) => clock::now().ok(),
            _ => None,
        };
        let directory = self
            .directory
            .lock()
            .map(|d| d.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone());
        let error = facts.as_ref().err().map(ToString::to_string);
        let stopped = facts.as_ref().err().is_some_and(|e| e.means_stopped());
        let facts = match (&facts, &error) {
            (Ok(f), _) => Ok(f),
            (Err(_), Some(why)) => Err(why.as_str()),
            (Err(_), None) => Err("unknown"),
        };
        let mut answer = opinion::data_node_answer(me, facts, &verdict, now.as_ref(), &directory);
        answer.postgres_stopped = stopped;
        answer
    }

    /// Asks the neighbours who they are, to map standby names to addresses.
    /// A neighbour of another system identifier is ignored, with a log line.
    async fn refresh_directory(&self) {
        let ours = self.facts().await.ok().map(|f| f.system_identifier);
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
    /// The witness's opinion, from the cache when it is young, and the
    /// claims to raise the record with (only from a fresh fan-out).
    async fn answer(&self, me: &Me) -> (IKnow, Vec<Claim>) {
        // One fan-out at a time; the others wait for it and share its answer.
        let mut cache = self.cache.lock().await;
        if let Some((at, answer)) = cache.as_ref() {
            if at.elapsed() < WITNESS_CACHE_TTL {
                return (answer.clone(), Vec::new());
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
        let claims = observed_claims(&answer);
        (answer, claims)
    }
}

mod records;
mod verify_gate;
use records::{observed_claims, own_claim};
pub use verify_gate::VerifyGate;

#[tonic::async_trait]
impl ClusterInfo for PeerService {
    async fn get_cluster_info(
        &self,
        request: Request<WhatYouKnow>,
    ) -> Result<Response<IKnow>, Status> {
        let from = request.remote_addr();
        if let Some(from) = from {
            // A request came: the connection has set up.
            self.inner.setup.established(from);
        }
        let asker = request.into_inner();
        // Logged, never trusted: nothing the asker says changes the answer.
        log::debug!(
            "asked by {} (nodeName {:?}, ip {:?})",
            from.map_or_else(|| "?".to_string(), |a| a.to_string()),
            clip(&asker.node_name),
            clip(&asker.ip)
        );
        let (mut answer, record_cluster) = self.answer_with_cluster(asker.system_identifier).await;
        // A claim above the record is verified inside the answer, so the
        // claimant's own run already counts it.
        self.verify_inline(&asker, &mut answer, record_cluster, from.map(|a| a.ip()))
            .await;
        // Set before the answer leaves: the lease's clock.
        self.confirm_and_report(&asker, &mut answer).await;
        Ok(Response::new(answer))
    }
}

/// The addresses among `voters` written as addresses (names are resolved
/// in the background).
fn voter_addrs_of(voters: &[String]) -> impl Iterator<Item = std::net::IpAddr> + '_ {
    voters
        .iter()
        .filter_map(|v| crate::config::host_of(v).parse::<std::net::IpAddr>().ok())
}

/// At most 64 characters of `text`, for a log line.
fn clip(text: &str) -> String {
    text.chars().take(64).collect()
}

/// Serves `service` on `listener` until `shutdown` resolves, with every
/// limit of the module's docs. `request_timeout` bounds one answer.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<ServerTlsConfig>,
    service: PeerService,
    request_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let mut builder = Server::builder()
        .timeout(request_timeout)
        .concurrency_limit_per_connection(MAX_STREAMS_PER_CONNECTION as usize)
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .max_connection_age(MAX_CONNECTION_AGE)
        .max_connection_age_grace(Duration::from_secs(5));
    if let Some(tls) = tls {
        builder = builder.tls_config(tls.timeout(SETUP_TIMEOUT))?;
    }
    let incoming = LimitedIncoming::new(
        listener,
        ConnLimiter::with_reserved(
            MAX_CONNECTIONS_PER_SOURCE,
            MAX_CONNECTIONS,
            service.inner.reserved_addrs.clone(),
        ),
        service.inner.setup.clone(),
        SETUP_TIMEOUT,
        Some(Duration::from_secs(30)),
    );
    builder
        .add_service(ClusterInfoServer::new(service).max_decoding_message_size(MAX_REQUEST_BYTES))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
