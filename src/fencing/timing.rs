//! The timing of fencing, in one place: the lease L, HAProxy's term H and
//! the longest wait W = (L + H)·(1+ρ)/(1−ρ) that a new primary sits out
//! before it answers `production` (DESIGN.md, "Deciding", Time), the
//! witness's cache
//! and the share of the deadline a peer spends asking others. Pure
//! arithmetic; the model's `model/params.pml` uses the same definitions,
//! and `tests/shipped_files.rs` checks that the two agree.

use std::time::Duration;

/// ρ, the bound on clock drift between nodes, as a fraction: 1 %. Real
/// clocks drift by tens of parts per million; this leaves room for a VM
/// whose clock runs badly.
pub const CLOCK_DRIFT: f64 = 0.01;

/// d, the longest time an answer spends between the responder and
/// HAProxy (write, loopback or LAN, read).
pub const TRANSIT_BOUND: Duration = Duration::from_secs(1);

/// How long the witness reuses one fan-out's answer (its opinion; its
/// claim record is never cached). The model's `CACHE`.
pub const WITNESS_CACHE_TTL: Duration = Duration::from_secs(1);

/// How long a data node's peer reuses one facts query for the asks that
/// arrive, so a burst of asks is a handful of Postgres queries. Well under
/// the transit bound, which the model's single read point absorbs.
pub const FACTS_CACHE_TTL: Duration = Duration::from_millis(100);

/// The share of `connectionDeadline` a peer spends on asks of its own (the
/// witness's fan-out, verifying a claim, its facts query), so its answer
/// still arrives within the asker's deadline.
pub fn fan_out_budget(connection_deadline: Duration) -> Duration {
    connection_deadline / 2
}

/// HAProxy's check timing for the `prod` pool (`haproxy.check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaproxyCheck {
    /// `inter`: the interval between checks of a stable server.
    pub inter: Duration,
    /// `fastinter`: the interval while a server is changing state.
    pub fastinter: Duration,
    /// `rise`: successful checks to mark a server UP.
    pub rise: u32,
    /// `fall`: failed checks to mark a server DOWN.
    pub fall: u32,
    /// `timeout check`: how long a check may take after it connected.
    pub timeout_check: Duration,
}

impl Default for HaproxyCheck {
    /// The shipped configs: `inter 2s fastinter 1s rise 2 fall 1`,
    /// `timeout check 3s` (above the responder's 2 s checkTimeout, so a
    /// hung Postgres is reported as `down: timeout`, not as a timed-out
    /// check).
    fn default() -> Self {
        HaproxyCheck {
            inter: Duration::from_secs(2),
            fastinter: Duration::from_secs(1),
            rise: 2,
            fall: 1,
            timeout_check: Duration::from_secs(3),
        }
    }
}

/// L, the lease: 2 × watchDog + connectionDeadline. A confirming verdict
/// is good for this long from the start of the run that wrote it.
pub fn lease(watchdog: Duration, connection_deadline: Duration) -> Duration {
    2 * watchdog + connection_deadline
}

/// T_fail: the longest time from a check's start to HAProxy counting it
/// failed, min(inter, timeout connect) + timeout check. The connect
/// timeout is taken as at least `inter`, as in the shipped configs.
pub fn check_failure_time(check: &HaproxyCheck) -> Duration {
    check.inter + check.timeout_check
}

/// H, HAProxy's term: how long a server that stopped answering the word
/// may still be UP in `prod`, less how soon a new one can be UP:
/// inter + T_fail + d − (rise−1)·fastinter, plus (fall−1)·(fastinter +
/// T_fail) when fall > 1.
pub fn haproxy_term(check: &HaproxyCheck) -> Duration {
    let t_fail = check_failure_time(check);
    let mut h = check.inter + t_fail + TRANSIT_BOUND;
    if check.fall > 1 {
        h += (check.fall - 1) * (check.fastinter + t_fail);
    }
    h.saturating_sub(check.rise.saturating_sub(1) * check.fastinter)
}

/// A span measured on one node's clock as another node's clock may see
/// it, at worst: times (1+ρ)/(1−ρ). L' is the lease drifted, H' HAProxy's
/// term drifted (the waiting node's clock may run fast while the old
/// primary's runs slow).
pub fn drifted(span: Duration) -> Duration {
    drifted_by(span, CLOCK_DRIFT)
}

/// `span` times (1+ρ)/(1−ρ) for a drift bound `rho`: [`drifted`] with
/// [`CLOCK_DRIFT`]; the model's drift configurations use ρ = 1/4, and
/// `tests/shipped_files.rs` checks their L' and H' against this formula.
pub fn drifted_by(span: Duration, rho: f64) -> Duration {
    span.mul_f64((1.0 + rho) / (1.0 - rho))
}

/// H', HAProxy's term as the waiting node's clock may measure it: the wait
/// after a node seen stopped or in recovery (it can hold no lease, but
/// HAProxy may hold it UP for up to H after its last `production`).
pub fn haproxy_wait(check: &HaproxyCheck) -> Duration {
    drifted(haproxy_term(check))
}

/// W = L' + H' = (L + H)·(1+ρ)/(1−ρ): the longest wait, for a node whose
/// voters may have confirmed the old primary's lease just now. A new
/// primary waits what is left of every other node's lease as the voters
/// saw it (at most W), from the end of gathering of its first run with a
/// majority, before it answers `production` (DESIGN.md, "What is left of
/// a lease").
pub fn wait(lease: Duration, check: &HaproxyCheck) -> Duration {
    drifted(lease) + haproxy_wait(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn design_figures() {
        let shipped = HaproxyCheck::default();
        // H = 2 + (2 + 3) + 1 − 1·1 = 7 s with the shipped configs.
        assert_eq!(haproxy_term(&shipped), secs(7.0));
        // Defaults (watchDog 15 s, deadline 5 s): L = 35 s, W ≈ 42.7 s.
        let l = lease(secs(15.0), secs(5.0));
        assert_eq!(l, secs(35.0));
        let w = wait(l, &shipped).as_secs_f64();
        assert!((42.8..42.9).contains(&w), "{w}");
        // H' = 7 s drifted.
        let h = haproxy_wait(&shipped).as_secs_f64();
        assert!((7.14..7.15).contains(&h), "{h}");
        // watchDog 1 s, deadline 1 s: L = 3 s, W ≈ 10.2 s.
        let w = wait(lease(secs(1.0), secs(1.0)), &shipped).as_secs_f64();
        assert!((10.2..10.21).contains(&w), "{w}");
        // The scenario suite's HAProxy: inter 1s fastinter 500ms rise 2 fall 1.
        let fast = HaproxyCheck {
            inter: secs(1.0),
            fastinter: secs(0.5),
            rise: 2,
            fall: 1,
            timeout_check: secs(1.0),
        };
        assert_eq!(haproxy_term(&fast), secs(3.5));
        // fall 3 adds two more failed checks.
        let slow_fall = HaproxyCheck { fall: 3, ..shipped };
        assert_eq!(haproxy_term(&slow_fall), secs(7.0 + 2.0 * 6.0));
    }
}
