#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine with Rust:
#   ./scripts/test.sh
# Installs what is missing (see install-deps.sh), builds, runs the unit
# tests, checks the fencing model with spin (model/check.sh), builds the
# Debian package (scripts/build-deb.sh), then runs the
# integration test files in parallel: each file starts its own PostgreSQL
# primary and standby on its own 127.0.K.x addresses.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
cargo build --locked --all-targets

echo "== unit tests"
cargo test --locked --lib --bins

# The model runs alone, in the foreground. It was tried in the background
# at idle priority (chrt --idle), to use what the build and the tests
# leave: on these 2-vCPU VMs the scheduler then packed the build's and
# the tests' tasks onto one vCPU and let the idle searches have the other.
echo "== the model (spin): every configuration, every mutation"
./model/check.sh

echo "== the Debian package (cargo-deb; tests/debian_package.rs installs and checks it)"
./scripts/build-deb.sh

echo "== integration tests (in parallel, one cluster per file)"
# They run the release binary the package ships (build-deb.sh built it),
# not the debug build: with watchDog 1 s every reconcile run must end
# within a second while three clusters share two cores, and a debug
# build's runs (gRPC, TLS, tokio unoptimised) took 2 s there, so the
# leases lapsed on their own. PGSQL_STATE_BINARY set beforehand wins.
export PGSQL_STATE_BINARY=${PGSQL_STATE_BINARY:-$PWD/target/release/pgsql-state}
test -x "$PGSQL_STATE_BINARY" || { echo "FAILED: no binary at $PGSQL_STATE_BINARY" >&2; exit 1; }
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
jobs_max=${TEST_JOBS:-3}
# Two waves. The real-systemd file (its flood and its timing) runs beside
# the lighter files; the files that run whole clusters for minutes (the
# scenario suite, the repmgr scenes, the soak) come after it, so that a
# 2-core machine is never running all of them at once.
heavy=(scenarios repmgr soak)
first=()
second=()
for file in tests/*.rs; do
  name=$(basename "$file" .rs)
  if [ "$name" = systemd_units ]; then
    first=("$name" "${first[@]}")
  elif printf '%s\n' "${heavy[@]}" | grep -qx "$name"; then
    second+=("$name")
  else
    first+=("$name")
  fi
done
failed=()
names=()
run_wave() {
  local pids=() wave=("$@") i
  for name in "${wave[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do sleep 0.2; done
    cargo test --locked --test "$name" >"$logs/$name.log" 2>&1 &
    pids+=($!)
    names+=("$name")
  done
  for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
      failed+=("${wave[$i]}")
    fi
  done
}
run_wave "${first[@]}"
run_wave "${second[@]}"
for name in "${names[@]}"; do
  echo "---- tests/$name.rs"
  grep -vE '^\s+(Compiling|Finished|Running|Blocking)' "$logs/$name.log" || true
done
# Every test process must have stopped what it started (Postgres servers,
# peers, responders): one left running could outlive the run and hold an
# address the next run needs. Everything a test starts names its directory
# under pgsql-state-test on its command line.
leftover=$(pgrep -af 'pgsql-state-test' || true)
if [ -n "$leftover" ]; then
  echo "FAILED: test processes left these running:" >&2
  echo "$leftover" >&2
  pkill -KILL -f 'pgsql-state-test' || true
  failed+=("(leftover processes)")
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "all test files passed"
