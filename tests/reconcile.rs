//! `pgsql-state reconcile` against real PostgreSQL: a primary, a standby
//! and a witness, with their peers running and the reconciler run as its
//! timer would run it. pg_hba.conf's managed block is checked with real
//! logins, the zombie left by a promotion is fenced (its writers' sessions
//! ended), the new primary waits out the lease, an isolated primary is
//! fenced, and no crash ever tears pg_hba.conf.
//!
//! Timing: watchDog 1 s, connectionDeadline 1 s (L = 3 s), HAProxy
//! `inter 1 fastinter 0.5 rise 2 fall 1`, timeout check 1 s (H = 3.5 s):
//! a new primary waits W ≈ 6.6 s.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::*;

/// One node's files: config, runtime and state directories.
struct NodeFiles {
    name: &'static str,
    config: PathBuf,
    runtime: PathBuf,
    bind: SocketAddr,
}

struct Setup {
    cluster: Cluster,
    nodes: [NodeFiles; 3],
    dir: PathBuf,
    /// node_1's pg_hba.conf as the DBA wrote it, before any run.
    dba_hba: String,
}

const HAPROXY_CHECK: &str =
    "    check:\n      inter: 1\n      fastinter: 0.5\n      rise: 2\n      fall: 1\n      timeoutCheck: 1\n";

/// This file's HAProxy timing, as `HAPROXY_CHECK` writes it.
fn check_timing() -> pgsql_state::fencing::timing::HaproxyCheck {
    pgsql_state::fencing::timing::HaproxyCheck {
        inter: Duration::from_secs(1),
        fastinter: Duration::from_millis(500),
        rise: 2,
        fall: 1,
        timeout_check: Duration::from_secs(1),
    }
}

/// The model's P3 bound, end to end: a promoted node answers `production`
/// within W plus three runs plus the witness's cache. A run here comes a
/// loop after the last (both reconcilers, each within the 1 s deadline,
/// the words, 250 ms), so a run is taken as 2.5 s; the margin for a busy
/// machine is 2 s more.
fn p3_bound() -> Duration {
    let w = pgsql_state::fencing::timing::wait(
        pgsql_state::fencing::timing::lease(Duration::from_secs(1), Duration::from_secs(1)),
        &check_timing(),
    );
    w + 3 * Duration::from_millis(2_500)
        + pgsql_state::fencing::timing::WITNESS_CACHE_TTL
        + Duration::from_secs(2)
}

/// Runs the reconcilers until node_2 answers `production` beside a fenced
/// node_1; says how long after `promoted` that was, and asserts the
/// model's P3 bound. (run_until fails the test the moment both say
/// production.)
fn node_2_in_production_within_p3(s: &Setup, promoted: Instant, what: &str) -> Duration {
    run_until(
        s,
        Duration::from_secs(40),
        "node_2 in production",
        |w1, w2| w1 == "fenced" && w2 == "production",
    );
    let production_at = promoted.elapsed();
    println!("{what}: node_2 production {production_at:?} after the promotion");
    assert!(
        production_at <= p3_bound(),
        "{what}: node_2 took {production_at:?}, past the model's P3 bound {:?}",
        p3_bound()
    );
    production_at
}

/// The usual peers of cluster `c` on `port`: node_1, node_2, the witness.
fn peer_addrs(c: &Cluster, port: u16) -> [SocketAddr; 3] {
    [
        SocketAddr::new(c.primary.addr.into(), port),
        SocketAddr::new(c.standby.addr.into(), port),
        SocketAddr::new(c.spare_addr(4).into(), port),
    ]
}

fn node_yaml(c: &Cluster, name: &'static str, bind: SocketAddr, dir: &Path) -> NodeFiles {
    let [p1, p2, w] = peer_addrs(c, bind.port());
    let neighbours: Vec<SocketAddr> = [p1, p2].into_iter().filter(|n| *n != bind).collect();
    node_yaml_with(c, name, bind, &neighbours, w, dir)
}

/// A node's config with its own `neighbours` list (the witness's lists
/// every data node).
fn node_yaml_with(
    c: &Cluster,
    name: &'static str,
    bind: SocketAddr,
    neighbours: &[SocketAddr],
    witness: SocketAddr,
    dir: &Path,
) -> NodeFiles {
    let runtime = dir.join(format!("run-{name}"));
    let state = dir.join(format!("state-{name}"));
    for d in [&runtime, &state] {
        std::fs::create_dir_all(d).expect("create a node dir");
    }
    let (conninfo, hba) = match name {
        "node_1" => (c.primary.conninfo(), c.primary.data_dir.join("pg_hba.conf")),
        "node_2" => (c.standby.conninfo(), c.standby.data_dir.join("pg_hba.conf")),
        _ => (
            "host=/nonexistent".to_string(),
            PathBuf::from("/nonexistent"),
        ),
    };
    let yaml = PeerConfig {
        node_name: name,
        primary_ip: &bind.ip().to_string(),
        bind,
        neighbours: neighbours.iter().map(ToString::to_string).collect(),
        witness: witness.to_string(),
        conninfo,
        runtime_dir: &runtime,
        tls: None,
        connection_deadline: 1.0,
    }
    .reconciled_yaml(&hba, HAPROXY_CHECK)
        + &format!(
            "  stateDir: \"{}\"\n  fencing: strict\n  fenceUsers: [app]\n  authModes:\n    allow: md5\n    deny: reject\n",
            state.display()
        );
    let config = write_with_claims(dir, name, &yaml);
    NodeFiles {
        name,
        config,
        runtime,
        bind,
    }
}

fn setup() -> MutexGuard<'static, Setup> {
    static SETUP: OnceLock<Mutex<Setup>> = OnceLock::new();
    SETUP
        .get_or_init(|| {
            let cluster = Cluster::start();
            for sql in [
                "CREATE ROLE harw LOGIN PASSWORD 'harw-pass'",
                "CREATE DATABASE harw OWNER harw",
                "CREATE ROLE app LOGIN PASSWORD 'app-pass'",
                "CREATE TABLE writes (n int)",
                "GRANT ALL ON writes TO app",
            ] {
                cluster.primary.sql(sql);
            }
            let dir = runtime_dir("reconcile");
            let nodes = [
                node_yaml(
                    &cluster,
                    "node_1",
                    SocketAddr::new(cluster.primary.addr.into(), 10200),
                    &dir,
                ),
                node_yaml(
                    &cluster,
                    "node_2",
                    SocketAddr::new(cluster.standby.addr.into(), 10200),
                    &dir,
                ),
                node_yaml(
                    &cluster,
                    "witness",
                    SocketAddr::new(cluster.spare_addr(4).into(), 10200),
                    &dir,
                ),
            ];
            let dba_hba = std::fs::read_to_string(cluster.primary.data_dir.join("pg_hba.conf"))
                .expect("read pg_hba.conf");
            Mutex::new(Setup {
                cluster,
                nodes,
                dir,
                dba_hba,
            })
        })
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A test's own cluster: node_1 reaches node_2's peer at `to_2`, node_2
/// reaches node_1's at `to_1` (the peers themselves, or proxies before
/// them); both reach the witness, which asks both.
fn own_cluster(
    c: Cluster,
    dir: PathBuf,
    [p1, p2, w]: [SocketAddr; 3],
    to_2: SocketAddr,
    to_1: SocketAddr,
) -> Setup {
    let nodes = [
        node_yaml_with(&c, "node_1", p1, &[to_2], w, &dir),
        node_yaml_with(&c, "node_2", p2, &[to_1], w, &dir),
        node_yaml_with(&c, "witness", w, &[p1, p2], w, &dir),
    ];
    Setup {
        cluster: c,
        nodes,
        dir,
        dba_hba: String::new(),
    }
}

/// A test's own cluster on `port`, its peers running (node_1 and node_2
/// reach each other directly), healthy: node_1 `production`, node_2
/// `standby`.
fn healthy_own_cluster(tag: &str, port: u16) -> (Setup, Vec<Spawned>) {
    let c = Cluster::start();
    let dir = runtime_dir(tag);
    let [p1, p2, w] = peer_addrs(&c, port);
    let s = own_cluster(c, dir, [p1, p2, w], p2, p1);
    let peers = start_peers(&s);
    until_healthy(&s);
    (s, peers)
}

/// Runs the reconcilers until node_1 is `production` and node_2 `standby`.
fn until_healthy(s: &Setup) {
    run_until(s, Duration::from_secs(40), "a healthy cluster", |w1, w2| {
        w1 == "production" && w2 == "standby"
    });
}

fn start_peers(s: &Setup) -> Vec<Spawned> {
    s.nodes
        .iter()
        .map(|n| {
            start_peer(
                &n.config,
                n.bind,
                &s.dir.join(format!("peer-{}.log", n.name)),
            )
        })
        .collect()
}

/// One reconcile run of `node`; returns its exit code and log.
fn reconcile(node: &NodeFiles, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["-f", node.config.to_str().expect("utf-8"), "reconcile"];
    args.extend_from_slice(extra);
    let (code, out, err) = pgsql_state(&args);
    (code, format!("{out}{err}"))
}

/// What `node`'s responder says under `fencing: strict`.
fn word(conninfo: &str, node: &NodeFiles) -> String {
    respond_word(
        conninfo,
        &[
            "--fencing",
            "strict",
            "--runtime-dir",
            node.runtime.to_str().expect("utf-8"),
        ],
    )
    .trim()
    .to_string()
}

/// Logs in as `user` over TCP (from 127.0.0.1, the HAProxy address of the
/// configs) and says whether Postgres let it in; the error text otherwise.
fn login(node: &Node, user: &str, password: &str) -> Result<(), String> {
    let out = Command::new(pg_bin("psql"))
        .args(["-X", "-A", "-t", "-h"])
        .arg(node.addr.to_string())
        .args([
            "-p",
            "5432",
            "-U",
            user,
            "-d",
            if user == "harw" { "harw" } else { "postgres" },
        ])
        .args(["-c", "SELECT 1"])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("run psql");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Runs the reconciler of every data node once a second (as the timer
/// would) until `done`, sampling both responders between runs; panics
/// after `bound` or if both ever answer `production`. Returns the
/// elapsed time when `done` first held.
fn run_until(
    s: &Setup,
    bound: Duration,
    what: &str,
    done: impl FnMut(&str, &str) -> bool,
) -> Duration {
    run_phased(s, bound, what, done, None)
}

/// [`run_until`], but node_1's reconciler runs only once per `node_1_every`
/// (its timer's phase: the worst case is a run just before a promotion and
/// the next one a whole interval later), while node_2's runs every loop.
fn run_phased(
    s: &Setup,
    bound: Duration,
    what: &str,
    mut done: impl FnMut(&str, &str) -> bool,
    node_1_every: Option<Duration>,
) -> Duration {
    let start = Instant::now();
    let c = &s.cluster;
    let mut node_1_ran = Instant::now();
    loop {
        for (i, node) in s.nodes[..2].iter().enumerate() {
            if i == 0 {
                match node_1_every {
                    Some(every) if node_1_ran.elapsed() < every => continue,
                    _ => node_1_ran = Instant::now(),
                }
            }
            let (code, log) = reconcile(node, &[]);
            assert!(code == 0, "{} reconcile failed: {log}", node.name);
        }
        let w1 = word(&c.primary.conninfo(), &s.nodes[0]);
        let w2 = word(&c.standby.conninfo(), &s.nodes[1]);
        assert!(
            !(w1 == "production" && w2 == "production"),
            "two nodes answer production at once"
        );
        if done(&w1, &w2) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < bound,
            "timed out after {bound:?} waiting for {what}; node_1 says {w1}, node_2 says {w2}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn healthy_zombie_and_isolated() {
    let s = setup();
    let c = &s.cluster;
    let _peers = start_peers(&s);
    let hba1 = c.primary.data_dir.join("pg_hba.conf");
    let hba2 = c.standby.data_dir.join("pg_hba.conf");

    // Healthy: after the first majority and its wait, production and standby.
    let took = run_until(
        &s,
        Duration::from_secs(40),
        "a healthy cluster",
        |w1, w2| w1 == "production" && w2 == "standby",
    );
    println!("healthy: node_1 production after {took:?} (the first wait)");
    let block1 = std::fs::read_to_string(&hba1).expect("read");
    assert!(
        block1.starts_with("# BEGIN pgsql-state managed block"),
        "{block1}"
    );
    assert!(
        block1.contains("host harw harw 127.0.0.1/32 md5"),
        "{block1}"
    );
    let block2 = std::fs::read_to_string(&hba2).expect("read");
    assert!(
        block2.contains("host harw harw 127.0.0.1/32 reject"),
        "{block2}"
    );
    // The DBA's lines are kept byte for byte, after the block.
    let end = "# END pgsql-state managed block\n";
    let after = &block1[block1.find(end).expect("an END line") + end.len()..];
    assert_eq!(after, s.dba_hba);
    // Real logins: harw reaches the primary, not the standby.
    login(&c.primary, "harw", "harw-pass").expect("harw logs in on the primary");
    let refused = login(&c.standby, "harw", "harw-pass").expect_err("harw refused on the standby");
    assert!(
        refused.contains("pg_hba.conf rejects connection"),
        "{refused}"
    );
    // A second run rewrites nothing: same inode, same mtime.
    use std::os::unix::fs::MetadataExt;
    let before = std::fs::metadata(&hba1).expect("stat");
    let (code, log) = reconcile(&s.nodes[0], &[]);
    assert_eq!(code, 0, "{log}");
    let after_run = std::fs::metadata(&hba1).expect("stat");
    assert_eq!(
        (before.ino(), before.mtime(), before.mtime_nsec()),
        (after_run.ino(), after_run.mtime(), after_run.mtime_nsec()),
        "a run with nothing to change rewrote pg_hba.conf"
    );
    // --dry-run prints the decision line and changes nothing.
    let (code, out) = reconcile(&s.nodes[0], &["--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("node_1: production (timeline 1, 3/3 voters)"),
        "{out}"
    );
    assert!(out.contains("no change"), "{out}");

    // A stranger's claim changes no record: the voter asks its configured
    // peers back, and none of them is that primary.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let node_2_peer = s.nodes[1].bind.to_string();
    let ask = |asker: pgsql_state::peer::proto::WhatYouKnow| {
        let grpc = pgsql_state::config::Grpc {
            tls: Default::default(),
            bind_address: "127.0.0.1".into(),
            bind_port: 1,
            server_host_override: None,
            neighbours: vec![],
            witness: None,
            connection_deadline: Duration::from_secs(3),
        };
        let client = pgsql_state::peer::client::PeerClient::new(&grpc, asker).expect("a client");
        match rt.block_on(client.ask(&node_2_peer)) {
            pgsql_state::peer::client::PeerView::Answered(a) => a,
            other => panic!("node_2's peer: {other:?}"),
        }
    };
    let before = ask(Default::default());
    assert!(before.record_ok, "node_2 has its record");
    assert_eq!(before.claim_timeline, 1);
    let lie = pgsql_state::peer::proto::WhatYouKnow {
        node_name: "node_1".into(),
        ip: c.primary.addr.to_string(),
        role: pgsql_state::peer::proto::Role::Primary as i32,
        timeline: 99,
        system_identifier: before.system_identifier,
        postmaster_start_us: 1,
        ..Default::default()
    };
    ask(lie);
    let log = s.dir.join("peer-node_2.log");
    wait_until(
        Duration::from_secs(10),
        "node_2's peer to check the claim",
        || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("no configured peer confirms it")
        },
    );
    let after = ask(Default::default());
    assert_eq!(
        (after.claim_timeline, after.claim_nodes.clone()),
        (1, vec!["node_1".to_string()]),
        "a stranger's claim raised the record"
    );

    // harepd's HAProxy variant checks Postgres itself (`option pgsql-check
    // user harw`): only the pg_hba.conf edits route it.
    // (The shipped timing, rise 2 at inter 2 s, each check bounded by
    // `timeout check 3s`: a loaded machine can take a while.)
    let h = Haproxy::start(c, "haproxy-pgsql-check.cfg", c.spare_addr(6));
    h.wait_up("prod", &["node_1"], Duration::from_secs(45));
    // The shipped tcp-check HAProxy, with each node's responder on 5431
    // (Accept=yes, `fencing: strict` from the node's config).
    let _responders: Vec<Spawned> = [(&c.primary, &s.nodes[0]), (&c.standby, &s.nodes[1])]
        .iter()
        .map(|(pg, node)| {
            socket_activate(
                SocketAddr::new(pg.addr.into(), 5431),
                Activation::Accept,
                &["-f", node.config.to_str().expect("utf-8")],
                &[],
            )
        })
        .collect();
    let tcp = Haproxy::start(c, "haproxy.cfg", c.spare_addr(5));
    // HAProxy 2.6 starts every server UP until its first check (issue of
    // its own); sampling starts once the checks have spoken.
    tcp.wait_up("prod", &["node_1"], Duration::from_secs(45));

    // The zombie: a writer is connected to node_1, then node_2 is promoted
    // while node_1 runs on.
    let writer = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(
            &format!(
                "host={} port=5432 user=app password=app-pass dbname=postgres",
                c.primary.addr
            ),
            tokio_postgres::NoTls,
        )
        .await
        .expect("app connects before the fence");
        tokio::spawn(conn);
        client
            .execute("INSERT INTO writes VALUES (1)", &[])
            .await
            .expect("a write");
        client
    });
    // HAProxy is sampled every 100 ms from the promotion until node_2 has
    // been alone in both prod pools for 3 s: through node_1's fence, while
    // node_2 sits out its wait, and as it enters prod. That entry is when a
    // wait too short would put two servers UP.
    let sampling = std::sync::atomic::AtomicBool::new(true);
    let promoted = Instant::now();
    let ((max_up, max_up_tcp), samples) = std::thread::scope(|scope| {
        // Stops the sampler when this closure ends, by a panic too (the
        // scope waits for it before the panic goes on).
        struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(false, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let stop_sampling = StopOnDrop(&sampling);
        let sampler = scope.spawn(|| {
            let (mut most, mut most_tcp, mut samples) = (0, 0, 0u32);
            // Bounded in time as well as by the flag.
            while sampling.load(std::sync::atomic::Ordering::Relaxed)
                && promoted.elapsed() < Duration::from_secs(180)
            {
                most = most.max(h.up("prod").len());
                most_tcp = most_tcp.max(tcp.up("prod").len());
                samples += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            ((most, most_tcp), samples)
        });
        // node_1's reconciler has just run, and then stalls for a whole
        // lease (L = 3 s), the worst case the lease covers: its responder
        // says `production` until then. node_2's runs at once. Only the
        // wait keeps node_2 out of prod meanwhile.
        let (code, log) = reconcile(&s.nodes[0], &[]);
        assert_eq!(code, 0, "{log}");
        assert_eq!(c.standby.sql("SELECT pg_promote(true, 30)"), "t");
        run_phased(
            &s,
            Duration::from_secs(30),
            "the zombie fenced",
            |w1, _| w1 == "fenced",
            Some(Duration::from_secs(3)),
        );
        let fenced_at = promoted.elapsed();
        // The word may have turned with the lapsed lease before node_1's
        // reconciler ran again; its run is what edits pg_hba.conf.
        let (code, log) = reconcile(&s.nodes[0], &[]);
        assert_eq!(code, 0, "{log}");
        assert!(log.contains("node_1: fenced"), "{log}");
        let refused =
            login(&c.primary, "harw", "harw-pass").expect_err("harw refused on the zombie");
        assert!(
            refused.contains("pg_hba.conf rejects connection"),
            "{refused}"
        );
        let ended = rt.block_on(writer.execute("INSERT INTO writes VALUES (2)", &[]));
        assert!(
            ended.is_err(),
            "the writer connected before the fence still writes"
        );
        let refused = login(&c.primary, "app", "app-pass").expect_err("app refused on the zombie");
        assert!(
            refused.contains("pg_hba.conf rejects connection"),
            "{refused}"
        );
        println!("zombie: node_1 fenced {fenced_at:?} after the promotion");
        let production_at = node_2_in_production_within_p3(&s, promoted, "zombie");
        assert!(
            production_at > Duration::from_secs(6),
            "the new primary did not wait out the lease: {production_at:?}"
        );
        login(&c.standby, "harw", "harw-pass").expect("harw logs in on the new primary");
        // The pgsql-check pool follows the pg_hba edits alone. What it
        // cannot promise: a zombie whose reconciler does not run keeps
        // allowing harw, and the check passes on any authentication
        // request. Both pools must then hold node_2 alone, and keep it.
        let mut stable_since: Option<Instant> = None;
        wait_until(
            Duration::from_secs(30),
            "node_2 alone in both prod pools for 3 s",
            || {
                // The reconcilers keep running, as their timers would.
                for node in &s.nodes[..2] {
                    let (code, log) = reconcile(node, &[]);
                    assert!(code == 0, "{} reconcile failed: {log}", node.name);
                }
                let alone = h.up("prod") == ["node_2"] && tcp.up("prod") == ["node_2"];
                match (alone, stable_since) {
                    (false, _) => stable_since = None,
                    (true, None) => stable_since = Some(Instant::now()),
                    (true, Some(_)) => {}
                }
                stable_since.is_some_and(|t| t.elapsed() >= Duration::from_secs(3))
            },
        );
        drop(stop_sampling);
        sampler.join().expect("the HAProxy sampler")
    });
    println!(
        "zombie run: at most {max_up_tcp} server(s) UP in the tcp-check prod pool, \
         {max_up} in the pgsql-check one, over {samples} samples 100 ms apart"
    );
    assert!(samples > 50, "too few samples to show anything: {samples}");
    assert!(max_up_tcp <= 1, "two servers UP in the tcp-check prod pool");
    assert!(max_up <= 1, "two servers UP in the pgsql-check prod pool");
    // A write through HAProxy lands on the new primary, and is not on the zombie.
    let through = |sql: &str| {
        let out = Command::new(pg_bin("psql"))
            .args(["-X", "-A", "-t", "-h"])
            .arg(tcp.prod.ip().to_string())
            .args([
                "-p",
                &tcp.prod.port().to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        through("SELECT host(inet_server_addr())"),
        c.standby.addr.to_string()
    );
    through("INSERT INTO writes VALUES (42)");
    assert_eq!(
        c.standby.sql("SELECT count(*) FROM writes WHERE n = 42"),
        "1"
    );
    assert_eq!(
        c.primary.sql("SELECT count(*) FROM writes WHERE n = 42"),
        "0"
    );

    // Isolated: node_2's peers (node_1's and the witness's) stop.
    drop(_peers);
    let node_2_peer = start_peer(
        &s.nodes[1].config,
        s.nodes[1].bind,
        &s.dir.join("peer-node_2-alone.log"),
    );
    let start = Instant::now();
    let took = run_until(
        &s,
        Duration::from_secs(20),
        "the isolated primary fenced",
        |_, w2| w2 == "fenced",
    );
    println!("isolated: node_2 fenced {took:?} after its peers stopped");
    let (_, out) = reconcile(&s.nodes[1], &["--dry-run"]);
    assert!(out.contains("isolated: 1/3 voters reached"), "{out}");
    let _ = start;
    drop(node_2_peer);
}

#[test]
fn a_config_error_exits_78_and_leaves_pg_hba_alone() {
    let s = setup();
    let hba = s.cluster.primary.data_dir.join("pg_hba.conf");
    let before = std::fs::read(&hba).expect("read");
    let bad = s.dir.join("bad.yml");
    let text =
        std::fs::read_to_string(&s.nodes[0].config).expect("read the config") + "  watchDogg: 1\n";
    std::fs::write(&bad, text).expect("write");
    let (code, out, err) = pgsql_state(&["-f", bad.to_str().expect("utf-8"), "reconcile"]);
    assert_eq!(code, 78, "{out}{err}");
    assert!(err.contains("harepd.watchDogg: unknown key"), "{err}");
    assert_eq!(std::fs::read(&hba).expect("read"), before);
    // Issue 25, item 4: a role name that would add pg_hba rules (a YAML
    // "\n" in it), and fenceUsers naming the reconciler's own role or
    // `all` (a fenced node could then never be reached to lift its fence):
    // refused with key and line, pg_hba.conf untouched.
    let config = std::fs::read_to_string(&s.nodes[0].config).expect("read the config");
    for (from, to, says) in [
        (
            "fenceUsers: [app]",
            "fenceUsers: [\"app\\nhost all all 0.0.0.0/0 trust\"]",
            "harepd.fenceUsers.0: \"app\\nhost all all 0.0.0.0/0 trust\" has '\\n'",
        ),
        (
            "fenceUsers: [app]",
            "fenceUsers: [app, postgres]",
            "harepd.fenceUsers.1: \"postgres\" is the role postgres.conninfo logs in as",
        ),
        (
            "fenceUsers: [app]",
            "fenceUsers: [all]",
            "harepd.fenceUsers.0: `all` would shut every role out",
        ),
    ] {
        assert!(config.contains(from), "{config}");
        let text = config.replace(from, to);
        let line = text
            .lines()
            .position(|l| l.contains("fenceUsers"))
            .expect("the fenceUsers line")
            + 1;
        std::fs::write(&bad, &text).expect("write");
        let (code, out, err) = pgsql_state(&["-f", bad.to_str().expect("utf-8"), "reconcile"]);
        assert_eq!(code, 78, "{to}: {out}{err}");
        assert!(err.contains(&format!(":{line}: {says}")), "{to}: {err}");
        assert_eq!(std::fs::read(&hba).expect("read"), before);
    }
}

#[test]
fn a_run_killed_at_any_moment_leaves_pg_hba_old_or_new_and_no_temp_files() {
    let s = setup();
    let node = &s.nodes[0];
    let hba = s.cluster.primary.data_dir.join("pg_hba.conf");
    // Two configs whose blocks differ (the HAProxy address), so every run
    // rewrites the file. No peers run: the runs are short, and a kill
    // lands anywhere in them.
    let text = std::fs::read_to_string(&node.config).expect("read the config");
    let other = s.dir.join("node_1-other-haproxy.yml");
    std::fs::write(
        &other,
        text.replace("      - \"127.0.0.1\"\n", "      - \"127.0.0.9\"\n"),
    )
    .expect("write");
    let configs = [node.config.clone(), other];
    let full_run = |config: &Path| {
        let (code, out, err) = pgsql_state(&["-f", config.to_str().expect("utf-8"), "reconcile"]);
        assert_eq!(code, 0, "{out}{err}");
        std::fs::read_to_string(&hba).expect("read pg_hba.conf")
    };
    let timed = Instant::now();
    let texts = [full_run(&configs[0]), full_run(&configs[1])];
    assert_ne!(texts[0], texts[1]);
    // Kills are spread over a whole run, as long as these two took each.
    let span = (timed.elapsed() / 2).as_micros().max(1_000) as u64;
    let mut seed: u64 = 0x5eed;
    let (mut killed_in_run, mut killed_mid_write) = (0, 0);
    let temp_files = || {
        [s.cluster.primary.data_dir.clone(), node.runtime.clone()]
            .iter()
            .flat_map(|dir| std::fs::read_dir(dir).expect("list").flatten())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect::<Vec<_>>()
    };
    // Until five kills have landed mid-write (a temp file and its rename
    // are a few milliseconds of a run), bounded in count and time.
    let started = Instant::now();
    let mut runs = 0;
    while runs < 600 && killed_mid_write < 5 && started.elapsed() < Duration::from_secs(90) {
        let i = runs;
        runs += 1;
        // xorshift: a delay within one run's span, different each run,
        // the same each test.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(seed % span);
        let mut child = Command::new(binary())
            .args(["-f", configs[i % 2].to_str().expect("utf-8"), "reconcile"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start reconcile");
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().expect("reap");
        if !status.success() {
            killed_in_run += 1;
        }
        // A temp file left behind: the kill landed between a temp file's
        // creation and its rename (pg_hba.conf, its backup, the verdict).
        if !temp_files().is_empty() {
            killed_mid_write += 1;
        }
        let now = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
        assert!(
            now == texts[0] || now == texts[1],
            "run {i}, killed after {delay:?}: pg_hba.conf is neither the old text nor the new:\n{now}"
        );
    }
    // One more whole run clears whatever killed runs left behind.
    assert_eq!(full_run(&configs[0]), texts[0]);
    assert_eq!(temp_files(), Vec::<String>::new(), "temp files left");
    assert!(
        !node.runtime.join("hba-reload-pending").exists(),
        "a reload is still owed after a whole run"
    );
    println!(
        "{killed_in_run} of {runs} runs were killed before they finished (runs take {} ms), \
         {killed_mid_write} of them between a temp file and its rename",
        span / 1000
    );
    assert!(killed_in_run > 10, "the kills should land inside runs");
    assert!(
        killed_mid_write > 0,
        "no kill landed mid-write: the test shows nothing about torn files"
    );
}

#[test]
fn a_non_transitive_partition_never_gives_two_production() {
    // A cluster of its own: node_1 and node_2 reach each other's peer only
    // through proxies that the test cuts; both reach the witness.
    let c = Cluster::start();
    let dir = runtime_dir("partition");
    let [p1, p2, w] = peer_addrs(&c, 10300);
    let to_2 = Proxy::start(SocketAddr::new(c.spare_addr(7).into(), 10300), p2);
    let to_1 = Proxy::start(SocketAddr::new(c.spare_addr(8).into(), 10300), p1);
    let s = own_cluster(c, dir, [p1, p2, w], to_2.listen, to_1.listen);
    let c = &s.cluster;
    let _peers = start_peers(&s);
    until_healthy(&s);
    // A-B down, A-W and B-W up; then the HA tool promotes node_2.
    to_2.cut();
    to_1.cut();
    let promoted = Instant::now();
    assert_eq!(c.standby.sql("SELECT pg_promote(true, 30)"), "t");
    run_until(
        &s,
        Duration::from_secs(30),
        "node_1 fenced through the witness",
        |w1, _| w1 == "fenced",
    );
    let fenced_at = promoted.elapsed();
    println!("non-transitive partition: node_1 fenced {fenced_at:?} after the promotion");
    node_2_in_production_within_p3(&s, promoted, "non-transitive partition");
    let (_, out) = reconcile(&s.nodes[0], &["--dry-run"]);
    assert!(out.contains("node_2 holds timeline 2"), "{out}");
}

#[test]
fn a_block_postgres_rejects_is_rolled_back_and_nothing_reloaded() {
    let s = setup();
    let node = &s.nodes[0];
    let hba = s.cluster.primary.data_dir.join("pg_hba.conf");
    // `cert` is a valid method name, but Postgres refuses it on a `host`
    // line: only Postgres's own parse of the file can tell.
    let text = std::fs::read_to_string(&node.config)
        .expect("read the config")
        .replace(
            "  authModes:\n    allow: md5\n    deny: reject\n",
            "  authModes:\n    allow: cert\n    deny: cert\n",
        );
    assert!(text.contains("allow: cert"), "{text}");
    let bad = s.dir.join("node_1-cert.yml");
    std::fs::write(&bad, text).expect("write");
    let before = std::fs::read_to_string(&hba).expect("read");
    let (code, out, err) = pgsql_state(&["-f", bad.to_str().expect("utf-8"), "reconcile"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("Postgres rejects the new pg_hba.conf"),
        "{err}"
    );
    assert!(err.contains("the old one was restored"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&hba).expect("read"),
        before,
        "pg_hba.conf restored"
    );
    let backup = s
        .cluster
        .primary
        .data_dir
        .join("pg_hba.conf.pgsql-state-backup");
    assert_eq!(std::fs::read_to_string(backup).expect("the backup"), before);
    // Postgres still answers with the old rules.
    assert_eq!(s.cluster.primary.sql("SELECT 1"), "1");
}

/// A file whose block cannot be found unambiguously, or one with no rule
/// of its own (empty, or read while an editor had truncated it to write it
/// again), is never rewritten: the block alone would take every rule the
/// operator had. The verdict is still written, so the responder obeys it.
#[test]
fn a_damaged_or_empty_pg_hba_is_left_alone_and_the_verdict_is_still_written() {
    let s = setup();
    let node = &s.nodes[0];
    let hba = s.cluster.primary.data_dir.join("pg_hba.conf");
    let good = std::fs::read_to_string(&hba).expect("read");
    let cases = [
        (
            // A BEGIN with no END: which lines are ours is no longer clear.
            format!("{good}# BEGIN pgsql-state managed block\nhost all all 10.9.9.9/32 trust\n"),
            [
                "has a damaged managed block (line ",
                "has no `# END pgsql-state managed block` after it); fix it by hand",
            ],
        ),
        (
            String::new(),
            [
                "pg_hba.conf: it has no rule outside the managed block",
                "left as it is",
            ],
        ),
        (
            "# TYPE  DATABASE  USER  ADDRESS  METHOD\n\n".to_string(),
            [
                "pg_hba.conf: it has no rule outside the managed block",
                "left as it is",
            ],
        ),
    ];
    for (text, says) in cases {
        std::fs::write(&hba, &text).expect("write");
        let verdict = node.runtime.join("verdict");
        let _ = std::fs::remove_file(&verdict);
        let (code, log) = reconcile(node, &[]);
        let after = std::fs::read_to_string(&hba).expect("read");
        std::fs::write(&hba, &good).expect("put the good file back");
        assert_eq!(code, 1, "{text:?}: {log}");
        for said in says {
            assert!(log.contains(said), "{text:?}: wanted {said:?} in:\n{log}");
        }
        assert_eq!(after, text, "such a file is never rewritten");
        let written = std::fs::read_to_string(&verdict).expect("the verdict was still written");
        assert!(written.contains("verdict="), "{written}");
    }
    // Postgres kept the rules it had loaded: nothing was reloaded.
    assert_eq!(s.cluster.primary.sql("SELECT 1"), "1");
}

/// A planned switchover: node_1's Postgres is stopped first (its peer
/// reports it refused, not timed out), then node_2 is promoted. node_2's
/// wait is HAProxy's term H alone (3.5 s with this file's timing), not W
/// (6.6 s): the model's P4.
#[test]
fn a_planned_switchover_waits_haproxy_s_term_only() {
    let (s, _peers) = healthy_own_cluster("switchover", 10400);
    let c = &s.cluster;
    c.primary.stop("fast");
    run_until(&s, Duration::from_secs(20), "node_1 down", |w1, _| {
        w1.starts_with("down")
    });
    let promoted = Instant::now();
    assert_eq!(c.standby.sql("SELECT pg_promote(true, 30)"), "t");
    let verdict_2 = s.nodes[1].runtime.join("verdict");
    let mut first_wait: Option<u64> = None;
    run_until(
        &s,
        Duration::from_secs(30),
        "node_2 in production",
        |_, w2| {
            // The run that started the wait: its verdict's wait_until less
            // its t0 (boottime_ms) is the wait plus the gathering time.
            let text = std::fs::read_to_string(&verdict_2).unwrap_or_default();
            let field = |k: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                    .map(str::to_string)
            };
            if first_wait.is_none() && field("timeline").as_deref() == Some("2") {
                if let (Some(until), Some(t0)) = (field("wait_until_ms"), field("boottime_ms")) {
                    let (until, t0): (u64, u64) =
                        (until.parse().expect("ms"), t0.parse().expect("ms"));
                    first_wait = Some(until - t0);
                }
            }
            w2 == "production"
        },
    );
    let took = promoted.elapsed();
    let wait = first_wait.expect("a verdict with the wait on timeline 2");
    println!(
        "planned switchover: node_2 production {took:?} after the promotion; its wait {wait} ms"
    );
    // HAPROXY_CHECK's timing: H = 3.5 s; W = L(1+ρ)/(1−ρ) + H ≈ 6.6 s.
    let check = check_timing();
    let h = pgsql_state::fencing::timing::haproxy_term(&check).as_millis() as u64;
    let full = pgsql_state::fencing::timing::wait(
        pgsql_state::fencing::timing::lease(Duration::from_secs(1), Duration::from_secs(1)),
        &check,
    )
    .as_millis() as u64;
    // The gathering is bounded by the deadline (1 s).
    assert!(
        wait >= h && wait < h + 1_000 && wait < full,
        "the switchover's wait is {wait} ms, not H ({h} ms) plus the gathering (W is {full} ms)"
    );
    let (_, out) = reconcile(&s.nodes[1], &["--dry-run"]);
    assert!(out.contains("node_2: production"), "{out}");
}

/// A line of /etc/hosts the test adds, removed when dropped (also when the
/// test fails).
struct HostsLine {
    line: String,
}

impl HostsLine {
    fn add(ip: std::net::Ipv4Addr, name: &str) -> HostsLine {
        let line = format!("{ip} {name}\n");
        let text = std::fs::read_to_string("/etc/hosts").expect("read /etc/hosts");
        std::fs::write("/etc/hosts", format!("{text}{line}")).expect("write /etc/hosts");
        HostsLine { line }
    }
}

impl Drop for HostsLine {
    fn drop(&mut self) {
        if let Ok(text) = std::fs::read_to_string("/etc/hosts") {
            let _ = std::fs::write("/etc/hosts", text.replace(&self.line, ""));
        }
    }
}

/// Points node_2's `primary_conninfo` at `host` (with an
/// `application_name` that is not its node name, so only the spelling of
/// the host can tie it to node_1), and waits until it streams from there.
fn stream_from(c: &Cluster, host: &str) {
    c.standby.sql(&format!(
        "ALTER SYSTEM SET primary_conninfo = 'host={host} port=5432 user=postgres application_name=walreceiver'"
    ));
    c.standby.sql("SELECT pg_reload_conf()");
    wait_until(
        Duration::from_secs(30),
        &format!("node_2 streaming from {host}"),
        || {
            c.standby
                .sql("SELECT status || '|' || sender_host FROM pg_stat_wal_receiver")
                == format!("streaming|{host}")
        },
    );
}

/// Review item 18.1: a standby whose `primary_conninfo` names the primary
/// by host name, or by its address in an IPv6 spelling, streams from the
/// legitimate primary and is a `standby`, not `lagging` forever.
#[test]
fn a_standby_naming_its_primary_by_host_name_or_ipv6_spelling_is_a_standby() {
    let (s, _peers) = healthy_own_cluster("upstream-names", 10500);
    let c = &s.cluster;
    let name = format!("pgsql-state-test-node-1-{}", std::process::id());
    let _hosts = HostsLine::add(c.primary.addr, &name);
    let mapped = format!("::ffff:{}", c.primary.addr);
    for host in [name.as_str(), mapped.as_str()] {
        stream_from(c, host);
        run_until(
            &s,
            Duration::from_secs(20),
            &format!("node_2 a standby streaming from {host}"),
            |w1, w2| w1 == "production" && w2 == "standby",
        );
        let (code, out) = reconcile(&s.nodes[1], &["--dry-run"]);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains("node_2: standby (timeline 1, 3/3 voters; streams from "),
            "{out}"
        );
        let verdict =
            std::fs::read_to_string(s.nodes[1].runtime.join("verdict")).expect("node_2's verdict");
        assert!(
            verdict.contains(&format!("streams from {host}")),
            "{verdict}"
        );
    }
}

/// Review item 18.2: a run killed between writing pg_hba.conf and reloading
/// Postgres leaves the new text on disk and the old rules loaded. The next
/// run renders the same text; it must still see that Postgres has not
/// loaded it, and reload.
#[test]
fn a_pg_hba_written_but_never_loaded_is_reloaded_by_the_next_run() {
    let s = setup();
    let node = &s.nodes[0];
    let c = &s.cluster;
    let hba = c.primary.data_dir.join("pg_hba.conf");
    // No peers run: node_1 is isolated, and its run fences it.
    let (code, log) = reconcile(node, &[]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("node_1: fenced"), "{log}");
    let fenced = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
    let rule = "host harw harw 127.0.0.1/32 reject\n";
    assert!(fenced.contains(rule), "{fenced}");
    login(&c.primary, "harw", "harw-pass").expect_err("harw refused once fenced");
    // The allowing text, loaded: what the node ran with before the fence.
    let allowing = fenced.replace(rule, "host harw harw 127.0.0.1/32 md5\n");
    std::fs::write(&hba, &allowing).expect("write the allowing text");
    c.primary.sql("SELECT pg_reload_conf()");
    wait_until(Duration::from_secs(10), "harw let in again", || {
        login(&c.primary, "harw", "harw-pass").is_ok()
    });
    // A killed run's leftovers: the fenced text written, never loaded.
    std::fs::write(&hba, &fenced).expect("write the fenced text");
    login(&c.primary, "harw", "harw-pass").expect("the fenced text is not loaded yet");
    let (code, log) = reconcile(node, &[]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        std::fs::read_to_string(&hba).expect("read"),
        fenced,
        "the text was already right"
    );
    assert!(
        log.contains("newer than what Postgres had loaded") && log.contains("reloaded"),
        "{log}"
    );
    wait_until(Duration::from_secs(10), "harw refused again", || {
        login(&c.primary, "harw", "harw-pass").is_err()
    });
    let refused = login(&c.primary, "harw", "harw-pass").expect_err("refused");
    assert!(
        refused.contains("pg_hba.conf rejects connection"),
        "{refused}"
    );
    // Loaded now: the next run reloads nothing.
    let (code, log) = reconcile(node, &[]);
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("reloaded"), "{log}");
    // A run killed between its write and its reload after the clock was
    // stepped back: the file's times say it was loaded, only the mark the
    // run left says otherwise. The next run reloads and takes the mark.
    let mark = node.runtime.join("hba-reload-pending");
    std::fs::write(&mark, hba.as_os_str().as_encoded_bytes()).expect("leave the mark");
    let (code, log) = reconcile(node, &[]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("reloaded"), "{log}");
    assert!(!mark.exists(), "the mark stays after the reload");
    let (code, log) = reconcile(node, &[]);
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("reloaded"), "{log}");
}

/// What node_1's peer at `addr` holds in its claim record, asked from
/// 127.0.0.1.
fn record_at(rt: &tokio::runtime::Runtime, addr: SocketAddr) -> (u32, Vec<String>) {
    let client = stranger_client(std::net::Ipv4Addr::LOCALHOST, Default::default());
    match rt.block_on(client.ask(&addr.to_string())) {
        pgsql_state::peer::client::PeerView::Answered(a) => (a.claim_timeline, a.claim_nodes),
        other => panic!("{addr}: {other:?}"),
    }
}

/// A peer client that asks from `source` and says `asker`.
fn stranger_client(
    source: std::net::Ipv4Addr,
    asker: pgsql_state::peer::proto::WhatYouKnow,
) -> pgsql_state::peer::client::PeerClient {
    let grpc = pgsql_state::config::Grpc {
        tls: Default::default(),
        bind_address: source.to_string(),
        bind_port: 1,
        server_host_override: None,
        neighbours: vec![],
        witness: None,
        connection_deadline: Duration::from_secs(3),
    };
    pgsql_state::peer::client::PeerClient::new(&grpc, asker).expect("a client")
}

/// Review item 18.5: strangers flooding a voter with made-up claims must
/// not keep it from verifying the real new primary's claim. node_1's
/// Postgres is stopped and the witness hangs (each verification then lasts
/// half the deadline), so node_2 needs node_1's record to hold its claim.
/// Sixteen stranger addresses keep claiming while node_2 is promoted.
#[test]
fn a_flood_of_made_up_claims_does_not_stop_the_real_one_being_verified() {
    let c = Cluster::start();
    let dir = runtime_dir("claim-flood");
    let [p1, p2, w] = peer_addrs(&c, 10600);
    let s = own_cluster(c, dir, [p1, p2, w], p2, p1);
    let c = &s.cluster;
    // The witness hangs: it accepts and never answers.
    let hung = Proxy::start(w, SocketAddr::new(c.spare_addr(250).into(), 9));
    hung.cut();
    let _peers: Vec<Spawned> = s.nodes[..2]
        .iter()
        .map(|n| {
            start_peer(
                &n.config,
                n.bind,
                &s.dir.join(format!("peer-{}.log", n.name)),
            )
        })
        .collect();
    until_healthy(&s);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let sysid: u64 = c
        .primary
        .sql("SELECT system_identifier FROM pg_control_system()")
        .parse()
        .expect("a system identifier");
    c.primary.stop("fast");

    // The flood: 16 sources, each claiming a made-up primary on a high
    // timeline of our cluster, as fast as node_1's peer answers.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..16u8)
        .map(|i| {
            let client = stranger_client(
                c.spare_addr(100 + i),
                pgsql_state::peer::proto::WhatYouKnow {
                    node_name: format!("stranger_{i}"),
                    ip: c.spare_addr(100 + i).to_string(),
                    role: pgsql_state::peer::proto::Role::Primary as i32,
                    timeline: 50 + u32::from(i),
                    system_identifier: sysid,
                    postmaster_start_us: 1,
                    ..Default::default()
                },
            );
            client
        })
        .collect();
    let flood = {
        let (stop, asks) = (stop.clone(), asks.clone());
        let target = p1.to_string();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the flood's runtime");
            rt.block_on(async move {
                let mut set = tokio::task::JoinSet::new();
                for client in clients {
                    let (stop, asks, target) = (stop.clone(), asks.clone(), target.clone());
                    set.spawn(async move {
                        let started = Instant::now();
                        // Bounded in count and time.
                        for _ in 0..100_000 {
                            if stop.load(std::sync::atomic::Ordering::Relaxed)
                                || started.elapsed() > Duration::from_secs(60)
                            {
                                break;
                            }
                            client.ask(&target).await;
                            asks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    });
                }
                while set.join_next().await.is_some() {}
            });
        })
    };
    let log_1 = s.dir.join("peer-node_1.log");
    wait_until(Duration::from_secs(20), "strangers' claims checked", || {
        std::fs::read_to_string(&log_1)
            .unwrap_or_default()
            .contains("\"stranger_")
    });

    let promoted = Instant::now();
    assert_eq!(c.standby.sql("SELECT pg_promote(true, 30)"), "t");
    // node_2's reconciler, once a second, as its timer would run it.
    let mut runs = 0;
    let verified_after = loop {
        let (code, log) = reconcile(&s.nodes[1], &[]);
        assert_eq!(code, 0, "{log}");
        runs += 1;
        if record_at(&rt, p1) == (2, vec!["node_2".to_string()]) {
            break promoted.elapsed();
        }
        assert!(
            promoted.elapsed() < Duration::from_secs(15),
            "node_1's record never took node_2's claim during the flood ({runs} runs, {} stranger asks)",
            asks.load(std::sync::atomic::Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flood.join().expect("the flood's thread");
    let strangers = asks.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "claim flood: node_2's claim verified at node_1 {verified_after:?} after the promotion \
         ({runs} reconcile runs), beside {strangers} stranger asks"
    );
    assert!(
        strangers > 50,
        "the flood was too thin to matter: {strangers} asks"
    );
    // No stranger's claim made it into the record.
    assert_eq!(record_at(&rt, p1), (2, vec!["node_2".to_string()]));
}

/// Sends `signal` to a spawned peer (SIGSTOP: its port still completes
/// handshakes in the kernel and then says nothing, as a hung process).
fn signal_peer(peer: &Spawned, signal: i32) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(peer.child.id() as i32, signal) };
}

/// Issue 24, item 1, as it was reproduced: each data node lists itself
/// among its neighbours twice, once by its own address (which the config
/// finds) and once through a forwarder (which only the answer's node name
/// reveals). Cut off from every other voter, their peers stopped with
/// SIGSTOP, node_1 counted itself three times, 3 of "5" voters, and stayed
/// `production`. Each voter now counts once: node_1 is fenced, 1 of 4 (the
/// forwarder's address is still a configured voter), and node_2 in the
/// same place is refused promotion.
#[test]
fn a_node_listed_twice_in_its_own_neighbours_is_one_voter() {
    let c = Cluster::start();
    let dir = runtime_dir("voters-once");
    let port = 10700;
    let [p1, p2, w] = peer_addrs(&c, port);
    let again_1 = Proxy::start(SocketAddr::new(c.spare_addr(9).into(), port), p1);
    let again_2 = Proxy::start(SocketAddr::new(c.spare_addr(10).into(), port), p2);
    let nodes = [
        node_yaml_with(&c, "node_1", p1, &[p1, p2, again_1.listen], w, &dir),
        node_yaml_with(&c, "node_2", p2, &[p1, p2, again_2.listen], w, &dir),
        node_yaml_with(&c, "witness", w, &[p1, p2], w, &dir),
    ];
    let s = Setup {
        cluster: c,
        nodes,
        dir,
        dba_hba: String::new(),
    };
    let c = &s.cluster;
    let peers = start_peers(&s);
    until_healthy(&s);

    // node_1 cut off from node_2 and the witness: their peers hang.
    signal_peer(&peers[1], libc::SIGSTOP);
    signal_peer(&peers[2], libc::SIGSTOP);
    let (code, log) = reconcile(&s.nodes[0], &[]);
    assert_eq!(code, 0, "{log}");
    // The forwarder is an address of its own as far as the config can
    // tell, so it stays in the count of configured voters (one too many
    // only fences); its answer, which names node_1, is no vote.
    assert!(log.contains("isolated: 1/4 voters reached"), "{log}");
    assert!(
        log.contains(&format!(
            "the peer at {} answers as this node (node_1)",
            again_1.listen
        )),
        "{log}"
    );
    assert_eq!(word(&c.primary.conninfo(), &s.nodes[0]), "fenced");
    signal_peer(&peers[1], libc::SIGCONT);
    signal_peer(&peers[2], libc::SIGCONT);

    // node_2 in the same place (node_1's peer and the witness's hang) may
    // not be promoted: it reaches only itself.
    signal_peer(&peers[0], libc::SIGSTOP);
    signal_peer(&peers[2], libc::SIGSTOP);
    let config_2 = s.nodes[1].config.to_str().expect("utf-8");
    let (code, out, err) = pgsql_state(&["-f", config_2, "promote-check"]);
    signal_peer(&peers[0], libc::SIGCONT);
    signal_peer(&peers[2], libc::SIGCONT);
    assert_ne!(code, 0, "promote-check said yes: {out}{err}");
    assert!(
        format!("{out}{err}").contains("1/4 voters reached, not a majority"),
        "{out}{err}"
    );

    // check-config loads the file and names the entry, its key and line.
    let config_1 = s.nodes[0].config.to_str().expect("utf-8");
    let (code, out, err) = pgsql_state(&["-f", config_1, "check-config"]);
    assert_eq!(code, 0, "{out}{err}");
    let text = std::fs::read_to_string(&s.nodes[0].config).expect("read the config");
    let line = text
        .lines()
        .position(|l| l.contains(&format!("\"{p1}\"")))
        .expect("node_1's own entry")
        + 1;
    assert!(
        out.contains(&format!(
            ":{line}: harepd.gRPC.neighbours.0: {p1} is this node's own peer"
        )),
        "{out}{err}"
    );
}

/// Issue 24, item 4: a voter whose record was re-initialised (`claims
/// init`, a replaced disk) casts no vote until it has read more than half
/// of the other voters' records. node_1 never learns of node_2's promotion
/// (its peer hangs, its reconciler does not run): a zombie on timeline 1.
/// node_2 serves on timeline 2 with the witness's vote. Then node_2 is
/// lost and the witness's record re-initialised. With an empty record
/// that voted at once, the witness verified node_1's claim and handed it
/// the majority: two primaries, and node_2's writes lost. Catching up, it
/// abstains until node_2's peer is back, then rises to timeline 2.
#[test]
fn a_re_initialised_voter_gives_a_zombie_no_vote_before_it_caught_up() {
    let (s, peers) = healthy_own_cluster("catch-up", 10800);
    let c = &s.cluster;
    signal_peer(&peers[0], libc::SIGSTOP);
    assert_eq!(c.standby.sql("SELECT pg_promote(true, 30)"), "t");
    let started = Instant::now();
    loop {
        let (code, log) = reconcile(&s.nodes[1], &[]);
        assert_eq!(code, 0, "{log}");
        if word(&c.standby.conninfo(), &s.nodes[1]) == "production" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "node_2 not in production: {log}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // node_2 lost (its peer hangs, nothing runs its reconciler), the
    // witness's record re-initialised, node_1's peer back.
    signal_peer(&peers[1], libc::SIGSTOP);
    let witness = s.nodes[2].config.to_str().expect("utf-8");
    let (code, out, err) = pgsql_state(&["-f", witness, "claims", "init"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("catching up"), "{out}");
    signal_peer(&peers[0], libc::SIGCONT);
    // node_1 runs as its timer would, for longer than any wait: never
    // production. (node_2's own lease lapses meanwhile.)
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(15) {
        let (code, log) = reconcile(&s.nodes[0], &[]);
        assert_eq!(code, 0, "{log}");
        let w1 = word(&c.primary.conninfo(), &s.nodes[0]);
        assert_ne!(
            w1, "production",
            "the zombie got the re-initialised witness's vote: {log}"
        );
        last = log;
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(last.contains("isolated: 1/3 voters reached"), "{last}");
    // node_2's peer back: the witness reads both records and rises to
    // timeline 2 (its peer tries every 5 s), and node_1 learns it is old.
    signal_peer(&peers[1], libc::SIGCONT);
    wait_until(Duration::from_secs(20), "the witness caught up", || {
        let (_, out, _) = pgsql_state(&["-f", witness, "claims", "show"]);
        out.contains("timeline 2 claimed by node_2") && !out.contains("catching up")
    });
    let (code, log) = reconcile(&s.nodes[0], &[]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("node_2 holds timeline 2"), "{log}");
}

/// `promote-check` on `node`: whether it said yes, and what it printed.
fn promote_check(node: &NodeFiles) -> (bool, String) {
    let config = node.config.to_str().expect("utf-8");
    let (code, out, err) = pgsql_state(&["-f", config, "promote-check"]);
    (code == 0, format!("{out}{err}"))
}

/// Issue 25, item 2: a drained standby (`maintenance on`) must not be
/// promoted: it would answer `maintenance`, and `prod` would have nobody.
/// node_1's machine is lost (Postgres stopped, its peer hung); node_2's
/// `promote-check` says yes, then no while it is drained, then yes again.
#[test]
fn promote_check_says_no_for_a_drained_standby() {
    let (s, peers) = healthy_own_cluster("drained", 10900);
    let c = &s.cluster;
    signal_peer(&peers[0], libc::SIGSTOP);
    c.primary.stop("immediate");
    let node_2 = &s.nodes[1];
    let mut said = String::new();
    wait_until(Duration::from_secs(30), "promote-check says yes", || {
        let (yes, out) = promote_check(node_2);
        said = out;
        yes
    });
    let runtime = node_2.runtime.to_str().expect("utf-8");
    let (code, out, err) = pgsql_state(&["maintenance", "on", "--runtime-dir", runtime]);
    assert_eq!(code, 0, "{out}{err}");
    let (yes, out) = promote_check(node_2);
    assert!(!yes, "a drained standby may be promoted: {out}");
    assert!(out.contains("this node is in maintenance"), "{out}");
    let (code, out, err) = pgsql_state(&["maintenance", "off", "--runtime-dir", runtime]);
    assert_eq!(code, 0, "{out}{err}");
    let (yes, out) = promote_check(node_2);
    assert!(yes, "{out} (before maintenance: {said})");
    signal_peer(&peers[0], libc::SIGCONT);
}

/// Issue 25, item 5: root runs `claims init` in a state directory that the
/// service user owns. A link that user planted where the lock goes once
/// made root create a root-owned file where it pointed; now nothing is
/// followed, and root becomes the directory's owner before it writes, so
/// the record is the service's to raise.
#[test]
fn claims_init_as_root_follows_no_link_and_writes_as_the_directory_s_owner() {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "this test checks what root does: run the suite as root, as CI does"
    );
    let dir = runtime_dir("claims-as-root");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("create the state dir");
    common::cluster::give_to_postgres(&state);
    let planted_target = dir.join("planted-by-postgres");
    std::os::unix::fs::symlink(&planted_target, state.join("claims.lock")).expect("plant");
    let state_arg = state.to_str().expect("utf-8");
    let (code, out, err) =
        pgsql_state(&["claims", "init", "--new-cluster", "--state-dir", state_arg]);
    assert_ne!(code, 0, "init went through a planted link: {out}{err}");
    assert!(!planted_target.exists(), "root created the link's target");
    std::fs::remove_file(state.join("claims.lock")).expect("remove the plant");
    let (code, out, err) =
        pgsql_state(&["claims", "init", "--new-cluster", "--state-dir", state_arg]);
    assert_eq!(code, 0, "{out}{err}");
    let owner = std::fs::metadata(&state).expect("stat").uid();
    assert_ne!(owner, 0);
    for file in ["claims", "claims.lock"] {
        let uid = std::fs::metadata(state.join(file)).expect("stat").uid();
        assert_eq!(
            uid, owner,
            "{file} belongs to uid {uid}, not the directory's owner"
        );
    }
}
