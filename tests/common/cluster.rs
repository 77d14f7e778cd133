//! Real PostgreSQL clusters: a primary and a streaming standby made with
//! `pg_basebackup -R`, each on its own loopback address.
//!
//! Each cluster lives in a directory of its own, named after the test
//! process (`cluster-<pid>-<n>`), so no run can touch another's sockets or
//! data, even a late one. A slot (an flock) reserves the 127.0.K.x
//! addresses. Every postmaster is stopped when its `Cluster` is dropped, or
//! at exit for the clusters kept in statics; a cluster left by a test
//! process that died is stopped and removed by the next run.

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Every data directory started by this process and not yet stopped,
/// stopped at exit.
static STARTED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The directory all test clusters and runtime directories live under.
pub fn test_root() -> PathBuf {
    std::env::temp_dir().join("pgsql-state-test")
}

/// One PostgreSQL node.
#[derive(Debug, Clone)]
pub struct Node {
    /// The node name, also its `application_name` upstream (as repmgr sets it).
    pub name: String,
    /// Its own loopback address; Postgres listens on it at port 5432.
    pub addr: Ipv4Addr,
    pub data_dir: PathBuf,
    /// The directory holding its Unix socket.
    pub socket_dir: PathBuf,
    pub log_file: PathBuf,
}

impl Node {
    /// The conninfo a local responder uses (Unix socket, as in production).
    pub fn conninfo(&self) -> String {
        format!(
            "host={} port=5432 user=postgres dbname=postgres connect_timeout=5",
            self.socket_dir.display()
        )
    }

    /// A TCP conninfo to this node's address.
    pub fn tcp_conninfo(&self) -> String {
        format!("host={} port=5432 user=postgres dbname=postgres", self.addr)
    }

    /// Runs SQL with psql over the Unix socket and returns its trimmed output.
    pub fn sql(&self, sql: &str) -> String {
        let out = run(Command::new(pg_bin("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.socket_dir)
            .args(["-p", "5432", "-U", "postgres", "-d", "postgres", "-c", sql]));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs SQL like [`Node::sql`]; `None` when psql fails (a node down).
    pub fn try_sql(&self, sql: &str) -> Option<String> {
        let out = Command::new(pg_bin("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.socket_dir)
            .args(["-p", "5432", "-U", "postgres", "-d", "postgres", "-c", sql])
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The postmaster's pid.
    pub fn postmaster_pid(&self) -> i32 {
        let text = fs::read_to_string(self.data_dir.join("postmaster.pid"))
            .expect("postmaster.pid readable");
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("pid in postmaster.pid")
    }

    /// Creates the socket directory, writable by the unprivileged server.
    fn make_socket_dir(&self) {
        fs::create_dir_all(&self.socket_dir).expect("create a socket dir");
        fs::set_permissions(&self.socket_dir, fs::Permissions::from_mode(0o777))
            .expect("chmod socket dir");
    }

    /// `pg_ctl start` and wait until it accepts connections.
    pub fn start(&self) {
        let out = as_pg_user(&pg_bin("pg_ctl"))
            .args(["-w", "-t", "60", "-D"])
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_file)
            .arg("start")
            .output()
            .expect("run pg_ctl start");
        if !out.status.success() {
            let log = fs::read_to_string(&self.log_file).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            panic!(
                "{} did not start:\n{}",
                self.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }

    /// `pg_ctl stop` in `mode` (fast, immediate).
    pub fn stop(&self, mode: &str) {
        run(as_pg_user(&pg_bin("pg_ctl"))
            .args(["-w", "-t", "60", "-m", mode, "-D"])
            .arg(&self.data_dir)
            .arg("stop"));
    }

    /// `pg_ctl restart -m fast`: a new postmaster on the same data, and
    /// timeline; waits until it accepts connections.
    pub fn restart(&self) {
        run(as_pg_user(&pg_bin("pg_ctl"))
            .args(["-w", "-t", "60", "-m", "fast", "-D"])
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_file)
            .arg("restart"));
    }

    /// `pg_ctl promote`, as an HA tool would, waiting until it is done.
    pub fn promote(&self) {
        run(as_pg_user(&pg_bin("pg_ctl"))
            .args(["-w", "-D"])
            .arg(&self.data_dir)
            .arg("promote"));
    }

    /// Sends a signal to the postmaster (SIGSTOP to hang it, SIGCONT to resume).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid read from postmaster.pid; no memory involved.
        let rc = unsafe { libc::kill(self.postmaster_pid(), signal) };
        assert_eq!(rc, 0, "kill({signal}) of {}'s postmaster", self.name);
    }
}

/// A primary and one streaming standby.
#[derive(Debug)]
pub struct Cluster {
    /// This cluster's slot: its nodes are 127.0.K.2 and 127.0.K.3.
    pub slot: u8,
    pub base: PathBuf,
    pub primary: Node,
    pub standby: Node,
    /// Nodes started beside the two (strangers), stopped with the cluster.
    extra: Mutex<Vec<PathBuf>>,
    _lock: fs::File,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut dirs = vec![self.primary.data_dir.clone(), self.standby.data_dir.clone()];
        dirs.extend(self.extra.lock().map(|d| d.clone()).unwrap_or_default());
        for dir in &dirs {
            stop_data_dir(dir);
            unregister(dir);
        }
        let _ = fs::remove_dir_all(&self.base);
        // The slot's lock is released after this, with the fields.
    }
}

impl Cluster {
    /// Starts a fresh primary and a standby streaming from it.
    pub fn start() -> Cluster {
        Cluster::start_with("")
    }

    /// [`Cluster::start`], with `conf` added to the primary's
    /// postgresql.conf before its first start (the standby copies it).
    pub fn start_with(conf: &str) -> Cluster {
        check_prerequisites();
        sweep_dead_runs();
        let (slot, lock) = take_slot();
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = test_root().join(format!("cluster-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).expect("create the cluster base dir");
        fs::set_permissions(&base, fs::Permissions::from_mode(0o777)).expect("chmod base");
        let node = |n: u8| Node {
            name: format!("node_{}", n - 1),
            addr: Ipv4Addr::new(127, 0, slot, n),
            data_dir: base.join(format!("n{}", n - 1)),
            socket_dir: base.join(format!("s{}", n - 1)),
            log_file: base.join(format!("n{}.log", n - 1)),
        };
        let (primary, standby) = (node(2), node(3));
        primary.make_socket_dir();
        standby.make_socket_dir();
        init_primary(&primary);
        append(&primary.data_dir.join("postgresql.conf"), conf);
        primary.start();
        register(&primary);
        clone_standby(&primary, &standby);
        standby.start();
        register(&standby);
        let cluster = Cluster {
            slot,
            base,
            primary,
            standby,
            extra: Mutex::new(Vec::new()),
            _lock: lock,
        };
        cluster.wait_streaming(Duration::from_secs(30));
        cluster
    }

    /// Waits until the standby streams from the primary.
    pub fn wait_streaming(&self, bound: Duration) {
        let sql = format!(
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = '{}' AND state = 'streaming'",
            self.standby.name
        );
        wait_until(bound, "standby streaming", || self.primary.sql(&sql) == "1");
    }

    /// Starts another primary, with its own system identifier, at
    /// 127.0.K.n: a node of some other cluster.
    pub fn stranger(&self, n: u8) -> Node {
        let node = Node {
            name: format!("stranger_{n}"),
            addr: self.spare_addr(n),
            data_dir: self.base.join(format!("x{n}")),
            socket_dir: self.base.join(format!("sx{n}")),
            log_file: self.base.join(format!("x{n}.log")),
        };
        node.make_socket_dir();
        init_primary(&node);
        node.start();
        register(&node);
        if let Ok(mut extra) = self.extra.lock() {
            extra.push(node.data_dir.clone());
        }
        node
    }

    /// Another standby, `name` at 127.0.K.n, cloned from the primary and
    /// streaming from it; stopped with the cluster.
    pub fn add_standby(&self, name: &str, n: u8) -> Node {
        let node = Node {
            name: name.to_string(),
            addr: self.spare_addr(n),
            data_dir: self.base.join(format!("n{n}-{name}")),
            socket_dir: self.base.join(format!("s{n}")),
            log_file: self.base.join(format!("{name}.log")),
        };
        node.make_socket_dir();
        clone_standby(&self.primary, &node);
        node.start();
        register(&node);
        if let Ok(mut extra) = self.extra.lock() {
            extra.push(node.data_dir.clone());
        }
        let sql = format!(
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = '{name}' AND state = 'streaming'"
        );
        wait_until(Duration::from_secs(30), "the new standby streaming", || {
            self.primary.sql(&sql) == "1"
        });
        node
    }

    /// An address on this cluster's slot that no node uses (127.0.K.n).
    pub fn spare_addr(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, self.slot, n)
    }
}

/// `initdb` of a data dir as the unprivileged user: trust, UTF8, C.
pub fn initdb(data_dir: &Path) {
    run(as_pg_user(&pg_bin("initdb"))
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "-N",
            "-E",
            "UTF8",
            "--locale=C",
            "-D",
        ])
        .arg(data_dir));
}

fn init_primary(node: &Node) {
    initdb(&node.data_dir);
    let conf = format!(
        "listen_addresses = '{addr}'\nport = 5432\nunix_socket_directories = '{sock}'\n\
         wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\nfsync = off\n\
         full_page_writes = off\nsynchronous_commit = off\nshared_buffers = 16MB\nmax_connections = 60\n\
         log_min_messages = warning\nlog_connections = off\n",
        addr = node.addr,
        sock = node.socket_dir.display()
    );
    append(&node.data_dir.join("postgresql.conf"), &conf);
    fs::write(
        node.data_dir.join("pg_hba.conf"),
        "local all all trust\nhost all all 127.0.0.0/8 trust\nhost replication all 127.0.0.0/8 trust\n",
    )
    .expect("write pg_hba.conf");
}

fn clone_standby(primary: &Node, standby: &Node) {
    run(as_pg_user(&pg_bin("pg_basebackup"))
        .args([
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-sync",
            "-U",
            "postgres",
            "-p",
            "5432",
            "-h",
        ])
        .arg(primary.addr.to_string())
        .arg("-D")
        .arg(&standby.data_dir));
    let conf = format!(
        "listen_addresses = '{addr}'\nunix_socket_directories = '{sock}'\n",
        addr = standby.addr,
        sock = standby.socket_dir.display()
    );
    append(&standby.data_dir.join("postgresql.conf"), &conf);
    // As repmgr does: the standby's application_name is its node name.
    append(
        &standby.data_dir.join("postgresql.auto.conf"),
        &format!(
            "primary_conninfo = 'host={} port=5432 user=postgres application_name={}'\n",
            primary.addr, standby.name
        ),
    );
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(text.as_bytes()).expect("append");
}

fn register(node: &Node) {
    let mut started = STARTED.lock().expect("registry lock");
    if started.is_empty() {
        // SAFETY: registering a plain extern "C" fn with no captured state.
        unsafe { libc::atexit(stop_all_at_exit) };
    }
    started.push(node.data_dir.clone());
}

fn unregister(dir: &Path) {
    if let Ok(mut started) = STARTED.lock() {
        started.retain(|d| d != dir);
    }
}

extern "C" fn stop_all_at_exit() {
    let dirs = STARTED.lock().map(|d| d.clone()).unwrap_or_default();
    for dir in &dirs {
        stop_data_dir(dir);
    }
    // Only once every node is stopped: their pid files live in there.
    for dir in &dirs {
        if let Some(base) = dir.parent() {
            let _ = fs::remove_dir_all(base);
        }
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// Stops whatever postmaster runs in `dir`, even a SIGSTOPped one, and
/// returns only once it is gone: `pg_ctl stop -m immediate`, then SIGKILL
/// if it is still there (a busy machine can outlast pg_ctl's wait).
fn stop_data_dir(dir: &Path) {
    let Ok(text) = fs::read_to_string(dir.join("postmaster.pid")) else {
        return;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
    else {
        return;
    };
    if !alive(pid) {
        return;
    }
    // SAFETY: signalling a pid; harmless if it is gone.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let _ = as_pg_user(&pg_bin("pg_ctl"))
        .args(["-w", "-t", "60", "-m", "immediate", "-D"])
        .arg(dir)
        .arg("stop")
        .output();
    let start = Instant::now();
    while alive(pid) && start.elapsed() < Duration::from_secs(30) {
        // SAFETY: as above; the postmaster's children exit when it dies.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops and removes what test processes that are gone left behind:
/// their clusters (`cluster-<pid>-<n>`) and runtime dirs (`run-<pid>-…`).
fn sweep_dead_runs() {
    let Ok(entries) = fs::read_dir(test_root()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let owner = name
            .strip_prefix("cluster-")
            .or_else(|| name.strip_prefix("run-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok());
        let Some(owner) = owner else { continue };
        if alive(owner) {
            continue;
        }
        if let Ok(nodes) = fs::read_dir(entry.path()) {
            for node in nodes.flatten() {
                stop_data_dir(&node.path());
            }
        }
        let _ = fs::remove_dir_all(entry.path());
    }
}

/// Takes the first free slot (10..=250), held by an flock until exit.
fn take_slot() -> (u8, fs::File) {
    use std::os::fd::AsRawFd;
    let dir = test_root();
    fs::create_dir_all(&dir).expect("create the test dir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod the test dir");
    for slot in 10..=250u8 {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("slot-{slot}.lock")))
            .expect("open a slot lock");
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return (slot, file);
        }
    }
    panic!("no free test slot in 127.0.10-250.x");
}

/// The directory of the PostgreSQL server binaries (Debian keeps them out of PATH).
pub fn pg_bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("no PostgreSQL server in /usr/lib/postgresql/*/bin: run ./scripts/test.sh, which installs it, or set PG_BINDIR")
}

/// A PostgreSQL binary by name.
pub fn pg_bin(name: &str) -> PathBuf {
    pg_bindir().join(name)
}

/// A command run as the unprivileged `postgres` user when we are root.
pub fn as_pg_user(program: &Path) -> Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn check_prerequisites() {
    let _ = pg_bindir();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let ok = Command::new("id")
            .arg("postgres")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            ok,
            "running as root needs the unprivileged `postgres` user: apt-get install postgresql"
        );
    }
}

/// Makes `cmd` run as the unprivileged `postgres` user when we are root
/// (its uid and gid set directly, so that signalling the child signals
/// the program itself, not a `runuser` in between).
pub fn as_postgres(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return cmd;
    }
    // SAFETY: getpwnam with a NUL-terminated name; the record is read at
    // once, before any other call could overwrite it.
    let (uid, gid) = unsafe {
        let pw = libc::getpwnam(c"postgres".as_ptr());
        assert!(
            !pw.is_null(),
            "no `postgres` user: apt-get install postgresql"
        );
        ((*pw).pw_uid, (*pw).pw_gid)
    };
    cmd.uid(uid).gid(gid).env("HOME", "/var/lib/postgresql")
}

/// Gives `path` to the `postgres` user when we are root (a directory a
/// process run as postgres writes in).
pub fn give_to_postgres(path: &Path) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path));
    }
}

/// Runs a command and panics with its output when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Polls `check` until it is true, or panics after `bound`.
pub fn wait_until(bound: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < bound,
            "timed out after {bound:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
