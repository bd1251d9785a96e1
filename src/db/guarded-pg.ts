import pg from 'pg'

/**
 * pg with a Client that listens for 'error' from the moment it exists.
 *
 * Sequelize attaches its own 'error' listener (which marks the connection invalid and drops it from the pool) only
 * after connect() has resolved, one microtask later. A backend terminated right after it sent ReadyForQuery
 * (pg_terminate_backend, a PostgreSQL shutdown) can deliver ReadyForQuery and the FATAL error in one TCP chunk: pg
 * parses both synchronously, emits 'error' with no listener, and Node kills the whole service with an
 * uncaughtException. Found by test/faults.test.ts (pg_terminate_backend during load).
 *
 * The listener here does what Sequelize's own does first: `_invalid = true`, which its pool's validate() checks, so a
 * broken connection is destroyed instead of handed to the next request. The request that was using it gets its own
 * error (→ 503 DB_UNAVAILABLE) from pg as before.
 */
class GuardedClient extends pg.Client {
  constructor (config?: string | pg.ClientConfig) {
    super(config)
    this.on('error', () => { (this as unknown as { _invalid: boolean })._invalid = true })
  }
}

/** The pg module Sequelize is given (`dialectModule`): pg itself, with GuardedClient as its Client. */
export const guardedPg: typeof pg = Object.create(pg, { Client: { value: GuardedClient, enumerable: true } }) as typeof pg
