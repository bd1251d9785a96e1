import pg from 'pg'
import type { NoticeMessage } from 'pg-protocol/dist/messages.js'

/**
 * pg with a Client that listens for 'error' from the moment it exists.
 *
 * Sequelize attaches its own 'error' listener (which marks the connection invalid and drops it from the pool) only
 * after connect() has resolved, one microtask later. A backend terminated right after it sent ReadyForQuery
 * (pg_terminate_backend, a PostgreSQL shutdown) can deliver ReadyForQuery and the FATAL error in one TCP chunk: pg
 * parses both synchronously, emits 'error' with no listener, and Node kills the whole service with an
 * uncaughtException. Found by test/system/faults.test.ts (pg_terminate_backend during load).
 *
 * The listener here does what Sequelize's own does first: `_invalid = true`, which its pool's validate() checks, so a
 * broken connection is destroyed instead of handed to the next request. The request that was using it gets its own
 * error (→ 503 DB_UNAVAILABLE) from pg as before.
 */
class GuardedClient extends pg.Client {
  constructor (config?: string | pg.ClientConfig) {
    super(config)
    this.on('error', () => { (this as unknown as { _invalid: boolean })._invalid = true })
    this.on('notice', (notice) => { failOnUnconfirmedCommit(this, notice) })
  }
}

/**
 * A commit whose wait for the synchronous standby was cancelled (pg_cancel_backend, a client's cancel request) has
 * committed locally but was not confirmed by a standby: PostgreSQL says so only with a WARNING notice
 * ("canceling wait for synchronous replication …, the transaction has already committed locally") and then reports
 * success. A failover now could lose it, so it must not be acknowledged: the query it came with fails with
 * CommitUnconfirmedError (→ 503 DB_UNAVAILABLE), and a retry with the same Idempotency-Key learns the real outcome.
 * Matched on the source location, which, unlike the message, is not translated (lc_messages).
 */
export class CommitUnconfirmedError extends Error {
  readonly code = 'COMMIT_UNCONFIRMED'
  constructor (readonly notice: NoticeMessage) {
    super(`commit not confirmed by the synchronous standby: ${notice.message ?? ''} ${notice.detail ?? ''}`.trim())
    this.name = 'CommitUnconfirmedError'
  }
}

export function isUnconfirmedCommitNotice (notice: NoticeMessage): boolean {
  return notice.routine === 'SyncRepWaitForLSN' || notice.file === 'syncrep.c'
}

interface ActiveQuery { _canceledDueToError?: unknown }

function failOnUnconfirmedCommit (client: pg.Client, notice: NoticeMessage): void {
  if (!isUnconfirmedCommitNotice(notice)) return
  // pg's own way to fail a query that is still receiving (it uses it for a row it cannot parse): the query
  // ends with this error at ReadyForQuery instead of its result.
  const query = (client as unknown as { _activeQuery?: ActiveQuery | null })._activeQuery
  if (query !== null && query !== undefined && query._canceledDueToError === false) query._canceledDueToError = new CommitUnconfirmedError(notice)
}

/** The pg module Sequelize is given (`dialectModule`): pg itself, with GuardedClient as its Client. */
export const guardedPg: typeof pg = Object.create(pg, { Client: { value: GuardedClient, enumerable: true } }) as typeof pg
