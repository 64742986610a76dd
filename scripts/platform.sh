#!/usr/bin/env bash
# `make up` / `make down`: the whole platform on this machine, run by honcho in the
# background so that `make demo` and `make down` can be typed in the same terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
run=.run/platform
env_file=$run/platform.env
pid_file=$run/honcho.pid
log_file=$run/platform.log

new_secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }

write_env() {
  # Secrets are made once per checkout and kept in .run (ignored by git).
  [ -f "$env_file" ] && return
  mkdir -p "$run"
  cat > "$env_file" <<ENV
KANOL_DATA_DIR=$PWD/data
KANOL_KAFKA_BOOTSTRAP=127.0.0.1:9092
KANOL_KAFKA_DIR=$PWD/$run/kafka
KANOL_KAFKA_PORT=9092
KANOL_KAFKA_CONTROLLER_PORT=9093
KANOL_IDENTITY_URL=http://127.0.0.1:8001
KANOL_TOKEN_ISSUER=http://127.0.0.1:8001
KANOL_PREFECTURE_URL=http://127.0.0.1:8090
KANOL_HELIOS_URL=http://127.0.0.1:8091
KANOL_PUBLIC_URL=http://127.0.0.1:8002
KANOL_TRUSTED_DOCUMENT_ORIGINS='["http://127.0.0.1:8002"]'
KANOL_ARCHIVE_CLIENT_ID=archive-service
KANOL_ARCHIVE_CLIENT_SECRET=$(new_secret)
KANOL_DEMO_CLIENT_ID=demo-mairie
KANOL_DEMO_CLIENT_SECRET=$(new_secret)
KANOL_DEMO_SIREN=213502388
ENV
}

running() { [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; }

wait_ready() {
  local name=$1 url=$2
  for _ in $(seq 1 600); do
    if curl -fsS "$url" >/dev/null 2>&1; then return 0; fi
    if ! running; then
      echo "platform: stopped while waiting for $name; see $log_file" >&2
      tail -n 30 "$log_file" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "platform: $name did not become ready at $url; see $log_file" >&2
  exit 1
}

seed() {
  # The demo organisation and its software client, and the syndicate with the archive's
  # service client. Re-running changes nothing. Secrets go as --client-secret=VALUE: a
  # random one may start with "-".
  set -a; source "$env_file"; set +a
  export KANOL_LOG_LEVEL=WARNING
  KANOL_SERVICE_NAME=identity .venv/bin/python -m kanol_identity seed \
    --siren 253514491 --name "Syndicat mixte Kanol (démo)" --kind syndicat --departement 035 \
    --client-id "$KANOL_ARCHIVE_CLIENT_ID" --client-secret="$KANOL_ARCHIVE_CLIENT_SECRET" \
    --scopes "documents:read"
  KANOL_SERVICE_NAME=identity .venv/bin/python -m kanol_identity seed \
    --siren "$KANOL_DEMO_SIREN" --name "Commune de Démo" --kind commune --departement 035 \
    --services all \
    --client-id "$KANOL_DEMO_CLIENT_ID" --client-secret="$KANOL_DEMO_CLIENT_SECRET" \
    --scopes "actes:write actes:read pes:write pes:read archive:write archive:read"
}

up() {
  if running; then
    echo "platform: already running (pid $(cat "$pid_file")); 'make down' stops it"
    return
  fi
  write_env
  bash scripts/kafka.sh fetch
  seed
  : > "$log_file"
  setsid nohup .venv/bin/honcho start --no-colour -f deploy/local/Procfile -e "$env_file" \
    >> "$log_file" 2>&1 < /dev/null &
  echo $! > "$pid_file"

  wait_ready prefecture http://127.0.0.1:8090/livez
  wait_ready helios http://127.0.0.1:8091/livez
  wait_ready identity http://127.0.0.1:8001/readyz
  wait_ready actes-pes http://127.0.0.1:8002/readyz
  wait_ready archive http://127.0.0.1:8003/readyz

  set -a; source "$env_file"; set +a
  cat <<TEXT
Kanol is up (logs: make logs; stop: make down).
  identity        http://127.0.0.1:8001   OAuth 2.0 token endpoint /oauth/token, JWKS
  actes-pes       http://127.0.0.1:8002   /v1/actes, /v1/pes/flows        API docs: /docs
  archive         http://127.0.0.1:8003   /v1/archives, /v1/transfers     API docs: /docs
  prefecture      http://127.0.0.1:8090   simulator of the prefecture's @CTES gateway
  helios          http://127.0.0.1:8091   simulator of the DGFiP's Hélios (PES V2)
  kafka           127.0.0.1:9092          topics identity.events, actes.events, pes.events, archive.events
  data            $KANOL_DATA_DIR (SQLite files and documents)
Demo client: $KANOL_DEMO_CLIENT_ID / $KANOL_DEMO_CLIENT_SECRET (SIREN $KANOL_DEMO_SIREN)
Try it: make demo
TEXT
}

down() {
  if ! running; then
    echo "platform: not running"
    rm -f "$pid_file"
    return
  fi
  local pid
  pid=$(cat "$pid_file")
  # honcho forwards SIGTERM to every process it started, Kafka included.
  kill -TERM "$pid"
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$pid_file"
  echo "platform: stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
