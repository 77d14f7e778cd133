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

#[test]
fn servers_take_their_keys_from_the_line_the_section_then_defaults() {
    assert_eq!(
        servers(AGENT).expect("valid"),
        vec![
            server("prod", "node_1", "10.0.0.1", 5432, 100, 5431, 5431),
            server("prod", "node_2", "10.0.0.2", 5432, 50, 5431, 5431),
            server("stdby", "node_1", "10.0.0.1", 5432, 7, 0, 0),
            server("other", "v6", "fd00::1", 6432, 7, 7, 0),
            server("other", "bare", "10.0.0.3", 0, 7, 0, 0),
        ]
    );
}

#[test]
fn bad_servers_name_the_line_and_the_server() {
    let cases = [
        (
            "listen prod\n    server db1 db1.example:5432 check\n",
            "line 2: server db1: address \"db1.example:5432\" is not an IP address",
        ),
        (
            "listen prod\n    server a 10.0.0.1:5432 weight heavy\n",
            "line 2: server a: weight \"heavy\" is not a number",
        ),
        (
            "backend b\n    default-server agent-port x\n",
            "line 2: server default-server: agent-port \"x\" is not a number",
        ),
    ];
    for (text, expected) in cases {
        let error = servers(text).expect_err(text).to_string();
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
    let servers = servers(AGENT).expect("valid");
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
