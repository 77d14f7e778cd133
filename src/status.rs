//! `pgsql-state status`: the whole cluster in one table, like
//! `patronictl list`. Building rows and rendering are pure; asking the
//! peers and the 5431 ports happens in the command.

use serde::Serialize;

use crate::peer::client::PeerView;
use crate::peer::proto::{IKnow, Role};

/// One node's line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The node's name (`?` when unknown, `witness` for an unreachable witness).
    pub node: String,
    /// The peer address asked (`host:port`).
    pub peer: String,
    /// The replication address (`primaryIP`).
    pub ip: String,
    /// primary, standby, witness, down, or unreachable.
    pub role: String,
    /// The node's timeline, when known.
    pub timeline: Option<u32>,
    /// A standby's replay lag in bytes.
    pub lag_bytes: Option<u64>,
    /// The reconciler's verdict, `(stale)` when not fresh, `-` when none.
    pub verdict: String,
    /// The node's claim record for the cluster: the highest timeline
    /// claimed and by whom, `TIE` when two claim it, `none` when empty,
    /// `NO RECORD` when the node casts no vote, `-` when unknown.
    pub claim: String,
    /// What the node's health-check port answered (`-` for the witness).
    pub check: String,
    /// The masters this node sees.
    pub sees_master: Vec<String>,
    /// What can be left of this node's lease as the voters' clocks tell
    /// it (ms): L' less the (m − 1)-th smallest age of their last
    /// confirmations of it. `None` when no voter confirmed it within L'.
    pub lease_left_ms: Option<u64>,
    /// Why the node could not be asked, or Postgres's trouble.
    pub problem: Option<String>,
}

/// The peers `status` asks: this node, the neighbours, and the witness,
/// each address once, in that order.
pub fn peers_to_ask(own: &str, neighbours: &[String], witness: Option<&str>) -> Vec<String> {
    let mut peers: Vec<String> = Vec::new();
    for addr in std::iter::once(own)
        .chain(neighbours.iter().map(String::as_str))
        .chain(witness)
    {
        if !peers.iter().any(|p| p == addr) {
            peers.push(addr.to_string());
        }
    }
    peers
}

/// The table's rows from the peers' views. `check` is `?` where the
/// node's health-check port should be asked: every data node, even one
/// whose peer or Postgres is down, since its responder may still answer;
/// never the witness (`witness` is its configured address).
///
/// A node reached at two addresses (say its bind address and its entry in
/// `neighbours`) is listed once.
pub fn rows(
    views: &[(String, PeerView)],
    witness: Option<&str>,
    lease_ms: u64,
    voters: usize,
) -> Vec<Row> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    let mut rows: Vec<Row> = views
        .iter()
        .filter(|(_, view)| match view {
            PeerView::Answered(a) if !a.node_name.is_empty() => {
                let key = (a.node_name.as_str(), a.ip.as_str());
                let first = !seen.contains(&key);
                seen.push(key);
                first
            }
            _ => true,
        })
        .map(|(peer, view)| match view {
            PeerView::Answered(a) => row_of(peer, a).printable(),
            PeerView::Unreachable(e) => Row {
                node: if witness == Some(peer.as_str()) {
                    "witness".into()
                } else {
                    "?".into()
                },
                peer: peer.clone(),
                ip: peer
                    .rsplit_once(':')
                    .map_or(peer.as_str(), |(h, _)| h)
                    .to_string(),
                role: "unreachable".into(),
                timeline: None,
                lag_bytes: None,
                verdict: "-".into(),
                claim: "-".into(),
                check: if witness == Some(peer.as_str()) {
                    "-".into()
                } else {
                    "?".into()
                },
                sees_master: vec![],
                lease_left_ms: None,
                // The error may quote the peer's own message.
                problem: Some(crate::error_text::printable(&e.to_string()).into_owned()),
            },
        })
        .collect();
    for row in &mut rows {
        if row.role != "witness" && row.node != "?" {
            row.lease_left_ms = lease_left_ms(views, &row.node, lease_ms, voters);
        }
    }
    rows
}

/// What can be left of `node`'s lease as the voters that answered
/// `views` tell it: L' less the m-th smallest of their ages of its last
/// confirmation, its own and every silent voter's counting as 0 (as the
/// reconciler's wait counts them), m a majority of the `voters`
/// configured. Each voter counts once, by its node name: one reached at
/// two addresses does not count its age twice. `None` when nothing is
/// left.
pub fn lease_left_ms(
    views: &[(String, PeerView)],
    node: &str,
    lease_ms: u64,
    voters: usize,
) -> Option<u64> {
    let mut seen: Vec<&str> = Vec::new();
    let mut ages: Vec<u64> = Vec::new();
    for (_, view) in views {
        ages.push(match view {
            PeerView::Answered(a) if !a.node_name.is_empty() => {
                if seen.contains(&a.node_name.as_str()) {
                    // Counted once; the configured entry stays a voter
                    // that may still confirm anyone (0).
                    ages.push(0);
                    continue;
                }
                seen.push(&a.node_name);
                if a.node_name == node {
                    0
                } else {
                    crate::peer::opinion::lease_clock(a).map_or(0, |c| c.age_of(Some(node)))
                }
            }
            _ => 0,
        });
    }
    // Every configured voter not among the views (an entry not asked)
    // counts as 0 too: m is a majority of all of them.
    ages.resize(ages.len().max(voters), 0);
    ages.sort_unstable();
    let m = voters / 2 + 1;
    let age = ages.get(m - 1).copied().unwrap_or(0);
    Some(lease_ms.saturating_sub(age)).filter(|left| *left > 0)
}

impl Row {
    /// The row with every text a peer sent made printable: names,
    /// addresses, verdicts and their reasons, claims and messages all came
    /// from the network, and a terminal escape in one could hide a line
    /// (a SPLIT BRAIN among them) from the operator.
    fn printable(self) -> Row {
        let p = |text: String| crate::error_text::printable(&text).into_owned();
        Row {
            node: p(self.node),
            peer: self.peer,
            ip: p(self.ip),
            role: self.role,
            timeline: self.timeline,
            lag_bytes: self.lag_bytes,
            verdict: p(self.verdict),
            claim: p(self.claim),
            check: self.check,
            sees_master: self.sees_master.into_iter().map(p).collect(),
            lease_left_ms: self.lease_left_ms,
            problem: self.problem.map(p),
        }
    }
}

fn row_of(peer: &str, a: &IKnow) -> Row {
    let role = crate::peer::opinion::role_of(a);
    let data = role != Role::Witness;
    Row {
        node: if a.node_name.is_empty() {
            "?".into()
        } else {
            a.node_name.clone()
        },
        peer: peer.to_string(),
        ip: a.ip.clone(),
        role: role.as_str_name().to_lowercase(),
        timeline: (a.timeline != 0).then_some(a.timeline),
        lag_bytes: (role == Role::Standby).then_some(a.lag_bytes),
        verdict: match &a.verdict {
            Some(v) if v.fresh => v.kind.clone(),
            Some(v) => format!("{} (stale)", v.kind),
            None => "-".into(),
        },
        claim: claim_text(a),
        check: if data { "?".into() } else { "-".into() },
        sees_master: a.master.clone(),
        lease_left_ms: None,
        problem: if !a.postgres_error.is_empty() {
            Some(format!("postgres: {}", a.postgres_error))
        } else {
            // Why a fresh verdict holds this node back, in the reconciler's words.
            a.verdict
                .as_ref()
                .filter(|v| v.fresh && matches!(v.kind.as_str(), "fenced" | "lagging"))
                .map(|v| v.reason.clone())
        },
    }
}

/// A peer's claim record in a few words.
fn claim_text(a: &IKnow) -> String {
    if a.record_catching_up {
        return "CATCHING UP".into();
    }
    if !a.record_ok {
        return if a.claim_system_identifier == 0 && a.claim_nodes.is_empty() && a.role == 0 {
            "-".into()
        } else {
            "NO RECORD".into()
        };
    }
    match a.claim_nodes.as_slice() {
        [] => "none".into(),
        [one] => format!("{} {one}", a.claim_timeline),
        many => format!("{} {} TIE", a.claim_timeline, many.join(",")),
    }
}

/// What changed between two tables, one line per change, for `status
/// --watch`: a node appearing or going, and a node's role, verdict or
/// answer on 5431 changing (`node_2: 5431 standby -> production`).
pub fn changes(before: &[Row], after: &[Row]) -> Vec<String> {
    let key = |r: &Row| format!("{} ({})", r.node, r.peer);
    let mut out = Vec::new();
    for new in after {
        match before.iter().find(|old| key(old) == key(new)) {
            None => out.push(format!("{}: appeared as {}", key(new), new.role)),
            Some(old) => {
                for (what, a, b) in [
                    ("role", &old.role, &new.role),
                    ("verdict", &old.verdict, &new.verdict),
                    ("5431", &old.check, &new.check),
                    ("claim", &old.claim, &new.claim),
                ] {
                    if a != b {
                        out.push(format!("{}: {what} {a} -> {b}", new.node));
                    }
                }
            }
        }
    }
    for old in before {
        if !after.iter().any(|new| key(new) == key(old)) {
            out.push(format!("{}: gone", key(old)));
        }
    }
    out
}

/// One line about the whole cluster: how many answered, and any split
/// brain. A primary whose fresh verdict is `fenced` is not serving: it is
/// named apart, with what to do when it is an old one (a lower timeline
/// than the highest primary's), as when a lost primary boots again.
pub fn summary(rows: &[Row]) -> String {
    let answered = rows.iter().filter(|r| r.role != "unreachable").count();
    let primaries: Vec<&Row> = rows.iter().filter(|r| r.role == "primary").collect();
    let mut serving: Vec<&str> = primaries
        .iter()
        .filter(|r| r.verdict != "fenced")
        .map(|r| r.ip.as_str())
        .collect();
    serving.sort();
    let fenced: Vec<&&Row> = primaries.iter().filter(|r| r.verdict == "fenced").collect();
    let top = primaries.iter().filter_map(|r| r.timeline).max();
    let mut line = format!("{answered}/{} nodes answered; ", rows.len());
    match serving.len() {
        0 => line.push_str("NO PRIMARY"),
        1 => line.push_str(&format!("primary {}", serving[0])),
        _ => line.push_str(&format!(
            "SPLIT BRAIN: {} primaries ({})",
            serving.len(),
            serving.join(", ")
        )),
    }
    for r in fenced {
        let old = matches!((r.timeline, top), (Some(t), Some(top)) if t < top);
        if old {
            line.push_str(&format!(
                "; {} ({}) is an old primary on timeline {}, fenced: make it a standby of \
                 the new primary (`repmgr node rejoin --force-rewind`, or pg_rewind) or stop it",
                r.node,
                r.ip,
                r.timeline.unwrap_or(0)
            ));
        } else {
            line.push_str(&format!("; {} ({}) is a primary, fenced", r.node, r.ip));
        }
    }
    if let Some(r) = rows.iter().find(|r| r.sees_master.len() > 1) {
        line.push_str(&format!(
            "; {} sees {} masters",
            r.node,
            r.sees_master.len()
        ));
    }
    line
}

/// The table, with a header and aligned columns.
pub fn render(rows: &[Row]) -> String {
    let header = [
        "NODE",
        "PEER",
        "ADDRESS",
        "ROLE",
        "TL",
        "LAG",
        "VERDICT",
        "CLAIM",
        "5431 SAYS",
        "SEES MASTER",
        "LEASE LEFT",
        "PROBLEM",
    ];
    let cells: Vec<[String; 12]> = rows
        .iter()
        .map(|r| {
            [
                r.node.clone(),
                r.peer.clone(),
                r.ip.clone(),
                r.role.clone(),
                r.timeline.map_or("-".into(), |t| t.to_string()),
                r.lag_bytes.map_or("-".into(), |l| l.to_string()),
                r.verdict.clone(),
                r.claim.clone(),
                r.check.clone(),
                if r.sees_master.is_empty() {
                    "-".into()
                } else {
                    r.sees_master.join(",")
                },
                r.lease_left_ms
                    .map_or("-".into(), |ms| format!("{} s", ms.div_ceil(1000))),
                r.problem.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cols: Vec<&str>| -> String {
        let parts: Vec<String> = cols
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        parts.join("  ").trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::client::PeerError;
    use crate::peer::proto::Verdict;

    fn node(name: &str, ip: &str, role: Role, master: &[&str]) -> PeerView {
        PeerView::Answered(IKnow {
            node_name: name.into(),
            ip: ip.into(),
            role: role as i32,
            timeline: 3,
            lag_bytes: 16,
            master: master.iter().map(|m| m.to_string()).collect(),
            ..IKnow::default()
        })
    }

    #[test]
    fn rows_summary_and_table() {
        let views = vec![
            (
                "10.0.0.1:10000".to_string(),
                node("node_1", "10.0.0.1", Role::Primary, &["10.0.0.1"]),
            ),
            (
                "10.0.0.2:10000".to_string(),
                node("node_2", "10.0.0.2", Role::Standby, &["10.0.0.1"]),
            ),
            (
                "10.0.0.9:10000".to_string(),
                PeerView::Unreachable(PeerError::Refused),
            ),
        ];
        let r = rows(&views, Some("10.0.0.9:10000"), 35_000, 3);
        assert_eq!(r[0].role, "primary");
        assert_eq!(
            (r[0].check.as_str(), r[2].check.as_str(), r[2].node.as_str()),
            ("?", "-", "witness")
        );
        assert_eq!(r[0].lag_bytes, None);
        assert_eq!(r[1].lag_bytes, Some(16));
        assert_eq!(r[2].role, "unreachable");
        assert_eq!(r[2].problem.as_deref(), Some("connection refused"));
        assert_eq!(summary(&r), "2/3 nodes answered; primary 10.0.0.1");
        let table = render(&r);
        assert!(
            table.starts_with("NODE     PEER            ADDRESS   ROLE         TL"),
            "{table}"
        );
        assert_eq!(table.lines().count(), 4);
    }

    #[test]
    fn claims_and_the_reason_a_node_is_held_back_show() {
        let with = |record_ok: bool, timeline: u32, nodes: &[&str], role: Role| IKnow {
            node_name: "n".into(),
            role: role as i32,
            record_ok,
            claim_system_identifier: 7,
            claim_timeline: timeline,
            claim_nodes: nodes.iter().map(|n| n.to_string()).collect(),
            ..IKnow::default()
        };
        let cases = [
            (with(true, 2, &["node_2"], Role::Primary), "2 node_2"),
            (
                with(true, 2, &["node_1", "node_2"], Role::Primary),
                "2 node_1,node_2 TIE",
            ),
            (with(true, 0, &[], Role::Witness), "none"),
            (with(false, 0, &[], Role::Standby), "NO RECORD"),
            (IKnow::default(), "-"),
        ];
        for (answer, want) in cases {
            assert_eq!(claim_text(&answer), want);
        }
        let mut fenced = with(true, 1, &["node_1"], Role::Primary);
        fenced.verdict = Some(Verdict {
            kind: "fenced".into(),
            reason: "waiting out the previous primary's lease (12 s left)".into(),
            fresh: true,
        });
        let r = rows(
            &[("a:1".to_string(), PeerView::Answered(fenced))],
            None,
            35_000,
            3,
        );
        assert_eq!(
            r[0].problem.as_deref(),
            Some("waiting out the previous primary's lease (12 s left)")
        );
        assert!(render(&r).contains("CLAIM"));
    }

    #[test]
    fn watch_reports_each_change() {
        let views = |check: &str, role: Role| {
            let mut r = rows(
                &[(
                    "10.0.0.2:10000".to_string(),
                    node("node_2", "10.0.0.2", role, &["10.0.0.2"]),
                )],
                None,
                35_000,
                3,
            );
            r[0].check = check.to_string();
            r
        };
        let before = views("standby", Role::Standby);
        assert!(changes(&before, &before).is_empty());
        let after = views("fenced", Role::Primary);
        assert_eq!(
            changes(&before, &after),
            [
                "node_2: role standby -> primary",
                "node_2: 5431 standby -> fenced"
            ]
        );
        assert_eq!(changes(&before, &[]), ["node_2 (10.0.0.2:10000): gone"]);
        assert_eq!(
            changes(&[], &before),
            ["node_2 (10.0.0.2:10000): appeared as standby"]
        );
    }

    #[test]
    fn each_node_is_listed_once() {
        let peers = peers_to_ask(
            "10.0.0.1:10000",
            &[
                "10.0.0.1:10000".into(),
                "10.0.0.2:10000".into(),
                "10.0.0.2:10000".into(),
            ],
            Some("10.0.0.9:10000"),
        );
        assert_eq!(
            peers,
            ["10.0.0.1:10000", "10.0.0.2:10000", "10.0.0.9:10000"]
        );
        // The same node answering at two addresses is one row.
        let views = vec![
            (
                "0.0.0.0:10000".to_string(),
                node("node_1", "10.0.0.1", Role::Primary, &["10.0.0.1"]),
            ),
            (
                "10.0.0.1:10000".to_string(),
                node("node_1", "10.0.0.1", Role::Primary, &["10.0.0.1"]),
            ),
            (
                "10.0.0.2:10000".to_string(),
                node("node_2", "10.0.0.2", Role::Standby, &["10.0.0.1"]),
            ),
        ];
        let r = rows(&views, None, 35_000, 3);
        let names: Vec<&str> = r.iter().map(|r| r.node.as_str()).collect();
        assert_eq!(names, ["node_1", "node_2"]);
        assert_eq!(summary(&r), "2/2 nodes answered; primary 10.0.0.1");
    }

    #[test]
    fn split_brain_and_verdicts_show() {
        let mut fenced = IKnow {
            node_name: "node_1".into(),
            ip: "10.0.0.1".into(),
            role: Role::Primary as i32,
            ..IKnow::default()
        };
        fenced.verdict = Some(Verdict {
            kind: "fenced".into(),
            reason: "x".into(),
            fresh: false,
        });
        let views = vec![
            ("a:1".to_string(), PeerView::Answered(fenced)),
            (
                "b:1".to_string(),
                node(
                    "node_2",
                    "10.0.0.2",
                    Role::Primary,
                    &["10.0.0.1", "10.0.0.2"],
                ),
            ),
        ];
        let r = rows(&views, None, 35_000, 3);
        assert_eq!(r[0].verdict, "fenced (stale)");
        assert_eq!(summary(&r), "2/2 nodes answered; SPLIT BRAIN: 2 primaries (10.0.0.1, 10.0.0.2); node_2 sees 2 masters");
    }

    /// A lost primary booted again as a primary (repmgr #820): fenced by
    /// its fresh verdict, so not a split brain, and the line says what to
    /// do with it. Unfenced, it is one.
    #[test]
    fn an_old_primary_fenced_is_named_with_what_to_do() {
        let with = |kind: &str, fresh: bool| {
            let mut old = IKnow {
                node_name: "node_1".into(),
                ip: "10.0.0.1".into(),
                role: Role::Primary as i32,
                timeline: 1,
                master: vec!["10.0.0.1".into()],
                ..IKnow::default()
            };
            old.verdict = Some(Verdict {
                kind: kind.into(),
                reason: "node_2 holds timeline 2".into(),
                fresh,
            });
            let mut new = IKnow {
                node_name: "node_2".into(),
                ip: "10.0.0.2".into(),
                role: Role::Primary as i32,
                timeline: 2,
                master: vec!["10.0.0.2".into()],
                ..IKnow::default()
            };
            new.verdict = Some(Verdict {
                kind: "production".into(),
                reason: String::new(),
                fresh: true,
            });
            let views = vec![
                ("a:1".to_string(), PeerView::Answered(old)),
                ("b:1".to_string(), PeerView::Answered(new)),
            ];
            summary(&rows(&views, None, 35_000, 3))
        };
        assert_eq!(
            with("fenced", true),
            "2/2 nodes answered; primary 10.0.0.2; node_1 (10.0.0.1) is an old primary on \
             timeline 1, fenced: make it a standby of the new primary (`repmgr node rejoin \
             --force-rewind`, or pg_rewind) or stop it"
        );
        assert!(with("fenced", false).contains("SPLIT BRAIN: 2 primaries"));
        assert!(with("production", true).contains("SPLIT BRAIN: 2 primaries"));
    }

    /// Review item 19.4: a peer on the path of plaintext traffic must not
    /// hide the SPLIT BRAIN line with terminal escapes (here: up a line,
    /// erase it) in the fields it sends.
    #[test]
    fn terminal_escapes_from_peers_are_shown_not_obeyed() {
        let mut sly = IKnow {
            node_name: "node_1\u{1b}[1A\u{1b}[2K".into(),
            ip: "10.0.0.1\n10.0.0.9".into(),
            role: Role::Primary as i32,
            master: vec!["10.0.0.1\r".into()],
            ..IKnow::default()
        };
        sly.verdict = Some(Verdict {
            kind: "fenced\u{1b}[8m".into(),
            reason: "hidden\u{1b}[0m".into(),
            fresh: true,
        });
        let views = vec![
            ("a:1".to_string(), PeerView::Answered(sly)),
            (
                "b:1".to_string(),
                node("node_2", "10.0.0.2", Role::Primary, &["10.0.0.2"]),
            ),
        ];
        let r = rows(&views, None, 35_000, 3);
        let text = format!("{}\n{}", render(&r), summary(&r));
        assert!(
            !text.chars().any(|c| c == '\u{1b}' || c == '\r'),
            "{text:?}"
        );
        assert_eq!(render(&r).lines().count(), 1 + r.len(), "{text}");
        assert!(text.contains("node_1\\u{1b}[1A"), "{text}");
        assert!(text.contains("SPLIT BRAIN"), "{text}");
    }

    /// What is left of a node's lease, as `status` shows it: L' less the
    /// m-th smallest of the voters' ages, its own and silent voters' 0.
    #[test]
    fn the_lease_left_follows_the_voters_clocks() {
        use crate::peer::proto::Confirmation;
        let voter = |name: &str, age_of_a: Option<u64>| {
            let mut a = IKnow {
                node_name: name.into(),
                ip: "10.0.0.9".into(),
                role: Role::Witness as i32,
                uptime_ms: 86_400_000,
                ..IKnow::default()
            };
            if let Some(age) = age_of_a {
                a.confirmations = vec![Confirmation {
                    node: "node_a".into(),
                    age_ms: age,
                }];
            }
            PeerView::Answered(a)
        };
        let down = || PeerView::Unreachable(crate::peer::client::PeerError::Refused);
        let at = |v: PeerView| ("x:1".to_string(), v);
        // (views, what is left of node_a's 35 s lease)
        type Views = Vec<(String, PeerView)>;
        let cases: Vec<(Views, Option<u64>)> = vec![
            (
                vec![
                    at(down()),
                    at(voter("b", Some(5_000))),
                    at(voter("w", Some(9_000))),
                ],
                Some(30_000),
            ),
            (
                vec![
                    at(voter("node_a", Some(0))),
                    at(voter("b", Some(20_000))),
                    at(voter("w", Some(1_000))),
                ],
                Some(34_000),
            ),
            (
                vec![
                    at(down()),
                    at(voter("b", Some(60_000))),
                    at(voter("w", None)),
                ],
                None,
            ),
            // Two voters silent: for all anyone can tell, all of it.
            (
                vec![at(down()), at(down()), at(voter("w", Some(90_000)))],
                Some(35_000),
            ),
            // One voter reached at two addresses counts once: its old
            // confirmation is not a second vote that nothing is left.
            (
                vec![
                    at(down()),
                    at(voter("b", Some(60_000))),
                    at(voter("b", Some(60_000))),
                    at(voter("w", Some(0))),
                ],
                Some(35_000),
            ),
        ];
        for (views, want) in cases {
            assert_eq!(lease_left_ms(&views, "node_a", 35_000, 3), want);
        }
        // Four voters configured, two asked (an entry resolving to this
        // node is not): the two not in the views count as 0, so the
        // third smallest age is w's 5 s, not b's 60 s.
        let views = vec![at(voter("b", Some(60_000))), at(voter("w", Some(5_000)))];
        assert_eq!(lease_left_ms(&views, "node_a", 35_000, 4), Some(30_000));
    }
}
