//! `promote_check`'s table. The cluster: `node_1` (10.0.0.1, the primary
//! that failed), `node_2` (10.0.0.2, asking) and `node_3` (10.0.0.3) hold
//! data; the witness (10.0.0.9) does not. Four voters, a majority is 3.

use std::collections::BTreeMap;

use super::*;
use crate::fencing::claims::Highest;
use crate::fencing::decide::LeaseClock;

const SYSID: u64 = 7_300_000_000_000_000_001;
const WATCHDOG: u64 = 15_000;

fn answer(node: &str, ip: &str, primary: bool, timeline: u32, master: &[&str]) -> PeerAnswer {
    PeerAnswer {
        node: node.into(),
        ip: ip.into(),
        primary,
        quiet: !primary,
        witness: node == "witness",
        timeline,
        system_identifier: SYSID,
        master: master.iter().map(|m| m.to_string()).collect(),
        record: None,
        clock: Some(LeaseClock {
            ages_ms: BTreeMap::new(),
            uptime_ms: 86_400_000,
        }),
        addrs: vec![],
        streaming_standbys: vec![],
    }
}

fn confirmed(mut a: PeerAnswer, claimant: &str, age_ms: u64) -> PeerAnswer {
    if let Some(clock) = a.clock.as_mut() {
        clock.ages_ms.insert(claimant.into(), age_ms);
    }
    a
}

fn own() -> PeerAnswer {
    answer("node_2", "10.0.0.2", false, 1, &[])
}
fn node_3() -> PeerAnswer {
    answer("node_3", "10.0.0.3", false, 1, &[])
}
fn witness() -> PeerAnswer {
    answer("witness", "10.0.0.9", false, 1, &[])
}

fn peers(list: Vec<Option<PeerAnswer>>) -> Vec<(String, PeerState)> {
    list.into_iter()
        .enumerate()
        .map(|(n, a)| {
            (
                format!("10.0.0.{n}:10001"),
                a.map_or(PeerState::Unreachable, PeerState::Answered),
            )
        })
        .collect()
}

fn check(own: Option<PeerAnswer>, others: Vec<Option<PeerAnswer>>) -> Checked {
    check_on(1, own, others)
}

/// [`check`] with node_2's own timeline (0: it cannot tell).
fn check_on(timeline: u32, own: Option<PeerAnswer>, others: Vec<Option<PeerAnswer>>) -> Checked {
    check_with(timeline, false, own, peers(others))
}

/// [`check_on`] with maintenance, and the peers as asked.
fn check_with(
    timeline: u32,
    maintenance: bool,
    own: Option<PeerAnswer>,
    peers: Vec<(String, PeerState)>,
) -> Checked {
    promote_check(&Inputs {
        me: "node_2",
        my_ip: "10.0.0.2",
        system_identifier: SYSID,
        timeline,
        voters: 4,
        own: own.as_ref(),
        peers: &peers,
        watchdog_ms: WATCHDOG,
        maintenance,
    })
}

/// What the check returns.
type Checked = Result<usize, Refusal>;

#[test]
fn the_table() {
    let no_majority = |reached| Err(Refusal::NoMajority { reached, voters: 4 });
    let old_primary_long_ago = confirmed(witness(), "node_1", 60_000);
    let asked = |list: Vec<(&str, Option<PeerAnswer>)>| -> Vec<(String, PeerState)> {
        list.into_iter()
            .map(|(addr, a)| {
                (
                    addr.to_string(),
                    a.map_or(PeerState::Unreachable, PeerState::Answered),
                )
            })
            .collect()
    };
    let rows: Vec<(&str, Checked, Checked)> = vec![
        (
            "drained (maintenance on): promoted, it would answer `maintenance`",
            check_with(
                1,
                true,
                Some(own()),
                peers(vec![None, Some(node_3()), Some(witness())]),
            ),
            Err(Refusal::Maintenance),
        ),
        (
            "its own peer listed among the neighbours twice more is one voter, not three",
            check_with(
                1,
                false,
                Some(own()),
                asked(vec![
                    ("10.0.0.1:10001", None),
                    ("10.0.0.2:10001", Some(own())),
                    ("node-2.example:10001", Some(own())),
                    ("10.0.0.9:10001", None),
                ]),
            ),
            no_majority(1),
        ),
        (
            "node_3 reached at two addresses is one voter: 2 of 4",
            check_with(
                1,
                false,
                Some(own()),
                asked(vec![
                    ("10.0.0.1:10001", None),
                    ("10.0.0.3:10001", Some(node_3())),
                    ("node-3.example:10001", Some(node_3())),
                    ("10.0.0.9:10001", None),
                ]),
            ),
            no_majority(2),
        ),
        (
            "the primary's machine lost: the rest all reached, none sees it",
            check(Some(own()), vec![None, Some(node_3()), Some(witness())]),
            Ok(3),
        ),
        (
            "its lease confirmed long ago (over watchDog) does not stop it",
            check(
                Some(own()),
                vec![None, Some(node_3()), Some(old_primary_long_ago)],
            ),
            Ok(3),
        ),
        (
            "alone on the minority side: itself and no one else",
            check(Some(own()), vec![None, None, None]),
            no_majority(1),
        ),
        (
            "itself and the witness: 2 of 4 is not a majority",
            check(Some(own()), vec![None, None, Some(witness())]),
            no_majority(2),
        ),
        (
            "its own peer down: its vote (record and clock) is unknown",
            check(None, vec![None, Some(node_3()), Some(witness())]),
            no_majority(2),
        ),
        (
            "the witness still sees node_1 as a primary (a non-transitive split)",
            check(
                Some(own()),
                vec![
                    None,
                    Some(node_3()),
                    Some(answer("witness", "10.0.0.9", false, 1, &["10.0.0.1"])),
                ],
            ),
            Err(Refusal::SeesPrimary {
                voter: "witness".into(),
                master: "10.0.0.1".into(),
            }),
        ),
        (
            "node_3 still streams from node_1",
            check(
                Some(own()),
                vec![
                    None,
                    Some(answer("node_3", "10.0.0.3", false, 1, &["10.0.0.1"])),
                    Some(witness()),
                ],
            ),
            Err(Refusal::SeesPrimary {
                voter: "node_3".into(),
                master: "10.0.0.1".into(),
            }),
        ),
        (
            "node_1's peer answers, and its Postgres is a primary",
            check(
                Some(own()),
                vec![
                    Some(answer("node_1", "10.0.0.1", true, 1, &["10.0.0.1"])),
                    Some(node_3()),
                    Some(witness()),
                ],
            ),
            Err(Refusal::PrimaryAlive {
                node: "node_1".into(),
                timeline: 1,
            }),
        ),
        (
            "node_3 was promoted already (by hand, or by another repmgrd)",
            check(
                Some(own()),
                vec![
                    None,
                    Some(answer("node_3", "10.0.0.3", true, 2, &["10.0.0.3"])),
                    Some(witness()),
                ],
            ),
            Err(Refusal::PrimaryAlive {
                node: "node_3".into(),
                timeline: 2,
            }),
        ),
        (
            "an old primary on a lower timeline, fenced, does not stop it",
            check_on(
                2,
                Some(own()),
                vec![
                    Some(answer("node_1", "10.0.0.1", true, 1, &["10.0.0.1"])),
                    Some(node_3()),
                    Some(answer("witness", "10.0.0.9", false, 2, &["10.0.0.1"])),
                ],
            ),
            Ok(4),
        ),
        (
            "its own timeline unknown (no WAL receiver): the voters' records tell \
             that node_1 on timeline 1 is an old primary",
            {
                let with_record = |a: PeerAnswer| PeerAnswer {
                    record: Some(Some(Highest {
                        timeline: 2,
                        nodes: ["node_3".to_string()].into(),
                    })),
                    ..a
                };
                check_on(
                    0,
                    Some(with_record(own())),
                    vec![
                        Some(answer("node_1", "10.0.0.1", true, 1, &["10.0.0.1"])),
                        None,
                        Some(with_record(answer(
                            "witness",
                            "10.0.0.9",
                            false,
                            2,
                            &["10.0.0.1"],
                        ))),
                    ],
                )
            },
            Ok(3),
        ),
        (
            "its own timeline unknown, and no record above timeline 1: node_1 is alive",
            check_on(
                0,
                Some(own()),
                vec![
                    Some(answer("node_1", "10.0.0.1", true, 1, &["10.0.0.1"])),
                    None,
                    Some(witness()),
                ],
            ),
            Err(Refusal::PrimaryAlive {
                node: "node_1".into(),
                timeline: 1,
            }),
        ),
        (
            "the witness confirmed node_1's claim 3 s ago: its reconciler runs",
            check(
                Some(own()),
                vec![
                    None,
                    Some(node_3()),
                    Some(confirmed(witness(), "node_1", 3_000)),
                ],
            ),
            Err(Refusal::RecentClaim {
                voter: "witness".into(),
                claimant: "node_1".into(),
                age_ms: 3_000,
                watchdog_ms: WATCHDOG,
            }),
        ),
        (
            "its own peer confirmed node_1 recently",
            check(
                Some(confirmed(own(), "node_1", 14_999)),
                vec![None, Some(node_3()), Some(witness())],
            ),
            Err(Refusal::RecentClaim {
                voter: "node_2".into(),
                claimant: "node_1".into(),
                age_ms: 14_999,
                watchdog_ms: WATCHDOG,
            }),
        ),
        (
            "a voter of another cluster is not reached",
            check(
                Some(own()),
                vec![
                    None,
                    Some(PeerAnswer {
                        system_identifier: 42,
                        ..node_3()
                    }),
                    Some(witness()),
                ],
            ),
            no_majority(2),
        ),
        (
            "a voter that names this node as master is fine",
            check(
                Some(own()),
                vec![
                    None,
                    Some(answer("node_3", "10.0.0.3", false, 1, &["10.0.0.2"])),
                    Some(witness()),
                ],
            ),
            Ok(3),
        ),
    ];
    for (what, got, want) in rows {
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn refusals_read_as_status_does() {
    let r = Refusal::RecentClaim {
        voter: "witness".into(),
        claimant: "node_1".into(),
        age_ms: 3_000,
        watchdog_ms: WATCHDOG,
    };
    assert_eq!(
        r.to_string(),
        "witness confirmed node_1's claim 3.0 s ago (within watchDog, 15 s): node_1's reconciler is running"
    );
    assert_eq!(
        Refusal::NoMajority {
            reached: 1,
            voters: 4
        }
        .to_string(),
        "1/4 voters reached, not a majority (3 needed): this node may be on the minority side of a split"
    );
}
