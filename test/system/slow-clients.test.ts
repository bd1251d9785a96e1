import { connect, type Socket } from 'node:net'
import t from 'tap'
import { limits } from '../../src/limits.js'
import { build, listen } from '../helper.js'

/**
 * A socket that never completes its request headers is closed within headersTimeoutMs + connectionsCheckingIntervalMs:
 * idle sockets cannot hold the connection slots for long.
 */

/** The documented bound (docs/operations.md, "Limits"): headers within 10 s, checked every 1 s. */
const HEADERS_MS = 10_000
const BOUND_MS = HEADERS_MS + 1_000
const SLACK_MS = 1500

/** Opens a socket, writes `bytes` (maybe nothing), and resolves with the ms until the server closed it. */
async function closedAfter (port: number, bytes: string): Promise<{ ms: number, received: string }> {
  return await new Promise((resolve, reject) => {
    const started = performance.now()
    let received = ''
    const socket: Socket = connect(port, '127.0.0.1', () => { if (bytes !== '') socket.write(bytes) })
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => { received += chunk })
    socket.on('error', () => {})
    socket.on('close', () => { resolve({ ms: performance.now() - started, received }) })
    setTimeout(() => { socket.destroy(); reject(new Error(`still open after ${BOUND_MS + SLACK_MS} ms`)) }, BOUND_MS + SLACK_MS).unref()
  })
}

t.test('idle and slow-header sockets are closed within the headers bound', async (t) => {
  t.same([limits.headersTimeoutMs, limits.connectionsCheckingIntervalMs], [HEADERS_MS, BOUND_MS - HEADERS_MS], 'the bounds of src/limits.ts are the documented ones')
  const { app } = await build(t)
  const port = Number(new URL(await listen(app)).port)
  const [silent, partial] = await Promise.all([
    closedAfter(port, ''),
    closedAfter(port, 'GET /api/health/live HTTP/1.1\r\nHost: x\r\n'),
  ])
  for (const [name, result] of [['a socket that sends nothing', silent], ['a socket that stops mid-headers', partial]] as const) {
    t.ok(result.ms >= HEADERS_MS - 100 && result.ms <= BOUND_MS + SLACK_MS,
      `${name}: closed after ${Math.round(result.ms)} ms (bound ${BOUND_MS} ms)`)
  }
  t.match(partial.received, /^HTTP\/1\.1 408/, 'the one that started a request is told 408 Request Timeout')
})
