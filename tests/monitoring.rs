//! The shipped monitoring: Prometheus alert rules and a Grafana dashboard.
//!
//! - `promtool check rules` and `promtool test rules` (Debian 12's
//!   `prometheus` package): every alert has series that fire it and series
//!   that must not (`prometheus/pgsql-state.rules.test.yml`).
//! - The dashboard's PromQL parses (`promtool check rules` on its
//!   expressions as recording rules), and each panel shows one of the
//!   things an on-call engineer opens it for.
//! - `tests/respond_modes.rs` holds every metric and label value both
//!   files select to a real `/metrics` scrape.

mod common;

use std::process::Command;

use common::monitoring::*;
use common::runtime_dir;

/// `promtool` from Debian's `prometheus` package (scripts/install-deps.sh).
fn promtool(args: &[&str], dir: &std::path::Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "promtool is missing ({e}): scripts/install-deps.sh installs Debian's prometheus"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let root = repo_root();
    let checked = promtool(&["check", "rules", RULES], &root);
    assert!(checked.contains("SUCCESS: 9 rules found"), "{checked}");
    let dir = root.join("prometheus");
    let tested = promtool(&["test", "rules", "pgsql-state.rules.test.yml"], &dir);
    assert!(tested.contains("SUCCESS"), "{tested}");
    println!("{checked}{tested}");
}

/// Every alert in the rules file has a test that expects it to fire and one
/// that expects it silent.
#[test]
fn every_alert_is_tested_firing_and_silent() {
    let root = repo_root();
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join(RULES)).expect("read the rules"))
            .expect("YAML");
    let tests: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join(RULES_TEST)).expect("read the rule tests"),
    )
    .expect("YAML");
    let cases: Vec<&serde_yaml::Value> = tests["tests"]
        .as_sequence()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_sequence().into_iter().flatten())
        .collect();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("an alerting rule");
            let of_it = cases
                .iter()
                .filter(|c| c["alertname"].as_str() == Some(name));
            let (firing, silent): (Vec<&&serde_yaml::Value>, Vec<_>) = of_it.partition(|c| {
                c["exp_alerts"]
                    .as_sequence()
                    .is_some_and(|alerts| !alerts.is_empty())
            });
            assert!(!firing.is_empty(), "no test expects {name} to fire");
            assert!(!silent.is_empty(), "no test expects {name} to stay silent");
        }
    }
}

#[test]
fn the_dashboards_queries_parse_and_cover_what_on_call_looks_at() {
    let exprs = dashboard_exprs();
    // Each expression as a recording rule, `$job` given a value, for
    // promtool's PromQL parser.
    let dir = runtime_dir("dashboard-promql");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e.replace("$job", "pgsql").replace('\'', "''");
        rules.push_str(&format!(
            "      - record: dashboard_panel_{i}\n        expr: '{e}'\n"
        ));
    }
    std::fs::write(dir.join("dashboard.rules.yml"), &rules).expect("write the rules");
    let checked = promtool(&["check", "rules", "dashboard.rules.yml"], &dir);
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{checked}"
    );
    // The picture the issue asks for: each node's word over time,
    // verdicts, lag, timeline, and check duration.
    let names: Vec<String> = exprs
        .iter()
        .flat_map(|e| selectors(DASHBOARD, e))
        .map(|s| s.name)
        .collect();
    for want in [
        "pgsql_state_word",
        "pgsql_state_verdict",
        "pgsql_state_lag_bytes",
        "pgsql_state_timeline",
        "pgsql_state_check_duration_seconds",
    ] {
        assert!(names.iter().any(|n| n == want), "no panel shows {want}");
    }
}

#[test]
fn selectors_are_read_with_their_labels() {
    let found = selectors(
        RULES,
        "sum by (job) (pgsql_state_word{job=\"$job\",word=\"production\"}) > 1 and pgsql_state_fenced == 1",
    );
    assert_eq!(
        found,
        vec![
            Selector {
                file: RULES,
                name: "pgsql_state_word".into(),
                labels: vec![("word".into(), "production".into())],
            },
            Selector {
                file: RULES,
                name: "pgsql_state_fenced".into(),
                labels: vec![],
            },
        ]
    );
}
