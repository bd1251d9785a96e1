import { Type } from 'typebox'
import { UserId, badRequest, commonErrors, userNotFound } from './common.js'
import { UserParams } from './users.js'
import { MAX_FEED_CURSOR_LENGTH } from '../events/cursor.js'

/** Page size bounds of both feeds: a consumer's batch, small enough to bound one query's work. */
export const EVENTS_PAGE_MAX = 1000
export const EVENTS_PAGE_DEFAULT = 100

const Limit = Type.Optional(Type.Integer({ minimum: 1, maximum: EVENTS_PAGE_MAX, default: EVENTS_PAGE_DEFAULT, description: 'Events per page' }))

export const BalanceEventSchema = Type.Object({
  eventId: Type.Integer({ minimum: 1, description: 'Unique; for a balance change the journal entry id. The JetStream message id (Nats-Msg-Id)' }),
  seq: Type.Integer({ minimum: 1, description: 'Per user, gap-free from 1 in journal order: a gap means an event not yet read' }),
  type: Type.String({
    description: 'The journal kind (opening, change, transfer-out, transfer-in, capture, capture-in); baseline (the balance when events began); ' +
      'hold-created, hold-captured, hold-voided, hold-expired (amount 0: a capture moves the money in its own capture event)',
    examples: ['change'],
  }),
  userId: UserId,
  amount: Type.Integer({ description: 'Signed change of the balance', examples: [-2] }),
  balanceAfter: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'The balance after this event' }),
  entryId: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()], { description: 'The journal entry; null for a baseline' }),
  transferId: Type.Optional(Type.String({ format: 'uuid', description: 'Both legs of a transfer share it' })),
  holdId: Type.Optional(Type.Integer({ minimum: 1 })),
  idempotencyKey: Type.Optional(Type.String({ description: 'The Idempotency-Key the write came with' })),
  metadata: Type.Optional(Type.Unknown({ description: 'Metadata the write carried' })),
  hold: Type.Optional(Type.Object({
    amount: Type.Integer({ minimum: 1 }),
    captured: Type.Integer({ minimum: 0 }),
    status: Type.Union([Type.Literal('active'), Type.Literal('captured'), Type.Literal('voided'), Type.Literal('expired')]),
    expiresAt: Type.String({ format: 'date-time' }),
    toUserId: Type.Union([UserId, Type.Null()]),
  }, { additionalProperties: false, description: 'Hold events: the hold as this event left it' })),
  createdAt: Type.String({ format: 'date-time' }),
  version: Type.Integer({ minimum: 1, description: 'Version of this body (1)' }),
}, { description: 'A committed balance change', additionalProperties: false })

export const EventsQuery = Type.Object({
  after: Type.Optional(Type.String({
    minLength: 1,
    maxLength: MAX_FEED_CURSOR_LENGTH,
    description: 'Opaque cursor: the `nextCursor` of the previous page (absent: from the oldest event kept). Anything else is a 400 INVALID_CURSOR.',
  })),
  limit: Limit,
}, { additionalProperties: false })

export const EventsResponse = Type.Object({
  items: Type.Array(BalanceEventSchema, { maxItems: EVENTS_PAGE_MAX }),
  nextCursor: Type.String({ description: 'Pass as `after` for the next page; the same cursor when nothing new was there (poll again)' }),
}, { description: 'One page of the global feed, in transaction order' })

/** 410 of the global feed: the cursor is before the last pruned event (EVENTS_RETENTION_HOURS). */
export const FeedCursorExpiredResponse = Type.Object({
  statusCode: Type.Literal(410),
  code: Type.Literal('CURSOR_EXPIRED'),
  error: Type.String({ examples: ['Gone'] }),
  message: Type.String(),
  oldestCursor: Type.String({ description: 'The position of the last pruned event: the feed after it is complete. Read on with after=oldestCursor (the events in between are gone: rebuild affected users from GET /api/users/{id})' }),
}, {
  description: 'CURSOR_EXPIRED: events after this cursor were deleted by the retention (EVENTS_RETENTION_HOURS); reading on would skip them',
  examples: [{ statusCode: 410, code: 'CURSOR_EXPIRED', error: 'Gone', message: 'querystring/after is before the retained events: events after it were pruned…', oldestCursor: 'MTIzNDUuNjc4OQ' }],
})

/** 410 of a user's feed: `after` is below the last seq pruned of this user. */
export const UserCursorExpiredResponse = Type.Object({
  statusCode: Type.Literal(410),
  code: Type.Literal('CURSOR_EXPIRED'),
  error: Type.String({ examples: ['Gone'] }),
  message: Type.String(),
  userId: UserId,
  oldestSeq: Type.Integer({ minimum: 2, description: 'The user\'s first seq kept: seq oldestSeq − 1 and older were deleted; read on with after=oldestSeq − 1' }),
}, {
  description: 'CURSOR_EXPIRED: the user\'s events after `after` were deleted by the retention (EVENTS_RETENTION_HOURS)',
  examples: [{ statusCode: 410, code: 'CURSOR_EXPIRED', error: 'Gone', message: 'querystring/after is before user 7\'s retained events…', userId: 7, oldestSeq: 42 }],
})

export const eventsSchema = {
  summary: 'Every committed balance change, in order',
  description: 'The global event feed. A page holds only events of transactions older than the oldest one still running, ' +
    'so a cursor is never passed by an event that commits later: following `nextCursor` sees every event exactly once. ' +
    'A user\'s events appear in seq order. An empty page returns the same cursor. Events older than the retention ' +
    '(EVENTS_RETENTION_HOURS) are deleted: a cursor before the last deleted event is a 410 CURSOR_EXPIRED whose ' +
    'oldestCursor reads on from the oldest event kept (never a page that skips); without a cursor the read starts there.',
  tags: ['events'],
  querystring: EventsQuery,
  response: {
    200: EventsResponse,
    400: badRequest,
    410: FeedCursorExpiredResponse,
    ...commonErrors,
  },
}

export const UserEventsQuery = Type.Object({
  after: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'The last seq already read (0: from seq 1, a 410 once any was pruned; absent: from the first seq kept)' })),
  limit: Limit,
}, { additionalProperties: false })

export const UserEventsResponse = Type.Object({
  items: Type.Array(BalanceEventSchema, { maxItems: EVENTS_PAGE_MAX }),
  nextCursor: Type.Integer({ minimum: 0, description: 'The last seq of this page: pass as `after`; `after` again when nothing new was there' }),
}, { description: 'One page of a user\'s events, in seq order' })

export const userEventsSchema = {
  summary: 'A user\'s events, in seq order',
  description: 'seq > after, ascending, gap-free: a seq is visible only once every smaller seq of the user is. ' +
    'An `after` below the user\'s last deleted seq (EVENTS_RETENTION_HOURS) is a 410 CURSOR_EXPIRED with the first seq kept; ' +
    'without `after` the read starts at the first seq kept.',
  tags: ['events'],
  params: UserParams,
  querystring: UserEventsQuery,
  response: {
    200: UserEventsResponse,
    400: badRequest,
    404: userNotFound,
    410: UserCursorExpiredResponse,
    ...commonErrors,
  },
}
