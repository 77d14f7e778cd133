//! A real HAProxy running a shipped config, with only addresses, ports and
//! the stats socket and server-state paths rewritten, read through its
//! stats socket. It runs in master-worker mode (`-W`), as Debian's unit
//! runs it, and is started and reloaded as the shipped drop-in
//! `haproxy/haproxy.service.d/pgsql-state.conf` does: `pgsql-state
//! haproxy-state` writes the server-state file first.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cluster::Cluster;
use super::tools::{require_tool, runtime_dir, Spawned};

/// HAProxy in front of a cluster: writes on `prod`, reads on `stdby`.
pub struct Haproxy {
    pub stats: PathBuf,
    /// The rewritten haproxy.cfg.
    pub config: PathBuf,
    pub prod: SocketAddr,
    pub stdby: SocketAddr,
    process: Spawned,
}

impl Haproxy {
    /// Starts HAProxy with `haproxy/<config>` on `addr`, its servers being
    /// the cluster's primary (node_1) and standby (node_2).
    pub fn start(cluster: &Cluster, config: &str, addr: Ipv4Addr) -> Haproxy {
        Haproxy::start_ports(cluster, config, addr, 5432, 5433, |text| text.to_string())
    }

    /// Starts `haproxy/<config>` as [`Haproxy::start`] does, its write and
    /// read pools bound on `prod` and `stdby`, after `edit` changes its text.
    pub fn start_ports(
        cluster: &Cluster,
        config: &str,
        addr: Ipv4Addr,
        prod: u16,
        stdby: u16,
        edit: impl Fn(&str) -> String,
    ) -> Haproxy {
        let haproxy = require_tool("haproxy");
        let dir = runtime_dir(&format!("haproxy-{}-{}", cluster.slot, addr.octets()[3]));
        let stats = dir.join("stats.sock");
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("haproxy")
            .join(config);
        let text = std::fs::read_to_string(&shipped).expect("read the shipped HAProxy config");
        let rewritten = rewrite(&edit(&text), &stats, addr, cluster);
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, rewritten).expect("write the HAProxy config");
        write_server_state(&path);
        let mut cmd = Command::new(haproxy);
        cmd.arg("-W")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let prod = SocketAddr::new(addr.into(), prod);
        let process = Spawned::listening(cmd, prod, "haproxy");
        Haproxy {
            stats,
            config: path,
            prod,
            stdby: SocketAddr::new(addr.into(), stdby),
            process,
        }
    }

    /// Reloads as the drop-in does: writes the server-state file (carrying
    /// over what the running HAProxy checked), then SIGUSR2 to the master.
    pub fn reload(&self) {
        write_server_state(&self.config);
        // SAFETY: signalling our own child, the HAProxy master.
        unsafe { libc::kill(self.process.child.id() as i32, libc::SIGUSR2) };
    }

    /// `show stat` rows: (proxy, server, status), for servers only. Waits
    /// up to 10 s for the stats socket: right after a start the master has
    /// bound the listeners before the worker answers on it (CI saw a busy
    /// machine fail a single try).
    pub fn servers(&self) -> Vec<(String, String, String)> {
        server_rows(&self.show_stat())
    }

    /// [`Haproxy::servers`], or `None` while the stats socket does not
    /// answer (during a reload the new worker rebinds it).
    pub fn try_servers(&self) -> Option<Vec<(String, String, String)>> {
        Some(server_rows(&self.try_show_stat()?))
    }

    /// `show stat`'s current weight of one server (field 19 counting
    /// from 1).
    pub fn weight(&self, proxy: &str, server: &str) -> u32 {
        let out = self.show_stat();
        out.lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.len() > 18 && f[0] == proxy && f[1] == server)
            .and_then(|f| f[18].parse().ok())
            .unwrap_or_else(|| panic!("no weight for {proxy}/{server} in {out}"))
    }

    /// `show stat`'s CSV, waiting up to 10 s for the socket to answer.
    fn show_stat(&self) -> String {
        let start = Instant::now();
        loop {
            if let Some(out) = self.try_show_stat() {
                return out;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no answer on the stats socket {} within 10 s",
                self.stats.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One `show stat`, or `None` when the socket does not answer with it.
    fn try_show_stat(&self) -> Option<String> {
        let mut s = UnixStream::connect(&self.stats).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"show stat\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.starts_with("# pxname").then_some(out)
    }

    /// The status of one server ("UP", "DOWN", …).
    pub fn status(&self, proxy: &str, server: &str) -> String {
        self.servers()
            .into_iter()
            .find(|(p, s, _)| p == proxy && s == server)
            .map(|(_, _, st)| st)
            .unwrap_or_else(|| panic!("no server {proxy}/{server}"))
    }

    /// Names of the servers UP in `proxy`, counting one that is going
    /// down (`UP 1/2`): it still takes traffic.
    pub fn up(&self, proxy: &str) -> Vec<String> {
        self.servers()
            .into_iter()
            .filter(|(p, _, st)| p == proxy && (st == "UP" || st.starts_with("UP ")))
            .map(|(_, s, _)| s)
            .collect()
    }

    /// Waits until `proxy` has exactly `servers` UP.
    pub fn wait_up(&self, proxy: &str, servers: &[&str], bound: Duration) {
        let start = Instant::now();
        loop {
            let up = self.up(proxy);
            if up == servers {
                return;
            }
            assert!(
                start.elapsed() < bound,
                "{proxy}: UP {up:?}, expected {servers:?} within {bound:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The server rows of `show stat`'s CSV: (proxy, server, status).
fn server_rows(out: &str) -> Vec<(String, String, String)> {
    out.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            // Field 18 (counting from 1) is the status.
            (f.len() > 17 && f[1].starts_with("node_"))
                .then(|| (f[0].into(), f[1].into(), f[17].into()))
        })
        .collect()
}

/// `pgsql-state haproxy-state CONFIG` when the config names a
/// server-state file (the Patroni example does not).
fn write_server_state(config: &Path) {
    let text = std::fs::read_to_string(config).expect("read the HAProxy config");
    if !text.contains("server-state-file") {
        return;
    }
    let out = Command::new(super::tools::binary())
        .arg("haproxy-state")
        .arg(config)
        .output()
        .expect("run pgsql-state haproxy-state");
    assert!(
        out.status.success(),
        "pgsql-state haproxy-state: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Rewrites only addresses, ports, the stats socket and the server-state
/// file of a shipped config.
fn rewrite(text: &str, stats: &Path, addr: Ipv4Addr, cluster: &Cluster) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("log /dev/log"))
        .map(|l| {
            l.replace(
                "/run/haproxy/pgsql-state.sock",
                stats.to_str().expect("utf-8 path"),
            )
            .replace(
                "/var/lib/haproxy/pgsql-state.servers",
                stats
                    .with_file_name("servers.state")
                    .to_str()
                    .expect("utf-8 path"),
            )
            .replace("bind *:", &format!("bind {addr}:"))
            .replace(
                "10.21.57.61:5432",
                &format!("{}:5432", cluster.primary.addr),
            )
            .replace(
                "10.21.57.62:5432",
                &format!("{}:5432", cluster.standby.addr),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}
