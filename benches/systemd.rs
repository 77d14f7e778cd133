//! The one-shot responder under a real systemd 252 (Accept=yes, the
//! shipped `pgsql-state.socket` and `pgsql-state@.service`), next to the
//! original pgsql-state psql unit (the seed's unit, word for word but for
//! psql's path and the socket directory), to `/bin/echo` run as postgres
//! (systemd's own cost for a unit with `User=`), to the shipped unit with
//! the mount-namespace sandbox it had before (ProtectSystem=strict and the
//! rest, now replaced by Landlock), and to the shipped unit with no
//! hardening but `User=`, all under the same systemd in the same run. The
//! floor is echo's p50 plus one Postgres connect and query (`pgbench -C`,
//! run before and after, averaged).
//!
//! Measured in interleaved blocks: 10 cycles of each target in turn, the
//! first of each block dropped, so that one unit's tear-down (systemd
//! reaps an instance after its answer) does not land in another's cycle.
//! systemd runs as PID 1 in namespaces of its own (`tests/common/systemd.rs`).
//!
//!     cargo bench --bench systemd            (CYCLES=400 by default)

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const NODE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Cycles per block; the first of each is dropped.
const BLOCK: usize = 10;

fn cycles() -> usize {
    std::env::var("CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(400)
}

/// A socket unit on `port` (Accept=yes), with the shipped socket's limits;
/// `NAME.socket` starts `NAME@.service` per connection.
fn socket(port: u16) -> String {
    format!(
        "[Socket]\nListenStream={port}\nAccept=yes\n\
         TriggerLimitIntervalSec=1s\nTriggerLimitBurst=5000\nMaxConnections=256\n"
    )
}

/// One cycle: connect, read to EOF, close (ms).
fn cycle(addr: SocketAddr, expect: &str) -> f64 {
    use std::io::Read;
    let start = Instant::now();
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    let mut out = String::new();
    stream.read_to_string(&mut out).expect("read");
    let took = start.elapsed().as_secs_f64() * 1000.0;
    assert!(out.contains(expect), "{addr} answered {out:?}");
    took
}

fn percentile(times: &mut [f64], p: f64) -> f64 {
    times.sort_by(|a, b| a.total_cmp(b));
    times[((times.len() as f64 - 1.0) * p).round() as usize]
}

/// pgbench -C's average latency (ms): one connect and
/// `SELECT pg_is_in_recovery()`, over the Unix socket in `sock`.
fn pgbench_connect(sock: &str, scratch: &Path) -> f64 {
    let script = scratch.join("q.sql");
    std::fs::write(&script, "SELECT pg_is_in_recovery();\n").expect("write pgbench script");
    let out = run(Command::new(pg_bin("pgbench"))
        .args([
            "-n", "-C", "-t", "300", "-h", sock, "-p", "5432", "-U", "postgres", "-f",
        ])
        .arg(&script)
        .arg("postgres"));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("latency average = "))
        .and_then(|l| l.trim_end_matches(" ms").parse().ok())
        .unwrap_or_else(|| panic!("no latency in pgbench output:\n{text}"))
}

fn main() {
    let ns = SystemdNs::boot("bench");
    let data = ns.postgres("node_1", NODE);
    let sock = format!("{}.s", data.display());
    let conninfo = format!("host={sock} port=5432 user=postgres dbname=postgres");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped = |name: &str| {
        std::fs::read_to_string(repo.join("units").join(name)).expect("read a shipped unit")
    };
    // Ours: the shipped pair, the binary and its flags rewritten.
    let ours = shipped("pgsql-state@.service").replace(
        "ExecStart=/usr/bin/pgsql-state respond",
        &format!(
            "ExecStart={} respond --fencing off --conninfo '{conninfo}'",
            ns.binary().display()
        ),
    );
    ns.add_unit("pgsql-state.socket", &shipped("pgsql-state.socket"));
    ns.add_unit("pgsql-state@.service", &ours);
    // The seed's unit, word for word but for psql's path and the socket
    // directory (the anchor measured the psql binary, not Debian's perl
    // wrapper): errors go to the socket, as its StandardError= inherits.
    ns.add_unit("psql-unit.socket", &socket(5439));
    ns.add_unit(
        "psql-unit@.service",
        &format!(
            "[Unit]\nDescription=Local PostgreSQL state\n\n[Service]\nUser=postgres\nGroup=postgres\n\
             ExecStart={} -d postgres -U postgres -h {sock} -p 5432 -Atc \"{}\"\nStandardOutput=socket\n",
            pg_bin("psql").display(),
            common::scene::PSQL_QUERY.replace("SELECT", "select")
        ),
    );
    ns.add_unit("echo.socket", &socket(5438));
    ns.add_unit(
        "echo@.service",
        "[Service]\nExecStart=/bin/echo production\nStandardOutput=socket\nUser=postgres\n",
    );
    // What systemd's file-system sandbox cost, per connection: the shipped
    // unit with the mount-namespace options it carried before Landlock.
    let mount_sandbox =
        "ProtectSystem=strict\nReadOnlyPaths=/run\nProtectHome=yes\nPrivateTmp=yes\n\
        PrivateDevices=yes\nProtectKernelTunables=yes\nProtectKernelModules=yes\n\
        ProtectKernelLogs=yes\nProtectControlGroups=yes\n";
    ns.add_unit("mountns.socket", &socket(5441));
    ns.add_unit("mountns@.service", &format!("{ours}{mount_sandbox}"));
    // The shipped unit with the three seccomp options it moved into the
    // process (src/sandbox/syscalls.rs): what systemd's filters cost.
    let systemd_seccomp = "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n\
        RestrictNamespaces=yes\nMemoryDenyWriteExecute=yes\n";
    ns.add_unit("seccomp.socket", &socket(5443));
    ns.add_unit("seccomp@.service", &format!("{ours}{systemd_seccomp}"));
    // The shipped unit with none of its hardening but User=: what the
    // remaining per-exec options (seccomp filters and the like) cost.
    let exec = ours
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .expect("the shipped unit has an ExecStart=");
    ns.add_unit("plain.socket", &socket(5442));
    ns.add_unit(
        "plain@.service",
        &format!("[Service]\n{exec}\nUser=postgres\nGroup=postgres\n"),
    );
    ns.systemctl(&[
        "start",
        "plain.socket",
        "pgsql-state.socket",
        "psql-unit.socket",
        "echo.socket",
        "mountns.socket",
        "seccomp.socket",
    ]);
    let targets = [
        ("floor part: /bin/echo as postgres, Accept=yes", 5438u16),
        ("pgsql-state respond, shipped units", 5431),
        ("the seed's psql unit", 5439),
        ("pgsql-state respond + mount-namespace sandbox", 5441),
        ("pgsql-state respond, User= and nothing else", 5442),
        ("pgsql-state respond + systemd's seccomp options", 5443),
    ];
    let scratch = data.parent().expect("the run directory").to_path_buf();
    let connect_before = pgbench_connect(&sock, &scratch);
    let n = cycles();
    let results = ns.in_netns(move || {
        let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(n); targets.len()];
        // Warm-up: one block each, dropped.
        for (_, port) in targets {
            for _ in 0..BLOCK {
                cycle(SocketAddr::new(NODE.into(), port), "production");
            }
        }
        while times[0].len() < n {
            for (t, (_, port)) in targets.iter().enumerate() {
                for i in 0..BLOCK {
                    let took = cycle(SocketAddr::new(NODE.into(), *port), "production");
                    if i > 0 && times[t].len() < n {
                        times[t].push(took);
                    }
                }
            }
        }
        times
            .into_iter()
            .map(|mut t| (percentile(&mut t, 0.5), percentile(&mut t, 0.99)))
            .collect::<Vec<_>>()
    });
    let connect = (connect_before + pgbench_connect(&sock, &scratch)) / 2.0;
    println!(
        "under a real systemd 252 (PID 1 in its own namespaces), {n} cycles each, blocks of {BLOCK} in turn"
    );
    for ((name, _), (p50, p99)) in targets.iter().zip(&results) {
        println!("{name:<48} p50 {p50:>7.3} ms  p99 {p99:>7.3} ms");
    }
    println!(
        "{:<48} mean {connect:>6.3} ms",
        "pgbench -C: connect + SELECT pg_is_in_recovery()"
    );
    let (echo, ours, psql, mountns, plain, seccomp) = (
        results[0].0,
        results[1].0,
        results[2].0,
        results[3].0,
        results[4].0,
        results[5].0,
    );
    let floor = echo + connect;
    println!();
    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!(
        "| ours p50 / its floor (echo p50 + pgbench -C) | {:.2}× ({ours:.2} / {floor:.2} ms) | ≤ 1.3× |",
        ours / floor
    );
    println!(
        "| seed's psql unit p50 / ours p50 | {:.2}× faster ({psql:.2} / {ours:.2} ms) | ≥ 2× |",
        psql / ours
    );
    println!(
        "| the best any one-shot could reach here: psql p50 / floor | {:.2}× | |",
        psql / floor
    );
    println!(
        "| ours with the mount-namespace sandbox p50 | {mountns:.2} ms, {:.2}× ours | |",
        mountns / ours
    );
    println!(
        "| ours with no hardening but User= p50 | {plain:.2} ms (ours {:+.2} ms) | |",
        ours - plain
    );
    println!(
        "| ours with systemd's three seccomp options too p50 | {seccomp:.2} ms ({:.2} ms more) | |",
        seccomp - ours
    );
}
