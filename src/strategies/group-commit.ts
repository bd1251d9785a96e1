import type { Sequelize } from 'sequelize'
import { MAX_BATCH_LIMIT } from '../config.js'
import { isDatabaseUnavailable } from '../db/errors.js'
import { runBatch, type BatchAnswer, type BatchItem } from './batch.js'
import type { BalanceStrategy, BatchObserver, ChangeOutcome, ChangeRequest, IdempotencyClaim, Keyed } from './types.js'

/**
 * Group commit per user, with no timer (issue 9; CONTRACT "Group commit").
 *
 * On one hot row every change that is its own transaction holds the user's lock through its own WAL flush, so the row
 * cannot go faster than one flush per change. Here, changes to a user that arrive while this instance already has a
 * statement in flight for that user wait, and go together as the next batch: one transaction, one round trip, one
 * flush (runBatch → balance_change_batch(), db/migrations/0006).
 * - A change for a user with nothing in flight goes at once, alone, through the strategy's own single statement:
 *   a lone request never waits for company. Under load the batch forms by itself while the previous one runs,
 *   the way PostgreSQL's own group commit forms for WAL.
 * - Arrival order is kept (a FIFO per user), batches are at most `maxBatch` changes, and the next batch starts as
 *   soon as the previous one has committed: nothing waits on a clock.
 * - Every answer is the one a one-at-a-time run in that order gives, and is given only after the transaction holding
 *   its change has committed. Nothing outlives its request: a batch exists only while its requests wait for it.
 * - A batch that fails because the database is unavailable answers each of its requests with that error (503; a
 *   retry with its key learns the outcome). Any other failure rolled the whole batch back: each change is then tried
 *   alone, in order, so one change that cannot be made cannot take its neighbours' answers with it.
 * Several instances on one database stay exact: their batches take the same per-user lock in the database.
 * Transfers are not batched: they go straight to the strategy and take the same locks in id order.
 */

interface Waiting {
  item: BatchItem
  resolve: (answer: BatchAnswer) => void
  reject: (error: unknown) => void
}

/** A user with a statement in flight from this instance, and what arrived meanwhile, in arrival order. */
interface Lane {
  waiting: Waiting[]
}

export type BatchRunner = (items: BatchItem[]) => Promise<BatchAnswer[]>

export class GroupCommit implements BalanceStrategy {
  readonly name: BalanceStrategy['name']
  readonly batchLock: BalanceStrategy['batchLock']
  private readonly lanes = new Map<number, Lane>()
  private observer: BatchObserver | undefined

  constructor (private readonly inner: BalanceStrategy, private readonly runBatch: BatchRunner, private readonly maxBatch: number) {
    if (!Number.isInteger(maxBatch) || maxBatch < 1 || maxBatch > MAX_BATCH_LIMIT) {
      throw new Error(`invariant: group commit batch cap ${maxBatch} outside 1..${MAX_BATCH_LIMIT}`)
    }
    this.name = inner.name
    this.batchLock = inner.batchLock
  }

  observe (observer: BatchObserver): void {
    this.observer = observer
  }

  async change (request: ChangeRequest): Promise<ChangeOutcome> {
    const answer = await this.submit({ request })
    if (answer.keyed) throw new Error('invariant: a keyless change got a keyed answer')
    return answer.outcome
  }

  async changeKeyed (request: ChangeRequest, claim: IdempotencyClaim): Promise<Keyed<ChangeOutcome>> {
    const answer = await this.submit({ request, claim })
    if (!answer.keyed) throw new Error('invariant: a keyed change got a keyless answer')
    return answer.result
  }

  async transfer (...args: Parameters<BalanceStrategy['transfer']>): ReturnType<BalanceStrategy['transfer']> {
    return await this.inner.transfer(...args)
  }

  private async submit (item: BatchItem): Promise<BatchAnswer> {
    const userId = item.request.userId
    const lane = this.lanes.get(userId)
    if (lane !== undefined) {
      return await new Promise<BatchAnswer>((resolve, reject) => { lane.waiting.push({ item, resolve, reject }) })
    }
    const own: Lane = { waiting: [] }
    this.lanes.set(userId, own)
    try {
      return await this.alone(item)
    } finally {
      this.next(userId, own)
    }
  }

  /** Starts the user's next batch from what arrived meanwhile, or frees the lane. */
  private next (userId: number, lane: Lane): void {
    if (lane.waiting.length === 0) {
      this.lanes.delete(userId)
      return
    }
    const batch = lane.waiting.splice(0, this.maxBatch)
    // runWaiting settles every request of the batch itself and never rejects.
    void this.runWaiting(batch).then(() => { this.next(userId, lane) })
  }

  private async runWaiting (batch: Waiting[]): Promise<void> {
    let answers: BatchAnswer[]
    try {
      answers = batch.length === 1 ? [await this.alone(batch[0]!.item)] : await this.batch(batch.map((waiting) => waiting.item))
    } catch (error) {
      if (batch.length === 1 || isDatabaseUnavailable(error)) {
        for (const waiting of batch) waiting.reject(error)
        return
      }
      for (const waiting of batch) {
        try {
          waiting.resolve(await this.alone(waiting.item))
        } catch (aloneError) {
          waiting.reject(aloneError)
        }
      }
      return
    }
    batch.forEach((waiting, index) => { waiting.resolve(answers[index]!) })
  }

  private async batch (items: BatchItem[]): Promise<BatchAnswer[]> {
    const answers = await this.runBatch(items)
    this.observer?.batchFinished(this.name, items.length)
    return answers
  }

  private async alone ({ request, claim }: BatchItem): Promise<BatchAnswer> {
    const answer: BatchAnswer = claim === undefined
      ? { keyed: false, outcome: await this.inner.change(request) }
      : { keyed: true, result: await this.inner.changeKeyed(request, claim) }
    this.observer?.batchFinished(this.name, 1)
    return answer
  }
}

/** The strategy the service uses with GROUP_COMMIT=on: `inner` for lone changes and transfers, batches otherwise. */
export function withGroupCommit (inner: BalanceStrategy, sequelize: Sequelize, maxBatch: number): GroupCommit {
  return new GroupCommit(inner, async (items) => await runBatch(sequelize, inner.batchLock, items), maxBatch)
}
