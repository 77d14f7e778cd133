//! A three-node cluster as repmgr users run it: a primary (node_1) and two
//! streaming standbys (node_2, node_3), registered with Debian 12's repmgr
//! (`shared_preload_libraries = 'repmgr'`), with `repmgrd` on every data
//! node (`failover=automatic`, its detection shortened to about 3 s). Its
//! commands are the lines of the shipped `conf/repmgr.conf.example`: the
//! `failover_validation_command` (`pgsql-state promote-check`), the
//! `promote_command` and the `event_notification_command` (each starting a
//! reconcile run), with their paths made the test's.
//!
//! Beside it, pgsql-state as packaged: a peer per data node and the
//! witness, run as `postgres` like the shipped units; a reconciler per
//! data node every second (watchDog 1); a strict text responder on each
//! node's 5431; and the shipped haproxy.cfg (a `node_3` server added, the
//! scenario suite's timing), observed as the scenario suite observes it:
//! `prod` sampled and written through every 100 ms.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::cluster::{as_pg_user, as_postgres, give_to_postgres, pg_bindir, run, Cluster, Node};
use super::haproxy::Haproxy;
use super::peers::{write_with_claims, PeerConfig};
use super::proxy::Proxy;
use super::scene::{self, Figures, NetNs, RunFlags, Seen};
use super::tools::{binary, require_tool, runtime_dir, Spawned};

/// The pg_hba.conf lines that cut repmgr's view of a node.
const REPMGR_CUT: &str =
    "host repmgr all 127.0.0.0/8 reject\nhost replication all 127.0.0.0/8 reject\n";
/// The `repmgr` database alone refused: replication goes on.
const REPMGR_DB_CUT: &str = "host repmgr all 127.0.0.0/8 reject\n";

/// Where the peers listen.
const PEER_PORT: u16 = 10300;
/// The responders' port.
const TEXT_PORT: u16 = 5431;

/// How a repmgr scene is timed.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// pgsql-state's shipped defaults (watchDog 15, connectionDeadline 5,
    /// the shipped HAProxy timing, the timer every 15 s and the path unit
    /// on postmaster.pid) instead of the suite's (watchDog 1, deadline 1,
    /// runs every second, HAProxy checks every second).
    pub shipped: bool,
    /// watchDog (s) with the shipped timing (the timer runs every
    /// watchDog, as it must): 15 is the shipped default.
    pub watchdog: u64,
    /// repmgrd's `reconnect_attempts`, `reconnect_interval` and
    /// `monitor_interval_secs`: it declares its upstream lost after about
    /// attempts × interval.
    pub repmgrd: (u32, u32, u32),
}

impl Timing {
    /// The suite's: pgsql-state at watchDog 1, repmgrd's detection about
    /// 2 s.
    pub const FAST: Timing = Timing {
        shipped: false,
        watchdog: 1,
        repmgrd: (2, 1, 1),
    };
}

/// The cluster, repmgr and pgsql-state, running.
pub struct RepmgrScene {
    pub c: Cluster,
    /// node_1, node_2, node_3 (node_1 is `c.primary`, node_2 `c.standby`).
    pub nodes: [Node; 3],
    /// node_1's network namespace: its peer and reconciler run there, so
    /// that [`RepmgrScene::partition_node_1`] cuts them from the other
    /// voters while HAProxy, replication and repmgr reach its Postgres on
    /// loopback as before.
    netns: Arc<NetNs>,
    pub dir: PathBuf,
    /// pgsql-state's config of node_1..3 and the witness.
    pub configs: [PathBuf; 4],
    /// repmgr.conf of node_1..3.
    pub repmgr_confs: [PathBuf; 3],
    pub peer_addrs: [SocketAddr; 4],
    peers: Mutex<Vec<Option<Spawned>>>,
    repmgrd: Mutex<Vec<Option<Spawned>>>,
    responders: Mutex<Vec<Option<Spawned>>>,
    /// The black holes of [`RepmgrScene::cut_voters_of`].
    voter_cuts: Mutex<Vec<Proxy>>,
    pub haproxy: Haproxy,
    stop: Arc<AtomicBool>,
    /// Pauses node i's reconciler (a stopped timer, or a lost machine).
    pub paused: [Arc<AtomicBool>; 3],
    running: [Arc<AtomicBool>; 3],
    threads: Vec<JoinHandle<()>>,
    pub seen: Arc<Mutex<Seen>>,
    pub reconcile_failures: Arc<Mutex<Vec<(Duration, String)>>>,
    pub start: Instant,
}

impl RepmgrScene {
    /// Starts everything and waits until HAProxy routes writes to node_1
    /// and reads to node_2 and node_3.
    pub fn start(tag: &str) -> RepmgrScene {
        RepmgrScene::start_timed(tag, Timing::FAST)
    }

    /// [`RepmgrScene::start`] with the given timing.
    pub fn start_timed(tag: &str, timing: Timing) -> RepmgrScene {
        for tool in ["haproxy", "systemd-socket-activate", "repmgr", "repmgrd"] {
            require_tool(tool);
        }
        // wal_log_hints and full_page_writes (the harness turns it off):
        // pg_rewind, for `repmgr node rejoin --force-rewind` of a node that
        // took the zombie's WAL; wal_keep_size, so that an old primary keeps
        // the WAL back to the last checkpoint before the fork, which
        // pg_rewind reads (its own checkpoints would recycle it).
        let c = Cluster::start_with(
            "shared_preload_libraries = 'repmgr'\nwal_log_hints = on\nfull_page_writes = on\n\
             wal_keep_size = '256MB'\n",
        );
        for sql in [
            "CREATE ROLE harw LOGIN PASSWORD 'harw-pass'",
            "CREATE DATABASE harw OWNER harw",
            "CREATE TABLE writes (label text, n int, at timestamptz DEFAULT now())",
            "CREATE DATABASE repmgr",
        ] {
            c.primary.sql(sql);
        }
        let node_3 = c.add_standby("node_3", 5);
        let nodes = [c.primary.clone(), c.standby.clone(), node_3];
        let dir = runtime_dir(&format!("repmgr-{tag}"));
        // node_1's peer and reconciler in a namespace of their own; the
        // other voters on the host end of its veth pair.
        let netns = Arc::new(NetNs::create(c.slot, &[1, 3, 4, 5]));
        let peer_addrs = [2, 3, 5, 4].map(|h| {
            SocketAddr::new(
                std::net::Ipv4Addr::new(10, 231, c.slot, h).into(),
                PEER_PORT,
            )
        });
        let configs = [0, 1, 2, 3].map(|i| write_config(&nodes, &dir, i, peer_addrs, timing));
        let repmgr_confs =
            [0, 1, 2].map(|i| write_repmgr_conf(&nodes, &dir, i, &configs[i], timing));
        write_one_machine_ssh(&dir.join("bin"));
        give_to_postgres(&dir);

        // repmgr: the primary, then each standby, registered.
        repmgr(&repmgr_confs[0], &["primary", "register"]);
        for conf in &repmgr_confs[1..] {
            repmgr(conf, &["standby", "register", "--wait-sync=60"]);
        }

        let peers = (0..4)
            .map(|i| {
                let ns = Some(&*netns).filter(|_| i == 0);
                Some(start_peer(&dir, &configs[i], peer_addrs[i], i, ns))
            })
            .collect();
        let responders = (0..3)
            .map(|i| Some(start_responder(&nodes[i], &configs[i])))
            .collect();
        let haproxy = Haproxy::start_ports(&c, "haproxy.cfg", c.spare_addr(6), 5432, 5433, |t| {
            if timing.shipped {
                with_node_3(t, &nodes[2])
            } else {
                with_node_3(&scene::scenario_timing(t, TEXT_PORT), &nodes[2])
            }
        });
        let mut scene = RepmgrScene {
            c,
            nodes,
            netns,
            dir,
            configs,
            repmgr_confs,
            peer_addrs,
            peers: Mutex::new(peers),
            repmgrd: Mutex::new(Vec::new()),
            responders: Mutex::new(responders),
            voter_cuts: Mutex::new(Vec::new()),
            haproxy,
            stop: Arc::new(AtomicBool::new(false)),
            paused: std::array::from_fn(|_| Arc::new(AtomicBool::new(false))),
            running: std::array::from_fn(|_| Arc::new(AtomicBool::new(false))),
            threads: Vec::new(),
            seen: Arc::new(Mutex::new(Seen::default())),
            reconcile_failures: Arc::new(Mutex::new(Vec::new())),
            start: Instant::now(),
        };
        for i in 0..3 {
            scene.threads.push(scene::reconciler(
                scene.configs[i].clone(),
                scene.dir.join(format!("reconcile-node_{}.log", i + 1)),
                RunFlags {
                    stop: scene.stop.clone(),
                    paused: scene.paused[i].clone(),
                    running: scene.running[i].clone(),
                    failures: scene.reconcile_failures.clone(),
                    start: scene.start,
                    every: Duration::from_secs(if timing.shipped { timing.watchdog } else { 1 }),
                    watch: timing
                        .shipped
                        .then(|| scene.nodes[i].data_dir.join("postmaster.pid")),
                    as_postgres: true,
                },
                Some(scene.netns.clone()).filter(|_| i == 0),
            ));
        }
        let daemons = (0..3).map(|i| Some(scene.start_repmgrd(i))).collect();
        *scene.repmgrd.lock().expect("repmgrd") = daemons;
        for i in 0..3 {
            scene.wait_repmgrd_monitoring(i, Duration::from_secs(60));
        }
        // The first wait of a cluster whose peers just started is all of W.
        // (W alone is 42.8 s with the shipped timing.)
        let bound = Duration::from_secs(if timing.shipped { 150 } else { 90 });
        scene.wait_routes("node_1", &["node_2", "node_3"], bound);
        let threads = scene::observe(
            vec![(scene.haproxy.stats.clone(), scene.haproxy.prod, "tcp-check")],
            &scene.seen,
            &scene.stop,
            scene.start,
        );
        scene.threads.extend(threads);
        scene
    }

    /// Waits until HAProxy holds `prod` and `stdby` as given.
    pub fn wait_routes(&self, prod: &str, stdby: &[&str], bound: Duration) {
        self.haproxy.wait_up("prod", &[prod], bound);
        self.haproxy.wait_up("stdby", stdby, bound);
    }

    /// Seconds since the scene started (the observer's clock).
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// `repmgrd -f repmgr.conf --daemonize=false` on node `i`, as postgres.
    fn start_repmgrd(&self, i: usize) -> Spawned {
        let log = self.dir.join(format!("repmgrd-stdout-node_{}.log", i + 1));
        let mut cmd = Command::new(require_tool("repmgrd"));
        cmd.arg("-f")
            .arg(&self.repmgr_confs[i])
            .arg("--daemonize=false")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("create a repmgrd log"))
            .stderr(Stdio::from(
                std::fs::File::options()
                    .append(true)
                    .open(&log)
                    .expect("open the repmgrd log"),
            ));
        as_postgres(&mut cmd);
        let child = cmd.spawn().expect("start repmgrd");
        Spawned::new(child, &format!("repmgrd of node_{}", i + 1))
    }

    /// What repmgrd of node `i` logged so far.
    pub fn repmgrd_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("repmgrd-node_{}.log", i + 1)))
            .unwrap_or_default()
    }

    /// Restarts repmgrd on node `i` (SIGKILL, then a new one) and waits
    /// until it monitors again.
    pub fn restart_repmgrd(&self, i: usize) {
        let from = self.repmgrd_log(i).len();
        let mut daemons = self.repmgrd.lock().expect("repmgrd");
        drop(daemons[i].take());
        daemons[i] = Some(self.start_repmgrd(i));
        drop(daemons);
        self.wait_monitoring_after(i, from, Duration::from_secs(60));
    }

    /// Waits until repmgrd of node `i` monitors (its log says so).
    fn wait_repmgrd_monitoring(&self, i: usize, bound: Duration) {
        self.wait_monitoring_after(i, 0, bound);
    }

    /// Waits until repmgrd of node `i` logs that it monitors, after the
    /// first `from` bytes of its log.
    fn wait_monitoring_after(&self, i: usize, from: usize, bound: Duration) {
        let start = Instant::now();
        while !self
            .repmgrd_log(i)
            .get(from..)
            .is_some_and(|new| new.contains("monitoring"))
        {
            assert!(
                start.elapsed() < bound,
                "repmgrd of node_{} does not monitor after {bound:?}:\n{}",
                i + 1,
                self.repmgrd_log(i)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `repmgr standby switchover --siblings-follow` run on node `to`
    /// (the primary `from`, given its config by `--remote-config-file`):
    /// repmgr stops the primary cleanly, promotes `to`, rejoins the old
    /// primary as a standby and has the siblings follow. Its ssh is the
    /// harness's one-machine ssh (every node is this host). Returns what
    /// repmgr printed; panics when it fails.
    pub fn switchover(&self, to: usize, from: usize) -> String {
        let bin = self.dir.join("bin");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(require_tool("repmgr"));
        cmd.arg("-f")
            .arg(&self.repmgr_confs[to])
            .args(["standby", "switchover", "--siblings-follow"])
            .arg("--remote-config-file")
            .arg(&self.repmgr_confs[from])
            .env("PATH", path)
            .stdin(Stdio::null());
        as_postgres(&mut cmd);
        let out = cmd.output().expect("run repmgr standby switchover");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "repmgr standby switchover failed ({}):\n{text}",
            out.status
        );
        text
    }

    /// The pid of node `i`'s peer (3: the witness's), if it runs.
    pub fn peer_pid(&self, i: usize) -> Option<i32> {
        self.peers.lock().expect("peers")[i]
            .as_ref()
            .map(|p| p.child.id() as i32)
    }

    /// Kills node `i`'s peer (SIGKILL), or starts it again when it is not
    /// running.
    pub fn set_peer_running(&self, i: usize, running: bool) {
        let mut peers = self.peers.lock().expect("peers");
        if !running {
            drop(peers[i].take());
        } else if peers[i].is_none() {
            let ns = Some(&*self.netns).filter(|_| i == 0);
            peers[i] = Some(start_peer(
                &self.dir,
                &self.configs[i],
                self.peer_addrs[i],
                i,
                ns,
            ));
        }
    }

    /// Every process of the scene's HAProxy (master and workers).
    pub fn haproxy_pids(&self) -> Vec<i32> {
        let out = Command::new("pgrep")
            .arg("-f")
            .arg(self.haproxy.config.to_str().expect("utf-8"))
            .output()
            .expect("run pgrep");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Cuts node_1's peer and reconciler from the other voters (its end
    /// of the veth pair down), or heals the cut.
    pub fn partition_node_1(&self, cut: bool) {
        self.netns.link(!cut);
    }

    /// Cuts (or heals) what the other nodes' repmgr and replication see of
    /// node `i`'s Postgres: its pg_hba.conf refuses the `repmgr` database
    /// and replication to everyone (on loopback they all come from
    /// 127.0.0.1), and the sessions already open end. HAProxy's path (the
    /// `harw` database) and pgsql-state's (the Unix socket) stay.
    pub fn cut_repmgr_view(&self, i: usize, cut: bool) {
        self.cut_hba(
            i,
            cut,
            REPMGR_CUT,
            "datname = 'repmgr' OR backend_type = 'walsender'",
        );
    }

    /// Cuts (or heals) repmgr's view of node `i` alone: its pg_hba.conf
    /// refuses the `repmgr` database, and those sessions end; the standbys
    /// go on streaming from it.
    pub fn cut_repmgr_db(&self, i: usize, cut: bool) {
        self.cut_hba(i, cut, REPMGR_DB_CUT, "datname = 'repmgr'");
    }

    /// Puts `rules` first in node `i`'s pg_hba.conf (or takes them out),
    /// reloads, and on a cut ends the sessions `sessions` selects.
    ///
    /// The edit is made as an operator's script should make one beside a
    /// running reconciler: under the node's run lock, so that no run reads
    /// the file between this read and this write, and written atomically.
    /// (An in-place write once let a run read the truncated file; the
    /// reconciler now refuses such a file, and this edit no longer races.)
    fn cut_hba(&self, i: usize, cut: bool, rules: &str, sessions: &str) {
        let hba = self.nodes[i].data_dir.join("pg_hba.conf");
        {
            let _lock = self.run_lock(i);
            let text = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
            let text = if cut {
                format!("{rules}{text}")
            } else {
                assert!(
                    text.contains(rules),
                    "node {i}'s pg_hba.conf lost the cut:\n{text}"
                );
                text.replacen(rules, "", 1)
            };
            pgsql_state::fsutil::write_atomic(&hba, text.as_bytes(), 0o600)
                .expect("write pg_hba.conf");
        }
        self.nodes[i].sql("SELECT pg_reload_conf()");
        if cut {
            self.nodes[i].sql(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {sessions}"
            ));
        }
    }

    /// Node `i`'s reconcile run lock (the file `reconcile` flocks in its
    /// runtime directory), held until the file is dropped. Its reconciler
    /// has run by then and made the file (as the user it runs as).
    fn run_lock(&self, i: usize) -> std::fs::File {
        let path = self
            .dir
            .join(format!("run-{}", self.nodes[i].name))
            .join("reconcile.lock");
        // flock needs no write access: read-only, whoever owns the file.
        let file =
            std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .unwrap_or_else(|e| panic!("flock {}: {e}", path.display()));
        file
    }

    /// Cuts (or heals) node `i`'s pgsql-state from the other voters: its
    /// config names, for each of them, a proxy on loopback that holds every
    /// connection without a word (a partition's black hole), so that its
    /// reconciler and `promote-check` reach only its own peer. Healed, the
    /// config names the voters again. (The others still reach its peer.)
    pub fn cut_voters_of(&self, i: usize, cut: bool) {
        let path = &self.configs[i];
        let text = std::fs::read_to_string(path).expect("read the config");
        let mut proxies = self.voter_cuts.lock().expect("voter cuts");
        let others: Vec<usize> = (0..4).filter(|&j| j != i).collect();
        let holes: Vec<SocketAddr> = (0..others.len())
            .map(|k| SocketAddr::new(self.c.spare_addr(20 + k as u8).into(), PEER_PORT))
            .collect();
        let mut text = text;
        for (&j, hole) in others.iter().zip(&holes) {
            let (from, to) = (self.peer_addrs[j].to_string(), hole.to_string());
            let (from, to) = if cut { (from, to) } else { (to, from) };
            assert!(text.contains(&from), "node {i}'s config names no {from}");
            text = text.replace(&from, &to);
        }
        if cut {
            for (&j, hole) in others.iter().zip(&holes) {
                let proxy = Proxy::start(*hole, self.peer_addrs[j]);
                proxy.cut();
                proxies.push(proxy);
            }
        }
        let tmp = path.with_extension("yml.tmp");
        std::fs::write(&tmp, text).expect("write the config");
        give_to_postgres(&tmp);
        std::fs::rename(&tmp, path).expect("replace the config");
        if !cut {
            proxies.clear();
        }
    }

    /// Makes node `i` a standby of the primary `new` again, as an operator
    /// does after a failover, and restarts its repmgrd (which may have
    /// exited, or kept a refused election's state). Nothing to do when it
    /// already streams from `new`; `repmgr standby follow` when it is a
    /// standby that can attach; otherwise (an old primary, or a standby
    /// that took WAL `new` never had) it is stopped, `new` checkpointed
    /// (pg_rewind reads its timeline from the control file) and the node
    /// rewound: `repmgr node rejoin --force-rewind`. Returns what repmgr
    /// said.
    pub fn rejoin(&self, i: usize, new: usize) -> String {
        let streams = |s: &Self| {
            s.nodes[new]
                .try_sql(&format!(
                    "SELECT count(*) FROM pg_stat_replication \
                     WHERE application_name = '{}' AND state = 'streaming'",
                    s.nodes[i].name
                ))
                .as_deref()
                == Some("1")
        };
        let mut said = String::new();
        let standby = self.nodes[i]
            .try_sql("SELECT pg_is_in_recovery()")
            .as_deref()
            == Some("t");
        if standby {
            // A WAL receiver retries its upstream every 5 s
            // (wal_retrieve_retry_interval): one that comes back by itself
            // needs nothing.
            let start = Instant::now();
            while !streams(self) && start.elapsed() < Duration::from_secs(8) {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        if !streams(self) {
            let upstream = (new + 1).to_string();
            let followed = standby && {
                let (ok, text) = try_repmgr(
                    &self.repmgr_confs[i],
                    &["standby", "follow", "--upstream-node-id", &upstream],
                );
                said += &text;
                ok
            };
            if !followed {
                if self.nodes[i].try_sql("SELECT 1").is_some() {
                    self.nodes[i].stop("fast");
                }
                self.nodes[new].sql("CHECKPOINT");
                let target = format!(
                    "host={} port=5432 user=postgres dbname=repmgr connect_timeout=2",
                    self.nodes[new].addr
                );
                let (ok, text) = try_repmgr(
                    &self.repmgr_confs[i],
                    &[
                        "node",
                        "rejoin",
                        "-d",
                        &target,
                        "--force-rewind",
                        "--config-files=postgresql.conf,postgresql.auto.conf,pg_hba.conf",
                    ],
                );
                said += &text;
                assert!(
                    ok,
                    "repmgr node rejoin of {} failed:\n{said}",
                    self.nodes[i].name
                );
            }
            let start = Instant::now();
            while !streams(self) {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "{} does not stream from {} 60 s after it rejoined:\n{said}",
                    self.nodes[i].name,
                    self.nodes[new].name
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        self.restart_repmgrd(i);
        said
    }

    /// `repmgr standby unregister` of standby `i` (its repmgrd stopped
    /// first): repmgr then counts one standby fewer.
    pub fn unregister_standby(&self, i: usize) {
        self.stop_repmgrd(i);
        repmgr(&self.repmgr_confs[i], &["standby", "unregister"]);
    }

    /// `repmgr standby register --force` of standby `i`, and its repmgrd
    /// started again (waits until it monitors).
    pub fn register_standby_again(&self, i: usize) {
        // `--wait-sync`: repmgrd reads its record on the standby itself;
        // started before the record replayed there, it stops at once.
        repmgr(
            &self.repmgr_confs[i],
            &["standby", "register", "--force", "--wait-sync=60"],
        );
        self.restart_repmgrd(i);
    }

    /// Stops repmgrd on node `i` (it stays off until [`restart_repmgrd`]).
    ///
    /// [`restart_repmgrd`]: RepmgrScene::restart_repmgrd
    pub fn stop_repmgrd(&self, i: usize) {
        drop(self.repmgrd.lock().expect("repmgrd")[i].take());
    }

    /// The machine of node `i` lost: its repmgrd, peer, responder and
    /// reconciler stop, and its Postgres is stopped at once (immediate).
    pub fn lose_machine(&self, i: usize) {
        drop(self.repmgrd.lock().expect("repmgrd")[i].take());
        self.paused[i].store(true, Ordering::SeqCst);
        drop(self.peers.lock().expect("peers")[i].take());
        drop(self.responders.lock().expect("responders")[i].take());
        self.nodes[i].stop("immediate");
    }

    /// The machine of node `i` boots again: its Postgres as it was (a
    /// primary stays a primary), its peer, responder and reconciler. Its
    /// repmgrd stays off, as an operator leaves it until the node rejoins.
    pub fn boot_machine(&self, i: usize) {
        self.nodes[i].start();
        let ns = Some(&*self.netns).filter(|_| i == 0);
        self.peers.lock().expect("peers")[i] = Some(start_peer(
            &self.dir,
            &self.configs[i],
            self.peer_addrs[i],
            i,
            ns,
        ));
        self.responders.lock().expect("responders")[i] =
            Some(start_responder(&self.nodes[i], &self.configs[i]));
        self.paused[i].store(false, Ordering::SeqCst);
    }

    /// `pgsql-state -f CONFIG ARGS` as postgres on node `i`: exit code and
    /// stdout.
    pub fn pgsql_state_on(&self, i: usize, args: &[&str]) -> (i32, String) {
        let mut cmd = Command::new(binary());
        cmd.arg("-f").arg(&self.configs[i]).args(args);
        as_postgres(&mut cmd);
        let out = cmd.stdin(Stdio::null()).output().expect("run pgsql-state");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// The data node that is primary now, by asking each (`None`: none, or
    /// more than one).
    pub fn primaries(&self) -> Vec<usize> {
        (0..3)
            .filter(|&i| {
                self.nodes[i]
                    .try_sql("SELECT pg_is_in_recovery()")
                    .as_deref()
                    == Some("f")
            })
            .collect()
    }

    /// The server name of a data node's address.
    pub fn name_of(&self, ip: IpAddr) -> Option<&str> {
        self.nodes
            .iter()
            .find(|n| IpAddr::from(n.addr) == ip)
            .map(|n| n.name.as_str())
    }

    /// The tcp-check HAProxy's figures for a fault at `fault`.
    pub fn figures(&self, fault: Duration, expected: &str, wrong: Option<usize>) -> Figures {
        let seen = self.seen.lock().expect("seen");
        let wrong = wrong.map(|i| {
            (
                IpAddr::from(self.nodes[i].addr),
                self.nodes[i].name.as_str(),
            )
        });
        scene::figures_of(
            ("tcp-check", true),
            &seen.prod[0],
            &seen.writes[0],
            fault,
            expected,
            wrong,
        )
    }

    /// What `prod` held since `from`, one line per change (for failure
    /// messages).
    pub fn prod_trace(&self, from: Duration) -> String {
        scene::changes(&self.seen.lock().expect("seen").prod[0], from)
    }

    /// Whether every sample of `prod` since `from` (at least one) held
    /// `server` alone.
    pub fn held_alone_since(&self, server: &str, from: Duration) -> bool {
        let seen = self.seen.lock().expect("seen");
        let mut since = seen.prod[0].iter().filter(|s| s.at >= from).peekable();
        since.peek().is_some() && since.all(|s| s.up == [server])
    }

    /// The last `n` lines of node `i`'s reconciler log.
    pub fn reconcile_log_tail(&self, i: usize, n: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join(format!("reconcile-node_{}.log", i + 1)))
            .unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Every sample of `prod` since `from` in which `server` was UP.
    pub fn up_since(&self, server: &str, from: Duration) -> usize {
        let seen = self.seen.lock().expect("seen");
        seen.prod[0]
            .iter()
            .filter(|s| s.at >= from && s.up.iter().any(|u| u == server))
            .count()
    }
}

impl Drop for RepmgrScene {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // repmgrd first: it must not restart a Postgres the cluster stops.
        if let Ok(mut daemons) = self.repmgrd.lock() {
            daemons.clear();
        }
    }
}

/// `repmgr -f CONF ARGS` as postgres; panics with its output on failure.
pub fn repmgr(conf: &Path, args: &[&str]) -> String {
    let out = run(as_pg_user(&require_tool("repmgr"))
        .arg("-f")
        .arg(conf)
        .args(args));
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// `repmgr -f CONF ARGS` as postgres: whether it succeeded, and what it
/// printed.
fn try_repmgr(conf: &Path, args: &[&str]) -> (bool, String) {
    let out = as_pg_user(&require_tool("repmgr"))
        .arg("-f")
        .arg(conf)
        .args(args)
        .output()
        .expect("run repmgr");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The shipped haproxy.cfg with a third server (the rewrite maps node_1
/// and node_2 to the cluster's addresses; node_3's is given here).
fn with_node_3(text: &str, node_3: &Node) -> String {
    text.lines()
        .map(|l| {
            if l.trim_start().starts_with("server node_2 ") {
                let indent = &l[..l.len() - l.trim_start().len()];
                format!(
                    "{l}\n{indent}{}",
                    l.trim_start()
                        .replace("node_2", "node_3")
                        .replace("10.21.57.62", &node_3.addr.to_string())
                )
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// pgsql-state's config of node `i` (3: the witness): fencing strict,
/// watchDog 1, each data node's neighbours the other two.
fn write_config(
    nodes: &[Node; 3],
    dir: &Path,
    i: usize,
    peers: [SocketAddr; 4],
    timing: Timing,
) -> PathBuf {
    let name = if i == 3 {
        "witness"
    } else {
        nodes[i].name.as_str()
    };
    let runtime = dir.join(format!("run-{name}"));
    let state = dir.join(format!("state-{name}"));
    for d in [&runtime, &state] {
        std::fs::create_dir_all(d).expect("create a node dir");
    }
    let (conninfo, hba, ip) = match nodes.get(i) {
        Some(n) => (
            n.conninfo(),
            n.data_dir.join("pg_hba.conf"),
            n.addr.to_string(),
        ),
        None => (
            "host=/nonexistent".to_string(),
            PathBuf::from("/nonexistent"),
            peers[3].ip().to_string(),
        ),
    };
    let neighbours = (0..3)
        .filter(|&j| j != i)
        .map(|j| peers[j].to_string())
        .collect();
    let yaml = PeerConfig {
        node_name: name,
        primary_ip: &ip,
        bind: peers[i],
        neighbours,
        witness: peers[3].to_string(),
        conninfo,
        runtime_dir: &runtime,
        tls: None,
        connection_deadline: if timing.shipped { 5.0 } else { 1.0 },
    };
    let yaml = yaml.scene_yaml(&hba, &state, timing.shipped.then_some(timing.watchdog));
    write_with_claims(dir, name, &yaml)
}

/// repmgr.conf of node `i`: its identity, repmgrd's shortened detection,
/// and the lines of the shipped example with the test's paths.
fn write_repmgr_conf(
    nodes: &[Node; 3],
    dir: &Path,
    i: usize,
    config: &Path,
    timing: Timing,
) -> PathBuf {
    let node = &nodes[i];
    let path = dir.join(format!("repmgr-{}.conf", node.name));
    let pg_ctl = |action: &str| {
        format!(
            "{}/pg_ctl -w -t 60 -D {} -l {} {action}",
            pg_bindir().display(),
            node.data_dir.display(),
            node.log_file.display()
        )
    };
    let mut text = format!(
        "node_id={id}\nnode_name='{name}'\n\
         conninfo='host={addr} port=5432 user=postgres dbname=repmgr connect_timeout=2'\n\
         data_directory='{data}'\npg_bindir='{bindir}'\n\
         log_file='{log}'\nlog_level=INFO\nrepmgrd_pid_file='{pid}'\n\
         failover=automatic\npriority={priority}\n\
         reconnect_attempts={attempts}\nreconnect_interval={interval}\nmonitor_interval_secs={monitor}\n\
         election_rerun_interval=2\nprimary_notification_timeout=20\nlog_status_interval=1\n\
         service_start_command='{start}'\nservice_stop_command='{stop}'\n\
         service_restart_command='{restart}'\nservice_reload_command='{reload}'\n",
        id = i + 1,
        name = node.name,
        addr = node.addr,
        data = node.data_dir.display(),
        bindir = pg_bindir().display(),
        log = dir.join(format!("repmgrd-{}.log", node.name)).display(),
        pid = dir.join(format!("repmgrd-{}.pid", node.name)).display(),
        // node_1 is never repmgr's candidate (priority 0): its pgsql-state
        // lives in a network namespace (its peer's address is there) that
        // its repmgrd, run as postgres on the host, cannot enter, so its
        // promote-check could not reach its own peer ("tcp bind local
        // error"). On a real machine they share the network.
        priority = if i == 0 { 0 } else { 100 - 10 * i },
        attempts = timing.repmgrd.0,
        interval = timing.repmgrd.1,
        monitor = timing.repmgrd.2,
        start = pg_ctl("start"),
        stop = pg_ctl("-m fast stop"),
        restart = pg_ctl("-m fast restart"),
        reload = pg_ctl("reload"),
    );
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/repmgr.conf.example"),
    )
    .expect("read conf/repmgr.conf.example");
    let pgsql_state = format!("{} -f {} ", binary().display(), config.display());
    for line in example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
    {
        // No journal here: what systemd-cat would send there goes to
        // repmgrd's log with the command's other output.
        text += &line
            .replace("/usr/bin/systemd-cat -t pgsql-state ", "")
            .replace("/usr/bin/pgsql-state ", &pgsql_state)
            .replace("/etc/repmgr.conf", path.to_str().expect("utf-8"));
        text.push('\n');
    }
    std::fs::write(&path, text).expect("write repmgr.conf");
    path
}

/// `dir/ssh`: ssh for a cluster on one machine. repmgr runs `ssh -o
/// Batchmode=yes [ssh_options] HOST COMMAND` for its remote steps; every
/// node is this host, so the command runs here, as the caller (postgres),
/// with the options and the host skipped. The commands carry the remote
/// node's repmgr.conf (`--remote-config-file`), so each acts on its node.
fn write_one_machine_ssh(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).expect("create the ssh dir");
    let ssh = dir.join("ssh");
    std::fs::write(
        &ssh,
        "#!/bin/sh\n\
         # Every node is this host: run the remote command here.\n\
         while [ $# -gt 0 ]; do\n\
         \x20 case \"$1\" in\n\
         \x20   -o|-p|-i|-l|-F) shift 2 ;;\n\
         \x20   -*) shift ;;\n\
         \x20   *) break ;;\n\
         \x20 esac\n\
         done\n\
         shift\n\
         exec /bin/sh -c \"$*\"\n",
    )
    .expect("write the one-machine ssh");
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).expect("chmod ssh");
}

/// A peer, run as postgres like the shipped unit (in `netns` if given).
fn start_peer(
    dir: &Path,
    config: &Path,
    bind: SocketAddr,
    i: usize,
    netns: Option<&NetNs>,
) -> Spawned {
    let log = dir.join(format!("peer-{i}.log"));
    let mut cmd = scene::binary_command(netns, true);
    cmd.arg("-f")
        .arg(config)
        .arg("peer")
        .env("PGSQL_STATE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("create the peer log"));
    Spawned::listening(cmd, bind, &format!("peer on {bind}"))
}

/// The strict text responder on the node's 5431, one process per
/// connection.
fn start_responder(node: &Node, config: &Path) -> Spawned {
    scene::activate(
        SocketAddr::new(node.addr.into(), TEXT_PORT),
        false,
        &[
            binary().to_str().expect("utf-8"),
            "-f",
            config.to_str().expect("utf-8"),
            "respond",
        ],
    )
}
