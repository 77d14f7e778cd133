//! `promote-check`'s rule: may this standby be promoted now? A pure
//! function over the answers one gathering got, for a promoter's hook
//! (repmgr's `failover_validation_command`). It says yes only when:
//!
//! 1. this node reaches a majority of all configured voters (itself through
//!    its own peer, whose clock and record are its vote);
//! 2. none of them is, or sees, another primary alive: a reached data
//!    node whose Postgres is a primary, or an address a voter names as
//!    master (a standby's upstream, the witness's observed primaries),
//!    other than this node. A primary on a lower timeline than this node's
//!    or than the highest claim a reached voter's record holds is an old
//!    one (records only rise, so it can never be legitimate again) and
//!    does not stop the promotion;
//! 3. none of them confirmed another node's claim within watchDog: that
//!    node's reconciler ran with a majority that recently, so it is alive
//!    and serving somewhere this node cannot see.
//!
//! Answers from another cluster (another system identifier) count as not
//! reached, and each voter counts once: an answer that names this node
//! (its own peer listed among the neighbours) or a voter reached at two
//! addresses is not another vote. The promotion itself is still fenced by `decide`: this check
//! only keeps a promoter on the minority side of a split, or on one side
//! of a non-transitive one, from promoting at all.

use std::fmt;

use super::decide::{distinct_voters, PeerAnswer, PeerState};

/// What the check reads.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// This node's name.
    pub me: &'a str,
    /// This node's replication address.
    pub my_ip: &'a str,
    /// This node's Postgres: its system identifier.
    pub system_identifier: u64,
    /// This node's Postgres: its timeline (0 when it cannot tell: a
    /// standby whose WAL receiver is not running).
    pub timeline: u32,
    /// Every configured voter: the data nodes and the witness.
    pub voters: usize,
    /// This node's own peer, if it answered.
    pub own: Option<&'a PeerAnswer>,
    /// The other voters, by the address they were asked at.
    pub peers: &'a [(String, PeerState)],
    /// watchDog, ms.
    pub watchdog_ms: u64,
    /// Whether an operator drained this node (`maintenance on`): promoted,
    /// it would answer `maintenance`, and the cluster would have no
    /// primary in `prod`.
    pub maintenance: bool,
}

/// Why the promotion must not happen now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// This node is drained (`pgsql-state maintenance on`).
    Maintenance,
    /// Fewer than a majority of the voters answered.
    NoMajority {
        /// Voters that answered (this node's own peer among them).
        reached: usize,
        /// Every configured voter.
        voters: usize,
    },
    /// A voter is another primary, alive.
    PrimaryAlive {
        /// The primary.
        node: String,
        /// Its timeline.
        timeline: u32,
    },
    /// A voter names another master.
    SeesPrimary {
        /// The voter.
        voter: String,
        /// The master it names, an address.
        master: String,
    },
    /// A voter confirmed another node's claim within watchDog.
    RecentClaim {
        /// The voter.
        voter: String,
        /// Whose claim it confirmed.
        claimant: String,
        /// How long ago, ms.
        age_ms: u64,
        /// watchDog, ms.
        watchdog_ms: u64,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Maintenance => write!(
                f,
                "this node is in maintenance (`pgsql-state maintenance on`): promoted, it would \
                 answer `maintenance` and the cluster would have no primary; turn it off first"
            ),
            Refusal::NoMajority { reached, voters } => write!(
                f,
                "{reached}/{voters} voters reached, not a majority ({} needed): \
                 this node may be on the minority side of a split",
                voters / 2 + 1
            ),
            Refusal::PrimaryAlive { node, timeline } => {
                write!(f, "{node} is a primary on timeline {timeline}, alive")
            }
            Refusal::SeesPrimary { voter, master } => {
                write!(f, "{voter} sees {master} as a primary, alive")
            }
            Refusal::RecentClaim {
                voter,
                claimant,
                age_ms,
                watchdog_ms,
            } => write!(
                f,
                "{voter} confirmed {claimant}'s claim {:.1} s ago (within watchDog, {:.0} s): \
                 {claimant}'s reconciler is running",
                *age_ms as f64 / 1000.0,
                *watchdog_ms as f64 / 1000.0
            ),
        }
    }
}

/// Yes (with how many voters were reached), or why not. The first
/// refusal found, in the order of the rules.
pub fn promote_check(i: &Inputs) -> Result<usize, Refusal> {
    if i.maintenance {
        return Err(Refusal::Maintenance);
    }
    let ours =
        |a: &&PeerAnswer| a.system_identifier == 0 || a.system_identifier == i.system_identifier;
    // Each voter once: this node through its own peer, and every other
    // voter by who answered (an answer that names this node, or a voter
    // reached at two addresses, is not another vote).
    let reached: Vec<&PeerAnswer> = i
        .own
        .into_iter()
        .filter(ours)
        .chain(distinct_voters(i.me, i.peers, i.system_identifier).counted)
        .collect();
    if reached.len() * 2 <= i.voters {
        return Err(Refusal::NoMajority {
            reached: reached.len(),
            voters: i.voters,
        });
    }
    // The highest timeline known: this node's, and the highest claim any
    // reached voter's record holds (records only rise; a standby whose WAL
    // receiver is not running cannot tell its own timeline). A primary
    // below it is an old one.
    let top = reached
        .iter()
        .filter_map(|a| a.record.as_ref()?.as_ref().map(|h| h.timeline))
        .chain([i.timeline])
        .max()
        .unwrap_or(i.timeline);
    let old: Vec<&PeerAnswer> = reached
        .iter()
        .copied()
        .filter(|a| a.primary && a.timeline < top)
        .collect();
    for a in &reached {
        if a.primary && a.node != i.me && a.timeline >= top {
            return Err(Refusal::PrimaryAlive {
                node: a.node.clone(),
                timeline: a.timeline,
            });
        }
    }
    for a in &reached {
        for master in &a.master {
            let is_old = old.iter().any(|o| &o.ip == master);
            if master != i.my_ip && !is_old {
                return Err(Refusal::SeesPrimary {
                    voter: a.node.clone(),
                    master: master.clone(),
                });
            }
        }
    }
    for a in &reached {
        let Some(clock) = &a.clock else { continue };
        for (claimant, age) in &clock.ages_ms {
            if claimant != i.me && *age < i.watchdog_ms {
                return Err(Refusal::RecentClaim {
                    voter: a.node.clone(),
                    claimant: claimant.clone(),
                    age_ms: *age,
                    watchdog_ms: i.watchdog_ms,
                });
            }
        }
    }
    Ok(reached.len())
}

#[cfg(test)]
mod tests;
