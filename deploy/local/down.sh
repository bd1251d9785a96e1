#!/usr/bin/env bash
# Stops a topology started by deploy/local/up.sh (it stops everything it started on SIGTERM).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -f .ha-up.json ] || { echo "no .ha-up.json: nothing is up"; exit 0; }
pid="$(node -p 'JSON.parse(require("fs").readFileSync(".ha-up.json","utf8")).pid')"
kill -TERM "$pid" 2>/dev/null || { echo "process $pid is gone"; rm -f .ha-up.json; exit 0; }
for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || { echo "stopped"; exit 0; }; sleep 1; done
echo "process $pid did not stop within 30 s" >&2; exit 1
