import fp from 'fastify-plugin'
import { Counter, Gauge } from 'prom-client'
import { EventFeed } from './feed.js'
import { EventPruner, ROWS_COUNT_CAP, type PrunerObserver } from './pruner.js'
import { EventPublisher, PENDING_COUNT_CAP, type PublisherObserver } from './publisher.js'
import { switchEventTriggers } from './switch.js'

declare module 'fastify' {
  interface FastifyInstance {
    events: { feed: EventFeed, publisher: EventPublisher | undefined, pruner: EventPruner | undefined }
  }
}

/**
 * Events: the triggers switched to EVENTS, the HTTP feed's reads, (with EVENTS_NATS_URL) the publisher to NATS
 * JetStream, and (with EVENTS=on) the pruner that keeps EVENTS_RETENTION_HOURS of them, both started once the app is
 * ready and stopped before the database closes. Each runs on its own connection and timer: no request ever waits
 * for them or for NATS.
 */
export default fp(async function events (fastify) {
  const { config, sequelize, balanceService } = fastify
  const switched = await switchEventTriggers(sequelize, config.EVENTS === 'on')
  if (switched.length > 0) fastify.log.warn({ events: config.EVENTS, triggers: switched }, 'event triggers switched (EVENTS changed for every instance on this database)')

  const feed = new EventFeed(sequelize, async (work) => await balanceService.runRead(work))
  const database = connectionOf(sequelize.config as unknown as Parameters<typeof connectionOf>[0])
  const publisher = config.EVENTS_NATS_URL === undefined
    ? undefined
    : new EventPublisher({
      servers: config.EVENTS_NATS_URL.split(','),
      stream: config.EVENTS_STREAM,
      subjectPrefix: config.EVENTS_SUBJECT_PREFIX,
      batchSize: config.EVENTS_PUBLISH_BATCH,
      pollIntervalMs: config.EVENTS_POLL_INTERVAL_MS,
      leaseTtlMs: config.EVENTS_LEASE_TTL_MS,
      publishTimeoutMs: config.EVENTS_PUBLISH_TIMEOUT_MS,
      retryMaxMs: config.EVENTS_RETRY_MAX_MS,
      duplicateWindowS: config.EVENTS_DUPLICATE_WINDOW_S,
      maxAgeHours: config.EVENTS_RETENTION_HOURS,
      statementTimeoutMs: config.DB_STATEMENT_TIMEOUT_MS,
      database,
    }, publisherMetrics(fastify.metrics?.registry), fastify.log)
  // EVENTS=off: nothing is written, so nothing is pruned either (the events kept stay as they are).
  const pruner = config.EVENTS === 'off'
    ? undefined
    : new EventPruner({
      retentionHours: config.EVENTS_RETENTION_HOURS,
      batchSize: config.EVENTS_PRUNE_BATCH,
      intervalMs: config.EVENTS_PRUNE_INTERVAL_MS,
      leaseTtlMs: config.EVENTS_LEASE_TTL_MS,
      statementTimeoutMs: config.DB_STATEMENT_TIMEOUT_MS,
      connectTimeoutMs: config.DB_CONNECT_TIMEOUT_MS,
      publisher: publisher !== undefined,
      database,
    }, prunerMetrics(fastify.metrics?.registry), fastify.log)
  fastify.decorate('events', { feed, publisher, pruner })
  if (pruner !== undefined) {
    fastify.addHook('onReady', async () => { pruner.start() })
    fastify.addHook('preClose', async () => { await pruner.stop() })
  }
  if (publisher === undefined) return
  fastify.addHook('onReady', async () => { publisher.start() })
  fastify.addHook('preClose', async () => { await publisher.stop() })
  fastify.log.info({ stream: config.EVENTS_STREAM, instance: publisher.instance }, 'events publisher started')
}, { name: 'events', dependencies: ['config', 'database', 'migrations', 'balance-service'] })

/** The pg settings of the service's own database (Sequelize keeps them parsed). */
function connectionOf (options: { host?: string | undefined, port?: string | number | undefined, username?: string | undefined, password?: unknown, database?: string | undefined }): { host?: string, port?: number, user?: string, password?: string, database?: string } {
  return {
    ...(options.host === undefined ? {} : { host: options.host }),
    ...(options.port === undefined ? {} : { port: Number(options.port) }),
    ...(options.username === undefined ? {} : { user: options.username }),
    ...(typeof options.password === 'string' ? { password: options.password } : {}),
    ...(options.database === undefined ? {} : { database: options.database }),
  }
}

/** Outbox size and lag (database-wide, from the shared cursor), events published and publish errors (this instance). */
function publisherMetrics (registry: import('prom-client').Registry | undefined): PublisherObserver {
  const registers = registry === undefined ? [] : [registry]
  const published = new Counter({ name: 'events_published_total', help: 'Events this instance published to JetStream (acknowledged)', registers })
  const errors = new Counter({
    name: 'events_publish_errors_total',
    help: 'Publisher rounds that failed, by stage (database or nats); the round is retried with a growing pause',
    labelNames: ['stage'] as const,
    registers,
  })
  const duplicates = new Counter({
    name: 'events_publish_duplicates_total',
    help: 'Events JetStream acknowledged as duplicates of a message already in the stream (dropped); 0 unless the cursor fell behind the stream or an event id was given again',
    registers,
  })
  const pending = new Gauge({ name: 'events_outbox_pending', help: `Events written but not yet in the stream (counted up to ${PENDING_COUNT_CAP})`, registers })
  const lag = new Gauge({ name: 'events_publish_lag_seconds', help: 'Age of the oldest event not yet in the stream (0 when caught up)', registers })
  return {
    published (count) { published.inc(count) },
    duplicate () { duplicates.inc() },
    failed (stage) { errors.inc({ stage }) },
    stats (count, seconds) { pending.set(count); lag.set(seconds) },
  }
}

/** Events pruned and prune failures (this instance), the table's size and its oldest event's age (database-wide). */
function prunerMetrics (registry: import('prom-client').Registry | undefined): PrunerObserver {
  const registers = registry === undefined ? [] : [registry]
  const pruned = new Counter({ name: 'events_pruned_total', help: 'Events this instance deleted past EVENTS_RETENTION_HOURS', registers })
  const errors = new Counter({ name: 'events_prune_errors_total', help: 'Prune rounds that failed (retried after EVENTS_PRUNE_INTERVAL_MS)', registers })
  const rows = new Gauge({ name: 'events_table_rows', help: `Events kept: PostgreSQL's live-row estimate (counted up to ${ROWS_COUNT_CAP} before the first ANALYZE)`, registers })
  const oldest = new Gauge({ name: 'events_oldest_age_seconds', help: 'Age of the oldest event kept (the first in feed order; 0 when there is none)', registers })
  return {
    pruned (count) { pruned.inc(count) },
    failed () { errors.inc() },
    stats (count, seconds) { rows.set(count); oldest.set(seconds) },
  }
}
