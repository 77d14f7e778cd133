//! `/metrics` on the `http` format: what one check saw, in the OpenMetrics
//! text exposition (which Prometheus scrapes), encoded by the
//! `prometheus-client` crate. Pure: the values come in a [`HttpView`].
//!
//! Every metric is a gauge named `pgsql_state_*`; a value that could not be
//! known this check (the timeline of a node whose Postgres is down) is left
//! out rather than reported as 0.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use super::format::HttpView;
use crate::fencing::verdict::VerdictKind;
use crate::word::Word;

/// The Content-Type of the reply.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the word's label says: the word, with `down`'s reason apart.
fn word_label(word: Word) -> &'static str {
    match word {
        Word::Production => "production",
        Word::Standby => "standby",
        Word::Lagging => "lagging",
        Word::Fenced => "fenced",
        Word::Maintenance => "maintenance",
        Word::Down(_) => "down",
    }
}

const WORD_LABELS: [&str; 6] = [
    "production",
    "standby",
    "lagging",
    "fenced",
    "maintenance",
    "down",
];

type Labels = Vec<(&'static str, &'static str)>;

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g = Gauge::<i64>::default();
    g.set(value);
    registry.register(name, help, g);
}

fn seconds(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let g = Gauge::<f64, AtomicU64>::default();
    g.set(value);
    registry.register(name, help, g);
}

/// One-hot labelled gauge: 1 for `current`, 0 for the others.
fn one_hot(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: &[&'static str],
    current: Option<&str>,
) {
    let family = Family::<Labels, Gauge>::default();
    for v in values {
        family
            .get_or_create(&vec![(label, *v)])
            .set(i64::from(current == Some(*v)));
    }
    registry.register(name, help, family);
}

/// The `/metrics` body for what this check saw.
pub fn render(view: &HttpView) -> String {
    let mut registry = Registry::with_prefix("pgsql_state");
    one_hot(
        &mut registry,
        "word",
        "The word this check answered (1 for it, 0 for the others)",
        "word",
        &WORD_LABELS,
        Some(word_label(view.word)),
    );
    if let Word::Down(reason) = view.word {
        // The reason's words, as `nc` shows them after `down: `.
        let family = Family::<Vec<(&'static str, String)>, Gauge>::default();
        family
            .get_or_create(&vec![("reason", reason.to_string())])
            .set(1);
        registry.register("down", "Why Postgres could not be asked", family);
    }
    let facts = &view.facts;
    if let Some(r) = facts.in_recovery {
        gauge(
            &mut registry,
            "in_recovery",
            "pg_is_in_recovery(): 1 on a standby",
            i64::from(r),
        );
    }
    if let Some(t) = facts.timeline {
        gauge(
            &mut registry,
            "timeline",
            "The timeline this postmaster runs",
            i64::from(t),
        );
    }
    if let Some(lag) = view.lag_bytes {
        gauge(
            &mut registry,
            "lag_bytes",
            "A standby's received but not replayed WAL, in bytes",
            i64::try_from(lag).unwrap_or(i64::MAX),
        );
    }
    let kinds: Vec<&'static str> = VerdictKind::ALL.iter().map(|k| k.as_str()).collect();
    one_hot(
        &mut registry,
        "verdict",
        "The reconciler's verdict in the runtime directory (all 0: none)",
        "kind",
        &kinds,
        facts.verdict.map(|(k, _)| k.as_str()),
    );
    if let Some((_, age)) = facts.verdict {
        seconds(
            &mut registry,
            "verdict_age_seconds",
            "Seconds since the run that wrote the verdict started",
            age,
        );
    }
    gauge(
        &mut registry,
        "verdict_tie",
        "1 when the verdict says two primaries claim the highest timeline (an operator must clear it)",
        i64::from(facts.tie),
    );
    gauge(
        &mut registry,
        "fenced",
        "1 when this node answers fenced",
        i64::from(view.word == Word::Fenced),
    );
    gauge(
        &mut registry,
        "maintenance",
        "1 when an operator drained this node",
        i64::from(view.word == Word::Maintenance),
    );
    seconds(
        &mut registry,
        "check_duration_seconds",
        "How long this check took to choose its word (Postgres included)",
        facts.check_seconds,
    );
    let mut out = String::new();
    // Writing to a String cannot fail, and every name above is valid.
    encode(&mut out, &registry).expect("encoding metrics into a String");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::respond::format::MetricFacts;
    use crate::word::DownReason;

    fn line<'a>(text: &'a str, start: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(start))
    }

    #[test]
    fn a_primary_in_production() {
        let text = render(&HttpView {
            word: Word::Production,
            lag_bytes: None,
            facts: MetricFacts {
                in_recovery: Some(false),
                timeline: Some(3),
                verdict: Some((VerdictKind::Production, 1.5)),
                tie: false,
                check_seconds: 0.002,
            },
        });
        for want in [
            "pgsql_state_word{word=\"production\"} 1",
            "pgsql_state_word{word=\"standby\"} 0",
            "pgsql_state_in_recovery 0",
            "pgsql_state_timeline 3",
            "pgsql_state_verdict{kind=\"production\"} 1",
            "pgsql_state_verdict{kind=\"fenced\"} 0",
            "pgsql_state_verdict_age_seconds 1.5",
            "pgsql_state_fenced 0",
            "pgsql_state_verdict_tie 0",
            "pgsql_state_maintenance 0",
            "pgsql_state_check_duration_seconds 0.002",
        ] {
            assert!(text.lines().any(|l| l == want), "{want} not in\n{text}");
        }
        assert!(line(&text, "pgsql_state_lag_bytes").is_none(), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn postgres_down_leaves_unknown_values_out() {
        let text = render(&HttpView {
            word: Word::Down(DownReason::ConnectionRefused),
            lag_bytes: None,
            facts: MetricFacts::default(),
        });
        assert!(
            line(&text, "pgsql_state_word{word=\"down\"} 1").is_some(),
            "{text}"
        );
        assert!(
            line(&text, "pgsql_state_down{reason=\"connection refused\"} 1").is_some(),
            "{text}"
        );
        for absent in [
            "pgsql_state_timeline",
            "pgsql_state_in_recovery",
            "pgsql_state_verdict_age",
        ] {
            assert!(line(&text, absent).is_none(), "{absent} in\n{text}");
        }
    }
}
