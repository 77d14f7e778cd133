//! `pgsql-state doctor`'s pure part: the findings, one line each with its
//! fix, and the readings of systemd's answers they need (a unit's
//! `ReadWritePaths`, a timer's `TimersMonotonic`). The I/O that gathers
//! the facts is in `commands::doctor`.

use std::fmt;
use std::path::Path;
use std::time::Duration;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It holds.
    Ok,
    /// It could not be checked here (no systemd, no HAProxy config given),
    /// or it weakens the node without breaking it.
    Warn,
    /// It is broken: the node will not do its job until it is fixed.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How it came out.
    pub outcome: Outcome,
    /// What was checked ("claim record", "timer interval").
    pub what: &'static str,
    /// What was found.
    pub detail: String,
    /// What to do, when it is not ok.
    pub fix: Option<String>,
}

impl Finding {
    /// A check that holds.
    pub fn ok(what: &'static str, detail: impl Into<String>) -> Finding {
        Finding {
            outcome: Outcome::Ok,
            what,
            detail: detail.into(),
            fix: None,
        }
    }

    /// A check that failed, with its fix.
    pub fn fail(what: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            outcome: Outcome::Fail,
            what,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// A check that could not be made, or a weakness, with what to do.
    pub fn warn(what: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            outcome: Outcome::Warn,
            what,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.outcome {
            Outcome::Ok => "ok  ",
            Outcome::Warn => "warn",
            Outcome::Fail => "FAIL",
        };
        write!(f, "{tag}  {}: {}", self.what, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, "; fix: {fix}")?;
        }
        Ok(())
    }
}

/// Whether `ReadWritePaths` (as `systemctl show -P ReadWritePaths`
/// prints it: space-separated, a `-` prefix for optional ones) lets the
/// unit write `file`: one of them is its directory or above it.
pub fn write_paths_cover(read_write_paths: &str, file: &Path) -> bool {
    let Some(dir) = file.parent() else {
        return false;
    };
    read_write_paths
        .split_whitespace()
        .map(|p| p.trim_start_matches(['-', '+']))
        .any(|p| !p.is_empty() && dir.starts_with(p))
}

/// A systemd time span as `systemctl show` prints it ("15s", "2s",
/// "1min 30s", "500ms", "1h 2min", "2.500000s").
pub fn parse_timespan(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut any = false;
    for word in text.split_whitespace() {
        let split = word.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, unit) = word.split_at(split);
        let n: f64 = number.parse().ok()?;
        let seconds = match unit {
            "us" | "usec" | "µs" => n / 1e6,
            "ms" | "msec" => n / 1e3,
            "s" | "sec" => n,
            "min" | "m" => n * 60.0,
            "h" | "hr" => n * 3600.0,
            "d" => n * 86_400.0,
            _ => return None,
        };
        total += Duration::from_secs_f64(seconds);
        any = true;
    }
    any.then_some(total)
}

/// The timer's `OnUnitActiveSec` from `systemctl show -P TimersMonotonic`
/// (`{ OnUnitActiveUSec=2s ; next_elapse=… }`, one line per trigger).
pub fn unit_active_interval(timers_monotonic: &str) -> Option<Duration> {
    timers_monotonic.lines().find_map(|line| {
        let rest = line.split("OnUnitActiveUSec=").nth(1)?;
        parse_timespan(rest.split(';').next()?.trim())
    })
}

/// A voter's timing (its lease L and HAProxy's term H, ms, as it reports
/// them) against this node's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimingCheck {
    /// The same, or nothing to compare: a witness (its L bounds no
    /// verdict) or a binary too old to report it (both 0).
    Same,
    /// Another timing, in words, that this node's wait still covers now.
    Differs(String),
    /// A primary whose L + H is longer than this node's: were it lost now,
    /// this node, promoted, would stop waiting before its lease and
    /// HAProxy's term were over.
    Uncovered(String),
}

/// Compares a voter's timing `theirs` with this node's `ours` (each (L, H)
/// in ms); `primary` and `witness` say what the voter answered as.
pub fn compare_timing(
    ours: (u64, u64),
    theirs: (u64, u64),
    primary: bool,
    witness: bool,
) -> TimingCheck {
    if witness || theirs == (0, 0) || theirs == ours {
        return TimingCheck::Same;
    }
    let s = |ms: u64| format!("{:.1} s", ms as f64 / 1000.0);
    let words = format!(
        "its lease L is {} and HAProxy's term H {}, this node's {} and {}",
        s(theirs.0),
        s(theirs.1),
        s(ours.0),
        s(ours.1)
    );
    if primary && theirs.0 + theirs.1 > ours.0 + ours.1 {
        TimingCheck::Uncovered(words)
    } else {
        TimingCheck::Differs(words)
    }
}

/// Exit 0 only when nothing failed.
pub fn all_hold(findings: &[Finding]) -> bool {
    findings.iter().all(|f| f.outcome != Outcome::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_voter_with_other_timing_is_named() {
        let ours = (35_000, 7_000);
        let words = |l: &str, h: &str| {
            format!("its lease L is {l} and HAProxy's term H {h}, this node's 35.0 s and 7.0 s")
        };
        // (theirs, primary, witness, want)
        let cases = [
            ((35_000, 7_000), true, false, TimingCheck::Same),
            // A binary that predates the fields says nothing.
            ((0, 0), true, false, TimingCheck::Same),
            // A witness's lease bounds no verdict.
            ((99_000, 7_000), false, true, TimingCheck::Same),
            // Shorter: this node's wait covers it.
            (
                (3_000, 7_000),
                true,
                false,
                TimingCheck::Differs(words("3.0 s", "7.0 s")),
            ),
            // Longer, but a standby: nothing to cover now.
            (
                (45_000, 7_000),
                false,
                false,
                TimingCheck::Differs(words("45.0 s", "7.0 s")),
            ),
            // Longer and the primary: this node would under-wait its loss.
            (
                (45_000, 7_000),
                true,
                false,
                TimingCheck::Uncovered(words("45.0 s", "7.0 s")),
            ),
            (
                (35_000, 8_000),
                true,
                false,
                TimingCheck::Uncovered(words("35.0 s", "8.0 s")),
            ),
            // L shorter, H longer, the sum the same: covered.
            (
                (34_000, 8_000),
                true,
                false,
                TimingCheck::Differs(words("34.0 s", "8.0 s")),
            ),
        ];
        for (theirs, primary, witness, want) in cases {
            assert_eq!(
                compare_timing(ours, theirs, primary, witness),
                want,
                "{theirs:?} primary {primary} witness {witness}"
            );
        }
    }

    #[test]
    fn write_paths() {
        let shipped = "/run/pgsql-state -/etc/postgresql";
        let cases = [
            (shipped, "/etc/postgresql/15/main/pg_hba.conf", true),
            (shipped, "/var/lib/postgresql/15/main/pg_hba.conf", false),
            (shipped, "/etc/postgresql-common/pg_hba.conf", false),
            ("/run/pgsql-state /srv/pg", "/srv/pg/data/pg_hba.conf", true),
            ("/run/pgsql-state /srv/pg", "/srv/pgdata/pg_hba.conf", false),
            ("", "/etc/postgresql/pg_hba.conf", false),
        ];
        for (paths, file, want) in cases {
            assert_eq!(
                write_paths_cover(paths, Path::new(file)),
                want,
                "{paths} / {file}"
            );
        }
    }

    #[test]
    fn timespans() {
        let cases = [
            ("15s", Some(15_000)),
            ("2s", Some(2_000)),
            ("500ms", Some(500)),
            ("1min 30s", Some(90_000)),
            ("2.500000s", Some(2_500)),
            ("1h 2min", Some(3_720_000)),
            ("soon", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_timespan(text).map(|d| d.as_millis() as u64),
                want,
                "{text}"
            );
        }
        let shown =
            "{ OnUnitActiveUSec=2s ; next_elapse=0 }\n{ OnActiveUSec=1s ; next_elapse=0 }\n";
        assert_eq!(unit_active_interval(shown), Some(Duration::from_secs(2)));
        assert_eq!(
            unit_active_interval("{ OnActiveUSec=1s ; next_elapse=0 }"),
            None
        );
    }

    #[test]
    fn lines_and_exit() {
        let ok = Finding::ok("claim record", "present");
        let fail = Finding::fail(
            "timer interval",
            "30 s, above watchDog (2 s)",
            "systemctl daemon-reload",
        );
        assert_eq!(ok.to_string(), "ok    claim record: present");
        assert_eq!(
            fail.to_string(),
            "FAIL  timer interval: 30 s, above watchDog (2 s); fix: systemctl daemon-reload"
        );
        assert!(all_hold(&[ok.clone(), Finding::warn("x", "y", "z")]));
        assert!(!all_hold(&[ok, fail]));
    }
}
