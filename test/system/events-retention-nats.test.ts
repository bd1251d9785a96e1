import type { FastifyInstance } from 'fastify'
import { connect, nanos } from 'nats'
import t from 'tap'
import { build, sql } from '../helper.js'
import { newUser, request } from '../support/ledger.js'
import { NATS_SERVER, startNats } from '../support/nats.js'
import { haveSystemTools } from '../support/system-tool.js'
import { readStream, rebuildReport } from '../../src/events/consumer.js'

// Retention with a real publisher: the stream the service creates is bounded by the retention (max_age), and while
// NATS is down the pruner deletes only what is in the stream; once NATS is back and the rest is published, it goes too.

async function pending (app: FastifyInstance): Promise<number> {
  const [row] = await sql<{ n: string }>(app, 'SELECT count(*) AS n FROM events e, events_publisher p WHERE (e.xid, e.id) > (p.cursor_xid, p.cursor_id)')
  return Number(row?.n)
}

async function publishedAll (app: FastifyInstance, deadlineMs = 30_000): Promise<void> {
  const deadline = Date.now() + deadlineMs
  while (await pending(app) > 0) {
    if (Date.now() > deadline) throw new Error(`events still unpublished after ${deadlineMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

t.test('a publisher behind: only published events are pruned; the created stream has max_age = the retention', async (t) => {
  if (!haveSystemTools(t, [NATS_SERVER])) return
  const nats = await startNats(t)
  const { app, db } = await build(t, {
    env: {
      EVENTS_NATS_URL: nats.url, EVENTS_POLL_INTERVAL_MS: '20', EVENTS_RETRY_MAX_MS: '200', EVENTS_PUBLISH_TIMEOUT_MS: '500',
      EVENTS_RETENTION_HOURS: '1', EVENTS_PRUNE_INTERVAL_MS: '3600000',
    },
  })
  const users = [await newUser(app, 100), await newUser(app, 100)]
  for (const user of users) t.equal((await request(app, 'PATCH', '/api/balance', { userId: user, amount: -1 })).statusCode, 200)
  await publishedAll(app)
  const published = Number((await sql<{ n: string }>(app, 'SELECT count(*) AS n FROM events'))[0]?.n)
  t.equal(published, 5, 'the seeded opening, two openings, two changes: all in the stream')

  const nc = await connect({ servers: nats.url })
  const info = await (await nc.jetstreamManager()).streams.info('BALANCE_EVENTS')
  await nc.close()
  t.equal(info.config.max_age, nanos(3_600_000), 'max_age = EVENTS_RETENTION_HOURS')
  t.equal(info.config.duplicate_window, nanos(600_000), 'the duplicate window as configured (below max_age)')

  await nats.stop()
  for (const user of users) t.equal((await request(app, 'PATCH', '/api/balance', { userId: user, amount: -1 })).statusCode, 200, 'answered with NATS down')
  await sql(app, `UPDATE events SET created_at = now() - interval '2 hours'`)
  t.equal(await pending(app), 2, 'two events wait for NATS')
  t.same(await app.events.pruner!.pruneOnce(), { held: true, deleted: published }, 'every old event in the stream goes')
  t.same((await sql<{ seq: string }>(app, 'SELECT seq FROM events ORDER BY xid, id')).map((row) => Number(row.seq)), [3, 3], 'the unpublished ones stay, however old')

  await nats.start()
  await publishedAll(app)
  t.same(await app.events.pruner!.pruneOnce(), { held: true, deleted: 2 }, 'published now: they go too')
  const stream = await readStream([nats.url], 'BALANCE_EVENTS')
  t.equal(stream.messages, published + 2, 'the stream holds every event once')
  const report = await rebuildReport('stream', stream.events, db.url, { truncated: stream.truncated })
  t.match(report, { ok: true, checked: 3, problems: [], mismatches: [] }, 'and rebuilds every balance though the table is empty')
})
