import http from 'node:http'
import { BalanceApiError, BalanceClient, BalanceNetworkError, DatabaseUnavailableError, InsufficientFundsError, type AttemptInfo, type ChangeBalanceInput, type TransferInput } from '../src/client/index.js'

/**
 * A small keep-alive JSON client for the soak, one per service instance. Every request is bounded: no answer within
 * `timeoutMs` is reported as CLIENT_TIMEOUT (the service must never hang, so the soak counts it as a violation).
 */
export type HttpResult =
  | { kind: 'answer', status: number, body: Record<string, unknown>, replayed: boolean }
  | { kind: 'error', error: string }

export class HttpClient {
  private readonly agent: http.Agent
  private readonly host: string
  private readonly port: number

  constructor (baseUrl: string, maxSockets: number, private readonly timeoutMs = 15_000) {
    const url = new URL(baseUrl)
    this.host = url.hostname
    this.port = Number(url.port)
    this.agent = new http.Agent({ keepAlive: true, maxSockets, keepAliveMsecs: 1000 })
  }

  async request (method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<HttpResult> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
    return await new Promise((resolve) => {
      let settled = false
      const finish = (result: HttpResult): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        resolve(result)
      }
      const request = http.request({
        host: this.host,
        port: this.port,
        method,
        path,
        agent: this.agent,
        headers: payload === undefined ? headers : { ...headers, 'content-type': 'application/json', 'content-length': payload.length },
      }, (response) => {
        const chunks: Buffer[] = []
        response.on('data', (chunk: Buffer) => chunks.push(chunk))
        response.on('end', () => {
          let parsed: Record<string, unknown>
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>
          } catch {
            parsed = { unparsable: Buffer.concat(chunks).toString('utf8').slice(0, 200) }
          }
          finish({ kind: 'answer', status: response.statusCode ?? 0, body: parsed, replayed: response.headers['idempotent-replayed'] === 'true' })
        })
        response.on('error', (error: NodeJS.ErrnoException) => { finish({ kind: 'error', error: error.code ?? error.message }) })
      })
      // A hard deadline on the whole exchange, not only on socket idleness.
      const timer = setTimeout(() => {
        request.destroy()
        finish({ kind: 'error', error: 'CLIENT_TIMEOUT' })
      }, this.timeoutMs)
      request.on('error', (error: NodeJS.ErrnoException) => { finish({ kind: 'error', error: error.code ?? error.message }) })
      request.end(payload)
    })
  }

  close (): void {
    this.agent.destroy()
  }
}

/**
 * The soak's writers run on the project's client (balance-api/client): one retry logic for the project. Each writer
 * gets its own client over every instance, starting on a different one so the writers spread; the client keeps the
 * operation's Idempotency-Key on every attempt, retries a 503, a lost connection or a timeout with backoff, and moves
 * to the next instance when one cannot be reached (a killed instance). `onAttempt` shows the soak every attempt, so
 * it still counts each 503 and flags each timeout or other 5xx as before.
 */
export function writerClient (urls: string[], index: number, timeoutMs: number, maxAttempts: number, onAttempt: (attempt: AttemptInfo) => void): BalanceClient {
  const rotated = urls.map((_, position) => urls[(index + position) % urls.length]!)
  return new BalanceClient({
    baseUrl: rotated,
    timeoutMs,
    retry: { maxAttempts, maxElapsedMs: 2 * timeoutMs, baseDelayMs: 25, maxDelayMs: 1000 },
    onAttempt,
  })
}

export interface SoakWrite { key: string, method: 'PATCH' | 'POST', path: string, body: Record<string, number> }

/**
 * What became of a write: acknowledged (2xx; `replayed` when the answer came from its key after an ambiguous
 * attempt), refused (409 INSUFFICIENT_FUNDS), unknown (still a 503 or no answer when the bounds ran out), or
 * unexpected (any other answer: a violation for the soak).
 */
export type SoakWriteOutcome =
  | { final: 'acknowledged', attempts: number, replayed: boolean, body: Record<string, unknown> }
  | { final: 'refused', attempts: number }
  | { final: 'unknown', attempts: number }
  | { final: 'unexpected', attempts: number, detail: string }

export async function sendWrite (api: BalanceClient, write: SoakWrite, maxAttempts: number): Promise<SoakWriteOutcome> {
  const options = { idempotencyKey: write.key, retry: { maxAttempts } }
  try {
    const result = write.path === '/api/transfers'
      ? await api.transfer(write.body as unknown as TransferInput, options)
      : await api.changeBalance(write.body as unknown as ChangeBalanceInput, options)
    return { final: 'acknowledged', attempts: result.attempts, replayed: result.replayed, body: result.data as unknown as Record<string, unknown> }
  } catch (error) {
    if (error instanceof InsufficientFundsError) return { final: 'refused', attempts: error.attempts }
    if (error instanceof DatabaseUnavailableError || error instanceof BalanceNetworkError) return { final: 'unknown', attempts: error.attempts }
    if (error instanceof BalanceApiError) return { final: 'unexpected', attempts: error.attempts, detail: `${error.status} ${JSON.stringify(error.body).slice(0, 200)}` }
    throw error
  }
}
