/* The timing of fencing, as the model uses it. One tick is one second.
 * These are the values a test (tests/shipped_files.rs, `model_params_match_timing`)
 * compares with src/fencing/timing.rs: L = lease(watchDog, deadline), H =
 * haproxy_term(check), W = L + H (the model takes the clock drift rho as 0;
 * the code's W multiplies L by (1+rho)/(1-rho), which only makes it longer).
 * A configuration in check.sh may override any of these with -D. */

#ifndef WATCHDOG
#define WATCHDOG   1   /* R: watchDog, the reconcile interval (s) */
#endif
#ifndef DEADLINE
#define DEADLINE   1   /* D: connectionDeadline (s) */
#endif
#ifndef CACHE
#define CACHE      1   /* the witness's answer cache (s): WITNESS_CACHE_TTL */
#endif

/* HAProxy's prod pool: the shipped configs' `inter 2s fastinter 1s rise 2
 * fall 1`, `timeout check 3s`, and d, the transit bound (TRANSIT_BOUND). */
#ifndef INTER
#define INTER      2
#endif
#ifndef FASTINTER
#define FASTINTER  1
#endif
#ifndef RISE
#define RISE       2
#endif
#ifndef FALL
#define FALL       1
#endif
#ifndef TCHECK
#define TCHECK     3
#endif
#ifndef TRANSIT
#define TRANSIT    1
#endif

/* Clock drift: with DRIFT, each node's clock is true, slow or fast for a
 * whole run, by one tick in DRIFT_PERIOD (rho = 1 / DRIFT_PERIOD, far more
 * than the code's 1 %, so that drift shows in a few ticks). */
#ifndef DRIFT
#define DRIFT      0
#endif
#ifndef DRIFT_PERIOD
#define DRIFT_PERIOD 4
#endif
#ifndef NO_DRIFT_COMP
#define NO_DRIFT_COMP 0
#endif
/* Mutations: the drift factor left off L' only, or off H' only. */
#ifndef NO_DRIFT_L
#define NO_DRIFT_L 0
#endif
#ifndef NO_DRIFT_H
#define NO_DRIFT_H 0
#endif

/* The renewal (RENEW): a process of its own on each data node renews a
 * confirming verdict every RINT ticks, each of its asks bounded by DREN;
 * the full run keeps WATCHDOG. The lease is then L = 2 RINT + DREN, from
 * the same function as before (one round may fail, and the next still
 * lands before L). Without RENEW, the lease is the full run's. */
#ifndef RENEW
#define RENEW      0
#endif
#ifndef RINT
#define RINT       1   /* the model renews at every tick: RINT is 1 */
#endif
#ifndef DREN
#define DREN       1
#endif
#if RINT != 1
#error "the model renews at every tick: RINT must be 1"
#endif
/* Mutation: L = 2 RINT + DREN - 1, one tick short of surviving a lost
 * round. */
#ifndef SHORT_LEASE
#define SHORT_LEASE 0
#endif

/* Derived, exactly as src/fencing/timing.rs derives them. */
#define LEASE      (RENEW -> (2 * RINT + DREN - SHORT_LEASE) : (2 * WATCHDOG + DEADLINE))
#define T_FAIL     (INTER + TCHECK)
#define HTERM      (INTER + T_FAIL + TRANSIT + (FALL - 1) * (FASTINTER + T_FAIL) - (RISE - 1) * FASTINTER)
/* L' and H': the lease and HAProxy's term as the other clocks may see
 * them, times (1 + rho) / (1 - rho), rounded up (the identity without
 * drift). */
#define DRIFTED(x) ((DRIFT && !NO_DRIFT_COMP) -> \
                    (((x) * (DRIFT_PERIOD + 1) + DRIFT_PERIOD - 2) / (DRIFT_PERIOD - 1)) : (x))
#define LEASE_P    (NO_DRIFT_L -> LEASE : DRIFTED(LEASE))
#define HTERM_P    (NO_DRIFT_H -> HTERM : DRIFTED(HTERM))
#ifndef WAIT
#define WAIT       (LEASE_P + HTERM_P)
#endif
/* The planned-switchover wait: the lease term skipped, HAProxy's kept. */
#ifndef SHORT_WAIT
#define SHORT_WAIT HTERM_P
#endif
/* What a voter's confirmation of a node leaves of its lease, HAProxy's
 * term included (the wait when a voter confirmed it just now). */
#ifndef CONF_MAX
#define CONF_MAX   (LEASE_P + HTERM_P)
#endif

/* Nodes whose L differ (SHRINK): a node may still run the old config,
 * whose lease is the full run's (2 WATCHDOG + DEADLINE), and a rollout
 * shrinks it to LEASE one node at a time. A confirmation leaves what the
 * claimant declared; a restarted voter, or one not reached, counts the
 * longest any node may declare (CONF_TOP). */
#ifndef SHRINK
#define SHRINK     0
#endif
#define LEASE_OLD  (2 * WATCHDOG + DEADLINE)
#define CONF_OLD   (DRIFTED(LEASE_OLD) + HTERM_P)
#define CONF_TOP   ((SHRINK && CONF_OLD > CONF_MAX) -> CONF_OLD : CONF_MAX)
