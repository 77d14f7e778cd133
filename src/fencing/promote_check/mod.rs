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
//! 3. nothing can be left of any other node's lease, of HAProxy's term
//!    after it, or of the new primary's own rise that the term counts off
//!    ((rise − 1) × fastinter): the successor's own quorum rule. For each
//!    other claimant X, every voter but X says what is left as its clock
//!    tells it (W + the rise, less how long ago it last confirmed X); X
//!    itself and a voter not reached count all of it. When fewer than
//!    m − 1 of the voters other than X have anything left, one of X's last
//!    majority has seen it all run out, so X is out of HAProxy's pool
//!    before the promotion. The model's `PROMOTE_CHECK` checks this rule
//!    (P8), and `promote-check-without-h` and `promote-check-without-rise`
//!    break it. A zombie that still reaches one voter of five no longer
//!    blocks the promotion: that one voter is not m − 1 of them.
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
    /// W = L' + H' (ms): the longest any other node's lease and HAProxy's
    /// term after it can last from a voter's confirmation.
    pub wait_ms: u64,
    /// The new primary's rise that H counts off the old one's fall,
    /// (rise − 1) × fastinter (ms): HAProxy may keep the old primary UP
    /// that much longer.
    pub rise_credit_ms: u64,
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
    /// Something may be left of another node's lease, HAProxy's term or
    /// the rise, as a majority of the voters' clocks tell it.
    LeaseLeft {
        /// Whose (`None`: any node the voters do not name, as a voter
        /// that started recently cannot tell).
        claimant: Option<String>,
        /// How much may be left, ms.
        left_ms: u64,
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
            Refusal::LeaseLeft { claimant, left_ms } => {
                let whose = claimant.as_deref().map_or_else(
                    || "a node the voters do not name (a voter started recently)".to_string(),
                    |c| c.to_string(),
                );
                write!(
                    f,
                    "{whose} may still hold its lease or be UP in HAProxy's prod for {:.1} s, \
                     as a majority of the voters' clocks tell it: promoted now, two primaries \
                     could take writes; a later try can say yes",
                    *left_ms as f64 / 1000.0
                )
            }
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
    if let Some((claimant, left_ms)) = longest_left(i, &reached) {
        return Err(Refusal::LeaseLeft { claimant, left_ms });
    }
    Ok(reached.len())
}

/// The claimant with the most left of its lease, HAProxy's term and the
/// rise, and how much (ms), when anything is left of any: rule 3.
fn longest_left(i: &Inputs, reached: &[&PeerAnswer]) -> Option<(Option<String>, u64)> {
    let all = i.wait_ms + i.rise_credit_ms;
    // Every claimant a reached voter names, every data node that answered,
    // and "any other" (None); never this node.
    let mut claimants: std::collections::BTreeSet<Option<&str>> = [None].into();
    for a in reached {
        if let Some(clock) = &a.clock {
            claimants.extend(clock.ages_ms.keys().map(|k| Some(k.as_str())));
        }
        if !a.witness {
            claimants.insert(Some(a.node.as_str()));
        }
    }
    claimants.remove(&Some(i.me));
    let m = i.voters / 2 + 1;
    let mut longest: Option<(Option<String>, u64)> = None;
    for claimant in claimants {
        // What each voter says is left: a reached one by its clock (all
        // of it without one, or when it is the claimant itself), and
        // every voter not reached all of it.
        let mut left: Vec<u64> = reached
            .iter()
            .map(|a| match &a.clock {
                _ if claimant == Some(a.node.as_str()) => all,
                Some(clock) => all.saturating_sub(clock.age_of(claimant)),
                None => all,
            })
            .collect();
        left.extend((reached.len()..i.voters).map(|_| all));
        left.sort_unstable_by(|a, b| b.cmp(a));
        // The m-th largest: more than m - 1 voters other than the claimant
        // (its own counts all) still see something left.
        let ms = left.get(m - 1).copied().unwrap_or(0);
        if ms > 0 && longest.as_ref().is_none_or(|(_, l)| ms > *l) {
            longest = Some((claimant.map(str::to_string), ms));
        }
    }
    longest
}

#[cfg(test)]
mod tests;
