import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import autocannon from 'autocannon'
import { burstClientScript, clientBurstScript } from './paths.js'

export interface BurstOutcome {
  wallMs: number
  statuses: Record<string, number>
  codes: Record<string, number>
  errors: Record<string, number>
  latencyMs: { p50: number, p99: number, max: number }
  /** With burstRequests: [status, code] of each request in order ([0, error] without an answer). */
  answers?: Array<[number, string | null]>
  /** With clientBurst: attempts over all calls, calls that took more than one, the most one took, replayed answers. */
  attempts?: { total: number, retried: number, max: number, replayed: number }
}

const BURST_TIMEOUT_MS = 300_000

/**
 * bench/burst-client.mjs in its own process: `count` simultaneous requests, one fresh socket each.
 * With `keyPrefix`, request i carries the Idempotency-Key `<keyPrefix>-<i>` (the keyed seed burst).
 */
export async function burst (url: string, count: number, body: unknown, keyPrefix?: string, method: 'PATCH' | 'POST' = 'PATCH'): Promise<BurstOutcome> {
  return await runBurstClient([url, String(count), JSON.stringify(body), method, ...(keyPrefix === undefined ? [] : [keyPrefix])])
}

/**
 * bench/client-burst.mjs in its own process: `count` simultaneous changeBalance(body) calls through one
 * balance-api/client BalanceClient with its defaults (fresh Idempotency-Key per call, its retries and timeout).
 */
export async function clientBurst (baseUrl: string, count: number, body: unknown): Promise<BurstOutcome> {
  return await runBurstClient([baseUrl, String(count), JSON.stringify(body)], clientBurstScript)
}

/** One request of burstRequests: its own method, path (under the base URL), body and key. */
export interface BurstRequest {
  method: 'PATCH' | 'POST' | 'GET'
  path: string
  body?: unknown
  key?: string
}

/** Every request at once, each on its own socket, as burst() does, but each its own; answers come back in order. */
export async function burstRequests (base: string, requests: BurstRequest[]): Promise<BurstOutcome & { answers: Array<[number, string | null]> }> {
  const folder = await mkdtemp(path.join(os.tmpdir(), 'balance-burst-'))
  try {
    const file = path.join(folder, 'requests.json')
    await writeFile(file, JSON.stringify(requests))
    const outcome = await runBurstClient([base, String(requests.length), `@${file}`])
    if (outcome.answers?.length !== requests.length) throw new Error('burst client: answers missing')
    return outcome as BurstOutcome & { answers: Array<[number, string | null]> }
  } finally {
    await rm(folder, { recursive: true, force: true })
  }
}

async function runBurstClient (args: string[], script = burstClientScript): Promise<BurstOutcome> {
  return await new Promise((resolve, reject) => {
    execFile(process.execPath, [script, ...args],
      { maxBuffer: 16 * 1024 * 1024, timeout: BURST_TIMEOUT_MS },
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
  /** The Idempotency-Key of each request, when it carries one. */
  key?: () => string
}

/** autocannon, programmatic: `connections` keep-alive connections PATCHing /api/balance for `seconds`. */
export async function load ({ url, connections, seconds, body, key }: LoadSpec): Promise<LoadOutcome> {
  return outcomeOf(await autocannon({
    url: `${url}/api/balance`,
    connections,
    duration: seconds,
    requests: [{
      method: 'PATCH',
      path: '/api/balance',
      headers: { 'content-type': 'application/json' },
      setupRequest: (request) => ({
        ...request,
        body: JSON.stringify(body()),
        ...(key === undefined ? {} : { headers: { ...request.headers, 'idempotency-key': key() } }),
      }),
    }],
  }))
}

/**
 * Exactly `amount` requests (autocannon waits for every answer) of `method path` over `connections`; body i from body(i).
 * wallMs runs from the start to the last answer: autocannon itself resolves only at its next 1-second sample tick, which
 * would round a short send up to whole seconds.
 */
export async function send (url: string, path: string, method: 'PATCH' | 'POST', connections: number, amount: number, body: (i: number) => unknown): Promise<LoadOutcome & { wallMs: number }> {
  let next = 0
  let lastAnswer = 0
  const started = performance.now()
  const instance = autocannon({
    url: url + path,
    // autocannon refuses more connections than requests.
    connections: Math.min(connections, amount),
    amount,
    requests: [{ method, path, headers: { 'content-type': 'application/json' }, setupRequest: (request) => ({ ...request, body: JSON.stringify(body(next++)) }) }],
    // Without a callback autocannon returns its event emitter, made thenable (its typings know only one of the two).
  }) as Promise<autocannon.Result> & autocannon.Instance
  instance.on('response', () => { lastAnswer = performance.now() })
  const result = await instance
  return { ...outcomeOf(result), wallMs: (lastAnswer === 0 ? performance.now() : lastAnswer) - started }
}

/**
 * `connections` keep-alive connections for `seconds`, each: POST /api/holds {userId, amount: 1}, then capture that
 * hold. reqPerSec counts both requests; pairsPerSec the pairs.
 */
export async function holdCaptureLoad (url: string, userId: number, connections: number, seconds: number): Promise<LoadOutcome & { pairsPerSec: number }> {
  const result = await autocannon({
    url,
    connections,
    duration: seconds,
    requests: [
      {
        method: 'POST',
        path: '/api/holds',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ userId, amount: 1 }),
        onResponse: (_status: number, body: string, context: Record<string, unknown>) => { context.holdId = (JSON.parse(body) as { holdId: number }).holdId },
      },
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        setupRequest: (request: Record<string, unknown>, context: Record<string, unknown>) => ({ ...request, path: `/api/holds/${String(context.holdId)}/capture`, body: '{}' }),
      },
    ],
  } as autocannon.Options)
  const outcome = outcomeOf(result)
  return { ...outcome, pairsPerSec: outcome.ok2xx / 2 / outcome.durationS }
}

function outcomeOf (result: autocannon.Result): LoadOutcome {
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
