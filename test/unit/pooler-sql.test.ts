import t from 'tap'
import { inlineStatement, toLiteral } from '../../src/db/hot-query.js'
import { CommitUnconfirmedError, isUnconfirmedCommitNotice } from '../../src/db/guarded-pg.js'
import { isDatabaseUnavailable } from '../../src/db/errors.js'

// Behind PgBouncer the hot path sends its values inlined as literals (src/db/hot-query.ts): they must type exactly
// like pg's untyped parameters and never break out of their quotes. The end-to-end proof is test/pgbouncer*.test.ts.

t.test('literals', async (t) => {
  t.equal(toLiteral(null), 'NULL')
  t.equal(toLiteral(undefined), 'NULL')
  t.equal(toLiteral(-9007199254740991), '\'-9007199254740991\'')
  t.equal(toLiteral(12n), '\'12\'')
  t.equal(toLiteral(true), '\'true\'')
  t.equal(toLiteral(false), '\'false\'')
  t.equal(toLiteral('it\'s'), '\'it\'\'s\'')
  t.equal(toLiteral('back\\slash'), ' E\'back\\\\slash\'', 'pg.escapeLiteral: E\'\' when there is a backslash')
  t.equal(toLiteral([1, -2, null]), '\'{"1","-2",NULL}\'')
  t.equal(toLiteral([['a"b', 'c\\d']]), ' E\'{{"a\\\\"b","c\\\\\\\\d"}}\'')
  t.throws(() => toLiteral(Number.NaN), TypeError)
  t.throws(() => toLiteral({ a: 1 }), TypeError)
  t.throws(() => toLiteral([{ a: 1 }]), TypeError)
})

t.test('statements', async (t) => {
  t.equal(inlineStatement('SELECT f($1, $2, $10)', [1, 'x', 3, 4, 5, 6, 7, 8, 9, 10]), 'SELECT f(\'1\', \'x\', \'10\')')
  t.throws(() => inlineStatement('SELECT $2', [1]), RangeError)
})

t.test('an unconfirmed synchronous commit is recognised and is a 503', async (t) => {
  const notice = { routine: 'SyncRepWaitForLSN', file: 'syncrep.c', message: 'canceling wait for synchronous replication due to user request', detail: 'The transaction has already committed locally, but might not have been replicated to the standby.' }
  t.ok(isUnconfirmedCommitNotice(notice as never))
  t.notOk(isUnconfirmedCommitNotice({ routine: 'ExecSetVariableStmt', file: 'guc.c' } as never))
  t.ok(isDatabaseUnavailable(new CommitUnconfirmedError(notice as never)))
  t.ok(isDatabaseUnavailable(new Error('Query read timeout')))
  t.ok(isDatabaseUnavailable(Object.assign(new Error('cannot execute UPDATE in a read-only transaction'), { code: '25006' })))
})
