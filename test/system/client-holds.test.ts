import t from 'tap'
import { build, listen } from '../helper.js'
import {
  BalanceClient, CaptureExceedsHoldError, HoldExpiredError, HoldNotActiveError, HoldNotFoundError, InsufficientFundsError,
} from '../../src/client/index.js'

/** balance-api/client on holds: every method against a listening service, and the typed error of every hold code. */
t.test('the client creates, captures, voids, reads and lists holds, with typed errors', async (t) => {
  const { app } = await build(t)
  const api = new BalanceClient({ baseUrl: await listen(app) })
  const { data: user } = await api.createUser({ balance: 100 })

  const first = await api.createHold({ userId: user.id, amount: 30, metadata: { orderId: 'c-1' } }, { idempotencyKey: 'client-hold-1' })
  t.equal(first.status, 201)
  t.match(first.data, { userId: user.id, amount: 30, status: 'active', held: 30, available: 70, metadata: { orderId: 'c-1' } })
  const replay = await api.createHold({ userId: user.id, amount: 30, metadata: { orderId: 'c-1' } }, { idempotencyKey: 'client-hold-1' })
  t.equal(replay.replayed, true)
  t.equal(replay.data.holdId, first.data.holdId)

  const refused = await api.createHold({ userId: user.id, amount: 71 }).catch((error: unknown) => error)
  t.ok(refused instanceof InsufficientFundsError)
  t.match(refused, { balance: 100, available: 70 })

  const over = await api.captureHold(first.data.holdId, { amount: 31 }).catch((error: unknown) => error)
  t.ok(over instanceof CaptureExceedsHoldError)
  t.match(over, { holdId: first.data.holdId, holdAmount: 30 })
  const captured = await api.captureHold(first.data.holdId, { amount: 10 })
  t.match(captured.data, { status: 'captured', captured: 10, released: 20, balance: 90, held: 0 })
  const twice = await api.voidHold(first.data.holdId).catch((error: unknown) => error)
  t.ok(twice instanceof HoldNotActiveError)
  t.match(twice, { holdId: first.data.holdId, holdStatus: 'captured' })

  const second = await api.createHold({ userId: user.id, amount: 5 })
  t.match((await api.voidHold(second.data.holdId)).data, { status: 'voided', released: 5, held: 0 })
  const short = await api.createHold({ userId: user.id, amount: 5, expiresInSeconds: 1 })
  await new Promise((resolve) => setTimeout(resolve, 1100))
  t.match(await api.getHold(short.data.holdId), { status: 'expired' })
  const late = await api.captureHold(short.data.holdId).catch((error: unknown) => error)
  t.ok(late instanceof HoldExpiredError)
  const missing = await api.getHold(999_999).catch((error: unknown) => error)
  t.ok(missing instanceof HoldNotFoundError)
  t.match(missing, { holdId: 999_999 })

  const pages = []
  for await (const page of api.holds(user.id, { limit: 2 })) pages.push(page.items.map((hold) => hold.holdId))
  t.same(pages, [[short.data.holdId, second.data.holdId], [first.data.holdId]], 'the iterator follows nextCursor, newest first')
  const voided = await api.holdsPage(user.id, { status: 'voided' })
  t.same(voided.items.map((hold) => hold.holdId), [second.data.holdId])
  const at = await api.balanceAt(user.id, new Date())
  t.match(at, { userId: user.id, balance: 90 })
})
