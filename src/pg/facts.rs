//! Node facts: everything DESIGN.md's "Node facts" lists, in one
//! simple-query round trip. Used by the peer (and later the reconciler);
//! the responder keeps its own cheaper query ([`super::role`]).

use tokio_postgres::Client;

use super::{first_row, parse_bool, parse_num, parse_system_identifier, AnswerError, ProbeError};

/// The one query. Columns, in order: in recovery, system identifier,
/// timeline, postmaster start (µs), current LSN, receive LSN, replay LSN,
/// WAL receiver status, sender host, connected standbys (records separated
/// by chr(30), fields by chr(31)).
///
/// On a primary the timeline comes from the current WAL file name, since
/// `pg_control_checkpoint()` lags until the next checkpoint after a
/// promotion; on a standby from `pg_stat_wal_receiver.received_tli`
/// (which needs `pg_read_all_stats` or `pg_monitor`), or, when its WAL
/// receiver is not running (cut from its upstream, as in every failover),
/// from its last restartpoint (`pg_control_checkpoint()`): without it a
/// disconnected standby could not be decided for at all.
pub const FACTS_SQL: &str = "\
SELECT r, s.system_identifier, \
 CASE WHEN r THEN coalesce(w.received_tli, (SELECT timeline_id FROM pg_control_checkpoint())) \
  ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END, \
 (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint, \
 CASE WHEN r THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') END, \
 pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0'), \
 pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0'), \
 w.status, w.sender_host, \
 (SELECT string_agg(concat_ws(chr(31), coalesce(application_name, ''), coalesce(host(client_addr), ''), \
   coalesce(state, ''), coalesce(CASE WHEN r THEN NULL \
   ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::text END, '')), chr(30)) \
  FROM pg_stat_replication) \
FROM pg_is_in_recovery() r, pg_control_system() s LEFT JOIN pg_stat_wal_receiver w ON true";

/// What one node's Postgres says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeFacts {
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// `pg_control_system().system_identifier`, its bits as u64.
    pub system_identifier: u64,
    /// The timeline (see [`FACTS_SQL`] for where it comes from).
    pub timeline: Option<u32>,
    /// `pg_postmaster_start_time()` in microseconds since the epoch.
    pub postmaster_start_us: i64,
    /// `pg_current_wal_lsn()` on a primary, as a byte position.
    pub current_lsn: Option<u64>,
    /// `pg_last_wal_receive_lsn()` on a standby.
    pub receive_lsn: Option<u64>,
    /// `pg_last_wal_replay_lsn()` on a standby.
    pub replay_lsn: Option<u64>,
    /// `pg_stat_wal_receiver.status` (`streaming`, …), on a standby.
    pub wal_receiver_status: Option<String>,
    /// Where a standby streams from (`sender_host`).
    pub sender_host: Option<String>,
    /// Connected standbys, from `pg_stat_replication`.
    pub standbys: Vec<StandbyFacts>,
}

impl NodeFacts {
    /// Received but not yet replayed WAL, in bytes (a standby's replay lag).
    pub fn lag_bytes(&self) -> Option<u64> {
        match (self.receive_lsn, self.replay_lsn) {
            (Some(received), Some(replayed)) => Some(received.saturating_sub(replayed)),
            _ => None,
        }
    }

    /// Whether the WAL receiver is streaming.
    pub fn streaming(&self) -> bool {
        self.wal_receiver_status.as_deref() == Some("streaming")
    }
}

/// One row of `pg_stat_replication`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StandbyFacts {
    /// `application_name`: the node name, as repmgr sets it.
    pub name: String,
    /// `client_addr`, when not a Unix socket.
    pub client_addr: Option<String>,
    /// `state` (`streaming`, `catchup`, …).
    pub state: String,
    /// Bytes between the primary's current LSN and the standby's replay LSN.
    pub replay_lag_bytes: Option<u64>,
}

/// Runs the facts query on `client`: one round trip.
pub async fn query(client: &Client) -> Result<NodeFacts, ProbeError> {
    let cells = first_row(client, FACTS_SQL).await?;
    let cells: Vec<Option<&str>> = cells.iter().map(Option::as_deref).collect();
    Ok(parse_row(&cells)?)
}

/// Parses the query's one row of text cells.
pub fn parse_row(cells: &[Option<&str>]) -> Result<NodeFacts, AnswerError> {
    if cells.len() != 10 {
        return Err(AnswerError::Columns {
            expected: 10,
            got: cells.len(),
        });
    }
    let in_recovery =
        parse_bool("pg_is_in_recovery", cells[0])?.ok_or(AnswerError::Null("pg_is_in_recovery"))?;
    let text = |i: usize| cells[i].filter(|t| !t.is_empty()).map(str::to_string);
    Ok(NodeFacts {
        in_recovery,
        system_identifier: parse_system_identifier(cells[1])?
            .ok_or(AnswerError::Null("system_identifier"))?,
        timeline: parse_num("timeline", cells[2])?,
        postmaster_start_us: parse_num("postmaster start", cells[3])?
            .ok_or(AnswerError::Null("postmaster start"))?,
        current_lsn: parse_num("current LSN", cells[4])?,
        receive_lsn: parse_num("receive LSN", cells[5])?,
        replay_lsn: parse_num("replay LSN", cells[6])?,
        wal_receiver_status: text(7),
        sender_host: text(8),
        standbys: cells[9].map(parse_standbys).unwrap_or_default(),
    })
}

fn parse_standbys(text: &str) -> Vec<StandbyFacts> {
    text.split('\u{1e}')
        .filter(|record| !record.is_empty())
        .map(|record| {
            let mut fields = record.split('\u{1f}');
            let mut next = || fields.next().unwrap_or("").to_string();
            let (name, addr, state, lag) = (next(), next(), next(), next());
            StandbyFacts {
                name,
                client_addr: (!addr.is_empty()).then_some(addr),
                state,
                replay_lag_bytes: lag.split('.').next().and_then(|l| l.parse().ok()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_primary_and_a_standby() {
        let standbys =
            "node_2\u{1f}127.0.0.1\u{1f}streaming\u{1f}0\u{1e}node_3\u{1f}\u{1f}catchup\u{1f}4096";
        let primary = [
            Some("f"),
            Some("7300000000000000001"),
            Some("3"),
            Some("1700000000000000"),
            Some("50331648"),
            None,
            None,
            None,
            None,
            Some(standbys),
        ];
        let facts = parse_row(&primary).expect("a primary row");
        assert!(!facts.in_recovery);
        assert_eq!(facts.timeline, Some(3));
        assert_eq!(facts.current_lsn, Some(50_331_648));
        assert_eq!(
            facts.standbys,
            [
                StandbyFacts {
                    name: "node_2".into(),
                    client_addr: Some("127.0.0.1".into()),
                    state: "streaming".into(),
                    replay_lag_bytes: Some(0)
                },
                StandbyFacts {
                    name: "node_3".into(),
                    client_addr: None,
                    state: "catchup".into(),
                    replay_lag_bytes: Some(4096)
                },
            ]
        );
        let standby = [
            Some("t"),
            Some("7300000000000000001"),
            Some("3"),
            Some("1700000000000000"),
            None,
            Some("50331648"),
            Some("50331000"),
            Some("streaming"),
            Some("10.0.0.1"),
            None,
        ];
        let facts = parse_row(&standby).expect("a standby row");
        assert_eq!(facts.lag_bytes(), Some(648));
        assert!(facts.streaming());
        assert_eq!(facts.sender_host.as_deref(), Some("10.0.0.1"));
        assert!(facts.standbys.is_empty());
    }

    #[test]
    fn rejects_malformed_rows() {
        let mut row = [
            Some("f"),
            Some("1"),
            None,
            Some("5"),
            None,
            None,
            None,
            None,
            None,
            None,
        ];
        assert!(parse_row(&row).is_ok());
        row[0] = None;
        assert!(parse_row(&row).is_err());
        row[0] = Some("f");
        row[1] = Some("x");
        assert!(parse_row(&row).is_err());
        row[1] = Some("-8070450532247928832");
        assert_eq!(
            parse_row(&row).map(|f| f.system_identifier),
            Ok(0x9000_0000_0000_0000),
            "a negative system identifier keeps its bits"
        );
        assert!(parse_row(&row[..9]).is_err());
    }
}
