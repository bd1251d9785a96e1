import t from 'tap'
import { build, strategies } from '../helper.js'
import { assertBooksBalance, journal, newUser, request } from '../support/ledger.js'
import { encodeCursor } from '../../src/domain/cursor.js'

interface Item { id: number, amount: number, balanceAfter: number, createdAt: string, kind: string, transferId: string | null, idempotencyKey: string | null }
interface Page { items: Item[], nextCursor: string | null }

const b64 = (text: string): string => Buffer.from(text).toString('base64url')

for (const strategy of strategies) {
  t.test(`GET /api/users/:id/transactions (${strategy})`, async (t) => {
    const { app } = await build(t, { strategy })
    const page = async (userId: number, query = ''): Promise<Page> => {
      const res = await request(app, 'GET', `/api/users/${userId}/transactions${query}`)
      if (res.statusCode !== 200) throw new Error(`${res.statusCode}: ${res.body}`)
      return res.json()
    }

    t.test('every kind of entry, newest first, with transferId and idempotencyKey', async (t) => {
      const user = await newUser(app, 100)
      const other = await newUser(app, 0)
      await request(app, 'PATCH', '/api/balance', { userId: user, amount: -10 }, 'hist-1')
      const out = (await request(app, 'POST', '/api/transfers', { fromUserId: user, toUserId: other, amount: 30 })).json()
      const back = (await request(app, 'POST', '/api/transfers', { fromUserId: other, toUserId: user, amount: 5 }, 'hist-2')).json()
      const rows = await journal(app, user)
      const { items, nextCursor } = await page(user)
      t.equal(nextCursor, null, 'one page holds it all')
      t.same(items.map(({ createdAt: _createdAt, ...item }) => item), [
        { id: rows[3]?.id, amount: 5, balanceAfter: 65, kind: 'transfer-in', transferId: back.transferId, idempotencyKey: 'hist-2', holdId: null, metadata: null },
        { id: rows[2]?.id, amount: -30, balanceAfter: 60, kind: 'transfer-out', transferId: out.transferId, idempotencyKey: null, holdId: null, metadata: null },
        { id: rows[1]?.id, amount: -10, balanceAfter: 90, kind: 'change', transferId: null, idempotencyKey: 'hist-1', holdId: null, metadata: null },
        { id: rows[0]?.id, amount: 100, balanceAfter: 100, kind: 'opening', transferId: null, idempotencyKey: null, holdId: null, metadata: null },
      ])
      for (const item of items) t.match(item.createdAt, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/)
    })

    t.test('a user without entries: an empty page', async (t) => {
      const user = await newUser(app, 0)
      t.same(await page(user), { items: [], nextCursor: null })
    })

    t.test('pages of `limit`, nextCursor until the oldest entry, then null', async (t) => {
      const user = await newUser(app, 1000)
      for (let i = 1; i <= 6; i++) await request(app, 'PATCH', '/api/balance', { userId: user, amount: -i })
      const ids = (await journal(app, user)).map((row) => row.id).reverse()
      const first = await page(user, '?limit=3')
      t.same(first.items.map((item) => item.id), ids.slice(0, 3))
      t.equal(first.nextCursor, encodeCursor(ids[2] ?? 0), 'the cursor is opaque, but it is the last id shown')
      const second = await page(user, `?limit=3&before=${first.nextCursor}`)
      t.same(second.items.map((item) => item.id), ids.slice(3, 6))
      t.type(second.nextCursor, 'string', 'the 7th entry is still ahead')
      const third = await page(user, `?limit=3&before=${second.nextCursor}`)
      t.same(third.items.map((item) => item.id), ids.slice(6))
      t.equal(third.nextCursor, null)
      const exact = await page(user, '?limit=7')
      t.equal(exact.items.length, 7)
      t.equal(exact.nextCursor, null, 'a page that ends exactly at the oldest entry says so')
      t.same(await page(user, `?before=${encodeCursor(ids[6] ?? 0)}`), { items: [], nextCursor: null }, 'nothing before the oldest')
    })

    t.test('limit defaults to 50 and goes up to 500', async (t) => {
      const user = await newUser(app, 10_000)
      await Promise.all(Array.from({ length: 60 }, async () => await request(app, 'PATCH', '/api/balance', { userId: user, amount: -1 })))
      const byDefault = await page(user)
      t.equal(byDefault.items.length, 50)
      t.type(byDefault.nextCursor, 'string')
      const max = await page(user, '?limit=500')
      t.equal(max.items.length, 61)
      t.equal(max.nextCursor, null)
    })

    t.test('400 for a bad limit, a malformed cursor, unknown parameters or ids; 404 for an unknown user', async (t) => {
      const user = await newUser(app, 10)
      const cases: Array<[string, string, string]> = [
        ['limit 0', '?limit=0', 'FST_ERR_VALIDATION'],
        ['limit 501', '?limit=501', 'FST_ERR_VALIDATION'],
        ['limit not a number', '?limit=ten', 'FST_ERR_VALIDATION'],
        ['limit fractional', '?limit=2.5', 'FST_ERR_VALIDATION'],
        ['unknown parameter', '?after=Mw', 'FST_ERR_VALIDATION'],
        ['cursor too long', `?before=${'A'.repeat(23)}`, 'FST_ERR_VALIDATION'],
        ['cursor empty', '?before=', 'FST_ERR_VALIDATION'],
        ['cursor not base64url', '?before=%2F%2F%2B', 'INVALID_CURSOR'],
        ['cursor with padding', '?before=Mw%3D%3D', 'INVALID_CURSOR'],
        ['cursor of text', `?before=${b64('abc')}`, 'INVALID_CURSOR'],
        ['cursor of 0', `?before=${b64('0')}`, 'INVALID_CURSOR'],
        ['cursor with a leading zero', `?before=${b64('012')}`, 'INVALID_CURSOR'],
        ['cursor of a negative id', `?before=${b64('-5')}`, 'INVALID_CURSOR'],
        ['cursor above 2^53', `?before=${b64('9007199254740993')}`, 'INVALID_CURSOR'],
        ['cursor not canonical', '?before=Mx', 'INVALID_CURSOR'],
      ]
      for (const [name, query, code] of cases) {
        const res = await request(app, 'GET', `/api/users/${user}/transactions${query}`)
        t.equal(res.statusCode, 400, name)
        t.equal(res.json().code, code, name)
      }
      const invalid = await request(app, 'GET', `/api/users/${user}/transactions?before=${b64('abc')}`)
      t.same(invalid.json(), {
        statusCode: 400,
        code: 'INVALID_CURSOR',
        error: 'Bad Request',
        message: 'querystring/before is not a cursor from a previous page (use nextCursor as given)',
      })
      for (const id of ['0', 'abc', '-1']) {
        const res = await request(app, 'GET', `/api/users/${id}/transactions`)
        t.equal(res.statusCode, 400, `id ${id}`)
        t.equal(res.json().code, 'FST_ERR_VALIDATION')
      }
      const missing = await request(app, 'GET', '/api/users/999999/transactions')
      t.equal(missing.statusCode, 404)
      t.same(missing.json(), { statusCode: 404, code: 'USER_NOT_FOUND', error: 'Not Found', message: 'User 999999 does not exist' })
      const missingWithCursor = await request(app, 'GET', `/api/users/999999/transactions?before=${b64('5')}`)
      t.equal(missingWithCursor.statusCode, 404)
    })

    t.test('walking every page while writes go on sees every older entry exactly once', async (t) => {
      const user = await newUser(app, 1_000_000)
      const peer = await newUser(app, 1_000_000)
      await Promise.all(Array.from({ length: 120 }, async (_, i) => await request(app, 'PATCH', '/api/balance', { userId: user, amount: i % 2 === 0 ? -3 : 2 })))

      // Writers on the same user (changes, transfers both ways, some keyed) until the walk is over.
      let walking = true
      let started = 0
      let completed = 0
      const WRITES_MAX = 2000
      const writer = async (kind: number): Promise<void> => {
        while (walking && started < WRITES_MAX) {
          const n = started++
          if (kind === 0) await request(app, 'PATCH', '/api/balance', { userId: user, amount: n % 2 === 0 ? -1 : 1 })
          else if (kind === 1) await request(app, 'PATCH', '/api/balance', { userId: user, amount: 1 }, `walk-${n}`)
          else if (kind === 2) await request(app, 'POST', '/api/transfers', { fromUserId: user, toUserId: peer, amount: 2 })
          else await request(app, 'POST', '/api/transfers', { fromUserId: peer, toUserId: user, amount: 2 })
          completed++
        }
      }
      const writers = Promise.all([0, 1, 2, 3, 0, 2].map(writer))
      await new Promise((resolve) => setTimeout(resolve, 20)) // let the writers get going

      const seen: number[] = []
      const first = await page(user, '?limit=7')
      const completedAtStart = completed
      seen.push(...first.items.map((item) => item.id))
      let cursor = first.nextCursor
      while (cursor !== null) {
        const next = await page(user, `?limit=7&before=${cursor}`)
        seen.push(...next.items.map((item) => item.id))
        cursor = next.nextCursor
      }
      const writtenDuringWalk = completed - completedAtStart
      walking = false
      await writers
      t.ok(writtenDuringWalk > 0, `writes went on during the walk (${writtenDuringWalk})`)

      const top = seen[0] ?? 0
      const final = await journal(app, user)
      const expected = final.filter((row) => row.id <= top).map((row) => row.id).reverse()
      t.equal(new Set(seen).size, seen.length, 'no entry repeated')
      t.same(seen, expected, 'every entry at or below the first page\'s newest, exactly once, newest first')
      t.ok(final.length > expected.length, 'newer entries were written meanwhile (and belong to later walks)')

      // id order = commit order per user: each entry's balance_after is the previous one's plus its amount.
      let running = 0
      let broken = 0
      for (const row of final) {
        running += row.amount
        if (row.balanceAfter !== running) broken++
      }
      t.equal(broken, 0, 'balances chain in id order')
      await assertBooksBalance(t, app)
    })
  })
}
