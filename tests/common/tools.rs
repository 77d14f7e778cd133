//! Running the real binary and the real clients (`ncat`, `nc`,
//! `systemd-socket-activate`), each bounded in time.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The pgsql-state binary under test: this build's, or the one
/// `PGSQL_STATE_BINARY` names (scripts/test.sh: the release build; a
/// benchmark: an earlier build).
pub fn binary() -> PathBuf {
    std::env::var_os("PGSQL_STATE_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_pgsql-state")))
}

/// This build's own binary, whatever `PGSQL_STATE_BINARY` says: the debug
/// build has the test hooks (`PGSQL_STATE_TEST_PANIC`) a release build
/// leaves out.
pub fn this_build() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pgsql-state"))
}

/// Panics with a clear message when a tool the tests need is missing.
pub fn require_tool(name: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain([
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
    ]) {
        let path = PathBuf::from(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!("`{name}` is missing: run ./scripts/test.sh, which installs it (apt-get)");
}

/// Runs `program` with `input` on stdin, bounded by `bound`; returns stdout.
pub fn run_client(program: &str, args: &[&str], input: &[u8], bound: Duration) -> String {
    let tool = require_tool(program);
    let mut child = Command::new(&tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let _ = stdin.write_all(input);
    drop(stdin);
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait for the client").is_some() {
            break;
        }
        if start.elapsed() > bound {
            let _ = child.kill();
            let out = child
                .wait_with_output()
                .expect("collect the client's output");
            panic!(
                "{program} {args:?} did not finish within {bound:?}; it printed {:?}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child
        .wait_with_output()
        .expect("collect the client's output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ncat --recv-only ADDR PORT`, as the README shows.
pub fn ncat_recv(addr: SocketAddr) -> String {
    run_client(
        "ncat",
        &[
            "--recv-only",
            &addr.ip().to_string(),
            &addr.port().to_string(),
        ],
        b"",
        Duration::from_secs(15),
    )
}

/// `nc ADDR PORT` (OpenBSD netcat), as the README shows.
pub fn nc(addr: SocketAddr) -> String {
    run_client(
        "nc",
        &[&addr.ip().to_string(), &addr.port().to_string()],
        b"",
        Duration::from_secs(15),
    )
}

/// `ncat ADDR PORT` sending `input` (an HTTP request, an agent-send line).
pub fn ncat_send(addr: SocketAddr, input: &[u8]) -> String {
    run_client(
        "ncat",
        &[&addr.ip().to_string(), &addr.port().to_string()],
        input,
        Duration::from_secs(15),
    )
}

/// Every child a [`Spawned`] holds, killed at exit: a `Spawned` kept in a
/// static is never dropped, and must not outlive the test process (it
/// would hold its address for the next run).
static CHILDREN: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

extern "C" fn kill_children_at_exit() {
    let pids = CHILDREN.lock().map(|p| p.clone()).unwrap_or_default();
    for pid in pids {
        // SAFETY: signalling a child of ours; harmless if it is gone.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

/// SIGKILLs `pid` when the test process exits (for processes that are not
/// our children, such as a namespaced systemd).
pub fn kill_at_exit(pid: u32) {
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    // SAFETY: registering a plain extern "C" fn with no captured state.
    AT_EXIT.call_once(|| unsafe {
        libc::atexit(kill_children_at_exit);
    });
    if let Ok(mut pids) = CHILDREN.lock() {
        pids.push(pid);
    }
}

/// A child process killed (and reaped) when dropped, or at exit.
pub struct Spawned {
    pub child: Child,
    pub what: String,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let pid = self.child.id();
        if let Ok(mut pids) = CHILDREN.lock() {
            pids.retain(|p| *p != pid);
        }
    }
}

impl Spawned {
    /// Takes charge of `child`: it is killed when this is dropped, or when
    /// the test process exits.
    pub fn new(child: Child, what: &str) -> Spawned {
        kill_at_exit(child.id());
        Spawned {
            child,
            what: what.to_string(),
        }
    }

    /// Starts `cmd` and waits until `addr` accepts TCP connections.
    pub fn listening(mut cmd: Command, addr: SocketAddr, what: &str) -> Spawned {
        cmd.stdin(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let mut spawned = Spawned::new(child, what);
        let start = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = spawned.child.try_wait() {
                panic!("{what} exited with {status} before listening on {addr}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "{what} did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        spawned
    }

    /// Stops the process with SIGTERM and returns its exit status.
    pub fn terminate(mut self, bound: Duration) -> std::process::ExitStatus {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                start.elapsed() < bound,
                "{} did not stop within {bound:?} of SIGTERM",
                self.what
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// How `systemd-socket-activate` hands over connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `--accept`: a connection on fd 3 with LISTEN_FDS=1, as systemd's Accept=yes.
    Accept,
    /// `--inetd`: the connection on stdin/stdout.
    Inetd,
    /// No --accept: the listening socket on fd 3, as systemd's Accept=no.
    Listener,
}

/// The responder tests run without a reconciler, so unless a test chooses
/// (`--fencing`, or a config file with `-f`), they say `--fencing off`:
/// the default, `strict`, answers `fenced` until a verdict confirms.
pub fn fencing_off_unless_chosen(pre_args: &[&str], args: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    if !pre_args.contains(&"-f") && !args.contains(&"--fencing") {
        out.extend(["--fencing".to_string(), "off".to_string()]);
    }
    out
}

/// Runs `pgsql-state [pre_args] respond [args]` under `systemd-socket-activate` on `addr`.
pub fn socket_activate(
    addr: SocketAddr,
    how: Activation,
    pre_args: &[&str],
    args: &[&str],
) -> Spawned {
    let tool = require_tool("systemd-socket-activate");
    let mut cmd = Command::new(tool);
    cmd.arg("-l").arg(addr.to_string());
    match how {
        Activation::Accept => {
            cmd.arg("--accept");
        }
        Activation::Inetd => {
            cmd.args(["--accept", "--inetd"]);
        }
        Activation::Listener => {}
    }
    cmd.arg("--")
        .arg(binary())
        .args(pre_args)
        .arg("respond")
        .args(fencing_off_unless_chosen(pre_args, args));
    cmd.stderr(Stdio::null());
    Spawned::listening(cmd, addr, &format!("socket-activated responder ({how:?})"))
}

/// Runs `pgsql-state respond --listen addr [args]`.
pub fn respond_server(addr: SocketAddr, args: &[&str]) -> Spawned {
    let mut cmd = Command::new(binary());
    cmd.args(["respond", "--listen", &addr.to_string()])
        .args(fencing_off_unless_chosen(&[], args));
    Spawned::listening(cmd, addr, "long-lived responder")
}

/// Runs `pgsql-state ARGS` and returns (exit code, stdout, stderr).
pub fn pgsql_state(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run pgsql-state");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh runtime directory for one test's verdict and maintenance files.
pub fn runtime_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join("pgsql-state-test")
        .join(format!("run-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a runtime dir");
    dir
}

/// `pgsql-state respond --conninfo CONNINFO [extra]` from a terminal (stdin
/// not a socket): it prints the word; it must exit 0 whatever the word.
pub fn respond_word(conninfo: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "respond".to_string(),
        "--conninfo".to_string(),
        conninfo.to_string(),
    ];
    args.extend(fencing_off_unless_chosen(&[], extra));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = pgsql_state(&args);
    assert_eq!(code, 0, "respond {extra:?}: {err}");
    out
}

/// The Debian package, built as the README says (`scripts/build-deb.sh`)
/// under an exclusive lock (two test files build it at once in a run),
/// and copied to `into` (the build of another file may replace it later).
/// Returns the copy's path; its file name is the one the build printed.
pub fn debian_package(into: &std::path::Path) -> PathBuf {
    use std::os::fd::AsRawFd;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(repo.join("target")).expect("create target/");
    let lock = std::fs::File::create(repo.join("target/build-deb.lock")).expect("the build lock");
    // SAFETY: flock on a descriptor we hold; it is released when `lock`
    // is dropped at the end of this function.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
    let out = super::cluster::run(&mut Command::new(repo.join("scripts/build-deb.sh")));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let built = repo.join(stdout.lines().last().expect("the .deb's path").trim());
    let name = built.file_name().expect("the .deb's file name");
    std::fs::create_dir_all(into).expect("create the package's directory");
    let copy = into.join(name);
    std::fs::copy(&built, &copy).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
    copy
}
