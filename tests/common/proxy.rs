//! A TCP forwarder on loopback that a test can cut, to partition two
//! processes that reach each other only through it (one peer's
//! `neighbours` entry names the proxy, not the other peer).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Forwards `listen` → `target` until cut (then a black hole) or dropped.
pub struct Proxy {
    pub listen: SocketAddr,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Starts forwarding.
    pub fn start(listen: SocketAddr, target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(listen).expect("bind the proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (cut2, open2) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            // After a cut, connections are accepted and held without a
            // word, as a partition's black hole would: the other side
            // times out rather than being refused.
            let mut held = Vec::new();
            loop {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(_) => {
                        if Arc::strong_count(&cut2) == 1 {
                            return; // the Proxy was dropped
                        }
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                if cut2.load(Ordering::Relaxed) {
                    held.push(client);
                    continue;
                }
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
                    continue;
                };
                for s in [&client, &server] {
                    if let (Ok(s), Ok(mut o)) = (s.try_clone(), open2.lock()) {
                        o.push(s);
                    }
                }
                pipe(
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                pipe(server, client);
            }
        });
        Proxy { listen, cut, open }
    }

    /// Cuts the link: no new connection, and every open one is shut down.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
        if let Ok(open) = self.open.lock() {
            for s in open.iter() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
