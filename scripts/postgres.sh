#!/usr/bin/env bash
# A private PostgreSQL cluster for development and tests, apart from the system cluster on 5432.
#
#   scripts/postgres.sh install           apt-get install postgresql when the server is missing
#   scripts/postgres.sh start             initdb once, then start (no-op when already running)
#   scripts/postgres.sh stop              fast shutdown
#   scripts/postgres.sh status            exit 0 when running, 3 otherwise
#   scripts/postgres.sh createdb NAME...  create databases owned by kanol, when missing
#   scripts/postgres.sh url NAME          print the SQLAlchemy asyncpg URL of database NAME
#
# Environment:
#   KANOL_PG_DIR    cluster folder: data/, socket/, postgres.log (default .run/postgres)
#   KANOL_PG_PORT   TCP port on 127.0.0.1 (default 5433)
#
# Superuser role kanol, password kanol; trust authentication on 127.0.0.1 and the socket,
# fsync off: a dev/test cluster only. If the machine crashes, delete the folder.
#
# PostgreSQL will not run as root: run as root, this script runs the server as the postgres
# OS user and hands it the folder. That user must be able to reach the folder; when one of
# its parents is closed to it (e.g. a clone under /root), the cluster goes to
# /tmp/kanol-pg-<uid>-<port> instead, and the script says so. Run as any other user, the
# server runs as that user.
set -euo pipefail
umask 022

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PORT=${KANOL_PG_PORT:-5433}
HOST=127.0.0.1
ROLE=kanol
PASSWORD=kanol

say() { echo "postgres: $*"; }
die() { echo "postgres: error: $*" >&2; exit 1; }

# Newest installed server (Debian puts each major version under /usr/lib/postgresql/<v>).
pg_bin() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [[ -n $bin && -x $bin/postgres ]] || die "no PostgreSQL server found; run: $0 install"
    echo "$bin"
}

install() {
    if compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
        say "already installed: $(ls -d /usr/lib/postgresql/*/bin/postgres | tr '\n' ' ')"
        return 0
    fi
    [[ $(id -u) == 0 ]] || die "installing needs root"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
}

# Runs a command as the cluster's owner: the postgres OS user when we are root, else ourselves.
# From /, since the caller's cwd (e.g. /root) may be closed to that user.
as_owner() {
    if [[ $(id -u) == 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# True when the postgres OS user can reach folder $1 or, if missing, where it would be created
# (its nearest existing parent; folders made under it get mode 755).
owner_can_reach() {
    local dir=$1
    while [[ ! -d $dir ]]; do dir=$(dirname "$dir"); done
    (cd / && runuser -u postgres -- test -x "$dir")
}

resolve_dir() {
    DIR=$(realpath -m "${KANOL_PG_DIR:-$REPO/.run/postgres}")
    if [[ $(id -u) == 0 ]]; then
        id postgres >/dev/null 2>&1 || die "no postgres OS user; run: $0 install"
        if ! owner_can_reach "$DIR"; then
            local fallback
            fallback=/tmp/kanol-pg-$(id -u)-$PORT
            say "the postgres user cannot reach $DIR; using $fallback"
            DIR=$fallback
        fi
    fi
    DATA=$DIR/data
    SOCKET=$DIR/socket
    LOGFILE=$DIR/postgres.log
}

psql_admin() {
    PGPASSWORD=$PASSWORD "$(pg_bin)/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PORT" \
        -U "$ROLE" -d postgres "$@"
}

is_running() { as_owner "$(pg_bin)/pg_ctl" status -D "$DATA" >/dev/null 2>&1; }

url() { echo "postgresql+asyncpg://$ROLE:$PASSWORD@$HOST:$PORT/$1"; }

port_in_use() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$PORT" 2>/dev/null; }

init_cluster() {
    local bin=$1
    mkdir -p "$DIR"
    if [[ $(id -u) == 0 ]]; then chown postgres:postgres "$DIR"; fi
    as_owner mkdir -p "$SOCKET"
    say "initdb in $DATA"
    as_owner "$bin/initdb" -D "$DATA" -U "$ROLE" --auth=trust -E UTF8 --locale=C.UTF-8 \
        >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
    # Settings live in their own file, rewritten on each start; postgresql.conf includes it.
    echo "include_if_exists = 'kanol.conf'" | as_owner tee -a "$DATA/postgresql.conf" >/dev/null
}

start() {
    local bin
    bin=$(pg_bin)
    resolve_dir
    if [[ -f $DATA/PG_VERSION ]] && is_running; then
        say "already running"
        say "listening on $HOST:$PORT (data $DATA)"
        return 0
    fi
    port_in_use && die "port $PORT is taken by another process (not the cluster in $DATA)"
    [[ -f $DATA/PG_VERSION ]] || init_cluster "$bin"
    as_owner tee "$DATA/kanol.conf" >/dev/null <<EOF
# Written by scripts/postgres.sh on each start; edits are lost.
listen_addresses = '$HOST'
port = $PORT
unix_socket_directories = '$SOCKET'
# Test/dev cluster: durability traded for speed.
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
    as_owner "$bin/pg_ctl" start -D "$DATA" -l "$LOGFILE" -w -t 60 >/dev/null ||
        { tail -n 30 "$LOGFILE" >&2; die "pg_ctl start failed (log: $LOGFILE)"; }
    # The role is the bootstrap superuser (initdb -U); give it its password (idempotent).
    psql_admin -c "ALTER ROLE $ROLE WITH SUPERUSER LOGIN PASSWORD '$PASSWORD'"
    say "listening on $HOST:$PORT (data $DATA)"
}

stop() {
    resolve_dir
    if [[ ! -f $DATA/PG_VERSION ]] || ! is_running; then
        say "not running"
        return 0
    fi
    as_owner "$(pg_bin)/pg_ctl" stop -D "$DATA" -m fast -w -t 60 >/dev/null
    say "stopped"
}

status() {
    resolve_dir
    if [[ -f $DATA/PG_VERSION ]] && is_running; then
        say "running, listening on $HOST:$PORT (data $DATA)"
    else
        say "not running (data $DATA)"
        exit 3
    fi
}

createdb() {
    (($# > 0)) || die "usage: $0 createdb NAME..."
    local name exists
    for name in "$@"; do
        # Plain identifiers only, so they need no quoting in SQL.
        [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "bad database name: $name"
        exists=$(psql_admin -tA -c "SELECT 1 FROM pg_database WHERE datname = '$name'")
        if [[ $exists == 1 ]]; then
            say "database $name exists"
        else
            psql_admin -c "CREATE DATABASE \"$name\" OWNER $ROLE"
            say "created database $name"
        fi
    done
}

case ${1:-} in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    createdb) shift; createdb "$@" ;;
    url)
        (($# == 2)) || die "usage: $0 url NAME"
        url "$2"
        ;;
    *)
        echo "usage: $0 install|start|stop|status|createdb NAME...|url NAME" >&2
        exit 2
        ;;
esac
