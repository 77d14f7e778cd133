//! Asking the local Postgres for its role: one connection, one simple-query
//! round trip, bounded as a whole by `checkTimeout`.
//!
//! The query asks only what the settings need: the role always, the WAL
//! receiver and lag when `maxLagBytes` is set, and the postmaster's
//! identity when `fencing: strict` needs it to check a lease.

use std::time::Duration;

use tokio_postgres::Client;

use super::{
    connect, first_row, parse_bool, parse_num, parse_system_identifier, AnswerError, ProbeError,
};
use crate::fencing::verdict::Identity;
use crate::word::RoleFacts;

/// What to ask, fixed for the life of a responder.
#[derive(Debug, Clone)]
pub struct ProbeQuery {
    sql: String,
    with_lag: bool,
    with_identity: bool,
}

impl ProbeQuery {
    /// Builds the cheapest query that answers what the settings need.
    ///
    /// With lag, it also asks whether this role may see the WAL receiver's
    /// status (`pg_read_all_stats`, which `pg_monitor` includes, or a
    /// superuser): without it Postgres shows the status as NULL, and the
    /// responder must say why a standby is `lagging`.
    pub fn new(with_lag: bool, with_identity: bool) -> ProbeQuery {
        let mut sql = String::from("SELECT r");
        if with_lag {
            sql.push_str(
                ", CASE WHEN r THEN (SELECT status = 'streaming' FROM pg_stat_wal_receiver) END\
                 , CASE WHEN r THEN pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) END\
                 , pg_has_role('pg_read_all_stats', 'USAGE')",
            );
        }
        if with_identity {
            sql.push_str(
                ", (SELECT system_identifier FROM pg_control_system())\
                 , CASE WHEN r THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver),\
                     (SELECT timeline_id FROM pg_control_checkpoint()))\
                   ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END\
                 , (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint",
            );
        }
        sql.push_str(" FROM pg_is_in_recovery() r");
        ProbeQuery {
            sql,
            with_lag,
            with_identity,
        }
    }

    /// The SQL text (one statement, sent with the simple-query protocol).
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// How many columns the query returns.
    fn columns(&self) -> usize {
        1 + if self.with_lag { 3 } else { 0 } + if self.with_identity { 3 } else { 0 }
    }

    /// Runs the query on `client`: one round trip.
    pub async fn run(&self, client: &Client) -> Result<RoleFacts, ProbeError> {
        let cells = first_row(client, &self.sql).await?;
        let cells: Vec<Option<&str>> = cells.iter().map(Option::as_deref).collect();
        Ok(self.parse_row(&cells)?)
    }

    /// Parses one row of text cells, as the simple-query protocol returns them.
    pub fn parse_row(&self, cells: &[Option<&str>]) -> Result<RoleFacts, AnswerError> {
        if cells.len() != self.columns() {
            return Err(AnswerError::Columns {
                expected: self.columns(),
                got: cells.len(),
            });
        }
        let mut cells = cells.iter().copied();
        // The length was checked above, so every `next` has a cell.
        let mut next = || cells.next().flatten();
        let in_recovery = parse_bool("pg_is_in_recovery", next())?
            .ok_or(AnswerError::Null("pg_is_in_recovery"))?;
        let mut facts = RoleFacts {
            in_recovery,
            ..RoleFacts::default()
        };
        if self.with_lag {
            facts.streaming = parse_bool("streaming", next())?;
            // Replay can be ahead of a restarted receiver: negative is 0.
            facts.lag_bytes = parse_num::<i64>("lag", next())?.map(|lag| lag.max(0) as u64);
            facts.receiver_visible = parse_bool("pg_has_role", next())?;
        }
        if self.with_identity {
            let sysid = parse_system_identifier(next())?;
            let timeline = parse_num::<u32>("timeline", next())?;
            let start = parse_num::<i64>("postmaster start", next())?;
            facts.identity = match (sysid, timeline, start) {
                (Some(system_identifier), Some(timeline), Some(postmaster_start_us)) => {
                    Some(Identity {
                        system_identifier,
                        timeline,
                        postmaster_start_us,
                    })
                }
                _ => None,
            };
        }
        Ok(facts)
    }
}

/// One-shot: connect, ask, and say goodbye, all within `timeout`.
/// The goodbye happens after `answer` has used the facts, so the client of
/// the responder is never kept waiting for it.
pub async fn probe_once(
    config: &tokio_postgres::Config,
    query: &ProbeQuery,
    timeout: Duration,
) -> (Result<RoleFacts, ProbeError>, Option<Goodbye>) {
    let attempt = async {
        let (client, driver) = connect(config).await?;
        let facts = query.run(&client).await;
        Ok::<_, ProbeError>((facts, Goodbye { client, driver }))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok((facts, goodbye))) => (facts, Some(goodbye)),
        Ok(Err(e)) => (Err(e), None),
        Err(_) => (Err(ProbeError::Timeout(timeout)), None),
    }
}

/// A connection to close politely (a Terminate message, so Postgres logs
/// no "unexpected EOF").
pub struct Goodbye {
    client: Client,
    driver: tokio::task::JoinHandle<()>,
}

impl Goodbye {
    /// Closes the connection, waiting at most `bound` for the server.
    pub async fn close(self, bound: Duration) {
        drop(self.client);
        let _ = tokio::time::timeout(bound, self.driver).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rows() {
        let id = Some(Identity {
            system_identifier: 7_000_000_000_000_000_001,
            timeline: 3,
            postmaster_start_us: 17,
        });
        type Case<'a> = (bool, bool, &'a [Option<&'a str>], Option<RoleFacts>);
        let cases: &[Case<'_>] = &[
            (false, false, &[Some("f")], Some(RoleFacts::default())),
            (
                false,
                false,
                &[Some("t")],
                Some(RoleFacts {
                    in_recovery: true,
                    ..RoleFacts::default()
                }),
            ),
            (false, false, &[None], None),
            (false, false, &[Some("yes")], None),
            (false, false, &[], None),
            (
                true,
                false,
                &[Some("t"), Some("t"), Some("1024"), Some("t")],
                Some(RoleFacts {
                    in_recovery: true,
                    streaming: Some(true),
                    lag_bytes: Some(1024),
                    receiver_visible: Some(true),
                    identity: None,
                }),
            ),
            (
                true,
                false,
                &[Some("t"), None, Some("0"), Some("f")],
                Some(RoleFacts {
                    in_recovery: true,
                    streaming: None,
                    lag_bytes: Some(0),
                    receiver_visible: Some(false),
                    identity: None,
                }),
            ),
            (
                true,
                false,
                &[Some("t"), Some("t"), Some("-5"), Some("t")],
                Some(RoleFacts {
                    in_recovery: true,
                    streaming: Some(true),
                    lag_bytes: Some(0),
                    receiver_visible: Some(true),
                    identity: None,
                }),
            ),
            (true, false, &[Some("t"), Some("t"), Some("5")], None),
            (
                false,
                true,
                &[
                    Some("f"),
                    Some("-8070450532247928832"),
                    Some("3"),
                    Some("17"),
                ],
                Some(RoleFacts {
                    identity: Some(Identity {
                        system_identifier: 0x9000_0000_0000_0000,
                        timeline: 3,
                        postmaster_start_us: 17,
                    }),
                    ..RoleFacts::default()
                }),
            ),
            (
                false,
                true,
                &[
                    Some("f"),
                    Some("7000000000000000001"),
                    Some("3"),
                    Some("17"),
                ],
                Some(RoleFacts {
                    identity: id.clone(),
                    ..RoleFacts::default()
                }),
            ),
            (
                false,
                true,
                &[Some("f"), Some("7000000000000000001"), None, Some("17")],
                Some(RoleFacts::default()),
            ),
        ];
        for (lag, identity, cells, want) in cases {
            let got = ProbeQuery::new(*lag, *identity).parse_row(cells).ok();
            assert_eq!(&got, want, "{cells:?}");
        }
    }

    #[test]
    fn query_shape_follows_needs() {
        assert_eq!(
            ProbeQuery::new(false, false).sql(),
            "SELECT r FROM pg_is_in_recovery() r"
        );
        assert!(ProbeQuery::new(true, false)
            .sql()
            .contains("pg_stat_wal_receiver"));
        assert!(ProbeQuery::new(false, true)
            .sql()
            .contains("pg_control_system"));
    }
}
