#!/usr/bin/env bash
# ci-postgres.sh — a throwaway PostgreSQL server for the store tests.
#
# Usage:
#   eval "$(scripts/ci-postgres.sh)"        # install (apt), start, print the export
#   go test ./store/...                     # runs the PostgreSQL conformance tests
#   scripts/ci-postgres.sh stop             # stop the server
#
# It installs the Debian "postgresql" package when no initdb is present
# (apt-get, as root), creates a cluster of its own in $TENSAFE_PG_DATA
# (default /tmp/tensafe-ci-pg) owned by the "postgres" user, listening only
# on 127.0.0.1:$TENSAFE_PG_PORT (default 55432) with its socket in the data
# directory, creates the database "tensafe_test" for the role "tensafe",
# and prints on stdout one line:
#
#   export TENSAFE_TEST_POSTGRES_URL='postgres://tensafe@127.0.0.1:55432/tensafe_test?sslmode=disable'
#
# Everything else goes to stderr. Running it again reuses a running server.
# Authentication is "trust" on loopback: this is a test server for one
# machine, never a deployment.
set -euo pipefail

port="${TENSAFE_PG_PORT:-55432}"
data="${TENSAFE_PG_DATA:-/tmp/tensafe-ci-pg}"
db="tensafe_test"
role="tensafe"

log() { echo "ci-postgres: $*" >&2; }

find_bin() {
	local d
	d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
	if [ -n "$d" ] && [ -x "$d/initdb" ]; then
		echo "$d"
	fi
}

# as_pg runs a command as the cluster's owner: "postgres" when we are root
# (the server refuses to run as root), ourselves otherwise.
as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

bin="$(find_bin)"

if [ "${1:-}" = "stop" ]; then
	if [ -n "$bin" ] && [ -f "$data/PG_VERSION" ]; then
		as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >&2 || true
	fi
	exit 0
fi

if [ -z "$bin" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		log "PostgreSQL is not installed and this is not root: cannot apt-get install postgresql"
		exit 1
	fi
	log "installing postgresql with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	# Do not let the package start its default cluster (no init system in
	# CI containers, and we want our own on our own port).
	apt-get install -y -qq --no-install-recommends postgresql >&2
	bin="$(find_bin)"
	if [ -z "$bin" ]; then
		log "apt-get installed postgresql but no initdb was found under /usr/lib/postgresql"
		exit 1
	fi
fi
log "using $bin"

if [ ! -f "$data/PG_VERSION" ]; then
	rm -rf "$data"
	mkdir -p "$data"
	chmod 0700 "$data"
	if [ "$(id -u)" -eq 0 ]; then
		chown postgres:postgres "$data"
	fi
	as_pg "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-locale >&2
fi

if ! as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
	as_pg "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
		-o "-c listen_addresses=127.0.0.1 -p $port -k $data -c fsync=on" start >&2 || {
		log "server did not start; its log:"
		tail -n 50 "$data/server.log" >&2 || true
		exit 1
	}
fi

psql=("$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA)
if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" != "1" ]; then
	"${psql[@]}" -c "CREATE ROLE $role LOGIN" >&2
fi
if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" != "1" ]; then
	"${psql[@]}" -c "CREATE DATABASE $db OWNER $role" >&2
fi
log "PostgreSQL $("${psql[@]}" -c 'SHOW server_version') on 127.0.0.1:$port, database $db"
echo "export TENSAFE_TEST_POSTGRES_URL='postgres://$role@127.0.0.1:$port/$db?sslmode=disable'"
