//! What strangers can do to the ports, against real PostgreSQL: the peer
//! port learns nothing from an ask, refuses an oversized one, serves a
//! burst of asks from a handful of Postgres queries, and neither it nor
//! the long-lived responder can be starved by idle connections.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use pgsql_state::config::{Grpc, Tls};
use pgsql_state::peer::client::{PeerClient, PeerView};
use pgsql_state::peer::proto::cluster_info_client::ClusterInfoClient;
use pgsql_state::peer::proto::{IKnow, WhatYouKnow};

/// The cluster, with both data nodes' peers running on port 10100, the
/// primary's Postgres reached as the role `peerq`, whose every statement
/// the server logs (so tests can count the peer's queries).
struct Setup {
    cluster: Cluster,
    p1: SocketAddr,
    p2: SocketAddr,
    _peers: Vec<Spawned>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let cluster = Cluster::start();
        cluster
            .primary
            .sql("CREATE ROLE peerq LOGIN SUPERUSER; ALTER ROLE peerq SET log_statement = 'all'");
        let dir = runtime_dir("limits-peers");
        let (p1, p2) = (
            SocketAddr::new(cluster.primary.addr.into(), 10100),
            SocketAddr::new(cluster.standby.addr.into(), 10100),
        );
        let witness = SocketAddr::new(cluster.spare_addr(4).into(), 10100).to_string();
        let make = |name: &str, bind: SocketAddr, other: SocketAddr, conninfo: String| {
            let run = dir.join(format!("run-{name}"));
            std::fs::create_dir_all(&run).expect("create a runtime dir");
            let config = PeerConfig {
                node_name: name,
                primary_ip: &bind.ip().to_string(),
                bind,
                neighbours: vec![other.to_string()],
                witness: witness.clone(),
                conninfo,
                runtime_dir: &run,
                tls: None,
                connection_deadline: 2.0,
            }
            .write(&dir);
            start_peer(&config, bind, &dir.join(format!("peer-{name}.log")))
        };
        let primary_conninfo = cluster
            .primary
            .conninfo()
            .replace("user=postgres", "user=peerq");
        let peers = vec![
            make("node_1", p1, p2, primary_conninfo),
            make("node_2", p2, p1, cluster.standby.conninfo()),
        ];
        let setup = Setup {
            cluster,
            p1,
            p2,
            _peers: peers,
        };
        // Each peer learns the other's name and address from its own asks
        // (every 5 s), so this takes up to a refresh and an ask.
        let (primary_ip, standby_ip) = (p1.ip().to_string(), p2.ip().to_string());
        let logs = || {
            ["node_1", "node_2"]
                .map(|n| {
                    let log = dir.join(format!("peer-{n}.log"));
                    format!(
                        "--- {n}:\n{}",
                        std::fs::read_to_string(log).unwrap_or_default()
                    )
                })
                .join("\n")
        };
        for (addr, what, ok) in [
            (
                p1,
                "the primary names its standby by address",
                Box::new(|a: &IKnow| a.slaves == [standby_ip.clone()])
                    as Box<dyn Fn(&IKnow) -> bool>,
            ),
            (
                p2,
                "the standby names its upstream",
                Box::new(|a: &IKnow| a.master == [primary_ip.clone()]),
            ),
        ] {
            let start = Instant::now();
            loop {
                let view = ask(addr, anonymous());
                if matches!(&view, PeerView::Answered(a) if ok(a)) {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "timed out waiting for {what}; last view {view:?}\n{}",
                    logs()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        setup
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn grpc(deadline: Duration) -> Grpc {
    Grpc {
        tls: Tls::default(),
        bind_address: "127.0.0.1".into(),
        bind_port: 1,
        server_host_override: None,
        neighbours: vec![],
        witness: None,
        connection_deadline: deadline,
    }
}

/// A client that introduces itself as `asker`.
fn client_as(asker: WhatYouKnow) -> PeerClient {
    PeerClient::new(&grpc(Duration::from_secs(3)), asker).expect("a client")
}

fn anonymous() -> WhatYouKnow {
    WhatYouKnow::default()
}

fn ask(addr: SocketAddr, asker: WhatYouKnow) -> PeerView {
    runtime().block_on(client_as(asker).ask(&addr.to_string()))
}

fn answer(addr: SocketAddr) -> IKnow {
    match ask(addr, anonymous()) {
        PeerView::Answered(a) => a,
        PeerView::Unreachable(e) => panic!("{addr} did not answer: {e}"),
    }
}

fn wait_answer(addr: SocketAddr, what: &str, check: impl Fn(&IKnow) -> bool) -> IKnow {
    let mut last = None;
    wait_until(Duration::from_secs(30), what, || {
        let a = answer(addr);
        let ok = check(&a);
        last = Some(a);
        ok
    });
    last.expect("at least one answer")
}

#[test]
fn a_strangers_ask_changes_no_answer() {
    let s = setup();
    let (primary_ip, standby_ip) = (s.p1.ip().to_string(), s.p2.ip().to_string());
    let before = (answer(s.p1), answer(s.p2));
    // The attack that used to work: name the primary's address as a node
    // and give a made-up address for it, and name the standby likewise.
    let lies = [
        (s.p2, primary_ip.clone(), "10.66.66.66"),
        (s.p1, "node_2".to_string(), "10.66.66.67"),
        (s.p2, "node_1".to_string(), "10.66.66.68"),
        (s.p1, standby_ip.clone(), "not an address"),
    ];
    for (target, node_name, ip) in lies {
        let view = ask(
            target,
            WhatYouKnow {
                ip: ip.into(),
                node_id: 7,
                node_name,
                ..WhatYouKnow::default()
            },
        );
        assert!(matches!(view, PeerView::Answered(_)), "{view:?}");
    }
    let after = (answer(s.p1), answer(s.p2));
    assert_eq!(after.0.slaves, [standby_ip], "primary's slaves");
    assert_eq!(after.1.master, [primary_ip], "standby's master");
    assert_eq!(
        (after.0.master.clone(), after.1.slaves.clone()),
        (before.0.master, before.1.slaves)
    );
    for a in [&after.0, &after.1] {
        for addr in a.master.iter().chain(&a.slaves) {
            assert!(addr.parse::<IpAddr>().is_ok(), "{addr:?} is not an IP");
        }
    }
}

#[test]
fn an_oversized_ask_is_refused_and_the_server_keeps_answering() {
    let s = setup();
    let huge = WhatYouKnow {
        node_name: "x".repeat(5 * 1024 * 1024),
        ..WhatYouKnow::default()
    };
    let start = Instant::now();
    let view = ask(s.p1, huge);
    let took = start.elapsed();
    match &view {
        PeerView::Unreachable(e) => println!("a 5 MB nodeName: {e} after {took:?}"),
        PeerView::Answered(_) => panic!("a 5 MB ask was answered"),
    }
    // The same server still answers, right away.
    let start = Instant::now();
    let a = answer(s.p1);
    assert_eq!(a.node_name, "node_1");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

/// How many facts queries the primary's log shows from the peer's role.
fn facts_queries(s: &Setup) -> usize {
    std::fs::read_to_string(&s.cluster.primary.log_file)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("statement: SELECT r, s.system_identifier"))
        .count()
}

#[test]
fn a_burst_of_asks_is_a_handful_of_postgres_queries() {
    let s = setup();
    let rt = runtime();
    let before = facts_queries(s);
    let start = Instant::now();
    let answered = rt.block_on(async {
        // One HTTP/2 connection carries the burst, as a busy peer's would;
        // the server serves a few streams at a time and queues the rest.
        let client = ClusterInfoClient::connect(format!("http://{}", s.p1))
            .await
            .expect("connect to the peer");
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..500 {
            let mut client = client.clone();
            calls.spawn(async move { client.get_cluster_info(WhatYouKnow::default()).await });
        }
        let mut answered = 0;
        while let Some(done) = calls.join_next().await {
            if let Ok(Ok(reply)) = done {
                assert_eq!(reply.into_inner().node_name, "node_1");
                answered += 1;
            }
        }
        answered
    });
    let took = start.elapsed();
    // At least one query served the burst: a count of 0 would mean the log
    // pattern no longer matches, and the bound below would hold for
    // nothing. (Its log line may land a moment after its answer.)
    wait_until(
        Duration::from_secs(5),
        "the burst's queries in the log",
        || facts_queries(s) > before,
    );
    let queries = facts_queries(s) - before;
    println!(
        "500 concurrent asks: {answered} answered in {took:?} from {queries} Postgres queries"
    );
    assert_eq!(answered, 500);
    // One query per 100 ms of burst at most, plus the background refresh.
    let bound = (took.as_millis() / 100) as usize + 3;
    assert!(
        queries <= bound,
        "{queries} queries for 500 asks in {took:?} (at most {bound})"
    );
}

/// Opens `n` connections to `addr` from `source` and keeps them open,
/// sending nothing.
async fn idle_connections(
    addr: SocketAddr,
    source: Ipv4Addr,
    n: usize,
) -> Vec<tokio::net::TcpStream> {
    let mut open = Vec::with_capacity(n);
    for _ in 0..n {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind(SocketAddr::new(source.into(), 0))
            .expect("bind the source address");
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_secs(2), socket.connect(addr)).await
        {
            open.push(stream);
        }
    }
    open
}

/// Lets this process hold the idle connections' file descriptors.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max.min(8192);
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

#[test]
fn idle_connections_do_not_starve_the_peer_port() {
    let s = setup();
    raise_fd_limit();
    let rt = runtime();
    let stranger = Ipv4Addr::new(127, 0, 0, 77);
    let idle = rt.block_on(idle_connections(s.p1, stranger, 1000));
    println!("{} idle connections open to the peer port", idle.len());
    assert!(idle.len() >= 900, "only {} connections opened", idle.len());
    let start = Instant::now();
    let view = rt.block_on(client_as(anonymous()).ask(&s.p1.to_string()));
    let took = start.elapsed();
    println!("an ask beside them answered in {took:?}");
    match view {
        PeerView::Answered(a) => assert_eq!(a.node_name, "node_1"),
        PeerView::Unreachable(e) => panic!("starved: {e}"),
    }
    assert!(took < Duration::from_secs(2), "{took:?}");
    drop(idle);
}

#[test]
fn idle_connections_do_not_starve_the_http_responder() {
    let s = setup();
    raise_fd_limit();
    let addr = SocketAddr::new(s.cluster.standby.addr.into(), 5450);
    let _server = respond_server(
        addr,
        &[
            "--format",
            "http",
            "--check-timeout",
            "2",
            "--conninfo",
            &s.cluster.standby.conninfo(),
        ],
    );
    let rt = runtime();
    let idle = rt.block_on(idle_connections(addr, Ipv4Addr::new(127, 0, 0, 77), 1000));
    println!("{} idle connections open to the responder", idle.len());
    assert!(idle.len() >= 900, "only {} connections opened", idle.len());
    // HAProxy's check, from another source, gets its answer in time.
    let start = Instant::now();
    let reply = ncat_send(addr, b"GET /replica HTTP/1.0\r\n\r\n");
    let took = start.elapsed();
    println!("a check beside them answered in {took:?}");
    assert!(reply.starts_with("HTTP/1.0 200 OK"), "{reply}");
    assert!(reply.ends_with("standby\n"), "{reply}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    drop(idle);
}

#[test]
fn a_witness_without_postgres_keys_checks_and_serves() {
    let s = setup();
    let dir = runtime_dir("bare-witness");
    let bind = SocketAddr::new(s.cluster.spare_addr(4).into(), 10100);
    let full = PeerConfig {
        node_name: "witness",
        primary_ip: &bind.ip().to_string(),
        bind,
        neighbours: vec![s.p1.to_string(), s.p2.to_string()],
        witness: bind.to_string(),
        conninfo: "unused".into(),
        runtime_dir: &dir,
        tls: None,
        connection_deadline: 2.0,
    }
    .yaml();
    let yaml: String = full
        .lines()
        // No hbaConfig and no postgres section: the witness has no Postgres.
        .filter(|l| !l.contains("hbaConfig") && !l.contains("postgres:") && !l.contains("conninfo"))
        .map(|l| format!("{l}\n"))
        .collect();
    // Exactly the three lines went: hbaConfig, `postgres:` and conninfo.
    assert_eq!(yaml.lines().count() + 3, full.lines().count(), "{yaml}");
    let config = dir.join("witness.yml");
    std::fs::write(&config, &yaml).expect("write the witness config");
    let path = config.to_str().expect("utf-8");
    let (code, out, err) = pgsql_state(&["-f", path, "check-config"]);
    assert_eq!(code, 0, "{out}{err}");
    let _witness = start_peer(&config, bind, &dir.join("witness.log"));
    let a = wait_answer(bind, "the witness sees both data nodes", |a| {
        a.observed.len() == 2
    });
    assert_eq!(a.master, [s.p1.ip().to_string()]);
    assert_eq!(a.slaves, [s.p2.ip().to_string()]);
}

/// Opens `per_source` connections to `addr` from each of `sources`, sends
/// `first` on each (a byte of HTTP/2's preface, or a TLS record header
/// that promises more), and holds them.
async fn dawdling_connections(
    addr: SocketAddr,
    sources: &[Ipv4Addr],
    per_source: usize,
    first: &'static [u8],
) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    // All at once, so that every slot is held before the first one's
    // set-up deadline ends.
    let mut tasks = tokio::task::JoinSet::new();
    for source in sources.iter().copied() {
        for _ in 0..per_source {
            tasks.spawn(async move {
                let mut stream = idle_connections(addr, source, 1).await.pop()?;
                stream.write_all(first).await.ok()?;
                Some(stream)
            });
        }
    }
    let mut open = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(Some(stream)) = done {
            open.push(stream);
        }
    }
    open
}

/// How many of `held` the server has closed: what it sent (HTTP/2's
/// SETTINGS) is read, then EOF or an error, with reads that do not wait.
fn closed_by_server(held: &[tokio::net::TcpStream]) -> usize {
    let mut buf = [0u8; 1024];
    held.iter()
        .filter(|s| loop {
            match s.try_read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e) => break e.kind() != std::io::ErrorKind::WouldBlock,
            }
        })
        .count()
}

/// Review item 19.1: 512 connections from 16 stranger addresses, each
/// holding the peer port after a first byte (or a TLS record header),
/// shut it for everyone. Now a configured voter's ask is answered at once
/// throughout (its address is reserved), and the strangers' connections
/// are closed when they have not sent a request within the set-up
/// deadline. Returns the honest asks' answer times.
fn attack_the_peer_port(
    rt: &tokio::runtime::Runtime,
    target: SocketAddr,
    voter: Ipv4Addr,
    strangers: &[Ipv4Addr],
    first: &'static [u8],
    tls: Tls,
) -> Vec<Duration> {
    let grpc_from = |source: Ipv4Addr| Grpc {
        tls: tls.clone(),
        bind_address: source.to_string(),
        server_host_override: tls.enabled.then(|| "pgsql-state.test".to_string()),
        ..grpc(Duration::from_secs(3))
    };
    let honest = PeerClient::new(&grpc_from(voter), anonymous()).expect("a client");
    let opening = Instant::now();
    let held = rt.block_on(dawdling_connections(target, strangers, 32, first));
    println!(
        "{} stranger connections hold {target} (opened in {:?})",
        held.len(),
        opening.elapsed()
    );
    assert!(held.len() >= 500, "only {} connections opened", held.len());
    // A stranger's own ask, while the slots are full: it may be refused.
    let stranger =
        PeerClient::new(&grpc_from(Ipv4Addr::new(127, 0, 0, 201)), anonymous()).expect("a client");
    let refused = matches!(
        rt.block_on(stranger.ask(&target.to_string())),
        PeerView::Unreachable(_)
    );
    let mut took = Vec::new();
    let start = Instant::now();
    // Asks through the set-up deadline (3 s) and past it.
    while start.elapsed() < Duration::from_secs(6) {
        let asked = Instant::now();
        match rt.block_on(honest.ask(&target.to_string())) {
            PeerView::Answered(a) => assert_eq!(a.node_name, "node_1"),
            PeerView::Unreachable(e) => {
                panic!(
                    "the voter's ask failed {:?} into the attack: {e}",
                    start.elapsed()
                )
            }
        }
        took.push(asked.elapsed());
        std::thread::sleep(Duration::from_millis(250));
    }
    let closed = closed_by_server(&held);
    println!(
        "attack on {target}: the voter's {} asks took {:?} at most; a stranger's ask {}; \
         {closed} of {} stranger connections closed by the server after 6 s",
        took.len(),
        took.iter().max(),
        if refused {
            "was refused"
        } else {
            "was answered"
        },
        held.len()
    );
    assert!(
        took.iter().all(|t| *t < Duration::from_secs(1)),
        "the voter waited: {took:?}"
    );
    assert!(
        closed * 10 >= held.len() * 9,
        "only {closed} of {} dawdling connections were closed past the set-up deadline",
        held.len()
    );
    took
}

/// The 16 stranger addresses of the attack: 127.0.0.100 to 127.0.0.115.
fn stranger_addrs() -> Vec<Ipv4Addr> {
    (100..116).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect()
}

#[test]
fn strangers_holding_the_peer_port_do_not_shut_out_a_voter() {
    let s = setup();
    raise_fd_limit();
    let rt = runtime();
    // node_1's peer lists the witness (127.0.K.4) among its voters.
    let voter = s.cluster.spare_addr(4);
    attack_the_peer_port(&rt, s.p1, voter, &stranger_addrs(), b"P", Tls::default());
}

#[test]
fn strangers_holding_the_tls_handshake_do_not_shut_out_a_voter() {
    let s = setup();
    raise_fd_limit();
    let rt = runtime();
    let dir = runtime_dir("limits-tls-peer");
    let (files, _) = make_tls(&dir);
    let files = TlsFiles {
        require_client_cert: false,
        ..files
    };
    let bind = SocketAddr::new(s.cluster.primary.addr.into(), 10111);
    let witness = SocketAddr::new(s.cluster.spare_addr(4).into(), 10111);
    let config = PeerConfig {
        node_name: "node_1",
        primary_ip: &bind.ip().to_string(),
        bind,
        neighbours: vec![SocketAddr::new(s.p2.ip(), 10111).to_string()],
        witness: witness.to_string(),
        conninfo: s.cluster.primary.conninfo(),
        runtime_dir: &dir,
        tls: Some(&files),
        connection_deadline: 2.0,
    }
    .write(&dir);
    let _peer = start_peer(&config, bind, &dir.join("peer-tls.log"));
    let tls = Tls {
        enabled: true,
        require_client_cert: false,
        ca: Some(files.ca.clone()),
        cert: None,
        key: None,
    };
    // A TLS handshake record header that promises 512 bytes, then nothing.
    attack_the_peer_port(
        &rt,
        bind,
        s.cluster.spare_addr(4),
        &stranger_addrs(),
        &[0x16, 0x03, 0x01, 0x02, 0x00],
        tls,
    );
}

/// Issue 24, item 6: this node's own reconciler, `promote-check` and
/// `status` ask its own peer from its own address (`bindAddress`) or from
/// loopback. Counted as strangers, 16 addresses × 32 connections filled
/// their slots and `promote-check` lost its own vote on every rerun. Both
/// are reserved now, as the configured voters are.
#[test]
fn strangers_holding_the_peer_port_do_not_shut_out_this_node_s_own_asks() {
    let s = setup();
    raise_fd_limit();
    let rt = runtime();
    let dir = runtime_dir("limits-own-asks");
    let bind = SocketAddr::new(s.cluster.primary.addr.into(), 10112);
    let config = PeerConfig {
        node_name: "node_1",
        primary_ip: &bind.ip().to_string(),
        bind,
        neighbours: vec![SocketAddr::new(s.p2.ip(), 10112).to_string()],
        witness: SocketAddr::new(s.cluster.spare_addr(4).into(), 10112).to_string(),
        conninfo: s.cluster.primary.conninfo(),
        runtime_dir: &dir,
        tls: None,
        connection_deadline: 2.0,
    }
    .write(&dir);
    let _peer = start_peer(&config, bind, &dir.join("peer-own.log"));
    for own in [s.cluster.primary.addr, Ipv4Addr::LOCALHOST] {
        attack_the_peer_port(&rt, bind, own, &stranger_addrs(), b"P", Tls::default());
    }
}

/// Review item 19.2: eight addresses holding silent connections fill the
/// long-lived responder (128 each, 1,024 in all; a ninth keeps them full);
/// HAProxy's checks, from a `haproxy.server` address, keep their answers.
#[test]
fn silent_strangers_do_not_starve_haproxy_s_checks_of_the_long_lived_responder() {
    let s = setup();
    raise_fd_limit();
    let dir = runtime_dir("limits-reserved-responder");
    let haproxy = s.cluster.spare_addr(60);
    let config = PeerConfig {
        node_name: "node_2",
        primary_ip: &s.p2.ip().to_string(),
        bind: s.p2,
        neighbours: vec![s.p1.to_string()],
        witness: SocketAddr::new(s.cluster.spare_addr(4).into(), 10100).to_string(),
        conninfo: s.cluster.standby.conninfo(),
        runtime_dir: &dir,
        tls: None,
        connection_deadline: 2.0,
    }
    .yaml()
    .replace(
        "    server:\n      - \"127.0.0.1\"\n",
        &format!("    server:\n      - \"{haproxy}\"\n"),
    );
    assert!(config.contains(&haproxy.to_string()), "{config}");
    let path = dir.join("responder.yml");
    std::fs::write(&path, config).expect("write the config");
    let addr = SocketAddr::new(s.cluster.standby.addr.into(), 5451);
    let _server = Spawned::listening(
        {
            let mut cmd = std::process::Command::new(binary());
            cmd.arg("-f")
                .arg(&path)
                .args([
                    "respond",
                    "--format",
                    "http",
                    "--fencing",
                    "off",
                    "--listen",
                ])
                .arg(addr.to_string())
                .stderr(std::process::Stdio::null());
            cmd
        },
        addr,
        "the long-lived responder",
    );
    let rt = runtime();
    // Sixteen addresses, 128 connections each, silent: twice the 1,024
    // slots, so that they stay full while each connection the responder
    // answers (400, after its 1 s head timeout) or refuses is opened again,
    // however slowly a loaded machine reconnects (with one address over
    // the slots, a reconnect slower than 1/8 of the head timeout left them
    // never full). Bounded: 30 s.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let attack = {
        let (stop, refused) = (stop.clone(), refused.clone());
        std::thread::spawn(move || {
            runtime().block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                for source in (120..136).map(|i| Ipv4Addr::new(127, 0, 0, i)) {
                    for _ in 0..128 {
                        let (stop, refused) = (stop.clone(), refused.clone());
                        tasks.spawn(async move {
                            use tokio::io::AsyncReadExt;
                            let started = Instant::now();
                            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                                && started.elapsed() < Duration::from_secs(30)
                            {
                                let Some(mut conn) = idle_connections(addr, source, 1).await.pop()
                                else {
                                    // Not connected (the backlog is full):
                                    // neither held nor refused.
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                    continue;
                                };
                                let held = Instant::now();
                                let mut buf = [0u8; 256];
                                let read = tokio::time::timeout(
                                    Duration::from_secs(5),
                                    conn.read(&mut buf),
                                )
                                .await;
                                // Closed at once, unanswered: refused (the
                                // slots are full). Try again soon, not in a
                                // spin.
                                if matches!(read, Ok(Ok(0)) | Ok(Err(_)))
                                    && held.elapsed() < Duration::from_millis(100)
                                {
                                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                }
                            }
                        });
                    }
                }
                while tasks.join_next().await.is_some() {}
            })
        })
    };
    // Wait until the attack fills the slots: its connections are refused.
    let filling = Instant::now();
    while refused.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(
            filling.elapsed() < Duration::from_secs(15),
            "2,048 silent connections never filled the responder's slots in 15 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let check_from = |source: Ipv4Addr| {
        rt.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut conn = idle_connections(addr, source, 1).await.pop()?;
            conn.write_all(b"GET /replica HTTP/1.0\r\n\r\n")
                .await
                .ok()?;
            let mut reply = String::new();
            tokio::time::timeout(Duration::from_secs(3), conn.read_to_string(&mut reply))
                .await
                .ok()?
                .ok()?;
            Some(reply)
        })
    };
    let refused_before = refused.load(std::sync::atomic::Ordering::Relaxed);
    let mut took = Vec::new();
    for _ in 0..10 {
        let start = Instant::now();
        let reply = check_from(haproxy).unwrap_or_default();
        took.push(start.elapsed());
        assert!(
            reply.starts_with("HTTP/1.0 200 OK"),
            "HAProxy's check: {reply:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The control: the strangers were being refused all the while, so
    // the slots were full while HAProxy's checks got in.
    let refused_during = refused.load(std::sync::atomic::Ordering::Relaxed) - refused_before;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    attack.join().expect("the attack's thread");
    println!(
        "silent strangers on the long-lived responder: HAProxy's checks took {took:?}; \
         the strangers were refused {refused_during} times meanwhile"
    );
    assert!(
        took.iter().all(|t| *t < Duration::from_secs(2)),
        "HAProxy's check waited: {took:?}"
    );
    assert!(
        refused_during >= 100,
        "the slots were not full: only {refused_during} stranger connections refused"
    );
}
