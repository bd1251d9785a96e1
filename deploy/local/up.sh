#!/usr/bin/env bash
# Stand the HA topology up on loopback (etcd, two Patroni/PostgreSQL 15 nodes with a synchronous standby, HAProxy,
# optional PgBouncer, N service instances) and keep it in the foreground; Ctrl-C or deploy/local/down.sh stops it all.
#   deploy/local/up.sh [--instances N] [--pooler transaction|session|none] [--strict]   (default: 2 instances, PgBouncer in transaction mode)
# Needs: apt-get install -y patroni etcd-server haproxy pgbouncer postgresql-15
set -euo pipefail
cd "$(dirname "$0")/../.."
npm run build --silent
npx tsc -p tsconfig.bench.json
exec node dist/deploy/local/up.js "$@"
