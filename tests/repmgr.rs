//! repmgrd promotes, pgsql-state routes and fences: three data nodes, the
//! witness, repmgrd on every data node with the shipped example's
//! commands, and the shipped HAProxy config, observed every 100 ms. One
//! cluster for the file, its phases in order:
//!
//! 1. healthy: `promote-check` on a standby says no, and why; then
//!    `repmgr standby switchover` to node_2 and back (repmgr's remote
//!    steps through a one-machine ssh);
//! 2. repmgr's view of the primary cut (its Postgres refuses the `repmgr`
//!    database and replication to the standbys) while the voters still see
//!    it serve: repmgrd wants to promote, `promote-check` refuses every
//!    election, nobody is promoted, and writes never stop;
//! 3. the zombie: the primary's network cut from the others (its peer and
//!    reconciler from the voters, its Postgres from repmgr and the
//!    standbys) while HAProxy still reaches it: it fences itself, repmgrd
//!    promotes a standby after `promote-check` says yes, the other
//!    follows, and HAProxy routes writes to the new primary;
//! 4. the cut heals: the old primary, still a primary on its timeline, stays
//!    out of `prod`, and `status` says what it is and what to do;
//! 5. the new primary's machine lost, the old one still running fenced:
//!    repmgrd promotes the last standby;
//! 6. the lost machine boots again as a primary (repmgr #820): fenced at
//!    once.
//!
//! In every phase: never two servers UP in `prod`.
//!
//! A second scene, on a cluster of its own: first a standby cut off alone
//! (from the primary's Postgres and every other voter) with one standby
//! registered, which repmgrd alone would promote: `promote-check` refuses
//! every election and nothing is promoted; then a standby still streaming from
//! the fenced zombie, its repmgrd stopped, is `lagging` (its timeline is
//! below the legitimate primary's) and out of the read pool until it
//! follows; and a standby cut from its upstream is still decided for.

mod common;

use std::time::Duration;

use common::repmgr::RepmgrScene;
use common::wait_until;

fn report(scenario: &str, f: &common::scene::Figures, logged: &str) {
    let converge = f
        .converge
        .map_or("never".to_string(), |s| format!("{s:.1} s"));
    eprintln!(
        "| {scenario} | {converge} | {:.1} s{} | {} | {logged} |",
        f.outage,
        match f.late_writes {
            0 => String::new(),
            n => format!(
                " ({n} late writes; {:.1} s without them)",
                f.outage_but_late_writes
            ),
        },
        f.max_up
    );
}

#[test]
fn repmgrd_promotes_and_pgsql_state_routes_and_fences() {
    let s = RepmgrScene::start("scenes");
    eprintln!("| scenario | writes back after the fault | longest write outage | max UP in prod | what repmgrd logged |");

    // 1. Healthy: no promotion while node_1 serves.
    let (code, out) = s.pgsql_state_on(1, &["promote-check"]);
    assert_eq!(code, 1, "promote-check in a healthy cluster: {out}");
    assert!(
        out.starts_with("promote-check: no: node_2: ") && out.contains("node_1"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1, "one line: {out}");

    // 1b. The planned case: `repmgr standby switchover` to node_2 (node_1
    // stopped cleanly first, then node_2 promoted: its wait is H alone),
    // and back to node_1.
    for (to, from) in [(1, 0), (0, 1)] {
        let at = s.now();
        let said = s.switchover(to, from);
        let (to_name, from_name) = (s.nodes[to].name.clone(), s.nodes[from].name.clone());
        let third = s.nodes[3 - to - from].name.clone();
        s.wait_routes(&to_name, &[&from_name, &third], Duration::from_secs(90));
        settle(&s, &to_name);
        let f = s.figures(at, &to_name, Some(from));
        let logged = said
            .lines()
            .find(|l| l.contains("switchover was successful"))
            .unwrap_or("(no success line)")
            .trim()
            .to_string();
        report(
            &format!("`repmgr standby switchover` to {to_name}"),
            &f,
            &logged,
        );
        assert_eq!(
            f.max_up,
            1,
            "never two UP in prod: {f:?}\n{}",
            s.prod_trace(at)
        );
        assert_eq!(
            f.wrong_after_out, 0,
            "writes on {from_name} after it left prod: {f:?}"
        );
    }

    // 2. repmgr's view of node_1 cut; pgsql-state's intact.
    let cut_at = s.now();
    s.cut_repmgr_view(0, true);
    // Both standbys' repmgrd run an election and ask promote-check, which
    // refuses: node_1 is alive to the voters.
    let refusals = |i: usize| s.repmgrd_log(i).matches(REFUSED).count();
    wait_until(Duration::from_secs(60), "a refused validation", || {
        (1..3).map(refusals).sum::<usize>() > 0
    });
    // Then 10 s of watching (whether repmgrd reruns its election or waits
    // in degraded monitoring): node_1 stays the only primary throughout.
    let watched = s.now();
    while s.now() < watched + Duration::from_secs(10) {
        assert_eq!(
            s.primaries(),
            vec![0],
            "a promotion while node_1 serves (refusals so far: {})",
            (1..3).map(refusals).sum::<usize>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        s.primaries(),
        vec![0],
        "nobody promoted while node_1 serves"
    );
    let why = promote_check_lines(&s)
        .next()
        .expect("repmgrd logged promote-check's line");
    s.cut_repmgr_view(0, false);
    wait_until(
        Duration::from_secs(60),
        "both standbys streaming again",
        || {
            s.nodes[0].sql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
                == "2"
        },
    );
    // repmgr 5.3 keeps a refused election's notices in the standbys'
    // shared memory (repmgr.notify_follow_primary), and a repmgrd that
    // meets a stale one at the next failure follows a node that is gone,
    // then exits. A restart clears them, as it would after any refused
    // election.
    for i in 1..3 {
        s.restart_repmgrd(i);
    }
    let f = s.figures(cut_at, "node_1", None);
    report(
        "repmgr's view of the primary cut, the voters' not",
        &f,
        why.trim(),
    );
    assert_eq!(f.max_up, 1, "never two UP in prod");
    assert!(
        f.outage_but_late_writes < 1.0 && f.late_writes <= 2,
        "writes went on through node_1: {f:?}\nprod:\n{}\nnode_1's reconciler:\n{}",
        s.prod_trace(cut_at),
        s.reconcile_log_tail(0, 40)
    );

    // 3. The zombie: node_1's network cut from the others (its peer and
    // reconciler from the voters, its Postgres from repmgr and the
    // standbys), while HAProxy still reaches it.
    let zombie_tl = timeline(&s, 0);
    // Where each repmgrd log stands before the cut: scene 5 waits for
    // a line written after it (the switchovers wrote the same lines).
    let logs_before_cut: Vec<usize> = (0..3).map(|i| s.repmgrd_log(i).len()).collect();
    let zombie_at = s.now();
    s.partition_node_1(true);
    s.cut_repmgr_view(0, true);
    let new = wait_promoted(&s, &[1, 2]);
    let follower = 3 - new;
    s.wait_routes(
        &s.nodes[new].name,
        &[&s.nodes[follower].name],
        Duration::from_secs(90),
    );
    wait_following(&s, new, follower);
    settle(&s, &s.nodes[new].name);
    for line in promote_check_lines(&s) {
        eprintln!("promote-check said: {line}");
    }
    let f = s.figures(zombie_at, &s.nodes[new].name, Some(0));
    report(
        "the primary's network cut from the others, HAProxy's path up (the zombie)",
        &f,
        &promoted_line(&s, new, follower),
    );
    assert_eq!(f.max_up, 1, "never two UP in prod: {f:?}");
    assert!(
        f.converge.is_some(),
        "prod never held the new primary alone: {f:?}\n{}",
        s.prod_trace(zombie_at)
    );
    assert_eq!(
        f.wrong_after_out, 0,
        "writes on the zombie after it left prod: {f:?}"
    );
    assert_eq!(
        common::nc(std::net::SocketAddr::new(s.nodes[0].addr.into(), 5431)),
        "fenced\n"
    );

    // 4. The cut heals: node_1 is reachable again, still a primary on
    // its old timeline (repmgr #722's two primaries), and stays out.
    let healed_at = s.now();
    s.partition_node_1(false);
    s.cut_repmgr_view(0, false);
    let status = wait_status(
        &s,
        new,
        &format!("is an old primary on timeline {zombie_tl}, fenced"),
    );
    assert_eq!(
        s.up_since("node_1", healed_at),
        0,
        "the old primary was UP in prod"
    );
    assert!(!status.contains("SPLIT BRAIN"), "{status}");
    eprintln!("status after the cut healed:\n{status}");

    // 5. The new primary's machine lost, with the old one still running
    // fenced on its old timeline: repmgrd promotes the last standby. (Once the
    // follower's repmgrd monitors its new upstream, as its status line
    // says every second: one that finds its upstream gone as it resumes
    // exits, "upstream node must be running before repmgrd can start".
    // The switchovers of scenes 1 and 2 logged the same line, so only
    // what was written since the cut counts.)
    let watching = format!(
        "monitoring upstream node \"{}\" (ID: {}) in normal state",
        s.nodes[new].name,
        new + 1
    );
    wait_until(
        Duration::from_secs(60),
        "the follower's repmgrd monitoring the new primary",
        || {
            s.repmgrd_log(follower)
                .get(logs_before_cut[follower]..)
                .is_some_and(|since| since.contains(&watching))
        },
    );
    let lost_tl = timeline(&s, new);
    let lost_at = s.now();
    s.lose_machine(new);
    let last = wait_promoted(&s, &[follower]);
    s.haproxy
        .wait_up("prod", &[&s.nodes[last].name], Duration::from_secs(90));
    settle(&s, &s.nodes[last].name);
    let f = s.figures(lost_at, &s.nodes[last].name, Some(new));
    report(
        "the new primary's machine lost, the old one running fenced",
        &f,
        &promoted_line(&s, last, last),
    );
    assert_eq!(f.max_up, 1, "never two UP in prod: {f:?}");
    assert!(
        f.converge.is_some(),
        "prod never held {} alone: {f:?}",
        s.nodes[last].name
    );

    // 6. The lost machine boots again, its Postgres a primary on timeline
    // 2 (repmgr #820): fenced at once, never UP in prod.
    let back_at = s.now();
    s.boot_machine(new);
    wait_until(
        Duration::from_secs(30),
        "the rebooted primary fenced",
        || common::nc(std::net::SocketAddr::new(s.nodes[new].addr.into(), 5431)) == "fenced\n",
    );
    let status = wait_status(
        &s,
        last,
        &format!("is an old primary on timeline {lost_tl}, fenced"),
    );
    let watched = s.now();
    wait_until(Duration::from_secs(30), "HAProxy's checks of it", || {
        s.now() > watched + Duration::from_secs(5)
    });
    let f = s.figures(back_at, &s.nodes[last].name, Some(new));
    report(
        "the lost primary boots again as a primary (repmgr #820)",
        &f,
        "(its repmgrd stays off until `repmgr node rejoin`)",
    );
    eprintln!("status after the reboot:\n{status}");
    assert_eq!(
        s.up_since(&s.nodes[new].name, back_at),
        0,
        "the rebooted primary was UP in prod"
    );
    assert_eq!(f.max_up, 1, "never two UP in prod: {f:?}");
    assert_eq!(f.wrong_writes, 0, "writes on the rebooted primary: {f:?}");
    let failures = s
        .reconcile_failures
        .lock()
        .map(|f| f.clone())
        .unwrap_or_default();
    // Runs may fail on a node whose Postgres a fault stopped under them
    // (node_1 cut, the lost machine); none on the last primary.
    let on_last: Vec<_> = failures
        .iter()
        .filter(|(_, what)| what.starts_with(&s.nodes[last].name))
        .collect();
    assert!(on_last.is_empty(), "reconcile runs failed: {on_last:?}");
}

/// What repmgrd logs when the validation command says no.
const REFUSED: &str = "failover validation command returned a non-zero value";

/// promote-check's lines in the standbys' repmgrd logs.
fn promote_check_lines(s: &RepmgrScene) -> impl Iterator<Item = String> + '_ {
    (0..3).flat_map(|i| {
        s.repmgrd_log(i)
            .lines()
            .filter(|l| l.contains("promote-check:"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    })
}

/// Waits until one of `candidates` is the only primary among them (an
/// old one elsewhere may run on), and that repmgrd promoted it after
/// promote-check said yes.
fn wait_promoted(s: &RepmgrScene, candidates: &[usize]) -> usize {
    let start = std::time::Instant::now();
    while s
        .primaries()
        .iter()
        .filter(|i| candidates.contains(i))
        .count()
        != 1
    {
        if start.elapsed() > Duration::from_secs(90) {
            let logs: Vec<String> = candidates
                .iter()
                .map(|&i| {
                    let log = s.repmgrd_log(i);
                    let tail: Vec<&str> = log.lines().rev().take(80).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    format!("repmgrd of {}:\n{}", s.nodes[i].name, tail.join("\n"))
                })
                .collect();
            panic!("no promotion after 90 s\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let new = s
        .primaries()
        .into_iter()
        .find(|i| candidates.contains(i))
        .expect("a promoted candidate");
    let log = s.repmgrd_log(new);
    assert!(
        log.contains("failover validation command returned zero"),
        "repmgrd promoted {} without promote-check's yes:\n{log}",
        s.nodes[new].name
    );
    new
}

/// Waits until `follower` streams from `new`.
fn wait_following(s: &RepmgrScene, new: usize, follower: usize) {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_replication WHERE application_name = '{}' AND state = 'streaming'",
        s.nodes[follower].name
    );
    let start = std::time::Instant::now();
    while s.nodes[new].sql(&sql) != "1" {
        if start.elapsed() > Duration::from_secs(60) {
            let tail = |i: usize| {
                let log = s.repmgrd_log(i);
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(40)..].join("\n")
            };
            panic!(
                "{} does not stream from {} after 60 s\nrepmgrd of {}:\n{}\nrepmgrd of {}:\n{}",
                s.nodes[follower].name,
                s.nodes[new].name,
                s.nodes[follower].name,
                tail(follower),
                s.nodes[new].name,
                tail(new)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Lets the observer take 2 s more of samples.
/// Waits until `prod` has held `server` alone for 3 s of samples (a node
/// that flapped out and back in must be back for good), within 60 s; on
/// a timeout, says what prod held and what the node's reconciler said.
fn settle(s: &RepmgrScene, server: &str) {
    let start = s.now();
    loop {
        let now = s.now();
        if now >= start + Duration::from_secs(3)
            && s.held_alone_since(server, now - Duration::from_secs(3))
        {
            return;
        }
        if now > start + Duration::from_secs(60) {
            let i = s.nodes.iter().position(|n| n.name == server).unwrap_or(0);
            panic!(
                "prod did not hold {server} alone for 3 s within 60 s:\n{}\n{server}'s reconciler:\n{}",
                s.prod_trace(start.saturating_sub(Duration::from_secs(20))),
                s.reconcile_log_tail(i, 40)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn promoted_line(s: &RepmgrScene, new: usize, follower: usize) -> String {
    let mut line = format!(
        "{}: failover validation command returned zero; promoted",
        s.nodes[new].name
    );
    if follower != new {
        line += &format!("; {} followed", s.nodes[follower].name);
    }
    line
}

/// The timeline of node `i`, a primary (from its current WAL file's name:
/// the checkpoint's lags after a promotion).
fn timeline(s: &RepmgrScene, i: usize) -> u32 {
    s.nodes[i]
        .sql("SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int")
        .parse()
        .expect("a timeline")
}

/// `status` on node `i` until its summary says `what`.
fn wait_status(s: &RepmgrScene, i: usize, what: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        let status = s.pgsql_state_on(i, &["status"]).1;
        if status.contains(what) {
            return status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "status on {} does not say {what:?} after 30 s:\n{status}",
            s.nodes[i].name
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Issue 16, a standby cut off alone: node_3 loses node_1 (repmgr's view
/// and its WAL stream) and every other voter, while node_1 stays reachable
/// to HAProxy and the voters. With both standbys registered, repmgr's own
/// majority check already holds a lone standby back ("unable to reach a
/// qualified majority of nodes": one of two standbys visible). With one
/// standby only (here node_2 unregistered, as in a primary-and-one-standby
/// cluster), repmgrd has no sibling to ask and "wins by default": only
/// its `failover_validation_command` stands between it and a second
/// primary. promote-check says no (this node reaches 1/4 voters), repmgrd
/// reruns the election and is refused again, nothing is promoted, and
/// `prod` keeps node_1 throughout. Healed, node_3's repmgrd monitors
/// node_1 again and node_2 is registered again.
fn a_standby_cut_off_alone_is_refused(s: &RepmgrScene) {
    s.unregister_standby(1);
    let from = s.repmgrd_log(2).len();
    let fault = s.now();
    s.cut_voters_of(2, true);
    s.cut_repmgr_view(0, true);
    let since = |s: &RepmgrScene| s.repmgrd_log(2).get(from..).unwrap_or("").to_string();
    // Until refused twice (a rerun), and a rerun's length more: never
    // promoted.
    let mut refused_at = None;
    while refused_at.is_none_or(|at| s.now() < at + Duration::from_secs(5)) {
        assert_eq!(
            s.primaries(),
            vec![0],
            "a lone standby was promoted:\n{}",
            since(s)
        );
        if refused_at.is_none() && since(s).matches(REFUSED).count() >= 2 {
            refused_at = Some(s.now());
        }
        assert!(
            s.now() < fault + Duration::from_secs(60),
            "node_3's repmgrd not refused twice in 60 s:\n{}",
            since(s)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = since(s);
    assert!(
        log.contains("no other sibling nodes") || log.contains("0 active sibling nodes"),
        "node_3's repmgrd counted a sibling:
{log}"
    );
    let said = log
        .lines()
        .find(|l| l.contains("promote-check: no:"))
        .unwrap_or_else(|| {
            panic!(
                "no promote-check line in node_3's repmgrd log:
{log}"
            )
        })
        .trim()
        .to_string();
    assert!(
        said.contains("1/4 voters reached, not a majority"),
        "promote-check refused for another reason: {said}"
    );
    s.cut_repmgr_view(0, false);
    s.cut_voters_of(2, false);
    // repmgrd 5.3 can keep a refused election's state and never go back to
    // monitoring (scene 2 above; the README's repmgr notes): a restart
    // clears it, as an operator's would.
    s.restart_repmgrd(2);
    let watching = "monitoring upstream node \"node_1\" (ID: 1) in normal state";
    let healed = s.repmgrd_log(2).len();
    wait_until(
        Duration::from_secs(60),
        "node_3's repmgrd monitoring node_1 again",
        || {
            s.repmgrd_log(2)
                .get(healed..)
                .is_some_and(|l| l.contains(watching))
        },
    );
    s.register_standby_again(1);
    assert_eq!(s.primaries(), vec![0], "a promotion after the heal");
    let f = s.figures(fault, "node_1", None);
    report(
        "a standby cut off alone (node_3; node_2 unregistered, so repmgrd wins its election by default)",
        &f,
        &format!("node_3: {REFUSED} ({said}), {} times; nothing promoted", log.matches(REFUSED).count()),
    );
    assert_eq!(f.max_up, 1, "never two UP in prod: {f:?}");
    assert!(
        f.outage_but_late_writes < 1.0 && f.late_writes <= 2,
        "writes stopped on node_1: {f:?}"
    );
}

/// Issue 16, three data nodes: a standby still streaming from the fenced
/// zombie is `lagging`, not `standby`, until it follows the new primary.
/// node_3's repmgrd is stopped (it does not follow at once); node_1 is cut
/// as in the zombie phase (its peer and reconciler from the voters, its
/// Postgres from repmgr and the standbys), and repmgrd on node_2 promotes.
/// Then replication from node_1 heals while node_1 stays fenced: node_3's
/// WAL receiver goes back to it, on the old timeline, while node_2 is the
/// legitimate primary. Out of HAProxy's read pool until it follows.
#[test]
fn a_standby_streaming_from_the_fenced_zombie_is_lagging_until_it_follows() {
    let s = RepmgrScene::start("lagging");
    let upstream = |i: usize| {
        s.nodes[i].sql(
            "SELECT coalesce((SELECT sender_host FROM pg_stat_wal_receiver WHERE status = 'streaming'), '-')",
        )
    };
    let word = |i: usize| common::nc(std::net::SocketAddr::new(s.nodes[i].addr.into(), 5431));
    s.haproxy
        .wait_up("stdby", &["node_2", "node_3"], Duration::from_secs(60));
    assert_eq!(upstream(2), s.nodes[0].addr.to_string());

    a_standby_cut_off_alone_is_refused(&s);
    wait_until(
        Duration::from_secs(60),
        "node_3 streaming from node_1 again",
        || upstream(2) == s.nodes[0].addr.to_string(),
    );
    s.haproxy
        .wait_up("stdby", &["node_2", "node_3"], Duration::from_secs(60));

    s.stop_repmgrd(2);
    let fault = s.now();
    s.partition_node_1(true);
    s.cut_repmgr_view(0, true);
    let new = wait_promoted(&s, &[1]);
    // (node_3, cut from node_1's WAL and not following, still serves reads:
    // without maxLagBytes, a standby that is not streaming is `standby`.)
    s.haproxy
        .wait_up("prod", &["node_2"], Duration::from_secs(90));
    // Replication from node_1 heals; repmgr's view of it and its peer stay cut.
    s.cut_repmgr_view(0, false);
    s.cut_repmgr_db(0, true);
    wait_until(
        Duration::from_secs(60),
        "node_3 streaming from node_1 again",
        || upstream(2) == s.nodes[0].addr.to_string(),
    );
    // node_3 streams from node_1, which is fenced: lagging, and out of the
    // read pool.
    let streaming_again = std::time::Instant::now();
    while word(2) != "lagging\n" {
        assert!(
            streaming_again.elapsed() < Duration::from_secs(30),
            "node_3 says {:?} 30 s after it streams from the zombie again (upstream {}); \
             its reconciler:\n{}",
            word(2),
            upstream(2),
            s.reconcile_log_tail(2, 8)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        upstream(2),
        s.nodes[0].addr.to_string(),
        "node_3 streams from node_1"
    );
    assert_eq!(word(0), "fenced\n", "node_1, the zombie");
    wait_until(Duration::from_secs(30), "node_3 out of stdby", || {
        !s.haproxy.up("stdby").contains(&"node_3".to_string())
    });
    let reason = s.reconcile_log_tail(2, 3);
    assert!(
        reason.contains(&format!(
            "node_3: lagging (timeline 2, 3/4 voters; streams on timeline 1 from {}, below the \
             legitimate primary node_2's timeline 2)",
            s.nodes[0].addr
        )),
        "the reconciler says why: {reason}"
    );
    // Watching 5 s: lagging throughout while it streams from node_1.
    let watched = s.now();
    while s.now() < watched + Duration::from_secs(5) {
        assert_ne!(
            word(2),
            "standby\n",
            "node_3 called standby while it streams from the zombie"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // It follows the new primary (as repmgrd would have): standby again,
    // and back in the read pool. `repmgr standby follow`; when node_3 took
    // WAL the zombie wrote after the fork (the writes HAProxy sent it
    // before it was fenced), it cannot attach, and the operator's way is a
    // rewind: `repmgr node rejoin --force-rewind` of the stopped node
    // ([`RepmgrScene::rejoin`], which also starts its repmgrd again).
    // Cut from its upstream, node_3 was still decided for every run (its
    // timeline from its last restartpoint while no WAL receiver ran).
    let before_follow = s.reconcile_log_tail(2, 10_000);
    assert!(
        !before_follow.contains("could not be asked"),
        "a standby without a WAL receiver went undecided:\n{before_follow}"
    );
    let followed = s.rejoin(2, new);
    if followed.contains("NODE REJOIN") {
        assert!(
            followed.contains("cannot attach to follow target"),
            "standby follow failed otherwise:\n{followed}"
        );
    }
    wait_following(&s, new, 2);
    wait_until(Duration::from_secs(30), "node_3 standby again", || {
        word(2) == "standby\n"
    });
    s.haproxy
        .wait_up("stdby", &["node_3"], Duration::from_secs(60));
    settle(&s, "node_2");
    let f = s.figures(fault, "node_2", Some(0));
    report(
        "a standby streaming from the fenced zombie (its repmgrd stopped), then `repmgr standby follow` (or `node rejoin --force-rewind`)",
        &f,
        followed
            .lines()
            .filter(|l| l.contains("cannot attach") || l.contains("NOTICE: NODE REJOIN") || l.contains("STANDBY FOLLOW"))
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("; ")
            .as_str(),
    );
    assert_eq!(f.max_up, 1, "never two UP in prod: {f:?}");
    assert_eq!(
        f.wrong_after_out, 0,
        "writes on the zombie after it left prod: {f:?}"
    );
    s.cut_repmgr_db(0, false);
    s.partition_node_1(false);
}
