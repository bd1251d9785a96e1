import net from 'node:net'
import pg from 'pg'
import t from 'tap'
import { clientErrorHandler } from '../../src/http-client-error-handler.js'
import { guardedPg } from '../../src/db/guarded-pg.js'
import { parseResponse } from '../support/raw-http.js'

/** The two small src/ fixes the fuzz and fault tests found, pinned down directly (the fuzz and fault tests found them end to end). */

async function answerFor (error: Error & { code?: string }): Promise<string> {
  const server = net.createServer((socket) => { clientErrorHandler(error, socket) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  try {
    return await new Promise((resolve, reject) => {
      const chunks: Buffer[] = []
      const socket = net.connect(port, '127.0.0.1')
      socket.on('data', (chunk: Buffer) => chunks.push(chunk))
      socket.on('close', () => { resolve(Buffer.concat(chunks).toString('latin1')) })
      socket.on('error', reject)
    })
  } finally {
    server.close()
  }
}

t.test('refusals before a request exists carry a code', async (t) => {
  const cases: Array<[string | undefined, number, string]> = [
    ['HPE_HEADER_OVERFLOW', 431, 'HPE_HEADER_OVERFLOW'],
    ['ERR_HTTP_REQUEST_TIMEOUT', 408, 'ERR_HTTP_REQUEST_TIMEOUT'],
    ['HPE_INVALID_METHOD', 400, 'HPE_INVALID_METHOD'],
    ['SOMETHING_ELSE', 400, 'BAD_REQUEST'],
    [undefined, 400, 'BAD_REQUEST'],
  ]
  for (const [nodeCode, status, code] of cases) {
    const error = Object.assign(new Error('parse error'), nodeCode === undefined ? {} : { code: nodeCode })
    const response = parseResponse(Buffer.from(await answerFor(error), 'latin1'))
    t.equal(response?.status, status, `${nodeCode}: status`)
    t.match(JSON.parse(response?.body ?? '{}'), { statusCode: status, code, error: String, message: String }, `${nodeCode}: Fastify's error shape with a code`)
  }
  const socket = new net.Socket()
  socket.destroy()
  t.doesNotThrow(() => { clientErrorHandler(Object.assign(new Error('reset'), { code: 'ECONNRESET' }), socket) }, 'a reset connection is left alone')
})

t.test('a pg client that errors before anyone listens does not crash the process', async (t) => {
  const bare = new pg.Client()
  t.throws(() => bare.emit('error', new Error('terminated')), /terminated/, 'plain pg: an unlistened error event throws (an uncaughtException in real life)')
  const guarded = new guardedPg.Client()
  t.doesNotThrow(() => guarded.emit('error', new Error('terminated')), 'guarded: listened from birth')
  t.equal((guarded as unknown as { _invalid?: boolean })._invalid, true, 'and marked invalid, so the pool destroys it')
  t.equal(guardedPg.types, pg.types, 'everything else is pg itself')
})
