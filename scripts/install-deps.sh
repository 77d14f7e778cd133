#!/usr/bin/env bash
# Installs what the tests and the playground need on Debian 12, when missing:
# PostgreSQL (server, psql, pgbench), HAProxy, ncat, OpenBSD nc, systemd's
# socket-activation and analyze tools, repmgr, spin and a C compiler for the model. Needs root for apt-get; without root
# it only checks, and fails naming what is missing.
set -euo pipefail

missing=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
pg_server() { ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; }

pg_server || missing+=(postgresql)
have psql || missing+=(postgresql-client)
have pgbench || missing+=(postgresql-client)
have haproxy || missing+=(haproxy)
have ncat || missing+=(ncat)
have nc || missing+=(netcat-openbsd)
have systemd-socket-activate || missing+=(systemd)
have systemd-analyze || missing+=(systemd)
have runuser || missing+=(util-linux)
have nsenter || missing+=(util-linux)
have unshare || missing+=(util-linux)
[ -x /lib/systemd/systemd ] || missing+=(systemd)
have ip || missing+=(iproute2)
have spin || missing+=(spin)
# repmgr and repmgrd (tests/repmgr.rs), with the extension for the server's
# major version.
have repmgr || missing+=(repmgr)
have repmgrd || missing+=(repmgr)
for bindir in /usr/lib/postgresql/*/bin; do
  [ -x "$bindir/postgres" ] || continue
  major=$(basename "$(dirname "$bindir")")
  ls /usr/lib/postgresql/"$major"/lib/repmgr*.so >/dev/null 2>&1 || missing+=("postgresql-$major-repmgr")
done
pg_server || missing+=(postgresql-15-repmgr)
# /metrics is checked with the reference OpenMetrics parser.
/usr/bin/python3 -c 'import prometheus_client' >/dev/null 2>&1 || missing+=(python3-prometheus-client)
# benches/patroni.rs makes a venv with Debian's python3.
/usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
have cc || missing+=(gcc)
# The Debian package's test: lintian, and man to render the pages.
have lintian || missing+=(lintian)
have man || missing+=(man-db)
have dpkg-deb || missing+=(dpkg)
# The package installed in a real systemd runs the README's `sudo` lines.
have sudo || missing+=(sudo)
# promtool checks and unit-tests the shipped alert rules (tests/monitoring.rs).
have promtool || missing+=(prometheus)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
# Unique package names.
mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${packages[*]}; run as root (apt-get) or install them" >&2
  exit 1
fi
echo "install-deps: installing ${packages[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
# Debian's postgresql package may start a `main` cluster on 127.0.0.1:5432;
# the tests use other loopback addresses, so it does not get in the way.
