//! Asking the local Postgres for its role: one connection, one simple-query
//! round trip, bounded as a whole by `checkTimeout`.
//!
//! The query asks only what the settings need: the role always, the WAL
//! receiver and lag when `maxLagBytes` is set, and the postmaster's
//! identity when `fencing: strict` needs it to check a lease.

use std::time::Duration;

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::word::{DownReason, Identity, RoleFacts};

/// Why the probe failed. Each maps to a fixed, short [`DownReason`].
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("conninfo is not valid: {0}")]
    Conninfo(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(#[source] tokio_postgres::Error),
    #[error("query failed: {0}")]
    Query(#[source] tokio_postgres::Error),
    #[error("unexpected answer: {0}")]
    Answer(String),
}

impl ProbeError {
    /// The short reason the responder prints after `down: `.
    pub fn down_reason(&self) -> DownReason {
        match self {
            ProbeError::Conninfo(_) => DownReason::BadConninfo,
            ProbeError::Timeout(_) => DownReason::Timeout,
            ProbeError::Connect(e) => connect_reason(e),
            ProbeError::Query(e) if e.is_closed() => DownReason::ConnectionLost,
            ProbeError::Query(e) => match e.as_db_error() {
                Some(_) => DownReason::QueryFailed,
                None => DownReason::ConnectionLost,
            },
            ProbeError::Answer(_) => DownReason::QueryFailed,
        }
    }

    /// Whether a persistent connection must be dropped after this error.
    pub fn breaks_connection(&self) -> bool {
        !matches!(self, ProbeError::Query(e) if e.as_db_error().is_some())
    }
}

fn connect_reason(e: &tokio_postgres::Error) -> DownReason {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let message = db.message();
        return match code {
            "57P03" if message.contains("starting up") => DownReason::StartingUp,
            "57P03" if message.contains("shutting down") => DownReason::ShuttingDown,
            "57P03" => DownReason::CrashRecovery,
            "57P01" | "57P02" => DownReason::ShuttingDown,
            "53300" => DownReason::TooManyConnections,
            "28P01" => DownReason::AuthenticationFailed,
            "28000" => DownReason::RejectedByHba,
            "3D000" => DownReason::NoSuchDatabase,
            _ => DownReason::ConnectFailed,
        };
    }
    let io = std::error::Error::source(e).and_then(|s| s.downcast_ref::<std::io::Error>());
    match io.map(std::io::Error::kind) {
        Some(std::io::ErrorKind::ConnectionRefused) => DownReason::ConnectionRefused,
        Some(std::io::ErrorKind::NotFound) => DownReason::NoServerSocket,
        Some(std::io::ErrorKind::TimedOut) => DownReason::Timeout,
        _ if e.is_closed() => DownReason::ConnectionLost,
        _ => DownReason::ConnectFailed,
    }
}

/// What to ask, fixed for the life of a responder.
#[derive(Debug, Clone)]
pub struct ProbeQuery {
    sql: String,
    with_lag: bool,
    with_identity: bool,
}

impl ProbeQuery {
    /// Builds the cheapest query that answers what the settings need.
    pub fn new(with_lag: bool, with_identity: bool) -> ProbeQuery {
        let mut sql = String::from("SELECT r");
        if with_lag {
            sql.push_str(
                ", CASE WHEN r THEN (SELECT status = 'streaming' FROM pg_stat_wal_receiver) END\
                 , CASE WHEN r THEN pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) END",
            );
        }
        if with_identity {
            sql.push_str(
                ", (SELECT system_identifier FROM pg_control_system())\
                 , CASE WHEN r THEN (SELECT received_tli FROM pg_stat_wal_receiver)\
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

    /// Runs the query on `client`: one round trip.
    pub async fn run(&self, client: &Client) -> Result<RoleFacts, ProbeError> {
        let cells = first_row(client, &self.sql).await?;
        let cells: Vec<Option<&str>> = cells.iter().map(Option::as_deref).collect();
        self.parse_row(&cells)
    }

    /// Parses one row of text cells, as the simple-query protocol returns them.
    pub fn parse_row(&self, cells: &[Option<&str>]) -> Result<RoleFacts, ProbeError> {
        let mut cells = cells.iter().copied();
        let mut next = || {
            cells
                .next()
                .ok_or_else(|| ProbeError::Answer("too few columns".into()))
        };
        let in_recovery =
            parse_bool(next()?)?.ok_or_else(|| ProbeError::Answer("null role".into()))?;
        let mut facts = RoleFacts {
            in_recovery,
            ..RoleFacts::default()
        };
        if self.with_lag {
            facts.streaming = parse_bool(next()?)?;
            facts.lag_bytes = parse_num::<f64>(next()?)?.map(|lag| lag.max(0.0) as u64);
        }
        if self.with_identity {
            let sysid = parse_num::<u64>(next()?)?;
            let timeline = parse_num::<u32>(next()?)?;
            let start = parse_num::<i64>(next()?)?;
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

/// Runs `sql` with the simple-query protocol (one round trip) and returns
/// the first row's cells as text.
pub async fn first_row(client: &Client, sql: &str) -> Result<Vec<Option<String>>, ProbeError> {
    let messages = client.simple_query(sql).await.map_err(ProbeError::Query)?;
    let row = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .ok_or_else(|| ProbeError::Answer("no row".into()))?;
    Ok((0..row.len())
        .map(|i| row.get(i).map(str::to_string))
        .collect())
}

fn parse_bool(cell: Option<&str>) -> Result<Option<bool>, ProbeError> {
    match cell {
        None => Ok(None),
        Some("t") => Ok(Some(true)),
        Some("f") => Ok(Some(false)),
        Some(other) => Err(ProbeError::Answer(format!("not a boolean: {other:?}"))),
    }
}

fn parse_num<T: std::str::FromStr>(cell: Option<&str>) -> Result<Option<T>, ProbeError> {
    cell.map(|text| {
        text.parse()
            .map_err(|_| ProbeError::Answer(format!("not a number: {text:?}")))
    })
    .transpose()
}

/// Parses a libpq key=value conninfo, naming this program to Postgres
/// unless the conninfo names one.
pub fn parse_conninfo(conninfo: &str) -> Result<tokio_postgres::Config, ProbeError> {
    let mut config: tokio_postgres::Config = conninfo
        .parse()
        .map_err(|e: tokio_postgres::Error| ProbeError::Conninfo(e.to_string()))?;
    if config.get_application_name().is_none() {
        config.application_name("pgsql-state");
    }
    Ok(config)
}

/// Connects, spawning the connection's driver on the current runtime.
/// Returns the client and the driver's handle, which ends once the client
/// is dropped and the server has been told goodbye.
pub async fn connect(
    config: &tokio_postgres::Config,
) -> Result<(Client, tokio::task::JoinHandle<()>), ProbeError> {
    let (client, connection) = config.connect(NoTls).await.map_err(ProbeError::Connect)?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            log::debug!("postgres connection ended: {e}");
        }
    });
    Ok((client, driver))
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
                &[Some("t"), Some("t"), Some("1024")],
                Some(RoleFacts {
                    in_recovery: true,
                    streaming: Some(true),
                    lag_bytes: Some(1024),
                    identity: None,
                }),
            ),
            (
                true,
                false,
                &[Some("t"), None, None],
                Some(RoleFacts {
                    in_recovery: true,
                    streaming: None,
                    lag_bytes: None,
                    identity: None,
                }),
            ),
            (
                true,
                false,
                &[Some("t"), Some("t"), Some("-5")],
                Some(RoleFacts {
                    in_recovery: true,
                    streaming: Some(true),
                    lag_bytes: Some(0),
                    identity: None,
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
