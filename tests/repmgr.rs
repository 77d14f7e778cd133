//! repmgrd promotes, pgsql-state routes and fences: three data nodes, the
//! witness, repmgrd on every data node with the shipped example's
//! commands, and the shipped HAProxy config, observed every 100 ms. One
//! cluster for the file, its phases in order:
//!
//! 1. healthy: `promote-check` on a standby says no, and why;
//! 2. repmgr's view of the primary cut (its Postgres refuses the `repmgr`
//!    database and replication to the standbys) while the voters still see
//!    it serve: repmgrd wants to promote, `promote-check` refuses every
//!    election, nobody is promoted, and writes never stop;
//! 3. the primary's machine lost: repmgrd promotes a standby (after
//!    `promote-check` says yes), the other follows, and HAProxy routes
//!    writes to the new primary, never two UP in `prod`;
//! 4. the old primary boots again as a primary (repmgr #820): fenced at
//!    once, never UP in `prod`, and `status` says what it is.

mod common;

use std::time::Duration;

use common::repmgr::RepmgrScene;
use common::wait_until;

/// The pg_hba.conf lines that cut repmgr's view of node_1: its `repmgr`
/// database and replication refused to everyone (loopback is all there is).
const CUT: &str = "host repmgr all 127.0.0.0/8 reject\nhost replication all 127.0.0.0/8 reject\n";

fn report(scenario: &str, f: &common::scene::Figures, logged: &str) {
    let converge = f
        .converge
        .map_or("never".to_string(), |s| format!("{s:.1} s"));
    eprintln!(
        "| {scenario} | {converge} | {:.1} s | {} | {logged} |",
        f.outage, f.max_up
    );
}

#[test]
fn repmgrd_promotes_and_pgsql_state_routes_and_fences() {
    let s = RepmgrScene::start();
    eprintln!("| scenario | writes back after the fault | longest write outage | max UP in prod | what repmgrd logged |");

    // 1. Healthy: no promotion while node_1 serves.
    let (code, out) = s.pgsql_state_on(1, &["promote-check"]);
    assert_eq!(code, 1, "promote-check in a healthy cluster: {out}");
    assert!(
        out.starts_with("promote-check: no: node_2: ") && out.contains("node_1"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1, "one line: {out}");

    // 2. repmgr's view of node_1 cut; pgsql-state's intact.
    let hba = s.nodes[0].data_dir.join("pg_hba.conf");
    let before = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
    std::fs::write(&hba, format!("{CUT}{before}")).expect("write pg_hba.conf");
    s.nodes[0].sql("SELECT pg_reload_conf()");
    let cut_at = s.now();
    s.nodes[0].sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = 'repmgr' OR backend_type = 'walsender'",
    );
    // Both standbys' repmgrd run an election and ask promote-check, which
    // refuses: node_1 is alive to the voters.
    wait_until(Duration::from_secs(60), "a refused validation", || {
        (1..3).any(|i| {
            s.repmgrd_log(i)
                .contains("failover validation command returned a non-zero value")
        })
    });
    // Refused again at every rerun, for a while: no promotion.
    let refusals = |i: usize| {
        s.repmgrd_log(i)
            .matches("failover validation command returned a non-zero value")
            .count()
    };
    let first: usize = (1..3).map(refusals).sum();
    wait_until(
        Duration::from_secs(60),
        "two more refused elections",
        || (1..3).map(refusals).sum::<usize>() >= first + 2,
    );
    assert_eq!(
        s.primaries(),
        vec![0],
        "nobody promoted while node_1 serves"
    );
    let why = (1..3)
        .flat_map(|i| {
            s.repmgrd_log(i)
                .lines()
                .filter(|l| l.contains("promote-check: no:"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .next()
        .expect("repmgrd logged promote-check's line");
    // Heal: the standbys stream from node_1 again.
    std::fs::write(&hba, &before).expect("restore pg_hba.conf");
    s.nodes[0].sql("SELECT pg_reload_conf()");
    wait_until(
        Duration::from_secs(60),
        "both standbys streaming again",
        || {
            s.nodes[0].sql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
                == "2"
        },
    );
    let f = s.figures(cut_at, "node_1", None);
    report(
        "repmgr's view of the primary cut, the voters' not",
        &f,
        why.trim(),
    );
    assert_eq!(f.max_up, 1, "never two UP in prod");
    assert!(f.outage < 1.0, "writes went on through node_1: {f:?}");

    // 3. node_1's machine lost: repmgrd promotes, the other follows.
    let lost_at = s.now();
    s.lose_machine(0);
    wait_until(Duration::from_secs(90), "a promotion", || {
        s.primaries().len() == 1 && s.primaries() != vec![0]
    });
    let new = s.primaries()[0];
    let other = 3 - new;
    let (new_name, other_name) = (s.nodes[new].name.clone(), s.nodes[other].name.clone());
    s.wait_routes(&new_name, &[&other_name], Duration::from_secs(90));
    let validated = s
        .repmgrd_log(new)
        .contains("failover validation command returned zero");
    assert!(
        validated,
        "repmgrd promoted {new_name} without promote-check's yes:\n{}",
        s.repmgrd_log(new)
    );
    wait_until(Duration::from_secs(60), "the other standby follows", || {
        s.nodes[new].sql(&format!(
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = '{other_name}' AND state = 'streaming'"
        )) == "1"
    });
    let settle = s.now();
    wait_until(Duration::from_secs(30), "samples after the follow", || {
        s.now() > settle + Duration::from_secs(2)
    });
    let f = s.figures(lost_at, &new_name, Some(0));
    report(
        "the primary's machine lost",
        &f,
        &format!("{new_name}: failover validation command returned zero; promoted; {other_name} followed"),
    );
    assert_eq!(f.max_up, 1, "never two UP in prod: {f:?}");
    assert!(
        f.converge.is_some(),
        "prod never held {new_name} alone: {f:?}"
    );

    // 4. node_1 boots again, still a primary on timeline 1.
    let back_at = s.now();
    s.boot_machine(0);
    // Its reconciler's runs see it: a run after the boot decides.
    wait_until(Duration::from_secs(30), "node_1 fenced", || {
        common::nc(std::net::SocketAddr::new(s.nodes[0].addr.into(), 5431)) == "fenced\n"
    });
    let watched = s.now();
    wait_until(
        Duration::from_secs(30),
        "HAProxy's checks of node_1",
        || s.now() > watched + Duration::from_secs(5),
    );
    assert_eq!(
        s.up_since("node_1", back_at),
        0,
        "the old primary was UP in prod"
    );
    let (_, status) = s.pgsql_state_on(0, &["status"]);
    let f = s.figures(back_at, &new_name, Some(0));
    report(
        "the old primary boots again as a primary (repmgr #820)",
        &f,
        "(its repmgrd stays off until `repmgr node rejoin`)",
    );
    eprintln!("status on node_1:\n{status}");
    assert_eq!(f.max_up, 1, "never two UP in prod: {f:?}");
    assert_eq!(f.wrong_writes, 0, "writes on the old primary: {f:?}");
    assert!(
        status.contains("node_1 (") && status.contains("is an old primary on timeline 1, fenced"),
        "status on node_1 does not say what node_1 is:\n{status}"
    );
    assert!(!status.contains("SPLIT BRAIN"), "{status}");
    let failures = s
        .reconcile_failures
        .lock()
        .map(|f| f.clone())
        .unwrap_or_default();
    // Runs on node_1 may fail while its machine is lost (paused) and when
    // its Postgres stops under a run; none elsewhere.
    let elsewhere: Vec<_> = failures
        .iter()
        .filter(|(_, what)| !what.starts_with("node_1"))
        .collect();
    assert!(elsewhere.is_empty(), "reconcile runs failed: {elsewhere:?}");
}
