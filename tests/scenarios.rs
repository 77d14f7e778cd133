//! End-to-end scenarios with real HAProxy in front of a real primary,
//! standby and witness (see `common::scene`): every shipped HAProxy
//! variant (tcp-check, httpchk, agent-check, pgsql-check) and the original
//! psql one-liner unit watch the same nodes in the same run. The stats
//! sockets are sampled every 100 ms and writes go through every `prod`
//! every 100 ms. Under `fencing: strict` no sample may show two servers
//! UP in `prod`, and no write may land on the old primary once HAProxy
//! took it out. Each scenario prints its rows of the closing note's table
//! (seconds to converge, the longest write outage, the most servers UP in
//! `prod`, ours against the psql unit's).

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::scene::{report, Figures, Scene};
use common::*;

/// Asserts the invariant on our variants: never two UP in prod, and no
/// write on the old primary after it left prod (none of its rows there).
fn assert_ours(s: &Scene, scenario: &str, figures: &[Figures], old: Option<IpAddr>) {
    for f in figures.iter().filter(|f| f.ours) {
        assert!(
            f.max_up <= 1,
            "{scenario}, {}: {} servers UP in prod at once",
            f.label,
            f.max_up
        );
        assert_eq!(
            f.wrong_after_out, 0,
            "{scenario}, {}: writes reached the old primary after HAProxy took it out",
            f.label
        );
        if let (Some(n), Some(_)) = (f.first_n_after_out, old) {
            let rows =
                s.c.primary
                    .try_sql(&format!(
                        "SELECT count(*) FROM writes WHERE label = '{}' AND n >= {n}",
                        f.label
                    ))
                    .unwrap_or_else(|| "0".into());
            assert_eq!(
                rows, "0",
                "{scenario}, {}: rows on the old primary",
                f.label
            );
        }
    }
}

fn promote(node: &Node) {
    run(as_pg_user(&pg_bin("pg_ctl")).args([
        "-D",
        node.data_dir.to_str().expect("utf-8"),
        "-w",
        "promote",
    ]));
}

#[test]
fn zombie_promotion_while_the_old_primary_runs_on_then_restarts() {
    let s = Scene::start("zombie", None);
    std::thread::sleep(Duration::from_secs(2));
    let old = Some(IpAddr::from(s.c.primary.addr));
    let fault = s.now();
    promote(&s.c.standby);
    s.wait_prod(&["node_2"], Duration::from_secs(60), |v| v.ours);
    std::thread::sleep(Duration::from_secs(3));
    let figures = s.figures(fault, "node_2", old);
    report("promotion while the old primary runs on (zombie)", &figures);
    assert_ours(&s, "zombie", &figures, old);
    let psql = figures
        .iter()
        .find(|f| f.label == "psql unit")
        .expect("the psql unit");
    assert_eq!(
        psql.max_up, 2,
        "the psql unit is known to show two UP in prod"
    );

    // The zombie restarts: a primary again on its old timeline, and still
    // fenced; it never re-enters prod.
    let fault = s.now();
    s.c.primary.stop("fast");
    s.c.primary.start();
    std::thread::sleep(Duration::from_secs(8));
    let figures = s.figures(fault, "node_2", old);
    report("the zombie restarting", &figures);
    assert_ours(&s, "zombie restart", &figures, old);
    for f in figures.iter().filter(|f| f.ours) {
        assert_eq!(
            f.converge,
            Some(0.0),
            "{}: node_1 came back into prod",
            f.label
        );
    }
}

#[test]
fn a_planned_switchover_stops_then_promotes() {
    let s = Scene::start("switchover", None);
    std::thread::sleep(Duration::from_secs(2));
    let fault = s.now();
    s.c.primary.stop("fast");
    promote(&s.c.standby);
    s.wait_prod(&["node_2"], Duration::from_secs(60), |v| v.ours);
    std::thread::sleep(Duration::from_secs(2));
    let figures = s.figures(fault, "node_2", None);
    report("planned switchover (stop, then promote)", &figures);
    assert_ours(&s, "switchover", &figures, None);
}

#[test]
fn failover_after_the_primary_is_killed() {
    let s = Scene::start("failover", None);
    std::thread::sleep(Duration::from_secs(2));
    let fault = s.now();
    s.c.primary.signal(libc::SIGKILL);
    promote(&s.c.standby);
    s.wait_prod(&["node_2"], Duration::from_secs(60), |v| v.ours);
    std::thread::sleep(Duration::from_secs(2));
    let figures = s.figures(fault, "node_2", None);
    report("failover (primary killed)", &figures);
    assert_ours(&s, "failover", &figures, None);
}
