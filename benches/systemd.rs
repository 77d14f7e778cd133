//! The one-shot responder under a real systemd 252 (Accept=yes, the
//! shipped `pgsql-state.socket` and `pgsql-state@.service`), next to the
//! original psql one-liner unit, to `/bin/echo`, and to the shipped unit
//! without its file-system sandbox, under the same systemd in the same
//! run, measured round-robin (one cycle of each in turn, back to back).
//! systemd runs as PID 1 in namespaces of its own (`tests/common/systemd.rs`).
//!
//!     cargo bench --bench systemd            (CYCLES=400 by default)

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const NODE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

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
    ns.add_unit("pgsql-state.socket", &shipped("pgsql-state.socket"));
    ns.add_unit(
        "pgsql-state@.service",
        &shipped("pgsql-state@.service").replace(
            "ExecStart=/usr/bin/pgsql-state respond",
            &format!(
                "ExecStart={} respond --fencing off --conninfo '{conninfo}'",
                ns.binary().display()
            ),
        ),
    );
    // The seed's psql unit, and the floor: the same socket settings.
    ns.add_unit("psql-unit.socket", &socket(5439));
    ns.add_unit(
        "psql-unit@.service",
        &format!(
            "[Service]\nExecStart={} -X -qAt -h {sock} -U postgres -d postgres -c \"{}\"\nStandardInput=socket\nStandardError=journal\nUser=postgres\n",
            pg_bin("psql").display(),
            common::scene::PSQL_QUERY
        ),
    );
    ns.add_unit("echo.socket", &socket(5438));
    ns.add_unit(
        "echo@.service",
        "[Service]\nExecStart=/bin/echo production\nStandardInput=socket\nStandardError=journal\n",
    );
    let ours = shipped("pgsql-state@.service").replace(
        "ExecStart=/usr/bin/pgsql-state respond",
        &format!(
            "ExecStart={} respond --fencing off --conninfo '{conninfo}'",
            ns.binary().display()
        ),
    );
    let without = |keys: &[&str]| -> String {
        ours.lines()
            .filter(|l| !keys.iter().any(|k| l.starts_with(k)))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    // What the file-system sandbox costs: the same unit without the
    // options that build a mount namespace per connection.
    let mount_options = [
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ReadOnlyPaths",
    ];
    ns.add_unit("unsandboxed.socket", &socket(5441));
    ns.add_unit("unsandboxed@.service", &without(&mount_options));
    ns.systemctl(&[
        "start",
        "pgsql-state.socket",
        "psql-unit.socket",
        "echo.socket",
        "unsandboxed.socket",
    ]);
    let targets = [
        ("floor: /bin/echo, Accept=yes", 5438u16),
        ("pgsql-state respond, shipped units, Accept=yes", 5431),
        ("psql one-liner unit, Accept=yes", 5439),
        ("pgsql-state respond without the file-system sandbox", 5441),
    ];
    let n = cycles();
    let results = ns.in_netns(move || {
        let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(n); targets.len()];
        for i in 0..n + 20 {
            for (t, (_, port)) in targets.iter().enumerate() {
                let took = cycle(SocketAddr::new(NODE.into(), *port), "production");
                if i >= 20 {
                    times[t].push(took);
                }
            }
        }
        times
            .into_iter()
            .map(|mut t| (percentile(&mut t, 0.5), percentile(&mut t, 0.99)))
            .collect::<Vec<_>>()
    });
    println!(
        "under a real systemd 252 (PID 1 in its own namespaces), {n} cycles each, round-robin"
    );
    for ((name, _), (p50, p99)) in targets.iter().zip(&results) {
        println!("{name:<50} p50 {p50:>7.3} ms  p99 {p99:>7.3} ms");
    }
    let (echo, ours, psql, bare) = (results[0].0, results[1].0, results[2].0, results[3].0);
    println!();
    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!(
        "| psql unit p50 / ours p50, under real systemd | {:.2}× faster ({psql:.2} / {ours:.2} ms) | ≥ 2× |",
        psql / ours
    );
    println!(
        "| psql unit p50 / ours p50 without the file-system sandbox | {:.2}× faster ({bare:.2} ms) | |",
        psql / bare
    );
    println!(
        "| ours p50 − systemd's own cost (echo p50) | {:.2} ms (echo {echo:.2} ms) | |",
        ours - echo
    );
}
