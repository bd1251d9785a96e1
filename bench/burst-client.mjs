// Fires N requests at once, each on its own fresh TCP socket (no keep-alive), and prints one JSON line:
// { wallMs, statuses: {"200": n, ...}, codes: {"INSUFFICIENT_FUNDS": n, ...}, errors: {"ECONNRESET": n, ...}, latencyMs: {p50, p99, max} }
// Plain JavaScript run in a child process, so the client's 10k sockets do not share the server's fd limit.
// Usage: node burst-client.mjs <url> <count> <json-body> [method] [key-prefix]
// With a key prefix, request i carries `Idempotency-Key: <key-prefix>-<i>` (the keyed seed burst: a unique key each).
import http from 'node:http'

const [url, countText, body, method = 'PATCH', keyPrefix] = process.argv.slice(2)
const count = Number(countText)
if (!url || !Number.isInteger(count) || count < 1 || count > 50000 || body === undefined) {
  console.error('usage: burst-client.mjs <url> <count 1..50000> <json-body> [method] [key-prefix]')
  process.exit(2)
}
const target = new URL(url)
const payload = Buffer.from(body)
const REQUEST_TIMEOUT_MS = 120_000

function once (_, index) {
  const key = keyPrefix === undefined ? {} : { 'idempotency-key': `${keyPrefix}-${index}` }
  return new Promise((resolve) => {
    const started = performance.now()
    const req = http.request({
      host: target.hostname,
      port: target.port,
      path: target.pathname,
      method,
      agent: false,
      headers: { 'content-type': 'application/json', 'content-length': payload.length, connection: 'close', ...key },
      timeout: REQUEST_TIMEOUT_MS,
    }, (res) => {
      const chunks = []
      res.on('data', (chunk) => chunks.push(chunk))
      res.on('end', () => {
        let code
        try { code = JSON.parse(Buffer.concat(chunks).toString()).code } catch { code = undefined }
        resolve({ status: res.statusCode, code, ms: performance.now() - started })
      })
      res.on('error', (error) => resolve({ error: error.code ?? error.message, ms: performance.now() - started }))
    })
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'CLIENT_TIMEOUT' })))
    req.on('error', (error) => resolve({ error: error.code ?? error.message, ms: performance.now() - started }))
    req.end(payload)
  })
}

function percentile (sorted, p) {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]
}

const started = performance.now()
const results = await Promise.all(Array.from({ length: count }, once))
const wallMs = performance.now() - started
const statuses = {}
const codes = {}
const errors = {}
for (const r of results) {
  if (r.error !== undefined) errors[r.error] = (errors[r.error] ?? 0) + 1
  else {
    statuses[r.status] = (statuses[r.status] ?? 0) + 1
    if (r.code !== undefined) codes[r.code] = (codes[r.code] ?? 0) + 1
  }
}
const latencies = results.map((r) => r.ms).sort((a, b) => a - b)
const latencyMs = { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.at(-1) ?? 0 }
process.stdout.write(JSON.stringify({ wallMs, statuses, codes, errors, latencyMs }) + '\n')
