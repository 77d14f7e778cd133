//! One end-to-end scene: a primary (node_1), a streaming standby (node_2)
//! and a witness, each with its peer; a reconciler per data node run every
//! second as the timer runs it; responders in every format on each node
//! (socket-activated per connection, `fencing: strict`); and one real
//! HAProxy per shipped variant, plus the original psql one-liner unit
//! behind the same tcp-check config. An observer samples every HAProxy's
//! stats socket every 100 ms and writes through every `prod` every 100 ms,
//! so a scenario can report, per variant: seconds to converge, the longest
//! write outage, the most servers ever UP in `prod`, and where each write
//! landed.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::cluster::{pg_bin, wait_until, Cluster};
use super::haproxy::Haproxy;
use super::peers::{start_peer, write_with_claims, PeerConfig};
use super::proxy::Proxy;
use super::tools::{binary, pgsql_state, require_tool, runtime_dir, Spawned};

/// The port of each responder format on every node.
pub const TEXT_PORT: u16 = 5431;
/// `--format http`.
pub const HTTP_PORT: u16 = 5434;
/// `--format agent`.
pub const AGENT_PORT: u16 = 5435;
/// The original psql one-liner, socket-activated (inetd style).
pub const PSQL_PORT: u16 = 5439;
/// Where the peers listen.
pub const PEER_PORT: u16 = 10200;

/// The original pgsql-state check: psql prints the word.
pub const PSQL_QUERY: &str =
    "SELECT CASE pg_is_in_recovery() WHEN true THEN 'standby' ELSE 'production' END";

/// One HAProxy of the scene.
pub struct Variant {
    /// What it is, e.g. `tcp-check`.
    pub label: &'static str,
    /// Whether `fencing: strict` stands behind it (the invariant applies).
    pub ours: bool,
    pub haproxy: Haproxy,
}

/// A sample of one HAProxy's `prod`.
#[derive(Debug, Clone)]
pub struct ProdSample {
    pub at: Duration,
    pub up: Vec<String>,
    /// The servers of `prod` not UP, with HAProxy's `check_status` of
    /// their last check (`L7TOUT`: it timed out, `L7RSP`: a wrong answer).
    pub down: Vec<Down>,
}

/// A server not UP, and its last check's `check_status`.
pub type Down = (String, String);

impl ProdSample {
    /// Whether `expected` is out only because its last check timed out
    /// (no other server UP): a busy machine's answer came late, the
    /// responder did not say anything but `production`.
    fn only_timed_out(&self, expected: &str) -> bool {
        self.up.is_empty()
            && self
                .down
                .iter()
                .any(|(name, why)| name == expected && why.ends_with("TOUT"))
    }
}

/// One write through one HAProxy's `prod`: the server it landed on.
#[derive(Debug, Clone)]
pub struct WriteSample {
    pub at: Duration,
    /// The write's number (its `n` column).
    pub n: i32,
    pub landed: Option<IpAddr>,
    /// A write that did not land ran into its 1 s bound (rather than being
    /// refused: no server, a read-only node, a closed connection).
    pub timed_out: bool,
}

/// What the observer saw, per variant (same order as the variants).
#[derive(Default)]
pub struct Seen {
    pub prod: Vec<Vec<ProdSample>>,
    pub writes: Vec<Vec<WriteSample>>,
}

/// The figures of one variant in one scenario.
#[derive(Debug, Clone)]
pub struct Figures {
    pub label: &'static str,
    pub ours: bool,
    /// Seconds from the fault until `prod` held only the expected server
    /// for good (`None`: never). A drop of that server on a check timeout
    /// alone does not count against it (see `timeouts`).
    pub converge: Option<f64>,
    /// Samples after the fault in which the expected server was out only
    /// because its check timed out.
    pub timeouts: usize,
    /// The longest gap between successful writes after the fault, seconds.
    pub outage: f64,
    /// The same, with a gap made by one write alone that ran into its 1 s
    /// bound (a late write on a busy machine, not writes refused) counted
    /// less that second. Only a gap between two landed writes after the
    /// fault is excused so.
    pub outage_but_late_writes: f64,
    /// Such gaps (one write timed out between two that landed). A caller
    /// bounds them: many are a server that hangs, not a busy machine.
    pub late_writes: usize,
    /// The most servers UP in `prod` at once, over the whole run.
    pub max_up: usize,
    /// Writes after the fault that landed on `wrong` (the old primary).
    pub wrong_writes: usize,
    /// Writes that landed on `wrong` after HAProxy took it out of `prod`.
    pub wrong_after_out: usize,
    /// The first write number after `wrong` left `prod` (to look for its
    /// rows on the old primary).
    pub first_n_after_out: Option<i32>,
}

/// What a scene is started with.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `maxLagBytes` of the data nodes.
    pub max_lag_bytes: Option<u64>,
    /// node_1 and node_2 reach each other's peer only through proxies
    /// (`Scene::cut_ab` cuts them); both reach the witness directly.
    pub ab_proxies: bool,
    /// node_1's peer and reconciler run in a network namespace of their
    /// own, joined to the host by a veth pair: the peers talk over
    /// 10.231.K.0/24 (node_1 .2 in the namespace; node_2 .3 and the
    /// witness .4 on the host end), so `Scene::partition_node_1` can cut
    /// node_1 from its peers while HAProxy and replication (loopback, and
    /// the Unix socket to its own Postgres) carry on.
    pub node_1_netns: bool,
    /// The shipped defaults instead of the suite's fast timing: watchDog
    /// 15 s, connectionDeadline 5 s, the shipped HAProxy configs as they
    /// are, and the reconcilers run as the shipped units run them (the
    /// timer every 15 s, and the path unit at once when postmaster.pid
    /// changes). For the failover benchmark.
    pub shipped_timing: bool,
    /// Only the tcp-check HAProxy (the benchmark's), not every variant.
    pub only_tcp: bool,
}

/// A network namespace with a veth pair to the host, removed when dropped.
pub struct NetNs {
    name: String,
    host_if: String,
    ns_if: String,
}

impl NetNs {
    /// `pgsql-state-test-PID-K` with `vpaK` (host end: 10.231.K.h for each
    /// h of `host_side`) and `vpbK` (inside, 10.231.K.2).
    pub fn create(slot: u8, host_side: &[u8]) -> NetNs {
        let ns = NetNs {
            name: format!("pgsql-state-test-{}-{slot}", std::process::id()),
            host_if: format!("vpa{slot}"),
            ns_if: format!("vpb{slot}"),
        };
        // A run that died may have left its pair behind.
        let _ = Command::new("ip")
            .args(["link", "del", &ns.host_if])
            .output();
        let ip = |args: &[&str]| {
            super::cluster::run(Command::new(require_tool("ip")).args(args));
        };
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns.ns_if,
        ]);
        ip(&["link", "set", &ns.ns_if, "netns", &ns.name]);
        for host in host_side {
            ip(&[
                "addr",
                "add",
                &format!("10.231.{slot}.{host}/24"),
                "dev",
                &ns.host_if,
            ]);
        }
        ip(&["link", "set", &ns.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns.name, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&[
            "addr",
            "add",
            &format!("10.231.{slot}.2/24"),
            "dev",
            &ns.ns_if,
        ]);
        inside(&["link", "set", &ns.ns_if, "up"]);
        inside(&["link", "set", "lo", "up"]);
        ns
    }

    /// `program` run inside the namespace.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Takes the namespace's end of the pair down (or up again).
    pub fn link(&self, up: bool) {
        super::cluster::run(Command::new("ip").args([
            "netns",
            "exec",
            &self.name,
            "ip",
            "link",
            "set",
            &self.ns_if,
            if up { "up" } else { "down" },
        ]));
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}

pub struct Scene {
    pub c: Cluster,
    /// node_1's network namespace, with `node_1_netns`.
    netns: Option<Arc<NetNs>>,
    /// The A-B proxies (node_1 → node_2's peer, node_2 → node_1's).
    ab: Vec<Proxy>,
    pub dir: PathBuf,
    /// node_1, node_2, witness.
    pub configs: [PathBuf; 3],
    pub peer_addrs: [SocketAddr; 3],
    peers: Mutex<Vec<Option<Spawned>>>,
    _responders: Vec<Spawned>,
    pub variants: Vec<Variant>,
    stop: Arc<AtomicBool>,
    /// Pauses node_1's / node_2's reconciler (a stopped timer).
    pub paused: [Arc<AtomicBool>; 2],
    /// Whether node_1's / node_2's reconciler is in a run right now.
    running: [Arc<AtomicBool>; 2],
    threads: Vec<JoinHandle<()>>,
    pub seen: Arc<Mutex<Seen>>,
    pub start: Instant,
    /// Every reconcile run that exited non-zero: when it ended (since the
    /// scene started), and its node, exit status and the end of its log.
    pub reconcile_failures: Arc<Mutex<Vec<(Duration, String)>>>,
    /// Spans (since the scene started) in which a fault hits a node's
    /// Postgres, so that a run it cuts short may fail.
    tolerated: Mutex<Vec<(Duration, Duration)>>,
}

/// The HAProxy timing of the scenario suite (DESIGN: inter 1s, fastinter
/// 500ms, rise 2, fall 1), with `timeout check 2s`; `haproxy.check` says
/// rise 1, the agent pool's (its up is immediate), so the wait covers the
/// slowest pool.
pub fn scenario_timing(text: &str, port: u16) -> String {
    text.replace("inter 2s fastinter 1s", "inter 1s fastinter 500ms")
        .replace("agent-inter 2s", "agent-inter 1s")
        .replace("timeout check 3s", "timeout check 2s")
        .replace("port 5431", &format!("port {port}"))
}

impl Scene {
    /// Starts everything and waits until every HAProxy routes writes to
    /// node_1 and reads to node_2. `max_lag_bytes` bounds the standbys.
    pub fn start(tag: &str, options: Options) -> Scene {
        for tool in ["haproxy", "systemd-socket-activate"] {
            require_tool(tool);
        }
        let c = Cluster::start();
        for sql in [
            "CREATE ROLE harw LOGIN PASSWORD 'harw-pass'",
            "CREATE DATABASE harw OWNER harw",
            "CREATE TABLE writes (label text, n int, at timestamptz DEFAULT now())",
        ] {
            c.primary.sql(sql);
        }
        let dir = runtime_dir(&format!("scene-{tag}"));
        let netns = options
            .node_1_netns
            .then(|| Arc::new(NetNs::create(c.slot, &[1, 3, 4])));
        let peer_addrs = match &netns {
            Some(_) => [2, 3, 4].map(|h| {
                SocketAddr::new(
                    std::net::Ipv4Addr::new(10, 231, c.slot, h).into(),
                    PEER_PORT,
                )
            }),
            None => [
                SocketAddr::new(c.primary.addr.into(), PEER_PORT),
                SocketAddr::new(c.standby.addr.into(), PEER_PORT),
                SocketAddr::new(c.spare_addr(4).into(), PEER_PORT),
            ],
        };
        let ab: Vec<Proxy> = if options.ab_proxies {
            vec![
                Proxy::start(
                    SocketAddr::new(c.spare_addr(10).into(), PEER_PORT),
                    peer_addrs[1],
                ),
                Proxy::start(
                    SocketAddr::new(c.spare_addr(11).into(), PEER_PORT),
                    peer_addrs[0],
                ),
            ]
        } else {
            Vec::new()
        };
        // Whom each data node asks for the other.
        let reach = match ab.as_slice() {
            [to_2, to_1] => [to_2.listen, to_1.listen],
            _ => [peer_addrs[1], peer_addrs[0]],
        };
        let configs = [0, 1, 2].map(|i| write_config(&c, &dir, i, peer_addrs, reach, options));
        let peers = (0..3)
            .map(|i| {
                let ns = netns.as_deref().filter(|_| i == 0);
                Some(start_node_peer(&dir, &configs[i], peer_addrs[i], i, ns))
            })
            .collect();
        let mut responders = Vec::new();
        for (i, node) in [&c.primary, &c.standby].into_iter().enumerate() {
            let cfg = configs[i].to_str().expect("utf-8");
            for (port, format) in [
                (TEXT_PORT, "text"),
                (HTTP_PORT, "http"),
                (AGENT_PORT, "agent"),
            ] {
                responders.push(activate(
                    SocketAddr::new(node.addr.into(), port),
                    false,
                    &[
                        binary().to_str().expect("utf-8"),
                        "-f",
                        cfg,
                        "respond",
                        "--format",
                        format,
                    ],
                ));
            }
            let sock = node.socket_dir.to_str().expect("utf-8").to_string();
            let psql = pg_bin("psql");
            responders.push(activate(
                SocketAddr::new(node.addr.into(), PSQL_PORT),
                true,
                &[
                    psql.to_str().expect("utf-8"),
                    "-X",
                    "-At",
                    "-h",
                    &sock,
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-c",
                    PSQL_QUERY,
                ],
            ));
        }
        let shipped = options.shipped_timing;
        let mut variants = vec![variant(
            &c,
            "tcp-check",
            true,
            "haproxy.cfg",
            TEXT_PORT,
            5,
            shipped,
        )];
        if !options.only_tcp {
            variants.extend([
                variant(
                    &c,
                    "httpchk",
                    true,
                    "haproxy-httpchk.cfg",
                    HTTP_PORT,
                    6,
                    shipped,
                ),
                variant(
                    &c,
                    "agent-check",
                    true,
                    "haproxy-agent.cfg",
                    AGENT_PORT,
                    7,
                    shipped,
                ),
                variant(
                    &c,
                    "pgsql-check",
                    false,
                    "haproxy-pgsql-check.cfg",
                    0,
                    8,
                    shipped,
                ),
                variant(&c, "psql unit", false, "haproxy.cfg", PSQL_PORT, 9, shipped),
            ]);
        }
        let mut scene = Scene {
            c,
            netns,
            ab,
            dir,
            configs,
            peer_addrs,
            peers: Mutex::new(peers),
            _responders: responders,
            variants,
            stop: Arc::new(AtomicBool::new(false)),
            paused: [
                Arc::new(AtomicBool::new(false)),
                Arc::new(AtomicBool::new(false)),
            ],
            running: [
                Arc::new(AtomicBool::new(false)),
                Arc::new(AtomicBool::new(false)),
            ],
            threads: Vec::new(),
            seen: Arc::new(Mutex::new(Seen::default())),
            start: Instant::now(),
            reconcile_failures: Arc::new(Mutex::new(Vec::new())),
            tolerated: Mutex::new(Vec::new()),
        };
        for i in 0..2 {
            let data_dir = [&scene.c.primary, &scene.c.standby][i].data_dir.clone();
            scene.threads.push(reconciler(
                scene.configs[i].clone(),
                scene.dir.join(format!("reconcile-node_{}.log", i + 1)),
                RunFlags {
                    stop: scene.stop.clone(),
                    paused: scene.paused[i].clone(),
                    running: scene.running[i].clone(),
                    failures: scene.reconcile_failures.clone(),
                    start: scene.start,
                    every: if shipped {
                        Duration::from_secs(15)
                    } else {
                        Duration::from_secs(1)
                    },
                    watch: shipped.then(|| data_dir.join("postmaster.pid")),
                    as_postgres: false,
                },
                scene.netns.clone().filter(|_| i == 0),
            ));
        }
        // The first wait of a cluster whose peers just started is all of
        // W (42.8 s with the shipped timing).
        let bound = if shipped { 120 } else { 90 };
        scene.wait_routes(&["node_1"], &["node_2"], Duration::from_secs(bound));
        scene.observe();
        scene
    }

    /// Waits until every HAProxy holds `prod` as given, and ours `stdby`
    /// too (the pgsql-check variant's `stdby` pool checks a `haro` role
    /// that trust authentication lets through everywhere).
    pub fn wait_routes(&self, prod: &[&str], stdby: &[&str], bound: Duration) {
        for v in &self.variants {
            v.haproxy.wait_up("prod", prod, bound);
            if v.ours {
                v.haproxy.wait_up("stdby", stdby, bound);
            }
        }
    }

    /// Starts the observer: a stats sampler and one writer per variant.
    fn observe(&mut self) {
        // `start` is the scene's one clock: the samples, the faults the
        // tests mark with `now()`, and the reconcilers' failures all count
        // from it.
        let haproxies = self
            .variants
            .iter()
            .map(|v| (v.haproxy.stats.clone(), v.haproxy.prod, v.label))
            .collect();
        let threads = observe(haproxies, &self.seen, &self.stop, self.start);
        self.threads.extend(threads);
    }

    /// Cuts the A-B link both ways (the scene must have `ab_proxies`).
    pub fn cut_ab(&self) {
        assert_eq!(self.ab.len(), 2, "the scene has no A-B proxies");
        for p in &self.ab {
            p.cut();
        }
    }

    /// A fault is about to hit a node's Postgres (killed, stopped,
    /// restarted, hung): a reconcile run it cuts short may fail, from now
    /// until `within` has passed.
    pub fn tolerate_reconcile_failures(&self, within: Duration) {
        let now = self.now();
        if let Ok(mut t) = self.tolerated.lock() {
            t.push((now, now + within));
        }
    }

    /// The reconcile runs that failed outside the tolerated spans.
    pub fn unexpected_reconcile_failures(&self) -> Vec<String> {
        let tolerated = self.tolerated.lock().map(|t| t.clone()).unwrap_or_default();
        let failures = self
            .reconcile_failures
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default();
        failures
            .into_iter()
            .filter(|(at, _)| !tolerated.iter().any(|(from, to)| at >= from && at <= to))
            .map(|(at, what)| format!("at {at:?}: {what}"))
            .collect()
    }

    /// Stops node `i`'s reconciler as a stopped timer would, and waits
    /// until a run in progress has ended.
    pub fn stop_reconciler(&self, i: usize) {
        self.paused[i].store(true, Ordering::SeqCst);
        wait_until(Duration::from_secs(30), "the reconcile run to end", || {
            !self.running[i].load(Ordering::SeqCst)
        });
    }

    /// Cuts node_1's peer and reconciler from the other peers (its end of
    /// the veth pair down), or heals the cut.
    pub fn partition_node_1(&self, cut: bool) {
        self.netns
            .as_ref()
            .expect("the scene has no network namespace")
            .link(!cut);
    }

    /// Seconds since the observer started.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Stops (SIGKILL) the peer of node `i` (0, 1, 2 = witness).
    pub fn kill_peer(&self, i: usize) {
        if let Some(p) = self.peers.lock().expect("peers")[i].take() {
            drop(p);
        }
    }

    /// Restarts the peer of node `i` (killed, then started again on its
    /// config): it forgets what it confirmed, and vouches for nothing
    /// before its start.
    pub fn restart_peer(&self, i: usize) {
        let mut peers = self.peers.lock().expect("peers");
        drop(peers[i].take());
        let ns = self.netns.as_deref().filter(|_| i == 0);
        peers[i] = Some(start_node_peer(
            &self.dir,
            &self.configs[i],
            self.peer_addrs[i],
            i,
            ns,
        ));
    }

    /// Sends `signal` to the peer of node `i`.
    pub fn signal_peer(&self, i: usize, signal: i32) {
        if let Some(p) = &self.peers.lock().expect("peers")[i] {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(p.child.id() as i32, signal) };
        }
    }

    /// Waits until every variant's `prod` holds exactly `servers`.
    pub fn wait_prod(&self, servers: &[&str], bound: Duration, which: impl Fn(&Variant) -> bool) {
        for v in self.variants.iter().filter(|v| which(v)) {
            v.haproxy.wait_up("prod", servers, bound);
        }
    }

    /// For a failure message: what variant `label`'s `prod` held since
    /// `from`, one line per change (with why a server was not UP), and the
    /// reconcilers' log lines since then.
    pub fn trace(&self, label: &str, from: Duration) -> String {
        let seen = self.seen.lock().expect("seen");
        let mut out = format!("{label}'s prod since {:.2} s:\n", from.as_secs_f64());
        if let Some(i) = self.variants.iter().position(|v| v.label == label) {
            out += &changes(&seen.prod[i], from);
        }
        for i in 0..2 {
            let log =
                std::fs::read_to_string(self.dir.join(format!("reconcile-node_{}.log", i + 1)))
                    .unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            out += &format!("node_{}'s reconciler (last lines):\n", i + 1);
            out += &lines[lines.len().saturating_sub(25)..].join("\n");
            out += "\n";
        }
        out
    }

    /// The figures per variant, for a fault at `fault` after which `prod`
    /// should hold `expected` alone and no write should land on `wrong`.
    pub fn figures(&self, fault: Duration, expected: &str, wrong: Option<IpAddr>) -> Vec<Figures> {
        let seen = self.seen.lock().expect("seen");
        let wrong_name = wrong.and_then(|ip| self.name_of(ip));
        self.variants
            .iter()
            .enumerate()
            .map(|(i, v)| {
                figures_of(
                    (v.label, v.ours),
                    &seen.prod[i],
                    &seen.writes[i],
                    fault,
                    expected,
                    wrong.zip(wrong_name),
                )
            })
            .collect()
    }
}

/// What `samples` held since `from`, one line per change, with why each
/// server not UP was out (for failure messages).
pub fn changes(samples: &[ProdSample], from: Duration) -> String {
    let mut out = String::new();
    let mut last = None;
    for sample in samples.iter().filter(|s| s.at >= from) {
        let now = (&sample.up, &sample.down);
        if last != Some(now) {
            out += &format!(
                "{:8.2} s: UP {:?}, not UP {:?}\n",
                sample.at.as_secs_f64(),
                sample.up,
                sample.down
            );
            last = Some(now);
        }
    }
    out
}

/// The observer of HAProxies given as (stats socket, `prod` address,
/// label): samples every `prod`'s UP servers every 100 ms, and writes
/// through every `prod` every 100 ms, into `seen` (one row per HAProxy),
/// until `stop`. Times count from `start`.
pub fn observe(
    haproxies: Vec<(PathBuf, SocketAddr, &'static str)>,
    seen: &Arc<Mutex<Seen>>,
    stop: &Arc<AtomicBool>,
    start: Instant,
) -> Vec<JoinHandle<()>> {
    let n = haproxies.len();
    {
        let mut seen = seen.lock().expect("seen");
        seen.prod = vec![Vec::new(); n];
        seen.writes = vec![Vec::new(); n];
    }
    let mut threads = Vec::new();
    let stats: Vec<PathBuf> = haproxies.iter().map(|h| h.0.clone()).collect();
    let (seen_s, stop_s) = (seen.clone(), stop.clone());
    threads.push(std::thread::spawn(move || {
        while !stop_s.load(Ordering::Relaxed) {
            let tick = Instant::now();
            for (i, path) in stats.iter().enumerate() {
                if let Some((up, down)) = prod_up(path) {
                    let sample = ProdSample {
                        at: start.elapsed(),
                        up,
                        down,
                    };
                    seen_s.lock().expect("seen").prod[i].push(sample);
                }
            }
            std::thread::sleep(Duration::from_millis(100).saturating_sub(tick.elapsed()));
        }
    }));
    for (i, (_, prod, label)) in haproxies.into_iter().enumerate() {
        let (seen, stop) = (seen.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let tick = Instant::now();
                n += 1;
                // When the write started: HAProxy routed it then.
                let at = start.elapsed();
                let (landed, timed_out) = match rt.block_on(write_through(prod, label, n)) {
                    Ok(ip) => (Some(ip), false),
                    Err(timed_out) => (None, timed_out),
                };
                let sample = WriteSample {
                    at,
                    n,
                    landed,
                    timed_out,
                };
                seen.lock().expect("seen").writes[i].push(sample);
                std::thread::sleep(Duration::from_millis(100).saturating_sub(tick.elapsed()));
            }
        }));
    }
    threads
}

/// One HAProxy's figures from its samples, for a fault at `fault` after
/// which `prod` should hold `expected` alone and no write should land on
/// `wrong` (its address and server name).
pub fn figures_of(
    (label, ours): (&'static str, bool),
    prod: &[ProdSample],
    writes: &[WriteSample],
    fault: Duration,
    expected: &str,
    wrong: Option<(IpAddr, &str)>,
) -> Figures {
    let max_up = prod.iter().map(|s| s.up.len()).max().unwrap_or(0);
    // A sample is bad when `prod` holds anything but `expected` alone,
    // except when `expected` is out only because a check timed out after it
    // first stood alone (counted in `timeouts`, and the last sample must
    // still be good): a late answer on a busy machine is not a wrong one.
    let first_alone = prod
        .iter()
        .find(|s| s.at >= fault && s.up == [expected])
        .map(|s| s.at);
    let forgiven =
        |s: &ProdSample| first_alone.is_some_and(|t| s.at > t) && s.only_timed_out(expected);
    let timeouts = prod.iter().filter(|s| s.at >= fault && forgiven(s)).count();
    let last_bad = prod
        .iter()
        .rev()
        .find(|s| s.at >= fault && s.up != [expected] && !forgiven(s))
        .map(|s| s.at);
    let after: Vec<&ProdSample> = prod.iter().filter(|s| s.at >= fault).collect();
    let converge = match (last_bad, after.last()) {
        (_, None) => None,
        (_, Some(last)) if last.up != [expected] => None,
        (Some(bad), Some(last)) if bad >= last.at => None,
        (Some(bad), _) => after
            .iter()
            .find(|s| s.at > bad)
            .map(|s| (s.at - fault).as_secs_f64()),
        (None, _) => Some(0.0),
    };
    let mut outage = 0.0f64;
    let mut outage_but_late_writes = 0.0f64;
    let mut late_writes = 0;
    let mut last_ok = fault;
    // Whether the gap began at a write that landed after the fault (the
    // first began at the fault, and a write started before it, left out
    // here, may have failed too), and the writes that failed in it.
    let (mut after_a_landed_write, mut failed, mut all_timed_out) = (false, 0, true);
    for w in writes.iter().filter(|w| w.at >= fault) {
        if w.landed.is_some() {
            let gap = (w.at - last_ok).as_secs_f64();
            outage = outage.max(gap);
            // One late write is excused its bound (1 s), not its gap.
            let excused = if after_a_landed_write && failed == 1 && all_timed_out {
                late_writes += 1;
                (gap - WRITE_BOUND.as_secs_f64()).max(0.0)
            } else {
                gap
            };
            outage_but_late_writes = outage_but_late_writes.max(excused);
            last_ok = w.at;
            (after_a_landed_write, failed, all_timed_out) = (true, 0, true);
        } else {
            failed += 1;
            all_timed_out &= w.timed_out;
        }
    }
    if let Some(end) = writes.last() {
        let gap = (end.at - last_ok).as_secs_f64();
        outage = outage.max(gap);
        outage_but_late_writes = outage_but_late_writes.max(gap);
    }
    let wrong_ip = wrong.map(|(ip, _)| ip);
    let wrong_writes = writes
        .iter()
        .filter(|w| w.at >= fault && w.landed.is_some() && w.landed == wrong_ip)
        .count();
    // The first sample that no longer saw the wrong server UP in prod for
    // good: writes started after it must not land there (one started
    // between two samples may).
    let is_up = |s: &ProdSample| wrong.is_some_and(|(_, n)| s.up.iter().any(|u| u == n));
    let last_up = prod
        .iter()
        .rev()
        .find(|s| s.at >= fault && is_up(s))
        .map(|s| s.at);
    let out_at = match last_up {
        Some(t) => prod.iter().find(|s| s.at > t).map_or(t, |s| s.at),
        None => fault,
    };
    let wrong_after_out = writes
        .iter()
        .filter(|w| w.at > out_at && w.landed.is_some() && w.landed == wrong_ip)
        .count();
    let first_n_after_out = writes.iter().find(|w| w.at > out_at).map(|w| w.n);
    Figures {
        label,
        ours,
        converge,
        timeouts,
        outage,
        outage_but_late_writes,
        late_writes,
        max_up,
        wrong_writes,
        wrong_after_out,
        first_n_after_out,
    }
}

/// The scene's timing: watchDog 1 s, connectionDeadline 1 s, and the
/// `haproxy.check` of [`write_config`].
fn scene_check() -> pgsql_state::fencing::timing::HaproxyCheck {
    pgsql_state::fencing::timing::HaproxyCheck {
        inter: Duration::from_secs(1),
        fastinter: Duration::from_millis(500),
        rise: 1,
        fall: 1,
        timeout_check: Duration::from_secs(2),
    }
}

/// How long HAProxy takes, at most, to put a server that answers the word
/// UP in `prod`: its next check within `inter`, `rise` − 1 more at
/// `fastinter` (rise 2 in the tcp-check and httpchk pools), each within
/// `timeout check`.
fn haproxy_entry() -> Duration {
    Duration::from_secs(1) + Duration::from_millis(500) + Duration::from_secs(2)
}

/// One reconcile run: one starts every second and lasts up to the
/// deadline (1 s).
const RUN: Duration = Duration::from_secs(2);
/// The margin the bounds allow a busy machine.
const MARGIN: Duration = Duration::from_secs(2);

/// The model's P3 bound as HAProxy sees it: a promoted node is alone in
/// `prod` within W, three runs and the witness's cache, plus HAProxy's
/// entry and the margin.
pub fn failover_bound() -> Duration {
    let w = pgsql_state::fencing::timing::wait(
        pgsql_state::fencing::timing::lease(Duration::from_secs(1), Duration::from_secs(1)),
        &scene_check(),
    );
    w + 3 * RUN + pgsql_state::fencing::timing::WITNESS_CACHE_TTL + haproxy_entry() + MARGIN
}

/// The model's P6 as HAProxy sees it: a promotion after no voter has
/// confirmed the old primary for L' + H' waits nothing, and the voters
/// verify the new claim inside their answers, so the promoted node's first
/// run confirms it: it is alone in `prod` within that run, HAProxy's
/// `inter` and `rise` × `fastinter` (2 s), and the margin. (W alone is
/// 8.1 s here.)
pub fn late_promotion_bound() -> Duration {
    RUN + Duration::from_secs(2) + MARGIN
}

/// L' + H' of the scene: how long after a node was last confirmed the
/// voters vouch that nothing is left of its lease.
pub fn lease_and_term() -> Duration {
    pgsql_state::fencing::timing::wait(
        pgsql_state::fencing::timing::lease(Duration::from_secs(1), Duration::from_secs(1)),
        &scene_check(),
    )
}

/// The model's P5 as HAProxy sees it: a restart of the confirmed primary's
/// Postgres (taking `restart`) costs no wait, so writes are back within
/// the restart, a run (which binds the verdict to the new postmaster),
/// HAProxy's `rise` × `fastinter` (1 s), and the margin: DESIGN's
/// "restart + rise × fastinter + 1 s", with the run's interval and the
/// margin on top.
pub fn restart_bound(restart: Duration) -> Duration {
    restart + RUN + Duration::from_secs(1) + MARGIN
}

/// The same for a planned switchover (P4): H alone instead of W.
pub fn switchover_bound() -> Duration {
    pgsql_state::fencing::timing::haproxy_term(&scene_check())
        + 3 * RUN
        + pgsql_state::fencing::timing::WITNESS_CACHE_TTL
        + haproxy_entry()
        + MARGIN
}

impl Scene {
    /// The node name (`node_1`, `node_2`) of a data node's address.
    pub fn name_of(&self, ip: IpAddr) -> Option<&'static str> {
        if ip == IpAddr::from(self.c.primary.addr) {
            Some("node_1")
        } else if ip == IpAddr::from(self.c.standby.addr) {
            Some("node_2")
        } else {
            None
        }
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Prints a scenario's figures as the rows of the closing note's table.
pub fn report(scenario: &str, figures: &[Figures]) {
    let psql = figures.iter().find(|f| f.label == "psql unit");
    for f in figures.iter().filter(|f| f.label != "psql unit") {
        let converge = f
            .converge
            .map_or("never".to_string(), |s| format!("{s:.1} s"));
        eprintln!(
            "| {scenario} | {} | {converge}{} | {:.1} s | {} (psql unit: {}) | writes on the old primary: {}, after it left prod: {} (psql unit: {}) |",
            f.label,
            match f.timeouts {
                0 => String::new(),
                n => format!(" (check timeouts: {n} samples)"),
            },
            f.outage,
            f.max_up,
            psql.map_or(0, |p| p.max_up),
            f.wrong_writes,
            f.wrong_after_out,
            psql.map_or(0, |p| p.wrong_writes),
        );
    }
}

/// A HAProxy running a shipped config with the scenario timing, its check
/// port rewritten to `port`, on 127.0.K.`octet`.
fn variant(
    c: &Cluster,
    label: &'static str,
    ours: bool,
    config: &str,
    port: u16,
    octet: u8,
    shipped: bool,
) -> Variant {
    let haproxy = Haproxy::start_ports(c, config, c.spare_addr(octet), 5432, 5433, |t| {
        if shipped {
            t.replace("port 5431", &format!("port {port}"))
        } else {
            scenario_timing(t, port)
        }
    });
    Variant {
        label,
        ours,
        haproxy,
    }
}

/// The servers UP in `prod`, from the stats socket at `path`.
fn prod_up(path: &Path) -> Option<(Vec<String>, Vec<Down>)> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"show stat\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.starts_with("# pxname").then(|| {
        let mut up = Vec::new();
        let mut down = Vec::new();
        // Fields counted from 0 as HAProxy's management guide does:
        // 17 status, 36 check_status.
        for f in out.lines().map(|l| l.split(',').collect::<Vec<_>>()) {
            if f.len() <= 36 || f[0] != "prod" || !f[1].starts_with("node_") {
                continue;
            }
            if f[17] == "UP" || f[17].starts_with("UP ") {
                up.push(f[1].to_string());
            } else {
                down.push((
                    f[1].to_string(),
                    f[36].trim_start_matches(['*', ' ']).to_string(),
                ));
            }
        }
        (up, down)
    })
}

/// How long one write through HAProxy may take before it counts as failed.
const WRITE_BOUND: Duration = Duration::from_secs(1);

/// One write through HAProxy at `prod` on a new connection (HAProxy picks
/// a server per connection), bounded by 1 s; the server it landed on, or
/// whether it failed by running into that bound.
async fn write_through(prod: SocketAddr, label: &str, n: i32) -> Result<IpAddr, bool> {
    let conninfo = format!(
        "host={} port={} user=postgres dbname=postgres connect_timeout=1",
        prod.ip(),
        prod.port()
    );
    let attempt = async {
        let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .ok()?;
        let driver = tokio::spawn(conn);
        let row = client
            .query_one(
                "INSERT INTO writes (label, n) VALUES ($1, $2) RETURNING host(inet_server_addr())",
                &[&label, &n],
            )
            .await
            .ok()?;
        drop(client);
        let _ = driver.await;
        row.get::<_, String>(0).parse().ok()
    };
    match tokio::time::timeout(WRITE_BOUND, attempt).await {
        Ok(landed) => landed.ok_or(false),
        Err(_) => Err(true),
    }
}

/// A node's config: fencing strict, watchDog 1, the scenario timing (or,
/// with `shipped_timing`, watchDog 15, connectionDeadline 5 and the
/// shipped HAProxy timing, the defaults).
fn write_config(
    c: &Cluster,
    dir: &Path,
    i: usize,
    peers: [SocketAddr; 3],
    reach: [SocketAddr; 2],
    options: Options,
) -> PathBuf {
    let max_lag_bytes = options.max_lag_bytes;
    let name = ["node_1", "node_2", "witness"][i];
    let runtime = dir.join(format!("run-{name}"));
    let state = dir.join(format!("state-{name}"));
    for d in [&runtime, &state] {
        std::fs::create_dir_all(d).expect("create a node dir");
    }
    let (conninfo, hba) = match i {
        0 => (c.primary.conninfo(), c.primary.data_dir.join("pg_hba.conf")),
        1 => (c.standby.conninfo(), c.standby.data_dir.join("pg_hba.conf")),
        _ => ("host=/nonexistent".into(), PathBuf::from("/nonexistent")),
    };
    let neighbours = match i {
        0 => vec![reach[0].to_string()],
        1 => vec![reach[1].to_string()],
        _ => vec![peers[0].to_string(), peers[1].to_string()],
    };
    let lag = max_lag_bytes.map_or(String::new(), |b| format!("  maxLagBytes: {b}\n"));
    let primary_ip = match i {
        0 => c.primary.addr.to_string(),
        1 => c.standby.addr.to_string(),
        _ => peers[2].ip().to_string(),
    };
    let yaml = PeerConfig {
        node_name: name,
        primary_ip: &primary_ip,
        bind: peers[i],
        neighbours,
        witness: peers[2].to_string(),
        conninfo,
        runtime_dir: &runtime,
        tls: None,
        connection_deadline: if options.shipped_timing { 5.0 } else { 1.0 },
    };
    // (The check timing is scene_check()'s.)
    let yaml = yaml.scene_yaml(&hba, &state, options.shipped_timing.then_some(15)) + &lag;
    write_with_claims(dir, name, &yaml)
}

fn start_node_peer(
    dir: &Path,
    config: &Path,
    bind: SocketAddr,
    i: usize,
    netns: Option<&NetNs>,
) -> Spawned {
    let log = dir.join(format!("peer-{i}.log"));
    match netns {
        None => start_peer(config, bind, &log),
        Some(ns) => {
            let mut cmd = ns.command(&binary());
            cmd.arg("-f")
                .arg(config)
                .arg("peer")
                .env("PGSQL_STATE_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("create the peer log"));
            Spawned::listening(cmd, bind, &format!("peer on {bind} in {}", ns.name))
        }
    }
}

/// The binary under test, run in `netns` if given, and as the `postgres`
/// user if `as_postgres` (as the shipped units run it). In a namespace,
/// `setpriv` drops to postgres and execs the binary itself, so that
/// signalling the child signals the program.
pub fn binary_command(netns: Option<&NetNs>, as_postgres: bool) -> Command {
    match (netns, as_postgres) {
        (None, false) => Command::new(binary()),
        (None, true) => {
            let mut cmd = Command::new(binary());
            super::cluster::as_postgres(&mut cmd);
            cmd
        }
        (Some(ns), false) => ns.command(&binary()),
        (Some(ns), true) => {
            let mut cmd = ns.command(&require_tool("setpriv"));
            cmd.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
                .arg(binary());
            cmd
        }
    }
}

/// `systemd-socket-activate --accept [--inetd] -l addr -- argv`.
pub fn activate(addr: SocketAddr, inetd: bool, argv: &[&str]) -> Spawned {
    let mut cmd = Command::new(require_tool("systemd-socket-activate"));
    cmd.arg("-l").arg(addr.to_string()).arg("--accept");
    if inetd {
        cmd.arg("--inetd");
    }
    cmd.arg("--").args(argv).stderr(Stdio::null());
    Spawned::listening(cmd, addr, "socket-activated responder")
}

/// What a reconciler thread shares with the scene.
pub struct RunFlags {
    pub stop: Arc<AtomicBool>,
    pub paused: Arc<AtomicBool>,
    pub running: Arc<AtomicBool>,
    pub failures: Arc<Mutex<Vec<(Duration, String)>>>,
    pub start: Instant,
    /// The timer's interval.
    pub every: Duration,
    /// A file whose change starts a run at once, as the shipped path unit
    /// does with postmaster.pid.
    pub watch: Option<PathBuf>,
    /// Run as the `postgres` user, as the shipped unit does (and as a
    /// promoter's hook runs it), instead of as the test.
    pub as_postgres: bool,
}

/// What a watched file looks like now (its change time and length).
fn file_state(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// A reconciler run every second, as the timer runs it, until `stop`;
/// skipped while `paused`. Each run's log is appended to `log`, and a run
/// that exits non-zero (or cannot start) is recorded in `failures`.
pub fn reconciler(
    config: PathBuf,
    log: PathBuf,
    flags: RunFlags,
    netns: Option<Arc<NetNs>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let node = config
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        while !flags.stop.load(Ordering::Relaxed) {
            let tick = Instant::now();
            flags.running.store(true, Ordering::SeqCst);
            if !flags.paused.load(Ordering::SeqCst) {
                let mut cmd = binary_command(netns.as_deref(), flags.as_postgres);
                let out = cmd
                    .arg("-f")
                    .arg(&config)
                    .arg("reconcile")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .output();
                let text = match &out {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
                    Err(e) => format!("cannot run reconcile: {e}\n"),
                };
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                {
                    use std::io::Write;
                    // Each run's lines, with the scene time it started.
                    let at = tick.duration_since(flags.start).as_secs_f64();
                    for line in text.lines() {
                        let _ = writeln!(f, "[{at:8.2}] {line}");
                    }
                }
                let failed = match &out {
                    Ok(out) => (!out.status.success()).then(|| out.status.to_string()),
                    Err(_) => Some("not started".to_string()),
                };
                if let Some(status) = failed {
                    let tail: Vec<&str> = text.lines().rev().take(3).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    if let Ok(mut failures) = flags.failures.lock() {
                        failures.push((
                            flags.start.elapsed(),
                            format!("{node} ({status}): {}", tail.join(" / ")),
                        ));
                    }
                }
            }
            flags.running.store(false, Ordering::SeqCst);
            // Until the timer's next tick, or the watched file changes.
            let seen = flags.watch.as_deref().and_then(file_state);
            while tick.elapsed() < flags.every && !flags.stop.load(Ordering::Relaxed) {
                if flags
                    .watch
                    .as_deref()
                    .is_some_and(|w| file_state(w) != seen)
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    })
}

/// Waits for `bound` at most until `check`; used between phases.
pub fn settle(bound: Duration, what: &str, check: impl FnMut() -> bool) {
    wait_until(bound, what, check);
}
