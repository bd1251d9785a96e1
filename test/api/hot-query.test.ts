import net from 'node:net'
import t from 'tap'
import { ConnectionError, ConnectionRefusedError, DatabaseError } from 'sequelize'
import { loadConfig } from '../../src/config.js'
import { hotQuery } from '../../src/db/hot-query.js'
import { createSequelize } from '../../src/plugins/database.js'
import { build } from '../helper.js'

t.test('hotQuery runs a named statement on the Sequelize pool and throws what sequelize.query() throws', async (t) => {
  const { app } = await build(t)
  const statement = { name: 'test_hot_query_add', text: 'SELECT $1::int + $2::int AS sum' }
  t.same(await hotQuery(app.sequelize, statement, [1, 2]), [{ sum: 3 }])
  t.same(await hotQuery(app.sequelize, statement, [40, 2]), [{ sum: 42 }], 'the prepared statement is reused')

  const error = await hotQuery(app.sequelize, { name: 'test_hot_query_div', text: 'SELECT 1 / $1::int AS x' }, [0]).catch((e: unknown) => e)
  t.type(error, DatabaseError, 'a Sequelize DatabaseError, as sequelize.query() would throw')
  t.equal((error as DatabaseError & { parent: { code: string } }).parent.code, '22012')
  t.same(await hotQuery(app.sequelize, statement, [2, 2]), [{ sum: 4 }], 'the connection went back to the pool')

  const unserialisable = { toPostgres: () => { throw new Error('cannot serialise') } }
  const clientSide = await hotQuery(app.sequelize, statement, [unserialisable, 1]).catch((e: unknown) => e)
  t.type(clientSide, DatabaseError, 'a client-side failure is formatted the same way')
  t.match((clientSide as DatabaseError).message, /cannot serialise/)
  t.same(await hotQuery(app.sequelize, statement, [3, 3]), [{ sum: 6 }], 'and the pool goes on (that connection was thrown away)')
})

t.test('a connection that cannot be opened in time is asked for again, a refused one is not', async (t) => {
  // A server that accepts TCP and never answers: the PostgreSQL handshake times out (DB_CONNECT_TIMEOUT_MS).
  let accepted = 0
  const silent = net.createServer((socket) => { accepted += 1; socket.on('error', () => {}) })
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { silent.close() })
  const port = (silent.address() as net.AddressInfo).port
  const config = loadConfig({ DB_CONNECT_TIMEOUT_MS: '100', DB_ACQUIRE_TIMEOUT_MS: '5000', LOG_LEVEL: 'silent' }, false)
  const timingOut = createSequelize(`postgres://postgres@127.0.0.1:${port}/none`, config, () => {})
  t.teardown(async () => { await timingOut.close() })
  const error = await hotQuery(timingOut, { name: 'x', text: 'SELECT 1' }, []).catch((e: unknown) => e)
  t.type(error, ConnectionError)
  t.equal(accepted, 3, 'three attempts, then the error')

  const closed = await new Promise<number>((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const free = (probe.address() as net.AddressInfo).port
      probe.close(() => { resolve(free) })
    })
  })
  const refusing = createSequelize(`postgres://postgres@127.0.0.1:${closed}/none`, config, () => {})
  t.teardown(async () => { await refusing.close() })
  t.type(await hotQuery(refusing, { name: 'x', text: 'SELECT 1' }, []).catch((e: unknown) => e), ConnectionRefusedError, 'refused: no retry')
})
