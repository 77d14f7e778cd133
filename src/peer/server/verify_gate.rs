//! Who may start a verification of an inbound claim, so that strangers
//! cannot keep a voter from verifying the real new primary's claim.
//!
//! A verification asks the configured voters back, inside the answer, and
//! lasts up to half of `connectionDeadline` when one of them does not
//! answer. An ask that finds no slot free is answered unverified (its
//! claim counts at its next ask). There are two kinds of slot:
//! - one per configured voter, for asks from a configured voter's address
//!   (the neighbours and the witness, as their peers connect: the client
//!   binds its source to its own `bindAddress`), which strangers can never
//!   take;
//! - one for everyone else, which one source may take at most once a
//!   second, so a single stranger cannot hold it for good.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::conn_limit::Reserved;

/// How often one source outside the voters may take the shared slot.
pub const STRANGER_INTERVAL: Duration = Duration::from_secs(1);
/// How many sources the shared slot remembers; when full, it forgets all.
const REMEMBERED_SOURCES: usize = 4096;

/// The slots, and the addresses the configured voters ask from.
pub struct VerifyGate {
    voter_slots: Arc<Semaphore>,
    stranger_slot: Arc<Semaphore>,
    /// The configured voters' addresses, IP literals from the config and
    /// what their host names resolve to (refreshed in the background);
    /// the peer port's connection limiter reserves the same.
    voters: Reserved,
    /// When each source outside the voters last took the shared slot.
    stranger_seen: Mutex<HashMap<IpAddr, Instant>>,
}

/// A taken slot, given back when dropped.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl VerifyGate {
    /// A gate with `voter_count` slots for the addresses in `voters`, and
    /// one for everyone else.
    pub fn new(voters: Reserved, voter_count: usize) -> VerifyGate {
        VerifyGate {
            voter_slots: Arc::new(Semaphore::new(voter_count.max(1))),
            stranger_slot: Arc::new(Semaphore::new(1)),
            voters,
            stranger_seen: Mutex::default(),
        }
    }

    /// Whether `source` is a configured voter's address.
    pub fn is_voter(&self, source: IpAddr) -> bool {
        self.voters.contains(source)
    }

    /// Takes the slot an ask from `source` may use, at `now`, or `None`
    /// when it is busy (or this stranger took the shared one too lately).
    pub fn take(&self, source: Option<IpAddr>, now: Instant) -> Option<Slot> {
        if source.is_some_and(|ip| self.is_voter(ip)) {
            return take(&self.voter_slots);
        }
        let key = source.map(|ip| crate::conn_limit::source_key(ip.to_canonical()));
        if let Some(key) = key {
            let seen = self
                .stranger_seen
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if seen
                .get(&key)
                .is_some_and(|at| now.saturating_duration_since(*at) < STRANGER_INTERVAL)
            {
                return None;
            }
        }
        let slot = take(&self.stranger_slot)?;
        if let Some(key) = key {
            let mut seen = self
                .stranger_seen
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if seen.len() >= REMEMBERED_SOURCES {
                seen.clear();
            }
            seen.insert(key, now);
        }
        Some(slot)
    }
}

fn take(slots: &Arc<Semaphore>) -> Option<Slot> {
    Arc::clone(slots)
        .try_acquire_owned()
        .ok()
        .map(|permit| Slot { _permit: permit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strangers_never_take_the_voters_slot_nor_keep_their_own() {
        let voter: IpAddr = "10.0.0.2".parse().expect("an address");
        let a: IpAddr = "192.0.2.1".parse().expect("an address");
        let b: IpAddr = "192.0.2.2".parse().expect("an address");
        let gate = VerifyGate::new(Reserved::new([voter], false), 2);
        let t = Instant::now();
        // A stranger holds the shared slot; a voter still gets its own.
        let held = gate.take(Some(a), t).expect("the shared slot is free");
        assert!(
            gate.take(Some(b), t).is_none(),
            "one verification at a time"
        );
        let v = gate.take(Some(voter), t).expect("a voter's slot");
        let v2 = gate.take(Some(voter), t).expect("the other voter's slot");
        assert!(gate.take(Some(voter), t).is_none(), "busy");
        drop((v, v2));
        // The voter's address in its IPv4-mapped IPv6 spelling is the voter.
        let mapped: IpAddr = "::ffff:10.0.0.2".parse().expect("an address");
        assert!(gate.take(Some(mapped), t).is_some());
        // The stranger gives the slot back and cannot take it again at
        // once; another source can.
        drop(held);
        assert!(gate.take(Some(a), t + Duration::from_millis(10)).is_none());
        let other = gate.take(Some(b), t + Duration::from_millis(10));
        assert!(other.is_some(), "another source takes the free slot");
        drop(other);
        assert!(gate.take(Some(a), t + STRANGER_INTERVAL).is_some());
    }
}
