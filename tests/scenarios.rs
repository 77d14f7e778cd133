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

use common::scene::{self, report, Figures, Options, Scene};

/// How long after a fault hits a node's Postgres a reconcile run it cut
/// short may still end (its queries are bounded by checkTimeout, 1 s).
const FAULT_SPAN: Duration = Duration::from_secs(3);

/// Asserts the invariant on our variants: never two UP in prod, and no
/// write on the old primary after it left prod (none of its rows there).
fn assert_ours(s: &Scene, scenario: &str, figures: &[Figures], old: Option<IpAddr>) {
    let failures = s.unexpected_reconcile_failures();
    assert!(
        failures.is_empty(),
        "{scenario}: reconcile runs failed:\n{}",
        failures.join("\n")
    );
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
                    .unwrap_or_else(|| {
                        // A failed query is not zero rows: `old` is set only
                        // when the old primary runs on, so it must answer.
                        panic!(
                            "{scenario}, {}: the old primary did not answer the count of its rows",
                            f.label
                        )
                    });
            assert_eq!(
                rows, "0",
                "{scenario}, {}: rows on the old primary",
                f.label
            );
        }
    }
}

/// Lets the observer gather a baseline, then `fault` and the HA tool's
/// promotion of node_2; waits until our variants hold node_2 alone in
/// `prod`, samples `tail` more, reports and asserts the invariant. `old`
/// is the old primary's address when it runs on (writes there count).
fn fault_then_promotion(
    s: &Scene,
    scenario: &str,
    old: bool,
    tail: Duration,
    bound: Duration,
    fault: impl FnOnce(&Scene),
) -> Vec<Figures> {
    std::thread::sleep(Duration::from_secs(2));
    let old = old.then(|| IpAddr::from(s.c.primary.addr));
    let at = s.now();
    fault(s);
    s.c.standby.promote();
    s.wait_prod(&["node_2"], Duration::from_secs(60), |v| v.ours);
    std::thread::sleep(tail);
    let figures = s.figures(at, "node_2", old);
    report(scenario, &figures);
    assert_ours(s, scenario, &figures, old);
    // The model's bound, end to end (`bound`: P3's W, or P4's H, plus
    // three runs, the cache, HAProxy's entry and a stated margin).
    assert_converged_within(s, at, scenario, &figures, bound);
    figures
}

/// Our variants held the expected server alone in `prod` within `bound`
/// of the fault.
fn assert_converged_within(
    s: &Scene,
    at: Duration,
    scenario: &str,
    figures: &[Figures],
    bound: Duration,
) {
    for f in figures.iter().filter(|f| f.ours) {
        let Some(converge) = f.converge else {
            panic!(
                "{scenario}, {}: prod never held the new primary alone for good\n{}",
                f.label,
                s.trace(f.label, at)
            );
        };
        assert!(
            converge <= bound.as_secs_f64(),
            "{scenario}, {}: alone in prod after {converge:.1} s, past the bound {bound:?}\n{}",
            f.label,
            s.trace(f.label, at)
        );
    }
}

/// After `change` (the zombie restarting, the partition healing), the old
/// primary never re-enters `prod` in `watch`.
fn old_primary_stays_out(s: &Scene, scenario: &str, watch: Duration, change: impl FnOnce(&Scene)) {
    let old = Some(IpAddr::from(s.c.primary.addr));
    let at = s.now();
    change(s);
    std::thread::sleep(watch);
    let figures = s.figures(at, "node_2", old);
    report(scenario, &figures);
    assert_ours(s, scenario, &figures, old);
    for f in figures.iter().filter(|f| f.ours) {
        assert_eq!(
            f.converge,
            Some(0.0),
            "{scenario}, {}: prod did not hold node_2 alone throughout (node_1 back, or node_2 out on an answer other than a check timeout)\n{}",
            f.label,
            s.trace(f.label, at)
        );
    }
}

/// The figures of one variant.
fn of<'a>(figures: &'a [Figures], label: &str) -> &'a Figures {
    figures
        .iter()
        .find(|f| f.label == label)
        .unwrap_or_else(|| panic!("no variant {label}"))
}

#[test]
fn zombie_promotion_while_the_old_primary_runs_on_then_restarts() {
    let s = Scene::start("zombie", Options::default());
    let figures = fault_then_promotion(
        &s,
        "promotion while the old primary runs on (zombie)",
        true,
        Duration::from_secs(3),
        scene::failover_bound(),
        |_| {},
    );
    assert_eq!(
        of(&figures, "psql unit").max_up,
        2,
        "the psql unit is known to show two UP in prod"
    );
    // The zombie restarts: a primary again on its old timeline, and still
    // fenced.
    old_primary_stays_out(&s, "the zombie restarting", Duration::from_secs(8), |s| {
        s.tolerate_reconcile_failures(FAULT_SPAN);
        s.c.primary.stop("fast");
        s.c.primary.start();
    });
}

#[test]
fn a_planned_switchover_stops_then_promotes() {
    let s = Scene::start("switchover", Options::default());
    fault_then_promotion(
        &s,
        "planned switchover (stop, then promote)",
        false,
        Duration::from_secs(2),
        scene::switchover_bound(),
        |s| {
            s.tolerate_reconcile_failures(FAULT_SPAN);
            s.c.primary.stop("fast")
        },
    );
}

#[test]
fn failover_after_the_primary_is_killed() {
    let s = Scene::start("failover", Options::default());
    fault_then_promotion(
        &s,
        "failover (primary killed)",
        false,
        Duration::from_secs(2),
        // Its peer answers that its Postgres is not running: H' alone.
        scene::switchover_bound(),
        |s| {
            s.tolerate_reconcile_failures(FAULT_SPAN);
            s.c.primary.signal(libc::SIGKILL)
        },
    );
}

/// Issue 15 (the model's P6): the primary's machine is lost (its
/// postmaster, peer and reconciler killed at once), and the HA tool
/// promotes node_2 only after L' + H' (repmgrd's defaults decide a minute
/// later). No voter can have confirmed node_1 since: node_2 waits nothing.
#[test]
fn a_machine_lost_long_before_the_promotion_costs_no_wait() {
    let s = Scene::start("lost-late", Options::default());
    std::thread::sleep(Duration::from_secs(2));
    s.stop_reconciler(0);
    s.kill_peer(0);
    s.c.primary.signal(libc::SIGKILL);
    // Past L' + H' of the scene's timing (8.1 s), with a second to spare.
    std::thread::sleep(scene::lease_and_term() + Duration::from_secs(1));
    let promoted = s.now();
    s.c.standby.promote();
    s.wait_prod(&["node_2"], Duration::from_secs(60), |v| v.ours);
    std::thread::sleep(Duration::from_secs(2));
    let scenario = "machine lost, promoted after L' + H'";
    let figures = s.figures(promoted, "node_2", None);
    report(scenario, &figures);
    assert_ours(&s, scenario, &figures, None);
    assert_converged_within(
        &s,
        promoted,
        scenario,
        &figures,
        scene::late_promotion_bound(),
    );
}

/// Issue 15 (the model's P5): the primary's own Postgres restarted
/// (`pg_ctl restart -m fast`). Its previous verdict confirmed it and the
/// voters still hold its claim: no wait, only a run to bind the verdict to
/// the new postmaster. node_2's and the witness's peers restarted just
/// before, so their clocks vouch for nothing before their start (the
/// lease's clock alone would make node_1 wait all of W): only the restart
/// rule spares the wait.
#[test]
fn a_restart_of_the_primarys_postgres_costs_no_wait() {
    let s = Scene::start("restart", Options::default());
    std::thread::sleep(Duration::from_secs(2));
    // One at a time, so node_1 keeps its majority (and its confirmed
    // verdict) throughout.
    s.restart_peer(1);
    std::thread::sleep(Duration::from_secs(2));
    s.restart_peer(2);
    std::thread::sleep(Duration::from_secs(2));
    let at = s.now();
    let started = std::time::Instant::now();
    s.tolerate_reconcile_failures(FAULT_SPAN);
    s.c.primary.restart();
    let took = started.elapsed();
    // Long enough for a wait of W to show (8.1 s), were there one.
    std::thread::sleep(Duration::from_secs(10));
    let scenario = "the primary's Postgres restarted";
    let figures = s.figures(at, "node_1", None);
    report(scenario, &figures);
    assert_ours(&s, scenario, &figures, None);
    let bound = scene::restart_bound(took);
    for f in figures.iter().filter(|f| f.ours) {
        eprintln!(
            "{scenario}, {}: the restart took {took:?}, writes stopped for {:.1} s",
            f.label, f.outage
        );
        assert!(
            f.outage <= bound.as_secs_f64(),
            "{scenario}, {}: writes stopped for {:.1} s, past {bound:?}",
            f.label,
            f.outage
        );
    }
}

#[test]
fn a_non_transitive_partition_then_a_promotion() {
    let s = Scene::start(
        "partition",
        Options {
            ab_proxies: true,
            ..Options::default()
        },
    );
    // A-B down, A-W and B-W up; then the HA tool promotes node_2.
    fault_then_promotion(
        &s,
        "non-transitive partition (A-B cut), then promotion",
        true,
        Duration::from_secs(3),
        scene::failover_bound(),
        Scene::cut_ab,
    );
}

/// A fault after which nothing should change: node_1 stays alone in prod.
fn nothing_changes(
    tag: &str,
    scenario: &str,
    fault: impl FnOnce(&Scene),
    heal: impl FnOnce(&Scene),
) {
    let s = Scene::start(tag, Options::default());
    std::thread::sleep(Duration::from_secs(2));
    let at = s.now();
    fault(&s);
    std::thread::sleep(Duration::from_secs(10));
    heal(&s);
    std::thread::sleep(Duration::from_secs(3));
    let figures = s.figures(at, "node_1", None);
    report(scenario, &figures);
    assert_ours(&s, scenario, &figures, None);
    for f in figures.iter().filter(|f| f.ours) {
        assert_eq!(
            f.converge,
            Some(0.0),
            "{scenario}, {}: prod changed",
            f.label
        );
        assert!(
            f.outage_but_late_writes < 1.0 && f.late_writes <= 2,
            "{scenario}, {}: writes stopped for {:.1} s ({} late writes)",
            f.label,
            f.outage,
            f.late_writes
        );
    }
}

#[test]
fn the_witness_lost() {
    nothing_changes("witness", "the witness lost", |s| s.kill_peer(2), |_| {});
}

#[test]
fn the_primarys_peer_hung() {
    nothing_changes(
        "peer-hung",
        "a peer hung (node_1's, SIGSTOP 10 s)",
        |s| s.signal_peer(0, libc::SIGSTOP),
        |s| s.signal_peer(0, libc::SIGCONT),
    );
}

#[test]
fn the_primarys_postmaster_hung() {
    let s = Scene::start("postmaster-hung", Options::default());
    std::thread::sleep(Duration::from_secs(2));
    let fault = s.now();
    // The hang and the resume both cut runs short.
    s.tolerate_reconcile_failures(Duration::from_secs(6) + FAULT_SPAN);
    s.c.primary.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(6));
    let resumed = s.now();
    s.c.primary.signal(libc::SIGCONT);
    s.wait_prod(&["node_1"], Duration::from_secs(30), |v| v.ours);
    std::thread::sleep(Duration::from_secs(2));
    let figures = s.figures(fault, "node_1", None);
    report("a postmaster hung (node_1, SIGSTOP 6 s)", &figures);
    assert_ours(&s, "postmaster hung", &figures, None);
    let back = s.figures(resumed, "node_1", None);
    for f in back.iter().filter(|f| f.ours) {
        eprintln!(
            "postmaster hung, {}: prod holds node_1 again {:.1} s after SIGCONT",
            f.label,
            f.converge.unwrap_or(f64::NAN)
        );
    }
}

#[test]
fn a_standby_over_the_lag_bound_leaves_stdby() {
    let s = Scene::start(
        "lag",
        Options {
            max_lag_bytes: Some(1 << 20),
            ..Options::default()
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    s.c.standby.sql("SELECT pg_wal_replay_pause()");
    let fault = s.now();
    s.c.primary
        .sql("CREATE TABLE ballast AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 40000) g");
    let bound = Duration::from_secs(30);
    for v in s.variants.iter().filter(|v| v.ours) {
        v.haproxy.wait_up("stdby", &[], bound);
    }
    let left = (s.now() - fault).as_secs_f64();
    let psql_stdby = s
        .variants
        .iter()
        .find(|v| v.label == "psql unit")
        .expect("the psql unit")
        .haproxy
        .up("stdby");
    eprintln!(
        "| a standby over the lag bound (1 MiB) | tcp-check, httpchk, agent-check | left stdby {left:.1} s after the WAL | - | psql unit keeps it in stdby: {psql_stdby:?} |"
    );
    assert_eq!(psql_stdby, ["node_2"], "the psql unit knows no lag");
    s.c.standby.sql("SELECT pg_wal_replay_resume()");
    for v in s.variants.iter().filter(|v| v.ours) {
        v.haproxy.wait_up("stdby", &["node_2"], bound);
    }
    let figures = s.figures(fault, "node_1", None);
    assert_ours(&s, "lag", &figures, None);
}

#[test]
fn a_primary_partitioned_from_its_peers_in_a_network_namespace() {
    let s = Scene::start(
        "netns",
        Options {
            node_1_netns: true,
            ..Options::default()
        },
    );
    // node_1 loses its peers (HAProxy still reaches it); the HA tool,
    // seeing it gone, promotes node_2.
    fault_then_promotion(
        &s,
        "the primary partitioned from its peers (netns, veth down)",
        true,
        Duration::from_secs(3),
        scene::failover_bound(),
        |s| s.partition_node_1(true),
    );
    // The partition heals: node_1 learns node_2's claim and stays out.
    old_primary_stays_out(&s, "the partition healed", Duration::from_secs(6), |s| {
        s.partition_node_1(false)
    });
}

#[test]
fn a_zombie_whose_reconciler_stopped_shows_what_pgsql_check_cannot_promise() {
    let s = Scene::start("stopped-reconciler", Options::default());
    // node_1's timer stops, then node_2 is promoted while node_1 runs on;
    // its lease lapses on its own, so ours never hold two.
    let figures = fault_then_promotion(
        &s,
        "zombie whose reconciler stopped",
        true,
        Duration::from_secs(4),
        scene::failover_bound(),
        |s| s.stop_reconciler(0),
    );
    // pgsql-check relies on pg_hba edits alone: nobody edits node_1's, so
    // it stays UP beside node_2.
    assert_eq!(
        of(&figures, "pgsql-check").max_up,
        2,
        "pgsql-check keeps a zombie whose reconciler stopped"
    );
}
