import t from 'tap'
import { DatabaseError, type Sequelize } from 'sequelize'
import { loadConfig } from '../../src/config.js'
import { isDatabaseUnavailable } from '../../src/db/errors.js'
import { createSequelize } from '../../src/plugins/database.js'

// Every way a database failure reaches the service must classify as "unavailable" (503 DB_UNAVAILABLE), in each of
// the shapes it arrives in: as node-postgres raises it, and as Sequelize's PostgreSQL dialect formats it (what
// sequelize.query() and hotQuery throw). No connection is opened: formatError is the dialect's own code.

interface DialectQuery { formatError: (error: unknown) => Error }
type QueryClass = new (connection: unknown, sequelize: Sequelize, options: Record<string, unknown>) => DialectQuery

const config = loadConfig({ LOG_LEVEL: 'silent' }, false)
const sequelize = createSequelize('postgres://postgres@127.0.0.1:1/none', config, () => {})
t.teardown(async () => { await sequelize.close() })
const Query = (sequelize as unknown as { dialect: { Query: QueryClass } }).dialect.Query

/** A node socket error as pg passes it on when the socket fails under a query: an Error with `code` and `errno`. */
function socketError (code: string): Error {
  return Object.assign(new Error(`read ${code}`), { code, errno: -1, syscall: 'read' })
}

function shapes (error: Error): Array<[string, unknown]> {
  const formatted = new Query({}, sequelize, {}).formatError(error)
  return [['as pg raises it', error], ['as Sequelize formats it', formatted]]
}

const SOCKET_FAILURES = [
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT',
  'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN', 'ENETRESET', 'EADDRNOTAVAIL',
  'ENOTFOUND', 'EAI_AGAIN',
]

t.test('every socket failure is "the database is unavailable", in every shape it arrives in', async (t) => {
  for (const code of SOCKET_FAILURES) {
    for (const [shape, error] of shapes(socketError(code))) {
      t.equal(isDatabaseUnavailable(error), true, `${code} ${shape}`)
    }
  }
  t.type(new Query({}, sequelize, {}).formatError(socketError('ENETUNREACH')), DatabaseError, 'the formatted shape is a Sequelize DatabaseError')
})

t.test('a request the database refused is not "unavailable" (it stays a 4xx or is a bug)', async (t) => {
  const refusals = [
    Object.assign(new Error('duplicate key'), { code: '23505' }),
    Object.assign(new Error('division by zero'), { code: '22012' }),
    Object.assign(new Error('relation does not exist'), { code: '42P01' }),
    Object.assign(new Error('invalid argument'), { code: 'EINVAL' }),
    new TypeError('x is not a function'),
  ]
  for (const refusal of refusals) {
    for (const [shape, error] of shapes(refusal)) {
      t.equal(isDatabaseUnavailable(error), false, `${refusal.message} ${shape}`)
    }
  }
})
