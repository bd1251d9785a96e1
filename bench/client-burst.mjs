// The seed burst through balance-api/client: N simultaneous changeBalance() calls from one BalanceClient with its
// defaults (a fresh Idempotency-Key per call, retries with that key, its timeout), in its own process like
// bench/burst-client.mjs. Prints the same JSON line (burst-summary.mjs) plus `attempts`: { total, retried, max }.
// A call that throws a BalanceApiError counts as its status and code; one without an answer (BalanceNetworkError)
// as an error named by its reason.
// Usage: node bench/client-burst.mjs <base-url> <count 1..50000> <json-body>
// balance-api/client is the package's own export (dist/src/client): the bench builds it first.
import { BalanceApiError, BalanceClient, BalanceNetworkError } from 'balance-api/client'
import { summarise } from './burst-summary.mjs'

const [baseUrl, countText, body] = process.argv.slice(2)
const count = Number(countText)
if (!baseUrl || !Number.isInteger(count) || count < 1 || count > 50000 || body === undefined) {
  console.error('usage: client-burst.mjs <base-url> <count 1..50000> <json-body>')
  process.exit(2)
}
const input = JSON.parse(body)
const client = new BalanceClient({ baseUrl })

async function once () {
  const started = performance.now()
  try {
    const answer = await client.changeBalance(input)
    return { status: answer.status, ms: performance.now() - started, attempts: answer.attempts, replayed: answer.replayed }
  } catch (error) {
    const ms = performance.now() - started
    const attempts = error?.attempts ?? 1
    if (error instanceof BalanceApiError) return { status: error.status, code: error.code, ms, attempts }
    if (error instanceof BalanceNetworkError) return { error: error.reason, ms, attempts }
    return { error: error instanceof Error ? error.message : String(error), ms, attempts }
  }
}

const started = performance.now()
const results = await Promise.all(Array.from({ length: count }, once))
const summary = summarise(results, performance.now() - started)
const attempts = {
  total: results.reduce((sum, r) => sum + r.attempts, 0),
  retried: results.filter((r) => r.attempts > 1).length,
  max: Math.max(...results.map((r) => r.attempts)),
  replayed: results.filter((r) => r.replayed === true).length,
}
process.stdout.write(JSON.stringify({ ...summary, attempts }) + '\n')
