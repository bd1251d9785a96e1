// Fires N requests at once, each on its own fresh TCP socket (no keep-alive), and prints one JSON line:
// the JSON line of burst-summary.mjs: { wallMs, statuses: {"200": n, ...}, codes, errors, latencyMs: {p50, p99, max} }
// Plain JavaScript run in a child process, so the client's 10k sockets do not share the server's fd limit.
// Usage: node burst-client.mjs <url> <count> <json-body> [method] [key-prefix]
//        node burst-client.mjs <base-url> <count> @<requests.json>
// With a key prefix, request i carries `Idempotency-Key: <key-prefix>-<i>` (the keyed seed burst: a unique key each).
// With @file, request i is the file's i-th `{method, path, body?, key?}` (its body may be absent), and the output also
// has `answers`: [status, code] of each request in file order (or [0, error]).
import { readFileSync } from 'node:fs'
import http from 'node:http'
import { summarise } from './burst-summary.mjs'

const [url, countText, body, method = 'PATCH', keyPrefix] = process.argv.slice(2)
const count = Number(countText)
if (!url || !Number.isInteger(count) || count < 1 || count > 50000 || body === undefined) {
  console.error('usage: burst-client.mjs <url> <count 1..50000> <json-body> [method] [key-prefix]')
  process.exit(2)
}
const target = new URL(url)
const specs = body.startsWith('@') ? JSON.parse(readFileSync(body.slice(1), 'utf8')) : undefined
if (specs !== undefined && specs.length !== count) {
  console.error(`burst-client.mjs: ${body.slice(1)} holds ${specs.length} requests, not ${count}`)
  process.exit(2)
}
const payload = Buffer.from(specs === undefined ? body : '')
const REQUEST_TIMEOUT_MS = 120_000

function requestOf (index) {
  if (specs === undefined) {
    return { path: target.pathname, method, payload, key: keyPrefix === undefined ? undefined : `${keyPrefix}-${index}` }
  }
  const spec = specs[index]
  return { path: spec.path, method: spec.method, payload: Buffer.from(spec.body === undefined ? '' : JSON.stringify(spec.body)), key: spec.key }
}

function once (_, index) {
  const { path, method, payload, key: keyValue } = requestOf(index)
  const key = keyValue === undefined ? {} : { 'idempotency-key': keyValue }
  const type = payload.length === 0 ? {} : { 'content-type': 'application/json' }
  return new Promise((resolve) => {
    const started = performance.now()
    const req = http.request({
      host: target.hostname,
      port: target.port,
      path,
      method,
      agent: false,
      headers: { ...type, 'content-length': payload.length, connection: 'close', ...key },
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

const started = performance.now()
const results = await Promise.all(Array.from({ length: count }, once))
const summary = summarise(results, performance.now() - started)
const answers = specs === undefined ? undefined : results.map((r) => (r.error === undefined ? [r.status, r.code ?? null] : [0, r.error]))
process.stdout.write(JSON.stringify({ ...summary, ...(answers === undefined ? {} : { answers }) }) + '\n')
