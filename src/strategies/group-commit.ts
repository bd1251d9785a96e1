import pg from 'pg'
import type { Sequelize } from 'sequelize'
import { MAX_BATCH_LIMIT } from '../config.js'
import { isDatabaseUnavailable } from '../db/errors.js'
import { OverloadedError } from '../domain/errors.js'
import { limits as httpLimits } from '../limits.js'
import { decodeBatchItem, executeBatch, isHoldOperation, type BatchAnswer, type BatchItem, type BatchRow } from './batch.js'
import type { BalanceStrategy, BatchObserver, ChangeOutcome, ChangeRequest, HoldOperation, HoldOutcome, IdempotencyClaim, Keyed } from './types.js'

/**
 * Group commit per user: nothing waits on a clock to form a batch.
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
 * - A change is sent again only when its transaction is known to have rolled back: PostgreSQL raised an error for the
 *   batch's statement (a SQLSTATE that is not a lost connection). Then each change is tried alone, in order, so one
 *   change that cannot be made cannot take its neighbours' answers with it. Any other failure of the statement (the
 *   database unavailable: 503, a retry with its key learns the outcome; an error of our own before or after sending)
 *   answers every request of the batch with that error and sends nothing again. Rows that came back are decoded one
 *   by one: a row that cannot be decoded (a bug) fails its own request only, and the batch, committed, is never re-run.
 *   The observer is told after the answers and can throw into nothing.
 * - Admission: at most maxWaitingPerUser changes wait in one user's lane and maxWaiting in all; each waits at most
 *   waitTimeoutMs. Past any of them the change is refused at once (OVERLOADED) and never applied; a change that
 *   was taken into a batch is never shed.
 * Several instances on one database stay exact: their batches take the same per-user lock in the database.
 * A user's lane carries every write that needs only that user's lock, in arrival order: changes, new holds,
 * captures without a payee and voids (ledger_batch, db/migrations/0010), so a storm of holds batches like a storm of
 * changes. Transfers and captures that pay another user are not batched: they go straight to the strategy and take
 * the same locks in id order.
 */

/** What bounds the lanes (GROUP_COMMIT_* in src/config.ts). */
export interface GroupCommitLimits {
  maxBatch: number
  maxWaitingPerUser: number
  maxWaiting: number
  waitTimeoutMs: number
}

/**
 * One change waiting for its batch. Kept small on purpose: under a burst thousands wait at once, so a waiting change
 * holds its item, its promise's two functions and a deadline, and no timer of its own (the lane has one).
 */
interface Waiting {
  item: BatchItem
  resolve: (answer: BatchAnswer) => void
  reject: (error: unknown) => void
  /** performance.now() past which it is refused unsent. Every change waits the same time, so a lane's deadlines rise. */
  deadline: number
}

/** A user with a statement in flight from this instance, and what arrived meanwhile, in arrival order. */
interface Lane {
  waiting: Waiting[]
  /** Fires at the head's deadline (or later): sheds the expired head of `waiting`, then waits for the next head. */
  timer: NodeJS.Timeout | undefined
}

/**
 * How a batch reaches the database, in two steps kept apart on purpose: `execute` sends the statement (when it
 * resolves, the batch has committed) and `decode` turns one committed row into its item's answer.
 */
export interface BatchRunner {
  execute: (items: BatchItem[]) => Promise<BatchRow[]>
  decode: (items: BatchItem[], rows: BatchRow[], index: number) => BatchAnswer
}

/**
 * True only when PostgreSQL itself raised an error for the statement, so its transaction rolled back: a pg error
 * with a SQLSTATE (kept by Sequelize as `parent`) that is not one of a lost or timed-out connection, where the
 * commit may have happened.
 */
export function rolledBack (error: unknown): boolean {
  const parent = typeof error === 'object' && error !== null ? (error as { parent?: unknown }).parent : undefined
  const pgError = error instanceof pg.DatabaseError ? error : parent instanceof pg.DatabaseError ? parent : undefined
  return pgError !== undefined && typeof pgError.code === 'string' && !isDatabaseUnavailable(error)
}

function keylessOutcome (answer: BatchAnswer): ChangeOutcome {
  if (answer.keyed !== false) throw new Error('invariant: a keyless change got a keyed answer')
  return answer.outcome
}

function keyedOutcome (answer: BatchAnswer): Keyed<ChangeOutcome> {
  if (answer.keyed !== true) throw new Error('invariant: a keyed change got another answer')
  return answer.result
}

function holdOutcome (answer: BatchAnswer): Keyed<HoldOutcome> {
  if (answer.keyed !== 'hold') throw new Error('invariant: a hold operation got a change answer')
  return answer.result
}

function overloaded (reason: string): OverloadedError {
  return new OverloadedError(reason, httpLimits.overloadRetryAfterSeconds)
}

export class GroupCommit implements BalanceStrategy {
  readonly name: BalanceStrategy['name']
  readonly batchLock: BalanceStrategy['batchLock']
  /** A lane is a FIFO: a call for a user joins its lane before the call returns, behind the calls made before it. */
  readonly keepsArrivalOrder = true
  private readonly lanes = new Map<number, Lane>()
  private waitingTotal = 0
  private observer: BatchObserver | undefined

  constructor (private readonly inner: BalanceStrategy, private readonly runner: BatchRunner, private readonly limits: GroupCommitLimits) {
    const { maxBatch } = limits
    if (!Number.isInteger(maxBatch) || maxBatch < 1 || maxBatch > MAX_BATCH_LIMIT) {
      throw new Error(`invariant: group commit batch cap ${maxBatch} outside 1..${MAX_BATCH_LIMIT}`)
    }
    this.name = inner.name
    this.batchLock = inner.batchLock
  }

  observe (observer: BatchObserver): void {
    this.observer = observer
  }

  /** Changes waiting for a batch now, over all users. */
  get waiting (): number {
    return this.waitingTotal
  }

  // Not async: each answer is checked by a module function on the batch's promise, so a waiting change keeps no
  // suspended frame here.
  change (request: ChangeRequest): Promise<ChangeOutcome> {
    return this.submit({ request }).then(keylessOutcome)
  }

  changeKeyed (request: ChangeRequest, claim: IdempotencyClaim): Promise<Keyed<ChangeOutcome>> {
    return this.submit({ request, claim }).then(keyedOutcome)
  }

  holdOperation (operation: HoldOperation, claim?: IdempotencyClaim): Promise<Keyed<HoldOutcome>> {
    return this.submit(claim === undefined ? { request: operation } : { request: operation, claim }).then(holdOutcome)
  }

  async transfer (...args: Parameters<BalanceStrategy['transfer']>): ReturnType<BalanceStrategy['transfer']> {
    return await this.inner.transfer(...args)
  }

  async captureTo (...args: Parameters<BalanceStrategy['captureTo']>): ReturnType<BalanceStrategy['captureTo']> {
    return await this.inner.captureTo(...args)
  }

  /** Not async, like wait(): a waiting change keeps no suspended frame of its own here. */
  private submit (item: BatchItem): Promise<BatchAnswer> {
    const lane = this.lanes.get(item.request.userId)
    return lane === undefined ? this.first(item) : this.wait(lane, item)
  }

  /** Nothing in flight for the user: the change goes at once, alone, and what arrives meanwhile forms the next batch. */
  private async first (item: BatchItem): Promise<BatchAnswer> {
    const userId = item.request.userId
    const own: Lane = { waiting: [], timer: undefined }
    this.lanes.set(userId, own)
    try {
      return await this.alone(item)
    } finally {
      this.next(userId, own)
    }
  }

  /** Queues the change for the lane's next batch, or refuses it at once when a queue is full. */
  private wait (lane: Lane, item: BatchItem): Promise<BatchAnswer> {
    if (lane.waiting.length >= this.limits.maxWaitingPerUser) return Promise.reject(overloaded('this user\'s group-commit queue is full'))
    if (this.waitingTotal >= this.limits.maxWaiting) return Promise.reject(overloaded('the group-commit queue is full'))
    return new Promise<BatchAnswer>((resolve, reject) => {
      lane.waiting.push({ item, resolve, reject, deadline: performance.now() + this.limits.waitTimeoutMs })
      this.waitingTotal += 1
      lane.timer ??= setTimeout(() => { this.shedExpired(lane) }, this.limits.waitTimeoutMs)
    })
  }

  /**
   * The lane's timer: every change whose deadline passed before it was taken into a batch is refused, and will never
   * be sent. Deadlines rise along the lane, so the expired ones are its head; the timer is set again for the new head.
   */
  private shedExpired (lane: Lane): void {
    lane.timer = undefined
    const now = performance.now()
    let expired = 0
    while (expired < lane.waiting.length && lane.waiting[expired]!.deadline <= now) expired += 1
    const shed = lane.waiting.splice(0, expired)
    this.waitingTotal -= shed.length
    for (const waiting of shed) waiting.reject(overloaded('the change waited for its batch past GROUP_COMMIT_WAIT_TIMEOUT_MS'))
    const head = lane.waiting[0]
    if (head !== undefined) lane.timer = setTimeout(() => { this.shedExpired(lane) }, Math.max(1, head.deadline - now))
  }

  /** Up to maxBatch changes from the head of the lane, in arrival order. */
  private take (lane: Lane): Waiting[] {
    const batch = lane.waiting.splice(0, this.limits.maxBatch)
    this.waitingTotal -= batch.length
    return batch
  }

  /** Starts the user's next batch from what arrived meanwhile, or frees the lane. */
  private next (userId: number, lane: Lane): void {
    const batch = this.take(lane)
    if (batch.length === 0) {
      clearTimeout(lane.timer)
      this.lanes.delete(userId)
      return
    }
    // runWaiting settles every request of the batch itself and never rejects.
    void this.runWaiting(batch).then(() => { this.next(userId, lane) })
  }

  private async runWaiting (batch: Waiting[]): Promise<void> {
    if (batch.length === 1) {
      await this.settleAlone(batch[0]!)
      return
    }
    const items = batch.map((waiting) => waiting.item)
    let rows: BatchRow[]
    try {
      rows = await this.runner.execute(items)
    } catch (error) {
      if (!rolledBack(error)) {
        for (const waiting of batch) waiting.reject(error)
        return
      }
      for (const waiting of batch) await this.settleAlone(waiting)
      return
    }
    // Committed: from here on every request is answered from these rows, and nothing is sent again.
    batch.forEach((waiting, index) => {
      try {
        waiting.resolve(this.runner.decode(items, rows, index))
      } catch (error) {
        waiting.reject(error)
      }
    })
    this.notify(items.length)
  }

  private async settleAlone (waiting: Waiting): Promise<void> {
    try {
      waiting.resolve(await this.alone(waiting.item))
    } catch (error) {
      waiting.reject(error)
    }
  }

  private async alone ({ request, claim }: BatchItem): Promise<BatchAnswer> {
    const answer: BatchAnswer = isHoldOperation(request)
      ? { keyed: 'hold', result: await this.inner.holdOperation(request, claim) }
      : claim === undefined
        ? { keyed: false, outcome: await this.inner.change(request) }
        : { keyed: true, result: await this.inner.changeKeyed(request, claim) }
    this.notify(1)
    return answer
  }

  /**
   * Metrics only, after the statement committed: an observer that throws must not turn a committed change into a
   * failure (nor, before, into a re-run), so its error is dropped here.
   */
  private notify (size: number): void {
    try {
      this.observer?.batchFinished(this.name, size)
    } catch {
      // Nothing to do: the answers are already decided by what committed.
    }
  }
}

/** The strategy the service uses with GROUP_COMMIT=on: `inner` for lone changes and transfers, batches otherwise. */
export function withGroupCommit (inner: BalanceStrategy, sequelize: Sequelize, limits: GroupCommitLimits): GroupCommit {
  return new GroupCommit(inner, {
    execute: async (items) => await executeBatch(sequelize, inner.batchLock, items),
    decode: decodeBatchItem,
  }, limits)
}
