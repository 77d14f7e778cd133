//! The peer's claim record: raised before each answer that reports it,
//! reported in every answer, and raised from an inbound claim only once a
//! configured voter confirms it.

use super::{clip, PeerService};
use crate::fencing::claims::Claim;
use crate::fencing::claims_store;
use crate::peer::client::PeerView;
use crate::peer::opinion;
use crate::peer::opinion::Me;
use crate::peer::proto::{Confirmation, IKnow, Role, WhatYouKnow};

impl PeerService {
    /// Raises (or just reads) the claim record and puts it in `answer`.
    /// Returns the record's one cluster, when it holds exactly one.
    pub(super) async fn attach_record(
        &self,
        answer: &mut IKnow,
        claims: Vec<Claim>,
        cluster: u64,
    ) -> Option<u64> {
        let dir = self.inner.state_dir.clone();
        let record = tokio::task::spawn_blocking(move || {
            if claims.is_empty() {
                claims_store::load(&dir)
            } else {
                claims_store::raise(&dir, &claims)
            }
        })
        .await;
        match record {
            Ok(Ok(record)) => {
                let only = match record.clusters.keys().collect::<Vec<_>>().as_slice() {
                    [only] => Some(**only),
                    _ => None,
                };
                // Nobody named a cluster and this node cannot tell its own
                // (its Postgres is down): the record's only cluster is it.
                let cluster = match (cluster, only) {
                    (0, Some(only)) => only,
                    _ => cluster,
                };
                answer.record_ok = true;
                answer.claim_system_identifier = cluster;
                fill_record(answer, &record);
                only
            }
            Ok(Err(e)) => {
                answer.record_ok = false;
                self.warn_record(&e);
                None
            }
            Err(e) => {
                answer.record_ok = false;
                log::error!("claim record task failed: {e}");
                None
            }
        }
    }

    /// An inbound ask that claims a primary above this voter's record is
    /// information, not an instruction: inside the answer (within the
    /// fan-out budget), the configured voters are asked, and only a
    /// configured peer that itself answers as that primary (same name,
    /// cluster, timeline and postmaster) raises the record, which `answer`
    /// then carries. A stranger's claim changes nothing.
    ///
    /// Only a claim on this voter's own cluster is verified: the one its
    /// Postgres (or, on the witness, the data nodes) reports, else the one
    /// its record holds. `from` decides which verification slot the ask
    /// may take ([`super::VerifyGate`]): strangers cannot take the one kept
    /// for the configured voters. An ask whose slot is busy gets its
    /// answer unverified; its claim counts at its next ask.
    pub(super) async fn verify_inline(
        &self,
        asker: &WhatYouKnow,
        answer: &mut IKnow,
        record_cluster: Option<u64>,
        from: Option<std::net::IpAddr>,
    ) {
        let claims = asker.role == Role::Primary as i32
            && asker.system_identifier != 0
            && asker.timeline > 0
            && crate::fencing::claims::check_node_name(&asker.node_name).is_ok();
        let ours = match answer.system_identifier {
            0 => record_cluster,
            known => Some(known),
        };
        let our_cluster = ours.is_none_or(|ours| ours == asker.system_identifier);
        let above = answer.claim_system_identifier != asker.system_identifier
            || asker.timeline > answer.claim_timeline
            || (asker.timeline == answer.claim_timeline
                && !answer.claim_nodes.contains(&asker.node_name));
        if !claims || !our_cluster || !above || !answer.record_ok || self.inner.voters.is_empty() {
            return;
        }
        let Some(slot) = self.inner.verify_gate.take(from, std::time::Instant::now()) else {
            log::debug!(
                "a claim of {:?} on timeline {} is not verified now: its slot is busy",
                clip(&asker.node_name),
                asker.timeline
            );
            return;
        };
        if let Some(record) = self.verify(asker).await {
            fill_record(answer, &record);
        }
        drop(slot);
    }

    /// Asks the configured voters (in parallel, within the fan-out budget)
    /// whether one of them is the primary `claim` says; raises the record
    /// with the claim when one is, and returns the record as it now
    /// stands.
    async fn verify(&self, claim: &WhatYouKnow) -> Option<crate::fencing::claims::ClaimRecord> {
        let mut asks = tokio::task::JoinSet::new();
        for addr in &self.inner.voters {
            let (client, addr) = (self.inner.verify_client.clone(), addr.clone());
            asks.spawn(async move {
                let view = client.ask(&addr).await;
                (addr, view)
            });
        }
        // The first that confirms will do; the rest are dropped.
        let mut confirmed = None;
        while let Some(joined) = asks.join_next().await {
            if let Ok((addr, PeerView::Answered(a))) = joined {
                if a.node_name == claim.node_name
                    && opinion::role_of(&a) == Role::Primary
                    && a.system_identifier == claim.system_identifier
                    && a.timeline == claim.timeline
                    && a.postmaster_start_us == claim.postmaster_start_us
                {
                    confirmed = Some(addr);
                    break;
                }
            }
        }
        let Some(addr) = confirmed else {
            log::info!(
                "an ask claimed {:?} is primary on timeline {}; no configured peer confirms it, so it changes nothing",
                clip(&claim.node_name),
                claim.timeline
            );
            return None;
        };
        let verified = Claim {
            system_identifier: claim.system_identifier,
            timeline: claim.timeline,
            node: claim.node_name.clone(),
        };
        let dir = self.inner.state_dir.clone();
        match tokio::task::spawn_blocking(move || claims_store::raise(&dir, &[verified])).await {
            Ok(Ok(record)) => {
                log::info!(
                    "verified {}'s claim of timeline {} by asking {addr}",
                    claim.node_name,
                    claim.timeline
                );
                Some(record)
            }
            Ok(Err(e)) => {
                self.warn_record(&e);
                None
            }
            Err(e) => {
                log::error!("claim record task failed: {e}");
                None
            }
        }
    }

    /// The lease's clock: when the record in `answer` holds the asker's
    /// claim, this voter confirms the asker now (before the answer
    /// leaves); then it reports how long ago it confirmed each claimant,
    /// and its uptime. Any ask that names a claimant counts, a stranger's
    /// too: that can only lengthen a wait. The names are the record's, so
    /// the list stays as short as the record.
    pub(super) fn confirm_and_report(&self, asker: &WhatYouKnow, answer: &mut IKnow) {
        let now = crate::fencing::clock::boottime_ms();
        let mut confirmed = self
            .inner
            .confirmed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if answer.record_ok
            && crate::fencing::claims::check_node_name(&asker.node_name).is_ok()
            && answer.claim_nodes.contains(&asker.node_name)
        {
            confirmed.insert(asker.node_name.clone(), now);
        }
        answer.confirmations = confirmed
            .iter()
            .map(|(node, at)| Confirmation {
                node: node.clone(),
                age_ms: now.saturating_sub(*at),
            })
            .collect();
        answer.uptime_ms = now.saturating_sub(self.inner.started_ms).max(1);
    }

    /// Logs a missing or unreadable record at most once a minute.
    fn warn_record(&self, e: &claims_store::ClaimStoreError) {
        use std::sync::atomic::Ordering;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let last = self.inner.record_warned_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 60_000 {
            self.inner.record_warned_ms.store(now, Ordering::Relaxed);
            log::error!("{e}");
        }
    }
}

/// The claim a data node's own answer makes: itself, when its Postgres is
/// a primary with a known timeline.
pub(super) fn own_claim(me: &Me, answer: &IKnow) -> Option<Claim> {
    (answer.role == Role::Primary as i32 && answer.timeline > 0 && answer.system_identifier != 0)
        .then(|| Claim {
            system_identifier: answer.system_identifier,
            timeline: answer.timeline,
            node: me.node_name.clone(),
        })
}

/// The claims a witness's fan-out saw: each data node that reported itself
/// primary, and each data node's own record.
pub(super) fn observed_claims(answer: &IKnow) -> Vec<Claim> {
    let mut claims = Vec::new();
    for a in &answer.observed {
        if opinion::role_of(a) == Role::Primary && a.timeline > 0 && a.system_identifier != 0 {
            claims.push(Claim {
                system_identifier: a.system_identifier,
                timeline: a.timeline,
                node: a.node_name.clone(),
            });
        }
        if a.record_ok && a.claim_system_identifier != 0 && a.claim_timeline > 0 {
            claims.extend(a.claim_nodes.iter().map(|node| Claim {
                system_identifier: a.claim_system_identifier,
                timeline: a.claim_timeline,
                node: node.clone(),
            }));
        }
    }
    claims
}

/// Puts `record`'s claim for the answer's cluster into `answer`.
fn fill_record(answer: &mut IKnow, record: &crate::fencing::claims::ClaimRecord) {
    if let Some(h) = record.highest(answer.claim_system_identifier) {
        answer.claim_timeline = h.timeline;
        answer.claim_nodes = h.nodes.iter().cloned().collect();
    }
}
