//! The shipped `haproxy/haproxy.cfg` in a real HAProxy, checking real
//! responders on each node's port 5431: writes reach the primary, reads the
//! standby; maintenance drains; after a failover HAProxy follows, and at no
//! sampled instant are two servers UP in `prod`.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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

#[test]
fn the_patroni_style_httpchk_variant_routes_by_http_status() {
    let c = Cluster::start();
    let _responders = responders(&c, |_| vec!["--format".into(), "http".into()]);
    let h = Haproxy::start(&c, "haproxy-httpchk.cfg", c.spare_addr(4));
    assert_routes_to_primary_and_standby(&h, &c);
}

#[test]
fn patronis_own_haproxy_configs_route_against_the_http_format() {
    let c = Cluster::start();
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
            &c,
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
