//! Finding the socket a server was started with (`respond` and `peer`).
//!
//! In order: a socket systemd passed (`LISTEN_FDS`, fd 3), which is a
//! connection with `Accept=yes` and a listener with `Accept=no`; then
//! stdin, when it is a socket (inetd style, `StandardInput=socket`).
//! listenfd 1.0.2 cannot tell a connection from a listener (see DESIGN.md),
//! so the fd is classified here with `SO_ACCEPTCONN`.
//!
//! [`take_inherited`] changes the environment, so call it before the tokio
//! runtime starts.

use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};

use rustix::net::{sockopt, AddressFamily};

/// A connected client socket.
#[derive(Debug)]
pub enum ClientSocket {
    /// A TCP client.
    Tcp(std::net::TcpStream),
    /// A Unix-socket client.
    Unix(UnixStream),
}

/// A listening socket.
#[derive(Debug)]
pub enum ListenSocket {
    /// A TCP listener.
    Tcp(std::net::TcpListener),
    /// A Unix-socket listener.
    Unix(UnixListener),
}

/// What the process was started with.
#[derive(Debug)]
pub enum Inherited {
    /// One client to answer, then exit.
    Client(ClientSocket),
    /// A listener to serve until stopped.
    Listener(ListenSocket),
    /// No socket: started by hand.
    Nothing,
}

/// Takes the socket systemd or inetd passed, if any.
pub fn take_inherited() -> io::Result<Inherited> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() > 0 {
        let raw = fds
            .take_raw_fd(0)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "LISTEN_FDS names no fd"))?;
        // SAFETY: systemd passed this fd to us (LISTEN_FDS/LISTEN_PID were
        // checked by listenfd), and take_raw_fd hands over its ownership.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        return classify(fd);
    }
    if is_socket(io::stdin().as_fd()) {
        // SAFETY: fd 0 is open (we just fstat'ed it) and nothing else in this
        // process reads stdin; taking ownership closes it when the answer is done.
        let fd = unsafe { OwnedFd::from_raw_fd(0) };
        return classify(fd);
    }
    Ok(Inherited::Nothing)
}

/// Whether stderr may be the client's connection, as in inetd mode where
/// stdout and stderr inherit it: a socket that is not systemd's journal
/// stream. Logs must then never go to stderr.
pub fn stderr_is_client_socket() -> bool {
    is_client_socket(io::stderr().as_fd())
}

/// Whether stdout may be the client's connection (inetd mode): only the
/// answer may go there.
pub fn stdout_is_client_socket() -> bool {
    is_client_socket(io::stdout().as_fd())
}

/// A socket, and not the journal stream systemd names in `JOURNAL_STREAM`
/// (`StandardError=journal` makes stderr a Unix socket too; taking that for
/// the client silenced every log line of the per-connection unit).
fn is_client_socket(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    let Ok(st) = rustix::fs::fstat(fd) else {
        return false;
    };
    rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket
        && !is_journal_stream(
            st.st_dev,
            st.st_ino,
            std::env::var("JOURNAL_STREAM").ok().as_deref(),
        )
}

fn is_socket(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    rustix::fs::fstat(fd)
        .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket)
        .unwrap_or(false)
}

/// Whether a file with device `dev` and inode `ino` is the stream named by
/// `JOURNAL_STREAM` (`DEVICE:INODE`, both decimal, as systemd.exec(5) says).
pub fn is_journal_stream(dev: u64, ino: u64, journal_stream: Option<&str>) -> bool {
    journal_stream
        .and_then(|v| v.split_once(':'))
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

fn classify(fd: OwnedFd) -> io::Result<Inherited> {
    if sockopt::socket_type(&fd)? != rustix::net::SocketType::STREAM {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "inherited socket is not a stream socket",
        ));
    }
    let family = sockopt::socket_domain(&fd)?;
    let listening = sockopt::socket_acceptconn(&fd)?;
    let unix = if family == AddressFamily::UNIX {
        true
    } else if family == AddressFamily::INET || family == AddressFamily::INET6 {
        false
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "inherited socket is not TCP or Unix",
        ));
    };
    Ok(match (listening, unix) {
        (true, false) => Inherited::Listener(ListenSocket::Tcp(fd.into())),
        (true, true) => Inherited::Listener(ListenSocket::Unix(fd.into())),
        (false, false) => Inherited::Client(ClientSocket::Tcp(fd.into())),
        (false, true) => Inherited::Client(ClientSocket::Unix(fd.into())),
    })
}

#[cfg(test)]
mod journal_stream_tests {
    use super::is_journal_stream;

    #[test]
    fn only_the_named_device_and_inode_is_the_journal() {
        let cases: [(u64, u64, Option<&str>, bool); 7] = [
            (9, 123456, Some("9:123456"), true),
            (9, 123456, Some("9:123457"), false),
            (8, 123456, Some("9:123456"), false),
            (9, 123456, None, false),
            (9, 123456, Some(""), false),
            (9, 123456, Some("9"), false),
            (9, 123456, Some("x:123456"), false),
        ];
        for (dev, ino, env, expected) in cases {
            assert_eq!(
                is_journal_stream(dev, ino, env),
                expected,
                "{dev}:{ino} vs {env:?}"
            );
        }
    }
}
