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

/// Whether stderr is a socket, as in inetd mode where stdout and stderr
/// inherit the connection. Logs must then never go to stderr.
pub fn stderr_is_socket() -> bool {
    is_socket(io::stderr().as_fd())
}

/// Whether stdout is a socket (inetd mode): only the answer may go there.
pub fn stdout_is_socket() -> bool {
    is_socket(io::stdout().as_fd())
}

fn is_socket(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    rustix::fs::fstat(fd)
        .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket)
        .unwrap_or(false)
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
