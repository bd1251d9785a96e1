import { toSafeInteger } from '../domain/money.js'
import type { FeedPosition } from './cursor.js'

/**
 * One event as consumers see it, in the HTTP feed and in the JetStream message body alike (docs/events.md).
 * Version 1. Optional fields are left out when they do not apply.
 */
export const EVENT_VERSION = 1

export interface BalanceEvent {
  /** The event id: the journal entry's id for a balance change; JetStream's Nats-Msg-Id. */
  eventId: number
  /** Per user, gap-free from 1 in journal order. */
  seq: number
  /**
   * The journal kind (opening, change, transfer-out, transfer-in, capture, capture-in); baseline (the balance when
   * events began); hold-created, hold-captured, hold-voided, hold-expired (amount 0: the capture's money moves in
   * its own capture event).
   */
  type: string
  userId: number
  /** Signed change of the balance. */
  amount: number
  balanceAfter: number
  /** The journal entry; null for a baseline. */
  entryId: number | null
  transferId?: string
  holdId?: number
  idempotencyKey?: string
  metadata?: unknown
  /** Hold events: the hold as this event left it. */
  hold?: HoldState
  createdAt: string
  version: number
}

export interface HoldState {
  amount: number
  captured: number
  status: 'active' | 'captured' | 'voided' | 'expired'
  expiresAt: string
  toUserId: number | null
}

/** An event row as the SQL of src/events/db.ts returns it. */
export interface EventRow {
  id: string
  xid: string
  user_id: string
  seq: string
  type: string
  entry_id: string | null
  amount: string
  balance_after: string
  transfer_id: string | null
  hold_id: string | null
  idempotency_key: string | null
  metadata: unknown
  hold: (Omit<HoldState, 'expiresAt'> & { expiresAt: string }) | null
  created_at: Date | string
}

export function toEvent (row: EventRow): BalanceEvent {
  return {
    eventId: toSafeInteger(row.id, 'event id'),
    seq: toSafeInteger(row.seq, 'event seq'),
    type: row.type,
    userId: toSafeInteger(row.user_id, 'user id'),
    amount: toSafeInteger(row.amount, 'amount'),
    balanceAfter: toSafeInteger(row.balance_after, 'balance after'),
    entryId: row.entry_id === null ? null : toSafeInteger(row.entry_id, 'entry id'),
    ...(row.transfer_id === null ? {} : { transferId: row.transfer_id }),
    ...(row.hold_id === null ? {} : { holdId: toSafeInteger(row.hold_id, 'hold id') }),
    ...(row.idempotency_key === null ? {} : { idempotencyKey: row.idempotency_key }),
    ...(row.metadata === null || row.metadata === undefined ? {} : { metadata: row.metadata }),
    ...(row.hold === null || row.hold === undefined ? {} : { hold: { ...row.hold, expiresAt: new Date(row.hold.expiresAt).toISOString() } }),
    createdAt: new Date(row.created_at).toISOString(),
    version: EVENT_VERSION,
  }
}

export function positionOf (row: EventRow): FeedPosition {
  return { xid: row.xid, id: toSafeInteger(row.id, 'event id') }
}
