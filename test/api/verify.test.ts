import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, sql, testConfig } from '../helper.js'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { newUser, request } from '../support/ledger.js'
import { checkBooks, formatReport } from '../../src/db/check-books.js'
import { VERIFY_ERROR, VERIFY_OK, VERIFY_VIOLATIONS, runningEmbeddedUrl, verifyBooks } from '../../src/verify-books.js'
import { freePort } from '../../src/db/embedded-postgres.js'

async function violated (app: FastifyInstance): Promise<string[]> {
  return (await checkBooks(app.sequelize)).violations.map((violation) => violation.check).sort()
}

/** Breaks the books with `corrupt`, expects exactly `checks` to fail, then repairs with `repair` and expects a pass. */
async function provesFailure (t: Test, app: FastifyInstance, name: string, checks: string[], corrupt: string, repair: string): Promise<void> {
  await sql(app, corrupt)
  t.same(await violated(app), checks, `${name}: caught by ${checks.join(', ')}`)
  await sql(app, repair)
  t.same(await violated(app), [], `${name}: passes again once repaired`)
}


t.test('the books checker', async (t) => {
  const { app, db } = await build(t)

  // Not a subtest: subtests run after this body, and this must run before the scenario below.
  const fresh = await checkBooks(app.sequelize)
  t.same(fresh, { ok: true, users: 1, entries: 1, transfers: 0, idempotencyKeys: 0, holds: 0, violations: [] }, 'passes on a fresh database')
  t.equal(formatReport(fresh), 'books: 1 users, 1 journal entries, 0 transfers, 0 holds, 0 idempotency keys\nOK: all 9 checks pass')

  // A scenario touching every kind of entry, then every way of breaking the books, each caught and repaired.
  const a = await newUser(app, 500)
  const b = await newUser(app, 0)
  const change = (await request(app, 'PATCH', '/api/balance', { userId: a, amount: -20 }, 'verify-change')).json()
  const transfer = (await request(app, 'POST', '/api/transfers', { fromUserId: a, toUserId: b, amount: 100 }, 'verify-transfer')).json()
  await request(app, 'PATCH', '/api/balance', { userId: a, amount: -1000 }, 'verify-refused')
  await request(app, 'POST', '/api/users', { balance: 7 }, 'verify-user')
  const [inLeg] = await sql<{ id: string }>(app, "SELECT id FROM journal_entries WHERE transfer_id = $1 AND kind = 'transfer-in'", [transfer.transferId])

  t.test('passes after the scenario', async (t) => {
    t.match(await checkBooks(app.sequelize), { ok: true, users: 4, entries: 6, transfers: 1, idempotencyKeys: 4, violations: [] })
  })

  t.test('fails on a balance that is not its journal sum', async (t) => {
    await sql(app, 'UPDATE users SET balance = balance + 1 WHERE id = $1', [a])
    const report = await checkBooks(app.sequelize)
    t.equal(report.ok, false)
    t.same(report.violations, [{
      check: 'balance-equals-journal',
      description: 'a user\'s balance differs from the sum of its journal amounts',
      count: 1,
      samples: [{ user_id: String(a), balance: '381', journal_sum: '380' }],
    }])
    t.match(formatReport(report), /VIOLATION balance-equals-journal: 1 × .*\n {2}\{"user_id":"\d+","balance":"381","journal_sum":"380"\}\nFAILED: 1 of 9 checks$/)
    await sql(app, 'UPDATE users SET balance = balance - 1 WHERE id = $1', [a])
    t.same(await violated(app), [])
  })

  t.test('fails on each other kind of corruption', async (t) => {
    await provesFailure(t, app, 'a broken running balance', ['running-balance'],
      `UPDATE journal_entries SET balance_after = balance_after + 1 WHERE id = ${change.entryId}`,
      `UPDATE journal_entries SET balance_after = balance_after - 1 WHERE id = ${change.entryId}`)
    await provesFailure(t, app, 'a transfer leg without its pair', ['transfer-pairs'],
      `UPDATE journal_entries SET transfer_id = gen_random_uuid() WHERE id = ${inLeg?.id}`,
      `UPDATE journal_entries SET transfer_id = '${transfer.transferId}' WHERE id = ${inLeg?.id}`)
    await provesFailure(t, app, 'a transfer leg of the wrong kind', ['transfer-kinds', 'transfer-pairs'],
      `UPDATE journal_entries SET kind = 'change' WHERE id = ${inLeg?.id}`,
      `UPDATE journal_entries SET kind = 'transfer-in' WHERE id = ${inLeg?.id}`)
    await provesFailure(t, app, 'an idempotent result pointing at a missing entry', ['idempotent-results'],
      `UPDATE idempotency_keys SET entry_ids = '{999999}', result = jsonb_set(result, '{entryId}', '999999') WHERE key = 'verify-change'`,
      `UPDATE idempotency_keys SET entry_ids = '{${change.entryId}}', result = jsonb_set(result, '{entryId}', '${change.entryId}') WHERE key = 'verify-change'`)
    await provesFailure(t, app, 'an entry that lost its key', ['idempotent-results'],
      `UPDATE journal_entries SET idempotency_key = NULL WHERE id = ${inLeg?.id}`,
      `UPDATE journal_entries SET idempotency_key = 'verify-transfer' WHERE id = ${inLeg?.id}`)
    await provesFailure(t, app, 'a refusal claiming entries', ['idempotent-results'],
      `UPDATE idempotency_keys SET entry_ids = '{${change.entryId}}' WHERE key = 'verify-refused'`,
      'UPDATE idempotency_keys SET entry_ids = \'{}\' WHERE key = \'verify-refused\'')
    await provesFailure(t, app, 'a key without a result', ['idempotent-results'],
      "INSERT INTO idempotency_keys (key, request_fingerprint, expires_at) VALUES ('half', 'x', now() + interval '1 hour')",
      "DELETE FROM idempotency_keys WHERE key = 'half'")
    await provesFailure(t, app, 'a negative balance (its CHECK constraints dropped first)', ['balance-equals-journal', 'balance-in-bounds', 'held-equals-active-holds'],
      `ALTER TABLE users DROP CONSTRAINT users_balance_non_negative, DROP CONSTRAINT users_held_within_balance; UPDATE users SET balance = -5 WHERE id = ${b}`,
      `UPDATE users SET balance = 100 WHERE id = ${b}; ALTER TABLE users ADD CONSTRAINT users_balance_non_negative CHECK (balance >= 0),
       ADD CONSTRAINT users_held_within_balance CHECK (held >= 0 AND held <= balance)`)
  })


  t.test('npm run verify: exit 0 on good books, 1 on a violation, 2 when it cannot check', async (t) => {
    const config = testConfig(db.url)
    const out: string[] = []
    const errors: string[] = []
    const print = (text: string): void => { out.push(text) }
    const printError = (text: string): void => { errors.push(text) }
    t.equal(await verifyBooks(config, print, printError), VERIFY_OK)
    t.match(out.pop(), /^books: 4 users, 6 journal entries, 1 transfers, 0 holds, 4 idempotency keys\nOK: all 9 checks pass$/)
    await sql(app, 'UPDATE users SET balance = balance + 1 WHERE id = $1', [a])
    t.equal(await verifyBooks(config, print, printError), VERIFY_VIOLATIONS)
    t.match(out.pop(), /VIOLATION balance-equals-journal: 1 ×[^]*FAILED: 1 of 9 checks$/)
    await sql(app, 'UPDATE users SET balance = balance - 1 WHERE id = $1', [a])
    const port = await freePort()
    t.equal(await verifyBooks(testConfig(`postgres://postgres@127.0.0.1:${port}/none`), print, printError), VERIFY_ERROR)
    t.match(errors.pop(), /^verify: could not check the books: .*ECONNREFUSED/)
    t.same(errors, [])
  })

  t.test('finds a running embedded cluster by its postmaster.pid, and ignores a stale or broken one', async (t) => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'balance-verify-'))
    t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
    t.equal(await runningEmbeddedUrl(dir), undefined, 'no pid file: not running')
    await writeFile(path.join(dir, 'postmaster.pid'), '123\n/data\n0\nnot-a-port\n')
    t.equal(await runningEmbeddedUrl(dir), undefined, 'unreadable port')
    await writeFile(path.join(dir, 'postmaster.pid'), `123\n/data\n0\n${await freePort()}\n`)
    t.equal(await runningEmbeddedUrl(dir), undefined, 'nothing listens there: a stale pid file')
  })
})

t.test('npm run verify on the embedded PGDATA_DIR: finds the running service\'s cluster, or starts one itself', async (t) => {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'balance-verify-pg-'))
  t.teardown(async () => { await rm(dataDir, { recursive: true, force: true }) })
  const config = loadConfig({ PGDATA_DIR: dataDir, LOG_LEVEL: 'silent' }, false)
  const out: string[] = []
  const print = (text: string): void => { out.push(text) }
  const app = await buildApp(config)
  try {
    t.match(await runningEmbeddedUrl(dataDir), /^postgres:\/\/postgres@127\.0\.0\.1:\d+\/balance$/, 'the service\'s cluster, by its pid file')
    t.equal(await verifyBooks(config, print), VERIFY_OK, 'while the service runs')
  } finally {
    await app.close()
  }
  t.equal(await runningEmbeddedUrl(dataDir), undefined, 'stopped with the service')
  t.equal(await verifyBooks(config, print), VERIFY_OK, 'after it stopped: verify starts the cluster itself')
  t.same(out, Array(2).fill('books: 1 users, 1 journal entries, 0 transfers, 0 holds, 0 idempotency keys\nOK: all 9 checks pass'))
})

t.test('the books checker on holds', async (t) => {
  const { app } = await build(t)
  const payer = await newUser(app, 100)
  const merchant = await newUser(app, 0)
  const open = (await request(app, 'POST', '/api/holds', { userId: payer, amount: 30 }, 'verify-hold')).json()
  const paid = (await request(app, 'POST', '/api/holds', { userId: payer, amount: 20 })).json()
  const capture = (await request(app, 'POST', `/api/holds/${paid.holdId}/capture`, { amount: 15, toUserId: merchant }, 'verify-capture')).json()
  t.match(await checkBooks(app.sequelize), { ok: true, holds: 2, violations: [] }, 'passes after holds and a capture to a payee')
  t.equal(capture.payee.balance, 15)

  await provesFailure(t, app, 'held that is not the sum of the active holds', ['held-equals-active-holds'],
    `UPDATE users SET held = held + 1 WHERE id = ${payer}`, `UPDATE users SET held = held - 1 WHERE id = ${payer}`)
  await provesFailure(t, app, 'an expiry bound after an active hold\'s expiry', ['holds-expiry-bound'],
    `UPDATE users SET holds_expire_at = holds_expire_at + interval '1 day' WHERE id = ${payer}`,
    `UPDATE users SET holds_expire_at = holds_expire_at - interval '1 day' WHERE id = ${payer}`)
  await provesFailure(t, app, 'a capture whose entry does not match what it captured', ['balance-equals-journal', 'hold-captures', 'running-balance'],
    `UPDATE journal_entries SET amount = amount - 1 WHERE id = ${capture.entryId}`,
    `UPDATE journal_entries SET amount = amount + 1 WHERE id = ${capture.entryId}`)
  await provesFailure(t, app, 'a capture without its payee leg', ['hold-captures'],
    `UPDATE journal_entries SET hold_id = ${open.holdId} WHERE id = ${capture.payee.entryId}`,
    `UPDATE journal_entries SET hold_id = ${paid.holdId} WHERE id = ${capture.payee.entryId}`)
  await provesFailure(t, app, 'a hold result pointing at entries', ['idempotent-results'],
    `UPDATE idempotency_keys SET entry_ids = '{${capture.entryId}}' WHERE key = 'verify-hold'`,
    "UPDATE idempotency_keys SET entry_ids = '{}' WHERE key = 'verify-hold'")
  await provesFailure(t, app, 'a capture result missing its payee entry', ['idempotent-results'],
    `UPDATE idempotency_keys SET entry_ids = '{${capture.entryId}}' WHERE key = 'verify-capture'`,
    `UPDATE idempotency_keys SET entry_ids = '{${capture.entryId},${capture.payee.entryId}}' WHERE key = 'verify-capture'`)
})
