//! Reading the check timing of a real haproxy.cfg, so `check-config
//! --haproxy FILE` can tell when `haproxy.check` (which the new primary's
//! wait covers) does not match what HAProxy really does. Pure: text in,
//! values out.
//!
//! It reads the `prod` pool (`listen prod` or `backend prod`): the
//! `default-server` line's `inter`, `fastinter`, `rise` and `fall`, and
//! `timeout check`, from the pool or else from `defaults`. What HAProxy
//! leaves unset takes HAProxy's own defaults (inter 2s, fastinter = inter,
//! rise 2, fall 3, timeout check = inter).
//!
//! A pool whose servers run an `agent-check` is driven by the agent: its
//! `up` and `down` take effect at once, with no `rise` or `fall`, every
//! `agent-inter` (default: `inter`). Its timing is then that interval with
//! rise 1 and fall 1, which lengthens the wait's HAProxy term.

use std::time::Duration;

use crate::fencing::timing::HaproxyCheck;

/// Why a haproxy.cfg's timing could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HaproxyCfgError {
    /// No `listen` or `backend` section of that name.
    #[error("no `listen {0}` or `backend {0}` section")]
    NoPool(String),
    /// A value that is not a HAProxy time or count.
    #[error("line {line}: {key} {value:?} is not a {kind}")]
    BadValue {
        /// The 1-based line.
        line: usize,
        /// The keyword.
        key: String,
        /// Its value.
        value: String,
        /// `time` or `count`.
        kind: &'static str,
    },
}

/// A HAProxy time: `500ms`, `2s`, `1m`, `1h`, or a bare number of ms.
pub fn parse_time(text: &str) -> Option<Duration> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    Some(match unit {
        "" | "ms" => Duration::from_millis(n),
        "us" => Duration::from_micros(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86_400),
        _ => return None,
    })
}

#[derive(Default)]
struct Seen {
    inter: Option<Duration>,
    fastinter: Option<Duration>,
    rise: Option<u32>,
    fall: Option<u32>,
    timeout_check: Option<Duration>,
    agent: bool,
    agent_inter: Option<Duration>,
}

/// The `pool` section's check timing in `text`.
pub fn check_timing(text: &str, pool: &str) -> Result<HaproxyCheck, HaproxyCfgError> {
    let mut defaults = Seen::default();
    let mut ours = Seen::default();
    let mut found = false;
    enum Section {
        Defaults,
        Ours,
        Other,
    }
    let mut section = Section::Other;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(first) = words.first() else {
            continue;
        };
        match *first {
            "defaults" => {
                section = Section::Defaults;
                continue;
            }
            "listen" | "backend" if words.get(1) == Some(&pool) => {
                section = Section::Ours;
                found = true;
                continue;
            }
            "global" | "frontend" | "listen" | "backend" | "resolvers" | "peers" | "userlist" => {
                section = Section::Other;
                continue;
            }
            _ => {}
        }
        let seen = match section {
            Section::Defaults => &mut defaults,
            Section::Ours => &mut ours,
            Section::Other => continue,
        };
        let bad = |key: &str, value: &str, kind| HaproxyCfgError::BadValue {
            line: index + 1,
            key: key.to_string(),
            value: value.to_string(),
            kind,
        };
        let time =
            |key: &str, value: &str| parse_time(value).ok_or_else(|| bad(key, value, "time"));
        let count =
            |key: &str, value: &str| value.parse::<u32>().map_err(|_| bad(key, value, "count"));
        match words.as_slice() {
            ["timeout", "check", value, ..] => {
                seen.timeout_check = Some(time("timeout check", value)?)
            }
            [kind @ ("default-server" | "server"), rest @ ..] => {
                // Keywords with a value are followed by it; flags (`check`,
                // `agent-check`, `backup`, …) stand alone, so look for the
                // keys rather than reading pairs.
                let rest = if *kind == "server" {
                    // `server NAME ADDR ...`
                    rest.get(2..).unwrap_or(&[])
                } else {
                    rest
                };
                seen.agent |= rest.contains(&"agent-check");
                for (i, key) in rest.iter().enumerate() {
                    let Some(value) = rest.get(i + 1) else {
                        break;
                    };
                    // Per-server timing is not read: the shipped configs
                    // and the README put it on default-server.
                    if *kind == "server" && *key != "agent-inter" {
                        continue;
                    }
                    match *key {
                        "inter" => seen.inter = Some(time(key, value)?),
                        "fastinter" => seen.fastinter = Some(time(key, value)?),
                        "rise" => seen.rise = Some(count(key, value)?),
                        "fall" => seen.fall = Some(count(key, value)?),
                        "agent-inter" => seen.agent_inter = Some(time(key, value)?),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if !found {
        return Err(HaproxyCfgError::NoPool(pool.to_string()));
    }
    let inter = ours
        .inter
        .or(defaults.inter)
        .unwrap_or(Duration::from_secs(2));
    let timing = HaproxyCheck {
        inter,
        fastinter: ours.fastinter.or(defaults.fastinter).unwrap_or(inter),
        rise: ours.rise.or(defaults.rise).unwrap_or(2),
        fall: ours.fall.or(defaults.fall).unwrap_or(3),
        timeout_check: ours
            .timeout_check
            .or(defaults.timeout_check)
            .unwrap_or(inter),
    };
    if ours.agent || defaults.agent {
        return Ok(HaproxyCheck {
            inter: ours.agent_inter.or(defaults.agent_inter).unwrap_or(inter),
            rise: 1,
            fall: 1,
            ..timing
        });
    }
    Ok(timing)
}

/// Each key of `haproxy.check` that differs from `actual`, as
/// `(key, configured, actual)` in words.
pub fn mismatches(
    configured: &HaproxyCheck,
    actual: &HaproxyCheck,
) -> Vec<(String, String, String)> {
    let secs = |d: Duration| format!("{} s", d.as_secs_f64());
    let mut out = Vec::new();
    let mut time = |key: &str, a: Duration, b: Duration| {
        if a != b {
            out.push((key.to_string(), secs(a), secs(b)));
        }
    };
    time("inter", configured.inter, actual.inter);
    time("fastinter", configured.fastinter, actual.fastinter);
    time(
        "timeoutCheck",
        configured.timeout_check,
        actual.timeout_check,
    );
    for (key, a, b) in [
        ("rise", configured.rise, actual.rise),
        ("fall", configured.fall, actual.fall),
    ] {
        if a != b {
            out.push((key.to_string(), a.to_string(), b.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_configs_match_the_default_keys() {
        for (name, text) in [
            ("haproxy.cfg", include_str!("../haproxy/haproxy.cfg")),
            (
                "haproxy-httpchk.cfg",
                include_str!("../haproxy/haproxy-httpchk.cfg"),
            ),
            (
                "haproxy-pgsql-check.cfg",
                include_str!("../haproxy/haproxy-pgsql-check.cfg"),
            ),
        ] {
            let actual = check_timing(text, "prod").expect(name);
            assert_eq!(actual, HaproxyCheck::default(), "{name}");
            assert!(mismatches(&HaproxyCheck::default(), &actual).is_empty());
        }
    }

    #[test]
    fn an_agent_pool_counts_the_agent_s_interval_without_rise_or_fall() {
        let shipped = check_timing(include_str!("../haproxy/haproxy-agent.cfg"), "prod")
            .expect("haproxy-agent.cfg");
        // What haproxy-agent.cfg tells users to put in haproxy.check.
        assert_eq!(
            shipped,
            HaproxyCheck {
                inter: Duration::from_secs(2),
                fastinter: Duration::from_secs(1),
                rise: 1,
                fall: 1,
                timeout_check: Duration::from_secs(3),
            }
        );
        // A slower agent sets the interval; flags between keys are skipped.
        let text = "listen prod\n  default-server weight 100 check port 5431 inter 1s rise 3 \
                    agent-check agent-port 5431 agent-inter 5s\n  server a 10.0.0.1:5432\n";
        let t = check_timing(text, "prod").expect("a prod pool");
        assert_eq!((t.inter, t.rise, t.fall), (Duration::from_secs(5), 1, 1));
        // The agent's term is longer than the tcp-check's with rise 2.
        assert!(
            crate::fencing::timing::haproxy_term(&shipped)
                > crate::fencing::timing::haproxy_term(&HaproxyCheck::default())
        );
    }

    #[test]
    fn flags_between_keys_do_not_shift_the_values() {
        let text = "listen prod\n  default-server check inter 3s backup fastinter 1s rise 4\n";
        let t = check_timing(text, "prod").expect("a prod pool");
        assert_eq!(
            (t.inter, t.fastinter, t.rise),
            (Duration::from_secs(3), Duration::from_secs(1), 4)
        );
    }

    #[test]
    fn sections_defaults_and_errors() {
        let text = "defaults\n  timeout check 4s\nlisten stdby\n  default-server inter 9s\n\
                    backend prod\n  default-server inter 1s fastinter 500ms rise 3 fall 2 on-marked-down shutdown-sessions\n";
        let t = check_timing(text, "prod").expect("a prod pool");
        assert_eq!(
            t,
            HaproxyCheck {
                inter: Duration::from_secs(1),
                fastinter: Duration::from_millis(500),
                rise: 3,
                fall: 2,
                timeout_check: Duration::from_secs(4),
            }
        );
        let got = mismatches(&HaproxyCheck::default(), &t);
        let keys: Vec<&str> = got.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(keys, ["inter", "fastinter", "timeoutCheck", "rise", "fall"]);
        assert_eq!(
            check_timing("listen other\n", "prod"),
            Err(HaproxyCfgError::NoPool("prod".into()))
        );
        assert!(matches!(
            check_timing("listen prod\n default-server inter soon\n", "prod"),
            Err(HaproxyCfgError::BadValue { line: 2, .. })
        ));
        // HAProxy's own defaults when nothing is set.
        let bare = check_timing("listen prod\n", "prod").expect("a prod pool");
        assert_eq!(
            (bare.inter, bare.fall, bare.timeout_check),
            (Duration::from_secs(2), 3, Duration::from_secs(2))
        );
        assert_eq!(parse_time("1500"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_time("2x"), None);
    }
}
