//! How a word goes on the wire, per `responder.format`. Pure functions:
//! request parsing and reply rendering, with no sockets.
//!
//! - `text`: the word and a newline.
//! - `http`: Patroni's REST API paths, so `option httpchk` configs work,
//!   and `/metrics` ([`super::metrics`]).
//! - `agent`: HAProxy agent-check replies (`up`, `down`, `drain`).

use crate::word::Word;

/// The `text` reply.
pub fn text_reply(word: Word) -> String {
    format!("{word}\n")
}

/// The longest HTTP request head the responder reads.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Whether `head` holds a whole HTTP request head (ends with a blank line).
pub fn head_complete(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n")
}

/// What an HTTP check is judged on: the word, and a standby's replay lag
/// in bytes when the query asked for it; `/metrics` also reports `facts`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HttpView {
    /// The word.
    pub word: Word,
    /// Received but not replayed WAL, on a standby.
    pub lag_bytes: Option<u64>,
    /// The rest of what the check saw, for `/metrics`.
    pub facts: MetricFacts,
}

/// What a check saw besides the word, as `/metrics` reports it; `None`
/// where it could not be known.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MetricFacts {
    /// `pg_is_in_recovery()`.
    pub in_recovery: Option<bool>,
    /// The timeline the postmaster runs.
    pub timeline: Option<u32>,
    /// The verdict file's kind and its age in seconds.
    pub verdict: Option<(crate::fencing::verdict::VerdictKind, f64)>,
    /// The verdict says two primaries claim the highest timeline.
    pub tie: bool,
    /// How long choosing the word took, in seconds.
    pub check_seconds: f64,
}

impl From<Word> for HttpView {
    fn from(word: Word) -> HttpView {
        HttpView {
            word,
            lag_bytes: None,
            facts: MetricFacts::default(),
        }
    }
}

/// A `?lag=` value as Patroni takes it: bytes, or a number with a
/// PostgreSQL-style unit (`B`, `kB`, `MB`, `GB`, `TB`; powers of 1024,
/// case-insensitive).
pub fn parse_lag(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1 << 10,
        "mb" => 1 << 20,
        "gb" => 1 << 30,
        "tb" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// Whether a request needs the lag and the identity whatever the settings:
/// `/metrics` (the timeline, the lag) and `?lag=` on any path.
pub fn needs_full_facts(head: &[u8]) -> bool {
    let line = first_line(head);
    let req = RequestLine::parse(&line);
    req.path == "/metrics" || req.lag.is_some()
}

/// An HTTP request line, as far as the responder reads it.
struct RequestLine<'a> {
    method: &'a str,
    target: &'a str,
    path: &'a str,
    /// `?lag=`: absent, or present and parsed (`None`: not a size).
    lag: Option<Option<u64>>,
}

impl<'a> RequestLine<'a> {
    fn parse(line: &'a str) -> RequestLine<'a> {
        let mut parts = line.split(' ');
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let lag = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("lag="))
            .map(parse_lag);
        RequestLine {
            method,
            target,
            path,
            lag,
        }
    }
}

/// The first line of `head`, without its line end.
fn first_line(head: &[u8]) -> String {
    head.split(|&b| b == b'\n')
        .next()
        .map(|l| {
            String::from_utf8_lossy(l)
                .trim_end_matches('\r')
                .to_string()
        })
        .unwrap_or_default()
}

/// The answer a request gets whatever the word: 400, 404 or 405, with its
/// body. `None` when the answer depends on the word.
fn rejection(head: &[u8], req: &RequestLine<'_>) -> Option<(u16, &'static str)> {
    if head.len() >= MAX_REQUEST_HEAD && !head_complete(head) {
        Some((400, "request too large\n"))
    } else if !matches!(req.method, "GET" | "HEAD" | "OPTIONS") || req.path.is_empty() {
        if req.target.is_empty() || !req.path.starts_with('/') {
            Some((400, "bad request\n"))
        } else {
            Some((405, "method not allowed\n"))
        }
    } else if req.path == "/metrics" {
        None
    } else if let Some(None) = req.lag {
        Some((
            400,
            "lag must be bytes, or a number with B, kB, MB, GB or TB\n",
        ))
    } else if http_status(req.path, None, Word::Production.into()).is_none() {
        Some((
            404,
            "unknown path; try /primary /replica /read-only /health\n",
        ))
    } else {
        None
    }
}

/// Whether the answer to `head` depends on the word, and so on Postgres.
/// A request that never came (a silent client, a cut-off or garbled line)
/// is answered 400 without asking Postgres anything.
pub fn http_needs_word(head: &[u8]) -> bool {
    let line = first_line(head);
    rejection(head, &RequestLine::parse(&line)).is_none()
}

/// The HTTP response for a request head (possibly cut short). The body is
/// the word, or a short explanation for 4xx answers; HEAD and OPTIONS get
/// the status line and headers only.
pub fn http_reply(head: &[u8], view: impl Into<HttpView>) -> String {
    let view = view.into();
    let line = first_line(head);
    let req = RequestLine::parse(&line);
    let (status, body) = match rejection(head, &req) {
        Some((status, body)) => (status, body.to_string()),
        None if req.path == "/metrics" => (200, super::metrics::render(&view)),
        None => match http_status(req.path, req.lag.flatten(), view) {
            Some(ok) => (if ok { 200 } else { 503 }, text_reply(view.word)),
            // rejection() answered every unknown path.
            None => (404, String::new()),
        },
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let content_type = if status == 200 && req.path == "/metrics" {
        super::metrics::CONTENT_TYPE
    } else {
        "text/plain"
    };
    let body = if matches!(req.method, "HEAD" | "OPTIONS") {
        ""
    } else {
        body.as_str()
    };
    format!(
        "HTTP/1.0 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Whether `path` passes (`None` for an unknown path). The paths are
/// Patroni 4.1's:
/// - `/`, `/primary`, `/master`, `/leader`, `/read-write`: the writer;
/// - `/replica` (and our `/standby`), `/async`: a usable standby, within
///   `?lag=` bytes when given (`/async` cannot tell a synchronous standby
///   from an asynchronous one here, and passes both);
/// - `/read-only`, `/readiness`: the writer or a usable standby;
/// - `/health`: Postgres answered (and the node is not drained);
/// - `/liveness`: the responder itself answers.
pub fn http_status(path: &str, max_lag: Option<u64>, view: HttpView) -> Option<bool> {
    let word = view.word;
    let standby_ok = word == Word::Standby
        && max_lag.is_none_or(|bound| view.lag_bytes.is_some_and(|lag| lag <= bound));
    let path = path.trim_end_matches('/');
    Some(match path {
        "" | "/primary" | "/master" | "/read-write" | "/leader" => word == Word::Production,
        "/replica" | "/standby" | "/async" => standby_ok,
        "/read-only" | "/readiness" => word == Word::Production || standby_ok,
        "/health" => matches!(
            word,
            Word::Production | Word::Standby | Word::Lagging | Word::Fenced
        ),
        "/liveness" => true,
        _ => return None,
    })
}

/// Which pool an agent check asks about, from HAProxy's `agent-send` text.
///
/// The agent's `up` takes effect at once, and in `haproxy-agent.cfg` the
/// agent alone decides the state. So a check that names no pool (no
/// `agent-send`, or a line that came too late or garbled) is taken as the
/// primary's pool: only `production` is `up` for it. A standby is never
/// `up` in a pool that may be `prod`; a read pool must send
/// `agent-send "replica\n"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentPool {
    /// `agent-send "primary\n"` (or production, master, read-write).
    Primary,
    /// `agent-send "replica\n"` (or standby, read-only).
    Replica,
    /// Nothing (or nothing known) arrived in time: served as `Primary`.
    Unnamed,
}

impl AgentPool {
    /// Reads the pool from what HAProxy sent (possibly nothing).
    pub fn from_request(sent: &[u8]) -> AgentPool {
        let text = String::from_utf8_lossy(sent).to_ascii_lowercase();
        match text.trim() {
            "primary" | "production" | "master" | "read-write" => AgentPool::Primary,
            "replica" | "standby" | "read-only" => AgentPool::Replica,
            _ => AgentPool::Unnamed,
        }
    }
}

/// A serving node's weight in percent of its configured `weight`, when
/// `maxLagBytes` is set: 100 for the primary and a standby with no lag,
/// falling linearly to 1 at the bound (past it the standby is `lagging`
/// and down), so `leastconn` and `roundrobin` prefer fresh standbys.
pub fn agent_weight(view: HttpView, max_lag_bytes: Option<u64>) -> Option<u64> {
    let bound = max_lag_bytes?;
    if view.word != Word::Standby {
        return Some(100);
    }
    let lag = view.lag_bytes.unwrap_or(bound).min(bound);
    // 99 × lag fits in u128; the result is at most 99.
    let fall = (99 * u128::from(lag) / u128::from(bound.max(1))) as u64;
    Some(100 - fall)
}

/// The agent-check reply:
/// - `up ready` when the node serves the asked pool, with a weight
///   (`up ready 73%`) when `maxLagBytes` is set ([`agent_weight`]);
/// - in maintenance, `drain` (open sessions finish, no new ones) or
///   `maint` (out entirely), as `agentMaintenance` says;
/// - `down #<word>` otherwise.
pub fn agent_reply(
    pool: AgentPool,
    view: impl Into<HttpView>,
    maintenance: crate::config::AgentMaintenance,
    max_lag_bytes: Option<u64>,
) -> String {
    let view = view.into();
    let word = view.word;
    let serves = match pool {
        AgentPool::Primary | AgentPool::Unnamed => word == Word::Production,
        AgentPool::Replica => word == Word::Standby,
    };
    if serves {
        match agent_weight(view, max_lag_bytes) {
            Some(pct) => format!("up ready {pct}%\n"),
            None => "up ready\n".to_string(),
        }
    } else if word == Word::Maintenance {
        match maintenance {
            crate::config::AgentMaintenance::Drain => "drain #maintenance\n".to_string(),
            crate::config::AgentMaintenance::Maint => "maint #maintenance\n".to_string(),
        }
    } else if let Word::Down(reason) = word {
        format!("down #{reason}\n")
    } else {
        format!("down #{word}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::word::DownReason;

    #[test]
    fn http_status_table() {
        use Word::*;
        let down = Down(DownReason::Timeout);
        let cases: &[(&str, Word, Option<bool>)] = &[
            ("/primary", Production, Some(true)),
            ("/master", Production, Some(true)),
            ("/read-write", Production, Some(true)),
            ("/", Production, Some(true)),
            ("/primary", Fenced, Some(false)),
            ("/primary", Standby, Some(false)),
            ("/replica", Standby, Some(true)),
            ("/standby", Standby, Some(true)),
            ("/replica", Lagging, Some(false)),
            ("/replica", Production, Some(false)),
            ("/read-only", Production, Some(true)),
            ("/read-only", Standby, Some(true)),
            ("/read-only", Lagging, Some(false)),
            ("/health", Fenced, Some(true)),
            ("/health", Lagging, Some(true)),
            ("/health", Maintenance, Some(false)),
            ("/health", down, Some(false)),
            ("/primary/", Production, Some(true)),
            ("/metrics", Production, None),
        ];
        for (path, word, want) in cases {
            assert_eq!(
                http_status(path, None, (*word).into()),
                *want,
                "{path} {word}"
            );
        }
        // ?lag= on the replica endpoints, in bytes.
        let standby = |lag| HttpView {
            word: Standby,
            lag_bytes: lag,
            facts: MetricFacts::default(),
        };
        let lagged: &[(&str, Option<u64>, HttpView, Option<bool>)] = &[
            ("/replica", Some(100), standby(Some(100)), Some(true)),
            ("/replica", Some(100), standby(Some(101)), Some(false)),
            ("/replica", Some(100), standby(None), Some(false)),
            ("/async", Some(100), standby(Some(5)), Some(true)),
            ("/read-only", Some(100), standby(Some(500)), Some(false)),
            ("/read-only", Some(100), Production.into(), Some(true)),
            ("/readiness", Some(100), standby(Some(5)), Some(true)),
            ("/liveness", None, down.into(), Some(true)),
            ("/primary", Some(0), Production.into(), Some(true)),
        ];
        for (path, lag, view, want) in lagged {
            assert_eq!(
                http_status(path, *lag, *view),
                *want,
                "{path} {lag:?} {view:?}"
            );
        }
    }

    #[test]
    fn http_replies() {
        let cases: &[(&str, Word, &str)] = &[
            ("GET /primary HTTP/1.1\r\nHost: x\r\n\r\n", Word::Production, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nConnection: close\r\n\r\nproduction\n"),
            ("GET /primary?lag=1MB HTTP/1.0\r\n\r\n", Word::Standby, "HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 8\r\nConnection: close\r\n\r\nstandby\n"),
            ("HEAD /replica HTTP/1.0\r\n\r\n", Word::Standby, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            ("OPTIONS / HTTP/1.0\r\n\r\n", Word::Production, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        ];
        for (request, word, want) in cases {
            assert_eq!(http_reply(request.as_bytes(), *word), *want, "{request:?}");
        }
        let statuses: &[(&str, &str)] = &[
            ("POST /primary HTTP/1.0\r\n\r\n", "HTTP/1.0 405 "),
            ("GET /nothing HTTP/1.0\r\n\r\n", "HTTP/1.0 404 "),
            ("", "HTTP/1.0 400 "),
            ("garbage", "HTTP/1.0 400 "),
            ("GET /replica?lag=soon HTTP/1.0\r\n\r\n", "HTTP/1.0 400 "),
        ];
        for (request, want) in statuses {
            assert!(
                http_reply(request.as_bytes(), Word::Production).starts_with(want),
                "{request:?}"
            );
        }
    }

    #[test]
    fn lag_values_and_oversized_heads() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("16777216", Some(16_777_216)),
            ("16MB", Some(16 << 20)),
            ("16mb", Some(16 << 20)),
            ("1 GB", Some(1 << 30)),
            ("512kB", Some(512 << 10)),
            ("10B", Some(10)),
            ("1PB", None),
            ("MB", None),
            ("-1", None),
            ("99999999999TB", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_lag(text), *want, "{text}");
        }
        let mut huge = b"GET /primary HTTP/1.0\r\nX-Junk: ".to_vec();
        huge.resize(MAX_REQUEST_HEAD, b'x');
        assert!(http_reply(&huge, Word::Production).starts_with("HTTP/1.0 400 "));
    }

    #[test]
    fn agent_replies() {
        use crate::config::AgentMaintenance;
        use AgentPool::*;
        use Word::*;
        let cases: &[(&[u8], AgentPool, Word, &str)] = &[
            (b"primary\n", Primary, Production, "up ready\n"),
            (b"PRODUCTION\r\n", Primary, Standby, "down #standby\n"),
            (b"replica\n", Replica, Standby, "up ready\n"),
            (b"read-only\n", Replica, Production, "down #production\n"),
            (b"", Unnamed, Production, "up ready\n"),
            // Fail closed: a pool not named in time may be `prod`.
            (b"", Unnamed, Standby, "down #standby\n"),
            (b"prim", Unnamed, Standby, "down #standby\n"),
            (b"what\n", Unnamed, Fenced, "down #fenced\n"),
            (b"", Unnamed, Maintenance, "drain #maintenance\n"),
            (
                b"",
                Unnamed,
                Down(crate::word::DownReason::Timeout),
                "down #timeout\n",
            ),
        ];
        for (sent, pool, word, want) in cases {
            assert_eq!(AgentPool::from_request(sent), *pool, "{sent:?}");
            assert_eq!(
                agent_reply(*pool, *word, AgentMaintenance::Drain, None),
                *want,
                "{sent:?} {word}"
            );
        }
        assert_eq!(
            agent_reply(Unnamed, Maintenance, AgentMaintenance::Maint, None),
            "maint #maintenance\n"
        );
    }

    #[test]
    fn agent_weights_fall_with_a_standby_s_lag() {
        use crate::config::AgentMaintenance::Drain;
        let standby = |lag: Option<u64>| HttpView {
            word: Word::Standby,
            lag_bytes: lag,
            facts: MetricFacts::default(),
        };
        let mb = 1 << 20;
        let cases: &[(HttpView, Option<u64>, &str)] = &[
            (standby(Some(0)), Some(64 * mb), "up ready 100%\n"),
            (standby(Some(16 * mb)), Some(64 * mb), "up ready 76%\n"),
            (standby(Some(32 * mb)), Some(64 * mb), "up ready 51%\n"),
            (standby(Some(64 * mb)), Some(64 * mb), "up ready 1%\n"),
            // Lag unknown: the lowest weight, not the highest.
            (standby(None), Some(64 * mb), "up ready 1%\n"),
            // No bound: no weight, HAProxy keeps the configured one.
            (standby(Some(16 * mb)), None, "up ready\n"),
            (Word::Production.into(), Some(64 * mb), "up ready 100%\n"),
        ];
        for (view, bound, want) in cases {
            let pool = if view.word == Word::Production {
                AgentPool::Primary
            } else {
                AgentPool::Replica
            };
            assert_eq!(
                agent_reply(pool, *view, Drain, *bound),
                *want,
                "{view:?} {bound:?}"
            );
        }
    }

    #[test]
    fn only_a_request_that_came_asks_postgres() {
        for (head, needs) in [
            (&b"GET /primary HTTP/1.0\r\n\r\n"[..], true),
            (b"OPTIONS / HTTP/1.0\r\n\r\n", true),
            (b"GET /metrics HTTP/1.1\r\n\r\n", true),
            (b"GET /replica?lag=1MB HTTP/1.0\r\n\r\n", true),
            // Nothing came, or nothing that can be answered from a word.
            (b"", false),
            (b"\r\n", false),
            (b"P", false),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false),
            (b"POST /primary HTTP/1.0\r\n\r\n", false),
            (b"GET /nowhere HTTP/1.0\r\n\r\n", false),
            (b"GET /replica?lag=lots HTTP/1.0\r\n\r\n", false),
        ] {
            assert_eq!(
                http_needs_word(head),
                needs,
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn head_completion() {
        assert!(head_complete(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(head_complete(b"GET / HTTP/1.0\n\n"));
        assert!(!head_complete(b"GET / HTTP/1.0\r\nHost: x\r\n"));
    }

    #[test]
    fn only_metrics_and_lag_requests_need_the_full_facts() {
        for (head, full) in [
            (&b"GET /primary HTTP/1.0\r\n\r\n"[..], false),
            (b"OPTIONS / HTTP/1.0\r\n\r\n", false),
            (b"GET /replica HTTP/1.1\r\nHost: x\r\n\r\n", false),
            (b"GET /metrics HTTP/1.1\r\n\r\n", true),
            (b"GET /replica?lag=1MB HTTP/1.0\r\n\r\n", true),
            (b"GET /read-only?x=1&lag=100 HTTP/1.0\r\n\r\n", true),
            (b"GET /primary?flag=1 HTTP/1.0\r\n\r\n", false),
            (b"", false),
        ] {
            assert_eq!(
                needs_full_facts(head),
                full,
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }
}
