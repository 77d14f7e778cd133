//! Responder benchmarks: latency of one check in each mode, side by side
//! with its floor and with the psql one-liner, in one run on one machine,
//! reported as ratios. Also the peak RSS of a one-shot check and the
//! long-lived server's throughput and RSS.
//!
//!     cargo bench --bench responder            (CYCLES=400 by default)
//!
//! Each latency is a client cycle: connect, read to EOF, close. The targets
//! are measured round-robin, one cycle each in turn, so that the machine's
//! drifts hit them alike; pgbench -C runs before and after, averaged.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn cycles() -> usize {
    std::env::var("CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(400)
}

/// One check cycle against `addr`: connect, read to EOF, close. Returns
/// the time it took in milliseconds.
fn cycle(addr: SocketAddr, expect: &str) -> f64 {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect");
    let mut out = String::new();
    stream.read_to_string(&mut out).expect("read");
    drop(stream);
    let took = start.elapsed().as_secs_f64() * 1000.0;
    assert!(
        out.contains(expect),
        "{addr} answered {out:?}, expected {expect:?}"
    );
    took
}

/// p50 and p99 (ms) of each target, measured round-robin (one cycle of
/// each in turn), so that drifts of the machine hit every target alike.
fn measure_interleaved(targets: &[(SocketAddr, &str)]) -> Vec<(f64, f64)> {
    let n = cycles();
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(n); targets.len()];
    for i in 0..n + 20 {
        for (t, (addr, expect)) in targets.iter().enumerate() {
            let took = cycle(*addr, expect);
            if i >= 20 {
                times[t].push(took);
            }
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            (t[n / 2], t[(n * 99) / 100])
        })
        .collect()
}

/// pgbench's average latency (ms) for SELECT pg_is_in_recovery(), with or without -C.
fn pgbench(node: &Node, new_connection_each: bool) -> f64 {
    let dir = runtime_dir("pgbench");
    let script = dir.join("q.sql");
    std::fs::write(&script, "SELECT pg_is_in_recovery();\n").expect("write pgbench script");
    let mut cmd = Command::new(pg_bin("pgbench"));
    cmd.args(["-n", "-t"])
        .arg(if new_connection_each { "500" } else { "5000" })
        .arg("-h")
        .arg(&node.socket_dir)
        .args(["-p", "5432", "-U", "postgres", "-f"])
        .arg(&script)
        .arg("postgres");
    if new_connection_each {
        cmd.arg("-C");
    }
    let out = run(&mut cmd);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("latency average = "))
        .and_then(|l| l.trim_end_matches(" ms").parse().ok())
        .unwrap_or_else(|| panic!("no latency in pgbench output:\n{text}"))
}

/// A TCP server that writes a constant: the client-side floor of a long-lived server.
fn constant_server(addr: SocketAddr) {
    let listener = TcpListener::bind(addr).expect("bind the constant server");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(b"production\n");
        }
    });
}

/// Peak RSS (KiB) of one one-shot check: the responder runs inetd-style
/// with a connected socket as stdin, and wait4 reports its max RSS.
fn one_shot_peak_rss_kib(conninfo: &str, addr: SocketAddr) -> i64 {
    let listener = TcpListener::bind(addr).expect("bind");
    let client = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    });
    let (server_side, _) = listener.accept().expect("accept");
    let fd = server_side.into_raw_fd();
    // SAFETY: fd is a socket we own; Stdio takes ownership of it.
    let stdin = unsafe { Stdio::from_raw_fd(fd) };
    // Reaped below by wait4, which is what reports the child's peak RSS.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(binary())
        .args(["respond", "--fencing", "off", "--conninfo", conninfo])
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the responder");
    let mut status = 0;
    // SAFETY: rusage is plain data written by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child, with valid out-pointers.
    let rc = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(rc, child.id() as i32, "wait4");
    let answer = client.join().expect("client thread");
    assert_eq!(answer, "production\n");
    usage.ru_maxrss
}

/// Checks per second from `clients` threads hammering `addr` for `secs`.
fn throughput(addr: SocketAddr, clients: usize, secs: u64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let total: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(move || {
                    let mut n = 0usize;
                    while Instant::now() < deadline {
                        let mut stream = TcpStream::connect(addr).expect("connect");
                        let mut out = [0u8; 32];
                        let mut got = 0;
                        while let Ok(k) = stream.read(&mut out[got..]) {
                            if k == 0 {
                                break;
                            }
                            got += k;
                        }
                        assert_eq!(&out[..got], b"production\n");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("client")).sum()
    });
    total as f64 / secs as f64
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmHWM")
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let cluster = Cluster::start();
    let p = &cluster.primary;
    let conninfo = p.conninfo();
    let psql = pg_bin("psql");
    let psql_query =
        "SELECT CASE pg_is_in_recovery() WHEN true THEN 'standby' ELSE 'production' END";
    let at = |port| SocketAddr::new(p.addr.into(), port);
    let sock = p.socket_dir.to_str().expect("utf-8").to_string();
    let tool = require_tool("systemd-socket-activate");
    let spawn_activate = |port: u16, inetd: bool, argv: &[&str]| {
        let mut cmd = Command::new(&tool);
        cmd.arg("-l").arg(at(port).to_string()).arg("--accept");
        if inetd {
            cmd.arg("--inetd");
        }
        cmd.arg("--").args(argv).stderr(Stdio::null());
        Spawned::listening(cmd, at(port), "socket-activate")
    };
    let bin = binary();
    let bin = bin.to_str().expect("utf-8");

    let psql = psql.to_str().expect("utf-8");
    let psql_argv = [
        psql, "-X", "-At", "-h", &sock, "-U", "postgres", "-d", "postgres", "-c", psql_query,
    ];
    let _echo = spawn_activate(7001, true, &["/bin/echo", "production"]);
    let _accept = spawn_activate(
        7002,
        false,
        &[bin, "respond", "--fencing", "off", "--conninfo", &conninfo],
    );
    let _inetd = spawn_activate(
        7003,
        true,
        &[bin, "respond", "--fencing", "off", "--conninfo", &conninfo],
    );
    let _psql = spawn_activate(7004, true, &psql_argv);
    constant_server(at(7005));
    let server = respond_server(at(7006), &["--conninfo", &conninfo]);
    let connect_before = pgbench(p, true);
    // Two groups, each round-robin within itself: the one-shot modes (ms
    // scale, where the machine's drift matters), then the long-lived ones
    // (µs scale, back to back as a busy HAProxy farm would check).
    let mut results = measure_interleaved(&[
        (at(7001), "production"),
        (at(7002), "production"),
        (at(7003), "production"),
        (at(7004), "production"),
    ]);
    results.extend(measure_interleaved(&[
        (at(7005), "production"),
        (at(7006), "production"),
    ]));
    let connect_query = (connect_before + pgbench(p, true)) / 2.0;
    let warm_query = pgbench(p, false);
    let names = [
        "floor: /bin/echo under systemd-socket-activate",
        "pgsql-state respond, --accept (fd 3, LISTEN_FDS)",
        "pgsql-state respond, --accept --inetd (stdin)",
        "psql one-liner (the seed's unit), --accept --inetd",
        "floor: persistent TCP server writing a constant",
        "pgsql-state respond --listen (long-lived)",
    ];
    for (name, r) in names.iter().zip(&results) {
        println!("{name:<55} p50 {:>7.3} ms  p99 {:>7.3} ms", r.0, r.1);
    }
    println!(
        "{:<55} mean {connect_query:>6.3} ms",
        "pgbench -C: connect + SELECT pg_is_in_recovery()"
    );
    println!(
        "{:<55} mean {warm_query:>6.3} ms",
        "pgbench: warm SELECT pg_is_in_recovery()"
    );
    let [echo_accept, ours_accept, ours_inetd, psql_inetd, constant, ours_long] =
        [0, 1, 2, 3, 4, 5].map(|i| results[i]);
    let rate = throughput(at(7006), 4, 3);
    let server_rss = vm_hwm_kib(server.child.id());
    drop(server);
    let rss = one_shot_peak_rss_kib(&conninfo, at(7007));

    let one_shot_floor = echo_accept.0 + connect_query;
    let long_floor = constant.0 + warm_query;
    println!();
    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!("| one-shot (fd 3) p50 / its floor (echo p50 + pgbench -C) | {:.2}× ({:.2} / {:.2} ms) | ≤ 1.3× |", ours_accept.0 / one_shot_floor, ours_accept.0, one_shot_floor);
    println!(
        "| one-shot (inetd) p50 / its floor | {:.2}× | ≤ 1.3× |",
        ours_inetd.0 / one_shot_floor
    );
    println!(
        "| psql one-liner p50 / one-shot (fd 3) p50 | {:.2}× faster | ≥ 2× |",
        psql_inetd.0 / ours_accept.0
    );
    println!("| long-lived p50 / its floor (constant server p50 + warm query) | {:.2}× ({:.3} / {:.3} ms) | ≤ 2× |", ours_long.0 / long_floor, ours_long.0, long_floor);
    println!(
        "| psql one-liner p50 / long-lived p50 | {:.0}× faster | |",
        psql_inetd.0 / ours_long.0
    );
    println!("| long-lived throughput, 4 clients, 2 cores | {rate:.0} checks/s | ≥ 5,000 |");
    println!("| long-lived server RSS (VmHWM after the load) | {:.1} MiB | < 9.8 MiB (Patroni 49 MB / 5) |", server_rss as f64 / 1024.0);
    println!(
        "| one-shot check peak RSS | {:.1} MiB | ≤ 8 MiB |",
        rss as f64 / 1024.0
    );
}
