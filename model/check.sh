#!/usr/bin/env bash
# Checks the fencing model (pgsql_state.pml) with spin:
#   ./model/check.sh            every configuration, then every mutation
#   ./model/check.sh NAME...    only these (names as printed)
#   DEEP=1 ./model/check.sh     also the six-fault search of the design
#   PAN_CFLAGS=-DMEMLIM=1 ./model/check.sh healthy
#                               pan with extra flags (this one: a search
#                               cut short by memory, which must FAIL)
#
# A configuration is the design as built under some set of faults; its
# search must be complete and find no violation. A mutation weakens one
# rule; its search must find a counterexample to the property named, or
# the model could not have failed. Runs JOBS searches at a time (default:
# the number of cores). Trails and their replays are kept in MODEL_OUT
# (default: a temporary directory, printed at the end).
#
# Needs spin and a C compiler; ./scripts/install-deps.sh installs spin.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
command -v spin >/dev/null || { echo "model/check.sh: spin is not installed (apt-get install spin, or ./scripts/install-deps.sh)" >&2; exit 2; }
command -v cc >/dev/null || { echo "model/check.sh: no C compiler (cc)" >&2; exit 2; }
jobs_max=${JOBS:-$(nproc)}
out=${MODEL_OUT:-$(mktemp -d /tmp/pgsql-state-model.XXXXXX)}
mkdir -p "$out"

# name | expected: "ok", the property a mutation must break, or
# "sanity:P" for a check that breaks P by construction (it shows the
# property can fail at all; it is no mutation of a rule) | spin -D flags
# Faults: F_LINK (partitions, any, non-transitive included), F_PEER (a peer
# crashed, hung or restarted; the witness lost), F_PGHANG (a postmaster hung
# and resumed), F_STOP (A's Postgres stopped, started as the zombie or as a
# standby), F_RECON (a reconciler stopped and going on), F_STRANGER (claims
# from a stranger), F_WIPE (a voter's record wiped: its disk lost, `claims
# init`), F_RENEW (a renewal process stopped or hung, and back), F_KILL (a
# run or renewal round killed between its voters' confirmations and its
# write); MAXF bounds how many happen in one run.
checks=(
  # The longest first, so that the two cores stay busy.
  "everything|ok|-DF_LINK=1 -DF_PEER=1 -DF_PGHANG=1 -DF_STOP=1 -DF_RESTART=1 -DF_RECON=1 -DF_STRANGER=1 -DMAXF=2"
  "hangs|ok|-DF_PGHANG=1 -DF_PEER=1 -DMAXF=3 -DPEER_MASK=3"
  "peers|ok|-DF_PEER=1 -DMAXF=3"
  "drift|ok|-DDRIFT=1 -DF_RECON=1 -DMAXF=1"
  "partitions|ok|-DF_LINK=1 -DMAXF=4"
  "three-nodes|ok|-DND=3 -DF_LINK=1 -DMAXF=1"
  "restarts|ok|-DF_STOP=1 -DF_RECON=1 -DMAXF=3"
  "slow-timer|ok|-DWATCHDOG=2 -DJITTER=1 -DF_LINK=1 -DF_RECON=1 -DMAXF=2 -DLINK_MASK=5"
  "lease-over-h|ok|-DINTER=1 -DTCHECK=1 -DWATCHDOG=2 -DJITTER=1 -DF_STOP=1 -DF_PGHANG=1 -DMAXF=3"
  "three-nodes-restarts|ok|-DND=3 -DF_STOP=1 -DF_RESTART=1 -DMAXF=2 -DPROMOTE_MASK=2"
  "plain-wait|ok|-DOVERLAP=0 -DF_LINK=1 -DF_RECON=1 -DMAXF=2"
  "restart-in-place|ok|-DF_RESTART=1 -DF_LINK=1 -DMAXF=2"
  "lost-machine|ok|-DF_LINK=1 -DLINK_MASK=3 -DMAXF=2"
  "lost-peer-and-postmaster|ok|-DF_PEER=1 -DF_PGHANG=1 -DPEER_MASK=1 -DNODE_MASK=1 -DMAXF=2"
  "strangers|ok|-DF_STRANGER=1 -DMAXF=2"
  "fall-2|ok|-DFALL=2 -DF_RECON=1 -DF_PGHANG=1 -DMAXF=2"
  "healthy|ok|"
  "healthy-late-t0|ok|-DLATE_T0=1"
  "switchover-late-t0|ok|-DF_STOP=1 -DMAXF=3 -DLATE_T0=1"
  "lease-only-p1|ok|-DCONF_MAX=LEASE_P -DCHECK_P2=0 -DF_RECON=1 -DMAXF=1"
  "claims-init|ok|-DF_WIPE=1 -DF_LINK=1 -DMAXF=2"
  "drift-lease-over-h|ok|-DDRIFT=1 -DINTER=1 -DTCHECK=1 -DWATCHDOG=2 -DF_RECON=1 -DMAXF=1"
  # The renewal (RENEW): the lease renewed every tick by a process of its
  # own, L = 2 R + D_r = 3, the full run every WATCHDOG = 3. F_RENEW stops
  # or hangs a renewal; F_KILL kills a run or a round after its voters
  # confirmed it, before it wrote; SHRINK starts each node on the old
  # config (L = 2 WATCHDOG + D = 7) or the new one, and rolls A and B over
  # to the new one; PROMOTE_CHECK gates every promotion (P8).
  "renew-three-nodes|ok|-DND=3 -DRENEW=1 -DWATCHDOG=3 -DF_LINK=1 -DMAXF=1 -DPROMOTE_MASK=2"
  "renew-shrink-killed|ok|-DRENEW=1 -DWATCHDOG=3 -DSHRINK=1 -DF_KILL=1 -DF_RECON=1 -DMAXF=2 -DNODE_MASK=1"
  "renew-drift|ok|-DRENEW=1 -DWATCHDOG=3 -DDRIFT=1 -DF_RENEW=1 -DMAXF=1"
  "renew-faults|ok|-DRENEW=1 -DWATCHDOG=3 -DF_RENEW=1 -DF_RECON=1 -DF_KILL=1 -DF_LINK=1 -DMAXF=2"
  "renew-shrink|ok|-DRENEW=1 -DWATCHDOG=3 -DSHRINK=1 -DF_RENEW=1 -DF_RECON=1 -DMAXF=2 -DNODE_MASK=1"
  "renew-hangs|ok|-DRENEW=1 -DWATCHDOG=3 -DF_PGHANG=1 -DF_PEER=1 -DMAXF=2 -DPEER_MASK=1 -DNODE_MASK=1"
  "renew-partitions|ok|-DRENEW=1 -DWATCHDOG=3 -DF_LINK=1 -DMAXF=2"
  "promote-check|ok|-DRENEW=1 -DWATCHDOG=3 -DPROMOTE_CHECK=1 -DF_LINK=1 -DF_PEER=1 -DF_RECON=1 -DF_RENEW=1 -DF_STOP=1 -DMAXF=2"
  # Four voters, so m - 1 = 2 of the others must have seen it run out.
  "promote-check-three-nodes|ok|-DND=3 -DRENEW=1 -DWATCHDOG=3 -DPROMOTE_CHECK=1 -DF_LINK=1 -DMAXF=1 -DPROMOTE_MASK=2"
  "renew-restarts|ok|-DRENEW=1 -DWATCHDOG=3 -DF_STOP=1 -DF_RESTART=1 -DMAXF=2"
  "renew-claims-init|ok|-DRENEW=1 -DWATCHDOG=3 -DF_WIPE=1 -DF_LINK=1 -DMAXF=2 -DWIPE_MASK=4"
  "renew-healthy|ok|-DRENEW=1 -DWATCHDOG=3 -DCHECK_P9=1 -DLATE_T0=1"
  # Mutations: each must find a counterexample to the property named.
  "mth-smallest-age|P1|-DMTH_SMALLEST=1 -DCHECK_P2=0 -DCHECK_LIVE=0 -DF_LINK=1 -DF_PEER=1 -DMAXF=3"
  "voter-restart-forgets|P1|-DRESTART_FORGETS=1 -DCHECK_P2=0 -DCHECK_LIVE=0 -DWATCHDOG=2 -DF_LINK=1 -DF_PEER=1 -DMAXF=3 -DLINK_MASK=1 -DPEER_MASK=4"
  "restart-without-majority|P1|-DRESTART_NO_MAJORITY=1 -DCHECK_P2=0 -DF_STOP=1 -DF_LINK=1 -DMAXF=3"
  "no-drift-compensation|P2|-DDRIFT=1 -DNO_DRIFT_COMP=1 -DCHECK_LIVE=0 -DF_RECON=1 -DMAXF=1"
  "drift-on-l-only|P2|-DDRIFT=1 -DNO_DRIFT_H=1 -DCHECK_LIVE=0 -DF_RECON=1 -DMAXF=1"
  "drift-on-h-only|P2|-DDRIFT=1 -DNO_DRIFT_L=1 -DCHECK_LIVE=0 -DINTER=1 -DTCHECK=1 -DWATCHDOG=2 -DF_RECON=1 -DMAXF=1"
  "no-claim-records|P1|-DNO_RECORDS=1 -DCHECK_P2=0 -DCHECK_LIVE=0 -DF_LINK=1 -DMAXF=1"
  "lease-only-minus-1|P1|-DCONF_MAX=LEASE_P-1 -DCHECK_P2=0 -DF_RECON=1 -DMAXF=1"
  "lease-plus-h-minus-1|P2|-DCONF_MAX=LEASE_P+HTERM_P-1 -DF_RECON=1 -DMAXF=1"
  "fall-2-minus-1|P2|-DFALL=2 -DCONF_MAX=LEASE_P+HTERM_P-1 -DF_RECON=1 -DMAXF=1"
  "majority-of-reachable|P1|-DREACHABLE_MAJORITY=1 -DCHECK_P2=0 -DF_LINK=1 -DMAXF=2"
  "reached-not-holders|P1|-DREACHED_NOT_HOLDERS=1 -DCHECK_P2=0 -DF_PEER=1 -DMAXF=2 -DPEER_MASK=3"
  "self-listed-twice|P1|-DND=3 -DDOUBLE_SELF=1 -DCHECK_P2=0 -DF_LINK=1 -DMAXF=2 -DLINK_MASK=3 -DPROMOTE_MASK=2"
  "self-listed-twice-two-nodes|P1|-DDOUBLE_SELF=1 -DCHECK_P2=0 -DF_LINK=1 -DMAXF=1"
  "confirm-from-first-read|P1|-DCONFIRM_FROM_FIRST_READ=1 -DCHECK_P2=0 -DCHECK_LIVE=0 -DDRIFT=1 -DWATCHDOG=2 -DF_LINK=1 -DF_RECON=1 -DMAXF=3 -DLINK_MASK=1 -DNODE_MASK=1"
  "init-votes-at-once|P7|-DINIT_VOTES_AT_ONCE=1 -DCHECK_LIVE=0 -DF_LINK=1 -DF_WIPE=1 -DWIPE_MASK=4 -DMAXF=5"
  "catch-up-from-half|P7|-DCATCH_UP_HALF=1 -DCHECK_LIVE=0 -DF_LINK=1 -DF_WIPE=1 -DWIPE_MASK=4 -DMAXF=5"
  "restart-after-any-verdict|P2|-DRESTART_ANY_VERDICT=1 -DF_RESTART=1 -DMAXF=1"
  "stranger-unverified|P3|-DNO_VERIFY=1 -DF_STRANGER=1 -DMAXF=1"
  "switchover-no-shortcut|P4|-DNO_SHORTCUT=1 -DWATCHDOG=3 -DF_STOP=1 -DMAXF=1"
  "shortcut-on-timeout|P1|-DSHORTCUT_ON_TIMEOUT=1 -DCHECK_P2=0 -DCHECK_LIVE=0 -DINTER=1 -DTCHECK=1 -DWATCHDOG=2 -DJITTER=1 -DF_PGHANG=1 -DMAXF=2"
  "no-restart-rule|P5|-DRESTART_RULE=0 -DF_PEER=1 -DF_RESTART=1 -DMAXF=2"
  "no-ages|P6|-DAGES=0 -DF_LINK=1 -DLINK_MASK=3 -DMAXF=2"
  "renewal-over-a-fence|P1|-DRENEW=1 -DWATCHDOG=3 -DRENEW_OVER_FENCE=1 -DCHECK_P2=0 -DCHECK_LIVE=0 -DF_RENEW=1 -DMAXF=1"
  "renewal-creates-production|P1|-DRENEW=1 -DWATCHDOG=3 -DRENEW_CREATES=1 -DCHECK_P2=0 -DCHECK_LIVE=0 -DF_LINK=1 -DMAXF=1"
  "start-time-after-gathering|P2|-DRENEW=1 -DWATCHDOG=3 -DT0_AFTER=1 -DCHECK_LIVE=0 -DF_RENEW=1 -DF_RECON=1 -DMAXF=2"
  "lease-under-2r-plus-dr|P9|-DRENEW=1 -DWATCHDOG=3 -DSHORT_LEASE=1 -DCHECK_P9=1 -DLATE_T0=1"
  "wait-from-local-l|P2|-DRENEW=1 -DWATCHDOG=3 -DSHRINK=1 -DLOCAL_L=1 -DCHECK_LIVE=0 -DF_RENEW=1 -DF_RECON=1 -DMAXF=2 -DNODE_MASK=1"
  "last-declared-lease|P2|-DRENEW=1 -DWATCHDOG=3 -DSHRINK=1 -DLAST_DECLARED=1 -DCHECK_LIVE=0 -DF_KILL=1 -DF_RECON=1 -DMAXF=2 -DNODE_MASK=1"
  "promote-check-without-h|P8|-DRENEW=1 -DWATCHDOG=3 -DPROMOTE_CHECK=1 -DPC_NO_H=1 -DCHECK_P2=0 -DCHECK_LIVE=0 -DF_RENEW=1 -DF_RECON=1 -DMAXF=2"
  "promote-check-without-rise|P8|-DRENEW=1 -DWATCHDOG=3 -DPROMOTE_CHECK=1 -DNO_RISE_CREDIT=1 -DCHECK_P2=0 -DCHECK_LIVE=0 -DF_RENEW=1 -DF_RECON=1 -DMAXF=2"
  "promote-check-one-voter-short|P8|-DND=3 -DRENEW=1 -DWATCHDOG=3 -DPROMOTE_CHECK=1 -DPC_ONE_SHORT=1 -DCHECK_P2=0 -DCHECK_LIVE=0 -DF_LINK=1 -DMAXF=1 -DPROMOTE_MASK=2"
  # Sanity: HAProxy 2.6 starting every server UP breaks P2 at its first
  # tick, whatever the rules; it shows P2 is checked at all.
  "haproxy-starts-up|sanity:P2|-DSTART_UP=1"
  # Sanity: promote-check lets a promotion through at all (one after A's
  # planned stop): every one breaks P8 here by construction.
  "promote-check-opens|sanity:P8|-DRENEW=1 -DWATCHDOG=3 -DPROMOTE_CHECK=1 -DSANITY_PROMOTED=1 -DF_STOP=1 -DMAXF=1"
)
# DEEP=1 adds the searches too big for CI: the design under six faults,
# the design in init-votes-at-once's configuration (five faults: 31 million
# states, 5 GB, 12 min) and in confirm-from-first-read's (25 million, 4 GB,
# 3 min), and C5's mutation (records kept in memory), whose
# counterexample the first model found at six faults; with the lease clock
# kept by the voters the search that finds it is larger still.
if [ "${DEEP:-0}" = 1 ]; then
  checks+=("claims-init-5|ok|-DF_LINK=1 -DF_WIPE=1 -DWIPE_MASK=4 -DMAXF=5")
  checks+=("confirm-read-design|ok|-DCHECK_P2=0 -DCHECK_LIVE=0 -DDRIFT=1 -DWATCHDOG=2 -DF_LINK=1 -DF_RECON=1 -DMAXF=3 -DLINK_MASK=1 -DNODE_MASK=1")
  checks+=("restart-6|ok|-DCHECK_P2=0 -DWATCHDOG=2 -DF_LINK=1 -DF_RECON=1 -DF_PEER=1 -DMAXF=6 -DLINK_MASK=5 -DPEER_MASK=4")
  checks+=("promote-check-three-nodes-2|ok|-DND=3 -DRENEW=1 -DWATCHDOG=3 -DPROMOTE_CHECK=1 -DF_LINK=1 -DF_RECON=1 -DMAXF=2 -DPROMOTE_MASK=2")
  checks+=("records-in-memory|P1|-DMEMORY_RECORDS=1 -DCHECK_P2=0 -DCHECK_LIVE=0 -DWATCHDOG=2 -DF_LINK=1 -DF_RECON=1 -DF_PEER=1 -DMAXF=6 -DLINK_MASK=5 -DPEER_MASK=4")
fi

# Runs one search; prints one line and leaves NAME.result (PASS or FAIL).
run_one() {
  local name=$1 expect=$2 flags=$3
  local dir="$out/$name"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$here"/*.pml "$dir"/
  cd "$dir"
  # shellcheck disable=SC2086 # flags are words on purpose
  spin -a $flags pgsql_state.pml >spin.log 2>&1 || { echo "FAIL $name: spin -a: $(head -1 spin.log)"; echo FAIL >result; return; }
  # A configuration's search must be complete (exhaustive); a mutation's
  # needs only to find its counterexample, so a bitstate search (which
  # may miss states, never invents a trail) does, in a fraction of the
  # memory.
  local search="-w25"
  if [ "$expect" != ok ]; then
    search="-w30"
  fi
  # A configuration's pan: -O2 without GCSE and PRE (pan.c's huge
  # transition function compiles in 8-13 s instead of 16-25 s, and runs
  # as fast as with -O2). A mutation's: -O0, which compiles in 2 s and
  # runs 3 times slower; CI's mutations find their counterexamples in
  # seconds (DEEP's six-fault ones take minutes more).
  # -DSFH (a faster hash) and -DNOCOMP (no state compression) cost a
  # little memory and save 8 % of the time; an exhaustive search compares
  # whole states, so neither changes what it finds.
  local bitstate="" opt="-O2 -fno-gcse -fno-tree-pre"
  if [ "$expect" != ok ]; then
    bitstate="-DBITSTATE" opt="-O0"
  fi
  # shellcheck disable=SC2086 # PAN_CFLAGS are words on purpose
  cc $opt -DSAFETY -DSFH -DNOCOMP $bitstate ${PAN_CFLAGS:-} -w -o pan pan.c 2>cc.log || { echo "FAIL $name: cc: $(head -1 cc.log)"; echo FAIL >result; return; }
  local start end rc=0
  start=$(date +%s.%N)
  ./pan -m4000000 $search >pan.log 2>&1 || rc=$?
  end=$(date +%s.%N)
  local states secs errors violated property
  states=$(awk '/states, stored/ {print $1; exit}' pan.log)
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  errors=$(grep -oE 'errors: [0-9]+' pan.log | awk '{print $2}')
  violated=$(grep -m1 'assertion violated' pan.log || true)
  property=$(echo "$violated" | grep -oE '\(P[1-9]&&' | tr -d '(&' || true)
  local verdict=FAIL what kind=${expect%%:*}
  [ "$kind" = sanity ] && expect=${expect#sanity:}
  if [ "$rc" -ne 0 ]; then
    what="pan exited with status $rc: $(tail -1 pan.log)"
  elif grep -qE 'out of memory|pan: reached -DMEMLIM' pan.log; then
    what="pan ran out of memory: $dir/pan.log"
  elif [ "$expect" = ok ]; then
    # pan prints "Full statespace search" and "errors: 0" even when it
    # stopped short (memory), with "Search not completed" beside them.
    if grep -q 'Search not completed' pan.log; then
      what="search not completed: $dir/pan.log"
    elif grep -q 'max search depth too small' pan.log; then
      what="search incomplete (depth)"
    elif [ "${errors:-1}" = 0 ] && grep -q 'Full statespace search' pan.log; then
      verdict=PASS what="no violation, search complete"
    else
      what="violated ${property:-?}: trail in $dir"
    fi
  else
    if [ "$property" = "$expect" ] && [ "$kind" = sanity ]; then
      verdict=PASS what="sanity check: $expect fails by construction"
    elif [ "$property" = "$expect" ]; then
      verdict=PASS what="counterexample to $expect found"
    elif [ -n "$property" ]; then
      what="expected a counterexample to $expect, found one to $property"
    else
      what="expected a counterexample to $expect, found none"
    fi
    if [ -f pgsql_state.pml.trail ]; then
      # shellcheck disable=SC2086
      spin -t $flags pgsql_state.pml 2>&1 | grep 'MSC:' | sed 's/^ *MSC: //' >trail.txt || true
    fi
  fi
  printf '%-4s %-27s %10s states %7.1f s  %s\n' "$verdict" "$name" "${states:-?}" "$secs" "$what"
  echo "$verdict" >result
}

selected=("$@")
want() {
  [ ${#selected[@]} -eq 0 ] && return 0
  local n
  for n in "${selected[@]}"; do [ "$n" = "$1" ] && return 0; done
  return 1
}

echo "spin $(spin -V | awk '{print $3}'), $jobs_max at a time, results in $out"
t0=$(date +%s)
names=()
for c in "${checks[@]}"; do
  IFS='|' read -r name expect flags <<<"$c"
  want "$name" || continue
  names+=("$name")
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do sleep 0.2; done
  (run_one "$name" "$expect" "$flags") &
done
wait
failed=()
for name in "${names[@]}"; do
  [ "$(cat "$out/$name/result" 2>/dev/null)" = PASS ] || failed+=("$name")
done
[ ${#names[@]} -gt 0 ] || { echo "model/check.sh: no such check: $*" >&2; exit 2; }
echo "model: ${#names[@]} searches in $(( $(date +%s) - t0 )) s; trails and logs in $out"
if [ ${#failed[@]} -gt 0 ]; then
  echo "model: FAILED: ${failed[*]}" >&2
  exit 1
fi
# Keep only what a failure would need.
[ -n "${MODEL_OUT:-}" ] || rm -rf "$out"
echo "model: all passed"
