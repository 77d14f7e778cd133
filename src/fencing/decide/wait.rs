//! The wait of a node that has just become the legitimate primary, before
//! it answers `production`: what can be left of any other node's lease, as
//! the voters' clocks tell it (DESIGN.md, "What is left of a lease"). Pure.
//!
//! - Every voter remembers when it last returned a record holding a
//!   claimant's claim to that claimant's ask, and reports the ages
//!   ([`LeaseClock`]). A claimant X holds a lease only from a run in which
//!   a majority m of all voters returned records holding its claim, itself
//!   among them: m − 1 voters other than X confirmed it then.
//! - a_X is the (m − 1)-th smallest age among the voters other than X. A
//!   voter counts with its age only when its returned record holds this
//!   node's claim (records only rise, so it can never confirm X again);
//!   one that is unreachable, or does not hold the claim yet, counts as 0.
//!   Computed as the m-th smallest over all voters with X's own as 0, it
//!   needs no telling which unreachable voter X is.
//! - X stopped answering `production` at most L' − a_X from now, and
//!   HAProxy dropped it at most H' after: the wait for X is
//!   max(0, L' + H' − a_X) = max(0, W − a_X). The model (`model/`) shows P1
//!   and P2 with this overlap of H and the time already passed.
//! - A node seen quiet (in recovery, or its Postgres not running; not a
//!   timeout) holds no lease: at most H' is left of it (the planned
//!   switchover).
//! - The wait is the largest over every claimant but this node, including
//!   any claimant no voter names (its age at a voter is that voter's
//!   uptime).
//! - A restart of this node's own Postgres (same timeline, its previous
//!   verdict its own confirming one) needs no wait: records only rise, so
//!   nobody else can have held a lease or been UP in `prod` meanwhile.

use std::collections::{BTreeMap, BTreeSet};

use super::{Inputs, LocalFacts, PeerState};
use crate::fencing::claims::Highest;
use crate::fencing::verdict::{Identity, VerdictKind};

/// One voter's lease clock, as it reported it in its answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseClock {
    /// Per claimant it has confirmed since it started: how long ago (ms).
    pub ages_ms: BTreeMap<String, u64>,
    /// How long the voter has run (ms): the age of any claimant it does
    /// not list, for all it can tell.
    pub uptime_ms: u64,
}

impl LeaseClock {
    /// How long ago this voter last confirmed `claimant` (`None`: a
    /// claimant it does not name), as far as it can tell.
    pub fn age_of(&self, claimant: Option<&str>) -> u64 {
        claimant
            .and_then(|c| self.ages_ms.get(c).copied())
            .unwrap_or(self.uptime_ms)
    }
}

/// The previous verdict on this boot, as deciding needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    /// The postmaster it was for.
    pub identity: Identity,
    /// What it decided.
    pub kind: VerdictKind,
    /// Its wait's end (CLOCK_BOOTTIME, ms), if it set one.
    pub wait_until_ms: Option<u64>,
    /// What that wait sat out.
    pub wait_for: Option<String>,
}

/// A wait: until when, and what it sits out (for the verdict and
/// `status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    /// CLOCK_BOOTTIME (ms) at which it ends.
    pub until_ms: u64,
    /// What it sits out, in words.
    pub wait_for: String,
}

/// The wait of `local`, a primary this run found legitimate with a
/// majority of voters holding its claim: carried from the previous verdict
/// of this postmaster, none after a restart, or computed from the voters'
/// clocks.
pub(super) fn wait(inputs: &Inputs<'_>, local: &LocalFacts) -> Wait {
    match inputs.previous {
        Some(p) if p.identity == local.identity => {
            if let Some(until_ms) = p.wait_until_ms {
                return Wait {
                    until_ms,
                    wait_for: p
                        .wait_for
                        .clone()
                        .unwrap_or_else(|| "the previous primary's lease".into()),
                };
            }
        }
        Some(p) if restarted(p, &local.identity) => {
            return Wait {
                until_ms: inputs.now_ms,
                wait_for: format!(
                    "nothing: this node's Postgres restarted, and its previous verdict \
                     confirmed it on timeline {}",
                    local.identity.timeline
                ),
            }
        }
        _ => {}
    }
    let (ms, wait_for) = lease_wait(inputs, local);
    Wait {
        until_ms: inputs.now_ms + ms,
        wait_for,
    }
}

/// Whether `identity` is a restart of the postmaster `previous` confirmed:
/// the same cluster and timeline, another start.
fn restarted(previous: &Previous, identity: &Identity) -> bool {
    previous.kind == VerdictKind::Production
        && previous.identity.system_identifier == identity.system_identifier
        && previous.identity.timeline == identity.timeline
        && previous.identity.postmaster_start_us != identity.postmaster_start_us
}

/// One voter as the wait sees it.
struct Voter<'a> {
    /// Its node name, when it answered (a voter that did not may be any
    /// node, so it is never taken for the claimant).
    name: Option<&'a str>,
    /// Whether its returned record holds this node's claim.
    holds: bool,
    clock: Option<&'a LeaseClock>,
}

/// The longest of what can be left of every other claimant's lease (and
/// HAProxy's term after it), in ms, and what it is.
fn lease_wait(inputs: &Inputs<'_>, local: &LocalFacts) -> (u64, String) {
    let holds = |record: Option<&Highest>| {
        record.is_some_and(|h| h.timeline == local.identity.timeline && h.nodes.contains(inputs.me))
    };
    let sysid = local.identity.system_identifier;
    // This node's own vote, judged by what its own peer returned (the
    // record and the ages come from one answer).
    let mut voters = vec![Voter {
        name: Some(inputs.me),
        holds: holds(inputs.own_peer_record.flatten()),
        clock: inputs.own_clock,
    }];
    // Each other voter once: a voter reached at two addresses would count
    // its age twice.
    let distinct = super::distinct_voters(inputs.me, inputs.peers, sysid);
    voters.extend(distinct.counted.iter().map(|a| Voter {
        name: Some(a.node.as_str()),
        holds: holds(a.record.as_ref().and_then(Option::as_ref)),
        clock: a.clock.as_ref(),
    }));
    // Every configured address that gave no vote of ours counts as a voter
    // that may still confirm anyone, age 0: one that did not answer, one
    // of another cluster, and one whose answer was left out (it named this
    // node, or a voter already counted). The configured count, and so m,
    // includes them all; each 0 keeps the (m - 1)-th smallest age from
    // growing with it, so one too many only lengthens the wait.
    let left_out = distinct.left_out.len();
    let silent = left_out
        + inputs
            .peers
            .iter()
            .filter(|(_, state)| match state {
                PeerState::Answered(a) => a.system_identifier != 0 && a.system_identifier != sysid,
                PeerState::Unreachable => true,
            })
            .count();
    // And every configured voter not in the list at all (an entry never
    // asked: its name resolved to this node): the list is as long as the
    // count m is a majority of, or the (m - 1)-th smallest age would be
    // taken from too few and the wait cut short.
    let silent = silent.max(inputs.voters.saturating_sub(voters.len()));
    voters.extend((0..silent).map(|_| Voter {
        name: None,
        holds: false,
        clock: None,
    }));
    // Every claimant a voter names, every data node that answered, and
    // "any other" (None); never this node.
    let mut claimants: BTreeSet<Option<&str>> = BTreeSet::from([None]);
    for v in &voters {
        if let Some(clock) = v.clock {
            claimants.extend(clock.ages_ms.keys().map(|k| Some(k.as_str())));
        }
    }
    for (_, state) in inputs.peers {
        if let PeerState::Answered(a) = state {
            if !a.witness {
                claimants.insert(Some(a.node.as_str()));
            }
        }
    }
    claimants.remove(&Some(inputs.me));
    let m = inputs.voters / 2 + 1;
    let mut longest = (0, "nothing: no other node can hold a lease".to_string());
    for claimant in claimants {
        let (ms, why) = claimant_wait(inputs, &voters, claimant, m);
        if ms > longest.0 {
            longest = (ms, why);
        }
    }
    longest
}

/// What is left of `claimant`'s lease and HAProxy's term after it, in ms,
/// and in words.
fn claimant_wait(
    inputs: &Inputs<'_>,
    voters: &[Voter<'_>],
    claimant: Option<&str>,
    m: usize,
) -> (u64, String) {
    // The claimant's own vote counts as 0, so the m-th smallest of all is
    // the (m − 1)-th smallest of the others, whether or not the claimant
    // could be told apart among the voters: one that did not answer
    // counts as 0 already, and a claimant that is no voter needed m
    // others.
    let mut ages: Vec<u64> = voters
        .iter()
        .map(|v| match (v.holds, v.clock) {
            _ if claimant.is_some() && v.name == claimant => 0,
            (true, Some(clock)) => clock.age_of(claimant),
            // It may still confirm the claimant, or says nothing of it.
            _ => 0,
        })
        .collect();
    ages.sort_unstable();
    let age = match m {
        // With a single voter, nobody vouches.
        0 | 1 => 0,
        m => ages.get(m - 1).copied().unwrap_or(0),
    };
    let left = inputs.wait_ms.saturating_sub(age);
    let who = claimant.map_or_else(
        || "any node the voters do not name (a voter started recently)".to_string(),
        |c| format!("{c}'s"),
    );
    // A claimant seen quiet now holds no lease: only HAProxy's term.
    let quiet = claimant.is_some_and(|c| {
        inputs
            .peers
            .iter()
            .any(|(_, state)| matches!(state, PeerState::Answered(a) if a.node == c && a.quiet))
    });
    if quiet && left > inputs.short_wait_ms {
        let name = claimant.unwrap_or_default();
        return (
            inputs.short_wait_ms,
            format!("HAProxy's term after {name} stopped or went into recovery"),
        );
    }
    let what = if claimant.is_some() {
        format!("{who} lease as the voters saw it, and HAProxy's term after it")
    } else {
        format!("the lease of {who}, and HAProxy's term after it")
    };
    (left, what)
}
