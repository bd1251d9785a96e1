#!/bin/sh
# The long run behind reliability/REPORT.md: the bank soak, then (unless SKIP_FUZZ=1) the long fuzz, then the report
# and the section of docs/reliability.md. From the project root: nohup sh reliability/long-run.sh > reliability/long-run.log 2>&1 &
set -u
MINUTES="${SOAK_MINUTES:-15}"
npx tsc -p tsconfig.bench.json || exit 2
npm run --silent soak -- --minutes "$MINUTES" --users 100 --clients 48 --readers 4 --kill-instance-every-ms 120000 \
  --out reliability/soak-last.json > /dev/null 2> reliability/soak-last.log
echo "soak exit $?"
if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  FUZZ_RUNS=10000 FUZZ_REPORT=reliability/fuzz-last.json npx tap test/system/fuzz.test.ts --disable-coverage > reliability/fuzz-last.log 2>&1
  echo "fuzz exit $?"
fi
node dist/reliability/reliability-report.js
echo "report exit $?"
