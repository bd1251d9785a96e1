#!/usr/bin/env bash
# The newcomer step: literally the README's Quick start on a fresh clone, as the user CI runs as (root in CI).
#   git clone → npm install → npm start with NO variables set (default PGDATA_DIR .data/pg, embedded PostgreSQL,
#   port 3000) → GET /api/health 200 → PATCH /api/balance {"userId":1,"amount":-2} → 200, balance 9998
#   → SIGTERM to the node process → exit 0 → the folder is removed.
#
# Usage: .ci/newcomer.sh [REPO [REF]]   (default: this checkout, HEAD). Example, proving old main fails:
#   .ci/newcomer.sh /work/main d047f0f
# Bounds: npm install 600 s, start (build + embedded initdb + migrations) until healthy 180 s, exit after SIGTERM 30 s.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
repo="${1:-$here}"
ref="${2:-HEAD}"
port=3000 # the README's port: PORT is not set, so the service must listen here
INSTALL_TIMEOUT_S=600
START_TIMEOUT_S=180
EXIT_TIMEOUT_S=30

# A new folder for the clone. mktemp -d makes it 0700; a clone normally sits in a folder others may pass through
# (/srv, /opt, /home/you, /tmp), so make it 0755 like those. (A clone under a 0700 folder such as /root gets a clear
# error naming that folder instead: test/system/embedded-folders.test.ts.)
base="$(mktemp -d "${TMPDIR:-/tmp}/balance-newcomer.XXXXXX")"
chmod 755 "$base"
clone="$base/balance-api"
log="$base/npm-start.log"
npm_pid=''

stop_everything () {
  # The server if it still runs (SIGTERM, then SIGKILL), then an embedded PostgreSQL it may have left behind.
  if [ -n "$npm_pid" ] && kill -0 "$npm_pid" 2>/dev/null; then
    pkill -TERM -P "$npm_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$npm_pid" 2>/dev/null || break; sleep 0.2; done
    pkill -KILL -P "$npm_pid" 2>/dev/null || true
    kill -KILL "$npm_pid" 2>/dev/null || true
  fi
  local pidfile="$clone/.data/pg/postmaster.pid"
  if [ -f "$pidfile" ]; then
    local pg_pid
    pg_pid="$(head -n 1 "$pidfile")"
    if [ -n "$pg_pid" ] && kill -0 "$pg_pid" 2>/dev/null; then
      kill -INT "$pg_pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pg_pid" 2>/dev/null || break; sleep 0.2; done
      kill -KILL "$pg_pid" 2>/dev/null || true
    fi
  fi
}
cleanup () {
  local code=$?
  stop_everything
  rm -rf "$base"
  exit "$code"
}
trap cleanup EXIT

fail () {
  echo "newcomer: FAILED: $*" >&2
  if [ -f "$log" ]; then
    echo "---- npm start output (last 40 lines) ----" >&2
    tail -n 40 "$log" >&2
    echo "------------------------------------------" >&2
  fi
  exit 1
}

# One HTTP request with Node's fetch (curl is not on every fresh machine; node is, since npm is). Prints "STATUS BODY".
http () {
  node -e '
    const [method, url, body] = process.argv.slice(1)
    fetch(url, { method, headers: body ? { "content-type": "application/json" } : {}, body: body || undefined, signal: AbortSignal.timeout(5000) })
      .then(async (res) => { console.log(res.status + " " + await res.text()) })
      .catch((error) => { console.log("000 " + (error.cause?.code ?? error.message)) })
  ' "$@"
}

echo "newcomer: git clone $repo ($ref) into $clone"
git clone --quiet --no-hardlinks "$repo" "$clone"
git -C "$clone" checkout --quiet --detach "$ref"
echo "newcomer: commit $(git -C "$clone" log -1 --format='%h %s')"
cd "$clone"

echo "newcomer: npm install"
timeout "$INSTALL_TIMEOUT_S" npm install --no-audit --no-fund >"$base/npm-install.log" 2>&1 \
  || { tail -n 40 "$base/npm-install.log" >&2; fail "npm install failed or took over $INSTALL_TIMEOUT_S s"; }

# The service must get the README's port 3000: if something else holds it, say so rather than pick another.
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  holder="$(ss -ltnpH "sport = :$port" 2>/dev/null | head -n 1 || true)"
  fail "port $port is already taken on this machine (${holder:-unknown process}); the newcomer step needs the README's default port"
fi

# Nothing set: only what any login shell has (PATH, HOME); no DATABASE_URL, PORT, PGDATA_DIR, LOG_* or CI variables.
echo "newcomer: npm start (no variables set)"
started=$SECONDS
env -i PATH="$PATH" HOME="$HOME" npm start >"$log" 2>&1 &
npm_pid=$!

healthy=''
while [ $((SECONDS - started)) -lt "$START_TIMEOUT_S" ]; do
  kill -0 "$npm_pid" 2>/dev/null || { wait "$npm_pid" && code=0 || code=$?; fail "npm start exited with $code before /api/health answered 200"; }
  reply="$(http GET "http://127.0.0.1:$port/api/health")"
  if [ "${reply%% *}" = 200 ]; then healthy="$reply"; break; fi
  sleep 1
done
[ -n "$healthy" ] || fail "GET /api/health did not answer 200 within $START_TIMEOUT_S s (last: $reply)"
echo "newcomer: healthy after $((SECONDS - started)) s: $healthy"

reply="$(http PATCH "http://127.0.0.1:$port/api/balance" '{"userId":1,"amount":-2}')"
echo "newcomer: PATCH /api/balance {\"userId\":1,\"amount\":-2} → $reply"
[ "${reply%% *}" = 200 ] || fail "PATCH /api/balance answered ${reply%% *}, expected 200"
node -e 'const b = JSON.parse(process.argv[1]); if (b.userId !== 1 || b.balance !== 9998 || b.amount !== -2) process.exit(1)' "${reply#* }" \
  || fail "PATCH /api/balance body is not {userId:1, balance:9998, amount:-2}"

# `npm start` is `npm run build && exec node dist/src/server.js`: the shell npm spawned has become the node server
# (same pid). SIGTERM goes to that node process, not to npm.
node_pid=''
for child in $(pgrep -P "$npm_pid" || true); do
  if tr '\0' ' ' <"/proc/$child/cmdline" | grep -q 'dist/src/server.js'; then node_pid="$child"; fi
done
[ -n "$node_pid" ] || fail "no 'node dist/src/server.js' child of npm (pid $npm_pid) found"
echo "newcomer: SIGTERM to node (pid $node_pid: $(tr '\0' ' ' <"/proc/$node_pid/cmdline"))"
kill -TERM "$node_pid"

for _ in $(seq 1 $((EXIT_TIMEOUT_S * 5))); do kill -0 "$npm_pid" 2>/dev/null || break; sleep 0.2; done
kill -0 "$npm_pid" 2>/dev/null && fail "npm start did not exit within $EXIT_TIMEOUT_S s of SIGTERM"
wait "$npm_pid" && code=0 || code=$?
npm_pid=''
[ "$code" = 0 ] || fail "npm start exited with $code after SIGTERM, expected 0"
[ ! -f "$clone/.data/pg/postmaster.pid" ] || fail "the embedded PostgreSQL still runs after the service exited (.data/pg/postmaster.pid)"
echo "newcomer: exit 0 after SIGTERM; the embedded PostgreSQL stopped with it"
echo "---- npm start output ----"
cat "$log"
echo "--------------------------"
echo "newcomer: OK"
