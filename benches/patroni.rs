//! The long-lived responder (`--format http`) next to Patroni's REST API,
//! both answering `GET /primary` on a new TCP connection per check
//! (HTTP/1.0, as HAProxy's httpchk does), in one run, round-robin. Patroni
//! (from PyPI, pinned, in a venv under target/) runs one node with its
//! raft DCS and its own PostgreSQL; ours runs beside the test cluster's
//! primary. The client's floor runs beside them: a server that reads the
//! request and writes a constant 200, so that what ours adds (its round
//! trip to Postgres) shows. Also both processes' resident memory.
//!
//!     cargo bench --bench patroni            (CYCLES=400 by default)

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

fn cycles() -> usize {
    std::env::var("CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(400)
}

/// Patroni: its process, and its data dir (stopped when dropped).
struct Patroni {
    process: Option<Spawned>,
    data: PathBuf,
}

impl Drop for Patroni {
    fn drop(&mut self) {
        if let Some(p) = self.process.take() {
            // SIGTERM: Patroni stops its PostgreSQL on the way out.
            let _ = p.terminate(Duration::from_secs(30));
        }
        if self.data.join("postmaster.pid").exists() {
            let _ = as_pg_user(&pg_bin("pg_ctl"))
                .args(["-m", "immediate", "-w", "stop", "-D"])
                .arg(&self.data)
                .output();
        }
    }
}

/// Starts a one-node Patroni cluster on `addr` (REST 8008, raft 2222,
/// PostgreSQL 5432) and waits until `GET /primary` says 200.
fn start_patroni(venv: &Path, dir: &Path, addr: std::net::Ipv4Addr) -> Patroni {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let data = dir.join("data");
    let config = format!(
        "scope: bench\nname: patroni1\nrestapi:\n  listen: {addr}:8008\n  connect_address: {addr}:8008\n\
         raft:\n  data_dir: {dir}/raft\n  self_addr: {addr}:2222\n  partner_addrs: []\n\
         bootstrap:\n  dcs:\n    ttl: 30\n    loop_wait: 10\n  initdb:\n    - encoding: UTF8\n\
         postgresql:\n  listen: {addr}:5432\n  connect_address: {addr}:5432\n  data_dir: {data}\n\
         \x20 bin_dir: {bin}\n  pgpass: {dir}/pgpass\n  authentication:\n    superuser: {{username: postgres, password: pw}}\n\
         \x20   replication: {{username: replicator, password: pw}}\n  parameters:\n    unix_socket_directories: {dir}\n",
        dir = dir.display(),
        data = data.display(),
        bin = pg_bindir().display(),
    );
    let path = dir.join("patroni.yml");
    std::fs::write(&path, config).expect("write patroni.yml");
    let mut cmd = as_pg_user(&venv.join("bin/patroni"));
    cmd.arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("patroni.log")).expect("log"));
    let process = Spawned::new(cmd.spawn().expect("start patroni"), "patroni");
    let api = SocketAddr::new(addr.into(), 8008);
    let patroni = Patroni {
        process: Some(process),
        data,
    };
    wait_until(
        Duration::from_secs(120),
        "Patroni's GET /primary 200",
        || {
            let answer = get_primary(api);
            answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
        },
    );
    patroni
}

/// `GET /primary` on a new connection: the whole answer.
fn get_primary(addr: SocketAddr) -> String {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /primary HTTP/1.0\r\n\r\n").is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// One check cycle (ms); the answer must be 200.
fn cycle(addr: SocketAddr) -> f64 {
    let start = Instant::now();
    let out = get_primary(addr);
    let took = start.elapsed().as_secs_f64() * 1000.0;
    assert!(
        out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"),
        "{addr} answered {out:?}"
    );
    took
}

/// A server that reads the request and writes a constant `200`, as ours
/// does but without asking anything: the client's floor.
fn constant_http_server(addr: SocketAddr) {
    let listener = std::net::TcpListener::bind(addr).expect("bind the floor server");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.set_nodelay(true);
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nproduction\n",
            );
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
    });
}

fn percentile(times: &mut [f64], p: f64) -> f64 {
    times.sort_by(|a, b| a.total_cmp(b));
    times[((times.len() as f64 - 1.0) * p).round() as usize]
}

/// A status field (kB) of `pid` and its children named `patroni`/ours.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("read status")
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("a kB field")
}

/// The Patroni python process (runuser's child).
fn patroni_pid(runuser: u32) -> u32 {
    let children = std::fs::read_to_string(format!("/proc/{runuser}/task/{runuser}/children"))
        .unwrap_or_default();
    children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(runuser)
}

fn main() {
    let venv = patroni_venv();
    let cluster = Cluster::start();
    let p = &cluster.primary;
    let ours_addr = SocketAddr::new(p.addr.into(), 8008);
    let ours = respond_server(
        ours_addr,
        &["--format", "http", "--conninfo", &p.conninfo()],
    );
    let dir = runtime_dir("patroni");
    let patroni = start_patroni(&venv, &dir, cluster.spare_addr(20));
    let patroni_api = SocketAddr::new(cluster.spare_addr(20).into(), 8008);
    let floor_addr = SocketAddr::new(cluster.spare_addr(21).into(), 8008);
    constant_http_server(floor_addr);
    let targets = [
        ("Patroni 4.1.5 GET /primary", patroni_api),
        ("floor: a server writing a constant 200", floor_addr),
        (
            "pgsql-state respond --format http --listen, GET /primary",
            ours_addr,
        ),
    ];
    let n = cycles();
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(n); targets.len()];
    for i in 0..n + 20 {
        for (t, (_, addr)) in targets.iter().enumerate() {
            let took = cycle(*addr);
            if i >= 20 {
                times[t].push(took);
            }
        }
    }
    let results: Vec<(f64, f64)> = times
        .into_iter()
        .map(|mut t| (percentile(&mut t, 0.5), percentile(&mut t, 0.99)))
        .collect();
    let runuser = patroni.process.as_ref().map_or(0, |p| p.child.id());
    let patroni_rss = status_kib(patroni_pid(runuser), "VmRSS:");
    let ours_rss = status_kib(ours.child.id(), "VmHWM:");
    println!("{n} cycles each, round-robin, a new TCP connection per check");
    for ((name, _), (p50, p99)) in targets.iter().zip(&results) {
        println!("{name:<58} p50 {p50:>7.3} ms  p99 {p99:>7.3} ms");
    }
    let (theirs, floor, mine) = (results[0].0, results[1].0, results[2].0);
    println!();
    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!(
        "| Patroni p50 / ours p50 | {:.1}× faster ({theirs:.3} / {mine:.3} ms) | ≥ 5× |",
        theirs / mine
    );
    println!(
        "| ours p50 − the client's floor: the round trip to Postgres | {:.3} ms | |",
        mine - floor
    );
    println!(
        "| Patroni p50 / the floor: the best any server could reach here | {:.1}× | |",
        theirs / floor
    );
    println!(
        "| RSS: ours (VmHWM) / Patroni (VmRSS) | {:.1} / {:.1} MiB = 1/{:.1} | < 1/5 |",
        ours_rss as f64 / 1024.0,
        patroni_rss as f64 / 1024.0,
        patroni_rss as f64 / ours_rss as f64
    );
}
