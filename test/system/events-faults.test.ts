import { spawn } from 'node:child_process'
import pg from 'pg'
import t from 'tap'
import { Instance } from '../../src/tooling/instance.js'
import { freePort } from '../../src/tooling/ports.js'
import { projectRoot } from '../../src/tooling/project-root.js'
import { createThrowawayDatabase } from '../../src/tooling/throwaway-database.js'
import { readStream, rebuildReport } from '../../src/events/consumer.js'
import { NATS_SERVER, startNats } from '../support/nats.js'
import { haveSystemTools } from '../support/system-tool.js'

// Faults during load, with two instances publishing by lease: SIGKILL of the publishing instance (the other takes
// over), nats-server stopped and started again, pg_terminate_backend on the publisher's connection. Afterwards the
// stream holds each event exactly once and rebuilds every balance; the instances answered only 200/409 throughout.

const loader = process.execArgv.filter((arg) => arg.includes('@tapjs/typescript') || arg === '--enable-source-maps')
const loaderEnv = Object.fromEntries(Object.entries(process.env).filter((entry): entry is [string, string] =>
  /^(TS_NODE_|TAP_CWD$|TAP_TSCONFIG$)/.test(entry[0]) && entry[1] !== undefined))
const USERS = 10
const LEASE_TTL_MS = 2000
async function runConsumer (args: string[], env: Record<string, string>): Promise<{ code: number | null, stdout: string }> {
  const child = spawn(process.execPath, [...loader, 'src/events/consumer.ts', ...args], { cwd: projectRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
  let stdout = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  const timer = setTimeout(() => { child.kill('SIGKILL') }, 60_000)
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  clearTimeout(timer)
  return { code, stdout }
}
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

t.test('events survive a publisher SIGKILL, a NATS restart and a terminated publisher connection, during load', async (t) => {
  if (!haveSystemTools(t, [NATS_SERVER])) return
  const nats = await startNats(t)
  const db = await createThrowawayDatabase('events-faults')
  t.teardown(db.drop)
  const admin = new pg.Client({ connectionString: db.url })
  const query = async <T extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<T[]> => (await admin.query<T>(text, values)).rows

  const env = {
    ...loaderEnv,
    DATABASE_URL: db.url,
    LOG_LEVEL: 'warn',
    DB_POOL_MAX: '6',
    EVENTS_NATS_URL: nats.url,
    EVENTS_LEASE_TTL_MS: String(LEASE_TTL_MS),
    EVENTS_POLL_INTERVAL_MS: '20',
    EVENTS_RETRY_MAX_MS: '500',
    EVENTS_PUBLISH_TIMEOUT_MS: '500',
  }
  const instances = await Promise.all(['a', 'b'].map(async (label) => new Instance({
    label, port: await freePort(), command: [process.execPath, ...loader, 'src/server.ts'], env, cwd: projectRoot,
  })))
  t.teardown(async () => { await Promise.all(instances.map(async (instance) => { await instance.stop() })) })
  await instances[0]!.start()
  await instances[1]!.start()
  await admin.connect()
  t.teardown(async () => { await admin.end() })

  const post = async (instance: Instance, path: string, body: unknown, method = 'POST'): Promise<number> => {
    try {
      const res = await fetch(`${instance.url}${path}`, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(20_000) })
      await res.arrayBuffer()
      return res.status
    } catch {
      return 0 // the instance was killed under the request
    }
  }
  const users: number[] = []
  for (let i = 0; i < USERS; i += 1) {
    const res = await fetch(`${instances[0]!.url}/api/users`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ balance: 1000 }) })
    users.push(((await res.json()) as { id: number }).id)
  }

  // Load: a few writers on both instances until told to stop.
  const statuses: Record<number, number> = {}
  let loading = true
  const writers = Array.from({ length: 6 }, async (_, w) => {
    for (let i = 0; loading; i += 1) {
      const instance = instances.filter((candidate) => candidate.running)[i % 2] ?? instances.find((candidate) => candidate.running)
      if (instance === undefined) { await sleep(50); continue }
      const user = users[(w * 7 + i) % USERS]!
      const status = i % 6 === 0
        ? await post(instance, '/api/transfers', { fromUserId: user, toUserId: users[(w + i + 1) % USERS]!, amount: 1 + (i % 5) })
        : await post(instance, '/api/balance', { userId: user, amount: i % 3 === 0 ? -(1 + (i % 30)) : 1 + (i % 9) }, 'PATCH')
      statuses[status] = (statuses[status] ?? 0) + 1
      if (status === 0) await sleep(50) // an instance killed or still booting: do not spin on it
    }
  })
  const published = async (): Promise<number> => Number((await query<{ n: string }>('SELECT published AS n FROM events_publisher'))[0]?.n)
  const waitFor = async (what: string, check: () => Promise<boolean>, ms = 30_000): Promise<void> => {
    const deadline = Date.now() + ms
    while (!await check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await sleep(50)
    }
  }
  const holderPid = async (): Promise<number | undefined> => {
    const holder = (await query<{ holder: string | null }>('SELECT holder FROM events_publisher WHERE expires_at > now()'))[0]?.holder
    return holder === null || holder === undefined ? undefined : Number(holder.split(':')[1])
  }

  await waitFor('a first publish', async () => await published() > 20)

  // 1. SIGKILL the instance that holds the lease: the other takes over within the lease TTL.
  const victimPid = await holderPid()
  const victim = instances.find((instance) => instance.pid === victimPid)
  t.ok(victim !== undefined, `the lease holder is one of the instances (pid ${victimPid})`)
  await victim!.kill()
  const before = await published()
  const killedAt = Date.now()
  await waitFor('a new lease holder', async () => { const pid = await holderPid(); return pid !== undefined && pid !== victimPid })
  await waitFor('publishing again', async () => await published() > before + 10)
  t.comment(`takeover after the SIGKILL: publishing again ${Date.now() - killedAt} ms later (lease TTL ${LEASE_TTL_MS} ms)`)
  await victim!.start()

  // 2. nats-server stopped and started again: events wait in the table, then go out.
  await nats.stop()
  await sleep(1500)
  const whileDown = await published()
  await sleep(500)
  t.equal(await published(), whileDown, 'nothing is marked published while NATS is down')
  await nats.start()
  await waitFor('publishing after NATS is back', async () => await published() > whileDown + 10)

  // 3. The publisher's own PostgreSQL connection terminated.
  const terminated = await query<{ n: string }>(`SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
    WHERE datname = current_database() AND application_name = 'balance-api-events'`)
  t.ok(Number(terminated[0]?.n) >= 1, `${terminated[0]?.n} publisher connections terminated`)
  const afterTerminate = await published()
  await waitFor('publishing after the terminated connection', async () => await published() > afterTerminate + 10)

  loading = false
  await Promise.all(writers)
  t.same(Object.keys(statuses).filter((status) => !['200', '201', '409', '0'].includes(status)), [], `only 200/409 (or a request cut by the kill): ${JSON.stringify(statuses)}`)

  await waitFor('the outbox to drain', async () => Number((await query<{ n: string }>(`SELECT count(*) AS n FROM events e, events_publisher p
    WHERE (e.xid, e.id) > (p.cursor_xid, p.cursor_id)`))[0]?.n) === 0)
  const total = Number((await query<{ n: string }>('SELECT count(*) AS n FROM events'))[0]?.n)
  const fromStream = await readStream([nats.url], 'BALANCE_EVENTS')
  t.equal(fromStream.messages, total, `the stream holds ${total} messages: each event exactly once`)
  const report = await rebuildReport('stream', fromStream.events, db.url)
  t.same(report.problems, [], 'per user seq 1..n, no gap, no duplicate')
  t.same(report.mismatches, [], 'the stream alone rebuilds every balance')
  t.equal(report.checked, USERS + 1, 'every user checked (the seeded one too)')
  // The consumer as people run it: npm run events -- --rebuild (the stream), and --rebuild --feed (the HTTP feed).
  for (const args of [['--rebuild'], ['--rebuild', '--feed']]) {
    const run = await runConsumer(args, { ...loaderEnv, DATABASE_URL: db.url, EVENTS_NATS_URL: nats.url, BALANCE_API_URL: instances[1]!.url })
    t.equal(run.code, 0, `events ${args.join(' ')} exits 0`)
    const printed = JSON.parse(run.stdout) as { ok: boolean, events: number, mismatches: string[] }
    t.match(printed, { ok: true, events: total, mismatches: [] }, `events ${args.join(' ')} agrees with the database`)
  }
  t.comment(`faults: ${total} events, ${fromStream.messages} messages; writes ${JSON.stringify(statuses)}`)

  // 4. The cursor set back under a holder that trusts it (what a stream ahead of the database looks like to a holder,
  // as after a failover that lost a published commit): it sends everything again, JetStream drops each one as a
  // duplicate, the stream stays exact, and the holder counts every drop.
  const duplicatesOf = async (instance: Instance): Promise<number> => {
    const text = await (await fetch(`${instance.url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text()
    return Number(/^events_publish_duplicates_total (\d+)$/m.exec(text)?.[1] ?? NaN)
  }
  const before4 = await Promise.all(instances.map(duplicatesOf))
  t.same(before4, [0, 0], 'no duplicate dropped so far: every holder sent only what the stream lacked')
  const rewound = await published()
  await query(`UPDATE events_publisher SET cursor_xid = '0', cursor_id = 0 WHERE id = 1`)
  await waitFor('the rewound cursor to catch up', async () => await published() >= rewound + total)
  const after4 = await Promise.all(instances.map(duplicatesOf))
  t.equal(after4[0]! + after4[1]!, total, `all ${total} events sent again were dropped as duplicates, and counted (${after4.join(' + ')})`)
  t.equal((await readStream([nats.url], 'BALANCE_EVENTS')).messages, total, 'the stream still holds each event once')
})
