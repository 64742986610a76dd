#!/usr/bin/env bash
# Wait until a TCP port answers, so a service does not start before the broker it needs.
set -euo pipefail
host=$1 port=$2 timeout=${3:-120}
for _ in $(seq 1 $((timeout * 5))); do
  if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
    exit 0
  fi
  sleep 0.2
done
echo "wait-port: $host:$port did not answer within ${timeout}s" >&2
exit 1
