import net from 'node:net'

/**
 * One HTTP/1.1 request written byte for byte on a fresh loopback socket (`Connection: close`), so a fuzzer can send
 * what http.request refuses to build (odd header bytes, huge headers, broken request lines), and the answer read
 * back whole. Bounded: a request that gets no complete answer within `timeoutMs` resolves as `{ hang: true }`.
 */
export interface RawResponse {
  status: number
  headers: Record<string, string>
  body: string
}

/** `hang`: no complete answer; `timedOut` tells a silent server (a real hang) from a closed connection. */
export type RawOutcome = ({ hang: false } & RawResponse) | { hang: true, timedOut: boolean, error: string }

export interface RawRequest {
  method: string
  path: string
  headers: Array<[string, string]>
  body?: Buffer | string
}

const RESPONSE_LIMIT_BYTES = 1024 * 1024

/** The bytes of a request; Host, Connection and Content-Length are set here so a request cannot wait for bytes that never come. */
export function encodeRequest (request: RawRequest): Buffer {
  const body = request.body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(request.body) ? request.body : Buffer.from(request.body)
  const lines = [`${request.method} ${request.path} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close']
  for (const [name, value] of request.headers) lines.push(`${name}: ${value}`)
  lines.push(`Content-Length: ${body.length}`)
  return Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'utf8'), body])
}

/** Parses a whole response read to the end of the connection (Content-Length or no body; we never ask for chunked). */
export function parseResponse (bytes: Buffer): RawResponse | undefined {
  const end = bytes.indexOf('\r\n\r\n')
  if (end < 0) return undefined
  const [statusLine = '', ...headerLines] = bytes.subarray(0, end).toString('latin1').split('\r\n')
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine)
  if (match === null) return undefined
  const headers: Record<string, string> = {}
  for (const line of headerLines) {
    const colon = line.indexOf(':')
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  let body = bytes.subarray(end + 4)
  const length = headers['content-length']
  if (length !== undefined) body = body.subarray(0, Number(length))
  return { status: Number(match[1]), headers, body: body.toString('utf8') }
}

export async function rawRequest (port: number, request: RawRequest | Buffer, timeoutMs = 10_000): Promise<RawOutcome> {
  const bytes = Buffer.isBuffer(request) ? request : encodeRequest(request)
  return await new Promise((resolve) => {
    const chunks: Buffer[] = []
    let received = 0
    let settled = false
    const socket = net.connect(port, '127.0.0.1')
    const finish = (outcome: RawOutcome): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      resolve(outcome)
    }
    const fromChunks = (error: string, timedOut = false): void => {
      const parsed = parseResponse(Buffer.concat(chunks))
      finish(parsed === undefined ? { hang: true, timedOut, error } : { hang: false, ...parsed })
    }
    const timer = setTimeout(() => { fromChunks(`no complete answer in ${timeoutMs} ms`, true) }, timeoutMs)
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length
      if (received <= RESPONSE_LIMIT_BYTES) chunks.push(chunk)
    })
    socket.on('end', () => { fromChunks('closed without an answer') })
    socket.on('close', () => { fromChunks('closed without an answer') })
    // The server may reset after answering (it destroys the socket on a parse error): keep what arrived.
    socket.on('error', (error: NodeJS.ErrnoException) => { fromChunks(error.code ?? error.message) })
    socket.write(bytes)
  })
}
