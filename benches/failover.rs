//! Failover with the shipped defaults, as a user who runs pgsql-state with
//! its package's units sees it: watchDog 15 s, connectionDeadline 5 s, the
//! shipped HAProxy config (`inter 2s fastinter 1s rise 2 fall 1`,
//! `timeout check 3s`), the reconcile timer every 15 s and the path unit's
//! run when postmaster.pid changes, `fencing: strict`, and the promotion by
//! `pg_ctl promote`. Each fault runs on a scene of its own (a primary, a
//! standby, the witness, their peers, HAProxy, and writes through its 5432
//! every 100 ms); each figure is the time from the promotion (or the
//! restart) to the first write HAProxy accepted after it.
//!
//! Beside them, in the same run: Patroni 4.1.5 with its defaults (ttl 30,
//! loop_wait 10; two nodes and a raft controller, its own HAProxy layout),
//! its leader's machine lost (Patroni and its PostgreSQL killed), against
//! pgsql-state with the same loss and `pg_ctl promote` 30 s after it, when
//! Patroni's ttl would let it promote; both from the fault to writes back.
//!
//!     cargo bench --bench failover
//!     PGSQL_STATE_BINARY=/path/to/an/earlier/pgsql-state cargo bench --bench failover
//!
//! And repmgrd promoting (three data nodes, the shipped example's
//! `failover_validation_command` and `promote_command`), its detection
//! tuned to Patroni's ttl (3 × 10 s) and with its defaults (6 × 10 s).
//!
//! The second measures an earlier build with the same harness (the
//! "today" column of BENCHMARKS.md). `FAULTS=restart,late` runs a subset
//! (`patroni,repmgrd` the side-by-side table); `PATRONI=0` leaves Patroni
//! out.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::scene::{Options, Scene};
use common::*;

/// The shipped defaults: L = 2 × 15 + 5 = 35 s, H = 7 s.
const LEASE: Duration = Duration::from_secs(35);

fn shipped_scene(tag: &str) -> Scene {
    Scene::start(
        tag,
        Options {
            shipped_timing: true,
            only_tcp: true,
            ..Options::default()
        },
    )
}

/// The first write HAProxy accepted that started at or after `from`
/// (scene time) and landed on `on`: how long after `from`.
fn writes_back(s: &Scene, from: Duration, on: IpAddr, bound: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let found = s.seen.lock().expect("seen").writes[0]
            .iter()
            .find(|w| w.at >= from && w.landed == Some(on))
            .map(|w| w.at - from);
        if let Some(took) = found {
            return took;
        }
        assert!(
            start.elapsed() < bound,
            "no write landed on {on} within {bound:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The machine of node_1 lost: its reconciler, peer and postmaster gone.
fn lose_node_1(s: &Scene) {
    s.stop_reconciler(0);
    s.kill_peer(0);
    s.c.primary.signal(libc::SIGKILL);
}

/// One row: the fault, what it took, and the bounds it is judged by.
struct Row {
    fault: &'static str,
    took: Duration,
    target: String,
}

fn restart() -> Row {
    let s = shipped_scene("bench-restart");
    std::thread::sleep(Duration::from_secs(3));
    let at = s.now();
    let started = Instant::now();
    s.c.primary.restart();
    let restart = started.elapsed();
    let took = writes_back(&s, at, s.c.primary.addr.into(), Duration::from_secs(120));
    Row {
        fault: "primary's Postgres restarted (from the restart)",
        took,
        target: format!(
            "restart ({:.1} s) + rise × fastinter (2 s) + 1 s = {:.1} s",
            restart.as_secs_f64(),
            restart.as_secs_f64() + 3.0
        ),
    }
}

fn late_promotion() -> Row {
    let s = shipped_scene("bench-late");
    std::thread::sleep(Duration::from_secs(3));
    lose_node_1(&s);
    // More than L' after the loss (L' = 35.7 s), as repmgrd's defaults
    // would promote a minute later.
    std::thread::sleep(LEASE + Duration::from_secs(5));
    let at = s.now();
    s.c.standby.promote();
    let took = writes_back(&s, at, s.c.standby.addr.into(), Duration::from_secs(180));
    Row {
        fault: "machine lost, standby promoted 40 s (> L') later",
        took,
        target: "H + rise × fastinter + 2 s ≈ 11 s".into(),
    }
}

fn crashed() -> Row {
    let s = shipped_scene("bench-crashed");
    std::thread::sleep(Duration::from_secs(3));
    s.c.primary.signal(libc::SIGKILL);
    let at = s.now();
    s.c.standby.promote();
    let took = writes_back(&s, at, s.c.standby.addr.into(), Duration::from_secs(180));
    Row {
        fault: "Postgres crashed (refused), then promotion",
        took,
        target: "H + rise × fastinter + 2 s ≈ 11 s".into(),
    }
}

fn promoted_at_once() -> Row {
    let s = shipped_scene("bench-at-once");
    std::thread::sleep(Duration::from_secs(3));
    lose_node_1(&s);
    let at = s.now();
    s.c.standby.promote();
    let took = writes_back(&s, at, s.c.standby.addr.into(), Duration::from_secs(180));
    Row {
        fault: "machine lost, promoted at once",
        took,
        target: "≥ what is left of the lease + H; ≤ W + rise × fastinter + 2 s ≈ 46.8 s".into(),
    }
}

/// pgsql-state's side of the comparison with Patroni: the loss, then
/// `pg_ctl promote` 30 s later; from the loss to writes back.
fn ours_like_patroni() -> Duration {
    let s = shipped_scene("bench-vs-patroni");
    std::thread::sleep(Duration::from_secs(3));
    let at = s.now();
    lose_node_1(&s);
    std::thread::sleep(Duration::from_secs(30));
    s.c.standby.promote();
    writes_back(&s, at, s.c.standby.addr.into(), Duration::from_secs(180))
}

/// repmgrd promotes: three data nodes, the witness, repmgrd on each with
/// the shipped example's lines, pgsql-state with its shipped defaults;
/// node_1's machine lost (its repmgrd, peer, responder and reconciler
/// gone, its Postgres stopped at once). From the loss to the first write
/// HAProxy accepted on the node repmgrd promoted. `detection` is
/// repmgrd's (reconnect_attempts, reconnect_interval,
/// monitor_interval_secs), `watchdog` pgsql-state's (15 s shipped; the
/// timer runs every watchDog).
fn repmgrd_promotes(detection: (u32, u32, u32), watchdog: u64) -> Duration {
    use common::repmgr::{RepmgrScene, Timing};
    let s = RepmgrScene::start_timed(
        &format!("bench-{}x{}-{watchdog}", detection.0, detection.1),
        Timing {
            shipped: true,
            watchdog,
            repmgrd: detection,
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    let at = s.now();
    s.lose_machine(0);
    let standbys: Vec<IpAddr> = s.nodes[1..].iter().map(|n| n.addr.into()).collect();
    let start = Instant::now();
    loop {
        let found = s.seen.lock().expect("seen").writes[0]
            .iter()
            .find(|w| w.at >= at && w.landed.is_some_and(|ip| standbys.contains(&ip)))
            .map(|w| w.at - at);
        if let Some(took) = found {
            return took;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no write on a promoted standby within 300 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One Patroni member (or the raft controller) and what it runs.
struct Member {
    process: Option<Spawned>,
    data: Option<PathBuf>,
}

impl Member {
    /// Its machine lost: Patroni killed, and its PostgreSQL with it.
    fn lose(&mut self) {
        if let Some(p) = self.process.take() {
            // runuser's child is Patroni itself.
            let pid = p.child.id();
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            for child in children.split_whitespace() {
                if let Ok(child) = child.parse::<i32>() {
                    // SAFETY: signalling a process this bench started.
                    unsafe { libc::kill(child, libc::SIGKILL) };
                }
            }
            drop(p);
        }
        if let Some(data) = &self.data {
            stop_postgres(data);
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(p) = self.process.take() {
            let _ = p.terminate(Duration::from_secs(30));
        }
        if let Some(data) = &self.data {
            stop_postgres(data);
        }
    }
}

fn stop_postgres(data: &Path) {
    if let Ok(text) = std::fs::read_to_string(data.join("postmaster.pid")) {
        if let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
        {
            // SAFETY: signalling the postmaster of a data dir this bench made.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// A raft member's port: pysyncobj binds it on every address, so members
/// on one machine need ports of their own.
fn raft_port(addr: Ipv4Addr) -> u16 {
    2200 + u16::from(addr.octets()[3])
}

/// Starts Patroni member `name` on `addr` (REST 8008, raft
/// [`raft_port`], PostgreSQL 5432), with `partners`' raft addresses.
fn start_member(
    venv: &Path,
    dir: &Path,
    name: &str,
    addr: Ipv4Addr,
    partners: &[Ipv4Addr],
) -> Member {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).expect("create a member dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let data = dir.join("data");
    let partners: Vec<String> = partners
        .iter()
        .map(|p| format!("'{p}:{}'", raft_port(*p)))
        .collect();
    let config = format!(
        "scope: bench\nname: {name}\nrestapi:\n  listen: {addr}:8008\n  connect_address: {addr}:8008\n\
         raft:\n  data_dir: {dir}/raft\n  self_addr: {addr}:{port}\n  partner_addrs: [{partners}]\n\
         bootstrap:\n  dcs:\n    ttl: 30\n    loop_wait: 10\n    retry_timeout: 10\n  initdb:\n    - encoding: UTF8\n\
         \x20 pg_hba:\n    - local all all trust\n    - host replication replicator 127.0.0.0/8 md5\n    - host all all 127.0.0.0/8 md5\n\
         postgresql:\n  listen: {addr}:5432\n  connect_address: {addr}:5432\n  data_dir: {data}\n\
         \x20 bin_dir: {bin}\n  pgpass: {dir}/pgpass\n  authentication:\n    superuser: {{username: postgres, password: pw}}\n\
         \x20   replication: {{username: replicator, password: pw}}\n  parameters:\n    unix_socket_directories: {dir}\n",
        dir = dir.display(),
        data = data.display(),
        bin = pg_bindir().display(),
        partners = partners.join(", "),
        port = raft_port(addr),
    );
    let path = dir.join("patroni.yml");
    std::fs::write(&path, config).expect("write patroni.yml");
    let mut cmd = as_pg_user(&venv.join("bin/patroni"));
    cmd.arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("patroni.log")).expect("log"));
    Member {
        process: Some(Spawned::new(cmd.spawn().expect("start patroni"), "patroni")),
        data: Some(data),
    }
}

/// The raft controller, the third member of the DCS quorum.
fn start_controller(venv: &Path, dir: &Path, addr: Ipv4Addr, partners: &[Ipv4Addr]) -> Member {
    let dir = dir.join("controller");
    std::fs::create_dir_all(&dir).expect("create the controller dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let partners: Vec<String> = partners
        .iter()
        .map(|p| format!("'{p}:{}'", raft_port(*p)))
        .collect();
    let config = format!(
        "raft:\n  data_dir: {dir}/raft\n  self_addr: {addr}:{port}\n  partner_addrs: [{}]\n",
        partners.join(", "),
        dir = dir.display(),
        port = raft_port(addr),
    );
    let path = dir.join("controller.yml");
    std::fs::write(&path, config).expect("write controller.yml");
    let mut cmd = as_pg_user(&venv.join("bin/patroni_raft_controller"));
    cmd.arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("controller.log")).expect("log"));
    Member {
        process: Some(Spawned::new(
            cmd.spawn().expect("start the controller"),
            "raft controller",
        )),
        data: None,
    }
}

/// `GET path` on Patroni's REST API: the status code.
fn rest_status(addr: Ipv4Addr, path: &str) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &SocketAddr::new(addr.into(), 8008),
        Duration::from_secs(3),
    ) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Patroni's HAProxy layout (haproxy/haproxy-patroni.cfg: `option httpchk`
/// on 8008, `inter 3s fall 3 rise 2`, `timeout check 5s`) on `at:5000`.
fn patroni_haproxy(dir: &Path, at: Ipv4Addr, nodes: [Ipv4Addr; 2]) -> Spawned {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("haproxy/haproxy-patroni.cfg"),
    )
    .expect("read haproxy-patroni.cfg");
    let text = shipped
        .replace(
            "/run/haproxy/pgsql-state.sock",
            &dir.join("stats.sock").display().to_string(),
        )
        .replace("bind *:7000", &format!("bind {at}:7000"))
        .replace("bind *:5000", &format!("bind {at}:5000"))
        .replace("bind *:5001", &format!("bind {at}:5001"))
        .replace("10.21.57.61", &nodes[0].to_string())
        .replace("10.21.57.62", &nodes[1].to_string());
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, text).expect("write haproxy.cfg");
    let mut cmd = Command::new(require_tool("haproxy"));
    cmd.args(["-W", "-db", "-f"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Spawned::listening(cmd, SocketAddr::new(at.into(), 5000), "Patroni's HAProxy")
}

/// Patroni's leader machine lost; from the fault to the first write that
/// HAProxy's 5000 accepted.
fn patroni() -> Duration {
    let venv = patroni_venv();
    let cluster = Cluster::start();
    let dir = runtime_dir("bench-patroni");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let [a, b, c, h] = [30, 31, 32, 33].map(|n| cluster.spare_addr(n));
    let _controller = start_controller(&venv, &dir, c, &[a, b]);
    let mut leader = start_member(&venv, &dir, "patroni1", a, &[b, c]);
    wait_until(Duration::from_secs(180), "patroni1 the leader", || {
        rest_status(a, "/primary") == 200
    });
    let _replica = start_member(&venv, &dir, "patroni2", b, &[a, c]);
    wait_until(Duration::from_secs(180), "patroni2 a replica", || {
        rest_status(b, "/replica") == 200
    });
    let _haproxy = patroni_haproxy(&dir, h, [a, b]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let conninfo =
        format!("host={h} port=5000 user=postgres password=pw dbname=postgres connect_timeout=2");
    let write = || {
        rt.block_on(async {
            let connect = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls);
            let Ok(Ok((client, conn))) =
                tokio::time::timeout(Duration::from_secs(2), connect).await
            else {
                return false;
            };
            tokio::spawn(conn);
            let insert = client
                .batch_execute("CREATE TABLE IF NOT EXISTS w (n int); INSERT INTO w VALUES (1)");
            matches!(
                tokio::time::timeout(Duration::from_secs(2), insert).await,
                Ok(Ok(()))
            )
        })
    };
    wait_until(
        Duration::from_secs(60),
        "writes through Patroni's HAProxy",
        &write,
    );
    let fault = Instant::now();
    leader.lose();
    // Writes are gone at once (the leader's PostgreSQL is dead); the first
    // one back is the measure.
    loop {
        assert!(
            fault.elapsed() < Duration::from_secs(300),
            "Patroni never failed over"
        );
        let tick = Instant::now();
        if write() {
            return fault.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100).saturating_sub(tick.elapsed()));
    }
}

fn main() {
    let faults = std::env::var("FAULTS")
        .unwrap_or_else(|_| "restart,late,crashed,at-once,patroni,repmgrd".into());
    let want = |f: &str| faults.split(',').any(|x| x == f);
    let binary = binary();
    println!("pgsql-state: {}", binary.display());
    let mut rows = Vec::new();
    if want("restart") {
        rows.push(restart());
    }
    if want("late") {
        rows.push(late_promotion());
    }
    if want("crashed") {
        rows.push(crashed());
    }
    if want("at-once") {
        rows.push(promoted_at_once());
    }
    println!();
    println!("| fault | writes back after | target |");
    println!("|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.1} s | {} |",
            r.fault,
            r.took.as_secs_f64(),
            r.target
        );
    }
    if want("patroni") {
        let ours = ours_like_patroni();
        let repmgrd = want("repmgrd").then(|| {
            (
                repmgrd_promotes((3, 10, 2), 15),
                repmgrd_promotes((6, 10, 2), 15),
                repmgrd_promotes((3, 10, 2), 10),
                repmgrd_promotes((3, 10, 2), 8),
            )
        });
        let theirs = if std::env::var("PATRONI").as_deref() == Ok("0") {
            None
        } else {
            Some(patroni())
        };
        println!();
        println!("| the leader's machine lost (from the fault to writes back) | seconds |");
        println!("|---|---|");
        println!(
            "| pgsql-state, `pg_ctl promote` 30 s after the loss | {:.1} s |",
            ours.as_secs_f64()
        );
        if let Some((tuned, defaults, shorter, shortest)) = repmgrd {
            println!(
                "| pgsql-state, repmgrd promotes, its detection tuned to Patroni's ttl (3 × 10 s) | {:.1} s |",
                tuned.as_secs_f64()
            );
            println!(
                "| pgsql-state, repmgrd promotes with its defaults (6 × 10 s) | {:.1} s |",
                defaults.as_secs_f64()
            );
            println!(
                "| pgsql-state at watchDog 10 (L = 25 s), repmgrd tuned (3 × 10 s) | {:.1} s |",
                shorter.as_secs_f64()
            );
            println!(
                "| pgsql-state at watchDog 8 (L = 21 s), repmgrd tuned (3 × 10 s) | {:.1} s |",
                shortest.as_secs_f64()
            );
        }
        if let Some(theirs) = theirs {
            println!(
                "| Patroni 4.1.5, ttl 30, loop_wait 10, its HAProxy layout | {:.1} s |",
                theirs.as_secs_f64()
            );
        }
    }
}
