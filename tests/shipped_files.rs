//! The files we ship are valid to the tools that read them: HAProxy's
//! configs pass `haproxy -c`, the units pass `systemd-analyze verify`, and
//! the example config passes `check-config`. Also the CLI's exit codes and
//! `check-config`'s report of every problem with its line.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The shipped HAProxy configs for pgsql-state (not Patroni's example).
const OUR_HAPROXY_CONFIGS: [&str; 4] = [
    "haproxy/haproxy.cfg",
    "haproxy/haproxy-httpchk.cfg",
    "haproxy/haproxy-pgsql-check.cfg",
    "haproxy/haproxy-agent.cfg",
];

#[test]
fn haproxy_configs_pass_haproxy_c() {
    let haproxy = require_tool("haproxy");
    for cfg in OUR_HAPROXY_CONFIGS
        .into_iter()
        .chain(["haproxy/haproxy-patroni.cfg"])
    {
        let out = Command::new(&haproxy)
            .arg("-c")
            .arg("-f")
            .arg(repo(cfg))
            .output()
            .expect("run haproxy -c");
        assert!(
            out.status.success(),
            "{cfg}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn haproxy_state_writes_a_down_row_for_every_server_of_each_shipped_config() {
    let dir = runtime_dir("server-state");
    for cfg in OUR_HAPROXY_CONFIGS {
        let text = std::fs::read_to_string(repo(cfg)).expect("read");
        for line in [
            "server-state-file /var/lib/haproxy/pgsql-state.servers",
            "load-server-state-from-file global",
        ] {
            assert!(text.contains(line), "{cfg} lacks {line:?}");
        }
        let out = dir.join("servers.state");
        let (code, _, err) = pgsql_state(&[
            "haproxy-state",
            repo(cfg).to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
        ]);
        assert_eq!(code, 0, "{cfg}: {err}");
        let state = std::fs::read_to_string(&out).expect("read the state file");
        let rows: Vec<&str> = state
            .lines()
            .filter(|l| !l.starts_with('#'))
            .skip(1)
            .collect();
        assert_eq!(rows.len(), 4, "{cfg}: {state}");
        for row in rows {
            let f: Vec<&str> = row.split_whitespace().collect();
            // srv_op_state 0 (DOWN), check status 13, result 2, health 0.
            assert_eq!(
                (f[5], f[10], f[11], f[12]),
                ("0", "13", "2", "0"),
                "{cfg}: {row}"
            );
        }
    }
    // The Patroni example names no state file: a config error (78) that
    // says which lines to add.
    let (code, _, err) = pgsql_state(&[
        "haproxy-state",
        repo("haproxy/haproxy-patroni.cfg").to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("server-state-file"), "{err}");
}

#[test]
fn the_haproxy_drop_in_passes_systemd_analyze_verify_with_debians_unit() {
    let analyze = require_tool("systemd-analyze");
    let unit = Path::new("/lib/systemd/system/haproxy.service");
    assert!(unit.exists(), "Debian's haproxy package is not installed");
    let dir = runtime_dir("haproxy-drop-in");
    std::fs::copy(unit, dir.join("haproxy.service")).expect("copy haproxy.service");
    std::fs::create_dir_all(dir.join("haproxy.service.d")).expect("mkdir");
    let drop_in = std::fs::read_to_string(repo("haproxy/haproxy.service.d/pgsql-state.conf"))
        .expect("read the drop-in")
        .replace("/usr/bin/pgsql-state", binary().to_str().expect("utf-8"));
    assert!(drop_in.contains("ExecStartPre=") && drop_in.contains("ExecReload="));
    std::fs::write(dir.join("haproxy.service.d/pgsql-state.conf"), drop_in).expect("write");
    assert_verifies(
        Command::new(analyze)
            .arg("verify")
            .arg(dir.join("haproxy.service"))
            .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display())),
    );
}

/// Runs a `systemd-analyze verify` command: it must pass with nothing to say.
fn assert_verifies(verify: &mut Command) {
    let out = verify.output().expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}

/// A lint of the shipped file's text. That HAProxy really routes by the
/// words is tested in tests/haproxy_routing.rs and tests/scenarios.rs.
#[test]
fn lint_haproxy_cfg_names_the_words_and_the_timing() {
    let text = std::fs::read_to_string(repo("haproxy/haproxy.cfg")).expect("read haproxy.cfg");
    for needle in [
        "listen prod",
        "bind *:5432",
        "tcp-check connect port 5431",
        "tcp-check expect string production",
        "listen stdby",
        "bind *:5433",
        "balance leastconn",
        "tcp-check expect string standby",
        "default-server inter 2s fastinter 1s rise 2 fall 1 on-marked-down shutdown-sessions",
        "stats socket",
    ] {
        assert!(text.contains(needle), "haproxy.cfg lacks {needle:?}");
    }
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let analyze = require_tool("systemd-analyze");
    let dir = runtime_dir("units");
    let mut units = Vec::new();
    for entry in std::fs::read_dir(repo("units"))
        .expect("read units/")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".socket")
            || name.ends_with(".service")
            || name.ends_with(".timer")
            || name.ends_with(".path")
        {
            // Point ExecStart at the binary under test; verify checks it exists.
            let text = std::fs::read_to_string(entry.path()).expect("read unit");
            let text = text.replace(
                "/usr/bin/pgsql-state",
                binary().to_str().expect("utf-8 path"),
            );
            std::fs::write(dir.join(&name), text).expect("copy unit");
            units.push(dir.join(&name));
        }
    }
    assert!(
        units.len() >= 4,
        "expected the socket and service pairs, found {units:?}"
    );
    assert_verifies(Command::new(analyze).arg("verify").args(&units));
}

/// A lint of the shipped unit's text: the limits that keep a flood from
/// failing the socket are set. The flood itself, under a real systemd, is
/// tests/systemd_units.rs.
#[test]
fn lint_accept_yes_socket_sets_flood_limits() {
    let text =
        std::fs::read_to_string(repo("units/pgsql-state.socket")).expect("read the socket unit");
    let value = |key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("pgsql-state.socket sets no {key}"))
            .trim_end_matches('s')
            .parse()
            .unwrap_or_else(|_| panic!("{key} is not a number"))
    };
    assert!(text.contains("Accept=yes") && text.contains("ListenStream=5431"));
    // systemd 252's default (200 triggers in 2 s) fails the socket for good.
    let per_second = value("TriggerLimitBurst") / value("TriggerLimitIntervalSec");
    assert!(
        per_second >= 2_000,
        "trigger limit {per_second}/s is below the 2,000/s flood target"
    );
    assert!(
        value("MaxConnections") > 64 && value("MaxConnectionsPerSource") < value("MaxConnections")
    );
}

#[test]
fn example_config_passes_check_config() {
    let (code, out, err) = pgsql_state(&[
        "-f",
        repo("conf/pgsql-state.yml").to_str().expect("utf-8"),
        "check-config",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": ok: node node_1"), "{out}");
    // What harepd's timing costs, bounds above what the issue measured
    // (a zombie's last word 16.7 s after its cut, 35 s hung; a lost
    // machine's successor 54.3 s after its promotion).
    for figure in [
        "timing: lease L 35.0 s (2 × watchDog 15.0 s + connectionDeadline 5.0 s); HAProxy's term H 7.0 s; a new primary's longest wait W 42.9 s",
        "its last `production` at most 23.1 s after the cut",
        "35.0 s if its reconciler hangs",
        "at most 58.9 s after the promotion",
    ] {
        assert!(out.contains(figure), "no {figure:?} in:\n{out}");
    }
}

#[test]
fn check_config_compares_haproxy_check_with_a_real_haproxy_cfg() {
    let conf = repo("conf/pgsql-state.yml");
    let conf = conf.to_str().expect("utf-8");
    for shipped in [
        "haproxy.cfg",
        "haproxy-httpchk.cfg",
        "haproxy-pgsql-check.cfg",
    ] {
        let cfg = repo(&format!("haproxy/{shipped}"));
        let (code, out, err) = pgsql_state(&[
            "-f",
            conf,
            "check-config",
            "--haproxy",
            cfg.to_str().expect("utf-8"),
        ]);
        assert_eq!(code, 0, "{shipped}: {out}{err}");
        assert!(out.contains("haproxy.check matches"), "{out}");
    }
    // A site that checks faster than the keys say: the wait would be wrong.
    let dir = runtime_dir("check-haproxy");
    let faster = dir.join("haproxy.cfg");
    let text = std::fs::read_to_string(repo("haproxy/haproxy.cfg"))
        .expect("read")
        .replace(
            "inter 2s fastinter 1s rise 2 fall 1",
            "inter 1s fastinter 1s rise 2 fall 3",
        );
    std::fs::write(&faster, text).expect("write");
    let (code, out, err) = pgsql_state(&[
        "-f",
        conf,
        "check-config",
        "--haproxy",
        faster.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 78, "{out}{err}");
    assert!(err.contains("harepd.haproxy.check.inter: is 2 s"), "{err}");
    assert!(err.contains("harepd.haproxy.check.fall: is 1"), "{err}");
}

#[test]
fn the_reconcile_timer_runs_every_watchdog() {
    let timer = std::fs::read_to_string(repo("units/pgsql-state-reconcile.timer")).expect("read");
    let conf = std::fs::read_to_string(repo("conf/pgsql-state.yml")).expect("read");
    let watchdog = conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("watchDog:"))
        .and_then(|v| v.split('#').next())
        .map(|v| v.trim().to_string())
        .expect("watchDog in the example config");
    assert!(
        timer.contains(&format!("OnUnitActiveSec={watchdog}s")),
        "the timer's interval is not watchDog ({watchdog} s):\n{timer}"
    );
    assert!(timer.contains("AccuracySec=100ms"), "{timer}");
}

/// The generator as systemd runs it (`pgsql-state -f CONFIG
/// systemd-generator NORMAL EARLY LATE`): the timer's drop-in from
/// watchDog; nothing with no config; with a bad config, nothing written,
/// exit 78, and the key and line on stderr (which systemd logs).
#[test]
fn the_generator_writes_watchdog_and_nothing_from_a_bad_config() {
    let dir = runtime_dir("generator");
    let dropin = "pgsql-state-reconcile.timer.d/50-pgsql-state-watchdog.conf";
    let generate = |config: &Path, out: &Path| {
        std::fs::create_dir_all(out).expect("create the output dir");
        pgsql_state(&[
            "-f",
            config.to_str().expect("utf-8"),
            "systemd-generator",
            out.to_str().expect("utf-8"),
            "/nonexistent/early",
            "/nonexistent/late",
        ])
    };
    let example = std::fs::read_to_string(repo("conf/pgsql-state.yml")).expect("read the example");
    let good = dir.join("good.yml");
    std::fs::write(&good, example.replace("  watchDog: 15", "  watchDog: 3")).expect("write");
    let (code, out, err) = generate(&good, &dir.join("good"));
    assert_eq!(code, 0, "{out}{err}");
    let text = std::fs::read_to_string(dir.join("good").join(dropin)).expect("the drop-in");
    assert!(
        text.contains("\nOnUnitActiveSec=\nOnActiveSec=1s\nOnUnitActiveSec=3000ms\n"),
        "{text}"
    );

    let (code, out, err) = generate(&dir.join("missing.yml"), &dir.join("missing"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(!dir.join("missing").join(dropin).exists());

    let bad = dir.join("bad.yml");
    let bad_text = example.replace("  watchDog: 15", "  watchDog: soon");
    std::fs::write(&bad, &bad_text).expect("write");
    let line = bad_text
        .lines()
        .position(|l| l.contains("watchDog: soon"))
        .expect("the bad line")
        + 1;
    let (code, out, err) = generate(&bad, &dir.join("bad"));
    assert_eq!(code, 78, "{out}{err}");
    assert!(
        err.contains(&format!(":{line}:")) && err.contains("harepd.watchDog"),
        "the error names the key and line {line}: {err}"
    );
    assert!(err.contains("keeps its shipped interval"), "{err}");
    assert!(!dir.join("bad").join(dropin).exists());
}

#[test]
fn check_config_prints_every_problem_and_exits_78() {
    let dir = runtime_dir("check-config");
    let path = dir.join("bad.yml");
    let good = std::fs::read_to_string(repo("conf/pgsql-state.yml")).expect("read the example");
    let bad = good
        .replace("  watchDog: 15", "  watchDogg: 15")
        .replace("  fencing: strict", "  fencing: sometimes")
        .replace("  primaryIP: \"10.21.57.61\"", "  primaryIP: \"node-1\"");
    std::fs::write(&path, &bad).expect("write the bad config");
    let line_of = |needle: &str| {
        bad.lines()
            .position(|l| l.contains(needle))
            .expect("needle in file")
            + 1
    };
    let (code, out, err) = pgsql_state(&["-f", path.to_str().expect("utf-8"), "check-config"]);
    assert_eq!(code, 78, "{out}{err}");
    for (needle, key, message) in [
        ("watchDogg", "harepd.watchDogg", "unknown key"),
        (
            "fencing: sometimes",
            "harepd.fencing",
            "unknown variant `sometimes`, expected one of `off`, `verdict`, `strict`",
        ),
        (
            "primaryIP",
            "harepd.primaryIP",
            "\"node-1\" is not an IP address",
        ),
    ] {
        let want = format!("bad.yml:{}: {key}: {message}", line_of(needle));
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    assert!(err.contains("has 3 problem(s)"), "{err}");
}

#[test]
fn exit_codes_follow_the_contract() {
    assert_eq!(pgsql_state(&["no-such-command"]).0, 2, "usage error");
    assert_eq!(
        pgsql_state(&["respond", "--fencing", "maybe"]).0,
        2,
        "bad flag value"
    );
    assert_eq!(
        pgsql_state(&["respond", "--listen", "not-an-address"]).0,
        2,
        "bad --listen"
    );
    assert_eq!(
        pgsql_state(&["-f", "/nonexistent/pgsql-state.yml", "check-config"]).0,
        78,
        "missing config"
    );
    assert_eq!(pgsql_state(&["--help"]).0, 0);
}

/// The model's timing (`model/params.pml`, as spin's preprocessor derives
/// it) is src/fencing/timing.rs's, for the default parameters and for each variant
/// `model/check.sh` searches. One tick of the model is one second; the
/// model takes the clock drift ρ as 0, so its W is L + H, and the code's W
/// may only be longer.
/// The `NAME=value` pairs of the line `tag` that `spin FLAGS
/// print_params.pml` prints (the model's timing as params.pml derives it).
fn model_line(
    spin: &std::path::Path,
    flags: &[String],
    tag: &str,
) -> std::collections::HashMap<String, u64> {
    let out = Command::new(spin)
        .args(flags)
        .arg("print_params.pml")
        .current_dir(repo("model"))
        .output()
        .expect("run spin");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("{tag} "))
                .map(str::to_string)
        })
        .unwrap_or_else(|| panic!("spin {flags:?}: no {tag} line in {text:?}"));
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("NAME=value");
            (k.to_string(), v.parse().expect("a number"))
        })
        .collect()
}

#[test]
fn model_params_match_timing() {
    use pgsql_state::fencing::timing::{self, HaproxyCheck};
    use std::time::Duration;
    let spin = require_tool("spin");
    let check_sh = std::fs::read_to_string(repo("model/check.sh")).expect("read model/check.sh");
    // Every timing variant check.sh uses, and the defaults.
    let timing_keys = [
        "RENEW",
        "RINT",
        "DREN",
        "WATCHDOG",
        "DEADLINE",
        "CACHE",
        "INTER",
        "FASTINTER",
        "RISE",
        "FALL",
        "TCHECK",
        "TRANSIT",
    ];
    let mut variants: Vec<Vec<String>> = vec![vec![]];
    for line in check_sh
        .lines()
        .filter(|l| l.trim_start().starts_with("\""))
    {
        let flags: Vec<String> = line
            .split_whitespace()
            .flat_map(|w| w.split('|'))
            .map(|w| w.trim_matches('"').to_string())
            .filter(|w| {
                timing_keys
                    .iter()
                    .any(|k| w.starts_with(&format!("-D{k}=")))
            })
            .collect();
        if !variants.contains(&flags) {
            variants.push(flags);
        }
    }
    assert!(
        variants.len() >= 4,
        "check.sh's timing variants: {variants:?}"
    );
    let secs = Duration::from_secs;
    for flags in &variants {
        let p = model_line(&spin, flags, "PARAMS");
        let check = HaproxyCheck {
            inter: secs(p["INTER"]),
            fastinter: secs(p["FASTINTER"]),
            rise: p["RISE"] as u32,
            fall: p["FALL"] as u32,
            timeout_check: secs(p["TCHECK"]),
        };
        // With the renewal, the lease is the same function of the renewal's
        // interval and deadline; a node still on the old config declares
        // the full run's.
        let r = model_line(&spin, flags, "RENEWAL");
        let full_runs = timing::lease(secs(p["WATCHDOG"]), secs(p["DEADLINE"]));
        assert_eq!(secs(r["LEASE_OLD"]), full_runs, "{flags:?}: the old lease");
        let lease = if r["RENEW"] == 1 {
            timing::lease(secs(r["RINT"]), secs(r["DREN"]))
        } else {
            full_runs
        };
        let h = timing::haproxy_term(&check);
        assert_eq!(secs(p["LEASE"]), lease, "{flags:?}: the lease");
        assert_eq!(
            secs(p["T_FAIL"]),
            timing::check_failure_time(&check),
            "{flags:?}: T_fail"
        );
        assert_eq!(secs(p["HTERM"]), h, "{flags:?}: HAProxy's term H");
        assert_eq!(secs(p["WAIT"]), lease + h, "{flags:?}: W with ρ = 0");
        assert_eq!(secs(p["SHORT_WAIT"]), h, "{flags:?}: the switchover's wait");
        assert_eq!(
            secs(p["CONF_MAX"]),
            lease + h,
            "{flags:?}: a confirmation just now leaves all of W"
        );
        // The code's W and H' are the model's with ρ = 1 % (the model's
        // own drift configurations use a larger ρ).
        let w = timing::wait(lease, &check);
        assert!(
            w >= lease + h && w < lease + h + secs(1),
            "{flags:?}: W {w:?}"
        );
        let h_drifted = timing::haproxy_wait(&check);
        assert!(
            h_drifted >= h && h_drifted < h + secs(1),
            "{flags:?}: H' {h_drifted:?}"
        );
        // L' and H' of the model's drift configurations are the code's
        // formula with the model's ρ = 1/DRIFT_PERIOD, rounded up to its
        // whole ticks.
        let drift_on: Vec<String> = flags
            .iter()
            .cloned()
            .chain(["-DDRIFT=1".to_string()])
            .collect();
        let d = model_line(&spin, &drift_on, "DRIFTED");
        assert_eq!(d["DRIFT"], 1, "{flags:?}: the model's drift is on");
        let rho = 1.0 / d["DRIFT_PERIOD"] as f64;
        let ticks =
            |span: Duration| (timing::drifted_by(span, rho).as_secs_f64() - 1e-9).ceil() as u64;
        assert_eq!(d["LEASE_P"], ticks(lease), "{flags:?}: L' with ρ = {rho}");
        assert_eq!(d["HTERM_P"], ticks(h), "{flags:?}: H' with ρ = {rho}");
        if flags.is_empty() {
            // The defaults are the shipped ones.
            assert_eq!(check, HaproxyCheck::default(), "the model's HAProxy");
            assert_eq!(secs(p["TRANSIT"]), timing::TRANSIT_BOUND, "d");
            assert_eq!(
                secs(p["CACHE"]),
                timing::WITNESS_CACHE_TTL,
                "the witness cache"
            );
        }
    }
}
