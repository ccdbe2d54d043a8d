#!/usr/bin/env bash
# Starts or stops a throwaway MariaDB server and a throwaway PostgreSQL server
# for the sqlapps tests: each in a new temporary directory, listening on a free
# loopback port only, run by an unprivileged user (the packages' mysql and
# postgres users when run as root), with durability turned off for speed.
#
#   eval "$(scripts/databases.sh start)"   # prints the export lines to eval
#   go test -race ./sqlapps/ ./cmd/imcallback/
#   scripts/databases.sh stop              # stops both, removes the directory
#
# start prints export lines for SQLAPPS_MYSQL_DSN, SQLAPPS_POSTGRES_DSN and
# SQLAPPS_DB_DIR (the directory, which stop reads; stop also takes it as its
# argument) and writes the same lines to $SQLAPPS_DB_DIR/env. Progress goes to
# stderr. Needs Debian's mariadb-server and postgresql packages (see .ci/run).
set -euo pipefail

log() { echo "databases.sh: $*" >&2; }
die() {
	log "$*"
	exit 1
}

usage() {
	echo "usage: $0 start | stop [DIR]" >&2
	exit 2
}

root() { [ "$(id -u)" = 0 ]; }

# as USER CMD...: runs CMD as USER when this script runs as root, else as the
# current user.
as() {
	local user=$1
	shift
	if root; then
		runuser -u "$user" -- "$@"
	else
		"$@"
	fi
}

# free_port prints a loopback TCP port nothing listens on.
free_port() {
	local p
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 30000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

# wait_until SECONDS WHAT CMD...: runs CMD every 0.2 s until it succeeds.
wait_until() {
	local deadline=$((SECONDS + $1)) what=$2
	shift 2
	until "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.2
	done
	log "$what is up"
}

pg_bin() {
	local dir
	if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
		dirname "$(readlink -f "$(command -v pg_ctl)")"
		return
	fi
	dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	[ -n "$dir" ] || die "PostgreSQL not found (apt-get install postgresql)"
	echo "$dir"
}

start_postgres() {
	local dir=$1 bin port
	bin=$(pg_bin)
	port=$(free_port)
	mkdir -p "$dir/postgres" "$dir/postgres-run"
	echo imcallback >"$dir/postgres-pw"
	if root; then
		chown postgres "$dir/postgres" "$dir/postgres-run" "$dir/postgres-pw"
	fi
	chmod 700 "$dir/postgres"
	as postgres "$bin/initdb" -D "$dir/postgres" -U imcallback --pwfile="$dir/postgres-pw" \
		--auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-locale >"$dir/postgres-initdb.log" 2>&1 ||
		die "initdb failed: see $dir/postgres-initdb.log"
	as postgres "$bin/pg_ctl" -D "$dir/postgres" -l "$dir/postgres-run/postgres.log" -w -t 60 \
		-o "-c listen_addresses=127.0.0.1 -p $port -k $dir/postgres-run -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
		start >/dev/null || die "PostgreSQL did not start: see $dir/postgres-run/postgres.log"
	as postgres "$bin/createdb" -h "$dir/postgres-run" -p "$port" -U imcallback imcallback
	log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
	echo "export SQLAPPS_POSTGRES_DSN='postgres://imcallback:imcallback@127.0.0.1:$port/imcallback?sslmode=disable'"
}

start_mariadb() {
	local dir=$1 port user=()
	command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || die "MariaDB not found (apt-get install mariadb-server)"
	PATH=$PATH:/usr/sbin
	port=$(free_port)
	mkdir -p "$dir/mariadb"
	if root; then
		chown mysql "$dir/mariadb"
		user=(--user=mysql)
	fi
	mariadb-install-db --no-defaults "${user[@]}" --datadir="$dir/mariadb/data" \
		--auth-root-authentication-method=normal --skip-test-db >"$dir/mariadb-install.log" 2>&1 ||
		die "mariadb-install-db failed: see $dir/mariadb-install.log"
	# setsid and no inherited output: the server outlives this script, and
	# eval "$(... start)" does not wait for it.
	setsid mariadbd --no-defaults "${user[@]}" --datadir="$dir/mariadb/data" \
		--socket="$dir/mariadb/mariadb.sock" --pid-file="$dir/mariadb/mariadb.pid" \
		--port="$port" --bind-address=127.0.0.1 --skip-name-resolve \
		--log-error="$dir/mariadb/mariadb.log" --skip-log-bin \
		--innodb-flush-log-at-trx-commit=0 --innodb-buffer-pool-size=64M \
		--max-connections=200 </dev/null >/dev/null 2>&1 &
	wait_until 60 "MariaDB" mariadb-admin --no-defaults --socket="$dir/mariadb/mariadb.sock" -uroot ping ||
		die "MariaDB did not start: see $dir/mariadb/mariadb.log"
	mariadb --no-defaults --socket="$dir/mariadb/mariadb.sock" -uroot -e "
		CREATE USER 'imcallback'@'127.0.0.1' IDENTIFIED BY 'imcallback';
		GRANT ALL PRIVILEGES ON *.* TO 'imcallback'@'127.0.0.1';
		CREATE DATABASE imcallback;"
	log "MariaDB $(mariadbd --version | awk '{print $3}') on 127.0.0.1:$port"
	echo "export SQLAPPS_MYSQL_DSN='imcallback:imcallback@tcp(127.0.0.1:$port)/imcallback'"
}

start() {
	dir=$(mktemp -d "${TMPDIR:-/tmp}/imcallback-databases.XXXXXX")
	chmod 755 "$dir"
	# A failed start leaves nothing running.
	trap 'stop "$dir" >/dev/null 2>&1 || true' EXIT
	{
		echo "export SQLAPPS_DB_DIR='$dir'"
		start_mariadb "$dir"
		start_postgres "$dir"
	} >"$dir/env"
	trap - EXIT
	cat "$dir/env"
}

stop() {
	local dir=${1:-${SQLAPPS_DB_DIR:-}} bin pid
	[ -n "$dir" ] || die "stop: give the directory, or set SQLAPPS_DB_DIR (start prints it)"
	[ -d "$dir" ] || die "stop: $dir is not a directory"
	if [ -f "$dir/postgres/postmaster.pid" ]; then
		bin=$(pg_bin)
		as postgres "$bin/pg_ctl" -D "$dir/postgres" -m immediate -w stop >/dev/null || log "pg_ctl stop failed"
	fi
	if [ -f "$dir/mariadb/mariadb.pid" ]; then
		pid=$(cat "$dir/mariadb/mariadb.pid")
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 150); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
	fi
	rm -rf "$dir"
	log "stopped; removed $dir"
}

case ${1:-} in
start) start ;;
stop) stop "${2:-}" ;;
*) usage ;;
esac
