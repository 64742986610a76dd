#!/usr/bin/env bash
# An S3-compatible object store for development and tests: SeaweedFS (Apache-2.0), built
# from its Go module with the machine's Go toolchain (no tarball, no Docker), run as one
# `weed mini` process (master, volume, filer and S3 gateway) on loopback.
#
#   scripts/s3.sh install   build weed into the cache (no-op when already there)
#   scripts/s3.sh start     install, start, wait until the S3 endpoint answers
#   scripts/s3.sh stop      SIGTERM, then SIGKILL after a grace period
#   scripts/s3.sh status    exit 0 when running and answering, 3 otherwise
#   scripts/s3.sh env       print the KANOL_S3_* settings that reach it
#
# Environment:
#   KANOL_CACHE             build cache root (default ~/.cache/kanol)
#   KANOL_S3_DIR            data dir: config, pid, log, volumes (default .run/s3)
#   KANOL_S3_PORT           S3 endpoint (default 18333); the master, volume and filer take
#                           KANOL_S3_PORT+1000, +2000 and +3000 (and their gRPC ports +10000)
#   KANOL_S3_ACCESS_KEY_ID, KANOL_S3_SECRET_ACCESS_KEY   the one identity (default kanol /
#                           kanol-secret: a development store on loopback, not a vault)
#   KANOL_S3_START_TIMEOUT  seconds `start` waits for the endpoint (default 60)
#
# The build needs Go 1.24 or newer and the Go module proxy; a cold build takes about eight
# minutes on two cores, and the module and build caches make the next one a few seconds.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The one place that names the version: a pseudo-version the Go module proxy serves.
MODULE=github.com/seaweedfs/seaweedfs
VERSION=v0.0.0-20261109003541-7506e5f91cd6
BIN_DIR=${KANOL_CACHE:-$HOME/.cache/kanol}/seaweedfs-$VERSION
WEED=$BIN_DIR/weed
DATA=${KANOL_S3_DIR:-$REPO/.run/s3}
HOST=127.0.0.1
PORT=${KANOL_S3_PORT:-18333}
ACCESS_KEY=${KANOL_S3_ACCESS_KEY_ID:-kanol}
SECRET_KEY=${KANOL_S3_SECRET_ACCESS_KEY:-kanol-secret}
PIDFILE=$DATA/weed.pid
LOGFILE=$DATA/weed.log
TIMEOUT=${KANOL_S3_START_TIMEOUT:-60}

say() { echo "s3: $*"; }
die() { echo "s3: error: $*" >&2; exit 1; }

install() {
    [[ -x $WEED ]] && return 0
    command -v go >/dev/null || die "go not found (Go 1.26+ is needed to build SeaweedFS)"
    say "building SeaweedFS $VERSION into $BIN_DIR"
    # `go install module@version` refuses a module whose go.mod has replace directives, as
    # SeaweedFS's has: download the module and build inside it instead.
    local source
    source=$(go mod download -json "$MODULE@$VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
    [[ -d $source ]] || die "go mod download $MODULE@$VERSION failed"
    mkdir -p "$BIN_DIR"
    local started=$SECONDS
    (cd "$source" && go build -o "$WEED.tmp" ./weed) || die "go build failed"
    mv "$WEED.tmp" "$WEED"
    say "built $WEED in $((SECONDS - started)) s"
}

pid() { [[ -f $PIDFILE ]] && cat "$PIDFILE"; }

running() {
    local p
    p=$(pid) || return 1
    [[ -n $p ]] && kill -0 "$p" 2>/dev/null
}

answering() {
    # Any HTTP answer from the S3 gateway (403 without a signature) means it is up.
    curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$HOST:$PORT/" | grep -qE '^[1-5][0-9][0-9]$'
}

config() {
    mkdir -p "$DATA"
    cat >"$DATA/s3.json" <<EOF
{"identities": [{"name": "kanol",
  "credentials": [{"accessKey": "$ACCESS_KEY", "secretKey": "$SECRET_KEY"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
}

start() {
    install
    if running && answering; then
        say "already running (pid $(pid)) on $HOST:$PORT"
        return 0
    fi
    if (echo >"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
        die "port $PORT is taken by a process not in $PIDFILE"
    fi
    config
    mkdir -p "$DATA/data"
    nohup "$WEED" mini -dir="$DATA/data" -ip="$HOST" -ip.bind="$HOST" \
        -s3.port="$PORT" -s3.config="$DATA/s3.json" \
        -master.port=$((PORT + 1000)) -volume.port=$((PORT + 2000)) \
        -filer.port=$((PORT + 3000)) -webdav=false -admin.ui=false \
        -master.telemetry=false >"$LOGFILE" 2>&1 &
    echo $! >"$PIDFILE"
    local deadline=$((SECONDS + TIMEOUT))
    until answering; do
        running || { tail -n 40 "$LOGFILE" >&2; die "weed exited (log: $LOGFILE)"; }
        ((SECONDS < deadline)) || { tail -n 40 "$LOGFILE" >&2; die "no answer after $TIMEOUT s"; }
        sleep 0.5
    done
    say "running (pid $(pid)) on http://$HOST:$PORT"
}

stop() {
    running || { rm -f "$PIDFILE"; say "not running"; return 0; }
    local p
    p=$(pid)
    kill "$p"
    for _ in $(seq 1 40); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.25
    done
    kill -0 "$p" 2>/dev/null && kill -9 "$p"
    rm -f "$PIDFILE"
    say "stopped"
}

status() {
    if running && answering; then
        say "running (pid $(pid)) on http://$HOST:$PORT"
        return 0
    fi
    say "not running"
    return 3
}

env_lines() {
    echo "KANOL_STORAGE=s3"
    echo "KANOL_S3_ENDPOINT_URL=http://$HOST:$PORT"
    echo "KANOL_S3_ACCESS_KEY_ID=$ACCESS_KEY"
    echo "KANOL_S3_SECRET_ACCESS_KEY=$SECRET_KEY"
}

case ${1:-} in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) env_lines ;;
    *) die "usage: scripts/s3.sh install|start|stop|status|env" ;;
esac
