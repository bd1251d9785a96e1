import { execFile } from 'node:child_process'
import autocannon from 'autocannon'
import { burstClientScript } from './paths.js'

export interface BurstOutcome {
  wallMs: number
  statuses: Record<string, number>
  codes: Record<string, number>
  errors: Record<string, number>
  latencyMs: { p50: number, p99: number, max: number }
}

const BURST_TIMEOUT_MS = 300_000

/**
 * bench/burst-client.mjs in its own process: `count` simultaneous requests, one fresh socket each.
 * With `keyPrefix`, request i carries the Idempotency-Key `<keyPrefix>-<i>` (the keyed seed burst).
 */
export async function burst (url: string, count: number, body: unknown, keyPrefix?: string): Promise<BurstOutcome> {
  return await new Promise((resolve, reject) => {
    execFile(process.execPath, [burstClientScript, url, String(count), JSON.stringify(body), 'PATCH', ...(keyPrefix === undefined ? [] : [keyPrefix])],
      { maxBuffer: 1024 * 1024, timeout: BURST_TIMEOUT_MS },
      (error, stdout, stderr) => {
        if (error !== null) { reject(new Error(`burst client failed: ${error.message} ${stderr}`)); return }
        resolve(JSON.parse(stdout) as BurstOutcome)
      })
  })
}

export interface LoadOutcome {
  reqPerSec: number
  p50Ms: number
  p99Ms: number
  /** Responses received. */
  responses: number
  ok2xx: number
  non2xx: number
  errors: number
  timeouts: number
  durationS: number
}

export interface LoadSpec {
  url: string
  connections: number
  seconds: number
  /** The request body; called for every request, so it may pick a random user. */
  body: () => unknown
}

/** autocannon, programmatic: `connections` keep-alive connections PATCHing /api/balance for `seconds`. */
export async function load ({ url, connections, seconds, body }: LoadSpec): Promise<LoadOutcome> {
  const result = await autocannon({
    url: `${url}/api/balance`,
    connections,
    duration: seconds,
    requests: [{
      method: 'PATCH',
      path: '/api/balance',
      headers: { 'content-type': 'application/json' },
      setupRequest: (request) => ({ ...request, body: JSON.stringify(body()) }),
    }],
  })
  const responses = result['1xx'] + result['2xx'] + result['3xx'] + result['4xx'] + result['5xx']
  return {
    reqPerSec: responses / result.duration,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    responses,
    ok2xx: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    durationS: result.duration,
  }
}
