import t from 'tap'
import { FEED_START, decodeFeedCursor, encodeFeedCursor, positionBefore } from '../../src/events/cursor.js'
import { parseArgs } from '../../src/events/consumer.js'
import { compareWithDatabase, diffWithDatabase, fingerprint, rebuildBalances } from '../../src/events/rebuild.js'
import { toEvent, type BalanceEvent, type EventRow } from '../../src/events/event.js'

t.test('feed cursors: round trip, strict on the way in', async (t) => {
  for (const position of [FEED_START, { xid: '18446744073709551615', id: Number.MAX_SAFE_INTEGER }, { xid: '734', id: 12 }]) {
    t.same(decodeFeedCursor(encodeFeedCursor(position)), position)
  }
  const b64 = (text: string): string => Buffer.from(text).toString('base64url')
  for (const bad of ['', '!!', b64('1'), b64('1.'), b64('.1'), b64('01.1'), b64('1.01'), b64('-1.1'), b64('18446744073709551616.1'), b64('1.9007199254740992'), `${b64('1.1')}=`, 'A'.repeat(51)]) {
    t.throws(() => decodeFeedCursor(bad), { code: 'INVALID_CURSOR', message: /querystring\/after/ }, `refused: ${bad}`)
  }
  t.ok(positionBefore({ xid: '9', id: 5 }, { xid: '10', id: 1 }), 'xid first, compared as numbers')
  t.ok(positionBefore({ xid: '10', id: 1 }, { xid: '10', id: 2 }), 'then id')
  t.notOk(positionBefore({ xid: '10', id: 2 }, { xid: '10', id: 2 }))
})

const event = (userId: number, seq: number, amount: number, balanceAfter: number, eventId = userId * 1000 + seq): BalanceEvent =>
  ({ eventId, seq, type: 'change', userId, amount, balanceAfter, entryId: eventId, createdAt: '2026-01-01T00:00:00.000Z', version: 1 })

t.test('rebuild: balances from events, every anomaly named', async (t) => {
  const good = rebuildBalances([event(1, 1, 10, 10), event(2, 1, 5, 5), event(1, 2, -3, 7)])
  t.same(good.problems, [])
  t.same([...good.users], [[1, { balance: 7, seq: 2 }], [2, { balance: 5, seq: 1 }]])
  const bad = rebuildBalances([event(1, 1, 10, 10), event(1, 1, 10, 10), event(1, 3, 1, 11), event(2, 1, 5, 6)])
  t.equal(bad.duplicates, 1)
  t.match(bad.problems, [/event 1001 seen twice/, /user 1: seq 3 where 2 was due/, /user 2 seq 1: balanceAfter 6, rebuilt 5/])

  const compared = compareWithDatabase(good, [{ id: 1, balance: 7, lastSeq: 2 }, { id: 2, balance: 5, lastSeq: 4 }, { id: 3, balance: 0, lastSeq: 0 }])
  t.same(compared, { checked: 2, behind: 1, pruned: 0, mismatches: [] }, 'a user the events have not caught up with is behind, not wrong')
  t.match(compareWithDatabase(good, [{ id: 1, balance: 8, lastSeq: 2 }]).mismatches, [/user 1: database 8, events 7/, /user 2: in the events, not in the database/])
  t.match(compareWithDatabase(good, [{ id: 1, balance: 7, lastSeq: 1 }, { id: 2, balance: 5, lastSeq: 1 }]).mismatches, [/user 1: the events reach seq 2, the database 1/])
})

t.test('rebuild on a pruned database: a user starts from its first event kept, up to its last pruned seq + 1', async (t) => {
  const pruned = new Map([[1, 4], [2, 2]])
  const upTo = (userId: number): number => pruned.get(userId) ?? 0
  // User 1: seq 1..4 pruned, 5 and 6 read. User 2: seq 1..2 pruned, 3 read. User 3: nothing pruned, starts at 2: a gap.
  const rebuilt = rebuildBalances([event(1, 5, -2, 40), event(2, 3, 1, 8), event(1, 6, 5, 45), event(3, 2, 1, 1)], upTo)
  t.equal(rebuilt.startedAfterPruning, 2)
  t.same([...rebuilt.users].slice(0, 2), [[1, { balance: 45, seq: 6 }], [2, { balance: 8, seq: 3 }]], 'from balanceAfter − amount of the first event kept')
  t.match(rebuilt.problems, [/user 3: seq 2 where 1 was due/], 'a user with nothing pruned must start at 1')
  t.match(rebuildBalances([event(1, 6, 5, 45)], upTo).problems, [/user 1: seq 6 where 1 was due/], 'past its last pruned seq + 1: a gap')
  t.same(rebuildBalances([event(1, 6, 5, 45)], () => Number.POSITIVE_INFINITY).problems, [], 'a truncated stream: any start')
  const compared = compareWithDatabase(rebuildBalances([event(1, 5, -2, 40)], upTo), [
    { id: 1, balance: 40, lastSeq: 5, prunedSeq: 4 }, { id: 2, balance: 7, lastSeq: 2, prunedSeq: 2 }, { id: 4, balance: 0, lastSeq: 0, prunedSeq: 0 },
  ])
  t.same(compared, { checked: 2, behind: 0, pruned: 1, mismatches: [] }, 'a user whose every event was pruned is counted apart')
})

t.test('a source against the database, event by event: what it holds that the database does not, what it lacks', async (t) => {
  const database = new Map([event(1, 1, 10, 10), event(1, 2, -3, 7), event(2, 1, 5, 5)].map((e) => [e.eventId, fingerprint(e)]))
  t.same(diffWithDatabase([event(1, 1, 10, 10), event(2, 1, 5, 5), event(1, 2, -3, 7), event(1, 2, -3, 7)], database), { notInDatabase: [], missing: 0 }, 'the same events, a redelivery aside')
  // An event published from a primary that then lost its commit: a new primary reuses the seq (and maybe the id) for another change.
  const lost = event(1, 2, -4, 6)
  t.same(diffWithDatabase([event(1, 1, 10, 10), lost, event(2, 1, 5, 5)], database), { notInDatabase: [1002], missing: 0 }, 'the same id with another amount is not the database\'s event')
  t.same(diffWithDatabase([event(1, 1, 10, 10), event(1, 3, 1, 8)], database), { notInDatabase: [1003], missing: 2 })
})

t.test('an event row becomes the documented body: optional fields left out', async (t) => {
  const row: EventRow = {
    id: '5', xid: '77', user_id: '2', seq: '3', type: 'hold-captured', entry_id: null, amount: '0', balance_after: '40',
    transfer_id: null, hold_id: '9', idempotency_key: null, metadata: { orderId: 'A-1' },
    hold: { amount: 30, captured: 20, status: 'captured', expiresAt: '2026-01-01T01:00:00+00:00', toUserId: 4 },
    created_at: new Date('2026-01-01T00:00:00Z'),
  }
  t.same(toEvent(row), {
    eventId: 5, seq: 3, type: 'hold-captured', userId: 2, amount: 0, balanceAfter: 40, entryId: null, holdId: 9,
    metadata: { orderId: 'A-1' }, hold: { amount: 30, captured: 20, status: 'captured', expiresAt: '2026-01-01T01:00:00.000Z', toUserId: 4 },
    createdAt: '2026-01-01T00:00:00.000Z', version: 1,
  })
})

t.test('npm run events: options', async (t) => {
  t.same(parseArgs(['--follow']), { mode: 'follow', feed: false })
  t.same(parseArgs(['--rebuild', '--feed']), { mode: 'rebuild', feed: true })
  t.throws(() => parseArgs([]), /give --follow or --rebuild/)
  t.throws(() => parseArgs(['--follow', '--rebuild']), /one of/)
  t.throws(() => parseArgs(['--tail']), /unknown option --tail/)
})
