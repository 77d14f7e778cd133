//! `pgsql-state respond`: answers one word per connection.
//!
//! [`Responder`] chooses the word (maintenance flag, Postgres, verdict) and
//! writes it in the configured format. It runs one-shot, on a connection
//! systemd or inetd handed over ([`crate::activation`]), or as a long-lived
//! server ([`server`]) that keeps one Postgres connection warm.

pub mod format;
pub mod metrics;
pub mod server;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::{Fencing, Format, ResponderSettings};
use crate::fencing::clock::{self, Now};
use crate::fencing::verdict::VerdictRead;
use crate::pg::role::{self as probe, Goodbye, ProbeQuery};
use crate::pg::warm::WarmConnection;
use crate::pg::{self, ProbeError};
use crate::runtime_files;
use crate::word::{choose_word, DownReason, Inputs, RoleFacts, Word};

/// A client connection of any stream socket type.
pub trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// How long an HTTP check may take to send its request head. HAProxy sends
/// it with the connection; a client that says nothing for this long gets
/// the answer to an empty request, and its slot back.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a one-shot waits for Postgres to acknowledge the goodbye.
const GOODBYE_BOUND: Duration = Duration::from_millis(200);

/// Chooses and writes words. Cheap to share behind an `Arc`.
pub struct Responder {
    settings: ResponderSettings,
    pg_config: Result<tokio_postgres::Config, Arc<ProbeError>>,
    query: ProbeQuery,
    /// The query with the lag and the identity too, for `/metrics` and
    /// `?lag=` (http format).
    full_query: ProbeQuery,
    /// The warm connection of a long-lived server; `None` for one-shot.
    warm: Option<WarmConnection>,
    /// Whether the "cannot see the WAL receiver" warning was logged.
    warned_receiver: AtomicBool,
}

/// Where the facts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A new Postgres connection per answer.
    OneShot,
    /// One persistent connection, reconnected when it breaks.
    LongLived,
}

impl Responder {
    /// A responder for `settings`. A bad conninfo is not an error here: every
    /// answer says `down: bad conninfo`, so HAProxy and `nc` see why.
    pub fn new(settings: ResponderSettings, mode: Mode) -> Responder {
        let pg_config = pg::parse_conninfo(&settings.conninfo).map_err(Arc::new);
        // The http format answers `?lag=` on the replica paths and reports
        // the timeline on `/metrics`: those requests ask for both (the full
        // query); every other answer asks only what the settings need.
        let query = ProbeQuery::new(
            settings.max_lag_bytes.is_some(),
            settings.fencing == Fencing::Strict,
        );
        let full_query = ProbeQuery::new(true, true);
        let warm = (mode == Mode::LongLived).then(WarmConnection::default);
        Responder {
            settings,
            pg_config,
            query,
            full_query,
            warm,
            warned_receiver: AtomicBool::new(false),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &ResponderSettings {
        &self.settings
    }

    /// Asks Postgres once at start-up, so that a role that cannot see the
    /// WAL receiver is reported in the log before the first check.
    pub async fn startup_check(&self) {
        if self.settings.max_lag_bytes.is_some() {
            let (facts, goodbye) = self.facts(false).await;
            close_goodbye(goodbye).await;
            match facts {
                Ok(f) => self.warn_if_receiver_hidden(&f),
                Err(e) => log::info!("postgres at start-up: {}", crate::error_text::one_line(&e)),
            }
        }
    }

    /// Chooses the word now. A one-shot also returns its Postgres connection,
    /// to be closed after the client has its answer.
    pub async fn word(&self) -> (Word, Option<Goodbye>) {
        let (view, goodbye) = self.view(false).await;
        (view.word, goodbye)
    }

    /// The word and the facts behind it; `full` also asks for the lag and
    /// the identity whatever the settings (for `/metrics` and `?lag=`).
    pub async fn view(&self, full: bool) -> (format::HttpView, Option<Goodbye>) {
        let started = std::time::Instant::now();
        let dir = &self.settings.runtime_dir;
        if runtime_files::maintenance_on(dir) {
            let mut view = format::HttpView::from(Word::Maintenance);
            view.facts.check_seconds = started.elapsed().as_secs_f64();
            return (view, None);
        }
        let (facts, goodbye) = self.facts(full).await;
        if let Ok(f) = &facts {
            self.warn_if_receiver_hidden(f);
        }
        let lag_bytes = facts
            .as_ref()
            .ok()
            .filter(|f| f.in_recovery)
            .and_then(|f| f.lag_bytes);
        let mut metric_facts = format::MetricFacts {
            in_recovery: facts.as_ref().ok().map(|f| f.in_recovery),
            timeline: facts
                .as_ref()
                .ok()
                .and_then(|f| f.identity.as_ref())
                .map(|id| id.timeline)
                .filter(|t| *t > 0),
            ..format::MetricFacts::default()
        };
        let probe = facts.map_err(|e| {
            log::warn!("postgres: {}", crate::error_text::one_line(&e));
            e.down_reason()
        });
        let verdict = match (self.settings.fencing, &probe) {
            (Fencing::Off, _) | (_, Err(_)) => VerdictRead::Missing,
            (_, Ok(_)) => runtime_files::read_verdict(dir),
        };
        if let VerdictRead::Unreadable(why) = &verdict {
            log::warn!("verdict unreadable, treated as a fence: {why}");
        }
        // The clock matters only to judge a verdict's freshness.
        let now = match &verdict {
            VerdictRead::Present(_) => clock::now().unwrap_or_else(|e| {
                log::warn!("cannot read the clock or boot id: {e}");
                Now::unknown()
            }),
            _ => Now::unknown(),
        };
        if let VerdictRead::Present(v) = &verdict {
            let age_ms = (v.written.boot_id == now.boot_id)
                .then(|| now.boottime_ms.saturating_sub(v.written.boottime_ms));
            metric_facts.verdict = age_ms.map(|ms| (v.kind, ms as f64 / 1000.0));
            metric_facts.tie = v.tie;
        }
        let word = choose_word(&Inputs {
            maintenance: false,
            probe,
            verdict: &verdict,
            fencing: self.settings.fencing,
            max_lag_bytes: self.settings.max_lag_bytes,
            now: &now,
        });
        metric_facts.check_seconds = started.elapsed().as_secs_f64();
        (
            format::HttpView {
                word,
                lag_bytes,
                facts: metric_facts,
            },
            goodbye,
        )
    }

    /// Logs, once per process, that the conninfo's role cannot see the WAL
    /// receiver, so every answer as a standby is `lagging` until it can.
    fn warn_if_receiver_hidden(&self, facts: &RoleFacts) {
        if self.settings.max_lag_bytes.is_some()
            && facts.receiver_visible == Some(false)
            && !self.warned_receiver.swap(true, Ordering::Relaxed)
        {
            log::warn!(
                "maxLagBytes is set, but the conninfo's role cannot see pg_stat_wal_receiver's \
                 status: grant it pg_monitor (or pg_read_all_stats); until then, as a standby \
                 this node answers `lagging`"
            );
        }
    }

    async fn facts(&self, full: bool) -> (Result<RoleFacts, ProbeError>, Option<Goodbye>) {
        let query = if full { &self.full_query } else { &self.query };
        let config = match &self.pg_config {
            Ok(config) => config,
            Err(why) => return (Err(ProbeError::Shared(why.clone())), None),
        };
        let timeout = self.settings.check_timeout;
        match &self.warm {
            Some(warm) => {
                let facts = warm
                    .run(
                        config,
                        timeout,
                        |client| async move { query.run(&client).await },
                    )
                    .await;
                (facts, None)
            }
            None => probe::probe_once(config, query, timeout).await,
        }
    }

    /// Answers one client connection in the configured format, then closes
    /// it. Returns whether the client got the answer, and the one-shot
    /// Postgres connection to close afterwards (either way).
    pub async fn answer<C: Conn>(&self, mut conn: C) -> (std::io::Result<()>, Option<Goodbye>) {
        let bound = self.settings.check_timeout;
        let (reply, goodbye) = match self.settings.format {
            Format::Text => {
                let (word, goodbye) = self.word().await;
                (format::text_reply(word), goodbye)
            }
            Format::Http => {
                // The request says which facts it needs; HAProxy sends it
                // with the connection, so reading it first costs nothing.
                let head_bound = bound.min(HEAD_TIMEOUT);
                let head = read_http_head(&mut conn, head_bound).await;
                if format::http_needs_word(&head) {
                    let (view, goodbye) = self.view(format::needs_full_facts(&head)).await;
                    (format::http_reply(&head, view), goodbye)
                } else {
                    // No request came (a silent or garbled client): its
                    // 4xx shows no word (any will do), so Postgres is not
                    // asked.
                    (format::http_reply(&head, Word::Maintenance), None)
                }
            }
            Format::Agent => {
                let (sent, (view, goodbye)) = read_while(&mut conn, self.view(false)).await;
                (
                    format::agent_reply(
                        format::AgentPool::from_request(&sent),
                        view,
                        self.settings.agent_maintenance,
                        self.settings.max_lag_bytes,
                    ),
                    goodbye,
                )
            }
        };
        let written = tokio::time::timeout(bound, async {
            conn.write_all(reply.as_bytes()).await?;
            conn.shutdown().await
        })
        .await;
        let delivered = written.unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "client did not take the answer",
            ))
        });
        (delivered, goodbye)
    }

    /// Answers without a client: the word alone, as a person at a terminal
    /// or a script would want it.
    pub async fn word_for_terminal(&self) -> Word {
        let (word, goodbye) = self.word().await;
        if let Some(goodbye) = goodbye {
            goodbye.close(GOODBYE_BOUND).await;
        }
        word
    }
}

/// Whether an I/O error only means the client left before the answer (as
/// HAProxy may): that is normal, not worth a log line or a failed unit.
pub fn client_left(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected | UnexpectedEof
    )
}

/// Closes a one-shot's Postgres connection politely.
pub async fn close_goodbye(goodbye: Option<Goodbye>) {
    if let Some(goodbye) = goodbye {
        goodbye.close(GOODBYE_BOUND).await;
    }
}

/// Reads an HTTP request head, up to [`format::MAX_REQUEST_HEAD`] bytes,
/// the end of the head, EOF, or `bound`; returns what arrived.
async fn read_http_head<C: Conn>(conn: &mut C, bound: Duration) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    let _ = tokio::time::timeout(bound, async {
        let mut buf = [0u8; 1024];
        while head.len() < format::MAX_REQUEST_HEAD && !format::head_complete(&head) {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    head
}

/// How long an agent check may take to send its `agent-send` line. HAProxy
/// sends it right after connecting; without `agent-send` nothing comes, and
/// the answer waits this long. Agent checks run every few seconds, so the
/// wait costs nothing that matters.
const AGENT_REQUEST_GRACE: Duration = Duration::from_millis(100);

/// Reads one line (an agent-check `agent-send`) while `work` runs, and for
/// at most [`AGENT_REQUEST_GRACE`] from the start; returns what arrived and
/// the work's output.
async fn read_while<C: Conn, F: std::future::Future>(
    conn: &mut C,
    work: F,
) -> (Vec<u8>, F::Output) {
    let deadline = tokio::time::Instant::now() + AGENT_REQUEST_GRACE;
    let mut sent = Vec::new();
    let read_line = async {
        let mut buf = [0u8; 256];
        while sent.len() < 256 && !sent.contains(&b'\n') {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => sent.extend_from_slice(&buf[..n]),
            }
        }
    };
    let (_, output) = tokio::join!(tokio::time::timeout_at(deadline, read_line), work);
    (sent, output)
}

/// The word for a config that could not be loaded, so a client still hears why.
pub fn config_error_word() -> Word {
    Word::Down(DownReason::ConfigError)
}
