//! The shipped units under a real systemd 252 (PID 1 in namespaces of its
//! own, see `common::systemd`), with PostgreSQL run inside as a unit:
//! - `pgsql-state.socket` (Accept=yes) answers `ncat --recv-only` and `nc`;
//! - it stays `active` through a flood of 2,000 connections/s for 10 s
//!   from 127.0.0.66; checks from 127.0.0.7 during it never get a wrong
//!   word (PID 1 forks per accept, so they may get none in time), and the
//!   check after it gets the right one;
//! - with the shipped allow-list drop-in, and at the long-lived responder
//!   (Accept=no), every check during the same flood gets `production`
//!   within HAProxy's check timeout;
//! - the same socket with systemd's default limits goes `failed
//!   (trigger-limit-hit)` under the same flood (the anchor);
//! - the peer service gets `active (running)` through READY=1 and keeps
//!   its watchdog;
//! - the timer runs the reconciler again and again, one decision line in
//!   the journal per run;
//! - the hardening holds: the services run as `postgres`, and inside their
//!   sandbox nothing outside their write paths can be written.
//!
//! Only the binary's path (and `-f CONFIG`) is rewritten in the shipped
//! units; intervals a test cannot wait for (the timer's, the watchdog's)
//! and the pg_hba.conf directory are set by drop-ins, as a user would.
//! One test function, steps in order: the flood would skew the others.
//!
//! A second systemd, booted with the shipped generator as its only one:
//! the timer's interval follows the config's watchDog (15 s, then 2 s
//! after a daemon-reload) with no interval drop-in, the reconciler runs
//! every 2 s to a confirming verdict, and `pgsql-state doctor` finds the
//! node whole, then each piece broken on purpose.
//!
//! A third, with /usr, /etc and /var overlaid on this machine's: the
//! Debian package installed by the README's `sudo apt install` line, and
//! the README's enable lines run as written, reach a confirming verdict
//! with `watchDog: 2` in the conffile and no drop-in; a purge then keeps
//! the claim record.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const NODE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const FLOODER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 66);
const HONEST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 7);

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A shipped unit with the binary (and the config) rewritten.
fn shipped_unit(ns: &SystemdNs, name: &str, config: &Path) -> String {
    std::fs::read_to_string(repo(&format!("units/{name}")))
        .unwrap_or_else(|e| panic!("read units/{name}: {e}"))
        .replace(
            "/usr/bin/pgsql-state ",
            &format!("{} -f {} ", ns.binary().display(), config.display()),
        )
}

/// The node's config: one data node, no neighbours, shipped paths for
/// the runtime and state directories, and the default watchDog (15 s), so
/// the lease (31 s) outlasts the seconds a flood keeps PID 1 busy (and
/// with it the timer): under a shorter lease the honest answer during the
/// flood is, rightly, `fenced`.
fn config(data: &Path) -> String {
    format!(
        "harepd:\n  nodeName: \"node_1\"\n  primaryIP: \"{NODE}\"\n  allowRO: false\n  hbaConfig: \"{data}/pg_hba.conf\"\n\
         \x20 haproxy:\n    server: [\"127.0.0.4\"]\n    users: {{readWrite: harw}}\n\
         \x20 gRPC:\n    bindPort: 10000\n    bindAddress: \"{NODE}\"\n    neighbours: []\n    connectionDeadline: 1\n\
         \x20 watchDog: 15\n  checkTimeout: 1\n  postgres:\n    conninfo: \"host={data}.s port=5432 user=postgres dbname=postgres\"\n",
        data = data.display()
    )
}

/// What a flood saw, and the honest checks made during it.
#[derive(Debug, Default)]
struct Flood {
    sent: u32,
    /// Connections that got a word.
    answered: u32,
    /// Connections closed with nothing written (systemd's caps).
    empty: u32,
    /// Connections refused or reset.
    failed: u32,
    /// Connections that got no answer within 3 s.
    timed_out: u32,
    seconds: f64,
    /// (word, latency) of a check from [`HONEST`] once a second.
    honest: Vec<(String, Duration)>,
}

/// One connection: connect from `source`, read to the end, bounded.
async fn check(source: Ipv4Addr, addr: SocketAddr, bound: Duration) -> (String, Duration) {
    use tokio::io::AsyncReadExt;
    let start = Instant::now();
    let attempt = async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source.into(), 0))?;
        let mut stream = socket.connect(addr).await?;
        let mut out = String::new();
        stream.read_to_string(&mut out).await?;
        Ok::<_, std::io::Error>(out.trim().to_string())
    };
    let out = match tokio::time::timeout(bound, attempt).await {
        Ok(Ok(word)) => word,
        Ok(Err(e)) => format!("error: {e}"),
        Err(_) => "timeout".to_string(),
    };
    (out, start.elapsed())
}

/// A current-thread runtime (built on the calling thread, so inside the
/// namespace when called from [`SystemdNs::in_netns`]).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The word at `addr` from `source`, and how long it took.
fn word(ns: &SystemdNs, source: Ipv4Addr, addr: SocketAddr, bound: Duration) -> (String, Duration) {
    ns.in_netns(move || runtime().block_on(check(source, addr, bound)))
}

/// HAProxy's `timeout check` in the shipped configs: a check slower than
/// this is a failed check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// `rate` connections/s for `secs` from [`FLOODER`] to `addr`, each read
/// to its end (3 s bound), and, on a thread of its own, a check from
/// [`HONEST`] every second, each on its own and bounded like HAProxy's
/// ([`CHECK_TIMEOUT`]), so one stuck check does not push the next past the
/// flood.
fn flood(ns: &SystemdNs, addr: SocketAddr, rate: u32, secs: u32) -> Flood {
    let honest = ns.spawn_in_netns(move || {
        runtime().block_on(async move {
            let start = tokio::time::Instant::now();
            let mut checks = Vec::new();
            for second in 1..=secs {
                let at = start + Duration::from_millis(u64::from(second) * 1000 - 500);
                tokio::time::sleep_until(at).await;
                checks.push(tokio::spawn(check(HONEST, addr, CHECK_TIMEOUT)));
            }
            let mut out = Vec::new();
            for c in checks {
                out.push(c.await.expect("an honest check"));
            }
            out
        })
    });
    let mut f = ns.in_netns(move || {
        runtime().block_on(async move {
            let start = tokio::time::Instant::now();
            let total = rate * secs;
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..total {
                let at = start + Duration::from_secs_f64(f64::from(i) / f64::from(rate));
                tokio::time::sleep_until(at).await;
                tasks.spawn(check(FLOODER, addr, Duration::from_secs(3)));
            }
            let mut f = Flood {
                sent: total,
                ..Flood::default()
            };
            while let Some(done) = tasks.join_next().await {
                let (word, _) = done.expect("a flood task");
                match word.as_str() {
                    "" => f.empty += 1,
                    "timeout" => f.timed_out += 1,
                    w if w.starts_with("error") => f.failed += 1,
                    _ => f.answered += 1,
                }
            }
            f.seconds = start.elapsed().as_secs_f64();
            f
        })
    });
    f.honest = honest.join().expect("the honest checks");
    f
}

/// `ncat --recv-only` and `nc` inside the namespace, bounded.
fn client(ns: &SystemdNs, program: &str, args: &[&str]) -> String {
    let out = ns
        .cmd("timeout")
        .arg("10")
        .arg(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// True when a check got no word at all: timed out, refused, reset, or
/// closed with nothing written.
fn no_word(w: &str) -> bool {
    w.is_empty() || w == "timeout" || w.starts_with("error")
}

/// How many of the flood's honest checks got `production` within HAProxy's
/// check timeout.
fn answered_in_time(f: &Flood) -> usize {
    f.honest
        .iter()
        .filter(|(w, took)| w == "production" && *took < CHECK_TIMEOUT)
        .count()
}

/// The unit with its `ListenStream=` moved to `port`.
fn with_port(unit: &str, port: u16) -> String {
    unit.lines()
        .map(|l| {
            if l.starts_with("ListenStream=") {
                format!("ListenStream={port}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The socket unit with systemd 252's defaults: the shipped one without
/// its trigger limit, connection caps and backlog.
fn with_default_limits(shipped: &str, port: u16) -> String {
    let unit: Vec<&str> = shipped
        .lines()
        .filter(|l| {
            !["TriggerLimit", "MaxConnections", "Backlog="]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .collect();
    with_port(&unit.join("\n"), port)
}

/// Writes `text` to `path` inside a unit's mount namespace (entered from
/// inside the PID namespace, where `pid` is valid); true when it worked.
fn can_write(ns: &SystemdNs, pid: &str, path: &str) -> bool {
    ns.cmd("nsenter")
        .args(["-t", pid, "-m", "--", "sh", "-c"])
        .arg(format!("echo probe > {path}"))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run nsenter")
        .success()
}

/// What installation does before the units run: our tmpfiles snippet only
/// (/run/pgsql-state and /var/lib/pgsql-state), and the claim record,
/// created as postgres.
fn install_directories_and_record(ns: &SystemdNs, cfg: &Path) {
    let tmpfiles = ns.dir.join("pgsql-state.conf");
    std::fs::copy(repo("units/pgsql-state.tmpfiles"), &tmpfiles).expect("copy tmpfiles");
    ns.ok(ns.cmd("systemd-tmpfiles").arg("--create").arg(&tmpfiles));
    ns.ok(ns
        .cmd("runuser")
        .args(["-u", "postgres", "--"])
        .arg(ns.binary())
        .arg("-f")
        .arg(cfg)
        .args(["claims", "init", "--new-cluster"]));
}

/// The two booted systemds run one after the other: the flood's timing
/// must not share the machine with the generator's runs.
static ONE_SYSTEMD_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn the_shipped_units_under_a_real_systemd() {
    // A panic in the other test poisons the lock; the order still holds.
    let _one = ONE_SYSTEMD_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let ns = SystemdNs::boot("units");
    let data = ns.postgres("node_1", NODE);
    let cfg = ns.dir.join("node_1.yml");
    std::fs::write(&cfg, config(&data)).expect("write the config");
    install_directories_and_record(&ns, &cfg);
    for unit in [
        "pgsql-state.socket",
        "pgsql-state@.service",
        "pgsql-state-peer.socket",
        "pgsql-state-peer.service",
        "pgsql-state-reconcile.service",
        "pgsql-state-reconcile.timer",
    ] {
        ns.add_unit(unit, &shipped_unit(&ns, unit, &cfg));
    }
    // What a user sets: the timer's interval (1 s here, below watchDog), the
    // directory of their pg_hba.conf, and (for the test) a short watchdog.
    ns.add_unit(
        "pgsql-state-reconcile.timer.d/interval.conf",
        // An empty assignment resets every trigger, OnActiveSec= too.
        "[Timer]\nOnUnitActiveSec=\nOnActiveSec=1s\nOnUnitActiveSec=1s\n",
    );
    ns.add_unit(
        "pgsql-state-reconcile.service.d/hba.conf",
        &format!("[Service]\nReadWritePaths={}\n", data.display()),
    );
    ns.add_unit(
        "pgsql-state-peer.service.d/watchdog.conf",
        "[Service]\nWatchdogSec=2s\n",
    );
    // The responder says at debug level how its Landlock sandbox went.
    ns.add_unit(
        "pgsql-state@.service.d/debug.conf",
        "[Service]\nEnvironment=PGSQL_STATE_LOG=debug\n",
    );
    ns.systemctl(&[
        "start",
        "pgsql-state.socket",
        "pgsql-state-peer.socket",
        "pgsql-state-peer.service",
        "pgsql-state-reconcile.timer",
    ]);
    let check = SocketAddr::new(NODE.into(), 5431);

    // The peer: READY=1 took it to active (running); the watchdog is fed.
    assert_eq!(
        (
            ns.property("pgsql-state-peer.service", "ActiveState"),
            ns.property("pgsql-state-peer.service", "SubState")
        ),
        ("active".to_string(), "running".to_string())
    );
    let fed = |ns: &SystemdNs| {
        ns.property("pgsql-state-peer.service", "WatchdogTimestampMonotonic")
            .parse::<u64>()
            .unwrap_or(0)
    };
    let first = fed(&ns);
    wait_until(Duration::from_secs(10), "a later watchdog ping", || {
        fed(&ns) > first
    });
    std::thread::sleep(Duration::from_secs(5)); // 2.5 watchdog periods, to see it is not killed
    assert_eq!(ns.property("pgsql-state-peer.service", "NRestarts"), "0");
    assert_eq!(
        ns.property("pgsql-state-peer.service", "SubState"),
        "running"
    );
    eprintln!(
        "peer: active (running) by READY=1, watchdog fed, no restart after 5 s at WatchdogSec=2s"
    );

    // The timer runs the reconciler; strict fencing says production once
    // the new primary has waited out W.
    let start = Instant::now();
    loop {
        let (w, _) = word(&ns, HONEST, check, Duration::from_secs(5));
        if w == "production" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "5431 says {w:?}, not production, after 90 s.\ntimer: {}\nreconciler:\n{}\nresponder:\n{}",
            String::from_utf8_lossy(&ns.systemctl_output(&["status", "pgsql-state-reconcile.timer"]).stdout),
            ns.journal("pgsql-state-reconcile.service"),
            ns.journal("pgsql-state@*.service")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        client(&ns, "ncat", &["--recv-only", "127.0.0.2", "5431"]),
        "production\n"
    );
    assert_eq!(client(&ns, "nc", &["127.0.0.2", "5431"]), "production\n");
    let journal = ns.journal("pgsql-state-reconcile.service");
    let started = journal
        .lines()
        .filter(|l| l.starts_with("Starting "))
        .count();
    let finished = journal
        .lines()
        .filter(|l| l.starts_with("Finished "))
        .count();
    let decisions = journal
        .lines()
        .filter(|l| l.contains("node_1: production (") || l.contains("node_1: fenced ("))
        .count();
    // A run that waits out a lease decides again in the same process when
    // the wait ends: one more decision line, and it says so first.
    let reruns = journal
        .lines()
        .filter(|l| l.contains("node_1: deciding again when the wait ends"))
        .count();
    assert!(finished >= 3, "the timer ran {finished} times:\n{journal}");
    assert!(
        finished <= decisions && decisions <= started + reruns,
        "{started} starts, {finished} runs finished, {decisions} decision lines:\n{journal}"
    );
    eprintln!("timer: {finished} reconcile runs finished, {decisions} decision lines");

    // Hardening: the peer runs as postgres, and its sandbox writes only
    // its StateDirectory (and its private /tmp).
    let pid = ns.property("pgsql-state-peer.service", "MainPID");
    let status = ns.ok(ns.cmd("cat").arg(format!("/proc/{pid}/status")));
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("a Uid line")
        .to_string();
    let postgres_uid = common::systemd::postgres_ids().0.to_string();
    assert_eq!(uid, postgres_uid, "the peer's uid");
    for (path, writable) in [
        ("/var/lib/pgsql-state/probe", true),
        ("/tmp/probe", true),
        ("/etc/pgsql-state-probe", false),
        ("/usr/local/pgsql-state-probe", false),
        ("/run/pgsql-state/probe", false),
        (&format!("{}/probe", data.display()), false),
        (&format!("{}/probe", ns.dir.display()), false),
    ] {
        assert_eq!(
            can_write(&ns, &pid, path),
            writable,
            "peer writing {path}; its mounts:\n{}",
            ns.ok(ns.cmd("cat").arg(format!("/proc/{pid}/mountinfo")))
        );
    }
    // The per-connection responder builds no mount namespace (it costs
    // about 25 ms a check) and installs no seccomp filter at exec (about
    // 0.3 ms each): it confines itself with Landlock and filters its own
    // system calls, and the unit's options must leave it the calls to do so.
    let responders = ns.journal("pgsql-state@*.service");
    let confined = responders
        .lines()
        .filter(|l| {
            l.contains("sandbox: Landlock fully enforced") && l.contains("; system calls filtered")
        })
        .count();
    assert!(
        confined >= 2
            && !responders.contains("not confined")
            && !responders.contains("not filtered"),
        "the responders' sandbox, per their journal:\n{responders}"
    );
    // The reconciler (a oneshot) ran as postgres: it wrote the verdict.
    let owner = ns.ok(ns
        .cmd("stat")
        .args(["-c", "%u", "/run/pgsql-state/verdict"]));
    assert_eq!(owner.trim(), postgres_uid, "the verdict's owner");
    eprintln!(
        "hardening: peer uid {uid} (postgres); writes only its StateDirectory and private /tmp; {confined} responders confined by Landlock and their own seccomp filters"
    );

    flood_the_shipped_socket(&ns, check);
    flood_with_the_allow_list(&ns, &cfg);
    flood_the_long_lived_responder(&ns, &cfg);
    flood_systemds_defaults(&ns, &cfg);
}

/// The flood: 2,000 connections/s for 10 s from 127.0.0.66 at the shipped
/// socket (`check`). It stays active and never gives a wrong word; while
/// PID 1 cannot keep up, honest checks may get none in time.
fn flood_the_shipped_socket(ns: &SystemdNs, check: SocketAddr) {
    // What PID 1 took off the socket: connections it started a responder
    // for, and connections it refused (over MaxConnections).
    let taken = |ns: &SystemdNs| -> u64 {
        ["NAccepted", "NRefused"]
            .iter()
            .map(|p| {
                ns.property("pgsql-state.socket", p)
                    .trim()
                    .parse::<u64>()
                    .unwrap_or_else(|_| panic!("{p} is not a number"))
            })
            .sum()
    };
    let taken_before = taken(ns);
    let f = flood(ns, check, 2000, 10);
    let state = ns.property("pgsql-state.socket", "ActiveState");
    let taken_during = taken(ns) - taken_before;
    eprintln!(
        "socket counters: NAccepted {} NConnections {} NRefused {}",
        ns.property("pgsql-state.socket", "NAccepted"),
        ns.property("pgsql-state.socket", "NConnections"),
        ns.property("pgsql-state.socket", "NRefused")
    );
    // The flood must have reached PID 1 for the rest to mean anything: it
    // took (accepted or refused) far more than 1,000 of its connections.
    assert!(
        taken_during >= 1_000,
        "the flood barely reached the socket ({taken_during} taken of {} sent): {f:?}",
        f.sent
    );
    eprintln!("flood on the shipped socket: {f:?}, socket {state}");
    assert_eq!(state, "active", "the shipped socket after the flood: {f:?}");
    assert!(f.honest.len() == 10, "{f:?}");
    // While PID 1 cannot keep up, an honest check may get no word in time
    // (HAProxy counts it failed), but never a wrong one.
    for (w, _) in &f.honest {
        assert!(
            w == "production" || no_word(w),
            "an honest check during the flood: {f:?}"
        );
    }
    let (after, took) = word(ns, HONEST, check, Duration::from_secs(10));
    assert_eq!(after, "production", "a check after the flood");
    eprintln!(
        "honest checks during the flood: {} of {} answered within {CHECK_TIMEOUT:?}; after it: {after} in {took:?}",
        answered_in_time(&f),
        f.honest.len()
    );
}

/// The same flood at the shipped socket with the shipped allow-list
/// drop-in naming the honest address: the kernel drops the stranger's
/// packets, and every honest check during the flood is answered in time.
fn flood_with_the_allow_list(ns: &SystemdNs, cfg: &Path) {
    let allow = std::fs::read_to_string(repo("units/pgsql-state.socket.d/allow-haproxy.conf"))
        .expect("read the allow-list drop-in");
    assert!(allow.contains("IPAddressDeny=any"), "{allow}");
    let allow: String = allow
        .lines()
        .map(|l| {
            if l.starts_with("IPAddressAllow=") {
                format!("IPAddressAllow={HONEST}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let shipped = shipped_unit(ns, "pgsql-state.socket", cfg);
    ns.add_unit("allowed.socket", &with_port(&shipped, 5442));
    ns.add_unit("allowed.socket.d/allow-haproxy.conf", &allow);
    ns.add_unit(
        "allowed@.service",
        &shipped_unit(ns, "pgsql-state@.service", cfg),
    );
    ns.systemctl(&["start", "allowed.socket"]);
    let allowed = SocketAddr::new(NODE.into(), 5442);
    let f = flood(ns, allowed, 2000, 10);
    let state = ns.property("allowed.socket", "ActiveState");
    eprintln!(
        "flood on the allow-listed socket: {f:?}, socket {state}, NAccepted {}",
        ns.property("allowed.socket", "NAccepted")
    );
    assert_eq!(state, "active");
    assert_eq!((f.answered, f.empty), (0, 0), "the stranger got in: {f:?}");
    assert_eq!(
        answered_in_time(&f),
        f.honest.len(),
        "an honest check during the flood at the allow-listed socket: {f:?}"
    );
}

/// The same flood at the long-lived responder (Accept=no), which accepts
/// in its own process and caps connections per source there.
fn flood_the_long_lived_responder(ns: &SystemdNs, cfg: &Path) {
    let socket = shipped_unit(ns, "pgsql-state-responder.socket", cfg)
        .replace("pgsql-state-responder.service", "longlived.service");
    let socket: Vec<&str> = socket
        .lines()
        .filter(|l| !l.starts_with("Conflicts="))
        .collect();
    ns.add_unit("longlived.socket", &with_port(&socket.join("\n"), 5443));
    ns.add_unit(
        "longlived.service",
        &shipped_unit(ns, "pgsql-state-responder.service", cfg)
            .replace("pgsql-state-responder.socket", "longlived.socket"),
    );
    ns.systemctl(&["start", "longlived.socket"]);
    let longlived = SocketAddr::new(NODE.into(), 5443);
    assert_eq!(
        word(ns, HONEST, longlived, Duration::from_secs(10)).0,
        "production"
    );
    let f = flood(ns, longlived, 2000, 10);
    let state = ns.property("longlived.service", "ActiveState");
    eprintln!("flood on the long-lived responder: {f:?}, service {state}");
    assert_eq!(state, "active");
    assert_eq!(
        answered_in_time(&f),
        f.honest.len(),
        "an honest check during the flood at the long-lived responder: {f:?}"
    );
}

/// The anchor: the same flood at a socket with systemd 252's defaults.
fn flood_systemds_defaults(ns: &SystemdNs, cfg: &Path) {
    let shipped = shipped_unit(ns, "pgsql-state.socket", cfg);
    ns.add_unit("anchor.socket", &with_default_limits(&shipped, 5441));
    ns.add_unit(
        "anchor@.service",
        &shipped_unit(ns, "pgsql-state@.service", cfg),
    );
    ns.systemctl(&["start", "anchor.socket"]);
    let anchor = SocketAddr::new(NODE.into(), 5441);
    assert_eq!(
        word(ns, HONEST, anchor, Duration::from_secs(10)).0,
        "production"
    );
    let f = flood(ns, anchor, 2000, 10);
    let (state, result) = (
        ns.property("anchor.socket", "ActiveState"),
        ns.property("anchor.socket", "Result"),
    );
    eprintln!("flood on systemd's default limits: {f:?}, socket {state} ({result})");
    assert_eq!(
        (state.as_str(), result.as_str()),
        ("failed", "trigger-limit-hit")
    );
}

/// Issue 17, item 2: the config is the one place the reconcile interval is
/// kept. The shipped generator (`units/pgsql-state.generator`) runs at boot
/// and at each `daemon-reload`; with no interval drop-in of the user's, the
/// shipped timer runs every watchDog: 15 s from the first config, 2 s after
/// the config says `watchDog: 2` and systemd reloads, and the reconciler's
/// runs then come every 2 s and confirm the primary.
#[test]
fn the_generator_runs_the_reconciler_every_watchdog() {
    // A panic in the other test poisons the lock; the order still holds.
    let _one = ONE_SYSTEMD_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // The data directory's path is known only after boot: boot with a
    // config of the default watchDog, then change it as an operator would.
    let ns =
        SystemdNs::boot_with_generator("generator", &config(Path::new("/nonexistent/pg-node_1")));
    let timer = "pgsql-state-reconcile.timer";
    let interval = |ns: &SystemdNs| ns.systemctl(&["show", "-P", "TimersMonotonic", timer]);
    let cfg = ns.dir.join("pgsql-state.yml");
    for unit in [
        "pgsql-state-peer.socket",
        "pgsql-state-peer.service",
        "pgsql-state-reconcile.service",
        timer,
    ] {
        ns.add_unit(unit, &shipped_unit(&ns, unit, &cfg));
    }
    let at_boot = interval(&ns);
    assert!(
        at_boot.contains("OnUnitActiveUSec=15s"),
        "the timer at boot, from watchDog 15: {at_boot}"
    );
    let dropin = ns
        .cmd("cat")
        .arg("/run/systemd/generator/pgsql-state-reconcile.timer.d/50-pgsql-state-watchdog.conf")
        .output()
        .expect("cat");
    let dropin = String::from_utf8_lossy(&dropin.stdout).into_owned();
    assert!(dropin.contains("OnUnitActiveSec=15000ms"), "{dropin}");

    let data = ns.postgres("node_1", NODE);
    std::fs::write(
        &cfg,
        config(&data).replace("  watchDog: 15\n", "  watchDog: 2\n"),
    )
    .expect("write the config");
    install_directories_and_record(&ns, &cfg);
    ns.add_unit(
        "pgsql-state-reconcile.service.d/hba.conf",
        &format!("[Service]\nReadWritePaths={}\n", data.display()),
    );
    ns.systemctl(&["daemon-reload"]);
    let reloaded = interval(&ns);
    assert!(
        reloaded.contains("OnUnitActiveUSec=2s") && !reloaded.contains("OnUnitActiveUSec=15s"),
        "the timer after watchDog 2 and a daemon-reload: {reloaded}"
    );
    ns.systemctl(&[
        "start",
        "pgsql-state-peer.socket",
        "pgsql-state-peer.service",
        timer,
    ]);
    // Runs every 2 s: at least 5 finished within 20 s of the first (every
    // 15 s would be 2), and a confirming verdict.
    let finished = |ns: &SystemdNs| {
        ns.journal("pgsql-state-reconcile.service")
            .lines()
            .filter(|l| l.starts_with("Finished "))
            .count()
    };
    let first_run = Instant::now();
    while finished(&ns) < 1 {
        assert!(
            first_run.elapsed() < Duration::from_secs(30),
            "no reconcile run finished in 30 s:\n{}\n{}",
            ns.journal("pgsql-state-reconcile.service"),
            ns.journal("pgsql-state-peer.service")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let first = Instant::now();
    wait_until(Duration::from_secs(40), "five reconcile runs", || {
        finished(&ns) >= 6
    });
    let took = first.elapsed();
    let journal = ns.journal("pgsql-state-reconcile.service");
    assert!(
        took < Duration::from_secs(20),
        "five runs took {took:?} (every 15 s would be 75 s):\n{journal}"
    );
    // A confirming verdict (a new primary may first sit out W).
    let verdict = |ns: &SystemdNs| {
        let out = ns
            .cmd("cat")
            .arg("/run/pgsql-state/verdict")
            .output()
            .expect("cat the verdict");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let confirmed = Instant::now();
    while !verdict(&ns).contains("verdict=production\n") {
        assert!(
            confirmed.elapsed() < Duration::from_secs(60),
            "no confirming verdict in 60 s:\n{}\n{}",
            verdict(&ns),
            ns.journal("pgsql-state-reconcile.service")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let journal = ns.journal("pgsql-state-reconcile.service");
    assert!(
        !journal.contains("more than watchDog"),
        "a run came late:\n{journal}"
    );
    eprintln!(
        "generator: watchDog 15 -> {at_boot:?}; watchDog 2 -> {reloaded:?}; 5 runs in {took:?}"
    );

    doctor_finds_each_broken_piece(&ns, &cfg, &data);
}

/// `pgsql-state doctor` inside the namespaces, as root (as an operator
/// runs it, with sudo): the exit code and report.
fn doctor(ns: &SystemdNs, cfg: &Path, extra: &[&str]) -> (i32, String) {
    let out = ns
        .cmd(ns.binary().to_str().expect("utf-8"))
        .arg("-f")
        .arg(cfg)
        .arg("doctor")
        .args(extra)
        .output()
        .expect("run doctor");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The report's line about `what`.
fn finding<'a>(report: &'a str, what: &str) -> &'a str {
    report
        .lines()
        .find(|l| {
            l.get(6..)
                .is_some_and(|rest| rest.starts_with(&format!("{what}:")))
        })
        .unwrap_or_else(|| panic!("no {what} line in:\n{report}"))
}

/// Issue 17, item 3: `doctor` on a node installed as the units run it
/// says every piece holds; each piece broken on purpose gives its FAIL line
/// with the fix, and exit 1; mended, ok again.
fn doctor_finds_each_broken_piece(ns: &SystemdNs, cfg: &Path, data: &Path) {
    let (code, report) = doctor(ns, cfg, &[]);
    eprintln!("doctor on the installed node:\n{report}");
    assert_eq!(code, 0, "{report}");
    for what in [
        "config",
        "claim record",
        "runtime directory",
        "state directory",
        "reconciler's write paths",
        "reconcile timer",
        "Postgres role",
        "peer",
    ] {
        assert!(
            finding(&report, what).starts_with("ok  "),
            "{what}: {report}"
        );
    }
    assert!(
        finding(&report, "reconcile timer").contains("every 2 s (watchDog 2 s)"),
        "{report}"
    );
    // The price of this node's timing, from its own config: its lease first.
    assert!(
        finding(&report, "timing")
            .contains("lease L 5.0 s (2 × watchDog 2.0 s + connectionDeadline 1.0 s)"),
        "{report}"
    );
    assert!(!report.contains("FAIL"), "{report}");
    // The kernel's sandbox support is reported, whatever it is.
    for what in ["Landlock", "seccomp"] {
        let line = finding(&report, what);
        assert!(
            line.starts_with("ok  ") || line.starts_with("warn"),
            "{line}"
        );
    }

    // Broken one at a time: the finding must say FAIL, what, and the fix.
    let broken = |what: &str, says: &str, extra: &[&str], cfg: &Path| {
        let (code, report) = doctor(ns, cfg, extra);
        let line = finding(&report, what).to_string();
        assert_eq!(code, 1, "{what} broken, yet exit {code}:\n{report}");
        assert!(
            line.starts_with("FAIL") && line.contains(says) && line.contains("; fix: "),
            "{what} broken: {line}"
        );
        eprintln!("broken {what}: {line}");
    };
    // A timer slower than watchDog (a hand-written drop-in).
    ns.add_unit(
        "pgsql-state-reconcile.timer.d/slow.conf",
        "[Timer]\nOnUnitActiveSec=\nOnActiveSec=1s\nOnUnitActiveSec=30s\n",
    );
    ns.systemctl(&["daemon-reload"]);
    broken(
        "reconcile timer",
        "every 30 s, slower than watchDog (2 s)",
        &[],
        cfg,
    );
    std::fs::remove_file(ns.units.join("pgsql-state-reconcile.timer.d/slow.conf"))
        .expect("remove the drop-in");
    // hbaConfig outside the reconciler's write paths.
    let hba_dropin = ns.units.join("pgsql-state-reconcile.service.d/hba.conf");
    let hba_text = std::fs::read_to_string(&hba_dropin).expect("read the drop-in");
    std::fs::remove_file(&hba_dropin).expect("remove the drop-in");
    ns.systemctl(&["daemon-reload"]);
    broken(
        "reconciler's write paths",
        "is not under ReadWritePaths",
        &[],
        cfg,
    );
    std::fs::write(&hba_dropin, hba_text).expect("restore the drop-in");
    ns.systemctl(&["daemon-reload"]);
    // No claim record.
    let record = "/var/lib/pgsql-state/claims";
    ns.ok(ns
        .cmd("mv")
        .args([record, "/var/lib/pgsql-state/claims.away"]));
    broken("claim record", "/var/lib/pgsql-state", &[], cfg);
    ns.ok(ns
        .cmd("mv")
        .args(["/var/lib/pgsql-state/claims.away", record]));
    // The runtime directory owned by root.
    ns.ok(ns.cmd("chown").args(["root:root", "/run/pgsql-state"]));
    broken("runtime directory", "not postgres", &[], cfg);
    ns.ok(ns
        .cmd("chown")
        .args(["postgres:postgres", "/run/pgsql-state"]));
    // HAProxy's config given: its server-state file missing.
    let haproxy_cfg = ns.dir.join("haproxy.cfg");
    std::fs::copy(repo("haproxy/haproxy.cfg"), &haproxy_cfg).expect("copy haproxy.cfg");
    let haproxy_cfg = haproxy_cfg.to_str().expect("utf-8");
    let haproxy_arg = ["--haproxy", haproxy_cfg];
    broken("server-state file", "does not exist", &haproxy_arg, cfg);
    ns.ok(ns.cmd("mkdir").args(["-p", "/var/lib/haproxy"]));
    ns.ok(ns
        .cmd(ns.binary().to_str().expect("utf-8"))
        .args(["haproxy-state", haproxy_cfg]));
    // A Postgres role that cannot read the WAL receiver, with maxLagBytes;
    // and a neighbour whose peer does not answer.
    ns.ok(ns
        .cmd("runuser")
        .args(["-u", "postgres", "--"])
        .arg(pg_bin("psql"))
        .arg("-h")
        .arg(format!("{}.s", data.display()))
        .args(["-d", "postgres", "-c", "CREATE ROLE weak LOGIN"]));
    let weak = ns.dir.join("weak.yml");
    let text = std::fs::read_to_string(cfg).expect("read the config");
    let weak_text = text
        .replace("user=postgres dbname", "user=weak dbname")
        .replace(
            "  checkTimeout: 1\n",
            "  checkTimeout: 1\n  maxLagBytes: 1000000\n",
        )
        .replace(
            "neighbours: []",
            "neighbours: [\"127.0.0.9:10000\", \"127.0.0.9:10099\"]",
        );
    assert_ne!(weak_text, text);
    std::fs::write(&weak, weak_text).expect("write the weak config");
    let (code, report) = doctor(ns, &weak, &haproxy_arg);
    eprintln!("doctor with a weak role and a silent neighbour:\n{report}");
    assert_eq!(code, 1, "{report}");
    let role = finding(&report, "Postgres role");
    assert!(
        role.starts_with("FAIL")
            && role.contains("weak cannot read pg_stat_wal_receiver")
            && role.contains("GRANT pg_read_all_stats TO weak"),
        "{report}"
    );
    // 127.0.0.9:10000 is this node's own peer (it listens on every
    // address); nothing listens on 10099.
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("FAIL  peer: 127.0.0.9:10000 answers as node_1 itself")),
        "{report}"
    );
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("FAIL  peer: 127.0.0.9:10099")),
        "{report}"
    );
    assert!(
        finding(&report, "server-state file").starts_with("ok  "),
        "{report}"
    );
    assert!(
        finding(&report, "haproxy.check").starts_with("ok  "),
        "{report}"
    );
    // An invalid config: one FAIL line, exit 1.
    let bad = ns.dir.join("bad.yml");
    std::fs::write(&bad, text.replace("  watchDog: 2\n", "  watchDog: soon\n")).expect("write");
    broken("config", "harepd.watchDog", &[], &bad);
    // Mended: all holds again.
    let (code, report) = doctor(ns, cfg, &haproxy_arg);
    assert_eq!(code, 0, "mended:\n{report}");
}

/// The lines of the first fenced code block of README section `heading`
/// (its `## ` line) that contains `marker`, comments and blank lines
/// dropped.
fn readme_commands(heading: &str, marker: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repo("README.md")).expect("read README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("README has no section {heading:?}"));
    let block = section
        .split("```")
        .skip(1)
        .step_by(2)
        .find(|b| b.contains(marker))
        .unwrap_or_else(|| panic!("README's {heading:?} has no code block with {marker:?}"));
    block
        .lines()
        .skip(1) // the fence's language
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// `sh -c LINE` inside the namespaces, as root, from `cwd`: panics with
/// its output when it fails; returns stdout and stderr.
fn run_line(ns: &SystemdNs, cwd: &Path, line: &str) -> String {
    let out = ns
        .cmd("sh")
        .arg("-c")
        .arg(format!("cd {} && {line}", cwd.display()))
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .expect("run sh");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`{line}` failed ({}):\n{text}",
        out.status
    );
    text
}

/// A file inside the namespaces (the overlays hide it from the host).
fn read_inside(ns: &SystemdNs, path: &str) -> Option<String> {
    let out = ns.cmd("cat").arg(path).output().expect("run cat");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Debian's layout of a PostgreSQL cluster, as `postgresql-15` makes it:
/// data in /var/lib/postgresql/MAJOR/main, pg_hba.conf in
/// /etc/postgresql/MAJOR/main (the shipped hbaConfig, under the
/// reconciler's shipped write path), the socket in /var/run/postgresql,
/// run as a unit. The overlays keep the host's own cluster untouched.
fn debian_postgres(ns: &SystemdNs, addr: Ipv4Addr) -> String {
    let bindir = pg_bindir();
    let major = bindir
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|m| m.to_str())
        .expect("/usr/lib/postgresql/MAJOR/bin")
        .to_string();
    let data = format!("/var/lib/postgresql/{major}/main");
    let etc = format!("/etc/postgresql/{major}/main");
    let script = format!(
        "set -e; rm -rf {data} {etc}; mkdir -p {data} {etc} /run/postgresql; \
         chown postgres:postgres {data} {etc} /run/postgresql /var/lib/postgresql /var/lib/postgresql/{major}; \
         chmod 700 {data}; \
         runuser -u postgres -- {initdb} -U postgres --auth=trust -N -E UTF8 --locale=C -D {data} >/dev/null; \
         mv {data}/pg_hba.conf {etc}/pg_hba.conf; \
         printf \"listen_addresses = '{addr}'\\nunix_socket_directories = '/var/run/postgresql'\\nhba_file = '{etc}/pg_hba.conf'\\nfsync = off\\n\" >> {data}/postgresql.conf",
        initdb = bindir.join("initdb").display(),
    );
    run_line(ns, Path::new("/"), &script);
    ns.add_unit(
        "postgresql.service",
        &format!(
            "[Unit]\nDescription=PostgreSQL {major}/main\n[Service]\nType=notify\nUser=postgres\n\
             ExecStart={} -D {data}\nKillMode=mixed\nKillSignal=SIGINT\nTimeoutStopSec=10s\n",
            bindir.join("postgres").display(),
        ),
    );
    ns.systemctl(&["start", "postgresql.service"]);
    data
}

/// Issue 17: the Debian package installed in a real systemd, following the
/// README word for word. Its install line (`sudo apt install ./target/…`)
/// and its enable lines run as written, in a namespace whose /usr, /etc
/// and /var are overlays over this machine's (the postinst's tmpfiles, the
/// generator and the conffile are the package's own). The only edit is the
/// one every operator makes, to the installed conffile: this node's
/// address and `watchDog: 2`, no interval drop-in. Then the timer runs
/// every 2 s (the generator), a run confirms the primary, 5431 says
/// `production`, `doctor` finds nothing to fix, and a purge removes the
/// runtime directory and keeps the claim record.
#[test]
fn the_debian_package_installed_as_the_readme_says() {
    let _one = ONE_SYSTEMD_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for tool in ["apt", "dpkg", "sudo", "nc"] {
        require_tool(tool);
    }
    let ns = SystemdNs::boot_for_package("package");
    let install = readme_commands("Installing from the Debian package", "apt install");
    let apt_line = install
        .iter()
        .find(|l| l.starts_with("sudo apt install "))
        .expect("README's `sudo apt install` line");
    let named = apt_line.rsplit(' ').next().expect("the package's path");
    let deb = debian_package(&ns.dir.join(Path::new(named).parent().expect("a directory")));
    assert_eq!(
        deb.file_name(),
        Path::new(named).file_name(),
        "README installs {named}, the build made {}",
        deb.display()
    );
    let installed = run_line(&ns, &ns.dir, apt_line);
    eprintln!("{apt_line}:\n{installed}");
    let units = ns.link_installed_units("pgsql-state");
    for unit in [
        "pgsql-state.socket",
        "pgsql-state@.service",
        "pgsql-state-peer.socket",
        "pgsql-state-reconcile.timer",
        "pgsql-state-reconcile.path",
    ] {
        assert!(
            units.iter().any(|u| u == unit),
            "{unit} not installed: {units:?}"
        );
    }
    // The postinst made the directories, owned by postgres.
    for dir in ["/run/pgsql-state", "/var/lib/pgsql-state"] {
        let owner = run_line(&ns, Path::new("/"), &format!("stat -c %U {dir}"));
        assert_eq!(owner.trim(), "postgres", "{dir} after install");
    }

    // The operator's part: a cluster, and the installed conffile edited.
    debian_postgres(&ns, NODE);
    let shipped = read_inside(&ns, "/etc/pgsql-state/pgsql-state.yml").expect("the conffile");
    let mut edited = shipped.clone();
    for (from, to) in [
        (
            "  primaryIP: \"10.21.57.61\"",
            format!("  primaryIP: \"{NODE}\""),
        ),
        (
            "      - \"10.21.57.65\"",
            "      - \"127.0.0.4\"".to_string(),
        ),
        (
            "    bindAddress: \"10.21.57.61\"",
            format!("    bindAddress: \"{NODE}\""),
        ),
        (
            "    neighbours:\n      - \"10.21.57.62:10000\"",
            "    neighbours: []".to_string(),
        ),
        ("    witness: \"10.21.57.63:10000\"\n", String::new()),
        (
            "    connectionDeadline: 5 ",
            "    connectionDeadline: 1 ".to_string(),
        ),
        ("  watchDog: 15\n", "  watchDog: 2\n".to_string()),
    ] {
        assert!(edited.contains(from), "the shipped config has no {from:?}");
        edited = edited.replacen(from, &to, 1);
    }
    std::fs::write(ns.dir.join("pgsql-state.yml"), &edited).expect("write the edit");
    run_line(
        &ns,
        &ns.dir,
        "cp pgsql-state.yml /etc/pgsql-state/pgsql-state.yml && pgsql-state check-config",
    );

    // The README's steps, as written.
    let steps = readme_commands("Running the responder", "claims init");
    assert!(steps.len() >= 4, "{steps:?}");
    for step in &steps {
        let said = run_line(&ns, &ns.dir, step);
        eprintln!("{step}\n{said}");
    }
    let timer = "pgsql-state-reconcile.timer";
    let interval = ns.property(timer, "TimersMonotonic");
    assert!(
        interval.contains("OnUnitActiveUSec=2s") && !interval.contains("OnUnitActiveUSec=15s"),
        "the installed timer with watchDog 2: {interval}"
    );
    assert!(
        read_inside(
            &ns,
            "/etc/systemd/system/pgsql-state-reconcile.timer.d/override.conf"
        )
        .is_none(),
        "a hand-written interval drop-in"
    );
    let verdict_at = Instant::now();
    while !read_inside(&ns, "/run/pgsql-state/verdict")
        .is_some_and(|v| v.contains("verdict=production\n"))
    {
        assert!(
            verdict_at.elapsed() < Duration::from_secs(60),
            "no confirming verdict in 60 s:\n{:?}\n{}\n{}",
            read_inside(&ns, "/run/pgsql-state/verdict"),
            ns.journal("pgsql-state-reconcile.service"),
            ns.journal("pgsql-state-peer.service")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let finished = ns
        .journal("pgsql-state-reconcile.service")
        .lines()
        .filter(|l| l.starts_with("Finished "))
        .count();
    assert!(finished >= 1, "no run finished");
    let word_at = Instant::now();
    let mut word = String::new();
    while word != "production\n" {
        assert!(
            word_at.elapsed() < Duration::from_secs(30),
            "5431 said {word:?}, not production"
        );
        word = run_line(
            &ns,
            Path::new("/"),
            &format!("nc -w 3 {NODE} 5431 </dev/null"),
        );
    }
    let doctor = run_line(&ns, Path::new("/"), "sudo pgsql-state doctor");
    eprintln!("sudo pgsql-state doctor:\n{doctor}");
    assert!(!doctor.contains("FAIL"), "{doctor}");
    assert!(doctor.contains("every 2 s (watchDog 2 s)"), "{doctor}");

    // An upgrade (the same package again) try-restarts the running peer:
    // no old binary keeps running. This machine may be a container image
    // whose /usr/sbin/policy-rc.d forbids every service action to
    // maintainer scripts (Docker's does; a real host has none): it goes,
    // inside the namespace's /usr overlay only.
    let host_policy = Path::new("/usr/sbin/policy-rc.d").exists();
    run_line(&ns, Path::new("/"), "rm -f /usr/sbin/policy-rc.d");
    assert_eq!(
        Path::new("/usr/sbin/policy-rc.d").exists(),
        host_policy,
        "the host's policy-rc.d was touched"
    );
    let peer = "pgsql-state-peer.service";
    let pid_before = ns.property(peer, "MainPID");
    assert!(pid_before != "0", "the peer is not running: {pid_before}");
    let upgraded = run_line(&ns, &ns.dir, &format!("dpkg -i {named}"));
    eprintln!("dpkg -i {named}:\n{upgraded}");
    let pid_after = ns.property(peer, "MainPID");
    assert!(
        pid_after != pid_before && pid_after != "0",
        "the peer was not restarted by the upgrade: {pid_before} then {pid_after}"
    );
    // Remove, with every unit still enabled and running: the prerm stops
    // them, so no socket, timer or path unit is left to start a binary
    // that is gone.
    run_line(&ns, Path::new("/"), "dpkg --remove pgsql-state");
    for unit in [
        "pgsql-state.socket",
        "pgsql-state-peer.socket",
        "pgsql-state-peer.service",
        "pgsql-state-reconcile.timer",
        "pgsql-state-reconcile.path",
    ] {
        let state = ns.property(unit, "ActiveState");
        assert!(
            state == "inactive" || state.is_empty(),
            "{unit} is still {state} after the package was removed"
        );
    }
    // Purge: the runtime directory goes, the claim record stays.
    run_line(
        &ns,
        Path::new("/"),
        "systemctl disable pgsql-state.socket pgsql-state-peer.socket \
         pgsql-state-reconcile.timer pgsql-state-reconcile.path 2>&1 || true; \
         dpkg --purge pgsql-state",
    );
    assert!(
        read_inside(&ns, "/run/pgsql-state/verdict").is_none(),
        "verdict kept"
    );
    assert!(
        !run_line(&ns, Path::new("/"), "ls -d /run/pgsql-state 2>&1 || true")
            .starts_with("/run/pgsql-state"),
        "/run/pgsql-state kept after purge"
    );
    assert!(
        read_inside(&ns, "/var/lib/pgsql-state/claims").is_some(),
        "the claim record was removed by the purge"
    );
    assert!(
        read_inside(&ns, "/etc/pgsql-state/pgsql-state.yml").is_none(),
        "the conffile survived a purge"
    );
    // The postrm reloaded systemd: the removed units are gone from it too.
    for unit in units.iter().filter(|u| !u.contains('@')) {
        assert_eq!(
            ns.property(unit, "LoadState"),
            "not-found",
            "{unit} still loaded after the purge"
        );
    }
    eprintln!(
        "installed, confirmed in {:?} after the README's steps; purged",
        verdict_at.elapsed()
    );
}
