//! The words the responder says, and the pure choice of one.
//!
//! HAProxy's `tcp-check expect string X` matches a substring, so no word
//! contains another and no `down:` reason contains `production` or
//! `standby`: reasons come from the fixed [`DownReason`] set, never from
//! Postgres error text.

use std::fmt;

use crate::config::Fencing;
use crate::fencing::clock::Now;
use crate::fencing::verdict::{Identity, Verdict, VerdictKind, VerdictRead};

/// The responder's one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Word {
    /// A primary that no verdict fences: the read-write pool.
    Production,
    /// In recovery and within `maxLagBytes`: the read-only pool.
    Standby,
    /// In recovery, but too far behind, not streaming, or attached to a fenced primary.
    Lagging,
    /// A primary that the reconciler says must not take writes.
    Fenced,
    /// Drained by an operator.
    Maintenance,
    /// Postgres could not be asked.
    Down(DownReason),
}

impl fmt::Display for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Word::Production => f.write_str("production"),
            Word::Standby => f.write_str("standby"),
            Word::Lagging => f.write_str("lagging"),
            Word::Fenced => f.write_str("fenced"),
            Word::Maintenance => f.write_str("maintenance"),
            Word::Down(reason) => write!(f, "down: {reason}"),
        }
    }
}

/// Why Postgres could not be asked. The texts are short and fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// Connect plus query took longer than `checkTimeout`.
    Timeout,
    /// Nothing listens at the TCP address.
    ConnectionRefused,
    /// No Unix socket at the path: Postgres is not running there.
    NoServerSocket,
    /// Postgres is starting up.
    StartingUp,
    /// Postgres is shutting down, or ended the session.
    ShuttingDown,
    /// Postgres is in recovery and not yet accepting connections.
    CrashRecovery,
    /// `max_connections` is reached.
    TooManyConnections,
    /// The password or method was refused.
    AuthenticationFailed,
    /// pg_hba.conf rejects the responder's connection.
    RejectedByHba,
    /// The conninfo's database does not exist.
    NoSuchDatabase,
    /// The connection broke during the query.
    ConnectionLost,
    /// The connection failed for another reason.
    ConnectFailed,
    /// The query failed, or its answer made no sense.
    QueryFailed,
    /// The conninfo cannot be parsed.
    BadConninfo,
    /// The config cannot be used.
    ConfigError,
}

impl DownReason {
    /// Every reason, for tests that check all of their texts.
    pub const ALL: [DownReason; 15] = [
        DownReason::Timeout,
        DownReason::ConnectionRefused,
        DownReason::NoServerSocket,
        DownReason::StartingUp,
        DownReason::ShuttingDown,
        DownReason::CrashRecovery,
        DownReason::TooManyConnections,
        DownReason::AuthenticationFailed,
        DownReason::RejectedByHba,
        DownReason::NoSuchDatabase,
        DownReason::ConnectionLost,
        DownReason::ConnectFailed,
        DownReason::QueryFailed,
        DownReason::BadConninfo,
        DownReason::ConfigError,
    ];

    /// Whether no postmaster runs at all (refused, or no socket): the old
    /// postmaster and any lease bound to it are gone. A timeout, or a
    /// postmaster shutting down (its sessions may still run), is not this.
    /// The planned-switchover shortcut rests on it (DESIGN.md, "Time").
    pub fn means_stopped(self) -> bool {
        matches!(
            self,
            DownReason::ConnectionRefused | DownReason::NoServerSocket
        )
    }

    fn text(self) -> &'static str {
        match self {
            DownReason::Timeout => "timeout",
            DownReason::ConnectionRefused => "connection refused",
            DownReason::NoServerSocket => "no server socket",
            DownReason::StartingUp => "starting up",
            DownReason::ShuttingDown => "shutting down",
            DownReason::CrashRecovery => "crash recovery",
            DownReason::TooManyConnections => "too many connections",
            DownReason::AuthenticationFailed => "authentication failed",
            DownReason::RejectedByHba => "rejected by pg_hba.conf",
            DownReason::NoSuchDatabase => "no such database",
            DownReason::ConnectionLost => "connection lost",
            DownReason::ConnectFailed => "connect failed",
            DownReason::QueryFailed => "query failed",
            DownReason::BadConninfo => "bad conninfo",
            DownReason::ConfigError => "config error",
        }
    }
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// What Postgres said about itself, as much as the responder asked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoleFacts {
    /// `pg_is_in_recovery()`: a standby (or a node still recovering).
    pub in_recovery: bool,
    /// Whether a WAL receiver is streaming (asked only when `maxLagBytes` is set).
    pub streaming: Option<bool>,
    /// Received minus replayed WAL, in bytes (asked only when `maxLagBytes` is set).
    pub lag_bytes: Option<u64>,
    /// Whether the role may see the WAL receiver's status (asked only
    /// when `maxLagBytes` is set); without it a standby cannot be shown to
    /// stream, and answers `lagging`.
    pub receiver_visible: Option<bool>,
    /// What binds a `strict` verdict to this postmaster (asked only in `strict`).
    pub identity: Option<Identity>,
}

/// Everything the choice depends on, as plain values.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// Whether an operator drained this node.
    pub maintenance: bool,
    /// What Postgres said, or why it could not be asked.
    pub probe: Result<RoleFacts, DownReason>,
    /// The reconciler's verdict file.
    pub verdict: &'a VerdictRead,
    /// How the verdict is used.
    pub fencing: Fencing,
    /// `maxLagBytes`.
    pub max_lag_bytes: Option<u64>,
    /// Now, to judge the verdict's freshness.
    pub now: &'a Now,
}

/// Chooses the word. Maintenance wins over everything, then Postgres being
/// down; a primary is then judged by the verdict under `fencing`, a standby
/// by its lag and any fresh `lagging` verdict.
pub fn choose_word(inputs: &Inputs<'_>) -> Word {
    if inputs.maintenance {
        return Word::Maintenance;
    }
    let facts = match &inputs.probe {
        Ok(facts) => facts,
        Err(reason) => return Word::Down(*reason),
    };
    if facts.in_recovery {
        standby_word(facts, inputs)
    } else {
        primary_word(facts, inputs)
    }
}

fn primary_word(facts: &RoleFacts, inputs: &Inputs<'_>) -> Word {
    match (inputs.fencing, inputs.verdict) {
        (Fencing::Off, _) => Word::Production,
        // A verdict we cannot read might be a fence: fail closed.
        (_, VerdictRead::Unreadable(_)) => Word::Fenced,
        (Fencing::Verdict, VerdictRead::Missing) => Word::Production,
        // A fence stays in force even when stale, until a new verdict lifts it.
        (Fencing::Verdict, VerdictRead::Present(v)) if v.kind == VerdictKind::Fenced => {
            Word::Fenced
        }
        (Fencing::Verdict, VerdictRead::Present(_)) => Word::Production,
        (Fencing::Strict, VerdictRead::Missing) => Word::Fenced,
        (Fencing::Strict, VerdictRead::Present(v)) => {
            if confirms_lease(v, facts.identity.as_ref(), inputs.now) {
                Word::Production
            } else {
                Word::Fenced
            }
        }
    }
}

/// A `strict` lease: a `production` verdict for this very postmaster, on
/// this boot, not yet expired, and past the new primary's wait.
fn confirms_lease(v: &Verdict, identity: Option<&Identity>, now: &Now) -> bool {
    let bound = match (identity, &v.identity) {
        (Some(have), Some(bound)) => have == bound,
        _ => false,
    };
    v.kind == VerdictKind::Production && bound && v.is_fresh(now) && v.wait_over(now)
}

fn standby_word(facts: &RoleFacts, inputs: &Inputs<'_>) -> Word {
    if inputs.fencing != Fencing::Off {
        if let VerdictRead::Present(v) = inputs.verdict {
            if v.kind == VerdictKind::Lagging && v.is_fresh(inputs.now) {
                return Word::Lagging;
            }
        }
    }
    if let Some(bound) = inputs.max_lag_bytes {
        let within =
            facts.streaming == Some(true) && facts.lag_bytes.is_some_and(|lag| lag <= bound);
        if !within {
            return Word::Lagging;
        }
    }
    Word::Standby
}

#[cfg(test)]
mod tests;
