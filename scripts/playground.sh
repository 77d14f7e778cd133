#!/usr/bin/env bash
# The main job: a local playground on loopback, from a fresh Debian 12
# machine with Rust:
#   ./scripts/playground.sh          run the scenario, then clean up
#   ./scripts/playground.sh --keep   leave everything running to poke at
#
# It starts a PostgreSQL primary (node_1, 127.0.0.2) and a streaming standby
# (node_2, 127.0.0.3), a peer on each node's port 10000 plus a witness peer
# (127.0.0.5), a reconciler on each data node run every second as its timer
# would, a pgsql-state responder on each node's port 5431 (socket-activated
# per connection, as systemd's Accept=yes does, with `fencing: strict`), and
# HAProxy (127.0.0.4) with the shipped haproxy/haproxy.cfg, addresses
# rewritten, its servers starting DOWN from the server-state file. It shows
# what `nc` answers, `pgsql-state status`, where HAProxy routes, and then a
# zombie: node_2 is promoted while node_1 keeps running. Second by second it
# prints both nodes' words, node_1's verdict and HAProxy's prod pool as the
# zombie is fenced and node_2 waits out W, then where a write went.
set -euo pipefail
cd "$(dirname "$0")/.."
keep=no
[ "${1:-}" = "--keep" ] && keep=yes

./scripts/install-deps.sh
printf '\n\033[1m== %s\033[0m\n' "Building pgsql-state (release; the first build takes a few minutes)"
cargo build --locked --release
bin=$PWD/target/release/pgsql-state
base=${PLAYGROUND_DIR:-/tmp/pgsql-state-playground}
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
haproxy_bin=$(command -v haproxy || echo /usr/sbin/haproxy)
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

stop_all() {
  [ -f "$base/haproxy.pid" ] && kill "$(cat "$base/haproxy.pid")" 2>/dev/null || true
  for pidfile in "$base"/reconciler-*.pid "$base"/responder-*.pid "$base"/peer-*.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  for n in 1 2; do
    [ -f "$base/n$n/postmaster.pid" ] && as_pg "$pgbin/pg_ctl" -D "$base/n$n" -m immediate -w stop >/dev/null 2>&1 || true
  done
}
stop_all
rm -rf "$base"
mkdir -p "$base" && chmod 777 "$base"
if [ "$keep" = no ]; then trap stop_all EXIT; fi

node_addr() { echo "127.0.0.$(( $1 + 1 ))"; }
conninfo() { echo "host=$base/s$1 port=5432 user=postgres dbname=postgres"; }
psql_node() { "$pgbin/psql" -X -At -h "$base/s$1" -p 5432 -U postgres -d postgres -c "$2"; }

say "PostgreSQL: primary node_1 on $(node_addr 1), standby node_2 on $(node_addr 2)"
for n in 1 2; do mkdir -p "$base/s$n" && chmod 777 "$base/s$n"; done
as_pg "$pgbin/initdb" -U postgres --auth=trust -N -E UTF8 --locale=C -D "$base/n1" >/dev/null
cat >>"$base/n1/postgresql.conf" <<CONF
listen_addresses = '$(node_addr 1)'
unix_socket_directories = '$base/s1'
wal_level = replica
hot_standby = on
fsync = off
CONF
printf 'local all all trust\nhost all all 127.0.0.0/8 trust\nhost replication all 127.0.0.0/8 trust\n' >"$base/n1/pg_hba.conf"
as_pg "$pgbin/pg_ctl" -D "$base/n1" -l "$base/n1.log" -w start >/dev/null
as_pg "$pgbin/pg_basebackup" -h "$(node_addr 1)" -U postgres -D "$base/n2" -R -X stream --checkpoint=fast --no-sync
cat >>"$base/n2/postgresql.conf" <<CONF
listen_addresses = '$(node_addr 2)'
unix_socket_directories = '$base/s2'
CONF
echo "primary_conninfo = 'host=$(node_addr 1) port=5432 user=postgres application_name=node_2'" >>"$base/n2/postgresql.auto.conf"
as_pg "$pgbin/pg_ctl" -D "$base/n2" -l "$base/n2.log" -w start >/dev/null

say "pgsql-state peers: node_1 and node_2 on port 10000, the witness on 127.0.0.5:10000"
write_config() { # name ip neighbours...
  local name=$1 ip=$2; shift 2
  {
    echo "harepd:"
    echo "  nodeName: \"$name\""
    echo "  primaryIP: \"$ip\""
    case $name in
      node_1) echo "  hbaConfig: \"$base/n1/pg_hba.conf\"" ;;
      node_2) echo "  hbaConfig: \"$base/n2/pg_hba.conf\"" ;;
    esac
    echo "  haproxy:"
    echo "    server: [\"127.0.0.4\"]"
    echo "    users: {readWrite: harw}"
    echo "  gRPC:"
    echo "    bindPort: 10000"
    echo "    bindAddress: \"$ip\""
    echo "    neighbours: [$(printf '"%s:10000",' "$@" | sed 's/,$//')]"
    echo "    witness: \"127.0.0.5:10000\""
    echo "    connectionDeadline: 1"
    echo "  watchDog: 1"
    echo "  postgres:"
    case $name in
      node_1) echo "    conninfo: \"$(conninfo 1)\"" ;;
      node_2) echo "    conninfo: \"$(conninfo 2)\"" ;;
      *) echo "    conninfo: \"host=/nonexistent\"" ;;
    esac
    echo "  runtimeDir: \"$base/run-$name\""
    echo "  stateDir: \"$base/state-$name\""
  } >"$base/$name.yml"
  mkdir -p "$base/run-$name" "$base/state-$name"
  "$bin" -f "$base/$name.yml" check-config --haproxy haproxy/haproxy.cfg >/dev/null
  "$bin" -f "$base/$name.yml" claims init --new-cluster >/dev/null
}
write_config node_1 "$(node_addr 1)" "$(node_addr 2)"
write_config node_2 "$(node_addr 2)" "$(node_addr 1)"
write_config witness 127.0.0.5 "$(node_addr 1)" "$(node_addr 2)"
for name in node_1 node_2 witness; do
  "$bin" -f "$base/$name.yml" peer 2>>"$base/peer-$name.log" &
  echo $! >"$base/peer-$name.pid"
done

say "Reconcilers on node_1 and node_2, every second (watchDog 1), as the timer runs them"
for name in node_1 node_2; do
  ( while :; do "$bin" -f "$base/$name.yml" reconcile 2>>"$base/reconcile-$name.log" || true; sleep 1; done ) &
  echo $! >"$base/reconciler-$name.pid"
done

say "pgsql-state responders on port 5431 of each node (fencing: strict)"
for n in 1 2; do
  systemd-socket-activate --accept -l "$(node_addr "$n"):5431" -- \
    "$bin" -f "$base/node_$n.yml" respond 2>>"$base/responder-$n.log" &
  echo $! >"$base/responder-$n.pid"
done
answers() { for n in 1 2; do echo "\$ nc $(node_addr "$n") 5431"; nc "$(node_addr "$n")" 5431; done; }
wait_word() { # node word
  for _ in $(seq 1 300); do
    [ "$(nc "$(node_addr "$1")" 5431 2>/dev/null)" = "$2" ] && return 0
    sleep 0.1
  done
  echo "node_$1 did not answer $2" >&2; return 1
}
sleep 0.5
answers
echo "(a new primary sits out W = lease x (1+rho)/(1-rho) + HAProxy's term, about 10 s here, before it says production)"
wait_word 1 production
grep -E 'node_1: (production|fenced) \(' "$base/reconcile-node_1.log" | tail -n 1
answers
echo "\$ pgsql-state -f node_1.yml status"
"$bin" -f "$base/node_1.yml" status

say "HAProxy with haproxy/haproxy.cfg: writes on 127.0.0.4:5432, reads on 127.0.0.4:5433"
sed -e "s#stats socket /run/haproxy/pgsql-state.sock#stats socket $base/haproxy.sock#" \
    -e "s#/var/lib/haproxy/pgsql-state.servers#$base/haproxy.servers#" \
    -e '/log \/dev\/log/d' \
    -e 's#bind \*:5432#bind 127.0.0.4:5432#' -e 's#bind \*:5433#bind 127.0.0.4:5433#' \
    -e "s#server node_1 10.21.57.61:5432#server node_1 $(node_addr 1):5432#" \
    -e "s#server node_2 10.21.57.62:5432#server node_2 $(node_addr 2):5432#" \
    haproxy/haproxy.cfg >"$base/haproxy.cfg"
# Every server starts DOWN (HAProxy 2.6 would start them UP until the first
# check): the shipped drop-in runs this before each start and reload.
"$bin" haproxy-state "$base/haproxy.cfg"
"$haproxy_bin" -q -D -p "$base/haproxy.pid" -f "$base/haproxy.cfg"

status() { echo "show stat" | ncat -U "$base/haproxy.sock" | awk -F, '$2 ~ /^node_/ {printf "%-6s %-7s %s\n", $1, $2, $18}'; }
wait_status() { # proxy server state
  for _ in $(seq 1 100); do
    status | grep -q "^$1 *$2 *$3\$" && return 0
    sleep 0.2
  done
  echo "HAProxy did not mark $2 $3 in $1" >&2; status >&2; return 1
}
status
wait_status prod node_1 UP && wait_status stdby node_2 UP
status
echo "\$ psql -h 127.0.0.4 -p 5432 -c 'SELECT inet_server_addr(), pg_is_in_recovery()'"
"$pgbin/psql" -X -At -h 127.0.0.4 -p 5432 -U postgres -d postgres -c "SELECT inet_server_addr(), pg_is_in_recovery()"

say "A zombie: node_2 is promoted while node_1 keeps running (a split brain in the making)"
as_pg "$pgbin/pg_ctl" -D "$base/n2" -w promote >/dev/null
promoted=$(date +%s.%N)
echo "Both Postgres servers now accept writes:"
for n in 1 2; do echo "  node_$n: pg_is_in_recovery = $(psql_node "$n" 'SELECT pg_is_in_recovery()')"; done
verdict() { sed -n 's/^verdict=//p; s/^reason=//p' "$base/run-$1/verdict" 2>/dev/null | paste -sd' ' - ; }
echo "Every second: what each node's 5431 answers, its verdict, and HAProxy's prod pool."
for _ in $(seq 1 60); do
  t=$(awk -v a="$(date +%s.%N)" -v b="$promoted" 'BEGIN { printf "%5.1f", a - b }')
  w1=$(nc "$(node_addr 1)" 5431 2>/dev/null); w2=$(nc "$(node_addr 2)" 5431 2>/dev/null)
  prod=$(status | awk '$1 == "prod" && $3 == "UP" {print $2}' | paste -sd, -)
  echo "t+${t}s  node_1: ${w1:-?}  node_2: ${w2:-?}  prod UP: [${prod}]"
  echo "          node_1 verdict: $(verdict node_1)"
  [ "$w2" = production ] && [ "$prod" = node_2 ] && break
  sleep 1
done
wait_status prod node_2 UP && wait_status prod node_1 DOWN
status
echo "(node_1 was fenced at its reconciler's next run; node_2 sat out node_1's lease and HAProxy's term, W, before it said production. At no instant did both say production.)"
grep -E 'node_1: (production|fenced) \(' "$base/reconcile-node_1.log" | tail -n 1
grep -E 'node_2: (production|fenced) \(' "$base/reconcile-node_2.log" | tail -n 1
sleep 1.1 # the witness caches its view for a second
echo "\$ pgsql-state -f node_2.yml status"
"$bin" -f "$base/node_2.yml" status
echo "\$ psql -h 127.0.0.4 -p 5432 -c 'CREATE TABLE after_failover …' (through HAProxy)"
"$pgbin/psql" -X -At -h 127.0.0.4 -p 5432 -U postgres -d postgres \
  -c "CREATE TABLE after_failover AS SELECT 1 AS ok" -c "SELECT 'the write went to ' || inet_server_addr() || ', in recovery: ' || pg_is_in_recovery()"
echo "On the zombie node_1, that table does not exist: $(psql_node 1 "SELECT coalesce(to_regclass('after_failover')::text, 'no such table')")"
echo "(The zombie still runs; pg_hba's managed block now rejects harw there, and its open write sessions were ended. Rebuild it as a standby with pg_rewind or pg_basebackup.)"

if [ "$keep" = yes ]; then
  say "Left running in $base. Try: nc 127.0.0.3 5431; $bin respond --conninfo '$(conninfo 2)'"
  echo "Stop it with: PLAYGROUND_DIR=$base $0 and Ctrl-C, or kill the pids in $base/*.pid"
else
  say "Done; stopping everything (run with --keep to leave it up)"
fi
