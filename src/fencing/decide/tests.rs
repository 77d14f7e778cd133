//! `decide`'s table: each row is a situation an operator can check against
//! DESIGN.md's rules, and the model's counterexamples (C1, C2, C3, C5) are
//! rows of it.
//!
//! The cluster: `node_a` (10.0.0.1) and `node_b` (10.0.0.2) hold data, the
//! witness (10.0.0.9) does not. Three voters. Times are CLOCK_BOOTTIME ms:
//! the run starts at T0, gathering ends at NOW, the lease is 35 s and the
//! wait 41.7 s.

use super::*;
use crate::fencing::claims::Highest;
use std::collections::BTreeSet;

const A: &str = "node_a";
const B: &str = "node_b";
const C: &str = "node_c";
const IP_A: &str = "10.0.0.1";
const IP_B: &str = "10.0.0.2";
const IP_C: &str = "10.0.0.3";
const SYSID: u64 = 7_300_000_000_000_000_001;
const T0: u64 = 100_000;
const NOW: u64 = 100_300;
const LEASE: u64 = 35_000;
const WAIT: u64 = 41_700;
/// HAProxy's term H alone: the planned-switchover wait.
const SHORT_WAIT: u64 = 7_000;

fn id(timeline: u32) -> Identity {
    Identity {
        system_identifier: SYSID,
        timeline,
        postmaster_start_us: 1_000,
    }
}

fn primary(timeline: u32) -> LocalFacts {
    LocalFacts {
        in_recovery: false,
        identity: id(timeline),
        upstream: None,
        upstream_addrs: vec![],
        streaming: false,
        lag_bytes: None,
    }
}

/// A standby whose `sender_host` is `upstream`, an address (what a name
/// resolves to is [`named_standby`]'s).
fn standby_of(upstream: &str, timeline: u32, lag: u64) -> LocalFacts {
    named_standby(upstream, &[upstream], timeline, lag)
}

/// A standby whose `sender_host` is `upstream`, which resolved to
/// `resolved` (nothing: it did not resolve).
fn named_standby(upstream: &str, resolved: &[&str], timeline: u32, lag: u64) -> LocalFacts {
    LocalFacts {
        in_recovery: true,
        identity: id(timeline),
        upstream: Some(upstream.into()),
        upstream_addrs: resolved
            .iter()
            .map(|a| a.parse::<IpAddr>().expect("an address").to_canonical())
            .collect(),
        streaming: true,
        lag_bytes: Some(lag),
    }
}

/// A record holding `timeline` claimed by `nodes` (none: empty record).
fn rec(timeline: u32, nodes: &[&str]) -> Option<Option<Highest>> {
    Some((!nodes.is_empty()).then(|| Highest {
        timeline,
        nodes: nodes.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>(),
    }))
}

/// No usable record: the voter abstains.
const NO_RECORD: Option<Option<Highest>> = None;

fn data(
    node: &str,
    ip: &str,
    is_primary: bool,
    timeline: u32,
    master: &[&str],
    record: Option<Option<Highest>>,
) -> PeerState {
    PeerState::Answered(PeerAnswer {
        node: node.into(),
        ip: ip.into(),
        primary: is_primary,
        // A data node that is not primary is a standby here; `stopped` and
        // `hung` make the other two.
        quiet: !is_primary,
        witness: false,
        timeline,
        system_identifier: SYSID,
        master: master.iter().map(|m| m.to_string()).collect(),
        record,
        clock: up_a_day(&[]),
        addrs: vec![ip.parse().expect("an address")],
        streaming_standbys: vec![],
    })
}

/// A primary at `ip` that lists `standbys` as streaming from it.
fn primary_with(node: &str, ip: &str, timeline: u32, standbys: &[&str]) -> PeerState {
    match data(node, ip, true, timeline, &[ip], rec(timeline, &[node])) {
        PeerState::Answered(a) => PeerState::Answered(PeerAnswer {
            streaming_standbys: standbys.iter().map(|s| s.to_string()).collect(),
            ..a
        }),
        PeerState::Unreachable => unreachable!("data() answers"),
    }
}

/// A data node whose Postgres is not running (refused, no socket).
fn stopped(node: &str, ip: &str, record: Option<Option<Highest>>) -> PeerState {
    PeerState::Answered(PeerAnswer {
        node: node.into(),
        ip: ip.into(),
        primary: false,
        quiet: true,
        witness: false,
        timeline: 0,
        system_identifier: 0,
        master: vec![],
        record,
        clock: up_a_day(&[]),
        addrs: vec![ip.parse().expect("an address")],
        streaming_standbys: vec![],
    })
}

/// A data node whose peer answered but whose Postgres timed out.
fn hung(node: &str, ip: &str, record: Option<Option<Highest>>) -> PeerState {
    PeerState::Answered(PeerAnswer {
        quiet: false,
        ..match stopped(node, ip, record) {
            PeerState::Answered(a) => a,
            PeerState::Unreachable => unreachable!("stopped() answers"),
        }
    })
}

fn witness(master: &[&str], record: Option<Option<Highest>>) -> PeerState {
    PeerState::Answered(PeerAnswer {
        node: "witness".into(),
        ip: "10.0.0.9".into(),
        primary: false,
        quiet: false,
        witness: true,
        timeline: 0,
        system_identifier: SYSID,
        master: master.iter().map(|m| m.to_string()).collect(),
        record,
        clock: up_a_day(&[]),
        addrs: vec!["10.0.0.9".parse().expect("an address")],
        streaming_standbys: vec![],
    })
}

fn down() -> PeerState {
    PeerState::Unreachable
}

const DAY: u64 = 86_400_000;

/// A voter's lease clock: up for a day, having confirmed `ages` (node,
/// ms ago).
fn up_a_day(ages: &[(&str, u64)]) -> Option<LeaseClock> {
    Some(LeaseClock {
        ages_ms: ages.iter().map(|(n, a)| (n.to_string(), *a)).collect(),
        uptime_ms: DAY,
    })
}

/// `state` with its lease clock reporting `ages` (node, ms ago).
fn ages(state: PeerState, ages: &[(&str, u64)]) -> PeerState {
    match state {
        PeerState::Answered(a) => PeerState::Answered(PeerAnswer {
            clock: up_a_day(ages),
            ..a
        }),
        PeerState::Unreachable => PeerState::Unreachable,
    }
}

/// `state` answering without a node name.
fn unnamed(state: PeerState) -> PeerState {
    match state {
        PeerState::Answered(a) => PeerState::Answered(PeerAnswer {
            node: String::new(),
            ..a
        }),
        PeerState::Unreachable => PeerState::Unreachable,
    }
}

/// A voter that started `uptime` ms ago and has confirmed nobody since.
fn started(state: PeerState, uptime: u64) -> PeerState {
    match state {
        PeerState::Answered(a) => PeerState::Answered(PeerAnswer {
            clock: Some(LeaseClock {
                ages_ms: Default::default(),
                uptime_ms: uptime,
            }),
            ..a
        }),
        PeerState::Unreachable => PeerState::Unreachable,
    }
}

struct Row {
    name: &'static str,
    me: (&'static str, &'static str),
    local: Option<LocalFacts>,
    peers: Vec<PeerState>,
    /// The addresses the peers were asked at (`peer<i>:10000` when empty).
    asked: Vec<&'static str>,
    own: Option<Option<Highest>>,
    /// `Some(wait_until)`: the previous verdict was for this postmaster.
    previous: Option<u64>,
    /// A previous verdict for another postmaster (instead of `previous`).
    previous_verdict: Option<Previous>,
    /// This node's own peer's lease clock.
    own_clock: Option<LeaseClock>,
    /// The record this node's own peer returned with its clock, when not
    /// `own` (the record read after the raise).
    own_peer_record: Option<Option<Option<Highest>>>,
    /// W, when not the file's.
    wait_ms_override: Option<u64>,
    voters: usize,
    max_lag: Option<u64>,
    want: Option<VerdictKind>,
    /// A piece of the reason (or of the log line).
    because: &'static str,
}

fn row(name: &'static str) -> Row {
    Row {
        name,
        me: (A, IP_A),
        local: Some(primary(1)),
        peers: vec![],
        asked: vec![],
        own: rec(1, &[A]),
        previous: Some(0),
        previous_verdict: None,
        own_clock: up_a_day(&[]),
        own_peer_record: None,
        wait_ms_override: None,
        voters: 3,
        max_lag: None,
        want: Some(VerdictKind::Production),
        because: "",
    }
}

fn run(r: &Row) -> Decision {
    let peers: Vec<(String, PeerState)> = r
        .peers
        .iter()
        .enumerate()
        .map(|(i, p)| match r.asked.get(i) {
            Some(addr) => (addr.to_string(), p.clone()),
            None => (format!("peer{i}:10000"), p.clone()),
        })
        .collect();
    let previous = r.previous_verdict.clone().or_else(|| {
        r.previous.zip(r.local.as_ref()).map(|(w, l)| Previous {
            identity: l.identity.clone(),
            kind: VerdictKind::Fenced,
            wait_until_ms: Some(w),
            wait_for: None,
        })
    });
    decide(&Inputs {
        me: r.me.0,
        my_ip: r.me.1,
        local: r.local.as_ref(),
        peers: &peers,
        own_record: r.own.as_ref().map(Option::as_ref),
        voters: r.voters,
        previous: previous.as_ref(),
        own_clock: r.own_clock.as_ref(),
        own_peer_record: r
            .own_peer_record
            .as_ref()
            .unwrap_or(&r.own)
            .as_ref()
            .map(Option::as_ref),
        t0_ms: T0,
        now_ms: NOW,
        lease_ms: LEASE,
        wait_ms: r.wait_ms_override.unwrap_or(WAIT),
        short_wait_ms: SHORT_WAIT,
        max_lag_bytes: r.max_lag,
    })
}

fn rows() -> Vec<Row> {
    use VerdictKind::*;
    vec![
        Row {
            peers: vec![data(B, IP_B, false, 1, &[IP_A], rec(1, &[A])), witness(&[IP_A], rec(1, &[A]))],
            because: "node_a: production (timeline 1, 3/3 voters)",
            ..row("healthy: the primary confirms with all three voters")
        },
        Row {
            me: (B, IP_B),
            local: Some(standby_of(IP_A, 1, 0)),
            peers: vec![data(A, IP_A, true, 1, &[IP_A], rec(1, &[A])), witness(&[IP_A], rec(1, &[A]))],
            want: Some(Standby),
            because: "node_b: standby (timeline 1, 3/3 voters; streams from 10.0.0.1)",
            ..row("healthy: the standby streams from the legitimate primary")
        },
        Row {
            me: (B, IP_B),
            local: Some(primary(2)),
            peers: vec![down(), ages(witness(&[IP_B], rec(2, &[B])), &[(A, 0)])],
            own: rec(2, &[B]),
            own_clock: up_a_day(&[(A, 0)]),
            previous: None,
            want: Some(Fenced),
            because: "waiting out node_a's lease as the voters saw it, and HAProxy's term after it (42 s left)",
            ..row("failover: the voters confirmed node_a just now, so the promoted node waits all of W")
        },
        Row {
            me: (B, IP_B),
            local: Some(primary(2)),
            peers: vec![down(), ages(witness(&[IP_B], rec(2, &[B])), &[(A, 20_000)])],
            own: rec(2, &[B]),
            own_clock: up_a_day(&[(A, 20_000)]),
            previous: None,
            want: Some(Fenced),
            because: "waiting out node_a's lease as the voters saw it, and HAProxy's term after it (22 s left)",
            ..row("a machine lost 20 s ago: W less what has passed since the voters last confirmed it")
        },
        Row {
            me: (B, IP_B),
            local: Some(primary(2)),
            peers: vec![
                ages(data(A, IP_A, true, 1, &[IP_A], rec(2, &[B])), &[(A, 0)]),
                ages(witness(&[IP_B], rec(2, &[B])), &[(A, 5_000)]),
            ],
            asked: vec!["10.0.0.1:10000", "10.0.0.9:10000"],
            own: rec(2, &[B]),
            own_clock: up_a_day(&[(A, 60_000)]),
            previous: None,
            voters: 4,
            want: Some(Fenced),
            because: "waiting out node_a's lease as the voters saw it, and HAProxy's term after it (37 s left)",
            ..row("an entry never asked (its name resolved to this node) is still a vote of 0 in the wait: 4 voters configured, 3 in the list, m = 3")
        },
        Row {
            peers: vec![
                unnamed(data(C, IP_C, false, 1, &[IP_A], rec(1, &[A]))),
                unnamed(data(C, IP_C, false, 1, &[IP_A], rec(1, &[A]))),
                down(),
            ],
            asked: vec!["10.0.0.3:10000", "10.0.0.4:10000", "10.0.0.9:10000"],
            voters: 4,
            want: Some(Fenced),
            because: "isolated: 1/4 voters reached",
            ..row("answers without a node name are no votes: two of them cannot make a majority with this node")
        },
        Row {
            me: (B, IP_B),
            local: Some(primary(2)),
            peers: vec![down(), ages(witness(&[IP_B], rec(2, &[B])), &[(A, 60_000)])],
            own: rec(2, &[B]),
            own_clock: up_a_day(&[(A, 60_000)]),
            previous: None,
            because: "node_b: production (timeline 2, 2/3 voters)",
            ..row("a machine lost a minute before the promotion: no wait at all (model P6)")
        },
        Row {
            me: (B, IP_B),
            local: Some(primary(2)),
            peers: vec![down(), ages(witness(&[IP_B], rec(2, &[B])), &[(A, 1_000)])],
            own: rec(2, &[B]),
            own_clock: up_a_day(&[(A, 60_000)]),
            previous: None,
            want: Some(Fenced),
            because: "waiting out node_a's lease as the voters saw it, and HAProxy's term after it (41 s left)",
            ..row("model, mth-smallest-age: one voter (the witness) confirmed node_a a second ago, so its lease may run on")
        },
        Row {
            me: (B, IP_B),
            local: Some(primary(2)),
            peers: vec![ages(hung(A, IP_A, rec(2, &[B])), &[]), ages(witness(&[IP_B], rec(1, &[A])), &[(A, 60_000)])],
            own: rec(2, &[B]),
            own_clock: up_a_day(&[(A, 60_000)]),
            previous: None,
            want: Some(Fenced),
            because: "(42 s left)",
            ..row("a voter that does not hold this claim yet counts as 0, whatever age it reports")
        },
        Row {
            me: (B, IP_B),
            local: Some(primary(2)),
            peers: vec![down(), started(witness(&[IP_B], rec(2, &[B])), 5_000)],
            own: rec(2, &[B]),
            previous: None,
            want: Some(Fenced),
            because: "waiting out the lease of any node the voters do not name (a voter started recently), and HAProxy's term after it (37 s left)",
            ..row("a voter that started 5 s ago cannot vouch for a lease it might have confirmed before")
        },
        Row {
            me: (B, IP_B),
            local: Some(LocalFacts { identity: Identity { postmaster_start_us: 2_000, ..id(2) }, ..primary(2) }),
            peers: vec![ages(data(A, IP_A, true, 1, &[IP_A], rec(2, &[B])), &[(A, 0)]), ages(witness(&[IP_B], rec(2, &[B])), &[(A, 0)])],
            own: rec(2, &[B]),
            own_clock: up_a_day(&[(A, 0)]),
            previous: None,
            previous_verdict: Some(Previous { identity: id(2), kind: Production, wait_until_ms: Some(1), wait_for: None }),
            because: "node_b: production (timeline 2, 3/3 voters)",
            ..row("model P5: the confirmed primary's Postgres restarted: no wait, whatever the voters' clocks")
        },
        Row {
            me: (B, IP_B),
            local: Some(LocalFacts { identity: Identity { postmaster_start_us: 2_000, ..id(2) }, ..primary(2) }),
            peers: vec![ages(data(A, IP_A, true, 1, &[IP_A], rec(2, &[B])), &[(A, 0)]), ages(witness(&[IP_B], rec(2, &[B])), &[(A, 0)])],
            own: rec(2, &[B]),
            own_clock: up_a_day(&[(A, 0)]),
            previous: None,
            previous_verdict: Some(Previous { identity: id(2), kind: Fenced, wait_until_ms: Some(NOW + 9_000), wait_for: None }),
            want: Some(Fenced),
            because: "(42 s left)",
            ..row("a restart during the wait starts the wait again: only a confirmed primary skips it")
        },
        Row {
            me: (B, IP_B),
            local: Some(LocalFacts { identity: Identity { postmaster_start_us: 2_000, ..id(2) }, ..primary(2) }),
            peers: vec![down(), down()],
            own: rec(2, &[B]),
            previous: None,
            previous_verdict: Some(Previous { identity: id(2), kind: Production, wait_until_ms: Some(1), wait_for: None }),
            want: Some(Fenced),
            because: "isolated: 1/3 voters reached",
            ..row("model, restart-without-majority: a restart needs the majority like any run")
        },
        Row {
            me: (B, IP_B),
            local: Some(primary(2)),
            peers: vec![down(), witness(&[IP_B], rec(2, &[B]))],
            own: rec(2, &[B]),
            previous: Some(NOW),
            because: "node_b: production (timeline 2, 2/3 voters)",
            ..row("failover: once the wait is over, the promoted node confirms")
        },
        Row {
            peers: vec![data(B, IP_B, true, 2, &[IP_B], rec(2, &[B])), witness(&[IP_A, IP_B], rec(2, &[B]))],
            want: Some(Fenced),
            because: "node_b holds timeline 2",
            ..row("zombie: the old primary on a lower timeline is fenced")
        },
        Row {
            me: (B, IP_B),
            local: Some(primary(2)),
            peers: vec![data(A, IP_A, true, 1, &[IP_A], rec(1, &[A])), witness(&[IP_A, IP_B], rec(2, &[B]))],
            own: rec(2, &[B]),
            previous: Some(NOW - 1),
            because: "node_b: production (timeline 2, 3/3 voters)",
            ..row("zombie: the new primary is not held back by a witness that sees both")
        },
        Row {
            local: Some(primary(2)),
            peers: vec![data(B, IP_B, true, 2, &[IP_B], rec(2, &[B])), witness(&[IP_A, IP_B], rec(2, &[A, B]))],
            own: rec(2, &[A, B]),
            want: Some(Fenced),
            because: "two primaries claim the highest timeline",
            ..row("two primaries on the same timeline: a tie fences both")
        },
        Row {
            peers: vec![down(), down()],
            want: Some(Fenced),
            because: "isolated: 1/3 voters reached",
            ..row("an isolated primary is fenced")
        },
        Row {
            peers: vec![down(), witness(&[IP_B], rec(2, &[B]))],
            want: Some(Fenced),
            because: "node_b holds timeline 2",
            ..row("C1, non-transitive partition (A-B down, A-W and B-W up): the witness's record fences A")
        },
        Row {
            me: (B, IP_B),
            local: Some(primary(2)),
            peers: vec![down(), witness(&[IP_B], rec(2, &[B]))],
            own: rec(2, &[B]),
            previous: Some(NOW),
            because: "node_b: production (timeline 2, 2/3 voters)",
            ..row("C1, non-transitive partition: B confirms through the witness after its wait")
        },
        Row {
            peers: vec![data(B, IP_B, false, 1, &[IP_A], rec(1, &[A])), down()],
            because: "node_a: production (timeline 1, 2/3 voters)",
            ..row("the witness down: two of three voters are a majority")
        },
        Row {
            peers: vec![down(), witness(&[IP_A], rec(1, &[A]))],
            because: "node_a: production (timeline 1, 2/3 voters)",
            ..row("one data peer down")
        },
        Row {
            me: (C, IP_C),
            local: Some(standby_of(IP_A, 1, 0)),
            peers: vec![data(A, IP_A, true, 1, &[IP_A], rec(1, &[A])), data(B, IP_B, true, 2, &[IP_B], rec(2, &[B])), witness(&[IP_A, IP_B], rec(2, &[B]))],
            own: rec(2, &[B]),
            voters: 4,
            want: Some(Lagging),
            because: "streams from 10.0.0.1 (node_a), not from node_b",
            ..row("a standby streaming from the fenced zombie serves no reads")
        },
        Row {
            me: (C, IP_C),
            local: Some(named_standby("node-a-host", &[IP_A], 1, 0)),
            peers: vec![data(A, IP_A, true, 1, &[IP_A], rec(1, &[A])), data(B, IP_B, true, 2, &[IP_B], rec(2, &[B])), witness(&[IP_A, IP_B], rec(2, &[B]))],
            own: rec(2, &[B]),
            voters: 4,
            want: Some(Lagging),
            because: "streams from node-a-host (node_a), not from node_b",
            ..row("the zombie named by host name is found through the resolver")
        },
        Row {
            me: (C, IP_C),
            local: Some(named_standby("10.8.8.1", &["10.8.8.1"], 1, 0)),
            peers: vec![primary_with(A, IP_A, 1, &[C]), data(B, IP_B, true, 2, &[IP_B], rec(2, &[B])), witness(&[IP_A, IP_B], rec(2, &[B]))],
            own: rec(2, &[B]),
            voters: 4,
            want: Some(Lagging),
            because: "streams from 10.8.8.1 (node_a), not from node_b",
            ..row("the zombie on another of its addresses is found by the standby list")
        },
        Row {
            me: (C, IP_C),
            local: Some(standby_of(IP_A, 1, 0)),
            peers: vec![PeerState::Unreachable, data(B, IP_B, true, 2, &[IP_B], rec(2, &[B])), witness(&[IP_B], rec(2, &[B]))],
            asked: vec!["10.0.0.1:10000", "10.0.0.2:10000", "10.0.0.9:10000"],
            own: rec(2, &[B]),
            voters: 4,
            want: Some(Lagging),
            because: "streams from 10.0.0.1 (the node whose peer 10.0.0.1:10000 did not answer), not from node_b",
            ..row("the zombie whose peer is silent is still not the legitimate primary")
        },
        Row {
            me: (C, IP_C),
            local: Some(named_standby("10.7.7.7", &["10.7.7.7"], 1, 0)),
            peers: vec![PeerState::Unreachable, data(B, IP_B, true, 2, &[IP_B], rec(2, &[B])), witness(&[IP_B], rec(2, &[B]))],
            asked: vec!["10.0.0.1:10000", "10.0.0.2:10000", "10.0.0.9:10000"],
            own: rec(2, &[B]),
            voters: 4,
            want: Some(Lagging),
            because: "streams on timeline 1 from 10.7.7.7, below the legitimate primary node_b's timeline 2",
            ..row("the zombie at an address no peer is known by: its old timeline gives it away")
        },
        Row {
            me: (C, IP_C),
            local: Some(named_standby("10.7.7.7", &["10.7.7.7"], 2, 0)),
            peers: vec![PeerState::Unreachable, data(B, IP_B, true, 2, &[IP_B], rec(2, &[B])), witness(&[IP_B], rec(2, &[B]))],
            asked: vec!["10.0.0.1:10000", "10.0.0.2:10000", "10.0.0.9:10000"],
            own: rec(2, &[B]),
            voters: 4,
            want: Some(Standby),
            because: "streams from 10.7.7.7",
            ..row("an unplaced upstream on the legitimate primary's timeline is not doubted")
        },
        Row {
            me: (B, IP_B),
            local: Some(named_standby("node-a-host", &[IP_A], 1, 0)),
            peers: vec![data(A, IP_A, true, 1, &[IP_A], rec(1, &[A])), witness(&[IP_A], rec(1, &[A]))],
            want: Some(Standby),
            because: "streams from node-a-host",
            ..row("item 18.1: the primary named by host name in primary_conninfo")
        },
        Row {
            me: (B, IP_B),
            local: Some(named_standby("::ffff:10.0.0.1", &[IP_A], 1, 0)),
            peers: vec![data(A, IP_A, true, 1, &[IP_A], rec(1, &[A])), witness(&[IP_A], rec(1, &[A]))],
            want: Some(Standby),
            because: "streams from ::ffff:10.0.0.1",
            ..row("the primary's address in an IPv6 spelling")
        },
        Row {
            me: (B, IP_B),
            local: Some(named_standby("10.8.8.1", &["10.8.8.1"], 1, 0)),
            peers: vec![primary_with(A, IP_A, 1, &[B]), witness(&[IP_A], rec(1, &[A]))],
            want: Some(Standby),
            because: "streams from 10.8.8.1",
            ..row("the primary on another of its addresses lists the standby by name")
        },
        Row {
            me: (B, IP_B),
            local: Some(named_standby("node-a-host", &[], 1, 0)),
            peers: vec![data(A, IP_A, true, 1, &[IP_A], rec(1, &[A])), witness(&[IP_A], rec(1, &[A]))],
            want: Some(Standby),
            because: "streams from node-a-host",
            ..row("a name that does not resolve: a healthy stream is not doubted")
        },
        Row {
            me: (B, IP_B),
            local: Some(standby_of(IP_A, 1, 5_000)),
            peers: vec![data(A, IP_A, true, 1, &[IP_A], rec(1, &[A])), witness(&[IP_A], rec(1, &[A]))],
            max_lag: Some(1_000),
            want: Some(Lagging),
            because: "5000 bytes behind (maxLagBytes 1000)",
            ..row("a lagging standby")
        },
        Row {
            me: (B, IP_B),
            local: Some(LocalFacts { streaming: false, upstream: None, ..standby_of(IP_A, 1, 0) }),
            peers: vec![data(A, IP_A, true, 1, &[IP_A], rec(1, &[A]))],
            max_lag: Some(1_000),
            want: Some(Lagging),
            because: "not streaming",
            ..row("a standby that does not stream, with maxLagBytes set")
        },
        Row {
            peers: vec![
                PeerState::Answered(PeerAnswer {
                    node: "stranger".into(),
                    ip: "10.9.9.9".into(),
                    primary: true,
                    quiet: false,
                    witness: false,
                    timeline: 9,
                    system_identifier: SYSID + 1,
                    master: vec!["10.9.9.9".into()],
                    record: rec(9, &["stranger"]),
                    clock: None,
                    addrs: vec![],
                    streaming_standbys: vec![],
                }),
                witness(&[IP_A], rec(1, &[A])),
            ],
            because: "node_a: production (timeline 1, 2/3 voters)",
            ..row("a node of another cluster is ignored: no candidate, no vote")
        },
        Row {
            me: (B, IP_B),
            local: Some(primary(2)),
            peers: vec![ages(data(A, IP_A, false, 1, &[IP_B], rec(2, &[B])), &[(A, 0)]), ages(witness(&[IP_B], rec(2, &[B])), &[(A, 0)])],
            own: rec(2, &[B]),
            own_clock: up_a_day(&[(A, 0)]),
            previous: None,
            want: Some(Fenced),
            because: "waiting out HAProxy's term after node_a stopped or went into recovery (7 s left)",
            ..row("P4, a planned switchover: the old primary seen in recovery, the wait is H alone")
        },
        Row {
            me: (B, IP_B),
            local: Some(primary(2)),
            peers: vec![stopped(A, IP_A, rec(2, &[B])), ages(witness(&[IP_B], rec(2, &[B])), &[(A, 0)])],
            own: rec(2, &[B]),
            own_clock: up_a_day(&[(A, 0)]),
            previous: None,
            want: Some(Fenced),
            because: "waiting out HAProxy's term after node_a stopped or went into recovery (7 s left)",
            ..row("P4, a planned switchover: the old primary's Postgres stopped (refused), the wait is H alone")
        },
        Row {
            me: (B, IP_B),
            local: Some(primary(2)),
            peers: vec![hung(A, IP_A, rec(2, &[B])), ages(witness(&[IP_B], rec(2, &[B])), &[(A, 0)])],
            own: rec(2, &[B]),
            own_clock: up_a_day(&[(A, 0)]),
            previous: None,
            want: Some(Fenced),
            because: "waiting out node_a's lease as the voters saw it, and HAProxy's term after it (42 s left)",
            ..row("model, shortcut-on-timeout: the old primary's Postgres timed out (it may resume on its lease), the full wait")
        },
        Row {
            me: (B, IP_B),
            local: Some(primary(2)),
            peers: vec![stopped(A, IP_A, rec(2, &[B])), down()],
            own: rec(2, &[B]),
            own_clock: up_a_day(&[(A, 0)]),
            previous: None,
            want: Some(Fenced),
            because: "waiting out HAProxy's term after node_a stopped or went into recovery (7 s left)",
            ..row("a node seen stopped needs only HAProxy's term, even with a voter down (model: lost-peer-and-postmaster)")
        },
        Row {
            me: (B, IP_B),
            local: Some(primary(2)),
            peers: vec![down(), witness(&[IP_B], rec(1, &[A]))],
            own: rec(2, &[B]),
            previous: Some(0),
            want: Some(Fenced),
            because: "1/3 voters hold this node's claim on timeline 2",
            ..row("model, P1 with both data peers down: the witness reached has not verified B's claim, so it does not count for B")
        },
        Row {
            peers: vec![down(), witness(&[IP_A], rec(1, &[A]))],
            own: rec(1, &[A]),
            because: "node_a: production (timeline 1, 2/3 voters)",
            ..row("model, P1 with both data peers down: the same witness holds A's claim, so A alone confirms")
        },
        Row {
            peers: vec![data(B, IP_B, false, 1, &[IP_A], rec(3, &[A])), witness(&[IP_A], rec(1, &[A]))],
            own: rec(3, &[A]),
            want: Some(Fenced),
            because: "the highest claim is this node's timeline 3, but it runs timeline 1",
            ..row("a claim on another timeline (an old backup restored, or a stranger's) legitimises no postmaster")
        },
        Row {
            peers: vec![down(), witness(&[IP_A], rec(2, &[B]))],
            want: Some(Fenced),
            because: "node_b holds timeline 2",
            ..row("C2: B's peer stalled and the witness's cached opinion names only A; its record is never cached")
        },
        Row {
            me: (B, IP_B),
            local: Some(primary(2)),
            peers: vec![down(), witness(&[IP_B], rec(2, &[B]))],
            own: rec(2, &[B]),
            // The lease is over (q + L), HAProxy's term is not.
            previous: Some(NOW + (WAIT - LEASE)),
            want: Some(Fenced),
            because: "waiting out the previous primary's lease (7 s left)",
            ..row("C3: a hung HAProxy check keeps the old primary UP past its lease; the wait covers H")
        },
        Row {
            peers: vec![down(), witness(&[IP_A], NO_RECORD)],
            want: Some(Fenced),
            because: "isolated: 1/3 voters reached",
            ..row("C5: a voter restarted with its record lost casts no vote")
        },
        Row {
            peers: vec![data(B, IP_B, false, 1, &[IP_A], rec(1, &[A])), witness(&[IP_A], rec(1, &[A]))],
            own: None,
            want: Some(Fenced),
            because: "claims init",
            ..row("this node's own record missing: no vote, no confirmation")
        },
        Row {
            peers: vec![data(B, IP_B, false, 1, &[IP_A], rec(1, &[A])), down(), down(), down()],
            voters: 5,
            want: Some(Fenced),
            because: "isolated: 2/5 voters reached",
            ..row("a majority counts all configured voters, not the reachable ones")
        },
        Row {
            peers: vec![data(B, IP_B, false, 1, &["10.0.0.5"], rec(1, &[A])), witness(&["10.0.0.5"], rec(1, &[A]))],
            want: Some(Fenced),
            because: "2 of 3 opinions name another master",
            ..row("a majority of opinions naming another master fences")
        },
        Row {
            local: None,
            peers: vec![down(), down()],
            want: None,
            because: "no decision",
            ..row("postgres could not be asked: nothing changes")
        },
        // Each voter counts once (issue 24, reproduced against the real
        // binary): node_a's neighbours were [itself, node_b, itself].
        Row {
            peers: vec![
                data(A, IP_A, true, 1, &[IP_A], rec(1, &[A])),
                down(),
                data(A, IP_A, true, 1, &[IP_A], rec(1, &[A])),
                down(),
            ],
            asked: vec!["10.0.0.1:10000", "10.0.0.2:10000", "node-a.example:10000", "10.0.0.9:10000"],
            voters: 3,
            want: Some(Fenced),
            because: "isolated: 1/3 voters reached",
            ..row("this node's own peer, listed in its neighbours at two spellings, is not a voter of its own")
        },
        Row {
            peers: vec![
                data(C, IP_C, false, 1, &[IP_A], rec(1, &[A])),
                data(C, IP_C, false, 1, &[IP_A], rec(1, &[A])),
                down(),
                down(),
            ],
            asked: vec!["10.0.0.3:10000", "node-c.example:10000", "10.0.0.2:10000", "10.0.0.9:10000"],
            voters: 4,
            want: Some(Fenced),
            because: "isolated: 2/4 voters reached",
            ..row("split {A, C} from {B, W}: C reached at two addresses is one voter, and 2 of 4 is no majority")
        },
        Row {
            me: (B, IP_B),
            local: Some(primary(2)),
            peers: vec![
                ages(data(A, IP_A, true, 1, &[IP_A], rec(2, &[B])), &[(A, 0)]),
                ages(data(B, IP_B, true, 2, &[IP_B], rec(2, &[B])), &[(A, 60_000)]),
                ages(witness(&[IP_B], rec(2, &[B])), &[(A, 5_000)]),
            ],
            asked: vec!["10.0.0.1:10000", "node-b.example:10000", "10.0.0.9:10000"],
            own: rec(2, &[B]),
            own_clock: up_a_day(&[(A, 60_000)]),
            previous: None,
            voters: 4,
            want: Some(Fenced),
            because: "waiting out node_a's lease as the voters saw it, and HAProxy's term after it (37 s left)",
            ..row("an entry that answers as this node is counted among the voters (m = 3) and as a vote of 0 in the wait: the witness confirmed node_a 5 s ago")
        },
        Row {
            me: (B, IP_B),
            local: Some(primary(2)),
            peers: vec![down(), ages(witness(&[IP_B], rec(2, &[B])), &[(A, 60_000)])],
            own: rec(2, &[B]),
            own_clock: up_a_day(&[(A, 60_000)]),
            own_peer_record: Some(rec(1, &[A])),
            previous: None,
            want: Some(Fenced),
            because: "HAProxy's term after it (42 s left)",
            ..row("this node's own vote in the wait is the record its own peer returned with its ages, not the one read after the raise")
        },
    ]
}

#[test]
fn the_table() {
    for r in rows() {
        let d = run(&r);
        assert_eq!(d.kind, r.want, "{}: {d}", r.name);
        let line = format!("{d} / {}", d.reason);
        assert!(
            line.contains(r.because),
            "{}: {line:?} lacks {:?}",
            r.name,
            r.because
        );
        // pg_hba follows the verdict.
        let (rw, ro) = match d.kind {
            Some(VerdictKind::Production) => (true, true),
            Some(VerdictKind::Standby) => (false, true),
            _ => (false, false),
        };
        assert_eq!(
            (d.read_write_allowed, d.read_only_allowed),
            (rw, ro),
            "{}",
            r.name
        );
        assert_eq!(d.expires_ms, T0 + LEASE, "{}", r.name);
    }
}

#[test]
fn the_wait_starts_at_the_first_majority_and_is_carried_over() {
    let mut r = row("first run of the new primary");
    r.me = (B, IP_B);
    r.local = Some(primary(2));
    r.own = rec(2, &[B]);
    r.peers = vec![down(), ages(witness(&[IP_B], rec(2, &[B])), &[(A, 0)])];
    r.own_clock = up_a_day(&[(A, 0)]);
    r.previous = None;
    let first = run(&r);
    assert_eq!(first.wait_until_ms, Some(NOW + WAIT));
    assert_eq!(
        first.wait_for.as_deref(),
        Some("node_a's lease as the voters saw it, and HAProxy's term after it")
    );
    // The next run carries the same wait_until, whatever the clocks say
    // now; a run without a majority sets none.
    r.previous = Some(NOW + WAIT);
    r.own_clock = up_a_day(&[(A, 60_000)]);
    assert_eq!(run(&r).wait_until_ms, Some(NOW + WAIT));
    r.peers = vec![down(), down()];
    r.previous = None;
    assert_eq!(run(&r).wait_until_ms, None);
}

#[test]
fn observed_claims_are_what_the_record_is_raised_with() {
    let peers = vec![
        (
            "b".to_string(),
            data(B, IP_B, true, 2, &[IP_B], rec(2, &[B])),
        ),
        ("w".to_string(), witness(&[IP_B], rec(3, &[C]))),
        ("x".to_string(), down()),
    ];
    let mut got: Vec<String> = observed_claims(A, Some(&primary(1)), &peers, SYSID)
        .iter()
        .map(ToString::to_string)
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "node_a on timeline 1",
            "node_b on timeline 2",
            "node_b on timeline 2",
            "node_c on timeline 3"
        ]
    );
}

/// The wait is the m-th smallest age over all voters with the claimant's
/// own as 0: the (m − 1)-th smallest of the others, whether or not the
/// claimant's voter can be told apart. With three voters: the smallest
/// age among the two others; with five: the second smallest of four.
#[test]
fn the_claimant_s_lease_is_bounded_by_the_m_minus_1_th_smallest_age() {
    // (voters, ages at the other voters in s, expected wait in s)
    let cases: &[(usize, &[u64], u64)] = &[
        (3, &[10, 30], 42 - 10),
        (3, &[30, 30], 42 - 30),
        (3, &[60, 60], 0),
        (5, &[5, 10, 30, 40], 42 - 10),
        (5, &[50, 10, 60, 70], 0),
    ];
    for (voters, voter_ages, want) in cases {
        let mut r = row("ages");
        r.me = (B, IP_B);
        r.local = Some(primary(2));
        r.own = rec(2, &[B]);
        r.voters = *voters;
        r.previous = None;
        let (own, others) = voter_ages.split_first().expect("one age at least");
        r.own_clock = up_a_day(&[(A, own * 1000)]);
        // node_a itself answers (as a zombie that holds node_b's claim
        // already); its own vote counts as 0.
        r.peers = vec![ages(
            data(A, IP_A, true, 1, &[IP_A], rec(2, &[B])),
            &[(A, 0)],
        )];
        // Each other voter under a name of its own: answers are counted by
        // who gave them.
        r.peers.extend(others.iter().enumerate().map(|(i, a)| {
            match ages(witness(&[IP_B], rec(2, &[B])), &[(A, a * 1000)]) {
                PeerState::Answered(w) => PeerState::Answered(PeerAnswer {
                    node: format!("voter_{i}"),
                    ..w
                }),
                other => other,
            }
        }));
        r.wait_ms_override = Some(42_000);
        let d = run(&r);
        let wait = d.wait_until_ms.expect("a wait") - NOW;
        assert_eq!(
            wait,
            want * 1000,
            "{voters} voters, ages {voter_ages:?}: {d}"
        );
    }
}
