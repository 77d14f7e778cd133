//! The responder when Postgres misbehaves: stopped, hung (SIGSTOP),
//! restarted under a warm connection, and a standby that lags or stops
//! streaming. These change the cluster, so they run one at a time on a
//! cluster of their own.

mod common;

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::*;

fn cluster() -> MutexGuard<'static, Cluster> {
    static CLUSTER: OnceLock<Mutex<Cluster>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| Mutex::new(Cluster::start()))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn at(node: &Node, port: u16) -> SocketAddr {
    SocketAddr::new(node.addr.into(), port)
}

#[test]
fn stopped_postmaster_is_down_and_comes_back() {
    let c = cluster();
    c.standby.stop("fast");
    let start = Instant::now();
    assert_eq!(
        respond_word(&c.standby.conninfo(), &[]),
        "down: no server socket\n"
    );
    assert_eq!(
        respond_word(&c.standby.tcp_conninfo(), &[]),
        "down: connection refused\n"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "a refused connection answers at once"
    );
    c.standby.start();
    c.wait_streaming(Duration::from_secs(30));
    assert_eq!(respond_word(&c.standby.conninfo(), &[]), "standby\n");
}

#[test]
fn hung_postmaster_answers_down_timeout_within_check_timeout() {
    let c = cluster();
    let accept = at(&c.primary, 5431);
    let _activator = socket_activate(
        accept,
        Activation::Accept,
        &[],
        &["--check-timeout", "1", "--conninfo", &c.primary.conninfo()],
    );
    let long_lived = at(&c.primary, 5436);
    let _server = respond_server(
        long_lived,
        &["--check-timeout", "1", "--conninfo", &c.primary.conninfo()],
    );
    assert_eq!(ncat_recv(accept), "production\n");
    assert_eq!(ncat_recv(long_lived), "production\n");

    c.primary.signal(libc::SIGSTOP);
    let outcome = std::panic::catch_unwind(|| {
        let start = Instant::now();
        let one_shot = ncat_recv(accept);
        let one_shot_took = start.elapsed();
        // 20 checks at once, in rounds. The warm connection's backend still
        // runs, so the first round may still say production; the server
        // recycles its connection every second, so within a few rounds all
        // 20 say `down: timeout`. Every answer, in every round, comes within
        // checkTimeout plus a margin, and no socket closes without a word.
        let mut rounds = Vec::new();
        for _ in 0..4 {
            let round = concurrent_checks(long_lived, 20);
            let all_down = round.iter().all(|(word, _)| word == "down: timeout\n");
            rounds.push(round);
            if all_down {
                break;
            }
        }
        (one_shot, one_shot_took, rounds)
    });
    c.primary.signal(libc::SIGCONT);
    let (one_shot, one_shot_took, rounds) = outcome.expect("checks while hung");
    assert_eq!(one_shot, "down: timeout\n");
    assert!(
        one_shot_took >= Duration::from_millis(950) && one_shot_took < Duration::from_millis(1800),
        "{one_shot_took:?}"
    );
    let worst = rounds
        .iter()
        .flatten()
        .map(|(_, took)| *took)
        .max()
        .expect("some answers");
    println!(
        "hung postmaster: one-shot answered in {one_shot_took:?}; 20 concurrent long-lived \
         checks x {} round(s), worst answer {worst:?}",
        rounds.len()
    );
    for (word, took) in rounds.iter().flatten() {
        assert!(
            word == "down: timeout\n" || word == "production\n",
            "{word:?} (every socket gets a word)"
        );
        assert!(
            *took < Duration::from_millis(1800),
            "an answer took {took:?}"
        );
    }
    let last = rounds.last().expect("a round");
    assert!(
        last.iter().all(|(word, _)| word == "down: timeout\n"),
        "{rounds:?}"
    );

    // Resumed: both answer right again.
    wait_until(
        Duration::from_secs(10),
        "one-shot production after SIGCONT",
        || ncat_recv(accept) == "production\n",
    );
    wait_until(
        Duration::from_secs(10),
        "long-lived production after SIGCONT",
        || ncat_recv(long_lived) == "production\n",
    );
}

/// `n` clients connect to `addr` at once; each reads the answer to EOF.
/// Returns each one's answer and how long it took from its connect.
fn concurrent_checks(addr: SocketAddr, n: usize) -> Vec<(String, Duration)> {
    use std::io::Read;
    let barrier = std::sync::Barrier::new(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .expect("set a read timeout");
                    let mut out = String::new();
                    let _ = stream.read_to_string(&mut out);
                    (out, start.elapsed())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a client thread"))
            .collect()
    })
}

#[test]
fn long_lived_reconnects_after_a_restart() {
    let c = cluster();
    let addr = at(&c.primary, 5442);
    let _server = respond_server(addr, &["--conninfo", &c.primary.conninfo()]);
    assert_eq!(ncat_recv(addr), "production\n");
    c.primary.stop("fast");
    let down = ncat_recv(addr);
    assert!(down.starts_with("down: "), "{down:?}");
    c.primary.start();
    // The first check after the restart may find the old connection closed;
    // within three checks the server must have reconnected.
    let answers: Vec<String> = (0..3).map(|_| ncat_recv(addr)).collect();
    assert!(
        answers
            .iter()
            .all(|a| a == "production\n" || a.starts_with("down: ")),
        "{answers:?}"
    );
    assert_eq!(
        answers.last().map(String::as_str),
        Some("production\n"),
        "{answers:?}"
    );
    c.wait_streaming(Duration::from_secs(30));
}

#[test]
fn standby_over_max_lag_or_not_streaming_is_lagging() {
    let c = cluster();
    let s = &c.standby;
    let bound = ["--max-lag-bytes", "65536"];
    assert_eq!(respond_word(&s.conninfo(), &bound), "standby\n");

    // Replay paused while the primary writes: received WAL piles up unreplayed.
    s.sql("SELECT pg_wal_replay_pause()");
    c.primary.sql("CREATE TABLE IF NOT EXISTS lag_test AS SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 20000) g");
    c.primary
        .sql("INSERT INTO lag_test SELECT g, repeat('y', 100) FROM generate_series(1, 20000) g");
    wait_until(
        Duration::from_secs(20),
        "received WAL ahead of replay",
        || {
            s.sql("SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) > 65536") == "t"
        },
    );
    assert_eq!(respond_word(&s.conninfo(), &bound), "lagging\n");
    assert_eq!(
        respond_word(&s.conninfo(), &[]),
        "standby\n",
        "with no bound any standby is a standby"
    );
    s.sql("SELECT pg_wal_replay_resume()");
    wait_until(Duration::from_secs(20), "standby caught up", || {
        respond_word(&s.conninfo(), &bound) == "standby\n"
    });

    // Not streaming at all: the WAL receiver stopped.
    let upstream = s.sql("SHOW primary_conninfo");
    s.sql("ALTER SYSTEM SET primary_conninfo = ''");
    s.sql("SELECT pg_reload_conf()");
    wait_until(Duration::from_secs(20), "WAL receiver stopped", || {
        s.sql("SELECT count(*) FROM pg_stat_wal_receiver") == "0"
    });
    assert_eq!(respond_word(&s.conninfo(), &bound), "lagging\n");
    s.sql(&format!(
        "ALTER SYSTEM SET primary_conninfo = '{}'",
        upstream.replace('\'', "''")
    ));
    s.sql("SELECT pg_reload_conf()");
    c.wait_streaming(Duration::from_secs(30));
    assert_eq!(respond_word(&s.conninfo(), &bound), "standby\n");
}
