import type { Migration } from '../types.js'
import { createUsersAndJournal } from './0001-create-users-and-journal.js'
import { advisoryChangeFunction } from './0002-advisory-change-function.js'
import { rowLockChangeFunction } from './0003-row-lock-change-function.js'
import { ledger } from './0004-ledger.js'
import { advisoryRefusalWithoutLock } from './0005-advisory-refusal-without-lock.js'
import { groupCommitBatch } from './0006-group-commit-batch.js'
import { atomicRefusalRechecked } from './0007-atomic-refusal-rechecked.js'
import { strategiesMixExactly } from './0008-strategies-mix-exactly.js'
import { idempotencyPurgeLast } from './0009-idempotency-purge-last.js'
import { holds } from './0010-holds.js'
import { eventsMigration } from './0011-events.js'
import { bulk } from './0012-bulk.js'
import { eventsRetention } from './0013-events-retention.js'
import { batchKeysByIndex } from './0014-batch-keys-by-index.js'

/** Every migration, in the order it runs. Add new ones at the end; never edit one that has shipped. */
export const migrations: Migration[] = [
  createUsersAndJournal,
  advisoryChangeFunction,
  rowLockChangeFunction,
  ledger,
  advisoryRefusalWithoutLock,
  groupCommitBatch,
  atomicRefusalRechecked,
  strategiesMixExactly,
  idempotencyPurgeLast,
  holds,
  eventsMigration,
  bulk,
  eventsRetention,
  batchKeysByIndex,
]
