import type { Sequelize } from 'sequelize'
import type { StrategyName } from '../config.js'

/** Which lock a batch of changes to one user is taken under: the advisory lock, or the user's row (FOR UPDATE). */
export type BatchLock = 'advisory' | 'row'

/** A flat object of string values a client attaches to a write (bounded by the route schema), stored with it. */
export type Metadata = Record<string, string>

/** One balance change as the service asks for it: already validated (safe integers, amount ≠ 0, userId ≥ 1). */
export interface ChangeRequest {
  userId: number
  amount: number
  metadata?: Metadata
}

/** What a strategy reports. Refusals are values, not exceptions: they are ordinary business outcomes. */
export type ChangeOutcome =
  | { outcome: 'applied', balance: number, entryId: number, available?: number }
  | { outcome: 'insufficient_funds', balance: number, available?: number }
  | { outcome: 'balance_limit_exceeded', balance: number }
  | { outcome: 'user_not_found' }

/** One transfer as the service asks for it: already validated (amount > 0, two different users). */
export interface TransferRequest {
  fromUserId: number
  toUserId: number
  amount: number
  metadata?: Metadata
}

export interface TransferLeg {
  userId: number
  balance: number
  entryId: number
}

/** A refusal names the account that caused it: the sender (funds), the receiver (limit), or a missing user. */
export type TransferOutcome =
  | { outcome: 'applied', transferId: string, from: TransferLeg, to: TransferLeg }
  | { outcome: 'insufficient_funds', userId: number, balance: number, available?: number }
  | { outcome: 'balance_limit_exceeded', userId: number, balance: number }
  | { outcome: 'user_not_found', userId: number }

/**
 * A write on holds that needs only the holder's lock, so it can join that user's group-commit batch with changes.
 * `userId` is always the holder (for a capture or void, looked up from the hold before it is sent).
 */
export type HoldOperation =
  | { kind: 'hold', userId: number, amount: number, expiresInSeconds: number, metadata?: Metadata }
  | { kind: 'capture', userId: number, holdId: number, amount?: number, metadata?: Metadata }
  | { kind: 'void', userId: number, holdId: number }

/** A capture that pays another user: two users' locks, so never batched (like a transfer). */
export interface CaptureToRequest {
  holdId: number
  toUserId: number
  amount?: number
  metadata?: Metadata
}

export type HoldStatus = 'active' | 'captured' | 'voided' | 'expired'

/** A hold as the database showed it at the instant of the write or read (an active hold past expiresAt is 'expired'). */
export interface HoldView {
  holdId: number
  userId: number
  amount: number
  status: HoldStatus
  captured: number
  released: number
  expiresAt: Date
  createdAt: Date
  settledAt: Date | null
  toUserId: number | null
  metadata: Metadata | null
}

/** The holder's figures after a hold write (available = balance − held). */
export interface Funds {
  balance: number
  held: number
  available: number
}

export type HoldOutcome =
  | { outcome: 'applied', hold: HoldView, funds: Funds, entryId: number | null, payee?: TransferLeg }
  | { outcome: 'insufficient_funds', userId: number, balance: number, available: number }
  | { outcome: 'balance_limit_exceeded', userId: number, balance: number }
  | { outcome: 'user_not_found', userId: number }
  | { outcome: 'hold_not_found', holdId: number }
  | { outcome: 'hold_expired' | 'hold_not_active' | 'capture_exceeds_hold', hold: HoldView }

/**
 * The idempotency key a write runs under, as the SQL needs it (built by src/services/idempotency.ts).
 * `fingerprint` identifies the operation and its request; `purgeLimit` bounds the opportunistic purge of expired keys.
 */
export interface IdempotencyClaim {
  key: string
  fingerprint: string
  ttlSeconds: number
  purgeLimit: number
}

/**
 * A write under an optional key: executed now, replayed from the key's stored outcome (same request),
 * or refused because the key was first used for a different request.
 */
export type Keyed<T> =
  | { idempotency: 'executed' | 'replayed', outcome: T }
  | { idempotency: 'reused' }

/**
 * How a change is made safe under concurrency. Each strategy owns its SQL and nothing else: it knows no HTTP,
 * and takes the money bounds from src/domain/money.ts.
 */
export interface BalanceStrategy {
  readonly name: StrategyName
  /** How a batch of this strategy's changes to one user locks that user (src/strategies/batch.ts). */
  readonly batchLock: BatchLock
  /** The keyless hot path: one statement, nothing else (the bench drives the same SQL). */
  change: (request: ChangeRequest) => Promise<ChangeOutcome>
  /** The same change under an idempotency key: claim, change, store, in one transaction and one round trip. */
  changeKeyed: (request: ChangeRequest, claim: IdempotencyClaim) => Promise<Keyed<ChangeOutcome>>
  /** Both balance updates and both journal legs, or nothing; deadlock-free between opposite transfers. */
  transfer: (request: TransferRequest, claim?: IdempotencyClaim) => Promise<Keyed<TransferOutcome>>
  /** A new hold, a capture without a payee, or a void: under the holder's lock (batchLock), keyed or not. */
  holdOperation: (operation: HoldOperation, claim?: IdempotencyClaim) => Promise<Keyed<HoldOutcome>>
  /** A capture paying another user: both users locked in ascending id order, both journal legs, or nothing. */
  captureTo: (request: CaptureToRequest, claim?: IdempotencyClaim) => Promise<Keyed<HoldOutcome>>
  /**
   * True when calls for one user made one after another, without awaiting in between, are applied in call order
   * (group commit's FIFO lanes). Otherwise concurrent calls race for the user's lock, and a caller that needs an
   * order (a bulk request's changes to one user) must wait for each call before the next.
   */
  readonly keepsArrivalOrder?: boolean
  /** Strategies that batch (group commit) report each statement's batch size here. */
  observe?: (observer: BatchObserver) => void
}

/** Told about every statement group commit sends (a lone change is a batch of 1). Cheap; must not throw. */
export interface BatchObserver {
  batchFinished: (strategy: StrategyName, size: number) => void
}

export type StrategyFactory = (sequelize: Sequelize) => BalanceStrategy
