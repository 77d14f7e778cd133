//! HAProxy's start-up window, closed. HAProxy 2.6 starts every server UP
//! until its first check, so a standby is UP in `prod` right after a start
//! or a reload. The shipped configs name a server-state file, which
//! `pgsql-state haproxy-state` writes before each start and reload (as the
//! shipped drop-in does): every server starts DOWN, and a reload keeps what
//! the running HAProxy already checked. Sampled from the first instant the
//! stats socket answers; the same configs without the two server-state
//! lines show the window, so these tests can fail.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;

/// The cluster and its socket-activated responders (`fencing off`: node_1
/// answers `production`, node_2 `standby`), shared by this file's tests.
fn setup() -> &'static (Cluster, Vec<Spawned>) {
    static SETUP: std::sync::OnceLock<(Cluster, Vec<Spawned>)> = std::sync::OnceLock::new();
    SETUP.get_or_init(|| {
        let c = Cluster::start();
        let responders = [&c.primary, &c.standby]
            .iter()
            .map(|node| {
                socket_activate(
                    SocketAddr::new(node.addr.into(), 5431),
                    Activation::Accept,
                    &[],
                    &["--conninfo", &node.conninfo()],
                )
            })
            .collect();
        (c, responders)
    })
}

/// The shipped config without its server-state lines: HAProxy's default.
fn without_server_state(text: &str) -> String {
    text.lines()
        .filter(|l| !l.contains("server-state-file") && !l.contains("load-server-state"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What sampling saw: the first sample, and every (proxy, server) seen UP
/// where it must not be.
#[derive(Debug, Default)]
struct Samples {
    count: usize,
    first: Vec<(String, String, String)>,
    wrong_up: Vec<(Duration, String, String)>,
    primary_not_up: usize,
    failed: usize,
}

/// Samples `show stat` as fast as the socket answers until `done` or
/// `bound`: a standby UP in `prod`, or the primary UP in `stdby`, is
/// recorded, and so is each sample without the primary UP in `prod`.
fn sample(h: &Haproxy, bound: Duration, mut done: impl FnMut(&Samples) -> bool) -> Samples {
    let start = Instant::now();
    let mut s = Samples::default();
    while start.elapsed() < bound && !done(&s) {
        let Some(rows) = h.try_servers() else {
            // The stats socket is being rebound (a reload), or not yet up.
            s.failed += 1;
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        if s.count == 0 {
            s.first = rows.clone();
        }
        s.count += 1;
        let up = |p: &str, n: &str| {
            rows.iter()
                .any(|(pp, nn, st)| pp == p && nn == n && st == "UP")
        };
        for (proxy, server) in [("prod", "node_2"), ("stdby", "node_1")] {
            if up(proxy, server) {
                s.wrong_up
                    .push((start.elapsed(), proxy.into(), server.into()));
            }
        }
        if !up("prod", "node_1") {
            s.primary_not_up += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    s
}

/// Settled: node_1 alone in `prod`, node_2 alone in `stdby`.
fn settled(h: &Haproxy) -> bool {
    h.try_servers().is_some_and(|rows| {
        let up: Vec<(&str, &str)> = rows
            .iter()
            .filter(|r| r.2 == "UP")
            .map(|r| (r.0.as_str(), r.1.as_str()))
            .collect();
        up == [("prod", "node_1"), ("stdby", "node_2")]
    })
}

#[test]
fn a_cold_start_keeps_the_standby_out_of_prod_from_the_first_instant() {
    let (c, _) = setup();
    let h = Haproxy::start(c, "haproxy.cfg", c.spare_addr(4));
    let s = sample(&h, Duration::from_secs(20), |_| settled(&h));
    assert!(settled(&h), "never settled: {s:?}");
    assert!(s.count > 0, "no sample: {s:?}");
    assert!(
        s.first.iter().all(|(_, _, st)| st.starts_with("DOWN")),
        "the first sample must show every server DOWN: {:?}",
        s.first
    );
    assert!(s.wrong_up.is_empty(), "the window is open: {s:?}");
    eprintln!(
        "cold start with the server-state file: {} samples, first {:?}, none wrong",
        s.count, s.first
    );
}

#[test]
fn without_the_server_state_file_haproxy_2_6_starts_the_standby_up_in_prod() {
    let (c, _) = setup();
    let h = Haproxy::start_ports(c, "haproxy.cfg", c.spare_addr(5), 5432, 5433, |t| {
        without_server_state(t)
    });
    let s = sample(&h, Duration::from_secs(10), |s| !s.wrong_up.is_empty());
    assert!(
        s.wrong_up
            .iter()
            .any(|(_, p, n)| p == "prod" && n == "node_2"),
        "expected HAProxy 2.6's window (node_2 UP in prod at start): {s:?}"
    );
    eprintln!("cold start without it: {:?}", s.wrong_up.first());
}

#[test]
fn a_reload_keeps_the_checked_primary_and_never_lets_the_standby_in() {
    let (c, _) = setup();
    let h = Haproxy::start(c, "haproxy.cfg", c.spare_addr(6));
    wait_until(Duration::from_secs(20), "HAProxy settled", || settled(&h));
    for round in 1..=2 {
        h.reload();
        let s = sample(&h, Duration::from_secs(3), |_| false);
        assert!(s.count > 20, "round {round}: too few samples: {s:?}");
        assert!(
            s.wrong_up.is_empty(),
            "round {round}: window at reload: {s:?}"
        );
        assert_eq!(
            s.primary_not_up, 0,
            "round {round}: the primary left prod at the reload: {s:?}"
        );
        eprintln!(
            "reload {round}: {} samples ({} while the socket was rebound), primary UP in all, standby never in prod",
            s.count, s.failed
        );
    }
}

#[test]
fn without_the_server_state_file_a_reload_lets_the_standby_in() {
    let (c, _) = setup();
    let h = Haproxy::start_ports(c, "haproxy.cfg", c.spare_addr(7), 5432, 5433, |t| {
        without_server_state(t)
    });
    wait_until(Duration::from_secs(20), "HAProxy settled", || settled(&h));
    h.reload();
    let s = sample(&h, Duration::from_secs(10), |s| !s.wrong_up.is_empty());
    assert!(
        s.wrong_up
            .iter()
            .any(|(_, p, n)| p == "prod" && n == "node_2"),
        "expected the window at reload: {s:?}"
    );
}

/// Issue 25, item 3: a backend pgsql-state does not check, with a server
/// written by host name, once made `haproxy-state` exit 78 and so stopped
/// HAProxy's start (the drop-in's ExecStartPre). It is left to HAProxy
/// now, and the pools pgsql-state checks still start DOWN.
#[test]
fn an_unrelated_backend_named_by_host_name_does_not_stop_the_start() {
    let (c, _) = setup();
    let h = Haproxy::start_ports(c, "haproxy.cfg", c.spare_addr(8), 5432, 5433, |t| {
        format!("{t}\nbackend app\n    server app1 localhost:8080 check\n")
    });
    let s = sample(&h, Duration::from_secs(20), |_| settled(&h));
    assert!(settled(&h), "never settled: {s:?}");
    assert!(
        s.first.iter().all(|(_, _, st)| st.starts_with("DOWN")),
        "the first sample must show every pgsql-state server DOWN: {:?}",
        s.first
    );
    assert!(s.wrong_up.is_empty(), "the window is open: {s:?}");
    let state = std::fs::read_to_string(h.config.with_file_name("servers.state"))
        .expect("read the server-state file");
    assert!(
        !state.contains("app1"),
        "a row for a server not ours: {state}"
    );
}
