/* Prints the model's timing, as params.pml derives it, for the test that
 * compares it with src/fencing/timing.rs (tests/shipped_files.rs):
 *   spin [-DNAME=value ...] model/print_params.pml */
#include "params.pml"

init {
  printf("PARAMS WATCHDOG=%d DEADLINE=%d CACHE=%d INTER=%d FASTINTER=%d RISE=%d FALL=%d TCHECK=%d TRANSIT=%d LEASE=%d T_FAIL=%d HTERM=%d WAIT=%d SHORT_WAIT=%d CONF_MAX=%d\n",
    WATCHDOG, DEADLINE, CACHE, INTER, FASTINTER, RISE, FALL, TCHECK, TRANSIT,
    LEASE, T_FAIL, HTERM, WAIT, SHORT_WAIT, CONF_MAX);
  printf("RENEWAL RENEW=%d RINT=%d DREN=%d LEASE_OLD=%d CONF_TOP=%d\n",
    RENEW, RINT, DREN, LEASE_OLD, CONF_TOP);
  printf("DRIFTED DRIFT=%d DRIFT_PERIOD=%d LEASE_P=%d HTERM_P=%d\n",
    DRIFT, DRIFT_PERIOD, LEASE_P, HTERM_P)
}
