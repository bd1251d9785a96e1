import type { Sequelize } from 'sequelize'
import type { StrategyName } from '../config.js'

/** Which lock a batch of changes to one user is taken under: the advisory lock, or the user's row (FOR UPDATE). */
export type BatchLock = 'advisory' | 'row'

/** One balance change as the service asks for it: already validated (safe integers, amount ≠ 0, userId ≥ 1). */
export interface ChangeRequest {
  userId: number
  amount: number
}

/** What a strategy reports. Refusals are values, not exceptions: they are ordinary business outcomes. */
export type ChangeOutcome =
  | { outcome: 'applied', balance: number, entryId: number }
  | { outcome: 'insufficient_funds', balance: number }
  | { outcome: 'balance_limit_exceeded', balance: number }
  | { outcome: 'user_not_found' }

/** One transfer as the service asks for it: already validated (amount > 0, two different users). */
export interface TransferRequest {
  fromUserId: number
  toUserId: number
  amount: number
}

export interface TransferLeg {
  userId: number
  balance: number
  entryId: number
}

/** A refusal names the account that caused it: the sender (funds), the receiver (limit), or a missing user. */
export type TransferOutcome =
  | { outcome: 'applied', transferId: string, from: TransferLeg, to: TransferLeg }
  | { outcome: 'insufficient_funds', userId: number, balance: number }
  | { outcome: 'balance_limit_exceeded', userId: number, balance: number }
  | { outcome: 'user_not_found', userId: number }

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
  /** Strategies that batch (group commit) report each statement's batch size here. */
  observe?: (observer: BatchObserver) => void
}

/** Told about every statement group commit sends (a lone change is a batch of 1). Cheap; must not throw. */
export interface BatchObserver {
  batchFinished: (strategy: StrategyName, size: number) => void
}

export type StrategyFactory = (sequelize: Sequelize) => BalanceStrategy
