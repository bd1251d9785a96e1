import type { FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import { assertBooksBalance, journal, newUser, request, type JournalRow } from './ledger.js'

/**
 * The model check of group commit, shared by test/system/group-commit.test.ts (one instance, through inject) and
 * test/system/pgbouncer-instances.test.ts (split over instances on one PgBouncer, through HTTP): a storm of concurrent
 * deposits and withdrawals (some too large to cover) on one hot user, a quarter keyed and some keys sent three times
 * at once, then every answer is checked against the journal.
 */

/** A small deterministic PRNG (mulberry32), so a failing storm can be replayed from its seed. */
export function prng (seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6D2B79F5) >>> 0
    let x = state
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

/** One answer as the check needs it: status, raw body (compared byte for byte between a key's answers), replay mark. */
export interface StormAnswer { status: number, text: string, replayed: boolean }

/** Sends the storm's `index`-th PATCH /api/balance; where it goes (which instance, which transport) is the caller's. */
export type StormSend = (index: number, body: { userId: number, amount: number }, key: string | undefined) => Promise<StormAnswer>

/** Through Fastify's inject, to one app. */
export function injectSend (app: FastifyInstance): StormSend {
  return async (_index, body, key) => {
    const response = await request(app, 'PATCH', '/api/balance', body, key)
    return { status: response.statusCode, text: response.body, replayed: response.headers['idempotent-replayed'] === 'true' }
  }
}

/** Runs the storm (`count` planned changes) and checks every answer; `app` reads the journal and runs the books check. */
export async function modelCheckStorm (t: Test, app: FastifyInstance, seed: number, count: number, send: StormSend = injectSend(app)): Promise<void> {
  const random = prng(seed)
  const opening = 3000
  const userId = await newUser(app, opening)
  const plan: Array<{ amount: number, key: string | undefined, copies: number }> = []
  for (let i = 0; i < count; i += 1) {
    const r = random()
    const amount = r < 0.45 ? 1 + Math.floor(random() * 40) : r < 0.95 ? -(1 + Math.floor(random() * 60)) : -(100_000 + i)
    const keyed = random() < 0.25
    plan.push({ amount, key: keyed ? `storm-${seed}-${i}` : undefined, copies: keyed && random() < 0.2 ? 3 : 1 })
  }
  const sends = plan.flatMap(({ amount, key, copies }) => Array.from({ length: copies }, () => ({ amount, key })))
  const sent = await Promise.all(sends.map(async ({ amount, key }, index) =>
    ({ amount, key, answer: await send(index, { userId, amount }, key) })))

  const entries = (await journal(app, userId)).filter((entry) => entry.kind === 'change')
  const byId = new Map<number, JournalRow>(entries.map((entry) => [entry.id, entry]))
  const balancesHad = new Set<number>([opening, ...entries.map((entry) => entry.balanceAfter)])

  // Entries chain in id order from the opening balance and never dip below 0.
  let running = opening
  let chained = true
  for (const entry of entries) {
    running += entry.amount
    if (entry.balanceAfter !== running || running < 0) chained = false
  }
  t.ok(chained, `${entries.length} journal entries chain from ${opening} in id order, never below 0`)

  const statuses: Record<number, number> = {}
  const problems: string[] = []
  const applied = new Set<number>()
  const answersByKey = new Map<string, string[]>()
  for (const { amount, key, answer } of sent) {
    statuses[answer.status] = (statuses[answer.status] ?? 0) + 1
    const body = JSON.parse(answer.text) as { balance: number, entryId: number, code?: string, amount: number }
    if (key !== undefined) {
      const answers = answersByKey.get(key) ?? []
      answers.push(`${answer.status} ${answer.text}`)
      answersByKey.set(key, answers)
    }
    if (answer.status === 200) {
      const entry = byId.get(body.entryId)
      if (entry === undefined || entry.amount !== amount || entry.balanceAfter !== body.balance || body.amount !== amount) {
        problems.push(`200 ${answer.text} does not match its journal entry ${JSON.stringify(entry)}`)
      }
      applied.add(body.entryId)
    } else if (answer.status === 409) {
      if (body.code !== 'INSUFFICIENT_FUNDS' || !balancesHad.has(body.balance) || body.balance + amount >= 0) {
        problems.push(`409 ${answer.text} for ${amount}: not a balance the user had, or one that covers the change`)
      }
    } else {
      problems.push(`unexpected ${answer.status} ${answer.text}`)
    }
  }
  t.same(problems, [], `every answer of ${sent.length} is explained by the journal (${JSON.stringify(statuses)})`)
  t.equal(applied.size, entries.length, 'applied answers (a replayed key counted once) = new journal entries')

  const keyProblems = [...answersByKey.entries()].filter(([, answers]) => new Set(answers).size !== 1)
  t.same(keyProblems, [], `each of ${answersByKey.size} keys has one answer, however often it was sent`)
  const keyedEntries = entries.filter((entry) => entry.idempotencyKey !== null)
  t.equal(new Set(keyedEntries.map((entry) => entry.idempotencyKey)).size, keyedEntries.length, 'no key wrote two entries')
  const replays = sent.filter(({ answer }) => answer.replayed).length
  const repeatedSends = plan.filter(({ key }) => key !== undefined).reduce((n, { copies }) => n + copies - 1, 0)
  t.equal(replays, repeatedSends, 'every repeated key was answered as a replay, and only those')
  await assertBooksBalance(t, app)
}

/** balance_batch_size's count and sum from /metrics (0, 0 when group commit sent nothing). */
export async function batchMetrics (app: FastifyInstance, strategy: string): Promise<{ count: number, sum: number, largest: number }> {
  const body = (await app.inject('/metrics')).body
  const read = (name: string): number => Number(new RegExp(`^${name}\\{strategy="${strategy}"\\} (\\d+)$`, 'm').exec(body)?.[1] ?? 0)
  // The largest bucket bound that still holds fewer than all batches tells the size of the largest one, roughly.
  const buckets = [...body.matchAll(new RegExp(`^balance_batch_size_bucket\\{le="(\\d+)",strategy="${strategy}"\\} (\\d+)$`, 'gm'))]
    .map((m) => ({ le: Number(m[1]), n: Number(m[2]) }))
  const count = read('balance_batch_size_count')
  const largest = buckets.find((bucket) => bucket.n === count)?.le ?? 0
  return { count, sum: read('balance_batch_size_sum'), largest }
}
