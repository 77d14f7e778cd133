//! `pgsql-state respond` in every mode against a real primary and standby:
//! systemd-style Accept=yes (fd 3), inetd (stdin), Accept=no (a passed
//! listener) and `--listen`, read with real `ncat` and `nc`; the http and
//! agent formats; the maintenance flag and verdict files; config handling.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(Cluster::start)
}

fn at(node: &Node, port: u16) -> SocketAddr {
    SocketAddr::new(node.addr.into(), port)
}

/// (node, the word it must say)
fn roles() -> [(&'static Node, &'static str); 2] {
    let c = cluster();
    [(&c.primary, "production\n"), (&c.standby, "standby\n")]
}

/// Under `systemd-socket-activate` in `how` on `port`, each node answers
/// its word to `ncat --recv-only` and to `nc`.
fn one_shot_answers_each_role(how: Activation, port: u16) {
    for (node, word) in roles() {
        let addr = at(node, port);
        let _activator = socket_activate(addr, how, &[], &["--conninfo", &node.conninfo()]);
        assert_eq!(ncat_recv(addr), word, "ncat --recv-only {addr}");
        assert_eq!(nc(addr), word, "nc {addr}");
    }
}

#[test]
fn accept_yes_answers_each_role_to_ncat_and_nc() {
    one_shot_answers_each_role(Activation::Accept, 5431);
}

#[test]
fn inetd_answers_each_role() {
    one_shot_answers_each_role(Activation::Inetd, 5434);
}

#[test]
fn accept_no_serves_the_passed_listener() {
    for (node, word) in roles() {
        let addr = at(node, 5435);
        let _server = socket_activate(
            addr,
            Activation::Listener,
            &[],
            &["--conninfo", &node.conninfo()],
        );
        for _ in 0..3 {
            assert_eq!(ncat_recv(addr), word, "ncat --recv-only {addr}");
        }
        assert_eq!(nc(addr), word, "nc {addr}");
    }
}

#[test]
fn long_lived_serves_many_clients_at_once() {
    for (node, word) in roles() {
        let addr = at(node, 5436);
        let server = respond_server(addr, &["--conninfo", &node.conninfo()]);
        let answers: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..64)
                .map(|_| {
                    s.spawn(move || {
                        use std::io::Read;
                        let mut stream =
                            std::net::TcpStream::connect(addr).expect("connect to the server");
                        let mut out = String::new();
                        stream.read_to_string(&mut out).expect("read the answer");
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("client thread"))
                .collect()
        });
        assert!(answers.iter().all(|a| a == word), "{answers:?}");
        assert_eq!(ncat_recv(addr), word);
        assert_eq!(nc(addr), word);
        let status = server.terminate(std::time::Duration::from_secs(5));
        assert!(
            status.success(),
            "SIGTERM must stop the server cleanly: {status}"
        );
    }
}

#[test]
fn http_format_answers_patroni_paths() {
    let c = cluster();
    let cases: &[(&Node, &str, &str)] = &[
        (&c.primary, "/primary", "HTTP/1.0 200 OK"),
        (&c.primary, "/replica", "HTTP/1.0 503 Service Unavailable"),
        (&c.primary, "/read-only", "HTTP/1.0 200 OK"),
        (&c.standby, "/primary", "HTTP/1.0 503 Service Unavailable"),
        (&c.standby, "/replica", "HTTP/1.0 200 OK"),
        (&c.standby, "/health", "HTTP/1.0 200 OK"),
        (&c.standby, "/nope", "HTTP/1.0 404 Not Found"),
    ];
    let servers: Vec<Spawned> = [&c.primary, &c.standby]
        .iter()
        .map(|n| {
            respond_server(
                at(n, 5437),
                &["--format", "http", "--conninfo", &n.conninfo()],
            )
        })
        .collect();
    for (node, path, status) in cases {
        let reply = ncat_send(
            at(node, 5437),
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
        assert!(reply.starts_with(status), "{} {path}: {reply:?}", node.name);
    }
    // One-shot under Accept=yes speaks HTTP too.
    drop(servers);
    let addr = at(&c.primary, 5438);
    let _activator = socket_activate(
        addr,
        Activation::Accept,
        &[],
        &["--format", "http", "--conninfo", &c.primary.conninfo()],
    );
    let reply = ncat_send(addr, b"GET /master HTTP/1.0\r\n\r\n");
    assert!(
        reply.starts_with("HTTP/1.0 200 OK") && reply.ends_with("\r\n\r\nproduction\n"),
        "{reply:?}"
    );
}

#[test]
fn agent_format_answers_haproxy_agent_checks() {
    let c = cluster();
    let primary = at(&c.primary, 5439);
    let standby = at(&c.standby, 5439);
    let _p = respond_server(
        primary,
        &["--format", "agent", "--conninfo", &c.primary.conninfo()],
    );
    let _s = respond_server(
        standby,
        &["--format", "agent", "--conninfo", &c.standby.conninfo()],
    );
    assert_eq!(ncat_send(primary, b"primary\n"), "up ready\n");
    assert_eq!(ncat_send(primary, b"replica\n"), "down #production\n");
    assert_eq!(ncat_send(standby, b"replica\n"), "up ready\n");
    assert_eq!(ncat_send(standby, b"primary\n"), "down #standby\n");
    // No agent-send: the pool may be `prod`, so only the primary is up.
    assert_eq!(ncat_recv(primary), "up ready\n");
    assert_eq!(ncat_recv(standby), "down #standby\n");
    // Review item 18.6: HAProxy's `agent-send` line late (a lost segment
    // costs at least 200 ms of retransmit). A standby must not answer
    // `up` to what may be `prod`.
    for (addr, want) in [(standby, "down #standby\n"), (primary, "up ready\n")] {
        assert_eq!(late_agent_send(addr, b"primary\n"), want, "{addr}");
    }
}

/// Connects to an agent, waits 300 ms, then sends `line`; returns the
/// answer.
fn late_agent_send(addr: SocketAddr, line: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .expect("connect to the agent");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    // Read from the start, so an answer that comes before the line is kept
    // even if the late send then meets a reset.
    let mut reader = conn.try_clone().expect("clone the socket");
    let read = std::thread::spawn(move || {
        let mut answer = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&answer).into_owned()
    });
    // The fault under test is the delay itself, not a wait for a condition.
    std::thread::sleep(Duration::from_millis(300));
    // The agent may already have answered and closed: a failed send is fine.
    let _ = conn.write_all(line);
    read.join().expect("the reader thread")
}

fn word_of(node: &Node, extra: &[&str]) -> String {
    respond_word(&node.conninfo(), extra)
}

#[test]
fn maintenance_flag_drains_the_node() {
    let c = cluster();
    let dir = runtime_dir("maintenance");
    let d = dir.to_str().expect("utf-8 path");
    assert_eq!(word_of(&c.primary, &["--runtime-dir", d]), "production\n");
    let (code, out, _) = pgsql_state(&["maintenance", "on", "--runtime-dir", d]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(word_of(&c.primary, &["--runtime-dir", d]), "maintenance\n");
    assert_eq!(word_of(&c.standby, &["--runtime-dir", d]), "maintenance\n");
    // Over the wire too, and in agent format it drains.
    let addr = at(&c.primary, 5440);
    let _server = respond_server(
        addr,
        &[
            "--format",
            "agent",
            "--runtime-dir",
            d,
            "--conninfo",
            &c.primary.conninfo(),
        ],
    );
    assert_eq!(ncat_recv(addr), "drain #maintenance\n");
    let (code, _, _) = pgsql_state(&["maintenance", "off", "--runtime-dir", d]);
    assert_eq!(code, 0);
    assert_eq!(word_of(&c.primary, &["--runtime-dir", d]), "production\n");
    assert_eq!(ncat_recv(addr), "up ready\n");
}

/// Reads this machine's boot id and CLOCK_BOOTTIME, as the responder does.
fn clock_now() -> (String, u64) {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot id");
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (
        boot.trim().to_string(),
        ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000,
    )
}

/// A verdict file's text, written `age_ms` ago and valid for `valid_ms`.
fn verdict_text(kind: &str, age_ms: u64, valid_ms: u64, identity: Option<&str>) -> String {
    let (boot, now) = clock_now();
    let mut text = format!(
        "verdict={kind}\nreason=test\nboot_id={boot}\nboottime_ms={}\nvalid_ms={valid_ms}\n",
        now - age_ms
    );
    if let Some(identity) = identity {
        text.push_str(identity);
    }
    text
}

#[test]
fn verdict_files_steer_the_answer() {
    let c = cluster();
    let p = &c.primary;
    let identity = p.sql(
        "SELECT format(E'system_identifier=%s\\ntimeline=%s\\npostmaster_start_us=%s\\n', \
         (SELECT system_identifier FROM pg_control_system()), \
         ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int, \
         (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint)",
    ) + "\n";
    let wrong_timeline = identity.replace("timeline=1\n", "timeline=9\n");
    assert_ne!(
        identity, wrong_timeline,
        "the primary is on timeline 1: {identity}"
    );
    enum File {
        None,
        Text(String),
        Directory,
    }
    let cases: Vec<(&str, &Node, File, &str, &str)> = vec![
        ("no verdict", p, File::None, "verdict", "production\n"),
        (
            "fresh fence",
            p,
            File::Text(verdict_text("fenced", 0, 60_000, None)),
            "verdict",
            "fenced\n",
        ),
        (
            "stale fence holds",
            p,
            File::Text(verdict_text("fenced", 120_000, 60_000, None)),
            "verdict",
            "fenced\n",
        ),
        (
            "fence ignored when off",
            p,
            File::Text(verdict_text("fenced", 0, 60_000, None)),
            "off",
            "production\n",
        ),
        (
            "garbage fails closed",
            p,
            File::Text("verdict=\u{1}\n".into()),
            "verdict",
            "fenced\n",
        ),
        (
            "unreadable fails closed",
            p,
            File::Directory,
            "verdict",
            "fenced\n",
        ),
        (
            "production verdict",
            p,
            File::Text(verdict_text("production", 0, 60_000, None)),
            "verdict",
            "production\n",
        ),
        (
            "strict without verdict",
            p,
            File::None,
            "strict",
            "fenced\n",
        ),
        (
            "strict lease",
            p,
            File::Text(verdict_text("production", 0, 60_000, Some(&identity))),
            "strict",
            "production\n",
        ),
        (
            "strict lease expired",
            p,
            File::Text(verdict_text("production", 61_000, 60_000, Some(&identity))),
            "strict",
            "fenced\n",
        ),
        (
            "strict other timeline",
            p,
            File::Text(verdict_text("production", 0, 60_000, Some(&wrong_timeline))),
            "strict",
            "fenced\n",
        ),
        (
            "lagging verdict",
            &c.standby,
            File::Text(verdict_text("lagging", 0, 60_000, None)),
            "verdict",
            "lagging\n",
        ),
        (
            "stale lagging verdict",
            &c.standby,
            File::Text(verdict_text("lagging", 61_000, 60_000, None)),
            "verdict",
            "standby\n",
        ),
        (
            "unreadable on a standby",
            &c.standby,
            File::Directory,
            "verdict",
            "standby\n",
        ),
    ];
    for (i, (name, node, file, fencing, want)) in cases.into_iter().enumerate() {
        let dir = runtime_dir(&format!("verdict-{i}"));
        match file {
            File::None => {}
            File::Text(text) => std::fs::write(dir.join("verdict"), text).expect("write verdict"),
            File::Directory => std::fs::create_dir(dir.join("verdict")).expect("mkdir verdict"),
        }
        let got = word_of(
            node,
            &[
                "--fencing",
                fencing,
                "--runtime-dir",
                dir.to_str().expect("utf-8"),
            ],
        );
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn bad_conninfo_and_unreachable_postgres_say_down() {
    let c = cluster();
    // A bad --conninfo is refused like the same value in the file, naming
    // the flag (a socket client hears `down: config error`).
    let (code, out, err) = pgsql_state(&["respond", "--conninfo", "port=notaport"]);
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert!(err.contains("--conninfo: not a valid conninfo"), "{err}");
    let (_, out, _) = pgsql_state(&[
        "respond",
        "--conninfo",
        "host=/nonexistent port=5432 user=postgres",
    ]);
    assert_eq!(out, "down: no server socket\n");
    let refused = format!("host={} port=1 user=postgres", c.spare_addr(9));
    let (_, out, _) = pgsql_state(&["respond", "--conninfo", &refused]);
    assert_eq!(out, "down: connection refused\n");
    let nodb = format!("{} dbname=nosuchdb", c.primary.conninfo());
    let (_, out, _) = pgsql_state(&["respond", "--conninfo", &nodb]);
    assert_eq!(out, "down: no such database\n");
}

#[test]
fn config_file_drives_respond_and_errors_exit_78() {
    let c = cluster();
    let dir = runtime_dir("config");
    let config = dir.join("pgsql-state.yml");
    let base =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/pgsql-state.yml"))
            .expect("conf/pgsql-state.yml");
    let text = base.replace(
        "conninfo: \"host=/var/run/postgresql port=5432 user=postgres dbname=postgres\"",
        &format!("conninfo: \"{}\"", c.standby.conninfo()),
    );
    assert_ne!(text, base, "the shipped config sets postgres.conninfo");
    // No reconciler runs here: the file says how verdicts are used.
    let text = text.replace("  fencing: strict", "  fencing: verdict");
    std::fs::write(&config, &text).expect("write config");
    let cfg = config.to_str().expect("utf-8");
    let (code, out, err) = pgsql_state(&[
        "-f",
        cfg,
        "respond",
        "--runtime-dir",
        dir.to_str().expect("utf-8"),
    ]);
    assert_eq!((code, out.as_str()), (0, "standby\n"), "{err}");
    // A flag overrides the file.
    let (_, out, _) = pgsql_state(&[
        "-f",
        cfg,
        "respond",
        "--runtime-dir",
        dir.to_str().expect("utf-8"),
        "--conninfo",
        &c.primary.conninfo(),
    ]);
    assert_eq!(out, "production\n");

    // A broken file: exit 78 with the key and line, and a client still hears why.
    std::fs::write(&config, text.replace("  watchDog:", "  watchDogg:")).expect("write config");
    let (code, _, err) = pgsql_state(&["-f", cfg, "respond"]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("harepd.watchDogg: unknown key"), "{err}");
    let addr = at(&c.primary, 5441);
    let _activator = socket_activate(addr, Activation::Accept, &["-f", cfg], &[]);
    assert_eq!(ncat_recv(addr), "down: config error\n");
    let (code, out, _) = pgsql_state(&["-f", cfg, "check-config"]);
    assert_eq!(code, 78);
    let missing = dir.join("missing.yml");
    let (code, _, err) = pgsql_state(&["-f", missing.to_str().expect("utf-8"), "respond"]);
    assert_eq!(
        code, 78,
        "an explicit -f that is missing is a config error: {err} {out}"
    );
}

#[test]
fn a_client_that_leaves_early_is_no_failure_and_postgres_logs_nothing() {
    use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
    use std::process::{Command, Stdio};
    let c = cluster();
    let eof_lines = || {
        std::fs::read_to_string(&c.primary.log_file)
            .unwrap_or_default()
            .matches("unexpected EOF")
            .count()
    };
    let before = eof_lines();
    for _ in 0..5 {
        let listener = std::net::TcpListener::bind((c.primary.addr, 0)).expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server_side, _) = listener.accept().expect("accept");
        // Reset the connection (linger 0) before the responder answers.
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on a socket we own, with a correctly sized value.
        unsafe {
            libc::setsockopt(
                client.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        drop(client);
        std::thread::sleep(std::time::Duration::from_millis(20));
        // SAFETY: the fd is a socket we own; Stdio takes ownership.
        let stdin = unsafe { Stdio::from_raw_fd(server_side.into_raw_fd()) };
        // Postgres logs a client's "unexpected EOF" at DEBUG1 (only the
        // "with an open transaction" one reaches LOG): raise the level for
        // these connections, so a responder that stopped saying goodbye
        // would show.
        let conninfo = format!(
            "{} application_name=leaves-early options='-c log_min_messages=debug1'",
            c.primary.conninfo()
        );
        let out = Command::new(binary())
            .args(["respond", "--conninfo", &conninfo])
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("run the responder");
        assert!(out.status.success(), "{:?}", out.status);
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "no log noise");
    }
    // Every responder backend has ended (and logged whatever it logs).
    wait_until(
        Duration::from_secs(10),
        "the responders' backends gone",
        || {
            c.primary.sql(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'leaves-early'",
            ) == "0"
        },
    );
    assert_eq!(
        eof_lines(),
        before,
        "Postgres logged unexpected EOFs from the responder"
    );
    // The control: a client that drops its connection without a goodbye,
    // at the same log level, is counted.
    let mut psql = Command::new(pg_bin("psql"))
        .args(["-X", "-h"])
        .arg(&c.primary.socket_dir)
        .args(["-p", "5432", "-U", "postgres", "-d", "postgres"])
        .env("PGOPTIONS", "-c log_min_messages=debug1")
        .env("PGAPPNAME", "drops-its-connection")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start psql");
    let connected =
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'drops-its-connection'";
    wait_until(Duration::from_secs(10), "psql connected", || {
        c.primary.sql(connected) == "1"
    });
    psql.kill().expect("kill psql");
    let _ = psql.wait();
    wait_until(
        Duration::from_secs(10),
        "the dropped connection counted",
        || eof_lines() > before,
    );
}

/// Creates a login role on the primary and waits until the standby has it.
fn create_role(c: &Cluster, name: &str, grant: &str) {
    c.primary.sql(&format!(
        "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN \
         CREATE ROLE {name} LOGIN {grant}; END IF; END$$"
    ));
    let check = format!("SELECT count(*) FROM pg_roles WHERE rolname = '{name}'");
    wait_until(Duration::from_secs(30), "the role on the standby", || {
        c.standby.sql(&check) == "1"
    });
}

#[test]
fn max_lag_bytes_works_for_a_pg_monitor_role_and_says_why_without_it() {
    let c = cluster();
    create_role(c, "monitor_only", "IN ROLE pg_monitor");
    create_role(c, "no_monitor", "");
    let as_role = |node: &Node, role: &str| {
        node.conninfo()
            .replace("user=postgres", &format!("user={role}"))
    };
    let lag = ["--max-lag-bytes", "100000000"];
    // pg_monitor and no superuser: the right word on both nodes.
    let mut args = vec!["respond", "--conninfo"];
    let standby_mon = as_role(&c.standby, "monitor_only");
    args.push(&standby_mon);
    args.extend(lag);
    let (code, out, err) = pgsql_state(&args);
    assert_eq!((code, out.as_str()), (0, "standby\n"), "{err}");
    let primary_mon = as_role(&c.primary, "monitor_only");
    assert_eq!(respond_word(&primary_mon, &lag), "production\n");
    // Without it the standby cannot be shown to stream: `lagging`, and a
    // log line that says why and what to grant.
    let standby_plain = as_role(&c.standby, "no_monitor");
    let mut args = vec!["respond", "--conninfo", &standby_plain];
    args.extend(lag);
    let (code, out, err) = pgsql_state(&args);
    assert_eq!((code, out.as_str()), (0, "lagging\n"));
    assert!(
        err.contains("cannot see pg_stat_wal_receiver") && err.contains("pg_monitor"),
        "{err}"
    );
    // A long-lived server says so at start, before any check.
    let dir = runtime_dir("no-monitor");
    let log = dir.join("responder.log");
    let addr = at(&c.standby, 5451);
    let mut cmd = std::process::Command::new(binary());
    cmd.args([
        "respond",
        "--listen",
        &addr.to_string(),
        "--conninfo",
        &standby_plain,
    ])
    .args(lag)
    .stderr(std::fs::File::create(&log).expect("create the log"));
    let _server = Spawned::listening(cmd, addr, "responder as no_monitor");
    wait_until(Duration::from_secs(10), "the start-up warning", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("cannot see pg_stat_wal_receiver")
    });
}

#[test]
fn inetd_mode_never_writes_a_usage_error_or_a_panic_to_the_client() {
    let c = cluster();
    let tool = require_tool("systemd-socket-activate");
    let conninfo = c.primary.conninfo();
    // The panic hook is compiled into debug builds only: that case runs
    // this build's binary even when the suite runs the release one.
    // (what, port, systemd-socket-activate's flags, the binary's, which binary)
    type Case<'a> = (&'a str, u16, Vec<&'a str>, Vec<&'a str>, PathBuf);
    let cases: [Case; 2] = [
        (
            "a usage error",
            5452,
            vec![],
            vec!["respond", "--no-such-flag"],
            binary(),
        ),
        (
            "a panic",
            5453,
            vec!["--setenv=PGSQL_STATE_TEST_PANIC=1"],
            vec!["respond", "--conninfo", &conninfo],
            this_build(),
        ),
    ];
    for (what, port, activate_args, args, binary) in cases {
        let addr = at(&c.primary, port);
        let mut cmd = std::process::Command::new(&tool);
        cmd.arg("-l")
            .arg(addr.to_string())
            .args(["--accept", "--inetd"])
            .args(activate_args)
            .arg("--")
            .arg(binary)
            .args(args)
            .stderr(std::process::Stdio::null());
        let _activator = Spawned::listening(cmd, addr, what);
        assert_eq!(ncat_recv(addr), "", "{what}: the client got text");
        assert_eq!(nc(addr), "", "{what}: the client got text");
    }
}

#[test]
fn listen_never_replaces_a_file_that_is_not_a_socket() {
    let dir = runtime_dir("listen-path");
    // A regular file: refused (usage error), and left as it was.
    let file = dir.join("precious.conf");
    std::fs::write(&file, "keep me\n").expect("write a file");
    let (code, _, err) = pgsql_state(&["respond", "--listen", file.to_str().expect("utf-8")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&file).expect("still there"),
        "keep me\n"
    );
    // A socket still being served: refused, and still served.
    let live = dir.join("live.sock");
    let listener = std::os::unix::net::UnixListener::bind(&live).expect("bind");
    let (code, _, err) = pgsql_state(&["respond", "--listen", live.to_str().expect("utf-8")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("in use"), "{err}");
    assert!(std::os::unix::net::UnixStream::connect(&live).is_ok());
    drop(listener);
    // A stale socket left by a server that is gone: replaced, and served.
    let mut cmd = std::process::Command::new(binary());
    cmd.args([
        "respond",
        "--listen",
        live.to_str().expect("utf-8"),
        "--conninfo",
        "host=/nonexistent",
    ]);
    cmd.stdin(std::process::Stdio::null());
    let _server = Spawned::new(
        cmd.spawn().expect("start the responder"),
        "responder on a stale socket",
    );
    wait_until(
        Duration::from_secs(10),
        "an answer on the stale path",
        || {
            use std::io::Read;
            let Ok(mut stream) = std::os::unix::net::UnixStream::connect(&live) else {
                return false;
            };
            let mut out = String::new();
            let _ = stream.read_to_string(&mut out);
            out == "down: no server socket\n"
        },
    );
}

/// `/metrics`, parsed by the reference OpenMetrics parser (Python's
/// `prometheus_client`): one `name{labels} value` line per sample, sorted.
fn scrape(addr: SocketAddr) -> String {
    let reply = ncat_send(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    assert!(head.starts_with("HTTP/1.0 200 OK"), "{reply:?}");
    assert!(
        head.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    // Debian's python3 with python3-prometheus-client (install-deps.sh),
    // not whatever python3 comes first on PATH.
    let python = "/usr/bin/python3";
    let parse = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        rows = []\n\
        for family in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in family.samples:\n\
        \x20       labels = ','.join('%s=%s' % kv for kv in sorted(s.labels.items()))\n\
        \x20       rows.append('%s{%s} %r' % (s.name, labels, float(s.value)))\n\
        print('\\n'.join(sorted(rows)))\n";
    let out = run_client(
        python,
        &["-c", parse],
        body.as_bytes(),
        Duration::from_secs(30),
    );
    assert!(!out.trim().is_empty(), "nothing parsed from {body:?}");
    out
}

/// The value of the sample `name{labels}` in a scrape.
fn sample(scraped: &str, name: &str) -> Option<f64> {
    scraped
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_parse_with_a_real_prometheus_parser() {
    let c = cluster();
    let runtime = runtime_dir("metrics");
    let identity = c.primary.sql(
        "SELECT 'system_identifier=' || (SELECT system_identifier FROM pg_control_system()) \
         || E'\\ntimeline=' || ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int \
         || E'\\npostmaster_start_us=' || (extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint",
    );
    std::fs::write(
        runtime.join("verdict"),
        verdict_text("production", 2_000, 60_000, Some(&format!("{identity}\n"))),
    )
    .expect("write a verdict");
    let primary = at(&c.primary, 5442);
    let standby = at(&c.standby, 5442);
    let runtime_arg = runtime.to_str().expect("utf-8");
    let _p = respond_server(
        primary,
        &[
            "--format",
            "http",
            "--fencing",
            "strict",
            "--runtime-dir",
            runtime_arg,
            "--conninfo",
            &c.primary.conninfo(),
        ],
    );
    let _s = respond_server(
        standby,
        &["--format", "http", "--conninfo", &c.standby.conninfo()],
    );
    let p = scrape(primary);
    println!("primary:\n{p}");
    assert_eq!(
        sample(&p, "pgsql_state_word{word=production}"),
        Some(1.0),
        "{p}"
    );
    assert_eq!(
        sample(&p, "pgsql_state_word{word=standby}"),
        Some(0.0),
        "{p}"
    );
    assert_eq!(sample(&p, "pgsql_state_in_recovery{}"), Some(0.0), "{p}");
    assert_eq!(sample(&p, "pgsql_state_timeline{}"), Some(1.0), "{p}");
    assert_eq!(
        sample(&p, "pgsql_state_verdict{kind=production}"),
        Some(1.0),
        "{p}"
    );
    assert_eq!(sample(&p, "pgsql_state_fenced{}"), Some(0.0), "{p}");
    assert_eq!(sample(&p, "pgsql_state_maintenance{}"), Some(0.0), "{p}");
    let age = sample(&p, "pgsql_state_verdict_age_seconds{}").expect("the verdict's age");
    assert!((2.0..30.0).contains(&age), "verdict age {age}");
    let took = sample(&p, "pgsql_state_check_duration_seconds{}").expect("the check's duration");
    assert!(took > 0.0 && took < 5.0, "check duration {took}");
    let s = scrape(standby);
    println!("standby:\n{s}");
    assert_eq!(
        sample(&s, "pgsql_state_word{word=standby}"),
        Some(1.0),
        "{s}"
    );
    assert_eq!(sample(&s, "pgsql_state_in_recovery{}"), Some(1.0), "{s}");
    assert!(sample(&s, "pgsql_state_lag_bytes{}").is_some(), "{s}");
    // No verdict in the standby's runtime directory (fencing off): all 0.
    assert_eq!(
        sample(&s, "pgsql_state_verdict{kind=standby}"),
        Some(0.0),
        "{s}"
    );
    assert_eq!(sample(&p, "pgsql_state_verdict_tie{}"), Some(0.0), "{p}");
    // A tie in the verdict (two primaries claim the highest timeline).
    std::fs::write(
        runtime.join("verdict"),
        verdict_text(
            "fenced",
            2_000,
            60_000,
            Some(&format!("{identity}\ntie=1\n")),
        ),
    )
    .expect("write a tie verdict");
    let tied = scrape(primary);
    assert_eq!(
        sample(&tied, "pgsql_state_verdict_tie{}"),
        Some(1.0),
        "{tied}"
    );
    assert_eq!(
        sample(&tied, "pgsql_state_word{word=fenced}"),
        Some(1.0),
        "{tied}"
    );
    // Every metric and label value the shipped alert rules and Grafana
    // dashboard select is one a real scrape serves (a renamed metric would
    // leave them silently empty).
    let served: Vec<&str> = p.lines().chain(s.lines()).chain(tied.lines()).collect();
    let selectors = common::monitoring::shipped_selectors();
    assert!(selectors.len() >= 15, "{selectors:?}");
    for sel in &selectors {
        let found = served.iter().any(|line| {
            line.strip_prefix(sel.name.as_str())
                .and_then(|rest| rest.strip_prefix('{'))
                .and_then(|rest| rest.split_once('}'))
                .is_some_and(|(labels, _)| {
                    let labels: Vec<&str> = labels.split(',').collect();
                    sel.labels
                        .iter()
                        .all(|(k, v)| labels.contains(&format!("{k}={v}").as_str()))
                })
        });
        assert!(
            found,
            "{} selects {}{:?}, which no scrape served:\n{}",
            sel.file,
            sel.name,
            sel.labels,
            served.join("\n")
        );
    }
    // One-shot (Accept=yes) scrapes the same way; a drained node says so.
    let (code, _, err) = pgsql_state(&["maintenance", "on", "--runtime-dir", runtime_arg]);
    assert_eq!(code, 0, "{err}");
    let addr = at(&c.primary, 5443);
    let _activator = socket_activate(
        addr,
        Activation::Accept,
        &[],
        &[
            "--format",
            "http",
            "--runtime-dir",
            runtime_arg,
            "--conninfo",
            &c.primary.conninfo(),
        ],
    );
    let m = scrape(addr);
    assert_eq!(sample(&m, "pgsql_state_maintenance{}"), Some(1.0), "{m}");
    assert_eq!(
        sample(&m, "pgsql_state_word{word=maintenance}"),
        Some(1.0),
        "{m}"
    );
}

/// Review item 19.2: a one-shot `http` check whose client says nothing
/// gets its 400 without the responder asking Postgres anything. Here the
/// "Postgres" is a listener the test owns, which counts the connections
/// the responder makes to it; a real request, the control, makes one.
#[test]
fn a_one_shot_http_check_that_sends_nothing_never_reaches_postgres() {
    use std::io::{Read, Write};
    let c = cluster();
    let pg = std::net::TcpListener::bind((c.spare_addr(40), 0)).expect("bind the fake Postgres");
    pg.set_nonblocking(true).expect("nonblocking");
    let conninfo = format!(
        "host={} port={} user=postgres dbname=postgres connect_timeout=1",
        c.spare_addr(40),
        pg.local_addr().expect("its address").port()
    );
    let addr = at(&c.primary, 5455);
    let _activator = socket_activate(
        addr,
        Activation::Accept,
        &[],
        &[
            "--format",
            "http",
            "--check-timeout",
            "1",
            "--conninfo",
            &conninfo,
        ],
    );
    let exchange = |request: &[u8]| {
        let mut conn = std::net::TcpStream::connect(addr).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a read timeout");
        conn.write_all(request).expect("send");
        let mut reply = String::new();
        let _ = conn.read_to_string(&mut reply);
        reply
    };
    let connections = || {
        let mut n = 0;
        while let Ok((held, _)) = pg.accept() {
            drop(held);
            n += 1;
        }
        n
    };
    // Silent, then garbled (HTTP/2's preface): 400, and Postgres unasked.
    for request in [&b""[..], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"] {
        let reply = exchange(request);
        assert!(reply.starts_with("HTTP/1.0 400 "), "{reply:?}");
    }
    assert_eq!(connections(), 0, "the responder asked Postgres for nothing");
    // The control: a real request makes the responder connect.
    let reply = exchange(b"GET /primary HTTP/1.0\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.0 503 "), "{reply:?}");
    wait_until(Duration::from_secs(5), "the control's connection", || {
        connections() > 0
    });
}
