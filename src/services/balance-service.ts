import type { Sequelize } from 'sequelize'
import {
  BalanceLimitExceededError, BulkRefusedError, DomainError, DatabaseUnavailableError, HoldLifetimeTooLongError, HoldNotFoundError, InsufficientFundsError, SameUserCaptureError,
  SameUserTransferError, UserNotFoundError, type UnavailableRequest,
} from '../domain/errors.js'
import { decodeCursor, encodeCursor } from '../domain/cursor.js'
import { isDatabaseUnavailable } from '../db/errors.js'
import { boundedQuery } from '../db/pooler.js'
import { balanceAt, createUser, historyPage, readUser, type JournalEntryView } from '../db/ledger.js'
import { holdOwner, holdsPage, readHold } from '../db/holds.js'
import { changeAtomically, changeEachAtOnce, type BulkOutcome } from '../db/bulk.js'
import type {
  BalanceStrategy, BatchObserver, ChangeOutcome, ChangeRequest, HoldOperation, HoldStatus, HoldView, IdempotencyClaim, Metadata,
  TransferOutcome, TransferRequest,
} from '../strategies/types.js'
import { metadataValues, type Answer, type Idempotency } from './idempotency.js'
import { HoldOwners, renderHold, type HoldAnswer } from './hold-answers.js'
import { Gate, SingleFlight, overloaded } from './admission.js'

export interface AppliedChange {
  userId: number
  balance: number
  amount: number
  entryId: number
  /** balance − held after the change; absent only in an answer replayed from a key stored before holds existed. */
  available?: number
}

export interface UserView {
  id: number
  balance: number
  held: number
  available: number
  createdAt: Date
  updatedAt: Date
}

export interface HoldPage {
  items: HoldView[]
  nextCursor: string | null
}

/** How long a hold lives when the request does not say, and the longest it may ask for (HOLD_* in src/config.ts). */
export interface HoldLimits {
  defaultExpiresInSeconds: number
  maxExpiresInSeconds: number
}

/** Holders remembered for routing captures and voids into the holder's lane without a read (src/services/hold-answers.ts). */
const HOLD_OWNERS_REMEMBERED = 100_000

export interface AppliedTransfer {
  transferId: string
  from: { userId: number, balance: number }
  to: { userId: number, balance: number }
}

export interface HistoryPage {
  items: JournalEntryView[]
  /** The cursor of the next (older) page; null when this page reaches the oldest entry. */
  nextCursor: string | null
}

function renderChange (request: ChangeRequest, result: ChangeOutcome): AppliedChange {
  switch (result.outcome) {
    case 'applied':
      return { userId: request.userId, balance: result.balance, amount: request.amount, entryId: result.entryId, ...(result.available === undefined ? {} : { available: result.available }) }
    case 'insufficient_funds':
      throw new InsufficientFundsError(request.userId, result.balance, request.amount, result.available)
    case 'balance_limit_exceeded':
      throw new BalanceLimitExceededError(request.userId, result.balance, request.amount)
    case 'user_not_found':
      throw new UserNotFoundError(request.userId)
  }
}

/** The domain error a refused change alone would have got (renderChange throws it). */
function refusalOf (request: ChangeRequest, outcome: ChangeOutcome): DomainError {
  try {
    renderChange(request, outcome)
  } catch (error) {
    if (error instanceof DomainError) return error
    throw error
  }
  throw new Error('invariant: an atomic bulk refusal names an applied change')
}

function renderBulk (changes: readonly ChangeRequest[], result: BulkOutcome): AppliedChange[] {
  if (result.outcome === 'refused') {
    const refused = changes[result.index]
    if (refused === undefined) throw new Error(`invariant: an atomic bulk refusal names item ${result.index} of ${changes.length}`)
    throw new BulkRefusedError(result.index, refusalOf(refused, result.refusal))
  }
  if (result.results.length !== changes.length) throw new Error(`invariant: an atomic bulk of ${changes.length} returned ${result.results.length} results`)
  return result.results.map((outcome, index) => renderChange(changes[index]!, outcome))
}

/** The fingerprint values of an atomic bulk request: every change in array order, each as its PATCH would be keyed. */
function bulkValues (changes: readonly ChangeRequest[]): string[] {
  return changes.map((change) => JSON.stringify([change.userId, change.amount, ...metadataValues(change.metadata)]))
}

/** One change of a bulk request: a PATCH body and, optionally, that PATCH's Idempotency-Key. */
export interface BulkChange extends ChangeRequest {
  idempotencyKey?: string
}

/** What one change of a bulk request got: the answer it would have got alone, or the error it would have thrown. */
export type ItemResult =
  | { ok: true, answer: Answer<AppliedChange> }
  | { ok: false, error: unknown }

function renderTransfer (request: TransferRequest, result: TransferOutcome): AppliedTransfer {
  switch (result.outcome) {
    case 'applied':
      return {
        transferId: result.transferId,
        from: { userId: result.from.userId, balance: result.from.balance },
        to: { userId: result.to.userId, balance: result.to.balance },
      }
    case 'insufficient_funds':
      // The sender's side of the transfer is a change of -amount: the message reads like a PATCH refusal.
      throw new InsufficientFundsError(result.userId, result.balance, -request.amount, result.available)
    case 'balance_limit_exceeded':
      throw new BalanceLimitExceededError(result.userId, result.balance, request.amount)
    case 'user_not_found':
      throw new UserNotFoundError(result.userId)
  }
}

function writeKind (key: string | undefined): UnavailableRequest {
  return key === undefined ? 'keyless-write' : 'keyed-write'
}

/** How a change ended: a strategy outcome, or the database was unavailable, or an unexpected error (a bug). */
export type ChangeResult = ChangeOutcome['outcome'] | 'db_unavailable' | 'overloaded' | 'error'

/** How a change that threw is counted: the database lost, a change shed unsent, or a bug. */
function failureOf (error: unknown): ChangeResult {
  if (error instanceof DatabaseUnavailableError) return 'db_unavailable'
  if (error instanceof DomainError && error.code === 'OVERLOADED') return 'overloaded'
  return 'error'
}

/**
 * Told about every change the service makes (metrics). Called on the hot path: must be cheap and must not throw.
 * `seconds` is the time of the strategy call alone (its transaction), not of the HTTP request.
 */
export interface BalanceObserver extends BatchObserver {
  changeFinished: (strategy: string, result: ChangeResult, seconds: number) => void
}

/**
 * What bounds the service's use of the pool: reads pass a gate of their own (below the pool's size, so writes always
 * have a connection left); a write is refused while the pool's wait queue already holds `maxPoolWaiting`.
 */
export interface ServiceAdmission {
  reads: Gate
  /** Requests now waiting for a pooled connection. */
  poolWaiting: () => number
  maxPoolWaiting: number
}

/**
 * The one interface routes use: change, transfer, create, read, health. It picks nothing itself: the strategy and
 * the idempotency settings are given. Refused outcomes become typed domain errors; a lost database becomes
 * DatabaseUnavailableError.
 */
export class BalanceService {
  constructor (
    private readonly sequelize: Sequelize,
    readonly strategy: BalanceStrategy,
    private readonly idempotency: Idempotency,
    private readonly admission: ServiceAdmission,
    private readonly holdLimits: HoldLimits = { defaultExpiresInSeconds: 3600, maxExpiresInSeconds: 604_800 },
  ) {}

  private readonly holdOwners = new HoldOwners(HOLD_OWNERS_REMEMBERED)

  /** Concurrent health checks share one `SELECT 1`: a flood of them holds one connection, never a queue. */
  private readonly health = new SingleFlight(async () => await this.pingDatabase())

  private observer: BalanceObserver | undefined

  /** Sets the one observer told about every change (none by default). */
  observe (observer: BalanceObserver): void {
    this.observer = observer
    this.strategy.observe?.(observer)
  }

  /**
   * The keyless hot path: exactly the strategy's one statement. It is write(), guard() and the observer in one async
   * frame on purpose: under a burst thousands of these wait at once for their batch, and every async frame a waiting
   * request keeps alive (a suspended function, its registers, its promise and two await closures) costs ≈ 0.5 KB.
   */
  async change (request: ChangeRequest): Promise<AppliedChange> {
    const observer = this.observer
    const started = observer === undefined ? 0 : performance.now()
    let result: ChangeOutcome
    try {
      if (this.admission.poolWaiting() >= this.admission.maxPoolWaiting) throw overloaded('the database pool queue is full')
      result = await this.strategy.change(request)
    } catch (error) {
      const failure = isDatabaseUnavailable(error) ? new DatabaseUnavailableError(error, 'keyless-write') : error
      observer?.changeFinished(this.strategy.name, failureOf(failure), (performance.now() - started) / 1000)
      throw failure
    }
    observer?.changeFinished(this.strategy.name, result.outcome, (performance.now() - started) / 1000)
    return renderChange(request, result)
  }

  /** A change under an Idempotency-Key: runs once; the same request again replays the first answer. */
  async changeOnce (request: ChangeRequest, key: string): Promise<Answer<AppliedChange>> {
    await this.guard(async () => { await this.idempotency.admit() }, 'keyed-write')
    // Returned, not awaited: this frame ends here instead of waiting with the change.
    return this.changeOnceAdmitted(request, key)
  }

  /**
   * Every change of a bulk request, each answered as if it were sent alone (a PATCH, keyed by its idempotencyKey),
   * in array order per user. Without any key: one transaction (changeEachKeyless). With keys, all are submitted at once: with group commit, a user's changes join that user's lane
   * in array order (they are submitted synchronously, one after another, and a lane is a FIFO), so they share its
   * batches; without it, a user's changes wait for each other (different users' still run at once). A key repeated in
   * the request waits for its first item and then replays it (or is a reuse), as two PATCHes one after the other
   * would. Only the key store's admission (503 OVERLOADED, nothing sent) refuses the request as a whole.
   */
  async changeEach (changes: readonly BulkChange[]): Promise<ItemResult[]> {
    if (changes.every((change) => change.idempotencyKey === undefined)) return await this.changeEachKeyless(changes)
    await this.guard(async () => { await this.idempotency.admit() }, 'keyed-write')
    const firstOfKey = new Map<string, Promise<ItemResult>>()
    const lastOfUser = new Map<number, Promise<ItemResult>>()
    const ordered = this.strategy.keepsArrivalOrder === true
    return await Promise.all(changes.map((change) => {
      const key = change.idempotencyKey
      const first = key === undefined ? undefined : firstOfKey.get(key)
      // A copy of a key changes nothing (it replays or is refused), so it needs no place in the user's order.
      if (first !== undefined) return first.then(async () => await this.changeItem(change))
      const previous = ordered ? undefined : lastOfUser.get(change.userId)
      const result = previous === undefined ? this.changeItem(change) : previous.then(async () => await this.changeItem(change))
      if (key !== undefined) firstOfKey.set(key, result)
      if (!ordered) lastOfUser.set(change.userId, result)
      return result
    }))
  }

  /**
   * Every change or none, in ONE transaction (db/migrations/0012): the users locked in ascending id order (as
   * transfers lock), each change checked in array order against its user's running available money. A refusal of
   * any is BulkRefusedError naming the first refused one; nothing is applied. `key` keys the request as a whole.
   */
  async changeAll (changes: readonly ChangeRequest[], key?: string): Promise<Answer<AppliedChange[]>> {
    if (key !== undefined) await this.guard(async () => { await this.idempotency.admit() }, 'keyed-write')
    const claim = key === undefined ? undefined : this.idempotency.claim(key, 'bulk', bulkValues(changes))
    const keyed = await this.write(() => changeAtomically(this.sequelize, this.strategy.batchLock, changes, claim), writeKind(key))
    return this.idempotency.settle(keyed, (outcome) => renderBulk(changes, outcome))
  }

  /**
   * A bulk request without keys: every change decided on its own, in array order per user, in ONE transaction
   * (db/migrations/0012) rather than one statement per user in the users' lanes: a request's changes mostly name users
   * with an empty lane, so through the lanes each went as its own statement (on 10,000 changes over 1,000 users they
   * gave about 2× single PATCHes, timed by a script that rounded to whole seconds; the bench's bulk scenario measures
   * this form). Exact with the lanes and every other writer all the same: it takes the
   * same locks in the same order in the database. Its commit is one outcome: a failure fails the request as a whole.
   */
  private async changeEachKeyless (changes: readonly ChangeRequest[]): Promise<ItemResult[]> {
    const started = performance.now()
    const outcomes = await this.write(() => changeEachAtOnce(this.sequelize, this.strategy.batchLock, changes), 'keyless-write')
    const seconds = (performance.now() - started) / 1000
    return outcomes.map((outcome, index) => {
      this.observer?.changeFinished(this.strategy.name, outcome.outcome, seconds)
      try {
        return { ok: true, answer: { value: renderChange(changes[index]!, outcome), replayed: false } }
      } catch (error) {
        return { ok: false, error }
      }
    })
  }

  /** One change of a bulk request; never rejects. Synchronous up to the strategy call, so submission order is kept. */
  private async changeItem ({ idempotencyKey, ...request }: BulkChange): Promise<ItemResult> {
    try {
      if (idempotencyKey === undefined) return { ok: true, answer: { value: await this.change(request), replayed: false } }
      return { ok: true, answer: await this.changeOnceAdmitted(request, idempotencyKey) }
    } catch (error) {
      return { ok: false, error }
    }
  }

  private async changeOnceAdmitted (request: ChangeRequest, key: string): Promise<Answer<AppliedChange>> {
    const claim = this.idempotency.claim(key, 'change', [request.userId, request.amount, ...metadataValues(request.metadata)])
    const keyed = await this.write(() => this.strategy.changeKeyed(request, claim), 'keyed-write')
    return this.idempotency.settle(keyed, (outcome) => renderChange(request, outcome))
  }

  async transfer (request: TransferRequest, key?: string): Promise<Answer<AppliedTransfer>> {
    // Refused before the database: bad input changes nothing and is never kept under a key.
    if (request.fromUserId === request.toUserId) throw new SameUserTransferError(request.fromUserId)
    if (key !== undefined) await this.guard(async () => { await this.idempotency.admit() }, 'keyed-write')
    const claim = key === undefined ? undefined : this.idempotency.claim(key, 'transfer', [request.fromUserId, request.toUserId, request.amount, ...metadataValues(request.metadata)])
    const keyed = await this.write(() => this.strategy.transfer(request, claim), writeKind(key))
    return this.idempotency.settle(keyed, (outcome) => renderTransfer(request, outcome))
  }

  async createUser (request: { balance: number }, key?: string): Promise<Answer<UserView>> {
    if (key !== undefined) await this.guard(async () => { await this.idempotency.admit() }, 'keyed-write')
    const claim = key === undefined ? undefined : this.idempotency.claim(key, 'create-user', [request.balance])
    const keyed = await this.write(() => createUser(this.sequelize, request.balance, claim), writeKind(key))
    return this.idempotency.settle(keyed, ({ id, balance, createdAt, updatedAt }) => ({ id, balance, held: 0, available: balance, createdAt, updatedAt }))
  }

  /**
   * Reserves `amount` of the user's available money until captured, voided or expired (the database's clock).
   * Joins the user's group-commit lane like a change. `expiresInSeconds` is bounded by HOLD_MAX_EXPIRES_IN_SECONDS.
   */
  async createHold (request: { userId: number, amount: number, expiresInSeconds?: number, metadata?: Metadata }, key?: string): Promise<Answer<HoldAnswer>> {
    const expiresInSeconds = request.expiresInSeconds ?? this.holdLimits.defaultExpiresInSeconds
    if (expiresInSeconds > this.holdLimits.maxExpiresInSeconds) throw new HoldLifetimeTooLongError(expiresInSeconds, this.holdLimits.maxExpiresInSeconds)
    const operation: HoldOperation = { kind: 'hold', userId: request.userId, amount: request.amount, expiresInSeconds, ...(request.metadata === undefined ? {} : { metadata: request.metadata }) }
    const answer = await this.holdWrite(operation, key, 'hold', [request.userId, request.amount, expiresInSeconds, ...metadataValues(request.metadata)])
    this.holdOwners.remember(answer.value.hold.holdId, request.userId)
    return answer
  }

  /** Captures all of a hold (or `amount` of it, releasing the rest), optionally paying `toUserId` in the same transaction. */
  async captureHold (holdId: number, request: { amount?: number, toUserId?: number, metadata?: Metadata }, key?: string): Promise<Answer<HoldAnswer>> {
    const owner = await this.ownerOf(holdId)
    const values = [holdId, request.amount ?? null, request.toUserId ?? null, ...metadataValues(request.metadata)]
    if (request.toUserId === undefined) {
      const operation: HoldOperation = { kind: 'capture', userId: owner, holdId, ...(request.amount === undefined ? {} : { amount: request.amount }), ...(request.metadata === undefined ? {} : { metadata: request.metadata }) }
      return await this.holdWrite(operation, key, 'capture', values)
    }
    if (request.toUserId === owner) throw new SameUserCaptureError(holdId, owner)
    const toUserId = request.toUserId
    const claim = await this.keyClaim(key, 'capture', values)
    const keyed = await this.write(() => this.strategy.captureTo({ holdId, toUserId, ...request }, claim), writeKind(key))
    return this.idempotency.settle(keyed, (outcome) => renderHold(outcome, { holdId, ...(request.amount === undefined ? {} : { amount: request.amount }) }))
  }

  /** Releases a whole hold: held falls by its amount, the balance stays. */
  async voidHold (holdId: number, key?: string): Promise<Answer<HoldAnswer>> {
    const owner = await this.ownerOf(holdId)
    return await this.holdWrite({ kind: 'void', userId: owner, holdId }, key, 'void', [holdId])
  }

  async getHold (holdId: number): Promise<HoldView> {
    const hold = await this.read(async () => await readHold(this.sequelize, holdId))
    if (hold === null) throw new HoldNotFoundError(holdId)
    return hold
  }

  /** One page of a user's holds, newest first, optionally of one status (as of the read's instant). */
  async userHolds (userId: number, page: { status?: HoldStatus, limit: number, before?: string }): Promise<HoldPage> {
    const beforeId = page.before === undefined ? undefined : decodeCursor(page.before)
    const rows = await this.read(async () => await holdsPage(this.sequelize, userId, page.status ?? 'any', beforeId, page.limit + 1))
    if (rows === null) throw new UserNotFoundError(userId)
    const items = rows.slice(0, page.limit)
    const last = items.at(-1)
    return { items, nextCursor: rows.length > page.limit && last !== undefined ? encodeCursor(last.holdId) : null }
  }

  /** The user's balance as of `at`, and the journal entry that set it (null: before the first). */
  async balanceAt (userId: number, at: Date): Promise<{ balance: number, entryId: number | null }> {
    const found = await this.read(async () => await balanceAt(this.sequelize, userId, at))
    if (found === null) throw new UserNotFoundError(userId)
    return found
  }

  private async holdWrite (operation: HoldOperation, key: string | undefined, name: 'hold' | 'capture' | 'void', values: Array<number | string | null>): Promise<Answer<HoldAnswer>> {
    const claim = await this.keyClaim(key, name, values)
    const keyed = await this.write(() => this.strategy.holdOperation(operation, claim), writeKind(key))
    const amount = operation.kind === 'void' ? undefined : operation.amount
    return this.idempotency.settle(keyed, (outcome) => renderHold(outcome, amount === undefined ? {} : { amount }))
  }

  private async keyClaim (key: string | undefined, name: 'hold' | 'capture' | 'void', values: Array<number | string | null>): Promise<IdempotencyClaim | undefined> {
    if (key === undefined) return undefined
    await this.guard(async () => { await this.idempotency.admit() }, 'keyed-write')
    return this.idempotency.claim(key, name, values)
  }

  /** The hold's holder (it never changes), remembered or read; HOLD_NOT_FOUND when there is no such hold. */
  private async ownerOf (holdId: number): Promise<number> {
    const remembered = this.holdOwners.get(holdId)
    if (remembered !== undefined) return remembered
    const owner = await this.read(async () => await holdOwner(this.sequelize, holdId))
    if (owner === null) throw new HoldNotFoundError(holdId)
    this.holdOwners.remember(holdId, owner)
    return owner
  }

  async getUser (id: number): Promise<UserView> {
    const user = await this.read(async () => await readUser(this.sequelize, id))
    if (user === null) throw new UserNotFoundError(id)
    return user
  }

  /** One page of a user's journal, newest first; `before` is a previous page's nextCursor. */
  async history (userId: number, page: { limit: number, before?: string }): Promise<HistoryPage> {
    const beforeId = page.before === undefined ? undefined : decodeCursor(page.before)
    // One row more than asked tells whether an older page exists, without a count.
    const rows = await this.read(async () => await historyPage(this.sequelize, userId, beforeId, page.limit + 1))
    if (rows === null) throw new UserNotFoundError(userId)
    const items = rows.slice(0, page.limit)
    const last = items.at(-1)
    return { items, nextCursor: rows.length > page.limit && last !== undefined ? encodeCursor(last.id) : null }
  }

  /**
   * Other read-only database work (the event feed), under the same read gate and error mapping as the service's own
   * reads, so it can never take the connections writes need.
   */
  async runRead<T> (work: () => Promise<T>): Promise<T> {
    return await this.read(work)
  }

  /** True when PostgreSQL answers a trivial query. */
  async isDatabaseUp (): Promise<boolean> {
    return await this.health.run()
  }

  private async pingDatabase (): Promise<boolean> {
    try {
      await boundedQuery(this.sequelize, 'SELECT 1', [])
      return true
    } catch (error) {
      if (isDatabaseUnavailable(error)) return false
      throw error
    }
  }

  /**
   * A write: refused at once, before anything is sent, while the pool's wait queue is full. Not async, and its callers
   * pass plain arrows: a keyed change waiting for its batch keeps one suspended frame (guard) below its caller's.
   */
  private write<T> (work: () => Promise<T>, request: UnavailableRequest): Promise<T> {
    if (this.admission.poolWaiting() >= this.admission.maxPoolWaiting) return Promise.reject(overloaded('the database pool queue is full'))
    return this.guard(work, request)
  }

  /** A read: through the read gate, so that reads can never hold every pooled connection. */
  private async read<T> (work: () => Promise<T>): Promise<T> {
    return await this.admission.reads.run(async () => await this.guard(work, 'read'))
  }

  /**
   * Runs database work; a connection-level failure becomes DatabaseUnavailableError (its message advises what is
   * true for `request`: the keyless change is the default), anything else stays a bug.
   */
  private async guard<T> (work: () => Promise<T>, request: UnavailableRequest = 'keyless-write'): Promise<T> {
    try {
      return await work()
    } catch (error) {
      if (isDatabaseUnavailable(error)) throw new DatabaseUnavailableError(error, request)
      throw error
    }
  }
}
