//! Table tests for config parsing: harepd's templates, every new key, and
//! the problems `check-config` must report with their lines.

use super::*;

/// harepd's template exactly as its README prints it: eight-space indent,
/// and `tls:` left empty with its keys beside it.
const HAREPD_README: &str = r#"
        harepd:
            nodeName: "node_1"
            primaryIP: "10.21.57.61"
            allowRO: false
            hbaConfig: "/etc/postgresql/12/main/pg_hba.conf"
            haproxy:
                server: 
                - "10.21.57.65"
                users:
                  readOnly: "haro"
                  readWrite: "harw"
            authModes: 
                allow: "md5"
                deny: "reject"
            repmgr:
                user: "repmgr"
                db: "repmgr"
            gRPC:
                tls:
                enabled: false
                ca: "/etc/harepd/ca_cert.pem"
                cert: "/etc/harepd/server_cert.pem"
                key: "/etc/harepd/server_key.pem"
                bindPort: 10000
                bindAddress: "10.21.51.61"
                serverHostOverride: ""
                neighbours:
                - "10.21.57.61:10000"
                witness: "10.21.57.63:10000"
                connectionDeadline: 5
            watchDog: 15
            logs: 
                filePath: /var/log/harepd.log
                maxAge: 86400
                rotationTime: 604800
"#;

/// harepd's `controllers/conf.yml`: TLS nested, witness without a port.
const HAREPD_CONF_YML: &str = r#"harepd:
  nodeName: "node_1"
  primaryIP: "10.21.57.61"
  allowRO: false
  hbaConfig: "/etc/postgresql/12/main/pg_hba.conf"
  haproxy:
    server: 
    - "10.21.57.65"
    users:
      readOnly: "haro"
      readWrite: "harw"
  authModes: 
      allow: "md5"
      deny: "reject"
  repmgr:
    user: "repmgr"
    db: "repmgr"
  gRPC:
    tls:
      enabled: false
      ca: "/etc/harepd/ca_cert.pem"
      cert: "/etc/harepd/server_cert.pem"
      key: "/etc/harepd/server_key.pem"
    bindPort: 10000
    bindAddress: "10.21.51.61"
    serverHostOverride: ""
    neighbours:
      - "10.21.57.61:10000"
    witness: 10.21.57.63
    connectionDeadline: 5
  watchDog: 15
  logs: 
    filePath: /var/log/harepd.log
    maxAge: 86400
    rotationTime: 604800
    # info: /dev/null
"#;

fn ok(text: &str) -> Loaded {
    match parse(text) {
        Ok(loaded) => loaded,
        Err(problems) => panic!("expected a valid config, got {problems:#?}"),
    }
}

fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(loaded) => panic!("expected problems, got {:#?}", loaded.config),
        Err(problems) => problems.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn harepd_readme_template_loads_unchanged() {
    let loaded = ok(HAREPD_README);
    let c = &loaded.config;
    assert_eq!(c.node_name, "node_1");
    assert_eq!(c.primary_ip.to_string(), "10.21.57.61");
    assert!(!c.allow_ro);
    assert_eq!(c.haproxy_servers.len(), 1);
    assert_eq!(c.read_write_user, "harw");
    assert_eq!(c.read_only_user.as_deref(), Some("haro"));
    assert!(!c.grpc.tls.enabled);
    assert_eq!(
        c.grpc.tls.ca,
        Some(PathBuf::from("/etc/harepd/ca_cert.pem"))
    );
    assert_eq!(c.grpc.witness.as_deref(), Some("10.21.57.63:10000"));
    assert_eq!(c.grpc.server_host_override, None);
    assert_eq!(c.watchdog, Duration::from_secs(15));
    // The new keys take their defaults.
    assert_eq!(
        c.responder,
        ResponderSettings {
            lease: Duration::from_secs(35),
            ..ResponderSettings::default()
        }
    );
    let warned: Vec<&str> = loaded.warnings.iter().map(|w| w.path.as_str()).collect();
    // harepd's template sets the TLS files with TLS off, and node_1 lists
    // itself as its neighbour: told, not refused.
    assert_eq!(
        warned,
        ["harepd.logs", "harepd.gRPC.tls", "harepd.gRPC.neighbours.0"]
    );
    assert_eq!(loaded.warnings[0].line, Some(33));
    assert!(
        loaded.warnings[2].message.contains("this node's own peer"),
        "{}",
        loaded.warnings[2]
    );
    assert!(c.grpc.neighbours.is_empty());
    assert_eq!(c.grpc.voter_count(), 2);
}

#[test]
fn harepd_conf_yml_loads_and_witness_takes_bind_port() {
    let c = ok(HAREPD_CONF_YML).config;
    assert_eq!(c.grpc.witness.as_deref(), Some("10.21.57.63:10000"));
    // node_1 at 10.21.57.61 lists itself: left out, not a second vote.
    assert!(c.grpc.neighbours.is_empty());
    assert_eq!(c.grpc.other_voters(), ["10.21.57.63:10000"]);
    assert_eq!(c.grpc.connection_deadline, Duration::from_secs(5));
    assert_eq!(c.repmgr_user.as_deref(), Some("repmgr"));
}

#[test]
fn new_keys_are_read() {
    let text = format!(
        "{HAREPD_CONF_YML}  postgres:\n    conninfo: \"host=/tmp port=5433 user=me dbname=x\"\n  checkTimeout: 0.5\n  maxLagBytes: 1048576\n  fencing: strict\n  fenceUsers: [app, batch]\n  runtimeDir: /run/x\n  responder:\n    format: http\n"
    );
    let r = ok(&text).config;
    assert_eq!(r.fence_users, ["app", "batch"]);
    let r = r.responder;
    assert_eq!(r.conninfo, "host=/tmp port=5433 user=me dbname=x");
    assert_eq!(r.check_timeout, Duration::from_millis(500));
    assert_eq!(r.max_lag_bytes, Some(1_048_576));
    assert_eq!(r.fencing, Fencing::Strict);
    assert_eq!(r.runtime_dir, PathBuf::from("/run/x"));
    assert_eq!(r.format, Format::Http);
}

#[test]
fn every_problem_is_reported_with_its_line() {
    // Each case: an edit of harepd's conf.yml, and the problems it must give.
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "unknown key",
            "  watchDog: 15\n",
            &["31: harepd.watchDg: unknown key"],
        ),
        (
            "two unknown keys at two depths",
            "    bindPort: 10000\n",
            &[
                "18: harepd.gRPC.bindPort: missing (required)",
                "24: harepd.gRPC.bindPrt: unknown key",
                "31: harepd.watchDg: unknown key",
            ],
        ),
        (
            "wrong type",
            "    bindPort: 10000\n",
            &["24: harepd.gRPC.bindPort: invalid type: string \"ten\", expected u16"],
        ),
        (
            "bad IP",
            "  primaryIP: \"10.21.57.61\"\n",
            &["3: harepd.primaryIP: \"10.21.57.999\" is not an IP address"],
        ),
        (
            "bad fencing",
            "  watchDog: 15\n",
            &["32: harepd.fencing: unknown variant `always`, expected one of `off`, `verdict`, `strict`"],
        ),
        (
            "bad witness",
            "    witness: 10.21.57.63\n",
            &["29: harepd.gRPC.witness: \"10.21.57.63:http\": \"http\" is not a port"],
        ),
        (
            "negative timeout",
            "  watchDog: 15\n",
            &["32: harepd.checkTimeout: -1 is not a number of seconds in (0, 86400]"],
        ),
        (
            "bad auth method",
            "      deny: \"reject\"\n",
            &["14: harepd.authModes.deny: \"nope\" is not a pg_hba.conf auth method"],
        ),
        (
            "requireClientCert while TLS is off",
            "      enabled: false\n",
            &["21: harepd.gRPC.tls.requireClientCert: is true while harepd.gRPC.tls.enabled is false: TLS is off, so no client certificate is asked for and any client is served; set gRPC.tls.enabled: true (with cert, key and ca), or remove requireClientCert"],
        ),
        (
            "a node name with white space",
            "  nodeName: \"node_1\"\n",
            &["2: harepd.nodeName: \"node 1\" cannot be a node name: it contains white space (a node name is one word of at most 63 bytes, with no white space or control characters, like repmgr's node_name)"],
        ),
    ];
    let replacements: &[&str] = &[
        "  watchDg: 15\n",
        "    bindPrt: 10000\n",
        "    bindPort: ten\n",
        "  primaryIP: \"10.21.57.999\"\n",
        "  watchDog: 15\n  fencing: always\n",
        "    witness: 10.21.57.63:http\n",
        "  watchDog: 15\n  checkTimeout: -1\n",
        "      deny: \"nope\"\n",
        "      enabled: false\n      requireClientCert: true\n",
        "  nodeName: \"node 1\"\n",
    ];
    for ((name, from, want), to) in cases.iter().zip(replacements) {
        let mut text = HAREPD_CONF_YML.replace(from, to);
        if *name == "two unknown keys at two depths" {
            text = text.replace("  watchDog: 15\n", "  watchDg: 15\n");
        }
        assert_ne!(text, HAREPD_CONF_YML, "{name}: the edit did not apply");
        assert_eq!(problems(&text), *want, "{name}");
    }
}

#[test]
fn missing_required_keys_are_all_named() {
    let text =
        "harepd:\n  allowRO: true\n  haproxy:\n    users: {}\n  gRPC:\n    bindPort: 10000\n";
    assert_eq!(
        problems(text),
        [
            "1: harepd.nodeName: missing (required)",
            "1: harepd.primaryIP: missing (required)",
            "1: harepd.hbaConfig: missing (required)",
            "3: harepd.haproxy.server: missing (required)",
            "4: harepd.haproxy.users.readWrite: missing (required)",
            "4: harepd.haproxy.users.readOnly: required when allowRO is true",
            "5: harepd.gRPC.bindAddress: missing (required)",
        ]
    );
}

#[test]
fn no_root_key_and_broken_yaml() {
    assert_eq!(
        problems("pgsql: {}\n"),
        [
            "1: pgsql: unknown key",
            "harepd: missing: the file must have the root key `harepd`"
        ]
    );
    let broken = problems("harepd:\n  nodeName: [unclosed\n");
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert!(broken[0].starts_with("3: (yaml syntax): "), "{broken:?}");
}

#[test]
fn tls_keys_in_both_places_conflict() {
    let text = HAREPD_CONF_YML.replace(
        "    bindPort: 10000\n",
        "    bindPort: 10000\n    ca: /x.pem\n",
    );
    assert_eq!(
        problems(&text),
        ["25: harepd.gRPC.ca: set both here and under gRPC.tls.ca; keep one"]
    );
}

#[test]
fn host_port_forms() {
    let cases: &[(&str, Result<&str, ()>)] = &[
        ("10.0.0.1", Ok("10.0.0.1:7000")),
        ("10.0.0.1:9", Ok("10.0.0.1:9")),
        ("::1", Ok("[::1]:7000")),
        ("[::1]:9", Ok("[::1]:9")),
        ("witness.example", Ok("witness.example:7000")),
        ("witness.example:9", Ok("witness.example:9")),
        ("witness.example:0", Err(())),
        ("a b", Err(())),
        ("", Err(())),
    ];
    for (text, want) in cases {
        let got = host_port(text, 7000).map_err(|_| ());
        assert_eq!(got.as_deref(), want.as_deref(), "{text:?}");
    }
}

#[test]
fn type_errors_do_not_hide_other_problems() {
    let text = HAREPD_CONF_YML
        .replace("    bindPort: 10000\n", "    bindPort: ten\n")
        .replace("  allowRO: false\n", "  allowRO: maybe\n")
        .replace("  watchDog: 15\n", "  watchDg: 15\n");
    assert_eq!(
        problems(&text),
        [
            "4: harepd.allowRO: invalid type: string \"maybe\", expected a boolean",
            "24: harepd.gRPC.bindPort: invalid type: string \"ten\", expected u16",
            "31: harepd.watchDg: unknown key",
        ]
    );
}

/// harepd's conf.yml turned into the witness's: its own bind address is
/// the configured witness.
fn witness_yml() -> String {
    HAREPD_CONF_YML.replace(
        "bindAddress: \"10.21.51.61\"",
        "bindAddress: \"10.21.57.63\"",
    )
}

#[test]
fn the_witness_needs_no_postgres_keys() {
    // harepd's template, unchanged but for the address: hbaConfig present.
    let with_keys = ok(&witness_yml()).config;
    assert!(with_keys.is_witness());
    assert_eq!(with_keys.hba_config, None, "ignored on the witness");
    // Without hbaConfig, and with a postgres conninfo that would not parse
    // on a data node: the witness ignores both.
    let bare = witness_yml().replace("  hbaConfig: \"/etc/postgresql/12/main/pg_hba.conf\"\n", "")
        + "  postgres:\n    conninfo: \"not a conninfo ===\"\n";
    let c = ok(&bare).config;
    assert!(c.is_witness());
    // A data node without hbaConfig is refused, naming the key.
    let data =
        HAREPD_CONF_YML.replace("  hbaConfig: \"/etc/postgresql/12/main/pg_hba.conf\"\n", "");
    assert_eq!(problems(&data), ["1: harepd.hbaConfig: missing (required)"]);
}

#[test]
fn flags_are_a_fragment_checked_like_the_file() {
    let lease = Duration::from_secs(35);
    let flags = |f: ResponderFragment| {
        f.validate(FragmentSource::Flags, "", lease)
            .map_err(|ps| ps.iter().map(ToString::to_string).collect::<Vec<_>>())
    };
    type Case<'a> = (&'a str, ResponderFragment, Result<(), Vec<&'a str>>);
    let cases: Vec<Case<'_>> = vec![
        ("no flags", ResponderFragment::default(), Ok(())),
        (
            "--max-lag-bytes 0",
            ResponderFragment {
                max_lag_bytes: Some(0),
                ..ResponderFragment::default()
            },
            Err(vec![
                "--max-lag-bytes: must be above 0 (leave it unset for no bound)",
            ]),
        ),
        (
            "relative --runtime-dir",
            ResponderFragment {
                runtime_dir: Some("run/x".into()),
                ..ResponderFragment::default()
            },
            Err(vec!["--runtime-dir: must be an absolute path"]),
        ),
        (
            "--check-timeout 0 and a bad conninfo",
            ResponderFragment {
                check_timeout: Some(0.0),
                conninfo: Some("host='unterminated".into()),
                ..ResponderFragment::default()
            },
            Err(vec![
                "--conninfo: not a valid conninfo: invalid connection string: unterminated quoted connection parameter value",
                "--check-timeout: 0 is not a number of seconds in (0, 86400]",
            ]),
        ),
    ];
    for (name, fragment, want) in cases {
        let got = flags(fragment).map(|_| ());
        let want = want.map_err(|w| w.iter().map(ToString::to_string).collect::<Vec<_>>());
        assert_eq!(got, want, "{name}");
    }
    // The same values in the file are refused the same way, with lines.
    let text = format!("{HAREPD_CONF_YML}  maxLagBytes: 0\n  runtimeDir: run/x\n");
    assert_eq!(
        problems(&text),
        [
            "37: harepd.maxLagBytes: must be above 0 (leave it unset for no bound)",
            "38: harepd.runtimeDir: must be an absolute path",
        ]
    );
    // Flags go over the file's keys, one by one.
    let file = ok(&format!(
        "{HAREPD_CONF_YML}  maxLagBytes: 100\n  fencing: strict\n"
    ));
    let merged = file
        .responder_fragment
        .overlay(ResponderFragment {
            max_lag_bytes: Some(200),
            ..ResponderFragment::default()
        })
        .validate(FragmentSource::Flags, "", lease)
        .expect("valid");
    assert_eq!(
        (merged.max_lag_bytes, merged.fencing),
        (Some(200), Fencing::Strict)
    );
}

/// Each voter is asked and counted once. An entry that is this node, the
/// witness again, or a repeat (in another spelling of the same address or
/// another case of the same name) is left out with a warning that names
/// its key and line; the file still loads (refusing it at an upgrade would
/// stop every peer and fence every primary).
#[test]
fn neighbours_that_are_this_node_the_witness_or_repeats_are_left_out_and_named() {
    let text = HAREPD_CONF_YML
        .replace(
            "    neighbours:\n      - \"10.21.57.61:10000\"\n",
            "    neighbours:\n      - \"10.21.57.61:10000\"\n      - \"10.21.57.62:10000\"\n      \
             - \"10.21.57.63\"\n      - \"::ffff:10.21.57.62\"\n      - \"Node3.example:10000\"\n      \
             - \"node3.EXAMPLE:10000\"\n      - \"10.21.51.61:10000\"\n",
        );
    let loaded = ok(&text);
    let c = &loaded.config;
    assert_eq!(
        c.grpc.neighbours,
        ["10.21.57.62:10000", "Node3.example:10000"]
    );
    assert_eq!(
        c.grpc.other_voters(),
        [
            "10.21.57.62:10000",
            "Node3.example:10000",
            "10.21.57.63:10000"
        ]
    );
    assert_eq!(c.grpc.voter_count(), 4);
    let warned: Vec<(String, Option<usize>, &str)> = loaded
        .warnings
        .iter()
        .filter(|w| w.path.starts_with("harepd.gRPC.neighbours"))
        .map(|w| (w.path.clone(), w.line, w.message.as_str()))
        .collect();
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).map(|i| i + 1);
    let want = [
        (
            "harepd.gRPC.neighbours.0",
            line_of("10.21.57.61:10000"),
            "this node's own peer",
        ),
        (
            "harepd.gRPC.neighbours.2",
            line_of("- \"10.21.57.63\""),
            "is the witness",
        ),
        (
            "harepd.gRPC.neighbours.3",
            line_of("::ffff:10.21.57.62"),
            "repeats harepd.gRPC.neighbours.1",
        ),
        (
            "harepd.gRPC.neighbours.5",
            line_of("node3.EXAMPLE"),
            "repeats harepd.gRPC.neighbours.4",
        ),
        (
            "harepd.gRPC.neighbours.6",
            line_of("10.21.51.61:10000"),
            "this node's own peer",
        ),
    ];
    assert_eq!(warned.len(), want.len(), "{warned:#?}");
    for ((path, line, message), (want_path, want_line, want_text)) in warned.iter().zip(want) {
        assert_eq!(path, want_path);
        assert_eq!(*line, want_line, "{path}");
        assert!(message.contains(want_text), "{path}: {message}");
    }
}

/// A neighbour named by a host name is this node when the name resolves
/// to one of its addresses at its port (the same file copied to every
/// host); a name that resolves elsewhere, or another port, is a voter.
#[test]
fn a_neighbour_whose_name_resolves_to_this_node_is_this_node() {
    let c = ok(HAREPD_CONF_YML).config;
    let primary: IpAddr = "10.21.57.61".parse().expect("an address");
    let bind: IpAddr = "10.21.51.61".parse().expect("an address");
    let mapped: IpAddr = "::ffff:10.21.57.61".parse().expect("an address");
    let other: IpAddr = "10.21.57.62".parse().expect("an address");
    let cases: &[(&str, &[IpAddr], bool)] = &[
        ("node1.example:10000", &[primary], true),
        ("node1.example:10000", &[bind], true),
        ("node1.example:10000", &[other, mapped], true),
        ("node1.example:10001", &[primary], false),
        ("node2.example:10000", &[other], false),
        ("unresolved.example:10000", &[], false),
    ];
    for (entry, resolved, want) in cases {
        assert_eq!(
            c.grpc.resolves_to_self(entry, resolved, primary),
            *want,
            "{entry} {resolved:?}"
        );
    }
}

/// watchDog has a floor: the reconcile timer runs at it and its service
/// has no start limit, so a millisecond ran reconcile back to back. A
/// value below is taken as the floor, with a warning naming key and line
/// (refusing it at an upgrade would stop every peer).
#[test]
fn watchdog_below_its_floor_is_raised_with_a_warning() {
    let text = HAREPD_CONF_YML.replace("watchDog: 15", "watchDog: 0.001");
    let loaded = ok(&text);
    assert_eq!(loaded.config.watchdog, MIN_WATCHDOG);
    assert_eq!(
        loaded.config.responder.lease,
        crate::fencing::timing::lease(MIN_WATCHDOG, Duration::from_secs(5))
    );
    let w = loaded
        .warnings
        .iter()
        .find(|w| w.path == "harepd.watchDog")
        .expect("a warning for watchDog");
    let line = text
        .lines()
        .position(|l| l.contains("watchDog: 0.001"))
        .map(|i| i + 1);
    assert_eq!(w.line, line);
    assert!(
        w.message.contains("below the floor of 1 s"),
        "{}",
        w.message
    );
    let at_floor = ok(&HAREPD_CONF_YML.replace("watchDog: 15", "watchDog: 1"));
    assert!(!at_floor
        .warnings
        .iter()
        .any(|w| w.path == "harepd.watchDog"));
}

/// Role names reach pg_hba.conf lines: each must read back as that role
/// and nothing more.
#[test]
fn role_names_are_what_pg_hba_conf_reads_as_one_role() {
    use super::validate::role_name_problem;
    let long = "r".repeat(64);
    let cases: &[(&str, bool)] = &[
        ("harw", true),
        ("app-rw", true),
        ("app.rw$1", true),
        ("Ünïcode", true),
        (&long[..63], true),
        (&long, false),
        ("", false),
        ("app\nhost all all 0.0.0.0/0 trust", false),
        ("app rw", false),
        ("app,postgres", false),
        ("\"app\"", false),
        ("app#x", false),
        ("+admins", false),
        ("@users", false),
        ("all", false),
        ("replication", false),
        ("samerole", false),
    ];
    for (name, ok) in cases {
        assert_eq!(role_name_problem(name).is_none(), *ok, "{name:?}");
    }
}
