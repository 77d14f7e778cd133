//! The Postgres edge: connecting, and the three ways this program asks the
//! local Postgres about itself.
//!
//! - [`role`]: the responder's cheapest query (role, and lag or identity
//!   only when the settings need them), one round trip.
//! - [`facts`]: the node facts of DESIGN.md, one round trip, for the peer
//!   and the reconciler.
//! - [`admin`]: the reconciler's checks, reload and session ending.
//! - [`warm`]: one persistent connection for long-lived servers, bounded in
//!   time on every use.
//!
//! Every failure is a [`ProbeError`], and each maps to one fixed, short
//! [`DownReason`] that is safe to print after `down: `.

pub mod admin;
pub mod facts;
pub mod role;
pub mod warm;

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::word::DownReason;

/// Why Postgres could not be asked. Each maps to a fixed, short [`DownReason`].
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The conninfo cannot be parsed.
    #[error("conninfo is not valid: {0}")]
    Conninfo(#[source] Arc<tokio_postgres::Error>),
    /// Connect plus query took longer than the bound.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection (socket, startup or authentication) failed.
    #[error("cannot connect: {0}")]
    Connect(#[source] tokio_postgres::Error),
    /// The query failed, or the connection broke during it.
    #[error("query failed: {0}")]
    Query(#[source] tokio_postgres::Error),
    /// Postgres answered something this program does not understand.
    #[error("unexpected answer: {0}")]
    Answer(#[from] AnswerError),
    /// The failure of a connection attempt that several callers shared.
    #[error(transparent)]
    Shared(Arc<ProbeError>),
}

/// An answer that does not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// The query returned no row.
    #[error("no row")]
    NoRow,
    /// Fewer or more columns than asked for.
    #[error("expected {expected} columns, got {got}")]
    Columns {
        /// How many the query asks for.
        expected: usize,
        /// How many came back.
        got: usize,
    },
    /// A column that must not be NULL was NULL.
    #[error("{0} is NULL")]
    Null(&'static str),
    /// A column's text is not of its type.
    #[error("{column}: {text:?} is not a {kind}")]
    Malformed {
        /// Which column.
        column: &'static str,
        /// What it held.
        text: String,
        /// What it should have been (`boolean`, `number`).
        kind: &'static str,
    },
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
            ProbeError::Shared(inner) => inner.down_reason(),
        }
    }

    /// Whether a persistent connection must be dropped after this error.
    pub fn breaks_connection(&self) -> bool {
        match self {
            ProbeError::Query(e) => e.as_db_error().is_none(),
            ProbeError::Answer(_) => false,
            ProbeError::Shared(inner) => inner.breaks_connection(),
            _ => true,
        }
    }
}

/// The reason for a failed connect, from the SQLSTATE Postgres sent or the
/// kind of the socket error.
fn connect_reason(e: &tokio_postgres::Error) -> DownReason {
    if let Some(db) = e.as_db_error() {
        return match db.code().code() {
            // 57P03 (cannot_connect_now) is one SQLSTATE for several
            // states; Postgres tells them apart only in its message, so
            // that is read here to refine the reason (still one of the
            // fixed words), never printed.
            "57P03" => cannot_connect_now_reason(db.message()),
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

/// 57P03's states, as PostgreSQL 15 words them (`lc_messages=C`).
fn cannot_connect_now_reason(message: &str) -> DownReason {
    if message.ends_with("is starting up") {
        DownReason::StartingUp
    } else if message.ends_with("is shutting down") {
        DownReason::ShuttingDown
    } else {
        DownReason::CrashRecovery
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
        .ok_or(AnswerError::NoRow)?;
    Ok((0..row.len())
        .map(|i| row.get(i).map(str::to_string))
        .collect())
}

/// Parses a libpq key=value conninfo, naming this program to Postgres
/// unless the conninfo names one.
pub fn parse_conninfo(conninfo: &str) -> Result<tokio_postgres::Config, ProbeError> {
    let mut config: tokio_postgres::Config = conninfo
        .parse()
        .map_err(|e| ProbeError::Conninfo(Arc::new(e)))?;
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

/// Parses a boolean cell (`t`/`f`), `None` for NULL.
pub(crate) fn parse_bool(
    column: &'static str,
    cell: Option<&str>,
) -> Result<Option<bool>, AnswerError> {
    match cell {
        None => Ok(None),
        Some("t") => Ok(Some(true)),
        Some("f") => Ok(Some(false)),
        Some(other) => Err(AnswerError::Malformed {
            column,
            text: other.to_string(),
            kind: "boolean",
        }),
    }
}

/// Parses a numeric cell, `None` for NULL. A fractional part (numeric
/// results such as `pg_wal_lsn_diff`) is dropped.
pub(crate) fn parse_num<T: std::str::FromStr>(
    column: &'static str,
    cell: Option<&str>,
) -> Result<Option<T>, AnswerError> {
    cell.map(|text| {
        let whole = text.split_once('.').map_or(text, |(whole, _)| whole);
        whole.parse().map_err(|_| AnswerError::Malformed {
            column,
            text: text.to_string(),
            kind: "number",
        })
    })
    .transpose()
}

/// Parses `system_identifier`, which Postgres shows as a signed bigint
/// (clusters made after 2038 have negative ones); its bits are the u64
/// that the protocol and the verdict carry.
pub(crate) fn parse_system_identifier(cell: Option<&str>) -> Result<Option<u64>, AnswerError> {
    Ok(parse_num::<i64>("system_identifier", cell)?.map(|signed| signed as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_identifier_keeps_its_bits_when_negative() {
        let cases: &[(Option<&str>, Option<u64>)] = &[
            (Some("7300000000000000001"), Some(7_300_000_000_000_000_001)),
            // A cluster made after 2038: the top bit is set.
            (Some("-8070450532247928832"), Some(0x9000_0000_0000_0000)),
            (Some("-1"), Some(u64::MAX)),
            (None, None),
        ];
        for (cell, want) in cases {
            assert_eq!(parse_system_identifier(*cell), Ok(*want), "{cell:?}");
        }
        assert!(parse_system_identifier(Some("18446744073709551615")).is_err());
    }

    #[test]
    fn cannot_connect_now_states() {
        let cases = [
            ("the database system is starting up", DownReason::StartingUp),
            (
                "the database system is shutting down",
                DownReason::ShuttingDown,
            ),
            (
                "the database system is in recovery mode",
                DownReason::CrashRecovery,
            ),
            (
                "the database system is not yet accepting connections",
                DownReason::CrashRecovery,
            ),
        ];
        for (message, want) in cases {
            assert_eq!(cannot_connect_now_reason(message), want, "{message}");
        }
    }

    #[test]
    fn numbers_drop_fractions_and_reject_garbage() {
        assert_eq!(parse_num::<u64>("lag", Some("1024.000")), Ok(Some(1024)));
        assert_eq!(parse_num::<u64>("lag", None), Ok(None));
        assert!(parse_num::<u64>("lag", Some("x")).is_err());
        assert_eq!(parse_bool("r", Some("t")), Ok(Some(true)));
        assert!(parse_bool("r", Some("yes")).is_err());
    }
}
