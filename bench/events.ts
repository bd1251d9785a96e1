import { execFile } from 'node:child_process'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import pg from 'pg'
import { BURST_USER, resetBalance } from './database.js'
import { burst, load } from './load.js'
import { startChildServer, type ChildServer } from '../src/tooling/processes.js'
import { projectRoot, serverScript } from '../src/tooling/project-root.js'
import { createThrowawayDatabase, type ThrowawayDatabase } from '../src/tooling/throwaway-database.js'

/**
 * `npm run bench:events`: what writing events costs the service, in one run. Two production builds side by side, one
 * with EVENTS=on and one with EVENTS=off (the switch is per database, so each has its own), measured one at a time in
 * alternation: the seed burst (10,000 simultaneous PATCH −2 on a user holding 10,000, one socket each) and the hot
 * row (autocannon, 100 connections, deposits of 1 on that one user). Medians of ROUNDS; nothing publishes (no broker):
 * the cost measured is the trigger's, on the request's path. ROUNDS and HOT_SECONDS come from the environment.
 */
const ROUNDS = Number(process.env.ROUNDS ?? 3)
const HOT_SECONDS = Number(process.env.HOT_SECONDS ?? 10)
const BURST = 10_000
const OPENING = 10_000

interface Side { mode: 'on' | 'off', db: ThrowawayDatabase, server: ChildServer, admin: pg.Pool, burstMs: number[], hotRps: number[] }

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

async function side (mode: 'on' | 'off'): Promise<Side> {
  const db = await createThrowawayDatabase(`bench-events-${mode}`)
  const server = await startChildServer(`events-${mode}`, serverScript, { DATABASE_URL: db.url, EVENTS: mode, LOG_LEVEL: 'warn' })
  return { mode, db, server, admin: new pg.Pool({ connectionString: db.url, max: 2 }), burstMs: [], hotRps: [] }
}

async function round (s: Side): Promise<void> {
  await resetBalance(s.admin, BURST_USER, OPENING)
  const seed = await burst(`${s.server.url}/api/balance`, BURST, { userId: BURST_USER, amount: -2 })
  if (seed.statuses['200'] !== OPENING / 2 || seed.statuses['409'] !== OPENING / 2) throw new Error(`events ${s.mode}: seed burst answered ${JSON.stringify(seed.statuses)}`)
  s.burstMs.push(seed.wallMs)
  const hot = await load({ url: s.server.url, connections: 100, seconds: HOT_SECONDS, body: () => ({ userId: BURST_USER, amount: 1 }) })
  if (hot.non2xx > 0 || hot.errors > 0) throw new Error(`events ${s.mode}: hot row had ${hot.non2xx} non-2xx, ${hot.errors} errors`)
  s.hotRps.push(hot.reqPerSec)
  console.log(`events ${s.mode}: seed burst ${seed.wallMs.toFixed(0)} ms, hot row ${hot.reqPerSec.toFixed(0)} req/s`)
}

async function main (): Promise<void> {
  await promisify(execFile)(process.execPath, [`${projectRoot}/node_modules/typescript/bin/tsc`, '-p', 'tsconfig.build.json'], { cwd: projectRoot })
  const sides = [await side('on'), await side('off')]
  try {
    for (let i = 0; i < ROUNDS; i += 1) {
      // Alternate which goes first, so neither always runs on a warmer (or busier) machine.
      for (const s of i % 2 === 0 ? sides : [...sides].reverse()) await round(s)
    }
    const [on, off] = sides as [Side, Side]
    const events = await on.admin.query<{ events: string, entries: string }>('SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM journal_entries) AS entries')
    const none = await off.admin.query<{ events: string }>('SELECT count(*) AS events FROM events')
    console.log(JSON.stringify({
      rounds: ROUNDS,
      seedBurstMs: { on: median(on.burstMs), off: median(off.burstMs), slower: `${((median(on.burstMs) / median(off.burstMs) - 1) * 100).toFixed(1)} %` },
      hotRowReqPerSec: { on: median(on.hotRps), off: median(off.hotRps), slower: `${((1 - median(on.hotRps) / median(off.hotRps)) * 100).toFixed(1)} %` },
      eventsWritten: { on: Number(events.rows[0]?.events), journalEntriesOn: Number(events.rows[0]?.entries), off: Number(none.rows[0]?.events) },
    }, null, 2))
  } finally {
    for (const s of sides) {
      await s.server.stop()
      await s.admin.end()
      await s.db.drop()
    }
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(error)
    process.exitCode = 1
  })
}
