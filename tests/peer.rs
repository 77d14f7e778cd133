//! `pgsql-state peer` and `status` against real PostgreSQL: a primary, a
//! standby and a witness as real processes on their own 127.0.K.x
//! addresses. Views before and after a promotion (two masters), a hung and
//! a killed peer, TLS and mutual TLS with a CA made here, a node of another
//! cluster, and a client built from harepd's own proto.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use pgsql_state::config::{Grpc, Tls};
use pgsql_state::peer::client::{PeerClient, PeerView};
use pgsql_state::peer::proto::{IKnow, Role, WhatYouKnow};

/// The client generated from harepd's messaging.proto as its README prints it.
mod harepd {
    include!(concat!(env!("OUT_DIR"), "/harepd/models.rs"));
}

fn shared() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(Cluster::start)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn sock(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// The three configs of one cluster on `port`: node_1, node_2, witness.
struct Trio {
    p1: SocketAddr,
    p2: SocketAddr,
    w: SocketAddr,
    configs: [std::path::PathBuf; 3],
    dir: std::path::PathBuf,
}

fn trio(c: &Cluster, port: u16, tls: Option<&TlsFiles>, deadline: f64) -> Trio {
    let dir = runtime_dir(&format!("peers-{}-{port}", c.slot));
    let (p1, p2, w) = (
        sock(c.primary.addr, port),
        sock(c.standby.addr, port),
        sock(c.spare_addr(4), port),
    );
    let make =
        |name: &str, ip: IpAddr, bind: SocketAddr, neighbours: Vec<String>, conninfo: String| {
            // Each node has its own runtime directory, as on its own host.
            let run = dir.join(format!("run-{name}"));
            std::fs::create_dir_all(&run).expect("create a runtime dir");
            PeerConfig {
                node_name: name,
                primary_ip: &ip.to_string(),
                bind,
                neighbours,
                witness: w.to_string(),
                conninfo,
                runtime_dir: &run,
                tls,
                connection_deadline: deadline,
            }
            .write(&dir)
        };
    let configs = [
        make(
            "node_1",
            p1.ip(),
            p1,
            vec![p2.to_string()],
            c.primary.conninfo(),
        ),
        make(
            "node_2",
            p2.ip(),
            p2,
            vec![p1.to_string()],
            c.standby.conninfo(),
        ),
        make(
            "witness",
            w.ip(),
            w,
            vec![p1.to_string(), p2.to_string()],
            "host=/nonexistent".into(),
        ),
    ];
    Trio {
        p1,
        p2,
        w,
        configs,
        dir,
    }
}

impl Trio {
    fn start(&self) -> Vec<Spawned> {
        [self.p1, self.p2, self.w]
            .iter()
            .zip(&self.configs)
            .map(|(addr, cfg)| start_peer(cfg, *addr, &self.log(*addr)))
            .collect()
    }

    fn log(&self, addr: SocketAddr) -> std::path::PathBuf {
        self.dir.join(format!("peer-{}.log", addr.ip()))
    }
}

fn grpc(tls: Tls, deadline: Duration, host_override: Option<&str>) -> Grpc {
    Grpc {
        tls,
        bind_address: "127.0.0.1".into(),
        bind_port: 1,
        server_host_override: host_override.map(str::to_string),
        neighbours: vec![],
        witness: None,
        connection_deadline: deadline,
    }
}

fn client(tls: Tls, deadline: Duration, host_override: Option<&str>) -> PeerClient {
    let me = WhatYouKnow {
        ip: "127.0.0.99".into(),
        node_name: "test".into(),
        ..WhatYouKnow::default()
    };
    PeerClient::new(&grpc(tls, deadline, host_override), me).expect("a peer client")
}

fn plain_client() -> PeerClient {
    client(Tls::default(), Duration::from_secs(5), None)
}

fn answered(view: PeerView) -> IKnow {
    match view {
        PeerView::Answered(a) => a,
        PeerView::Unreachable(e) => panic!("no answer: {e}"),
    }
}

/// Asks with harepd's client: only fields 1–6 are known to it.
async fn ask_as_harepd(addr: SocketAddr) -> harepd::IKnow {
    let mut c = harepd::cluster_info_client::ClusterInfoClient::connect(format!("http://{addr}"))
        .await
        .expect("connect as harepd");
    let asker = harepd::WhatYouKnow {
        ip: "10.9.9.9".into(),
        node_id: 9,
        node_name: "harepd-node".into(),
    };
    c.get_cluster_info(asker)
        .await
        .expect("harepd's call")
        .into_inner()
}

fn wait_view(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    what: &str,
    want: impl Fn(&IKnow) -> bool,
) -> IKnow {
    let start = Instant::now();
    loop {
        let view = rt.block_on(plain_client().ask(&addr.to_string()));
        if let PeerView::Answered(a) = &view {
            if want(a) {
                return a.clone();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{addr}: {what}; last view {view:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn views_before_and_after_promotion_harepd_decodes_them_and_status_shows_them() {
    let c = Cluster::start();
    let t = trio(&c, 10000, None, 5.0);
    let _peers = t.start();
    let run = runtime_dir(&format!("peer-status-{}", c.slot));
    let _responders: Vec<Spawned> = [&c.primary, &c.standby]
        .iter()
        .map(|n| {
            let args = [
                "--runtime-dir",
                run.to_str().expect("utf-8"),
                "--conninfo",
                &n.conninfo(),
            ];
            socket_activate(sock(n.addr, 5431), Activation::Accept, &[], &args)
        })
        .collect();
    let rt = runtime();
    let (ip1, ip2) = (c.primary.addr.to_string(), c.standby.addr.to_string());

    // Before: node_1 is master with node_2 its slave, in every view.
    let v1 = wait_view(&rt, t.p1, "node_1 sees node_2 as its slave", |a| {
        a.slaves == [ip2.clone()]
    });
    assert_eq!(
        (v1.role, v1.master.clone(), v1.timeline),
        (Role::Primary as i32, vec![ip1.clone()], 1)
    );
    let v2 = wait_view(&rt, t.p2, "node_2 names node_1", |a| {
        a.master == [ip1.clone()]
    });
    assert_eq!(
        (v2.role, v2.slaves.clone(), v2.streaming),
        (Role::Standby as i32, vec![ip2.clone()], true)
    );
    assert_eq!(v1.system_identifier, v2.system_identifier);
    assert_ne!(v1.system_identifier, 0);
    let vw = wait_view(&rt, t.w, "the witness sees both", |a| a.observed.len() == 2);
    assert_eq!(
        (vw.role, vw.master.clone(), vw.slaves.clone()),
        (Role::Witness as i32, vec![ip1.clone()], vec![ip2.clone()])
    );
    assert!(vw.unreachable.is_empty(), "{:?}", vw.unreachable);
    // Every answer carries the answerer's own timing: watchDog 2 and
    // connectionDeadline 5 give L = 9 s; the shipped HAProxy timing, H = 7 s.
    for v in [&v1, &v2, &vw] {
        assert_eq!(
            (v.lease_ms, v.haproxy_term_ms),
            (9_000, 7_000),
            "{}",
            v.node_name
        );
    }
    // doctor on node_2 with its watchDog changed in its file (its peer
    // still runs the old one). watchDog 1 (L = 7 s): the primary's 9 s
    // lease outlasts node_2's wait, a FAIL; watchDog 3 (L = 11 s): covered,
    // a warning. The witness's lease bounds no verdict; node_2's own peer
    // runs the old config, which says to restart it.
    let text = std::fs::read_to_string(&t.configs[1]).expect("read node_2's config");
    assert!(text.contains("watchDog: 2\n"), "{text}");
    for (watchdog, lease, node_1_line) in [
        (
            1,
            "7.0 s",
            format!(
                "FAIL  peer: {}: node_1 answers as the primary, and its lease L is 9.0 s and HAProxy's term H 7.0 s, this node's 7.0 s and 7.0 s: were it lost now",
                t.p1
            ),
        ),
        (
            3,
            "11.0 s",
            format!(
                "warn  peer: {}: node_1 answered, but its lease L is 9.0 s and HAProxy's term H 7.0 s, this node's 11.0 s and 7.0 s",
                t.p1
            ),
        ),
    ] {
        let changed = t.dir.join(format!("node_2-watchdog-{watchdog}.yml"));
        std::fs::write(
            &changed,
            text.replace("watchDog: 2\n", &format!("watchDog: {watchdog}\n")),
        )
        .expect("write the changed config");
        let (_, out, err) = pgsql_state(&["-f", changed.to_str().expect("utf-8"), "doctor"]);
        let own = format!(
            "warn  peer: {}: this node's own peer runs another config: its lease L is 9.0 s and HAProxy's term H 7.0 s, this node's {lease} and 7.0 s",
            t.p2
        );
        let witness = format!("ok    peer: {}: witness answered", t.w);
        for want in [&node_1_line, &own, &witness] {
            assert!(
                out.lines().any(|l| l.starts_with(want.as_str())),
                "watchDog {watchdog}: no line starting {want:?} in:\n{out}{err}"
            );
        }
    }
    // With the same timing as the others, no such warning.
    let (_, out, err) = pgsql_state(&["-f", t.configs[0].to_str().expect("utf-8"), "doctor"]);
    assert!(
        out.contains("node_2 answered (timeline") && !out.contains("answered, but its lease"),
        "{out}{err}"
    );

    // harepd's own client decodes our answers (fields 1-6).
    let h = rt.block_on(ask_as_harepd(t.p1));
    assert_eq!(
        (h.ip.as_str(), h.node_name.as_str(), h.witness.clone()),
        (ip1.as_str(), "node_1", t.w.to_string())
    );
    assert_eq!(
        (h.master.clone(), h.slaves.clone()),
        (vec![ip1.clone()], vec![ip2.clone()])
    );
    let hw = rt.block_on(ask_as_harepd(t.w));
    assert_eq!(
        (hw.master, hw.slaves),
        (vec![ip1.clone()], vec![ip2.clone()])
    );

    // status: a table, and JSON.
    let cfg = t.configs[0].to_str().expect("utf-8");
    let (code, out, err) = pgsql_state(&["-f", cfg, "status"]);
    println!("{out}");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("3/3 nodes answered; primary {ip1}")),
        "{out}"
    );
    let line = |node: &str| line_in(&out, node);
    assert!(
        line("node_1").contains("primary") && line("node_1").contains("production"),
        "{out}"
    );
    assert!(
        line("node_2").contains("standby") && line("node_2").contains(" standby "),
        "{out}"
    );
    assert!(line("witness").contains("witness"), "{out}");

    // One peer's whole answer, as JSON.
    let (code, json, err) = pgsql_state(&["-f", cfg, "status", "--ask", &t.p2.to_string()]);
    assert_eq!(code, 0, "{err}");
    let raw: serde_json::Value = serde_json::from_str(&json).expect("status --ask is JSON");
    assert_eq!(raw["node_name"], "node_2", "{json}");
    assert_eq!(raw["role"], Role::Standby as i32, "{json}");
    assert_eq!(raw["streaming"], true, "{json}");
    let dead = format!("{}:1", c.spare_addr(9));
    let (code, _, err) = pgsql_state(&["-f", cfg, "status", "--ask", &dead]);
    assert_eq!(code, 1, "an unreachable peer: {err}");
    assert!(err.contains("connection refused"), "{err}");

    // A verdict in node_1's runtime directory is reported, and status shows it.
    let verdict = t.dir.join("run-node_1").join("verdict");
    std::fs::write(
        &verdict,
        "verdict=fenced\nreason=test fence\nboot_id=other-boot\nboottime_ms=0\nvalid_ms=1\n",
    )
    .expect("write a verdict");
    let v1 = wait_view(&rt, t.p1, "node_1 reports its verdict", |a| a.fenced);
    let v = v1.verdict.expect("a verdict");
    assert_eq!(
        (v.kind.as_str(), v.reason.as_str(), v.fresh),
        ("fenced", "test fence", false)
    );
    let (_, out, _) = pgsql_state(&["-f", cfg, "status"]);
    assert!(line_in(&out, "node_1").contains("fenced (stale)"), "{out}");
    std::fs::remove_file(&verdict).expect("remove the verdict");

    // `status --watch` runs through the promotion and reports it.
    let mut watch = std::process::Command::new(binary());
    watch
        .args([
            "-f",
            cfg,
            "status",
            "--watch",
            "--interval",
            "0.3",
            "--count",
            "200",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut watch = Spawned::new(
        watch.spawn().expect("start status --watch"),
        "status --watch",
    );
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let seen = seen.clone();
        let mut stdout = watch.child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut text) = seen.lock() {
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        })
    };
    let watched = |needle: &str| seen.lock().map(|t| t.contains(needle)).unwrap_or(false);
    wait_until(
        Duration::from_secs(15),
        "status --watch's first table",
        || watched("nodes answered"),
    );

    // Promote the standby while the old primary still runs: a split brain.
    run_promote(&c.standby);
    let v2 = wait_view(&rt, t.p2, "node_2 is primary", |a| {
        a.role == Role::Primary as i32
    });
    assert_eq!((v2.master.clone(), v2.timeline), (vec![ip2.clone()], 2));
    let vw = wait_view(&rt, t.w, "the witness sees two masters", |a| {
        a.master.len() == 2
    });
    assert_eq!(vw.master, vec![ip1.clone(), ip2.clone()]);
    assert!(vw.slaves.is_empty(), "{:?}", vw.slaves);
    let (_, out, _) = pgsql_state(&["-f", cfg, "status"]);
    println!("{out}");
    assert!(out.contains("SPLIT BRAIN: 2 primaries"), "{out}");
    let (code, json, _) = pgsql_state(&["-f", cfg, "status", "--json"]);
    assert_eq!(code, 0);
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("status --json is JSON");
    assert_eq!(parsed["nodes"].as_array().map(Vec::len), Some(3), "{json}");
    assert!(
        parsed["summary"]
            .as_str()
            .is_some_and(|s| s.contains("SPLIT BRAIN")),
        "{json}"
    );
    wait_until(
        Duration::from_secs(20),
        "status --watch to report the promotion",
        || watched("node_2: role standby -> primary"),
    );
    drop(watch);
    let _ = reader.join();
}

/// The status table's line for `node`.
fn line_in(out: &str, node: &str) -> String {
    out.lines()
        .find(|l| l.starts_with(node))
        .unwrap_or_else(|| panic!("no {node} in\n{out}"))
        .to_string()
}

fn run_promote(node: &Node) {
    run(common::cluster::as_pg_user(&pg_bin("pg_ctl"))
        .args(["-w", "-D"])
        .arg(&node.data_dir)
        .arg("promote"));
}

#[test]
fn hung_or_killed_peer_never_makes_the_witness_late() {
    let c = shared();
    // connectionDeadline 2 s: the witness fans out within 1 s.
    let t = trio(c, 10001, None, 2.0);
    let mut peers = t.start();
    let rt = runtime();
    wait_view(&rt, t.w, "the witness sees both", |a| a.observed.len() == 2);

    // Hang node_2's peer.
    let node_2 = peers[1].child.id() as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(node_2, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_millis(1100)); // past the witness's cache
    let start = Instant::now();
    let hung = rt.block_on(plain_client().ask(&t.w.to_string()));
    let took = start.elapsed();
    // A second question within the cache's second is answered from it.
    let again = Instant::now();
    let cached = rt.block_on(plain_client().ask(&t.w.to_string()));
    let cached_took = again.elapsed();
    let direct_start = Instant::now();
    let direct = rt
        .block_on(client(Tls::default(), Duration::from_millis(500), None).ask(&t.p2.to_string()));
    let direct_took = direct_start.elapsed();
    // SAFETY: as above.
    unsafe { libc::kill(node_2, libc::SIGCONT) };
    let hung = answered(hung);
    let hung_copy = hung.clone();
    println!("witness answer with one peer hung: {took:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1600),
        "witness took {took:?}"
    );
    assert_eq!(hung.master, vec![c.primary.addr.to_string()]);
    assert_eq!(hung.unreachable.len(), 1, "{:?}", hung.unreachable);
    assert_eq!(hung.unreachable[0].address, t.p2.to_string());
    assert!(
        hung.unreachable[0].reason.starts_with("no answer within"),
        "{:?}",
        hung.unreachable
    );
    assert!(matches!(direct, PeerView::Unreachable(_)), "{direct:?}");
    // The voter's clock (its confirmations and uptime) is read fresh for
    // every answer, after the cache; the rest is the cached answer.
    let mut cached = answered(cached);
    assert!(
        cached.uptime_ms >= hung_copy.uptime_ms,
        "uptime went back: {} after {}",
        cached.uptime_ms,
        hung_copy.uptime_ms
    );
    cached.uptime_ms = hung_copy.uptime_ms;
    assert_eq!(cached, hung_copy, "the cached answer is the same answer");
    assert!(
        cached_took < Duration::from_millis(200),
        "a cached witness answer took {cached_took:?}"
    );
    assert!(
        direct_took < Duration::from_millis(800),
        "a hung peer answered the client in {direct_took:?}"
    );

    // Killed: refused, at once.
    drop(peers.remove(1));
    std::thread::sleep(Duration::from_millis(1100));
    let start = Instant::now();
    let killed = answered(rt.block_on(plain_client().ask(&t.w.to_string())));
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(killed.unreachable[0].reason, "connection refused");
    assert_eq!(killed.master, vec![c.primary.addr.to_string()]);

    // A data node whose Postgres cannot be reached answers DOWN, promptly.
    let dir = runtime_dir("peer-down");
    let bind = sock(c.spare_addr(5), 10001);
    let cfg = PeerConfig {
        node_name: "node_x",
        primary_ip: &c.spare_addr(5).to_string(),
        bind,
        neighbours: vec![],
        witness: t.w.to_string(),
        conninfo: "host=/nonexistent port=5432 user=postgres".into(),
        runtime_dir: &dir,
        tls: None,
        connection_deadline: 2.0,
    }
    .write(&dir);
    let _down = start_peer(&cfg, bind, &dir.join("peer.log"));
    let start = Instant::now();
    let a = answered(rt.block_on(plain_client().ask(&bind.to_string())));
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(
        (a.role, a.postgres_error.as_str()),
        (Role::Down as i32, "no server socket")
    );
}

fn tls(files: &TlsFiles, with_cert: bool) -> Tls {
    Tls {
        enabled: true,
        require_client_cert: false,
        ca: Some(files.ca.clone()),
        cert: with_cert.then(|| files.cert.clone()),
        key: with_cert.then(|| files.key.clone()),
    }
}

#[test]
fn tls_and_mutual_tls_with_a_ca_made_here() {
    let c = shared();
    let dir = runtime_dir("peer-tls");
    let (files, foreign) = make_tls(&dir);
    // node_1 and node_2 require client certificates (mutual TLS); the witness
    // asks them with its own certificate.
    let t = trio(c, 10002, Some(&files), 5.0);
    let configs: Vec<String> = t
        .configs
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("read config"))
        .collect();
    for (path, text) in t.configs.iter().zip(&configs) {
        let with_override = text.replace(
            "    bindPort:",
            "    serverHostOverride: \"pgsql-state.test\"\n    bindPort:",
        );
        std::fs::write(path, with_override).expect("rewrite config");
    }
    let _peers = t.start();
    let rt = runtime();
    let d = Duration::from_secs(3);
    let name = Some("pgsql-state.test");

    let ok = rt.block_on(client(tls(&files, true), d, name).ask(&t.p1.to_string()));
    assert_eq!(
        answered(ok).node_name,
        "node_1",
        "TLS with a client certificate"
    );
    let no_cert = rt.block_on(client(tls(&files, false), d, name).ask(&t.p1.to_string()));
    assert!(
        matches!(no_cert, PeerView::Unreachable(_)),
        "mutual TLS must refuse a client without a certificate: {no_cert:?}"
    );
    let wrong_name = rt.block_on(client(tls(&files, true), d, None).ask(&t.p1.to_string()));
    assert!(
        matches!(wrong_name, PeerView::Unreachable(_)),
        "the certificate names pgsql-state.test, not the IP: {wrong_name:?}"
    );
    let wrong_ca = rt.block_on(client(tls(&foreign, true), d, name).ask(&t.p1.to_string()));
    assert!(
        matches!(wrong_ca, PeerView::Unreachable(_)),
        "a server signed by another CA: {wrong_ca:?}"
    );
    let plain = rt.block_on(plain_client().ask(&t.p1.to_string()));
    assert!(
        matches!(plain, PeerView::Unreachable(_)),
        "plaintext against TLS: {plain:?}"
    );

    // The witness fans out over mutual TLS.
    let start = Instant::now();
    loop {
        let w = answered(rt.block_on(client(tls(&files, true), d, name).ask(&t.w.to_string())));
        if w.observed.len() == 2 {
            assert_eq!(
                (w.master, w.slaves),
                (
                    vec![c.primary.addr.to_string()],
                    vec![c.standby.addr.to_string()]
                )
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "witness over TLS: {w:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_node_of_another_cluster_is_ignored_with_a_log_line() {
    let c = shared();
    let stranger = c.stranger(6);
    let t = trio(c, 10003, None, 4.0);
    let s_bind = sock(stranger.addr, 10003);
    // The stranger is listed as a neighbour of node_1 and of the witness.
    for (i, extra) in [(0, s_bind), (2, s_bind)] {
        let text = std::fs::read_to_string(&t.configs[i]).expect("read config");
        let text = text.replace(
            "    neighbours:\n",
            &format!("    neighbours:\n      - \"{extra}\"\n"),
        );
        std::fs::write(&t.configs[i], text).expect("rewrite config");
    }
    let s_cfg = PeerConfig {
        node_name: "stranger",
        primary_ip: &stranger.addr.to_string(),
        bind: s_bind,
        neighbours: vec![t.p1.to_string()],
        witness: t.w.to_string(),
        conninfo: stranger.conninfo(),
        runtime_dir: &t.dir,
        tls: None,
        connection_deadline: 4.0,
    }
    .write(&t.dir);
    let _s = start_peer(&s_cfg, s_bind, &t.log(s_bind));
    let _peers = t.start();
    let rt = runtime();
    let w = wait_view(&rt, t.w, "the witness hears all three", |a| {
        a.observed.len() + a.unreachable.len() == 3
    });
    assert_eq!(
        w.master,
        vec![c.primary.addr.to_string()],
        "the stranger's primary is not a master of ours"
    );
    assert_eq!(w.slaves, vec![c.standby.addr.to_string()]);
    assert_eq!(w.unreachable.len(), 1, "{:?}", w.unreachable);
    assert!(
        w.unreachable[0]
            .reason
            .starts_with("ignored: system identifier"),
        "{:?}",
        w.unreachable
    );
    wait_until(
        Duration::from_secs(15),
        "log lines about the stranger",
        || {
            let witness_log = std::fs::read_to_string(t.log(t.w)).unwrap_or_default();
            let node_log = std::fs::read_to_string(t.log(t.p1)).unwrap_or_default();
            witness_log.contains(&format!("{s_bind} ignored: system identifier"))
                && node_log.contains(&format!(
                    "peer {s_bind} (stranger) ignored: system identifier"
                ))
        },
    );
}

#[test]
fn peer_serves_a_socket_systemd_passes_and_notifies_systemd() {
    use std::os::unix::net::UnixDatagram;
    let c = shared();
    let t = trio(c, 10004, None, 5.0);
    let notify_path = t.dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("bind a notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // Accept=no: systemd-socket-activate passes the listening socket as fd 3
    // and execs the peer in place, so the shell's pid is the peer's pid, as
    // WATCHDOG_PID must be.
    let script = format!(
        "export WATCHDOG_PID=$$; exec {activate} -l {addr} -E NOTIFY_SOCKET={notify} -E WATCHDOG_USEC=400000 -E WATCHDOG_PID -- {bin} -f {cfg} peer",
        activate = require_tool("systemd-socket-activate").display(),
        addr = t.p1,
        notify = notify_path.display(),
        bin = binary().display(),
        cfg = t.configs[0].display(),
    );
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .stderr(std::process::Stdio::null());
    let _peer = Spawned::listening(cmd, t.p1, "socket-activated peer");
    let rt = runtime();
    let a = answered(rt.block_on(plain_client().ask(&t.p1.to_string())));
    assert_eq!(
        (a.node_name.as_str(), a.role),
        ("node_1", Role::Primary as i32)
    );
    let mut seen = String::new();
    let start = Instant::now();
    while !(seen.contains("READY=1") && seen.contains("WATCHDOG=1")) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "notifications so far: {seen:?}"
        );
        let mut buf = [0u8; 512];
        let n = notify.recv(&mut buf).expect("a notification");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        seen.push('\n');
    }
    assert!(seen.contains("STATUS=data node, serving on"), "{seen:?}");
}

/// A Go harepd node, as its code answers: its repmgr view in `master` and
/// `slaves`, nothing past field 6. Built from harepd's own proto.
struct HarepdNode {
    answer: harepd::IKnow,
}

#[tonic::async_trait]
impl harepd::cluster_info_server::ClusterInfo for HarepdNode {
    async fn get_cluster_info(
        &self,
        _request: tonic::Request<harepd::WhatYouKnow>,
    ) -> Result<tonic::Response<harepd::IKnow>, tonic::Status> {
        Ok(tonic::Response::new(self.answer.clone()))
    }
}

#[test]
fn a_harepd_node_and_pgsql_state_nodes_understand_each_other() {
    let c = shared();
    let t = trio(c, 10005, None, 4.0);
    let (ip1, ip2) = (c.primary.addr.to_string(), c.standby.addr.to_string());
    // node_2's peer is a harepd node; node_1 and the witness are ours.
    let harepd_node = HarepdNode {
        answer: harepd::IKnow {
            ip: ip2.clone(),
            node_id: 2,
            node_name: "node_2".into(),
            witness: t.w.to_string(),
            slaves: vec![ip2.clone()],
            master: vec![ip1.clone()],
        },
    };
    let addr = t.p2;
    std::thread::spawn(move || {
        runtime().block_on(async move {
            tonic::transport::Server::builder()
                .add_service(harepd::cluster_info_server::ClusterInfoServer::new(
                    harepd_node,
                ))
                .serve(addr)
                .await
                .expect("the harepd-shaped server");
        })
    });
    wait_until(Duration::from_secs(10), "the harepd node listens", || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    let _p1 = start_peer(&t.configs[0], t.p1, &t.log(t.p1));
    let _w = start_peer(&t.configs[2], t.w, &t.log(t.w));
    let rt = runtime();

    // Our client reads the harepd node's answer; its role comes from its view.
    let h = answered(rt.block_on(plain_client().ask(&t.p2.to_string())));
    assert_eq!(pgsql_state::peer::opinion::role_of(&h), Role::Standby);
    // node_1 learns node_2's address from the harepd node and names it.
    wait_view(
        &rt,
        t.p1,
        "node_1 maps node_2 through the harepd node",
        |a| a.slaves == [ip2.clone()],
    );
    // The witness counts the harepd node by its view.
    let w = wait_view(&rt, t.w, "the witness sees both", |a| a.observed.len() == 2);
    assert_eq!((w.master, w.slaves), (vec![ip1.clone()], vec![ip2.clone()]));
    // And harepd's client reads our witness.
    let hw = rt.block_on(ask_as_harepd(t.w));
    assert_eq!((hw.master, hw.slaves), (vec![ip1], vec![ip2]));
}

/// Review item 19.4: a neighbour's name is logged when node_1 learns its
/// address. A name carrying a newline and a terminal escape must not forge
/// a journal line (here, one that reads like a warning of node_1's own) nor
/// reach the log raw.
#[test]
fn a_neighbours_name_cannot_forge_a_log_line() {
    let c = shared();
    let t = trio(c, 10006, None, 4.0);
    let ip2 = c.standby.addr.to_string();
    let forged = "pgsql-state: warn: FORGED split brain cleared";
    let evil = HarepdNode {
        answer: harepd::IKnow {
            ip: ip2.clone(),
            node_id: 2,
            node_name: format!("node_2\n{forged}\u{1b}[2K"),
            witness: t.w.to_string(),
            slaves: vec![ip2.clone()],
            master: vec![],
        },
    };
    let addr = t.p2;
    std::thread::spawn(move || {
        runtime().block_on(async move {
            tonic::transport::Server::builder()
                .add_service(harepd::cluster_info_server::ClusterInfoServer::new(evil))
                .serve(addr)
                .await
                .expect("the neighbour's server");
        })
    });
    wait_until(Duration::from_secs(10), "the neighbour listens", || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    let log = t.log(t.p1);
    let _p1 = start_peer(&t.configs[0], t.p1, &log);
    // node_1 asks its neighbours every 5 s and logs what it learned.
    wait_until(Duration::from_secs(20), "node_1 learns the name", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("FORGED")
    });
    let text = std::fs::read_to_string(&log).expect("node_1's log");
    assert!(
        !text.lines().any(|l| l.starts_with(forged)),
        "a forged line in the log:\n{text}"
    );
    assert!(!text.contains('\u{1b}'), "a raw escape in the log:\n{text}");
    assert!(
        text.contains("node_2\\npgsql-state: warn: FORGED"),
        "{text}"
    );
}
