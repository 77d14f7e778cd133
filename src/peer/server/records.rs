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
                // A record catching up casts no vote.
                answer.record_ok = !record.catching_up;
                answer.record_catching_up = record.catching_up;
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

    /// The lease's clock: the record is read once more, under the
    /// record's lock, and goes into `answer` as read; when it holds the
    /// asker's claim this voter confirms the asker now, before the lock is
    /// let go and before the answer leaves. Confirming from a record read
    /// earlier in the answer would let a raise in between (another
    /// asker's verified promotion) go unseen: the old primary renewed
    /// after this voter had already vouched for its successor. Then it
    /// reports how long ago it confirmed each claimant, and its uptime.
    /// Any ask that names a claimant counts, a stranger's too: that can
    /// only lengthen a wait. The names are the record's, so the list stays
    /// as short as the record.
    pub(super) async fn confirm_and_report(&self, asker: &WhatYouKnow, answer: &mut IKnow) {
        if answer.record_ok {
            let inner = self.inner.clone();
            let dir = inner.state_dir.clone();
            let cluster = answer.claim_system_identifier;
            let name = asker.node_name.clone();
            let read = tokio::task::spawn_blocking(move || {
                claims_store::read_then(&dir, |record| {
                    let holds = !record.catching_up
                        && record
                            .highest(cluster)
                            .is_some_and(|h| h.nodes.contains(&name));
                    if holds && crate::fencing::claims::check_node_name(&name).is_ok() {
                        let now = crate::fencing::clock::boottime_ms();
                        inner
                            .confirmed
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .insert(name, now);
                    }
                })
            })
            .await;
            match read {
                Ok(Ok((record, ()))) => {
                    answer.record_ok = !record.catching_up;
                    answer.record_catching_up = record.catching_up;
                    fill_record(answer, &record);
                }
                Ok(Err(e)) => {
                    answer.record_ok = false;
                    self.warn_record(&e);
                }
                Err(e) => {
                    answer.record_ok = false;
                    log::error!("claim record task failed: {e}");
                }
            }
        }
        let now = crate::fencing::clock::boottime_ms();
        let confirmed = self
            .inner
            .confirmed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        answer.confirmations = confirmed
            .iter()
            .map(|(node, at)| Confirmation {
                node: node.clone(),
                age_ms: now.saturating_sub(*at),
            })
            .collect();
        answer.uptime_ms = now.saturating_sub(self.inner.started_ms).max(1);
    }

    /// A record catching up (re-initialised) asks every other configured
    /// voter for its record, and once more than half of them gave a
    /// usable one (each voter once, by name; never this node), rises to
    /// the highest and votes again. Nothing while it is not catching up.
    pub(super) async fn catch_up_if_needed(&self) {
        let dir = self.inner.state_dir.clone();
        let catching_up = tokio::task::spawn_blocking(move || claims_store::load(&dir))
            .await
            .is_ok_and(|r| r.is_ok_and(|r| r.catching_up));
        if !catching_up {
            return;
        }
        let views = self.inner.verify_client.ask_all(&self.inner.voters).await;
        // The cluster this voter votes in: its own Postgres's, or, on the
        // witness, the one every data node that answered reports. Unknown
        // or in doubt (two clusters): no catch-up now.
        let cluster = match &self.inner.kind {
            super::Kind::Data(node) => node.facts().await.ok().map(|f| f.system_identifier),
            super::Kind::Witness(_) => {
                let mut seen: Vec<u64> = views
                    .iter()
                    .filter_map(|(_, v)| match v {
                        PeerView::Answered(a) if a.system_identifier != 0 => {
                            Some(a.system_identifier)
                        }
                        _ => None,
                    })
                    .collect();
                seen.dedup();
                match seen.as_slice() {
                    [one] => Some(*one),
                    _ => None,
                }
            }
        };
        let Some(cluster) = cluster.filter(|c| *c != 0) else {
            log::warn!(
                "the claim record is catching up, and this voter cannot tell its cluster now; \
                 it casts no vote meanwhile"
            );
            return;
        };
        let mut seen: Vec<String> = Vec::new();
        let mut read: Vec<Vec<Claim>> = Vec::new();
        for (_, view) in &views {
            let PeerView::Answered(a) = view else {
                continue;
            };
            // Only a usable record about this cluster is a record read: an
            // answer about another cluster, or one that could not tell
            // which (its Postgres down, its record holding several), says
            // nothing of what this cluster's voters hold.
            let ours = a.claim_system_identifier == cluster
                && (a.system_identifier == 0 || a.system_identifier == cluster);
            if !a.record_ok
                || !ours
                || a.node_name.is_empty()
                || a.node_name == self.inner.me.node_name
                || seen.contains(&a.node_name)
            {
                continue;
            }
            seen.push(a.node_name.clone());
            read.push(if a.claim_timeline > 0 {
                a.claim_nodes
                    .iter()
                    .map(|node| Claim {
                        system_identifier: cluster,
                        timeline: a.claim_timeline,
                        node: node.clone(),
                    })
                    .collect()
            } else {
                Vec::new()
            });
        }
        let (dir, others) = (self.inner.state_dir.clone(), self.inner.voters.len());
        match tokio::task::spawn_blocking(move || claims_store::catch_up(&dir, others, &read)).await
        {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => log::warn!(
                "the claim record is catching up: {} of {others} other voters' records read, \
                 more than half needed; this node casts no vote meanwhile",
                seen.len()
            ),
            Ok(Err(e)) => self.warn_record(&e),
            Err(e) => log::error!("claim record task failed: {e}"),
        }
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

/// Puts `record`'s claim for the answer's cluster into `answer` (none,
/// when it holds none: nothing from an earlier read stays).
fn fill_record(answer: &mut IKnow, record: &crate::fencing::claims::ClaimRecord) {
    answer.claim_timeline = 0;
    answer.claim_nodes.clear();
    if let Some(h) = record.highest(answer.claim_system_identifier) {
        answer.claim_timeline = h.timeline;
        answer.claim_nodes = h.nodes.iter().cloned().collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSID: u64 = 7_300_000_000_000_000_001;

    /// A witness's service over `state_dir` (no Postgres needed).
    fn witness(state_dir: &std::path::Path) -> PeerService {
        let yaml = format!(
            "harepd:\n  nodeName: witness\n  primaryIP: 127.0.0.9\n  haproxy:\n    server: \
             [127.0.0.1]\n    users:\n      readWrite: harw\n  gRPC:\n    bindPort: 10000\n    \
             bindAddress: 127.0.0.9\n    neighbours: [\"127.0.0.1\", \"127.0.0.2\"]\n    \
             witness: 127.0.0.9\n  stateDir: {}\n",
            state_dir.display()
        );
        let loaded = crate::config::parse(&yaml).expect("a witness config");
        PeerService::new(&loaded.config, 0).expect("a service")
    }

    fn claim(timeline: u32, node: &str) -> Claim {
        Claim {
            system_identifier: SYSID,
            timeline,
            node: node.into(),
        }
    }

    /// Issue 24, item 2: the record an answer carries was read early; a
    /// raise comes before the confirmation (another asker's verified
    /// promotion of node_b). The voter must not confirm node_a from the
    /// old read, and the answer carries the record it confirmed from.
    #[tokio::test]
    async fn a_voter_confirms_only_from_the_record_its_answer_returns() {
        let dir = tempfile::tempdir().expect("a temp dir");
        claims_store::init(dir.path(), true).expect("init");
        claims_store::raise(dir.path(), &[claim(1, "node_a")]).expect("raise");
        let service = witness(dir.path());
        let asker = WhatYouKnow {
            node_name: "node_a".into(),
            ..WhatYouKnow::default()
        };
        // What the answer read before the raise.
        let mut answer = IKnow {
            record_ok: true,
            claim_system_identifier: SYSID,
            claim_timeline: 1,
            claim_nodes: vec!["node_a".into()],
            ..IKnow::default()
        };
        claims_store::raise(dir.path(), &[claim(2, "node_b")]).expect("raise");
        service.confirm_and_report(&asker, &mut answer).await;
        assert_eq!(answer.claim_timeline, 2);
        assert_eq!(answer.claim_nodes, ["node_b"]);
        assert!(
            !answer.confirmations.iter().any(|c| c.node == "node_a"),
            "node_a confirmed from a record read before the raise: {:?}",
            answer.confirmations
        );
        // With the record still holding it, the claimant is confirmed.
        let asker_b = WhatYouKnow {
            node_name: "node_b".into(),
            ..WhatYouKnow::default()
        };
        service.confirm_and_report(&asker_b, &mut answer).await;
        assert!(answer.confirmations.iter().any(|c| c.node == "node_b"));
    }
}
