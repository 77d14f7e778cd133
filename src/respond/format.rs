//! How a word goes on the wire, per `responder.format`. Pure functions:
//! request parsing and reply rendering, with no sockets.
//!
//! - `text`: the word and a newline.
//! - `http`: Patroni's REST API paths, so `option httpchk` configs work.
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

/// Builds the HTTP response for a request head (possibly cut short). The
/// body is the word, or a short explanation for 4xx answers.
pub fn http_reply(head: &[u8], word: Word) -> String {
    let line = head
        .split(|&b| b == b'\n')
        .next()
        .map(|l| {
            String::from_utf8_lossy(l)
                .trim_end_matches('\r')
                .to_string()
        })
        .unwrap_or_default();
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, body) = if !matches!(method, "GET" | "HEAD" | "OPTIONS") || path.is_empty() {
        if target.is_empty() || !path.starts_with('/') {
            (400, "bad request\n".to_string())
        } else {
            (405, "method not allowed\n".to_string())
        }
    } else {
        match http_status(path, word) {
            Some(ok) => (if ok { 200 } else { 503 }, text_reply(word)),
            None => (
                404,
                "unknown path; try /primary /replica /read-only /health\n".to_string(),
            ),
        }
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let body = if method == "HEAD" { "" } else { body.as_str() };
    format!(
        "HTTP/1.0 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Whether `path` passes for `word` (`None` for an unknown path). The paths
/// are Patroni's: `/primary` `/master` `/read-write` `/` for the writer,
/// `/replica` `/standby` for readers, `/read-only` for either, and
/// `/health` whenever Postgres answered.
pub fn http_status(path: &str, word: Word) -> Option<bool> {
    let path = path.trim_end_matches('/');
    Some(match path {
        "" | "/primary" | "/master" | "/read-write" | "/leader" => word == Word::Production,
        "/replica" | "/standby" => word == Word::Standby,
        "/read-only" => matches!(word, Word::Production | Word::Standby),
        "/health" => matches!(
            word,
            Word::Production | Word::Standby | Word::Lagging | Word::Fenced
        ),
        _ => return None,
    })
}

/// Which pool an agent check asks about, from HAProxy's `agent-send` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentPool {
    /// `agent-send "primary\n"` (or production, master, read-write).
    Primary,
    /// `agent-send "replica\n"` (or standby, read-only).
    Replica,
    /// Nothing sent: any serving role is `up`.
    Any,
}

impl AgentPool {
    /// Reads the pool from what HAProxy sent (possibly nothing).
    pub fn from_request(sent: &[u8]) -> AgentPool {
        let text = String::from_utf8_lossy(sent).to_ascii_lowercase();
        match text.trim() {
            "primary" | "production" | "master" | "read-write" => AgentPool::Primary,
            "replica" | "standby" | "read-only" => AgentPool::Replica,
            _ => AgentPool::Any,
        }
    }
}

/// The agent-check reply: `up ready` when the node serves the asked pool,
/// `drain` in maintenance (existing sessions finish, no new ones), and
/// `down #<word>` otherwise.
pub fn agent_reply(pool: AgentPool, word: Word) -> String {
    let serves = match pool {
        AgentPool::Primary => word == Word::Production,
        AgentPool::Replica => word == Word::Standby,
        AgentPool::Any => matches!(word, Word::Production | Word::Standby),
    };
    if serves {
        "up ready\n".to_string()
    } else if word == Word::Maintenance {
        "drain #maintenance\n".to_string()
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
            assert_eq!(http_status(path, *word), *want, "{path} {word}");
        }
    }

    #[test]
    fn http_replies() {
        let cases: &[(&str, Word, &str)] = &[
            ("GET /primary HTTP/1.1\r\nHost: x\r\n\r\n", Word::Production, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nConnection: close\r\n\r\nproduction\n"),
            ("GET /primary?lag=1MB HTTP/1.0\r\n\r\n", Word::Standby, "HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 8\r\nConnection: close\r\n\r\nstandby\n"),
            ("HEAD /replica HTTP/1.0\r\n\r\n", Word::Standby, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            ("OPTIONS / HTTP/1.0\r\n\r\n", Word::Production, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nConnection: close\r\n\r\nproduction\n"),
        ];
        for (request, word, want) in cases {
            assert_eq!(http_reply(request.as_bytes(), *word), *want, "{request:?}");
        }
        let statuses: &[(&str, &str)] = &[
            ("POST /primary HTTP/1.0\r\n\r\n", "HTTP/1.0 405 "),
            ("GET /nothing HTTP/1.0\r\n\r\n", "HTTP/1.0 404 "),
            ("", "HTTP/1.0 400 "),
            ("garbage", "HTTP/1.0 400 "),
        ];
        for (request, want) in statuses {
            assert!(
                http_reply(request.as_bytes(), Word::Production).starts_with(want),
                "{request:?}"
            );
        }
    }

    #[test]
    fn agent_replies() {
        use AgentPool::*;
        use Word::*;
        let cases: &[(&[u8], AgentPool, Word, &str)] = &[
            (b"primary\n", Primary, Production, "up ready\n"),
            (b"PRODUCTION\r\n", Primary, Standby, "down #standby\n"),
            (b"replica\n", Replica, Standby, "up ready\n"),
            (b"read-only\n", Replica, Production, "down #production\n"),
            (b"", Any, Production, "up ready\n"),
            (b"", Any, Standby, "up ready\n"),
            (b"what\n", Any, Fenced, "down #fenced\n"),
            (b"", Any, Maintenance, "drain #maintenance\n"),
            (
                b"",
                Any,
                Down(crate::word::DownReason::Timeout),
                "down #timeout\n",
            ),
        ];
        for (sent, pool, word, want) in cases {
            assert_eq!(AgentPool::from_request(sent), *pool, "{sent:?}");
            assert_eq!(agent_reply(*pool, *word), *want, "{sent:?} {word}");
        }
    }

    #[test]
    fn head_completion() {
        assert!(head_complete(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(head_complete(b"GET / HTTP/1.0\n\n"));
        assert!(!head_complete(b"GET / HTTP/1.0\r\nHost: x\r\n"));
    }
}
