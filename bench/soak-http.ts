import http from 'node:http'

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
