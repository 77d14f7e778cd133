//! What the reconciler asks of its local Postgres besides the facts:
//! whether pg_hba.conf on disk parses, when the configuration was last
//! loaded, a reload, and ending a fenced node's write sessions. Each is one
//! round trip.

use tokio_postgres::Client;

use super::ProbeError;

/// The errors Postgres finds in pg_hba.conf as it is on disk now
/// (`pg_hba_file_rules`, which needs a superuser), as `line N: error`.
/// `pg_reload_conf()` itself reports no such error, so this is checked
/// before reloading.
pub async fn hba_errors(client: &Client) -> Result<Vec<String>, ProbeError> {
    let rows = client
        .query(
            "SELECT coalesce(line_number, 0), error FROM pg_hba_file_rules WHERE error IS NOT NULL",
            &[],
        )
        .await
        .map_err(ProbeError::Query)?;
    Ok(rows
        .iter()
        .map(|row| {
            let line: i32 = row.get(0);
            let error: String = row.get(1);
            format!("line {line}: {error}")
        })
        .collect())
}

/// `SELECT pg_reload_conf()`.
pub async fn reload(client: &Client) -> Result<(), ProbeError> {
    client
        .execute("SELECT pg_reload_conf()", &[])
        .await
        .map_err(ProbeError::Query)?;
    Ok(())
}

/// When Postgres last read its configuration files, pg_hba.conf among them
/// (`pg_conf_load_time()`: a reload, or the start), in µs since the Unix
/// epoch. Postgres takes this instant before it reads pg_hba.conf, so a
/// file changed before it was read by that load.
pub async fn conf_load_time_us(client: &Client) -> Result<i64, ProbeError> {
    let row = client
        .query_one(
            "SELECT (extract(epoch FROM pg_conf_load_time()) * 1000000)::int8",
            &[],
        )
        .await
        .map_err(ProbeError::Query)?;
    Ok(row.get(0))
}

/// Ends the client sessions of `users` (never a superuser's, never a
/// replication connection, never this one) and returns how many.
pub async fn terminate_sessions(client: &Client, users: &[String]) -> Result<u64, ProbeError> {
    if users.is_empty() {
        return Ok(0);
    }
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(a.pid)) \
             FROM pg_stat_activity a JOIN pg_roles r ON r.rolname = a.usename \
             WHERE a.usename = ANY($1) AND NOT r.rolsuper \
               AND a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()",
            &[&users],
        )
        .await
        .map_err(ProbeError::Query)?;
    let ended: i64 = row.get(0);
    Ok(ended.max(0) as u64)
}
