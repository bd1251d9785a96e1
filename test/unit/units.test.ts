import t from 'tap'
import { ConnectionRefusedError, ConnectionAcquireTimeoutError, DatabaseError, ValidationError } from 'sequelize'
import { assertBalanceInBounds, toSafeInteger, MAX_BALANCE } from '../../src/domain/money.js'
import { isDatabaseUnavailable } from '../../src/db/errors.js'
import { toChangeOutcome } from '../../src/strategies/outcome.js'

t.test('money invariants', async (t) => {
  t.equal(toSafeInteger('9007199254740991', 'balance'), MAX_BALANCE)
  t.throws(() => toSafeInteger('9007199254740992', 'balance'), /not a safe integer/)
  t.throws(() => toSafeInteger('1.5', 'balance'), /not a safe integer/)
  t.equal(assertBalanceInBounds(0), 0)
  t.throws(() => assertBalanceInBounds(-1), /outside/)
})

t.test('strategy outcome rows', async (t) => {
  t.same(toChangeOutcome({ outcome: 'applied', balance: '5', entry_id: '7' }), { outcome: 'applied', balance: 5, entryId: 7 })
  t.same(toChangeOutcome({ outcome: 'user_not_found', balance: null, entry_id: null }), { outcome: 'user_not_found' })
  t.throws(() => toChangeOutcome(undefined), /no outcome row/)
  t.throws(() => toChangeOutcome({ outcome: 'weird', balance: null, entry_id: null }), /unknown change outcome/)
  t.throws(() => toChangeOutcome({ outcome: 'applied', balance: null, entry_id: '1' }), /not a safe integer/)
})

t.test('which errors mean "the database is unavailable"', async (t) => {
  const pgError = (code: string): Error => Object.assign(new Error(`pg ${code}`), { code })
  const unavailable = [
    new ConnectionRefusedError(pgError('ECONNREFUSED')),
    new ConnectionAcquireTimeoutError(new Error('acquire')),
    new DatabaseError(Object.assign(pgError('57P01'), { sql: '', parameters: {} }) as never),
    new DatabaseError(Object.assign(pgError('57014'), { sql: '', parameters: {} }) as never),
    new DatabaseError(Object.assign(pgError('08006'), { sql: '', parameters: {} }) as never),
    pgError('ECONNRESET'),
    new Error('Connection terminated unexpectedly'),
  ]
  for (const error of unavailable) t.ok(isDatabaseUnavailable(error), error.message)
  const bugs = [
    new DatabaseError(Object.assign(pgError('42P01'), { sql: '', parameters: {} }) as never),
    new ValidationError('bad', []),
    new Error('something else'),
    'a string',
    null,
  ]
  for (const error of bugs) t.notOk(isDatabaseUnavailable(error), String(error))
})
