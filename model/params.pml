/* The timing of fencing, as the model uses it. One tick is one second.
 * These are the values a test (tests/shipped_files.rs, `model_params_match_timing`)
 * compares with src/timing.rs: L = lease(watchDog, deadline), H =
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

/* Derived, exactly as src/timing.rs derives them. */
#define LEASE      (2 * WATCHDOG + DEADLINE)
#define T_FAIL     (INTER + TCHECK)
#define HTERM      (INTER + T_FAIL + TRANSIT + (FALL - 1) * (FASTINTER + T_FAIL) - (RISE - 1) * FASTINTER)
#ifndef WAIT
#define WAIT       (LEASE + HTERM)
#endif
/* The planned-switchover wait: the lease term skipped, HAProxy's kept. */
#ifndef SHORT_WAIT
#define SHORT_WAIT HTERM
#endif
