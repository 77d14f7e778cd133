//! Logging to stderr, which systemd sends to the journal. Under systemd
//! (`JOURNAL_STREAM` set) each line carries a `<N>` priority prefix that
//! journald understands. In inetd mode stderr is the client's socket, so
//! logging is turned off there. `PGSQL_STATE_LOG` sets the level (default
//! `warn`).

use std::io::Write;

/// Starts logging; `silent` turns it off (stderr is the client's socket).
pub fn init(silent: bool) {
    init_at(silent, log::LevelFilter::Warn);
}

/// Starts logging at `level` unless `PGSQL_STATE_LOG` says otherwise (the
/// reconciler logs its one decision line per run at info).
pub fn init_at(silent: bool, level: log::LevelFilter) {
    let mut builder = env_logger::Builder::new();
    if silent {
        builder.filter_level(log::LevelFilter::Off);
    } else {
        builder.filter_level(level);
        if let Ok(spec) = std::env::var("PGSQL_STATE_LOG") {
            builder.parse_filters(&spec);
        }
    }
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    builder.format(move |out, record| {
        // One record, one line: much of what is logged came from the
        // network (peer names, addresses, messages), and a newline or an
        // escape in it must not forge a journal line or repaint a terminal.
        let message = record.args().to_string();
        let message = crate::error_text::printable(&message);
        if journal {
            let priority = match record.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            writeln!(out, "<{priority}>{message}")
        } else {
            writeln!(
                out,
                "pgsql-state: {}: {message}",
                record.level().as_str().to_lowercase(),
            )
        }
    });
    // A second init (tests) keeps the first logger; that is fine.
    let _ = builder.try_init();
}

/// syslog's priority for errors (`LOG_ERR`).
pub const SYSLOG_ERR: u8 = 3;

/// Sends one line to syslog (`/dev/log`, which journald serves), for when
/// stderr is the client's socket. Best effort: without syslog the line is
/// lost, which is better than writing it to the client.
pub fn to_syslog(priority: u8, message: &str) {
    let socket = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(socket) => socket,
        Err(_) => return,
    };
    // Facility "daemon" (3): priority = 3 * 8 + severity.
    let line: String = crate::error_text::printable(message)
        .chars()
        .take(1024)
        .collect();
    let datagram = format!(
        "<{}>pgsql-state[{}]: {line}",
        24 + priority,
        std::process::id()
    );
    let _ = socket.send_to(datagram.as_bytes(), "/dev/log");
}
