//! What a config's timing costs, in seconds an operator can weigh: the
//! lease L, HAProxy's term H and a new primary's longest wait W, what a
//! zombie and a lost primary cost, and the longest blip of the peer
//! network a healthy primary rides out. Pure arithmetic over the timing
//! keys, from the formulas of [`super::timing`]; `check-config` and
//! `doctor` print it.
//!
//! Each figure is a bound for the reconciler as it runs today: one full
//! run every watchDog, each run asking every voter under
//! connectionDeadline.
//!
//! - **A zombie** (the primary cut from every voter, still running). The
//!   last run before the cut may have renewed its verdict just then; the
//!   next one starts at most watchDog later, waits out its asks (D) and
//!   fences. Its last `production` is at most watchDog + D after the cut;
//!   with its reconciler hung, at most L (its verdict runs out). HAProxy
//!   takes it out of `prod` at most H after its last `production`.
//! - **A lost primary** (its machine gone, packets dropped), a standby
//!   promoted at once with a run started then, as the repmgr example's
//!   `promote_command` does. That run's ask to the lost node takes D, its
//!   wait is at most W, and the run that ends it asks again (D): its first
//!   `production` is at most W + 2D after the promotion, and HAProxy marks
//!   it UP within `inter` + (rise − 1) × `fastinter` more.
//! - **A blip** of the peer network: a run that reaches no majority of the
//!   voters fences at once, so a blip that catches one run's asks costs
//!   the primary `prod` until the next run (watchDog).

use std::time::Duration;

use super::timing::{self, HaproxyCheck};

/// What one config's timing costs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// watchDog: the full run's interval.
    pub watchdog: Duration,
    /// connectionDeadline: each ask's bound.
    pub connection_deadline: Duration,
    /// L = 2 × watchDog + connectionDeadline.
    pub lease: Duration,
    /// H, HAProxy's term.
    pub haproxy_term: Duration,
    /// W = L' + H', a new primary's longest wait.
    pub wait: Duration,
    /// A zombie's last `production` after its cut, its reconciler running.
    pub zombie: Duration,
    /// The same, its reconciler hung.
    pub zombie_reconciler_hung: Duration,
    /// A successor promoted at once: its first `production` after the
    /// promotion, at most.
    pub lost_primary: Duration,
    /// From a node's first `production` until HAProxy marks it UP, at
    /// most.
    pub haproxy_rise: Duration,
    /// The longest blip of the peer network that a healthy primary rides
    /// out without leaving `prod`: none while every run that misses a
    /// majority fences.
    pub longest_blip: Duration,
}

/// The price of watchDog `watchdog`, connectionDeadline `deadline` and
/// HAProxy's check timing `check`.
pub fn price(watchdog: Duration, deadline: Duration, check: &HaproxyCheck) -> Price {
    let lease = timing::lease(watchdog, deadline);
    let wait = timing::wait(lease, check);
    Price {
        watchdog,
        connection_deadline: deadline,
        lease,
        haproxy_term: timing::haproxy_term(check),
        wait,
        zombie: watchdog + deadline,
        zombie_reconciler_hung: lease,
        lost_primary: wait + 2 * deadline,
        haproxy_rise: check.inter + check.rise.saturating_sub(1) * check.fastinter,
        longest_blip: Duration::ZERO,
    }
}

impl Price {
    /// The price in lines an operator reads, each starting with what it is
    /// about.
    pub fn lines(&self) -> Vec<String> {
        let s = |d: Duration| format!("{:.1} s", d.as_secs_f64());
        vec![
            format!(
                "lease L {} (2 × watchDog {} + connectionDeadline {}); HAProxy's term H {}; \
                 a new primary's longest wait W {} (L + H, with 1 % clock drift)",
                s(self.lease),
                s(self.watchdog),
                s(self.connection_deadline),
                s(self.haproxy_term),
                s(self.wait),
            ),
            format!(
                "a zombie (a primary cut from every voter): its last `production` at most {} \
                 after the cut ({} if its reconciler hangs); HAProxy drops it at most {} later",
                s(self.zombie),
                s(self.zombie_reconciler_hung),
                s(self.haproxy_term),
            ),
            format!(
                "a lost primary (its machine gone), a standby promoted at once: the successor \
                 says `production` at most {} after the promotion (W + 2 × connectionDeadline), \
                 and HAProxy marks it UP within {} more",
                s(self.lost_primary),
                s(self.haproxy_rise),
            ),
            if self.longest_blip.is_zero() {
                format!(
                    "a blip of the peer network: a run that reaches no majority of the voters \
                     fences at once, so a blip that catches one run's asks takes the primary out \
                     of `prod` until the next run (watchDog {})",
                    s(self.watchdog)
                )
            } else {
                format!(
                    "a blip of the peer network up to {} leaves a healthy primary in `prod`",
                    s(self.longest_blip)
                )
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// (watchDog, connectionDeadline, check, L, H, W range, zombie, hung,
    /// lost-primary range, rise).
    #[test]
    fn prices_of_the_timings_users_bring() {
        let shipped = HaproxyCheck::default();
        let scenario = HaproxyCheck {
            inter: secs(1.0),
            fastinter: secs(0.5),
            rise: 2,
            fall: 1,
            timeout_check: secs(1.0),
        };
        #[allow(clippy::type_complexity)]
        let cases: [(
            f64,
            f64,
            HaproxyCheck,
            f64,
            f64,
            (f64, f64),
            f64,
            f64,
            (f64, f64),
            f64,
        ); 3] = [
            // harepd's template: what the issue measured (zombie 16.7 s,
            // hung 35 s, lost machine 54.3 s with the run after the wait).
            (
                15.0,
                5.0,
                shipped,
                35.0,
                7.0,
                (42.8, 42.9),
                20.0,
                35.0,
                (52.8, 52.9),
                3.0,
            ),
            // The scenario suite's timing.
            (
                1.0,
                1.0,
                scenario,
                3.0,
                3.5,
                (6.6, 6.7),
                2.0,
                3.0,
                (8.6, 8.7),
                1.5,
            ),
            // watchDog 8 with the shipped HAProxy.
            (
                8.0,
                2.0,
                shipped,
                18.0,
                7.0,
                (25.5, 25.6),
                10.0,
                18.0,
                (29.5, 29.6),
                3.0,
            ),
        ];
        for (wd, d, check, l, h, w, zombie, hung, lost, rise) in cases {
            let p = price(secs(wd), secs(d), &check);
            let case = format!("watchDog {wd}, deadline {d}: {p:?}");
            assert_eq!(p.lease, secs(l), "{case}");
            assert_eq!(p.haproxy_term, secs(h), "{case}");
            let got = p.wait.as_secs_f64();
            assert!((w.0..w.1).contains(&got), "W {got}: {case}");
            assert_eq!(p.zombie, secs(zombie), "{case}");
            assert_eq!(p.zombie_reconciler_hung, secs(hung), "{case}");
            let got = p.lost_primary.as_secs_f64();
            assert!((lost.0..lost.1).contains(&got), "lost {got}: {case}");
            assert_eq!(p.haproxy_rise, secs(rise), "{case}");
            assert_eq!(p.longest_blip, Duration::ZERO, "{case}");
        }
    }

    #[test]
    fn the_lines_carry_the_figures() {
        let p = price(secs(15.0), secs(5.0), &HaproxyCheck::default());
        let lines = p.lines();
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines[0].starts_with("lease L 35.0 s"), "{}", lines[0]);
        assert!(lines[0].contains("W 42.8 s"), "{}", lines[0]);
        assert!(
            lines[1].contains("at most 20.0 s after the cut (35.0 s if"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].contains("at most 52.8 s after the promotion"),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].contains("until the next run (watchDog 15.0 s)"),
            "{}",
            lines[3]
        );
    }
}
