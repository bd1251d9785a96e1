import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, sql, strategies } from '../helper.js'
import { prng } from '../support/model-check.js'
import { assertBooksBalance, journal, newUser, request, type JournalRow } from '../support/ledger.js'

/**
 * A model check of bulk and single requests together on a few hot users: at once, PATCHes (some keyed), bulk requests
 * (keyed, keyless and mixed, a keyed change sometimes sent both by a PATCH and inside a bulk request) and atomic bulk
 * requests (some keyed and sent twice). Then every answer is checked against the journal: an applied change names its
 * own entry (user, amount, balance after), a refusal a balance its user had that does not cover it, every key has one
 * answer however often and by whichever route it was sent, and executed once.
 */

type Json = Record<string, unknown>
interface Change { userId: number, amount: number, key?: string }
/** One change's answer: where it came from, its status and body. */
interface Seen { change: Change, status: number, body: Json, replayed: boolean }
interface AtomicSeen { changes: Change[], key?: string, status: number, text: string, results: Json[] }

async function bulk (app: FastifyInstance, body: unknown, key?: string): Promise<{ status: number, text: string, replayed: boolean }> {
  const res = await app.inject({ method: 'POST', url: '/api/balance/batch', payload: body as object, headers: { 'content-type': 'application/json', ...(key === undefined ? {} : { 'idempotency-key': key }) } })
  return { status: res.statusCode, text: res.body, replayed: res.headers['idempotent-replayed'] === 'true' }
}

async function storm (t: Test, app: FastifyInstance, seed: number): Promise<void> {
  const random = prng(seed)
  const opening = 2000
  const users = [await newUser(app, opening), await newUser(app, opening), await newUser(app, opening)]
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!
  const amount = (): number => random() < 0.45 ? 1 + Math.floor(random() * 40) : -(1 + Math.floor(random() * 60))
  const keyed: Change[] = Array.from({ length: 60 }, (_, i) => ({ userId: pick(users), amount: amount(), key: `m-${seed}-${i}` }))
  const fresh = (): Change => (random() < 0.3 ? pick(keyed) : { userId: pick(users), amount: amount() })

  const seen: Seen[] = []
  const atomics: AtomicSeen[] = []
  const sends: Array<() => Promise<void>> = []
  for (let i = 0; i < 400; i += 1) {
    const r = random()
    if (r < 0.5) {
      const change = fresh()
      sends.push(async () => {
        const res = await request(app, 'PATCH', '/api/balance', { userId: change.userId, amount: change.amount }, change.key)
        seen.push({ change, status: res.statusCode, body: res.json(), replayed: res.headers['idempotent-replayed'] === 'true' })
      })
    } else if (r < 0.85) {
      const changes = Array.from({ length: 2 + Math.floor(random() * 30) }, () => (random() < 0.5 ? { userId: pick(users), amount: amount() } : fresh()))
      sends.push(async () => {
        const res = await bulk(app, { changes: changes.map(({ key, ...change }) => ({ ...change, ...(key === undefined ? {} : { idempotencyKey: key }) })) })
        if (res.status !== 200) throw new Error(`bulk answered ${res.status}: ${res.text}`)
        ;(JSON.parse(res.text) as { results: Json[] }).results.forEach(({ status, replayed, ...body }, index) => {
          seen.push({ change: changes[index]!, status: status as number, body, replayed: replayed === true })
        })
      })
    } else {
      const changes = Array.from({ length: 2 + Math.floor(random() * 8) }, () => ({ userId: pick(users), amount: amount() }))
      const key = random() < 0.5 ? `atomic-${seed}-${i}` : undefined
      for (let copy = 0; copy < (key !== undefined && random() < 0.4 ? 2 : 1); copy += 1) {
        sends.push(async () => {
          const res = await bulk(app, { atomic: true, changes }, key)
          const body = JSON.parse(res.text) as { results?: Json[] }
          atomics.push({ changes, ...(key === undefined ? {} : { key }), status: res.status, text: res.text, results: body.results ?? [] })
        })
      }
    }
  }
  await Promise.all(sends.map(async (send) => { await send() }))

  const entries = new Map<number, JournalRow>()
  const had = new Map<number, Set<number>>()
  for (const userId of users) {
    const rows = (await journal(app, userId)).filter((entry) => entry.kind === 'change')
    let running = opening
    let chained = true
    for (const entry of rows) {
      running += entry.amount
      if (entry.balanceAfter !== running || running < 0) chained = false
      entries.set(entry.id, entry)
    }
    t.ok(chained, `user ${userId}: ${rows.length} entries chain in id order, never below 0`)
    had.set(userId, new Set([opening, ...rows.map((entry) => entry.balanceAfter)]))
  }

  const problems: string[] = []
  const applied = new Set<number>()
  const explain = (change: Change, status: number, body: Json, where: string): void => {
    if (status === 200) {
      const entry = entries.get(body.entryId as number)
      if (entry === undefined || entry.userId !== change.userId || entry.amount !== change.amount || entry.balanceAfter !== body.balance) {
        problems.push(`${where}: 200 ${JSON.stringify(body)} does not match its entry ${JSON.stringify(entry)}`)
      }
      applied.add(body.entryId as number)
    } else if (status === 409) {
      const balance = body.balance as number
      if (body.code !== 'INSUFFICIENT_FUNDS' || !(had.get(change.userId)?.has(balance) ?? false) || balance + change.amount >= 0) {
        problems.push(`${where}: 409 ${JSON.stringify(body)} for ${change.amount}: not a balance user ${change.userId} had, or one that covers it`)
      }
    } else {
      problems.push(`${where}: unexpected ${status} ${JSON.stringify(body)}`)
    }
  }
  for (const { change, status, body } of seen) explain(change, status, body, 'single or bulk change')

  // Atomic requests: all applied in one transaction, or (409) a refusal; a key's copies answer alike.
  const atomicByKey = new Map<string, Set<string>>()
  for (const atomic of atomics) {
    if (atomic.key !== undefined) atomicByKey.set(atomic.key, (atomicByKey.get(atomic.key) ?? new Set()).add(`${atomic.status} ${atomic.text}`))
    if (atomic.status === 409) {
      if (JSON.parse(atomic.text).code !== 'BULK_REFUSED') problems.push(`atomic: ${atomic.text}`)
      continue
    }
    if (atomic.status !== 200) {
      problems.push(`atomic: unexpected ${atomic.status} ${atomic.text}`)
      continue
    }
    const ids = atomic.results.map((result) => result.entryId as number)
    atomic.results.forEach((result, index) => {
      const change = atomic.changes[index]!
      const entry = entries.get(result.entryId as number)
      if (entry === undefined || entry.userId !== change.userId || entry.amount !== change.amount || entry.balanceAfter !== result.balance) {
        problems.push(`atomic: ${JSON.stringify(result)} does not match its entry ${JSON.stringify(entry)}`)
      }
      applied.add(result.entryId as number)
    })
    const [tx] = await sql<{ n: string }>(app, 'SELECT count(DISTINCT xmin::TEXT) AS n FROM journal_entries WHERE id = ANY ($1::BIGINT[])', [ids])
    if (tx?.n !== '1') problems.push(`atomic: entries ${ids.join(',')} written by ${tx?.n} transactions`)
  }
  t.same(problems, [], `every answer of ${seen.length} changes and ${atomics.length} atomic requests is explained by the journal`)
  t.equal(applied.size, entries.size, 'applied answers (each key counted once) = new journal entries')

  // Every key: one answer (the replay mark aside) by every route it was sent through, and one entry at most.
  const answersByKey = new Map<string, Set<string>>()
  for (const { change, status, body } of seen) {
    if (change.key !== undefined) answersByKey.set(change.key, (answersByKey.get(change.key) ?? new Set()).add(`${status} ${JSON.stringify(body)}`))
  }
  t.same([...answersByKey].filter(([, answers]) => answers.size !== 1), [], `each of ${answersByKey.size} change keys has one answer across PATCH and bulk`)
  t.same([...atomicByKey].filter(([, answers]) => answers.size !== 1), [], `each of ${atomicByKey.size} atomic keys has one answer`)
  const tagged = [...entries.values()].filter((entry) => entry.idempotencyKey?.startsWith('m-') === true)
  t.equal(new Set(tagged.map((entry) => entry.idempotencyKey)).size, tagged.length, 'no change key wrote two entries')
  const replays = seen.filter((s) => s.replayed && s.change.key !== undefined).length
  const sentKeyed = seen.filter((s) => s.change.key !== undefined).length
  t.equal(replays, sentKeyed - answersByKey.size, 'every repeated change key was a replay, and only those')
  await assertBooksBalance(t, app)
}


for (const strategy of strategies) {
  for (const groupCommit of ['on', 'off']) {
    t.test(`${strategy}, group commit ${groupCommit}: bulk and single requests on hot users, every answer explained`, async (t) => {
      const { app } = await build(t, { strategy, env: { GROUP_COMMIT: groupCommit } })
      await storm(t, app, 7 + strategy.length + (groupCommit === 'on' ? 0 : 100))
    })
  }
}
