//! Building answers, as pure functions over plain values.
//!
//! A data node's opinion comes from its own Postgres: a primary names
//! itself master and its streaming standbys as slaves; a standby names its
//! upstream. The witness's opinion is what it observed by asking the data
//! nodes. Names from `pg_stat_replication.application_name` are mapped to
//! replication IPs through a directory learned from peers, since on
//! loopback every standby connects from 127.0.0.1.

use std::collections::{BTreeMap, HashMap};

use super::client::{PeerError, PeerView};
use super::proto::{IKnow, Role, Standby, Unreachable, Verdict as VerdictMsg};
use crate::fencing::clock::Now;
use crate::fencing::verdict::VerdictRead;
use crate::pg::facts::NodeFacts;

/// Who is answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    /// `nodeName`.
    pub node_name: String,
    /// The replication address (`primaryIP`).
    pub primary_ip: String,
    /// The configured witness, `host:port` (empty when none).
    pub witness: String,
    /// Identifies the answerer's config file version.
    pub config_generation: u64,
    /// This node's lease L and HAProxy's term H from its config (ms), for
    /// `doctor` to compare across voters.
    pub lease_ms: u64,
    /// HAProxy's term H from this node's config (ms).
    pub haproxy_term_ms: u64,
}

impl Me {
    fn base(&self, role: Role) -> IKnow {
        IKnow {
            ip: self.primary_ip.clone(),
            node_name: self.node_name.clone(),
            witness: self.witness.clone(),
            role: role as i32,
            config_generation: self.config_generation,
            lease_ms: self.lease_ms,
            haproxy_term_ms: self.haproxy_term_ms,
            ..IKnow::default()
        }
    }
}

/// A data node's answer. `directory` maps node names to replication IPs.
pub fn data_node_answer(
    me: &Me,
    facts: Result<&NodeFacts, &str>,
    verdict: &VerdictRead,
    now: Option<&Now>,
    directory: &HashMap<String, String>,
) -> IKnow {
    let facts = match facts {
        Ok(facts) => facts,
        Err(why) => {
            let mut answer = me.base(Role::Down);
            answer.postgres_error = why.to_string();
            add_verdict(&mut answer, verdict, now);
            return answer;
        }
    };
    let role = if facts.in_recovery {
        Role::Standby
    } else {
        Role::Primary
    };
    let mut answer = me.base(role);
    answer.timeline = facts.timeline.unwrap_or(0);
    answer.system_identifier = facts.system_identifier;
    answer.postmaster_start_us = facts.postmaster_start_us;
    answer.current_lsn = facts.current_lsn.unwrap_or(0);
    answer.receive_lsn = facts.receive_lsn.unwrap_or(0);
    answer.replay_lsn = facts.replay_lsn.unwrap_or(0);
    answer.lag_bytes = facts.lag_bytes().unwrap_or(0);
    answer.streaming = facts.streaming();
    answer.upstream = facts.sender_host.clone().unwrap_or_default();
    answer.standbys = facts
        .standbys
        .iter()
        .map(|s| Standby {
            name: s.name.clone(),
            ip: standby_ip(&s.name, s.client_addr.as_deref(), directory).unwrap_or_default(),
            state: s.state.clone(),
            replay_lag_bytes: s.replay_lag_bytes.unwrap_or(0),
        })
        .collect();
    if facts.in_recovery {
        if let Some(upstream) = facts
            .sender_host
            .as_deref()
            .and_then(|host| upstream_ip(host, directory))
        {
            answer.master.push(upstream);
        }
        answer.slaves.push(me.primary_ip.clone());
    } else {
        answer.master.push(me.primary_ip.clone());
        let mut slaves: Vec<String> = answer
            .standbys
            .iter()
            .filter(|s| s.state == "streaming" && !s.ip.is_empty())
            .map(|s| s.ip.clone())
            .collect();
        slaves.sort();
        slaves.dedup();
        answer.slaves = slaves;
    }
    add_verdict(&mut answer, verdict, now);
    answer
}

/// A standby's replication IP: by its name in the directory (learned from
/// this node's own asks), else its client address. A standby over a Unix
/// socket that no peer named has none.
fn standby_ip(
    name: &str,
    client_addr: Option<&str>,
    directory: &HashMap<String, String>,
) -> Option<String> {
    if let Some(ip) = directory.get(name) {
        return Some(ip.clone());
    }
    client_addr
        .filter(|addr| addr.parse::<std::net::IpAddr>().is_ok())
        .map(str::to_string)
}

/// A standby's upstream as an IP: `sender_host` itself when it is one, else
/// the address of the node of that name. A socket directory or an unknown
/// host name gives none, since `master` holds only IP addresses.
fn upstream_ip(host: &str, directory: &HashMap<String, String>) -> Option<String> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Some(host.to_string());
    }
    directory.get(host).cloned()
}

fn add_verdict(answer: &mut IKnow, verdict: &VerdictRead, now: Option<&Now>) {
    match verdict {
        VerdictRead::Missing => {}
        VerdictRead::Unreadable(why) => {
            answer.verdict = Some(VerdictMsg {
                kind: "unreadable".into(),
                reason: why.clone(),
                fresh: false,
            });
            answer.fenced = true;
        }
        VerdictRead::Present(v) => {
            answer.verdict = Some(VerdictMsg {
                kind: v.kind.as_str().into(),
                reason: v.reason.clone(),
                fresh: now.is_some_and(|now| v.is_fresh(now)),
            });
            answer.fenced = v.kind == crate::fencing::verdict::VerdictKind::Fenced;
        }
    }
}

/// The system identifier most answering data nodes share, or `None` when
/// none reported one or the top count is tied (then nobody is ignored).
pub fn majority_system_identifier<'a>(answers: impl Iterator<Item = &'a IKnow>) -> Option<u64> {
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for a in answers.filter(|a| a.system_identifier != 0) {
        *counts.entry(a.system_identifier).or_default() += 1;
    }
    let top = counts.values().copied().max()?;
    let mut leaders = counts.iter().filter(|(_, n)| **n == top);
    let (sysid, _) = leaders.next()?;
    leaders.next().is_none().then_some(*sysid)
}

/// A data node's role. A harepd node sends no role (field 7 is ours): its
/// role is then where its own address stands in its own view.
pub fn role_of(a: &IKnow) -> Role {
    match Role::try_from(a.role).unwrap_or(Role::Unknown) {
        Role::Unknown if !a.ip.is_empty() && a.master.contains(&a.ip) => Role::Primary,
        Role::Unknown if !a.ip.is_empty() && a.slaves.contains(&a.ip) => Role::Standby,
        role => role,
    }
}

/// The witness's answer from what the data nodes said. A node with another
/// system identifier than the majority is ignored and listed as such.
pub fn witness_answer(me: &Me, views: &[(String, PeerView)]) -> IKnow {
    let mut answer = me.base(Role::Witness);
    let answered = views.iter().filter_map(|(_, v)| match v {
        PeerView::Answered(a) => Some(a),
        PeerView::Unreachable(_) => None,
    });
    let cluster = majority_system_identifier(answered);
    for (addr, view) in views {
        match view {
            PeerView::Unreachable(e) => answer.unreachable.push(Unreachable {
                address: addr.clone(),
                reason: e.to_string(),
            }),
            PeerView::Answered(a) => {
                if let Some(ours) =
                    cluster.filter(|c| a.system_identifier != 0 && a.system_identifier != *c)
                {
                    let e = PeerError::OtherSystem {
                        theirs: a.system_identifier,
                        ours,
                    };
                    answer.unreachable.push(Unreachable {
                        address: addr.clone(),
                        reason: e.to_string(),
                    });
                    continue;
                }
                match role_of(a) {
                    Role::Primary => answer.master.push(a.ip.clone()),
                    Role::Standby => answer.slaves.push(a.ip.clone()),
                    _ => {}
                }
                if answer.system_identifier == 0 {
                    answer.system_identifier = a.system_identifier;
                }
                answer.timeline = answer.timeline.max(a.timeline);
                let mut observed = a.clone();
                observed.observed.clear();
                answer.observed.push(observed);
            }
        }
    }
    answer.master.sort();
    answer.slaves.sort();
    answer
}

#[cfg(test)]
mod tests;

/// A peer's answer, asked at `addr` (`host:port`), as `decide` reads it,
/// for the cluster `cluster`. The node's addresses are its `primaryIP` and
/// `addr`'s host when that is an address (the caller adds what a host
/// name resolves to).
pub fn as_peer_state(
    addr: &str,
    view: &PeerView,
    cluster: u64,
) -> crate::fencing::decide::PeerState {
    use crate::fencing::decide::{PeerAnswer, PeerState};
    let a = match view {
        PeerView::Answered(a) => a,
        PeerView::Unreachable(_) => return PeerState::Unreachable,
    };
    let record = if !a.record_ok {
        None
    } else if a.claim_system_identifier == cluster
        && a.claim_timeline > 0
        && !a.claim_nodes.is_empty()
    {
        Some(Some(crate::fencing::claims::Highest {
            timeline: a.claim_timeline,
            nodes: a.claim_nodes.iter().cloned().collect(),
        }))
    } else {
        Some(None)
    };
    let role = role_of(a);
    PeerState::Answered(PeerAnswer {
        node: a.node_name.clone(),
        ip: a.ip.clone(),
        primary: role == Role::Primary,
        quiet: role == Role::Standby || (role == Role::Down && a.postgres_stopped),
        witness: role == Role::Witness,
        timeline: a.timeline,
        system_identifier: a.system_identifier,
        master: a.master.clone(),
        record,
        clock: lease_clock(a),
        addrs: [a.ip.as_str(), crate::config::host_of(addr)]
            .iter()
            .filter_map(|text| text.parse::<std::net::IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .collect(),
        streaming_standbys: a
            .standbys
            .iter()
            .filter(|s| s.state == "streaming")
            .map(|s| s.name.clone())
            .collect(),
    })
}

/// A voter's lease clock from its answer; `None` when it reports none (a
/// harepd node, or an older version: it never sends an uptime).
pub fn lease_clock(a: &IKnow) -> Option<crate::fencing::decide::LeaseClock> {
    (a.uptime_ms > 0).then(|| crate::fencing::decide::LeaseClock {
        ages_ms: a
            .confirmations
            .iter()
            .map(|c| (c.node.clone(), c.age_ms))
            .collect(),
        uptime_ms: a.uptime_ms,
    })
}
