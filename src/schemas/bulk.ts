import { Type } from 'typebox'
import { ChangeBody, ChangeResponse } from './balance.js'
import { BalanceConflictResponse, IdempotencyHeaders, bodyErrors, commonErrors, errorRef } from './common.js'

/** One change of a bulk request: a PATCH /api/balance body, with that PATCH's Idempotency-Key as a field. */
export const BulkChangeItem = Type.Object({
  ...ChangeBody.properties,
  idempotencyKey: Type.Optional(Type.String({
    ...IdempotencyHeaders.properties['idempotency-key'],
    description: 'This change\'s Idempotency-Key, exactly as the header of a PATCH: the same key with the same change replays its first answer ' +
      '(also across PATCH and bulk requests, and within one request); only when `atomic` is false',
  })),
}, { additionalProperties: false, examples: [{ userId: 1, amount: -2, idempotencyKey: 'order-1234' }] })

function bulkBody (maxChanges: number) {
  return Type.Object({
    changes: Type.Array(BulkChangeItem, {
      minItems: 1,
      maxItems: maxChanges,
      description: `1 to ${maxChanges} changes (BULK_MAX_CHANGES), in the order they are applied per user; more: 413 BULK_TOO_MANY_CHANGES`,
    }),
    atomic: Type.Optional(Type.Boolean({
      default: false,
      description: 'false: each change answered on its own, as if sent alone. true: every change applied in one transaction, or none (409 BULK_REFUSED)',
    })),
  }, { additionalProperties: false, examples: [{ changes: [{ userId: 1, amount: -2 }, { userId: 2, amount: 2 }] }] })
}

/** The error body of one change, with its status: what that change alone would have got. */
const ItemError = Type.Object({
  status: Type.Integer({ description: 'The HTTP status the change alone would have got', examples: [409] }),
  statusCode: Type.Integer({ examples: [409] }),
  code: Type.String({ examples: ['INSUFFICIENT_FUNDS'] }),
  error: Type.String({ examples: ['Conflict'] }),
  message: Type.String({ examples: ['Insufficient funds: user 1 has 0, the change is -2'] }),
  userId: Type.Optional(BalanceConflictResponse.properties.userId),
  balance: Type.Optional(BalanceConflictResponse.properties.balance),
  available: Type.Optional(BalanceConflictResponse.properties.available),
  replayed: Type.Optional(Type.Literal(true)),
}, { description: 'The change was refused: 404 USER_NOT_FOUND, 409 INSUFFICIENT_FUNDS / BALANCE_LIMIT_EXCEEDED, 422 IDEMPOTENCY_KEY_REUSED, 503 OVERLOADED / DB_UNAVAILABLE; the body is that error\'s' })

const ItemApplied = Type.Object({
  status: Type.Literal(200, { description: 'The HTTP status the change alone would have got' }),
  ...ChangeResponse.properties,
  replayed: Type.Optional(Type.Literal(true, { description: 'Replayed from its idempotencyKey (a PATCH says so in Idempotent-Replayed: true); absent when run now' })),
}, { description: 'The change was applied: the body of PATCH /api/balance' })

export const BulkResponse = Type.Object({
  results: Type.Array(Type.Union([ItemApplied, ItemError]), { description: 'One per change, in the order sent' }),
}, {
  description: 'One result per change, in order: `status` is what the change alone would have got, the rest is its body. With `atomic: true` every status is 200',
  examples: [{ results: [{ status: 200, userId: 1, balance: 9998, amount: -2, entryId: 2, available: 9998 }, { status: 404, statusCode: 404, code: 'USER_NOT_FOUND', error: 'Not Found', message: 'User 99 does not exist' }] }],
})

const BulkRefusedResponse = Type.Object({
  statusCode: Type.Literal(409),
  code: Type.Literal('BULK_REFUSED'),
  error: Type.String({ examples: ['Conflict'] }),
  message: Type.String(),
  index: Type.Integer({ minimum: 0, description: 'The first refused change, 0-based' }),
  item: ItemError,
}, {
  description: 'BULK_REFUSED (with `atomic: true`): a change was refused, so nothing was applied; `index` is the first refused change and `item` what it alone ' +
    'would have got (`status` and body: USER_NOT_FOUND, INSUFFICIENT_FUNDS with the running balance and available it met, BALANCE_LIMIT_EXCEEDED)',
  examples: [{
    statusCode: 409, code: 'BULK_REFUSED', error: 'Conflict', message: 'Nothing was applied: change 1 was refused (INSUFFICIENT_FUNDS): Insufficient funds: user 1 has 0, the change is -2',
    index: 1, item: { status: 409, statusCode: 409, code: 'INSUFFICIENT_FUNDS', error: 'Conflict', message: 'Insufficient funds: user 1 has 0, the change is -2', userId: 1, balance: 0, available: 0 },
  }],
})

const BulkBadRequest = Type.Object({
  statusCode: Type.Literal(400),
  code: Type.String({ examples: ['FST_ERR_VALIDATION'] }),
  error: Type.String(),
  message: Type.String(),
  index: Type.Optional(Type.Integer({ minimum: 0, description: 'With BULK_ITEM_KEY_IN_ATOMIC: the first change that carries a key' })),
}, {
  description: 'FST_ERR_VALIDATION naming the change (`body/changes/3/amount must be …`), an empty list, malformed JSON; BULK_ITEM_KEY_IN_ATOMIC (with `index`): ' +
    'a change has an idempotencyKey in an atomic request; BULK_KEY_NEEDS_ATOMIC: an Idempotency-Key header without `atomic: true`',
  examples: [{ statusCode: 400, code: 'FST_ERR_VALIDATION', error: 'Bad Request', message: 'body/changes/3/amount must be integer' }],
})

function bulkTooLarge (maxChanges: number): ReturnType<typeof Type.Object> {
  return Type.Object({
    statusCode: Type.Literal(413),
    code: Type.String({ examples: ['BULK_TOO_MANY_CHANGES'] }),
    error: Type.String(),
    message: Type.String(),
    maxChanges: Type.Optional(Type.Integer({ description: 'With BULK_TOO_MANY_CHANGES: BULK_MAX_CHANGES' })),
  }, {
    description: `BULK_TOO_MANY_CHANGES (with \`maxChanges\`): more than ${maxChanges} changes; FST_ERR_CTP_BODY_TOO_LARGE: a body over ${maxChanges + 1} × 4 KiB`,
    examples: [{ statusCode: 413, code: 'BULK_TOO_MANY_CHANGES', error: 'Payload Too Large', message: `body/changes has ${maxChanges + 1} items; at most ${maxChanges} (BULK_MAX_CHANGES) per request`, maxChanges }],
  })
}

export function bulkChangeSchema (maxChanges: number) {
  return {
    summary: 'Change many balances',
    description: `Up to ${maxChanges} changes in one request. By default each is answered on its own, as if sent alone as PATCH /api/balance (per-change ` +
      '`idempotencyKey`; changes to one user apply in array order and share group-commit batches). With `atomic: true` all apply in one ' +
      'transaction or none do (one Idempotency-Key header for the whole request; per-change keys are 400 BULK_ITEM_KEY_IN_ATOMIC).',
    tags: ['balance'],
    headers: IdempotencyHeaders,
    body: bulkBody(maxChanges),
    response: {
      200: BulkResponse,
      400: BulkBadRequest,
      409: BulkRefusedResponse,
      413: bulkTooLarge(maxChanges),
      415: bodyErrors[415],
      422: errorRef,
      ...commonErrors,
    },
  }
}
