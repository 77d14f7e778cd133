//! What a config's timing costs, in seconds an operator can weigh: the
//! lease L, HAProxy's term H and a new primary's longest wait W, what a
//! zombie and a lost primary cost, and what a blip of the peer network
//! costs a healthy primary. Pure arithmetic over the timing keys, from the
//! formulas of [`super::timing`]; `check-config` and `doctor` print it.
//!
//! Each figure is an upper bound for the reconciler as it runs today: one
//! full run every watchDog (the timer fires up to [`TIMER_ACCURACY`]
//! late), and each run first asks its Postgres (up to `checkTimeout`),
//! resolves its voters' names (up to min(1 s, D)) and then asks them (up to
//! connectionDeadline D). Only `fencing: strict` gives these bounds: in
//! the other modes no lease fences a zombie.
//!
//! - **A zombie** (the primary cut from every voter, still running). The
//!   last run before the cut may have renewed its verdict just then; the
//!   next one starts at most watchDog later, waits out its asks and
//!   fences. Its last `production` is at most watchDog + one run after the
//!   cut; with its reconciler hung, at most L (its verdict runs out).
//!   HAProxy keeps it UP in `prod` at most H + (rise − 1) × fastinter
//!   after its last `production` (H counts a new primary's rise off).
//! - **A lost primary** (its machine gone, packets dropped), a standby
//!   promoted at once with a run started then, as the repmgr example's
//!   `promote_command` does. The wait starts when that run's asks are in
//!   and lasts at most W; the run that sits out its end decides again
//!   50 ms after it, asking once more. Its first `production` is at most
//!   W + two runs after the promotion, and HAProxy marks it UP within
//!   `inter` + (rise − 1) × `fastinter` more.
//! - **A blip** of the peer network: a run that reaches no majority of the
//!   voters fences at once, so a blip that catches one run's asks takes
//!   the primary out of `prod` until a later run reaches a majority again
//!   (at least watchDog), plus HAProxy's rise.

use std::time::Duration;

use super::timing::{self, HaproxyCheck};

/// How late systemd may fire the reconcile timer (`AccuracySec=100ms` in
/// `units/pgsql-state-reconcile.timer`).
pub const TIMER_ACCURACY: Duration = Duration::from_millis(100);

/// How long after a wait's end a run that sat it out decides again.
pub const RERUN_MARGIN: Duration = Duration::from_millis(50);

/// The timing keys a price is computed from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// watchDog: the full run's interval.
    pub watchdog: Duration,
    /// connectionDeadline: each ask's bound.
    pub connection_deadline: Duration,
    /// checkTimeout: the bound on asking the local Postgres.
    pub check_timeout: Duration,
    /// `haproxy.check`: HAProxy's check timing for `prod`.
    pub haproxy: HaproxyCheck,
}

/// What one config's timing costs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// What it was computed from.
    pub timing: Timing,
    /// L = 2 × watchDog + connectionDeadline.
    pub lease: Duration,
    /// H, HAProxy's term.
    pub haproxy_term: Duration,
    /// W = L' + H', a new primary's longest wait.
    pub wait: Duration,
    /// One run at its longest: Postgres, the names, the asks.
    pub run: Duration,
    /// A zombie's last `production` after its cut, its reconciler running.
    pub zombie: Duration,
    /// The same, its reconciler hung.
    pub zombie_reconciler_hung: Duration,
    /// How long HAProxy keeps a server UP in `prod` after its last
    /// `production`, at most.
    pub haproxy_drop: Duration,
    /// A successor promoted at once: its first `production` after the
    /// promotion, at most.
    pub lost_primary: Duration,
    /// From a node's first `production` until HAProxy marks it UP, at
    /// most.
    pub haproxy_rise: Duration,
}

/// The price of `timing`.
pub fn price(timing: Timing) -> Price {
    let check = &timing.haproxy;
    let deadline = timing.connection_deadline;
    let lease = timing::lease(timing.watchdog, deadline);
    let wait = timing::wait(lease, check);
    let resolve = Duration::from_secs(1).min(deadline);
    let run = timing.check_timeout + resolve + deadline;
    let rise = check.rise.saturating_sub(1) * check.fastinter;
    let haproxy_term = timing::haproxy_term(check);
    Price {
        timing,
        lease,
        haproxy_term,
        wait,
        run,
        zombie: timing.watchdog + TIMER_ACCURACY + run,
        zombie_reconciler_hung: lease,
        haproxy_drop: haproxy_term + rise,
        lost_primary: run + wait + RERUN_MARGIN + run,
        haproxy_rise: check.inter + rise,
    }
}

/// A bound in seconds, rounded up to the tenth.
fn up(d: Duration) -> String {
    let tenths = d.as_nanos().div_ceil(100_000_000);
    format!("{}.{} s", tenths / 10, tenths % 10)
}

impl Price {
    /// The price in lines an operator reads. `strict`: whether this node
    /// runs `fencing: strict`, the only mode with a lease.
    pub fn lines(&self, strict: bool) -> Vec<String> {
        let t = &self.timing;
        let mut lines = vec![format!(
            "lease L {} (2 × watchDog {} + connectionDeadline {}); HAProxy's term H {}; \
             a new primary's longest wait W {} (L + H, with 1 % clock drift)",
            up(self.lease),
            up(t.watchdog),
            up(t.connection_deadline),
            up(self.haproxy_term),
            up(self.wait),
        )];
        if !strict {
            lines.push(
                "no bound on a zombie: only `fencing: strict` makes `production` need a lease; \
                 in this mode a primary cut from every voter says `production` for as long as \
                 its Postgres runs"
                    .to_string(),
            );
            return lines;
        }
        lines.extend([
            format!(
                "a zombie (a primary cut from every voter): its last `production` at most {} \
                 after the cut (watchDog + one run of up to {}: checkTimeout, names, \
                 connectionDeadline), {} if its reconciler hangs; HAProxy keeps it UP in `prod` \
                 at most {} after that",
                up(self.zombie),
                up(self.run),
                up(self.zombie_reconciler_hung),
                up(self.haproxy_drop),
            ),
            format!(
                "a lost primary (its machine gone), a standby promoted at once: the successor \
                 says `production` at most {} after the promotion (W + two runs), and HAProxy \
                 marks it UP within {} more",
                up(self.lost_primary),
                up(self.haproxy_rise),
            ),
            format!(
                "a blip of the peer network: a run that reaches no majority of the voters \
                 fences at once and ends the write sessions, so a blip that catches one run's \
                 asks takes the primary out of `prod` until a later run reaches a majority \
                 (at least watchDog, {}), and HAProxy's rise ({}) after it",
                up(t.watchdog),
                up(self.haproxy_rise),
            ),
        ]);
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn timing(watchdog: f64, deadline: f64, check_timeout: f64, haproxy: HaproxyCheck) -> Timing {
        Timing {
            watchdog: secs(watchdog),
            connection_deadline: secs(deadline),
            check_timeout: secs(check_timeout),
            haproxy,
        }
    }

    /// (timing, L, H, W range, one run, zombie, hung, drop, lost-primary
    /// range, rise).
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
            Timing,
            f64,
            f64,
            (f64, f64),
            f64,
            f64,
            f64,
            f64,
            (f64, f64),
            f64,
        ); 3] = [
            // harepd's template. The issue measured a zombie's last word
            // 16.7 s after its cut (35 s hung) and a lost machine's
            // successor 54.3 s after its promotion: under these bounds.
            (
                timing(15.0, 5.0, 2.0, shipped),
                35.0,
                7.0,
                (42.8, 42.9),
                8.0,
                23.1,
                35.0,
                8.0,
                (58.89, 58.9),
                3.0,
            ),
            // The scenario suite's timing.
            (
                timing(1.0, 1.0, 1.0, scenario),
                3.0,
                3.5,
                (6.6, 6.7),
                3.0,
                4.1,
                3.0,
                4.0,
                (12.68, 12.69),
                1.5,
            ),
            // watchDog 8 with the shipped HAProxy, deadline 2.
            (
                timing(8.0, 2.0, 2.0, shipped),
                18.0,
                7.0,
                (25.5, 25.6),
                5.0,
                13.1,
                18.0,
                8.0,
                (35.55, 35.56),
                3.0,
            ),
        ];
        for (t, l, h, w, run, zombie, hung, drop, lost, rise) in cases {
            let p = price(t);
            let case = format!("{t:?}: {p:?}");
            let is = |d: Duration, want: f64| (d.as_secs_f64() - want).abs() < 1e-6;
            assert!(is(p.lease, l), "L: {case}");
            assert!(is(p.haproxy_term, h), "H: {case}");
            let got = p.wait.as_secs_f64();
            assert!((w.0..w.1).contains(&got), "W {got}: {case}");
            assert!(is(p.run, run), "run: {case}");
            assert!(is(p.zombie, zombie), "zombie: {case}");
            assert!(is(p.zombie_reconciler_hung, hung), "hung: {case}");
            assert!(is(p.haproxy_drop, drop), "drop: {case}");
            let got = p.lost_primary.as_secs_f64();
            assert!((lost.0..lost.1).contains(&got), "lost {got}: {case}");
            assert!(is(p.haproxy_rise, rise), "rise: {case}");
        }
    }

    #[test]
    fn the_lines_carry_the_figures_rounded_up() {
        let p = price(timing(15.0, 5.0, 2.0, HaproxyCheck::default()));
        let lines = p.lines(true);
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines[0].starts_with("lease L 35.0 s"), "{}", lines[0]);
        // 42.848 s: a bound, so 42.9, never 42.8.
        assert!(lines[0].contains("W 42.9 s"), "{}", lines[0]);
        assert!(
            lines[1].contains("at most 23.1 s after the cut") && lines[1].contains("35.0 s if"),
            "{}",
            lines[1]
        );
        assert!(
            lines[1].contains("at most 8.0 s after that"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].contains("at most 58.9 s after the promotion"),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].contains("at least watchDog, 15.0 s"),
            "{}",
            lines[3]
        );
    }

    #[test]
    fn without_strict_fencing_no_zombie_bound_is_promised() {
        let p = price(timing(15.0, 5.0, 2.0, HaproxyCheck::default()));
        let lines = p.lines(false);
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[1].starts_with("no bound on a zombie"), "{}", lines[1]);
        assert!(
            !lines.iter().any(|l| l.contains("after the cut")),
            "{lines:#?}"
        );
    }

    #[test]
    fn bounds_round_up() {
        for (d, want) in [
            (secs(42.848), "42.9 s"),
            (secs(35.0), "35.0 s"),
            (secs(0.05), "0.1 s"),
            (Duration::ZERO, "0.0 s"),
        ] {
            assert_eq!(up(d), want, "{d:?}");
        }
    }
}
