import t from 'tap'
import { migrate, migrators } from '../../src/plugins/migrations.js'
import { migrations } from '../../db/migrations/index.js'
import { books, build, sql } from '../helper.js'

t.test('every migration and seeder can be undone and re-applied', async (t) => {
  const { app } = await build(t)
  const runners = migrators(app.sequelize, app.log)
  t.same((await runners.migrations.executed()).map((m) => m.name), migrations.map((m) => m.name))

  await runners.seeders.down({ to: 0 })
  await runners.migrations.down({ to: 0 })
  const tables = await sql<{ n: string }>(app, "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('users', 'journal_entries')")
  t.equal(Number(tables[0]?.n), 0, 'tables dropped')
  const functions = await sql<{ n: string }>(app, "SELECT count(*) AS n FROM pg_proc WHERE proname LIKE 'balance_change_%'")
  t.equal(Number(functions[0]?.n), 0, 'functions dropped')

  await migrate(app.sequelize, app.log)
  t.same(await books(app, 1), { balance: 10000, journalSum: 10000, entries: 1 }, 'schema and seed back')
  const res = await app.inject({ method: 'PATCH', url: '/api/balance', payload: { userId: 1, amount: -1 } })
  t.equal(res.statusCode, 200)
})

t.test('the database refuses a negative balance even if code would write one', async (t) => {
  const { app } = await build(t)
  await t.rejects(sql(app, 'UPDATE users SET balance = -1 WHERE id = 1'), /users_balance_non_negative/)
  await t.rejects(sql(app, 'UPDATE users SET balance = 9007199254740992 WHERE id = 1'), /users_balance_max/)
  await t.rejects(sql(app, "INSERT INTO journal_entries (user_id, amount, balance_after, kind) VALUES (1, 0, 1, 'change')"), /journal_amount_non_zero/)
  t.same(await books(app, 1), { balance: 10000, journalSum: 10000, entries: 1 })
})
