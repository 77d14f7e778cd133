//! Table tests of reading servers from haproxy.cfg and rendering the
//! server-state file.

use super::*;

const AGENT: &str = "global
    server-state-file /var/lib/haproxy/pgsql-state.servers
    stats socket /run/haproxy/pgsql-state.sock mode 660 level admin
defaults
    load-server-state-from-file global
    default-server weight 7
listen prod
    bind *:5432
    default-server weight 100 check port 5431 agent-check agent-port 5431 agent-inter 2s
    server node_1 10.0.0.1:5432
    server node_2 10.0.0.2:5432 weight 50 # comment port 9
listen stdby
    bind *:5433
    server node_1 10.0.0.1:5432 check
backend other
    server v6 [fd00::1]:6432 check port 7
    server bare 10.0.0.3 check
";

fn server(
    backend: &str,
    name: &str,
    addr: &str,
    port: u16,
    weight: u32,
    check_port: u16,
    agent_port: u16,
) -> StateServer {
    StateServer {
        backend: backend.into(),
        name: name.into(),
        addr: addr.parse().expect("test address"),
        port,
        weight,
        check_port,
        agent_port,
    }
}

/// The rows of `text`'s checked servers, names resolved by `names`.
fn rows(text: &str, names: &[(&str, &str)]) -> Result<Vec<StateServer>, ServerStateError> {
    let owned = servers(text, 5431)?;
    resolve(&owned, |name| {
        names
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, ip)| ip.parse().expect("test address"))
    })
}

#[test]
fn servers_take_their_keys_from_the_line_the_section_then_defaults() {
    // Only prod's servers read 5431: stdby's and `other`'s are not ours.
    assert_eq!(
        rows(AGENT, &[]).expect("valid"),
        vec![
            server("prod", "node_1", "10.0.0.1", 5432, 100, 5431, 5431),
            server("prod", "node_2", "10.0.0.2", 5432, 50, 5431, 5431),
        ]
    );
}

/// Issue 25, item 3: a server written by name anywhere, or a line
/// pgsql-state cannot read in a backend it does not check, once stopped
/// HAProxy's start (exit 78 from the drop-in's ExecStartPre). Only the
/// servers whose check reads 5431 (or that route on pgsql-check) get rows,
/// and their names resolve as HAProxy's would.
#[test]
fn only_the_servers_pgsql_state_checks_get_rows_and_names_resolve() {
    let text = "global
    server-state-file /x
listen prod
    bind *:5432
    option tcp-check
    default-server inter 2s
    server node_1 db1.example:5432 check
    server node_2 10.0.0.2:5432 check
    tcp-check connect port 5431
    tcp-check expect string production
listen harepd
    option pgsql-check user harw
    server node_1 10.0.0.1:5432 check
listen http
    option httpchk GET /primary
    server node_2 10.0.0.2:5432 check port 5431
backend app
    server app1 app1.internal.example:80 check
    server app2 app2.internal.example:80 weight heavy
    default-server agent-port x
";
    assert_eq!(
        rows(text, &[("db1.example", "10.0.0.1")]).expect("valid"),
        vec![
            server("prod", "node_1", "10.0.0.1", 5432, 1, 0, 0),
            server("prod", "node_2", "10.0.0.2", 5432, 1, 0, 0),
            server("harepd", "node_1", "10.0.0.1", 5432, 1, 0, 0),
            server("http", "node_2", "10.0.0.2", 5432, 1, 5431, 0),
        ]
    );
    // A name of ours that does not resolve: HAProxy would not start
    // either; the line and server are named.
    let error = rows(text, &[])
        .expect_err("db1 does not resolve")
        .to_string();
    assert!(
        error.starts_with("line 7: server node_1: \"db1.example\" does not resolve"),
        "{error}"
    );
}

/// Checks declared in `defaults` are a section's when it declares none of
/// its own, as HAProxy takes them.
#[test]
fn checks_in_defaults_are_inherited() {
    let text = "defaults
    option tcp-check
    tcp-check connect port 5431
    tcp-check expect string production
listen prod
    server node_1 10.0.0.1:5432 check
listen other
    tcp-check connect port 8080
    server app 10.0.0.9:80 check
defaults
    option pgsql-check user harw
listen harepd
    server node_2 10.0.0.2:5432 check
";
    assert_eq!(
        rows(text, &[]).expect("valid"),
        vec![
            server("prod", "node_1", "10.0.0.1", 5432, 1, 0, 0),
            server("harepd", "node_2", "10.0.0.2", 5432, 1, 0, 0),
        ]
    );
}

#[test]
fn bad_servers_name_the_line_and_the_server() {
    let cases = [
        (
            "listen prod\n    server db1 db1.exa$mple:5432 check port 5431\n",
            "line 2: server db1: address \"db1.exa$mple:5432\" is neither an IP address nor a host name",
        ),
        (
            "listen prod\n    server a 10.0.0.1:5432 weight heavy port 5431\n",
            "line 2: server a: weight \"heavy\" is not a number",
        ),
        (
            "backend b\n    default-server agent-port x\n    server a 10.0.0.1:5432 check port 5431\n",
            "line 2: server default-server: agent-port \"x\" is not a number",
        ),
    ];
    for (text, expected) in cases {
        let error = servers(text, 5431).expect_err(text).to_string();
        assert!(error.starts_with(expected), "{text}: {error}");
    }
}

#[test]
fn the_state_file_and_the_stats_socket_come_from_global() {
    assert_eq!(
        state_file(AGENT),
        Ok(PathBuf::from("/var/lib/haproxy/pgsql-state.servers"))
    );
    assert_eq!(
        stats_socket(AGENT),
        Some(PathBuf::from("/run/haproxy/pgsql-state.sock"))
    );
    let relative = "global\n  server-state-base /var/state\n  server-state-file s\n";
    assert_eq!(state_file(relative), Ok(PathBuf::from("/var/state/s")));
    // Only `global` counts; a TCP stats socket is not one we can dump.
    let elsewhere =
        "global\n  stats socket ipv4@127.0.0.1:9999\ndefaults\n  server-state-file /x\n";
    assert_eq!(state_file(elsewhere), Err(ServerStateError::NoStateFile));
    assert_eq!(stats_socket(elsewhere), None);
}

#[test]
fn render_starts_unknown_servers_down_and_carries_known_rows() {
    let mut servers = rows(AGENT, &[]).expect("valid");
    servers.push(server("stdby", "node_1", "10.0.0.1", 5432, 7, 0, 0));
    let running = "1\n# be_id be_name srv_id srv_name ...\n\
        3 prod 1 node_1 10.0.0.1 2 0 100 100 40 15 3 4 6 0 0 0 - 5432 - 0 5431 - - 5431\n\
        4 stdby 1 node_9 10.0.0.9 2 0 1 1 40 15 3 4 6 0 0 0 - 5432 - 0 0 - - 0\n";
    let cases: [(Option<&str>, usize, [&str; 2]); 2] = [
        (
            None,
            0,
            [
                "0 prod 0 node_1 10.0.0.1 0 0 100 100 0 13 2 0 6 0 0 0 - 5432 - 0 5431 - - 5431",
                "0 prod 0 node_2 10.0.0.2 0 0 50 50 0 13 2 0 6 0 0 0 - 5432 - 0 5431 - - 5431",
            ],
        ),
        (
            Some(running),
            1,
            [
                "3 prod 1 node_1 10.0.0.1 2 0 100 100 40 15 3 4 6 0 0 0 - 5432 - 0 5431 - - 5431",
                "0 prod 0 node_2 10.0.0.2 0 0 50 50 0 13 2 0 6 0 0 0 - 5432 - 0 5431 - - 5431",
            ],
        ),
    ];
    for (dump, carried, first_rows) in cases {
        let (text, n) = render(&servers, dump);
        assert_eq!(n, carried, "{text}");
        assert!(text.starts_with(HEADER), "{text}");
        let rows: Vec<&str> = text.lines().skip(2).collect();
        assert_eq!(rows.len(), servers.len(), "{text}");
        assert_eq!(rows[..2], first_rows, "{dump:?}");
        // node_9 is not in the config, so it is not carried.
        assert!(!text.contains("node_9"), "{text}");
        assert!(rows[2].starts_with("0 stdby 0 node_1 10.0.0.1 0 0 7 7"));
    }
}
