//! The shipped `haproxy/haproxy.cfg` in a real HAProxy, checking real
//! responders on each node's port 5431: writes reach the primary, reads the
//! standby; maintenance drains; after a failover HAProxy follows, and at no
//! sampled instant are two servers UP in `prod`.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// `SELECT inet_server_addr()` through HAProxy at `addr`.
fn server_behind(addr: SocketAddr, sql: &str) -> String {
    let out = run(Command::new(pg_bin("psql"))
        .args([
            "-X",
            "-At",
            "-h",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
        ])
        .args(["-U", "postgres", "-d", "postgres", "-c", sql]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A socket-activated responder (Accept=yes) on port 5431 of each node,
/// with `args` and the node's conninfo.
fn responders(c: &Cluster, args: impl Fn(&Node) -> Vec<String>) -> Vec<Spawned> {
    [&c.primary, &c.standby]
        .iter()
        .map(|node| {
            let mut argv = args(node);
            argv.extend(["--conninfo".to_string(), node.conninfo()]);
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            socket_activate(
                SocketAddr::new(node.addr.into(), 5431),
                Activation::Accept,
                &[],
                &argv,
            )
        })
        .collect()
}

/// Waits for HAProxy's checks, then proves writes reach the primary and
/// reads the standby.
fn assert_routes_to_primary_and_standby(h: &Haproxy, c: &Cluster) {
    let settle = Duration::from_secs(15);
    h.wait_up("prod", &["node_1"], settle);
    h.wait_up("stdby", &["node_2"], settle);
    assert_eq!(
        server_behind(h.prod, "SELECT inet_server_addr()"),
        c.primary.addr.to_string()
    );
    assert_eq!(
        server_behind(h.stdby, "SELECT inet_server_addr()"),
        c.standby.addr.to_string()
    );
}

#[test]
fn haproxy_routes_by_the_words_and_follows_a_failover() {
    let c = Cluster::start();
    let dirs = [runtime_dir("routing-1"), runtime_dir("routing-2")];
    let _responders = responders(&c, |node| {
        let dir = if node.name == c.primary.name {
            &dirs[0]
        } else {
            &dirs[1]
        };
        [
            "--check-timeout",
            "1",
            "--runtime-dir",
            dir.to_str().expect("utf-8"),
        ]
        .map(String::from)
        .to_vec()
    });
    let h = Haproxy::start(&c, "haproxy.cfg", c.spare_addr(4));
    assert_routes_to_primary_and_standby(&h, &c);
    let settle = Duration::from_secs(15);

    // Maintenance on the standby drains it from the read pool, and back.
    let dir = dirs[1].to_str().expect("utf-8");
    assert_eq!(
        pgsql_state(&["maintenance", "on", "--runtime-dir", dir]).0,
        0
    );
    h.wait_up("stdby", &[], settle);
    assert_eq!(
        pgsql_state(&["maintenance", "off", "--runtime-dir", dir]).0,
        0
    );
    h.wait_up("stdby", &["node_2"], settle);

    // Failover, with the invariant sampled all along: never two UP in prod.
    let done = AtomicBool::new(false);
    let violations = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut seen = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let up = h.up("prod");
                if up.len() > 1 {
                    seen.push(up);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        });
        c.primary.stop("fast");
        run(common::cluster::as_pg_user(&pg_bin("pg_ctl"))
            .args(["-w", "-D"])
            .arg(&c.standby.data_dir)
            .arg("promote"));
        h.wait_up("prod", &["node_2"], settle);
        h.wait_up("stdby", &[], settle);
        done.store(true, Ordering::Relaxed);
        sampler.join().expect("sampler")
    });
    assert!(
        violations.is_empty(),
        "two servers UP in prod: {violations:?}"
    );
    assert_eq!(
        server_behind(h.prod, "CREATE TABLE after_failover AS SELECT 1"),
        "SELECT 1"
    );
    assert_eq!(
        server_behind(h.prod, "SELECT inet_server_addr()"),
        c.standby.addr.to_string()
    );
}

/// One cluster for the tests that leave its roles alone (the failover test
/// has its own): each uses its own ports and HAProxy address.
fn shared() -> &'static Cluster {
    static CLUSTER: std::sync::OnceLock<Cluster> = std::sync::OnceLock::new();
    CLUSTER.get_or_init(Cluster::start)
}

#[test]
fn the_patroni_style_httpchk_variant_routes_by_http_status() {
    let c = shared();
    let _responders = responders(c, |_| vec!["--format".into(), "http".into()]);
    let h = Haproxy::start(c, "haproxy-httpchk.cfg", c.spare_addr(7));
    assert_routes_to_primary_and_standby(&h, c);
}

#[test]
fn patronis_own_haproxy_configs_route_against_the_http_format() {
    let c = shared();
    // Where Patroni's REST API would listen: port 8008 of each node.
    let _servers: Vec<Spawned> = [&c.primary, &c.standby]
        .iter()
        .map(|node| {
            respond_server(
                SocketAddr::new(node.addr.into(), 8008),
                &["--format", "http", "--conninfo", &node.conninfo()],
            )
        })
        .collect();
    // Patroni's haproxy.cfg (a bare `option httpchk`: OPTIONS /), then its
    // confd template's form (HEAD /primary).
    type Edit = fn(&str) -> String;
    let styles: [(&str, Edit); 2] = [
        ("Patroni's haproxy.cfg (OPTIONS /)", |t| t.to_string()),
        ("Patroni's confd template (HEAD /primary)", |t| {
            t.replace("    option httpchk\n", "    option httpchk HEAD /primary\n")
        }),
    ];
    for (n, (style, edit)) in styles.into_iter().enumerate() {
        let h = Haproxy::start_ports(
            c,
            "haproxy-patroni.cfg",
            c.spare_addr(4 + n as u8),
            5000,
            5001,
            edit,
        );
        h.wait_up("batman", &["node_1"], Duration::from_secs(30));
        h.wait_up("batman_replicas", &["node_2"], Duration::from_secs(30));
        assert_eq!(
            server_behind(h.prod, "SELECT inet_server_addr()"),
            c.primary.addr.to_string(),
            "{style}: writes"
        );
        assert_eq!(
            server_behind(h.stdby, "SELECT inet_server_addr()"),
            c.standby.addr.to_string(),
            "{style}: reads"
        );
    }
}

/// `haproxy/haproxy-agent.cfg` against `--format agent` responders (on port
/// 5444 here): the agent routes writes and reads; a drained node shows
/// DRAIN, or MAINT with `--agent-maintenance maint`, never DOWN; a
/// standby's weight falls as its replay lag grows and comes back after.
#[test]
fn the_agent_check_variant_drains_and_weighs_by_lag() {
    let c = shared();
    let dirs = [runtime_dir("agent-1"), runtime_dir("agent-2")];
    let bound = (64u64 << 20).to_string();
    let _servers: Vec<Spawned> = [
        (&c.primary, &dirs[0], "maint"),
        (&c.standby, &dirs[1], "drain"),
    ]
    .iter()
    .map(|(node, dir, maintenance)| {
        respond_server(
            SocketAddr::new(node.addr.into(), 5444),
            &[
                "--format",
                "agent",
                "--agent-maintenance",
                maintenance,
                "--max-lag-bytes",
                &bound,
                "--runtime-dir",
                dir.to_str().expect("utf-8"),
                "--conninfo",
                &node.conninfo(),
            ],
        )
    })
    .collect();
    let h = Haproxy::start_ports(c, "haproxy-agent.cfg", c.spare_addr(6), 5432, 5433, |t| {
        t.replace("port 5431", "port 5444")
    });
    assert_routes_to_primary_and_standby(&h, c);
    assert_eq!(h.weight("stdby", "node_2"), 100, "a standby with no lag");

    // Replay paused on the standby while the primary writes ~24 MB of WAL:
    // the standby stays `standby` (under the 64 MB bound) but weighs less.
    assert_eq!(c.standby.sql("SELECT pg_wal_replay_pause()"), "");
    c.primary.sql(
        "CREATE TABLE agent_lag AS SELECT repeat('x', 1000) AS t FROM generate_series(1, 20000)",
    );
    let mut weight = 100;
    wait_until(
        Duration::from_secs(30),
        "the lagging standby's weight to fall",
        || {
            weight = h.weight("stdby", "node_2");
            weight < 90
        },
    );
    println!("agent: with replay paused, node_2 weighs {weight}%");
    assert!(weight >= 1, "a standby under the bound keeps a weight");
    assert_eq!(h.status("stdby", "node_2"), "UP");
    assert_eq!(c.standby.sql("SELECT pg_wal_replay_resume()"), "");
    wait_until(Duration::from_secs(30), "the weight back to 100", || {
        h.weight("stdby", "node_2") == 100
    });
    c.primary.sql("DROP TABLE agent_lag");

    // Maintenance: DRAIN on the standby, MAINT on the primary, never DOWN.
    let drain = |dir: &std::path::Path, on: &str| {
        let (code, _, err) = pgsql_state(&[
            "maintenance",
            on,
            "--runtime-dir",
            dir.to_str().expect("utf-8"),
        ]);
        assert_eq!(code, 0, "{err}");
    };
    drain(&dirs[1], "on");
    wait_until(Duration::from_secs(15), "node_2 DRAIN", || {
        h.status("stdby", "node_2").starts_with("DRAIN")
    });
    drain(&dirs[0], "on");
    wait_until(Duration::from_secs(15), "node_1 MAINT", || {
        h.status("prod", "node_1").starts_with("MAINT")
    });
    println!(
        "agent: maintenance shows {:?} and {:?}",
        h.status("stdby", "node_2"),
        h.status("prod", "node_1")
    );
    drain(&dirs[0], "off");
    drain(&dirs[1], "off");
    h.wait_up("prod", &["node_1"], Duration::from_secs(15));
    h.wait_up("stdby", &["node_2"], Duration::from_secs(15));
}

/// Issue 25, item 1: with the shipped agent variant, a node whose
/// long-lived responder stops answering (SIGSTOP: the kernel still
/// completes the handshake) leaves `prod` within `fall` x `inter` +
/// `timeout check` (1 x 2 s + 3 s). Its regular check was a bare connect,
/// and HAProxy ignores an agent that says nothing, so it stayed UP.
#[test]
fn the_agent_variant_takes_out_a_node_whose_responder_hangs() {
    let c = shared();
    let dirs = [runtime_dir("agent-hang-1"), runtime_dir("agent-hang-2")];
    let servers: Vec<Spawned> = [(&c.primary, &dirs[0]), (&c.standby, &dirs[1])]
        .iter()
        .map(|(node, dir)| {
            respond_server(
                SocketAddr::new(node.addr.into(), 5445),
                &[
                    "--format",
                    "agent",
                    "--runtime-dir",
                    dir.to_str().expect("utf-8"),
                    "--conninfo",
                    &node.conninfo(),
                ],
            )
        })
        .collect();
    let h = Haproxy::start_ports(c, "haproxy-agent.cfg", c.spare_addr(9), 5432, 5433, |t| {
        t.replace("port 5431", "port 5445")
    });
    assert_routes_to_primary_and_standby(&h, c);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(servers[0].child.id() as i32, libc::SIGSTOP) };
    let stopped = Instant::now();
    wait_until(Duration::from_secs(20), "node_1 out of prod", || {
        h.up("prod").is_empty()
    });
    let out_after = stopped.elapsed();
    // SAFETY: as above.
    unsafe { libc::kill(servers[0].child.id() as i32, libc::SIGCONT) };
    println!("agent: a hung responder left prod {out_after:?} after SIGSTOP");
    // fall x inter + timeout check, and one sampling's slack.
    assert!(
        out_after <= Duration::from_millis(5_500),
        "node_1 stayed in prod {out_after:?} with its responder hung"
    );
    h.wait_up("prod", &["node_1"], Duration::from_secs(15));
}
