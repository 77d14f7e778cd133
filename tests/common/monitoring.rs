//! What the shipped Prometheus rules (`prometheus/pgsql-state.rules.yml`)
//! and Grafana dashboard (`grafana/pgsql-state.dashboard.json`) ask of
//! `/metrics`: every metric name with the label values they select, so that
//! a test can hold them to what a real scrape serves.

use std::path::PathBuf;

/// One selector: a metric name and the `label="value"` pairs it fixes
/// (template variables like `$job` and the `job` label left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// Which file it came from.
    pub file: &'static str,
    /// `pgsql_state_…`.
    pub name: String,
    /// Label values it selects.
    pub labels: Vec<(String, String)>,
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped rules file, the rules' unit tests, and the dashboard.
pub const RULES: &str = "prometheus/pgsql-state.rules.yml";
pub const RULES_TEST: &str = "prometheus/pgsql-state.rules.test.yml";
pub const DASHBOARD: &str = "grafana/pgsql-state.dashboard.json";

/// Every PromQL expression in the dashboard, `$job` left in.
pub fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join(DASHBOARD)).expect("read the dashboard");
    let json: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    for panel in json["panels"].as_array().expect("the dashboard has panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                exprs.push(e.to_string());
            }
        }
    }
    exprs
}

/// The `expr:` of every rule in the rules file.
pub fn rule_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join(RULES)).expect("read the rules");
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("the rules are YAML");
    let mut exprs = Vec::new();
    for group in yaml["groups"].as_sequence().expect("rule groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            exprs.push(
                rule["expr"]
                    .as_str()
                    .expect("every rule has an expr")
                    .to_string(),
            );
        }
    }
    exprs
}

/// The `pgsql_state_*` selectors in `expr`.
pub fn selectors(file: &'static str, expr: &str) -> Vec<Selector> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("pgsql_state_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = tail[..end].to_string();
        let mut labels = Vec::new();
        let after = &tail[end..];
        if let Some(inner) = after.strip_prefix('{') {
            let close = inner.find('}').expect("a selector's braces close");
            for pair in inner[..close].split(',') {
                if let Some((k, v)) = pair.split_once('=') {
                    let (k, v) = (k.trim(), v.trim().trim_matches('"'));
                    if k != "job" && !v.starts_with('$') {
                        labels.push((k.to_string(), v.to_string()));
                    }
                }
            }
        }
        found.push(Selector { file, name, labels });
        rest = &tail[end..];
    }
    found
}

/// Every selector the shipped rules and dashboard use.
pub fn shipped_selectors() -> Vec<Selector> {
    let mut all = Vec::new();
    for e in rule_exprs() {
        all.extend(selectors(RULES, &e));
    }
    for e in dashboard_exprs() {
        all.extend(selectors(DASHBOARD, &e));
    }
    all
}
