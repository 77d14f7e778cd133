//! A randomized fault soak, a small Jepsen of our own, over the repmgr
//! scene (three data nodes, the witness, repmgrd on every data node, the
//! shipped HAProxy config observed every 100 ms).
//!
//! A seeded schedule injects one fault at a time, holds it, heals it:
//! kill -9 or SIGSTOP/SIGCONT of any postmaster or peer, a stopped
//! reconciler, node_1 cut from the other voters (its network namespace),
//! `pg_ctl restart` of any node, HAProxy stopped or reloaded, and the
//! primary's machine lost until repmgrd promotes a standby (its own
//! election, `promote-check` deciding), then booted again as the old
//! primary and rejoined as a standby of the new one (`repmgr node rejoin
//! --force-rewind`), as an operator does.
//!
//! Checked over the whole run:
//! - never two servers UP in `prod` at any sample;
//! - no write accepted by a node when `prod` did not hold it (no sample
//!   from 300 ms before the write started to 100 ms after showed it UP);
//! - the cluster converges after the last fault: `prod` holds the
//!   legitimate primary (the running primary on the highest timeline);
//! - acknowledged writes missing on the final primary are counted (lost
//!   to asynchronous replication or to a primary that was replaced: the
//!   `synchronous_commit` setting is the user's).
//!
//! On a failure it prints the seed, the faults and what `prod` held, so
//! the run can be replayed: `SOAK_SEED=<seed> cargo test --test soak
//! soak_with_a_random_seed -- --nocapture`. `SOAK_SECS` sets the length (default 45 s per
//! seed); the benchmark is `SOAK_SECS=1800`.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::repmgr::RepmgrScene;
use common::{pg_bin, wait_until};

/// A small seeded generator (xorshift64*): the schedule must replay from
/// its seed alone, on any machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Milliseconds in [lo, hi).
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// SIGSTOP a data node's postmaster, SIGCONT at the heal.
    HangPostmaster(usize),
    /// kill -9 a data node's postmaster; started again at the heal (a
    /// replaced primary comes back as an old one).
    KillPostmaster(usize),
    /// `pg_ctl restart -m fast` of a data node.
    RestartPostgres(usize),
    /// SIGSTOP a peer (3: the witness's), SIGCONT at the heal.
    HangPeer(usize),
    /// kill -9 a peer, started again at the heal.
    KillPeer(usize),
    /// A data node's reconciler stopped (its timer), started at the heal.
    StopReconciler(usize),
    /// node_1's peer and reconciler cut from the other voters.
    PartitionNode1,
    /// Every HAProxy process SIGSTOPped, SIGCONT at the heal.
    HangHaproxy,
    /// HAProxy reloaded as the shipped drop-in does.
    ReloadHaproxy,
    /// The primary's machine lost (its repmgrd, peer, responder,
    /// reconciler, and Postgres stopped at once), held until repmgrd
    /// promotes a standby (or 30 s). Healed: it boots again as it was (an
    /// old primary, fenced), then rejoins as a standby of the new primary
    /// (`repmgr node rejoin --force-rewind`), the other standby follows,
    /// and every repmgrd starts again. Resolved at injection to
    /// `LoseMachine(the primary)`.
    LosePrimaryMachine,
    /// Node `i`'s machine lost (see `LosePrimaryMachine`).
    LoseMachine(usize),
}

impl Fault {
    fn pick(rng: &mut Rng) -> Fault {
        let node = rng.below(3) as usize;
        match rng.below(10) {
            0 => Fault::HangPostmaster(node),
            1 => Fault::KillPostmaster(node),
            2 => Fault::RestartPostgres(node),
            3 => Fault::HangPeer(rng.below(4) as usize),
            4 => Fault::KillPeer(rng.below(4) as usize),
            5 => Fault::StopReconciler(node),
            6 => Fault::PartitionNode1,
            7 => Fault::HangHaproxy,
            8 => Fault::ReloadHaproxy,
            _ => Fault::LosePrimaryMachine,
        }
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a pid of a process this test started.
    unsafe { libc::kill(pid, sig) };
}

/// Starts node `i`'s Postgres after a kill -9, retrying while the old
/// postmaster's children let go of its shared memory.
fn start_again(s: &RepmgrScene, i: usize) {
    let node = &s.nodes[i];
    let start = Instant::now();
    loop {
        let ok = common::as_pg_user(&pg_bin("pg_ctl"))
            .args(["-w", "-t", "60", "-D"])
            .arg(&node.data_dir)
            .arg("-l")
            .arg(&node.log_file)
            .arg("start")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok || node.try_sql("SELECT 1").is_some() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} does not start again after kill -9",
            node.name
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Injects `fault`; returns it resolved (the machine lost named).
fn inject(s: &RepmgrScene, fault: Fault) -> Fault {
    let fault = match fault {
        Fault::LosePrimaryMachine => Fault::LoseMachine(legitimate(s).unwrap_or(0)),
        other => other,
    };
    match fault {
        Fault::HangPostmaster(i) => s.nodes[i].signal(libc::SIGSTOP),
        Fault::KillPostmaster(i) => s.nodes[i].signal(libc::SIGKILL),
        Fault::RestartPostgres(i) => s.nodes[i].restart(),
        Fault::HangPeer(i) => {
            if let Some(pid) = s.peer_pid(i) {
                signal(pid, libc::SIGSTOP);
            }
        }
        Fault::KillPeer(i) => s.set_peer_running(i, false),
        Fault::StopReconciler(i) => s.paused[i].store(true, std::sync::atomic::Ordering::SeqCst),
        Fault::PartitionNode1 => s.partition_node_1(true),
        Fault::HangHaproxy => {
            for pid in s.haproxy_pids() {
                signal(pid, libc::SIGSTOP);
            }
        }
        Fault::ReloadHaproxy => s.haproxy.reload(),
        Fault::LoseMachine(i) => s.lose_machine(i),
        Fault::LosePrimaryMachine => unreachable!("resolved above"),
    }
    fault
}

/// Heals a lost machine: it boots as it was, and every other node is made
/// (or kept) a standby of the primary, which is a standby repmgrd promoted
/// when there is one, or else the node itself.
fn boot_and_rejoin(s: &RepmgrScene, i: usize) {
    s.boot_machine(i);
    let primary = s
        .primaries()
        .into_iter()
        .filter(|&p| p != i)
        .max_by_key(|&p| timeline_of(s, p))
        .unwrap_or(i);
    for j in (0..3).filter(|&j| j != primary) {
        s.rejoin(j, primary);
    }
    s.restart_repmgrd(primary);
}

/// Whether node `p`'s repmgr metadata names it the primary (repmgr's
/// `standby promote` updates it after the promotion itself).
fn registered_primary(s: &RepmgrScene, p: usize) -> bool {
    s.nodes[p]
        .try_sql(&format!(
            "SELECT type FROM repmgr.nodes WHERE node_id = {}",
            p + 1
        ))
        .as_deref()
        == Some("primary")
}

/// The timeline of a primary (0 when it cannot be asked).
fn timeline_of(s: &RepmgrScene, i: usize) -> u32 {
    s.nodes[i]
        .try_sql(
            "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int",
        )
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}

/// Heals `fault`.
fn heal(s: &RepmgrScene, fault: Fault) {
    match fault {
        Fault::HangPostmaster(i) => s.nodes[i].signal(libc::SIGCONT),
        Fault::KillPostmaster(i) => start_again(s, i),
        Fault::HangPeer(i) => {
            if let Some(pid) = s.peer_pid(i) {
                signal(pid, libc::SIGCONT);
            }
        }
        Fault::KillPeer(i) => s.set_peer_running(i, true),
        Fault::StopReconciler(i) => s.paused[i].store(false, std::sync::atomic::Ordering::SeqCst),
        Fault::PartitionNode1 => s.partition_node_1(false),
        Fault::HangHaproxy => {
            for pid in s.haproxy_pids() {
                signal(pid, libc::SIGCONT);
            }
        }
        Fault::LoseMachine(i) => boot_and_rejoin(s, i),
        Fault::RestartPostgres(_) | Fault::ReloadHaproxy => {}
        Fault::LosePrimaryMachine => unreachable!("resolved at injection"),
    }
}

/// The running primary on the highest timeline: the one `prod` must hold
/// in the end.
fn legitimate(s: &RepmgrScene) -> Option<usize> {
    (0..3)
        .filter_map(|i| {
            let tl = s.nodes[i].try_sql(
                "SELECT CASE WHEN pg_is_in_recovery() THEN 0 ELSE \
                 ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END",
            )?;
            let tl: u32 = tl.parse().ok()?;
            (tl > 0).then_some((tl, i))
        })
        .max()
        .map(|(_, i)| i)
}

/// What one soak saw.
struct Figures {
    faults: usize,
    prod_samples: usize,
    writes: usize,
    acknowledged: usize,
    two_up: usize,
    after_out: Vec<String>,
    lost: usize,
    converged_after: f64,
    primaries_promoted: usize,
}

/// One soak at a time: two scenes of three nodes each at once are more
/// than a 2-core machine should carry beside the other test files.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn soak(seed: u64) {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(45);
    eprintln!("soak: seed {seed}, {secs} s (replay: SOAK_SEED={seed} SOAK_SECS={secs} cargo test --test soak soak_with_a_random_seed -- --nocapture)");
    let s = RepmgrScene::start(&format!("soak-{seed}"));
    let mut rng = Rng::new(seed);
    let mut timeline: Vec<String> = Vec::new();
    let begin = s.now();
    let mut faults = 0;
    while s.now() < begin + Duration::from_secs(secs) {
        let gap = rng.ms(300, 2_000);
        let fault = Fault::pick(&mut rng);
        let hold = rng.ms(300, 5_000);
        let from = s.now();
        wait_until(gap + Duration::from_secs(5), "the gap", || {
            s.now() >= from + gap
        });
        let at = s.now();
        let fault = inject(&s, fault);
        let held_from = s.now();
        let hold = match fault {
            // Until repmgrd has promoted another node (its promote_command
            // done: repmgr's metadata names it the primary), or 30 s.
            Fault::LoseMachine(i) => {
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(30)
                    && !s
                        .primaries()
                        .iter()
                        .any(|&p| p != i && registered_primary(&s, p))
                {
                    std::thread::sleep(Duration::from_millis(200));
                }
                s.now() - held_from
            }
            _ => {
                wait_until(hold + Duration::from_secs(5), "the hold", || {
                    s.now() >= held_from + hold
                });
                hold
            }
        };
        heal(&s, fault);
        faults += 1;
        timeline.push(format!(
            "{:8.2} s: {fault:?} held {:.1} s",
            at.as_secs_f64(),
            hold.as_secs_f64()
        ));
    }
    let last_fault = s.now();
    // Every reconciler runs, every peer runs: the cluster must converge.
    let report = |what: &str| {
        format!(
            "{what}\nseed {seed} (replay: SOAK_SEED={seed} SOAK_SECS={secs} cargo test --test soak \
             soak_with_a_random_seed)\nfaults:\n{}\nprod:\n{}",
            timeline.join("\n"),
            s.prod_trace(begin)
        )
    };
    let start = Instant::now();
    let legit = loop {
        if let Some(i) = legitimate(&s) {
            let name = s.nodes[i].name.clone();
            if s.haproxy.try_servers().is_some_and(|rows| {
                rows.iter()
                    .filter(|(px, _, st)| px == "prod" && st.starts_with("UP"))
                    .map(|(_, sv, _)| sv.as_str())
                    .eq([name.as_str()])
            }) {
                break i;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{}",
            report("the cluster did not converge within 90 s of the last fault")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let converged_after = start.elapsed().as_secs_f64();
    // A few more samples of the converged cluster.
    let from = s.now();
    wait_until(Duration::from_secs(30), "samples after convergence", || {
        s.now() > from + Duration::from_secs(2)
    });

    let figures = {
        let seen = s.seen.lock().expect("seen");
        let prod = &seen.prod[0];
        let writes = &seen.writes[0];
        let two_up = prod.iter().filter(|p| p.up.len() > 1).count();
        let name_of = |ip: IpAddr| s.name_of(ip).unwrap_or("?").to_string();
        let after_out: Vec<String> = writes
            .iter()
            .filter_map(|w| {
                let node = name_of(w.landed?);
                // HAProxy picked the server when it accepted the write's
                // connection: after `at`, within the write's own bound
                // (1 s; on a busy machine well after `at`), and its state
                // shows in the next sample.
                let from = w.at.saturating_sub(Duration::from_millis(300));
                let to = w.at + Duration::from_millis(1100);
                let shown = prod
                    .iter()
                    .filter(|p| p.at >= from && p.at <= to)
                    .any(|p| p.up.contains(&node));
                // With no sample in the window (HAProxy hung), nothing to
                // compare with: HAProxy could route nothing either.
                let sampled = prod.iter().any(|p| p.at >= from && p.at <= to);
                (sampled && !shown)
                    .then(|| format!("write {} at {:.2} s on {node}", w.n, w.at.as_secs_f64()))
            })
            .collect();
        let acked: Vec<i32> = writes
            .iter()
            .filter(|w| w.landed.is_some())
            .map(|w| w.n)
            .collect();
        let on_final: std::collections::BTreeSet<i32> = s.nodes[legit]
            .sql("SELECT n FROM writes WHERE label = 'tcp-check'")
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        Figures {
            faults,
            prod_samples: prod.len(),
            writes: writes.len(),
            acknowledged: acked.len(),
            two_up,
            lost: acked.iter().filter(|n| !on_final.contains(n)).count(),
            after_out,
            converged_after,
            primaries_promoted: (0..3)
                .map(|i| {
                    s.repmgrd_log(i)
                        .matches("failover validation command returned zero")
                        .count()
                })
                .sum(),
        }
    };
    eprintln!(
        "| {seed} | {secs} s | {} | {} | {} | {} ({} acknowledged) | {} | {} | {:.1} s after the last fault, on {} |",
        figures.faults,
        figures.primaries_promoted,
        figures.prod_samples,
        figures.writes,
        figures.acknowledged,
        figures.two_up + figures.after_out.len(),
        figures.lost,
        figures.converged_after,
        s.nodes[legit].name
    );
    let _ = last_fault;
    assert_eq!(figures.two_up, 0, "{}", report("two servers UP in prod"));
    assert!(
        figures.after_out.is_empty(),
        "{}\n{}",
        report("writes on a node prod did not hold"),
        figures.after_out.join("\n")
    );
}

#[test]
fn soak_with_a_fixed_seed() {
    eprintln!("| seed | length | faults | promotions by repmgrd | prod samples | writes | violations | acknowledged writes lost | converged |");
    soak(20_261_203);
}

/// A random seed, printed; `SOAK_SEED` replays one.
#[test]
fn soak_with_a_random_seed() {
    let seed = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    soak(seed);
}
