import t from 'tap'
import { BalanceClient, ForbiddenError, UnauthorizedError } from '../../src/client/index.js'
import { build, books, listen } from '../helper.js'
import { rejection } from '../support/rejection.js'

// The typed client against a service with read-write and read-only tokens: 401 and 403 are typed, never retried.
const WRITE = 'auth-client-write-0123456789'
const READ = 'auth-client-read-0123456789'
const FAST = { baseDelayMs: 5, maxDelayMs: 50 }


t.test('a read-only token reads; its writes are ForbiddenError; no token is UnauthorizedError, for reads too', async (t) => {
  const { app } = await build(t, { env: { API_TOKENS: WRITE, API_READ_TOKENS: READ } })
  const base = await listen(app)
  const reader = new BalanceClient({ baseUrl: base, token: READ, retry: FAST })
  const anonymous = new BalanceClient({ baseUrl: base, retry: FAST })
  const before = await books(app, 1)

  t.equal((await reader.getUser(1)).balance, before.balance, 'getUser with a read-only token')
  t.equal((await reader.historyPage(1)).items.length, 1, 'historyPage with a read-only token')
  const forbidden = await rejection(reader.changeBalance({ userId: 1, amount: -2 }))
  t.type(forbidden, ForbiddenError)
  t.match(forbidden, { status: 403, code: 'FORBIDDEN', attempts: 1, stoppedBy: 'answer' })
  const unauthorized = await rejection(anonymous.getUser(1))
  t.type(unauthorized, UnauthorizedError)
  t.match(unauthorized, { status: 401, code: 'UNAUTHORIZED', attempts: 1 })
  t.same(await anonymous.live(), { status: 'ok' }, 'the liveness probe needs no token')
  t.match(await rejection(anonymous.health()), { status: 401, code: 'UNAUTHORIZED' }, 'the readiness check does')
  t.same(await reader.health(), { status: 'ok', db: 'up' }, 'a read-only token may ask it')
  t.same(await books(app, 1), before, 'nothing changed')
})
