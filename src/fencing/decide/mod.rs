//! `decide`: who is the legitimate primary, and what this node must say.
//! A pure function over plain values, with no I/O and no clock: the
//! reconciler gathers, then asks this. The rules are DESIGN.md's
//! "Deciding", which a model checked; each counterexample it found is a
//! row of the table test.
//!
//! 1. Candidates are every primary claim with our system identifier this
//!    run knows of: local, if not in recovery; each reached peer that
//!    reports itself primary; every reached voter's claim record; this
//!    node's own record, read after gathering.
//! 2. The legitimate primary is the candidate with the highest timeline;
//!    two on the highest timeline are a tie, and there is none.
//! 3. A local primary is `production` only when it is the legitimate
//!    primary (on its own timeline), a majority of all configured voters
//!    (counting itself) returned records that hold its claim, no majority
//!    of reached opinions names another master, and its wait is over.
//!    Otherwise `fenced`.
//! 4. A standby is `lagging` when it streams from a node that is not the
//!    legitimate primary, or is over `maxLagBytes` or not streaming with it
//!    set; otherwise `standby`.
//!
//! The planned-switchover shortcut: in the run that starts the wait, when
//! every configured peer answered and every data node among them is in
//! recovery or its Postgres is not running (refused, no socket; not a
//! timeout), the wait is HAProxy's term H alone. The model shows it safe
//! (P4, and the `shortcut-on-timeout` mutation shows why a timeout must not
//! count).
//!
//! Rule 3(b) counts voters whose returned record holds this node's claim,
//! not voters reached: the model (`model/`) found that a voter reached but
//! unable to verify the claim (the claimant's peer down) let both nodes
//! count the same voter, and both answered `production`.

mod display;
#[cfg(test)]
mod tests;
mod wait;

pub use wait::{LeaseClock, Previous, Wait};

use std::net::IpAddr;

use crate::fencing::claims::{Claim, Highest};
use crate::fencing::verdict::{Identity, VerdictKind};

/// This node's own Postgres, as far as deciding needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFacts {
    /// In recovery: a standby.
    pub in_recovery: bool,
    /// Who this postmaster is: cluster, timeline, start.
    pub identity: Identity,
    /// A standby's upstream (`sender_host`) as Postgres reports it: what
    /// `primary_conninfo` says, a host name, an address in any spelling, or
    /// a socket directory.
    pub upstream: Option<String>,
    /// The addresses `upstream` stands for, found at the edge: an address
    /// normalised, a name through the system resolver (bounded in time).
    /// Empty when it could not be resolved.
    pub upstream_addrs: Vec<IpAddr>,
    /// Whether a standby's WAL receiver is streaming.
    pub streaming: bool,
    /// A standby's replay lag in bytes.
    pub lag_bytes: Option<u64>,
}

/// What a reached peer said, as plain values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAnswer {
    /// Its node name.
    pub node: String,
    /// Its replication address (`primaryIP`).
    pub ip: String,
    /// Whether it reports itself a primary (its Postgres not in recovery).
    pub primary: bool,
    /// Whether it can hold no lease: its Postgres is in recovery, or not
    /// running at all (refused, no socket). A timeout is not quiet.
    pub quiet: bool,
    /// Whether it is the witness (no Postgres of its own).
    pub witness: bool,
    /// Its timeline (of its own Postgres; 0 when unknown).
    pub timeline: u32,
    /// Its cluster's system identifier (0 when it has no Postgres and saw
    /// none: a witness that reached nobody).
    pub system_identifier: u64,
    /// The masters it sees (its opinion), as replication addresses.
    pub master: Vec<String>,
    /// Its claim record for our cluster: `None` when it has no usable
    /// record (it abstains); `Some(None)` when the record holds no claim
    /// for our cluster yet.
    pub record: Option<Option<Highest>>,
    /// Its lease clock: the ages of the claims it confirmed (`None`: it
    /// reports none, as harepd and older versions do).
    pub clock: Option<LeaseClock>,
    /// Every address this node is known by: its `primaryIP`, and the
    /// address this run asked its peer at.
    pub addrs: Vec<IpAddr>,
    /// The standbys it reports streaming from it, by `application_name`
    /// (repmgr sets it to the node name).
    pub streaming_standbys: Vec<String>,
}

/// A peer this run asked: answered, or not. (Answers are the common case,
/// a handful a run, so they are not boxed.)
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum PeerState {
    /// It answered in time.
    Answered(PeerAnswer),
    /// It did not (refused, timed out, unreachable): a value, not an error.
    Unreachable,
}

/// Everything `decide` reads.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// This node's name.
    pub me: &'a str,
    /// This node's replication address.
    pub my_ip: &'a str,
    /// This node's Postgres, or `None` when it could not be asked.
    pub local: Option<&'a LocalFacts>,
    /// Every configured peer (neighbours and the witness), by address.
    pub peers: &'a [(String, PeerState)],
    /// This node's own claim record for its cluster, read after gathering:
    /// `None` when it is missing or unreadable (then this node abstains).
    pub own_record: Option<Option<&'a Highest>>,
    /// How many voters are configured: this node, the neighbours, the
    /// witness.
    pub voters: usize,
    /// The previous verdict, when it was written on this boot: its wait
    /// carries over for the same postmaster, and a restart of a confirmed
    /// one needs none.
    pub previous: Option<&'a Previous>,
    /// This node's own peer's lease clock (the reconciler asks it like any
    /// voter; `None` when it did not answer).
    pub own_clock: Option<&'a LeaseClock>,
    /// The claim record this node's own peer returned with that clock
    /// (`None`: it did not answer, or has no usable record). The wait
    /// judges this node's vote by it, as every other voter's by the record
    /// it returned, never by the record read after this run's raise.
    pub own_peer_record: Option<Option<&'a Highest>>,
    /// When this run started (CLOCK_BOOTTIME, ms), before anything was read.
    pub t0_ms: u64,
    /// When gathering ended (CLOCK_BOOTTIME, ms).
    pub now_ms: u64,
    /// The lease L, in ms.
    pub lease_ms: u64,
    /// The longest wait W = L' + H', in ms: for a node a voter confirmed
    /// just now.
    pub wait_ms: u64,
    /// H', HAProxy's term alone, in ms: the wait for a node seen stopped
    /// or in recovery.
    pub short_wait_ms: u64,
    /// `maxLagBytes`.
    pub max_lag_bytes: Option<u64>,
}

/// What this node should do and say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// This node's name, for the log line.
    pub node: String,
    /// The verdict; `None` when Postgres could not be asked (nothing is
    /// changed then).
    pub kind: Option<VerdictKind>,
    /// Why, in words for the operator.
    pub reason: String,
    /// The timeline this decision is about (local's, or the legitimate one).
    pub timeline: u32,
    /// Voters reached, counting this node when it has a record.
    pub reached: usize,
    /// Voters whose returned record holds this node's claim on its own
    /// timeline, counting this node's own record (rule 3(b)).
    pub holders: usize,
    /// Voters configured.
    pub voters: usize,
    /// The legitimate primary, if there is one.
    pub legitimate: Option<Claim>,
    /// Whether the highest timeline is claimed by two or more nodes.
    pub tie: bool,
    /// The postmaster the verdict is bound to.
    pub identity: Option<Identity>,
    /// When the verdict stops being fresh (t0 + L).
    pub expires_ms: u64,
    /// For a local primary that is (or is becoming) legitimate: when its
    /// wait ends.
    pub wait_until_ms: Option<u64>,
    /// What that wait sits out, in words.
    pub wait_for: Option<String>,
    /// Whether the read-write check user may log in (pg_hba).
    pub read_write_allowed: bool,
    /// Whether the read-only check user may log in (pg_hba).
    pub read_only_allowed: bool,
}

impl Decision {
    /// Whether this node is fenced: its `fenceUsers` are shut out and
    /// their sessions ended.
    pub fn fenced(&self) -> bool {
        self.kind == Some(VerdictKind::Fenced)
    }
}

/// The answered peers of our cluster, each voter once: another system
/// identifier is ignored (and 0, a witness that saw nobody, is taken as
/// ours); an answer that names this node (its own peer, listed under
/// another address) is not a second vote, since this node votes with its
/// own record; and a voter that answered at two addresses counts once,
/// by its node name. Voters are counted by who answered, never by how
/// many addresses were asked: a node listed twice once made 3 of "5"
/// voters a majority.
pub fn distinct_voters<'a>(me: &str, peers: &'a [(String, PeerState)], sysid: u64) -> Voters<'a> {
    let mut voters = Voters::default();
    for (addr, state) in peers {
        let PeerState::Answered(a) = state else {
            continue;
        };
        if a.system_identifier != 0 && a.system_identifier != sysid {
            continue;
        }
        if a.node == me {
            voters.left_out.push(format!(
                "the peer at {addr} answers as this node ({me}): not a second vote (this \
                 node votes with its own record); list only the other nodes in gRPC.neighbours"
            ));
            continue;
        }
        if a.node.is_empty() {
            // Every peer of ours and of harepd names its node: an answer
            // without a name could not be told apart from another one.
            voters.left_out.push(format!(
                "the peer at {addr} answers without a node name: no vote"
            ));
            continue;
        }
        if voters.counted.iter().any(|s| s.node == a.node) {
            voters.left_out.push(format!(
                "the peer at {addr} answers as {}, which another configured address reached \
                 too: counted once",
                a.node
            ));
            continue;
        }
        voters.counted.push(a);
    }
    voters
}

/// The answers that count as voters, and why any other was left out (for
/// the log).
#[derive(Debug, Default)]
pub struct Voters<'a> {
    /// Each voter's answer, once.
    pub counted: Vec<&'a PeerAnswer>,
    /// One line per answer left out.
    pub left_out: Vec<String>,
}

/// [`distinct_voters`] for `decide`'s inputs.
fn our_peers<'a>(inputs: &'a Inputs<'_>, sysid: u64) -> Vec<&'a PeerAnswer> {
    distinct_voters(inputs.me, inputs.peers, sysid).counted
}

/// Every claim this run has seen for `sysid`: what the reconciler raises
/// its own record with, before it reads it back (rule 1 without the own
/// record).
pub fn observed_claims(
    me: &str,
    local: Option<&LocalFacts>,
    peers: &[(String, PeerState)],
    sysid: u64,
) -> Vec<Claim> {
    let mut claims = Vec::new();
    if let Some(l) = local.filter(|l| !l.in_recovery && l.identity.system_identifier == sysid) {
        claims.push(Claim {
            system_identifier: sysid,
            timeline: l.identity.timeline,
            node: me.to_string(),
        });
    }
    for (_, state) in peers {
        let PeerState::Answered(a) = state else {
            continue;
        };
        if a.system_identifier != sysid && a.system_identifier != 0 {
            continue;
        }
        if a.primary && a.system_identifier == sysid && a.timeline > 0 {
            claims.push(Claim {
                system_identifier: sysid,
                timeline: a.timeline,
                node: a.node.clone(),
            });
        }
        if let Some(Some(h)) = &a.record {
            claims.extend(h.nodes.iter().map(|node| Claim {
                system_identifier: sysid,
                timeline: h.timeline,
                node: node.clone(),
            }));
        }
    }
    claims
}

/// The legitimate primary among `candidates` (rule 2): the highest
/// timeline's one claimant, or none on a tie. Returns it and whether there
/// was a tie.
pub fn legitimate(candidates: &[Claim]) -> (Option<Claim>, bool) {
    let Some(top) = candidates.iter().map(|c| c.timeline).max() else {
        return (None, false);
    };
    let mut nodes: Vec<&Claim> = candidates.iter().filter(|c| c.timeline == top).collect();
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    nodes.dedup_by(|a, b| a.node == b.node);
    match nodes.as_slice() {
        [one] => (Some((*one).clone()), false),
        _ => (None, true),
    }
}

/// More than half of all configured voters.
pub fn is_majority(reached: usize, voters: usize) -> bool {
    reached * 2 > voters
}

/// Decides (rules 1 to 5).
pub fn decide(inputs: &Inputs<'_>) -> Decision {
    let expires_ms = inputs.t0_ms + inputs.lease_ms;
    let mut d = Decision {
        node: inputs.me.to_string(),
        kind: None,
        reason: String::new(),
        timeline: 0,
        reached: 0,
        holders: 0,
        voters: inputs.voters,
        legitimate: None,
        tie: false,
        identity: None,
        expires_ms,
        wait_until_ms: None,
        wait_for: None,
        read_write_allowed: false,
        read_only_allowed: false,
    };
    let Some(local) = inputs.local else {
        d.reason = "postgres could not be asked; nothing changed".into();
        return d;
    };
    let sysid = local.identity.system_identifier;
    d.identity = Some(local.identity.clone());
    d.timeline = local.identity.timeline;

    // Rule 1: candidates.
    let peers = our_peers(inputs, sysid);
    let mut candidates = observed_claims(inputs.me, Some(local), inputs.peers, sysid);
    if let Some(Some(own)) = inputs.own_record {
        candidates.extend(own.nodes.iter().map(|node| Claim {
            system_identifier: sysid,
            timeline: own.timeline,
            node: node.clone(),
        }));
    }
    // Rule 2: the legitimate primary.
    let (legit, tie) = legitimate(&candidates);
    d.legitimate = legit.clone();
    d.tie = tie;
    // Voters reached: this node and the peers with a usable record.
    let own_vote = usize::from(inputs.own_record.is_some());
    d.reached = own_vote + peers.iter().filter(|a| a.record.is_some()).count();
    // Voters holding this node's claim on its own timeline (a standby
    // claims nothing).
    let holds = |record: Option<&Highest>| {
        record.is_some_and(|h| h.timeline == local.identity.timeline && h.nodes.contains(inputs.me))
    };
    if !local.in_recovery {
        d.holders = usize::from(holds(inputs.own_record.flatten()))
            + peers
                .iter()
                .filter(|a| holds(a.record.as_ref().and_then(Option::as_ref)))
                .count();
    }

    if local.in_recovery {
        return standby(inputs, local, &peers, d);
    }
    primary(inputs, local, &peers, d)
}

fn primary(
    inputs: &Inputs<'_>,
    local: &LocalFacts,
    peers: &[&PeerAnswer],
    mut d: Decision,
) -> Decision {
    let fence = |mut d: Decision, reason: String| {
        d.kind = Some(VerdictKind::Fenced);
        d.reason = reason;
        d.read_write_allowed = false;
        d.read_only_allowed = false;
        d
    };
    // (a) the legitimate primary, on the timeline it runs.
    match &d.legitimate {
        Some(c) if c.node == inputs.me && c.timeline == local.identity.timeline => {}
        Some(c) if c.node == inputs.me => {
            let reason = format!(
                "the highest claim is this node's timeline {}, but it runs timeline {}",
                c.timeline, local.identity.timeline
            );
            return fence(d, reason);
        }
        Some(c) => {
            let reason = format!("{} holds timeline {}", c.node, c.timeline);
            return fence(d, reason);
        }
        None if d.tie => {
            let reason = "two primaries claim the highest timeline; an operator must clear \
                          the tie (stop every primary but the one kept, then `pgsql-state claims init \
                          --new-cluster` on every voter)"
                .to_string();
            return fence(d, reason);
        }
        None => return fence(d, "no claim to confirm".into()),
    }
    // (b) a majority of all configured voters.
    if inputs.own_record.is_none() {
        return fence(
            d,
            "this node's claim record is missing or unreadable (run `pgsql-state claims init` \
             on this node), or catching up after one (it votes once it has read more than half \
             of the other voters' records)"
                .into(),
        );
    }
    if !is_majority(d.reached, d.voters) {
        let reason = format!("isolated: {}/{} voters reached", d.reached, d.voters);
        return fence(d, reason);
    }
    // A voter reached is not enough: its record must hold this claim (a
    // voter that could not verify it yet does not).
    if !is_majority(d.holders, d.voters) {
        let reason = format!(
            "{}/{} voters hold this node's claim on timeline {} (one that cannot verify it yet does not count)",
            d.holders, d.voters, local.identity.timeline
        );
        return fence(d, reason);
    }
    // (c) no majority of reached opinions names another master. An
    // opinion is against this node when it names masters and not this
    // one; a witness that sees two masters, this one among them, is not.
    let opinions = 1 + peers.len();
    let against: Vec<&str> = peers
        .iter()
        .filter(|a| !a.master.is_empty() && !a.master.iter().any(|m| m == inputs.my_ip))
        .map(|a| a.node.as_str())
        .collect();
    if against.len() * 2 > opinions {
        let reason = format!(
            "{} of {opinions} opinions name another master ({})",
            against.len(),
            against.join(", ")
        );
        return fence(d, reason);
    }
    // (d) the wait, from the first run that reached a majority on this
    // postmaster and timeline: what can be left of any other node's lease.
    let wait = wait::wait(inputs, local);
    d.wait_until_ms = Some(wait.until_ms);
    d.wait_for = Some(wait.wait_for.clone());
    if inputs.now_ms < wait.until_ms {
        let left = (wait.until_ms - inputs.now_ms).div_ceil(1000);
        return fence(d, format!("waiting out {} ({left} s left)", wait.wait_for));
    }
    d.kind = Some(VerdictKind::Production);
    d.reason = format!("legitimate primary, {}/{} voters", d.reached, d.voters);
    d.read_write_allowed = true;
    d.read_only_allowed = true;
    d
}

fn standby(
    inputs: &Inputs<'_>,
    local: &LocalFacts,
    peers: &[&PeerAnswer],
    mut d: Decision,
) -> Decision {
    if let Some(l) = &d.legitimate {
        d.timeline = l.timeline;
    }
    let lagging = |mut d: Decision, reason: String| {
        d.kind = Some(VerdictKind::Lagging);
        d.reason = reason;
        d.read_write_allowed = false;
        d.read_only_allowed = false;
        d
    };
    if let Some(upstream) = &local.upstream {
        let wrong = match &d.legitimate {
            Some(legit) => match upstream_node(inputs, local, peers, &legit.node) {
                UpstreamNode::Legitimate | UpstreamNode::Unknown => None,
                UpstreamNode::Other(other) => Some(format!(
                    "streams from {upstream} ({other}), not from {}",
                    legit.node
                )),
            },
            None if d.tie => Some(format!(
                "streams from {upstream}, and no primary is legitimate (a tie)"
            )),
            None => None,
        };
        // An upstream no address places, on a timeline below the
        // legitimate primary's: not the legitimate primary, whatever its
        // name (its walsender would have taken this standby to its
        // timeline). The zombie's Postgres at an address its peer is not
        // known by is found this way.
        let old_timeline = d.legitimate.as_ref().and_then(|legit| {
            let mine = local.identity.timeline;
            (mine > 0 && mine < legit.timeline).then(|| {
                format!(
                    "streams on timeline {mine} from {upstream}, below the legitimate primary \
                     {}'s timeline {}",
                    legit.node, legit.timeline
                )
            })
        });
        if let Some(reason) = wrong.or(old_timeline) {
            return lagging(d, reason);
        }
    }
    if let Some(bound) = inputs.max_lag_bytes {
        if !local.streaming {
            return lagging(d, "not streaming".into());
        }
        if let Some(lag) = local.lag_bytes.filter(|lag| *lag > bound) {
            return lagging(d, format!("{lag} bytes behind (maxLagBytes {bound})"));
        }
    }
    d.kind = Some(VerdictKind::Standby);
    d.reason = match &local.upstream {
        Some(u) => format!("streams from {u}"),
        None => "in recovery".into(),
    };
    d.read_write_allowed = false;
    d.read_only_allowed = true;
    d
}

/// Which node a standby streams from, as far as this run can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
enum UpstreamNode {
    /// The legitimate primary.
    Legitimate,
    /// Another node, named for the operator.
    Other(String),
    /// Nothing this run knows ties the upstream to a node: not doubted.
    Unknown,
}

/// Tells which node this standby streams from, by evidence that does not
/// depend on how `primary_conninfo` spells it:
/// 1. a node that lists this standby (by `application_name`) among those
///    streaming from it;
/// 2. a node one of whose addresses (its `primaryIP`, the address its peer
///    was asked at) is one the upstream resolved to.
///
/// The legitimate primary's evidence is taken first. An upstream that
/// matches no node (a name that did not resolve, a socket directory, an
/// address no node is known by) is `Unknown`, and a healthy stream is
/// then not called lagging.
fn upstream_node(
    inputs: &Inputs<'_>,
    local: &LocalFacts,
    peers: &[&PeerAnswer],
    legit: &str,
) -> UpstreamNode {
    let lists_me = |a: &PeerAnswer| a.streaming_standbys.iter().any(|s| s == inputs.me);
    let resolves_to = |addrs: &[IpAddr]| {
        addrs
            .iter()
            .any(|a| local.upstream_addrs.contains(&a.to_canonical()))
    };
    let my_ip: Vec<IpAddr> = inputs.my_ip.parse().into_iter().collect();
    // The legitimate primary's own evidence, then everyone else's.
    let legit_answer = peers.iter().find(|a| a.node == legit);
    if legit == inputs.me && resolves_to(&my_ip) {
        return UpstreamNode::Legitimate;
    }
    if legit_answer.is_some_and(|a| lists_me(a) || resolves_to(&a.addrs)) {
        return UpstreamNode::Legitimate;
    }
    let other = peers
        .iter()
        .filter(|a| a.node != legit && !a.witness)
        .find(|a| lists_me(a) || resolves_to(&a.addrs));
    if let Some(a) = other {
        return UpstreamNode::Other(a.node.clone());
    }
    // A configured peer that did not answer is still some node, and not the
    // legitimate one when that one answered at another address.
    if legit_answer.is_some() {
        let silent = inputs.peers.iter().find_map(|(addr, state)| match state {
            PeerState::Unreachable => {
                let host = crate::config::host_of(addr);
                let ip = host.parse::<IpAddr>().ok()?.to_canonical();
                local.upstream_addrs.contains(&ip).then(|| addr.clone())
            }
            PeerState::Answered(_) => None,
        });
        if let Some(addr) = silent {
            return UpstreamNode::Other(format!("the node whose peer {addr} did not answer"));
        }
    }
    UpstreamNode::Unknown
}
