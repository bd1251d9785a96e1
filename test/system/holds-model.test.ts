import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { build, listen, sql, strategies } from '../helper.js'
import { prng } from '../support/model-check.js'
import { assertBooksBalance, newUser, request } from '../support/ledger.js'
import { backendKiller, connect } from '../support/retry.js'
import { BalanceApiError, BalanceClient, BalanceClientError } from '../../src/client/index.js'

/**
 * Holds under concurrency on one hot user, checked against the database afterwards:
 * - a model check: a mixed storm of changes, new holds, partial captures (some paying another user), voids and
 *   keyed duplicates, in waves so that settlements race each other and new work; every answer must match the
 *   journal and the holds table, no answer may show available < 0, and each key must have executed once;
 * - the expiry instant: captures racing the expiry of their holds never both capture and release;
 * - pg_terminate_backend during hold batches: only 200/201/409/503, and keyed retries converge to exactly once.
 */

interface Sent { kind: 'change' | 'hold' | 'capture' | 'void', key: string | undefined, status: number, text: string, replayed: boolean, holdId?: number, amount?: number, toUserId?: number }

interface Answer { balance?: number, held?: number, available?: number, entryId?: number | null, holdId?: number, status?: string, captured?: number, code?: string, payee?: { userId: number, balance: number, entryId: number } | null }

async function send (app: FastifyInstance, kind: Sent['kind'], url: string, body: unknown, key: string | undefined, extra: Partial<Sent>): Promise<Sent> {
  const res = await request(app, 'POST', url, body, key)
  return { kind, key, status: res.statusCode, text: res.body, replayed: res.headers['idempotent-replayed'] === 'true', ...extra }
}

async function modelCheck (t: Test, app: FastifyInstance, seed: number): Promise<void> {
  const random = prng(seed)
  const opening = 5000
  const userId = await newUser(app, opening)
  const payee = await newUser(app, 0)
  const sent: Sent[] = []
  const holdIds: number[] = []
  const keyOf = (prefix: string, i: number): string | undefined => (random() < 0.3 ? `${prefix}-${seed}-${i}` : undefined)

  for (let wave = 0; wave < 4; wave += 1) {
    const batch: Array<Promise<Sent>> = []
    for (let i = 0; i < 300; i += 1) {
      const r = random()
      const key = keyOf(`w${wave}`, i)
      const copies = key !== undefined && random() < 0.25 ? 2 : 1
      // One request, decided once, then sent `copies` times at once (a duplicate carries the same key and body).
      let make: () => Promise<Sent>
      if (r < 0.3) {
        const amount = random() < 0.5 ? 1 + Math.floor(random() * 50) : -(1 + Math.floor(random() * 80))
        make = async () => {
          const res = await request(app, 'PATCH', '/api/balance', { userId, amount }, key)
          return { kind: 'change', key, status: res.statusCode, text: res.body, replayed: res.headers['idempotent-replayed'] === 'true', amount }
        }
      } else if (r < 0.65 || holdIds.length === 0) {
        const amount = 1 + Math.floor(random() * 120)
        make = async () => await send(app, 'hold', '/api/holds', { userId, amount, expiresInSeconds: 3600 }, key, { amount })
      } else {
        const holdId = holdIds[Math.floor(random() * holdIds.length)]!
        if (random() < 0.55) {
          const body: Record<string, number> = {}
          if (random() < 0.6) body.amount = 1 + Math.floor(random() * 60)
          if (random() < 0.4) body.toUserId = payee
          make = async () => await send(app, 'capture', `/api/holds/${holdId}/capture`, body, key, { holdId, ...body })
        } else {
          make = async () => await send(app, 'void', `/api/holds/${holdId}/void`, undefined, key, { holdId })
        }
      }
      for (let c = 0; c < copies; c += 1) batch.push(make())
    }
    const answers = await Promise.all(batch)
    sent.push(...answers)
    for (const answer of answers) {
      if (answer.kind === 'hold' && answer.status === 201) holdIds.push((JSON.parse(answer.text) as Answer).holdId!)
    }
  }

  const holds = new Map((await sql<{ id: string, amount: string, status: string, captured: string, to_user_id: string | null }>(app,
    'SELECT id, amount, status, captured, to_user_id FROM holds WHERE user_id = $1', [userId])).map((row) => [Number(row.id), row]))
  const entries = new Map((await sql<{ id: string, user_id: string, amount: string, balance_after: string, kind: string, hold_id: string | null }>(app,
    'SELECT id, user_id, amount, balance_after, kind, hold_id FROM journal_entries WHERE user_id IN ($1, $2)', [userId, payee])).map((row) => [Number(row.id), row]))
  const balancesHad = new Set([opening, ...[...entries.values()].filter((e) => Number(e.user_id) === userId).map((e) => Number(e.balance_after))])
  const problems: string[] = []
  const settledBy = new Map<number, Set<string>>()
  const answersByKey = new Map<string, Set<string>>()
  const statuses: Record<string, number> = {}
  for (const s of sent) {
    statuses[`${s.kind} ${s.status}`] = (statuses[`${s.kind} ${s.status}`] ?? 0) + 1
    const body = JSON.parse(s.text) as Answer
    if (s.key !== undefined) answersByKey.set(s.key, (answersByKey.get(s.key) ?? new Set()).add(`${s.status} ${s.text}`))
    if (s.status < 300) {
      if (body.available === undefined || body.available < 0 || (body.held !== undefined && body.held > body.balance!)) problems.push(`${s.kind}: available below 0 in ${s.text}`)
      if (!balancesHad.has(body.balance!)) problems.push(`${s.kind}: balance ${body.balance} is none the user had`)
    }
    if (s.kind === 'change' && s.status === 200) {
      const entry = entries.get(body.entryId!)
      if (entry === undefined || Number(entry.amount) !== s.amount || Number(entry.balance_after) !== body.balance) problems.push(`change ${s.text} ≠ its entry`)
    } else if (s.kind === 'hold' && s.status === 201) {
      const hold = holds.get(body.holdId!)
      if (hold === undefined || Number(hold.amount) !== s.amount) problems.push(`hold ${s.text} ≠ its row`)
    } else if ((s.kind === 'capture' || s.kind === 'void') && s.status === 200) {
      const hold = holds.get(s.holdId!)
      const expected = s.kind === 'capture' ? 'captured' : 'voided'
      if (hold?.status !== expected || body.status !== expected) problems.push(`${s.kind} of ${s.holdId}: the row is ${hold?.status}`)
      if (!s.replayed || s.key === undefined) settledBy.set(s.holdId!, (settledBy.get(s.holdId!) ?? new Set()).add(s.key ?? `${s.kind}-${Math.random()}`))
      if (s.kind === 'capture') {
        const captured = s.amount ?? Number(hold?.amount)
        const entry = entries.get(body.entryId!)
        if (Number(hold?.captured) !== captured || body.captured !== captured) problems.push(`capture of ${s.holdId}: captured ${hold?.captured}, asked ${captured}`)
        if (entry === undefined || Number(entry.amount) !== -captured || entry.kind !== 'capture' || Number(entry.hold_id) !== s.holdId) problems.push(`capture of ${s.holdId}: entry ${JSON.stringify(entry)}`)
        if (s.toUserId !== undefined) {
          const leg = entries.get(body.payee?.entryId ?? 0)
          if (leg === undefined || Number(leg.amount) !== captured || leg.kind !== 'capture-in' || Number(leg.user_id) !== payee) problems.push(`capture of ${s.holdId}: payee leg ${JSON.stringify(leg)}`)
        }
      }
    } else if (s.status === 409) {
      const allowed = s.kind === 'change' || s.kind === 'hold' ? ['INSUFFICIENT_FUNDS'] : ['HOLD_NOT_ACTIVE', 'CAPTURE_EXCEEDS_HOLD']
      if (!allowed.includes(body.code ?? '')) problems.push(`${s.kind} 409 ${body.code}`)
      if (body.code === 'INSUFFICIENT_FUNDS' && (body.available === undefined || body.available < 0)) problems.push(`refusal without a sane available: ${s.text}`)
      if (body.code === 'HOLD_NOT_ACTIVE' && holds.get(s.holdId!)?.status === 'active') problems.push(`HOLD_NOT_ACTIVE for ${s.holdId}, still active`)
    } else if (!(s.kind === 'change' && s.status === 200)) {
      problems.push(`unexpected ${s.kind} ${s.status} ${s.text}`)
    }
  }
  t.same(problems, [], `every answer of ${sent.length} matches the journal and the holds table (${JSON.stringify(statuses)})`)
  const twice = [...settledBy.entries()].filter(([, by]) => by.size > 1).map(([holdId]) => holdId)
  t.same(twice, [], 'no hold was settled by two requests')
  for (const [holdId, hold] of holds) {
    if (hold.status !== 'active' && !settledBy.has(holdId)) problems.push(`hold ${holdId} is ${hold.status} but no request settled it`)
  }
  t.same(problems, [], 'every settled hold was settled by exactly one answered request')
  t.same([...answersByKey.entries()].filter(([, answers]) => answers.size !== 1).map(([key]) => key), [], `each of ${answersByKey.size} keys has one answer however often it was sent`)
  const [executed] = await sql<{ entries: string, distinct: string, holds: string, holdKeys: string }>(app, `
    SELECT (SELECT count(*) FROM journal_entries WHERE idempotency_key IS NOT NULL AND kind IN ('change', 'capture')) AS entries,
           (SELECT count(DISTINCT idempotency_key) FROM journal_entries WHERE idempotency_key IS NOT NULL AND kind IN ('change', 'capture')) AS distinct,
           (SELECT count(*) FROM holds WHERE idempotency_key IS NOT NULL) AS holds,
           (SELECT count(DISTINCT idempotency_key) FROM holds WHERE idempotency_key IS NOT NULL) AS "holdKeys"`)
  t.equal(executed?.entries, executed?.distinct, 'no key wrote two holder entries')
  t.equal(executed?.holds, executed?.holdKeys, 'no key created two holds')
  await assertBooksBalance(t, app)
}

for (const strategy of strategies) {
  t.test(`model check on a hot user: changes, holds, captures, voids, duplicates (${strategy}, group commit on)`, async (t) => {
    const { app } = await build(t, { strategy })
    await modelCheck(t, app, 0x401d + strategies.indexOf(strategy))
  })
}

t.test('model check on a hot user with group commit off (advisory)', async (t) => {
  const { app } = await build(t, { env: { GROUP_COMMIT: 'off' } })
  await modelCheck(t, app, 0x401d + 10)
})

t.test('captures racing the expiry instant never both capture and release', async (t) => {
  const { app } = await build(t)
  const userId = await newUser(app, 1000)
  const created = await Promise.all(Array.from({ length: 100 }, async () => (await request(app, 'POST', '/api/holds', { userId, amount: 10, expiresInSeconds: 1 })).json() as Answer & { expiresAt: string }))
  t.match(created[0], { held: 10 })
  const expiresAt = Math.max(...created.map((hold) => Date.parse(hold.expiresAt)))
  // Start captures just before the earliest expiry and keep going past the last, next to withdrawals that only the
  // released money could cover.
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, Date.parse(created[0]!.expiresAt) - Date.now() - 60)))
  const answers = await Promise.all(created.map(async (hold, i) => {
    await new Promise((resolve) => setTimeout(resolve, i))
    const [capture, spend] = await Promise.all([
      request(app, 'POST', `/api/holds/${hold.holdId}/capture`, {}),
      request(app, 'PATCH', '/api/balance', { userId, amount: -10 }),
    ])
    return { holdId: hold.holdId!, capture: capture.statusCode, code: (capture.json() as Answer).code, spend: spend.statusCode }
  }))
  t.ok(Date.now() >= expiresAt - 200, 'the storm ran across the expiry instants')
  const rows = new Map((await sql<{ id: string, status: string }>(app, 'SELECT id, status FROM holds WHERE user_id = $1', [userId])).map((row) => [Number(row.id), row.status]))
  const problems = answers.filter((a) => !((a.capture === 200 && rows.get(a.holdId) === 'captured') ||
    (a.capture === 409 && a.code === 'HOLD_EXPIRED' && rows.get(a.holdId) !== 'captured')))
  t.same(problems, [], 'each hold was captured (and stayed captured) or expired (and was never captured)')
  const captured = answers.filter((a) => a.capture === 200).length
  const spent = answers.filter((a) => a.spend === 200).length
  const [user] = await sql<{ balance: string, held: string }>(app, 'SELECT balance, held FROM users WHERE id = $1', [userId])
  t.equal(Number(user?.balance), 1000 - 10 * captured - 10 * spent, 'balance = opening − captured − spent')
  t.ok(10 * spent <= 1000 - 10 * captured, 'withdrawals only ever used money no capture took')
  t.comment(`${captured} captured before their expiry, ${100 - captured} expired; ${spent} withdrawals of 10 served`)
  await assertBooksBalance(t, app)
})

t.test('pg_terminate_backend during hold batches: only 200/201/409/503, and keyed retries converge to exactly once', async (t) => {
  const { app, db } = await build(t)
  const base = await listen(app)
  const admin = await connect(db.url)
  t.teardown(async () => { await admin.end() })
  const userId = await newUser(app, 100_000)
  // Every attempt's status, of the retried requests and of the single ones.
  const seen = new Set<number>()
  const onAttempt = (attempt: { status: number | undefined }): void => { if (attempt.status !== undefined) seen.add(attempt.status) }
  const client = new BalanceClient({ baseUrl: base, onAttempt, retry: { maxAttempts: 40, maxElapsedMs: 120_000, baseDelayMs: 20, maxDelayMs: 500 } })
  const raw = new BalanceClient({ baseUrl: base, onAttempt, retry: { maxAttempts: 1 } })
  const killer = backendKiller(admin, 40, 80)
  const outcome = async (work: Promise<{ status: number }>): Promise<number | string> => {
    try {
      return (await work).status
    } catch (error) {
      if (error instanceof BalanceApiError) return error.status
      if (error instanceof BalanceClientError) return (error as { code?: string }).code ?? 'client error'
      throw error
    }
  }
  // Holds, then a capture or void of each, every one keyed and retried with its key until answered.
  const finals = await Promise.all(Array.from({ length: 400 }, async (_, i) => {
    const created = await outcome(client.createHold({ userId, amount: 5, expiresInSeconds: 3600 }, { idempotencyKey: `kill-hold-${i}` }))
    const again = await client.createHold({ userId, amount: 5, expiresInSeconds: 3600 }, { idempotencyKey: `kill-hold-${i}` }).catch(() => undefined)
    const holdId = again?.data.holdId
    const settled = holdId === undefined
      ? 'no hold'
      : await outcome(i % 2 === 0
        ? client.captureHold(holdId, { amount: 3 }, { idempotencyKey: `kill-settle-${i}` })
        : client.voidHold(holdId, { idempotencyKey: `kill-settle-${i}` }))
    // One unretried request next to it: its single answer must be one of the statuses a hold write can give.
    await outcome(raw.createHold({ userId, amount: 1 }))
    return { created, settled }
  }))
  const terminated = await killer.stop()
  t.ok(terminated > 0, `${terminated} backends terminated`)
  t.same([...seen].filter((status) => ![200, 201, 409, 503].includes(status)), [], `every attempt got 200/201/409/503 (${[...seen].sort().join(', ')})`)
  t.same(finals.filter((f) => f.created !== 201 || f.settled !== 200), [], 'every keyed hold and settlement was answered 201 / 200 in the end')
  const [counts] = await sql<{ keyed: string, holds: string, captures: string, voided: string }>(app, `
    SELECT (SELECT count(DISTINCT idempotency_key) FROM holds WHERE idempotency_key LIKE 'kill-hold-%') AS keyed,
           (SELECT count(*) FROM holds WHERE idempotency_key LIKE 'kill-hold-%') AS holds,
           (SELECT count(*) FROM journal_entries WHERE idempotency_key LIKE 'kill-settle-%') AS captures,
           (SELECT count(*) FROM holds WHERE idempotency_key LIKE 'kill-hold-%' AND status = 'voided') AS voided`)
  t.same({ keyed: Number(counts?.keyed), holds: Number(counts?.holds), captures: Number(counts?.captures), voided: Number(counts?.voided) },
    { keyed: 400, holds: 400, captures: 200, voided: 200 }, 'each key executed exactly once')
  await assertBooksBalance(t, app)
})
