//! Table tests for the data node's and the witness's answers.

use super::*;
use crate::fencing::clock::Now;
use crate::fencing::verdict::{Verdict, VerdictKind};
use crate::pg::facts::StandbyFacts;

fn me(name: &str, ip: &str) -> Me {
    Me {
        node_name: name.into(),
        primary_ip: ip.into(),
        witness: "10.0.0.9:10000".into(),
        config_generation: 7,
        lease_ms: 35_000,
        haproxy_term_ms: 7_000,
    }
}

fn primary_facts() -> NodeFacts {
    NodeFacts {
        in_recovery: false,
        system_identifier: 42,
        timeline: Some(3),
        postmaster_start_us: 1,
        current_lsn: Some(1000),
        standbys: vec![
            StandbyFacts {
                name: "node_2".into(),
                client_addr: Some("127.0.0.1".into()),
                state: "streaming".into(),
                replay_lag_bytes: Some(0),
            },
            StandbyFacts {
                name: "node_3".into(),
                client_addr: Some("10.0.0.3".into()),
                state: "streaming".into(),
                replay_lag_bytes: Some(8),
            },
            StandbyFacts {
                name: "node_4".into(),
                client_addr: Some("10.0.0.4".into()),
                state: "catchup".into(),
                replay_lag_bytes: None,
            },
        ],
        ..NodeFacts::default()
    }
}

fn standby_facts(upstream: Option<&str>) -> NodeFacts {
    NodeFacts {
        in_recovery: true,
        system_identifier: 42,
        timeline: Some(3),
        receive_lsn: Some(1000),
        replay_lsn: Some(900),
        wal_receiver_status: upstream.map(|_| "streaming".into()),
        sender_host: upstream.map(str::to_string),
        ..NodeFacts::default()
    }
}

#[test]
fn data_node_answers() {
    let directory: HashMap<String, String> =
        [("node_2".to_string(), "10.0.0.2".to_string())].into();
    let none = HashMap::new();
    // (name, me, facts, directory, role, master, slaves)
    let p = primary_facts();
    let s = standby_facts(Some("10.0.0.1"));
    let lost = standby_facts(None);
    let via_socket = standby_facts(Some("/var/run/postgresql"));
    let by_name = standby_facts(Some("node_5"));
    let by_name_dir: HashMap<String, String> =
        [("node_5".to_string(), "10.0.0.5".to_string())].into();
    let mut unix_socket_standby = primary_facts();
    unix_socket_standby.standbys = vec![StandbyFacts {
        name: "walreceiver".into(),
        client_addr: None,
        state: "streaming".into(),
        replay_lag_bytes: Some(0),
    }];
    type Case<'a> = (
        &'a str,
        Result<&'a NodeFacts, &'a str>,
        &'a HashMap<String, String>,
        Role,
        Vec<&'a str>,
        Vec<&'a str>,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "primary maps names through the directory",
            Ok(&p),
            &directory,
            Role::Primary,
            vec!["10.0.0.1"],
            vec!["10.0.0.2", "10.0.0.3"],
        ),
        (
            "primary without directory falls back to client addresses, never names",
            Ok(&p),
            &none,
            Role::Primary,
            vec!["10.0.0.1"],
            vec!["10.0.0.3", "127.0.0.1"],
        ),
        (
            "a standby over a Unix socket that nobody named is left out",
            Ok(&unix_socket_standby),
            &none,
            Role::Primary,
            vec!["10.0.0.1"],
            vec![],
        ),
        (
            "standby whose upstream is a socket directory names no master",
            Ok(&via_socket),
            &none,
            Role::Standby,
            vec![],
            vec!["10.0.0.1"],
        ),
        (
            "standby whose upstream is a node name maps it through the directory",
            Ok(&by_name),
            &by_name_dir,
            Role::Standby,
            vec!["10.0.0.5"],
            vec!["10.0.0.1"],
        ),
        (
            "standby names its upstream",
            Ok(&s),
            &none,
            Role::Standby,
            vec!["10.0.0.1"],
            vec!["10.0.0.1"],
        ),
        (
            "standby not streaming names no master",
            Ok(&lost),
            &none,
            Role::Standby,
            vec![],
            vec!["10.0.0.1"],
        ),
        (
            "postgres down",
            Err("no answer within 2s"),
            &none,
            Role::Down,
            vec![],
            vec![],
        ),
    ];
    for (name, facts, dir, role, master, slaves) in cases {
        let a = data_node_answer(
            &me("node_1", "10.0.0.1"),
            facts,
            &VerdictRead::Missing,
            None,
            dir,
        );
        assert_eq!(a.role, role as i32, "{name}");
        assert_eq!(a.master, master, "{name}");
        assert_eq!(a.slaves, slaves, "{name}");
        assert_eq!(
            (a.ip.as_str(), a.node_name.as_str(), a.config_generation),
            ("10.0.0.1", "node_1", 7),
            "{name}"
        );
    }
    let a = data_node_answer(
        &me("node_2", "10.0.0.2"),
        Ok(&s),
        &VerdictRead::Missing,
        None,
        &none,
    );
    assert_eq!(
        (a.timeline, a.system_identifier, a.lag_bytes, a.streaming),
        (3, 42, 100, true)
    );
    let down = data_node_answer(
        &me("node_1", "10.0.0.1"),
        Err("timeout"),
        &VerdictRead::Missing,
        None,
        &none,
    );
    assert_eq!(down.postgres_error, "timeout");
}

#[test]
fn verdicts_are_reported() {
    let now = Now {
        boot_id: "b".into(),
        boottime_ms: 100,
    };
    let fenced = VerdictRead::Present(Verdict {
        kind: VerdictKind::Fenced,
        reason: "node_2 holds timeline 4".into(),
        written: Now {
            boot_id: "b".into(),
            boottime_ms: 50,
        },
        valid_ms: 1000,
        wait_until_ms: None,
        identity: None,
        wait_for: None,
        tie: false,
    });
    let p = primary_facts();
    let a = data_node_answer(
        &me("node_1", "10.0.0.1"),
        Ok(&p),
        &fenced,
        Some(&now),
        &HashMap::new(),
    );
    assert!(a.fenced);
    assert_eq!(
        a.verdict,
        Some(VerdictMsg {
            kind: "fenced".into(),
            reason: "node_2 holds timeline 4".into(),
            fresh: true
        })
    );
    let a = data_node_answer(
        &me("node_1", "10.0.0.1"),
        Ok(&p),
        &VerdictRead::Unreadable("x".into()),
        Some(&now),
        &HashMap::new(),
    );
    assert!(
        a.fenced,
        "an unreadable verdict is reported as a fence, as the responder treats it"
    );
}

fn answered(ip: &str, role: Role, sysid: u64) -> PeerView {
    PeerView::Answered(IKnow {
        ip: ip.into(),
        role: role as i32,
        system_identifier: sysid,
        timeline: 3,
        ..IKnow::default()
    })
}

/// An answer as a Go harepd node sends it: fields 1-6 only.
fn harepd(ip: &str, master: &[&str], slaves: &[&str]) -> PeerView {
    PeerView::Answered(IKnow {
        ip: ip.into(),
        master: master.iter().map(|m| m.to_string()).collect(),
        slaves: slaves.iter().map(|s| s.to_string()).collect(),
        ..IKnow::default()
    })
}

#[test]
fn witness_answers() {
    let w = me("witness", "10.0.0.9");
    let views = |list: Vec<(&str, PeerView)>| -> Vec<(String, PeerView)> {
        list.into_iter().map(|(a, v)| (a.to_string(), v)).collect()
    };
    type Case<'a> = (
        &'a str,
        Vec<(String, PeerView)>,
        Vec<&'a str>,
        Vec<&'a str>,
        Vec<&'a str>,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "healthy",
            views(vec![
                ("n1:1", answered("10.0.0.1", Role::Primary, 42)),
                ("n2:1", answered("10.0.0.2", Role::Standby, 42)),
            ]),
            vec!["10.0.0.1"],
            vec!["10.0.0.2"],
            vec![],
        ),
        (
            "split brain: two masters",
            views(vec![
                ("n1:1", answered("10.0.0.1", Role::Primary, 42)),
                ("n2:1", answered("10.0.0.2", Role::Primary, 42)),
            ]),
            vec!["10.0.0.1", "10.0.0.2"],
            vec![],
            vec![],
        ),
        (
            "one unreachable",
            views(vec![
                ("n1:1", answered("10.0.0.1", Role::Primary, 42)),
                ("n2:1", PeerView::Unreachable(PeerError::Refused)),
            ]),
            vec!["10.0.0.1"],
            vec![],
            vec!["n2:1: connection refused"],
        ),
        (
            "a stranger is ignored",
            views(vec![
                ("n1:1", answered("10.0.0.1", Role::Primary, 42)),
                ("n2:1", answered("10.0.0.2", Role::Standby, 42)),
                ("x:1", answered("10.0.0.7", Role::Primary, 99)),
            ]),
            vec!["10.0.0.1"],
            vec!["10.0.0.2"],
            vec!["x:1: ignored: system identifier 99, not 42"],
        ),
        (
            "a tie ignores nobody",
            views(vec![
                ("n1:1", answered("10.0.0.1", Role::Primary, 42)),
                ("x:1", answered("10.0.0.7", Role::Primary, 99)),
            ]),
            vec!["10.0.0.1", "10.0.0.7"],
            vec![],
            vec![],
        ),
        (
            "down node is observed but names nobody",
            views(vec![("n1:1", answered("10.0.0.1", Role::Down, 0))]),
            vec![],
            vec![],
            vec![],
        ),
        (
            "harepd nodes send no role: their place in their own view tells",
            views(vec![
                ("n1:1", harepd("10.0.0.1", &["10.0.0.1"], &["10.0.0.2"])),
                ("n2:1", harepd("10.0.0.2", &["10.0.0.1"], &["10.0.0.2"])),
            ]),
            vec!["10.0.0.1"],
            vec!["10.0.0.2"],
            vec![],
        ),
    ];
    for (name, views, master, slaves, unreachable) in cases {
        let a = witness_answer(&w, &views);
        assert_eq!(a.role, Role::Witness as i32, "{name}");
        assert_eq!(a.master, master, "{name}");
        assert_eq!(a.slaves, slaves, "{name}");
        let got: Vec<String> = a
            .unreachable
            .iter()
            .map(|u| format!("{}: {}", u.address, u.reason))
            .collect();
        assert_eq!(got, unreachable, "{name}");
    }
}
