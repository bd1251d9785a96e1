import { execFile, execFileSync, spawn } from 'node:child_process'
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { createThrowawayDatabase } from '../../src/tooling/throwaway-database.js'
import { freePort } from '../../src/db/embedded-postgres.js'

// What a person sees when the built server starts: JSON lines when stdout is a pipe, pino-pretty lines when it is a
// terminal (a real pseudo-terminal from util-linux `script`), and in both one start line with the URL, the docs URL,
// the strategy and where the data lives. LOG_PRETTY is unset in both.
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const BUILD_TIMEOUT_MS = 180_000
const START_TIMEOUT_MS = 90_000
const EXIT_TIMEOUT_MS = 30_000
const READY = /balance-api ready at (\S+) \(docs: (\S+)\), strategy (.+?), (embedded PostgreSQL, data in .+|PostgreSQL at .+)$/

function userEnvironment (extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) =>
    key !== 'NODE_OPTIONS' && key !== 'NODE_V8_COVERAGE' && key !== 'LOG_PRETTY' && key !== 'DATABASE_URL' && !/^_?TAP/i.test(key)))
  return { ...env, HOST: '127.0.0.1', LOG_LEVEL: 'info', ...extra }
}

interface Run { lines: string[], code: number | null }

/** Runs `command` until a line matches READY, then SIGTERMs the node server (`pidOf`) and collects all output. */
async function runUntilReady (t: Test, command: string, args: string[], env: NodeJS.ProcessEnv, nodePid: (pid: number) => number): Promise<Run> {
  const child = spawn(command, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const closed = new Promise<number | null>((resolve) => { child.once('close', (code) => { resolve(code) }) })
  const lines = (): string[] => output.split(/\r?\n/).filter((line) => line.trim() !== '')
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { clearInterval(poll); reject(new Error(`not ready in ${START_TIMEOUT_MS} ms: ${output}`)) }, START_TIMEOUT_MS)
    const poll = setInterval(() => {
      if (!lines().some((line) => READY.test(line))) return
      clearInterval(poll)
      clearTimeout(timer)
      resolve()
    }, 50)
    void closed.then((code) => { clearInterval(poll); clearTimeout(timer); reject(new Error(`exited with ${code} before ready: ${output}`)) })
  })
  process.kill(nodePid(child.pid!), 'SIGTERM')
  const code = await Promise.race([closed, new Promise<never>((_resolve, reject) => setTimeout(() => { reject(new Error('no exit after SIGTERM')) }, EXIT_TIMEOUT_MS).unref())])
  return { lines: lines(), code }
}

t.before(async () => {
  await new Promise<void>((resolve, reject) => {
    execFile('npm', ['run', 'build'], { cwd: ROOT, timeout: BUILD_TIMEOUT_MS }, (error, _stdout, stderr) => {
      if (error === null) resolve()
      else reject(new Error(`npm run build failed: ${error.message} ${stderr}`))
    })
  })
})

t.test('stdout is a pipe and LOG_PRETTY is unset: JSON lines, one of them the start line', async (t) => {
  const db = await createThrowawayDatabase('start_line')
  t.teardown(db.drop)
  const port = await freePort()
  const env = userEnvironment({ DATABASE_URL: db.url, PORT: String(port), BALANCE_STRATEGY: 'atomic' })
  const run = await runUntilReady(t, process.execPath, ['dist/src/server.js'], env, (pid) => pid)
  t.equal(run.code, 0, 'exit 0 on SIGTERM')
  const parsed = run.lines.map((line) => JSON.parse(line) as { msg: string, level: number })
  t.ok(parsed.length > 0 && parsed.every((line) => typeof line.msg === 'string'), 'every line is a JSON log line')
  const ready = parsed.map((line) => READY.exec(line.msg)).filter((match) => match !== null)
  t.equal(ready.length, 1, 'one start line')
  const database = new URL(db.url)
  t.same(ready[0]?.slice(1), [
    `http://127.0.0.1:${port}`,
    `http://127.0.0.1:${port}/docs`,
    'atomic, group commit on',
    `PostgreSQL at ${database.host}${database.pathname}`,
  ], 'URL, docs URL, strategy, and the database without credentials')
  const docs = await fetch(`http://127.0.0.1:${port}/docs`).catch(() => undefined)
  t.equal(docs, undefined, 'the server is gone after SIGTERM')
})

t.test('stdout is a terminal and LOG_PRETTY is unset: pretty lines; embedded data folder in the start line', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'balance-start-line-'))
  await chmod(dir, 0o755)
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const dataDir = path.join(dir, '.data', 'pg')
  const port = await freePort()
  const env = userEnvironment({ PGDATA_DIR: dataDir, PORT: String(port) })
  // `script` gives the server a pseudo-terminal as stdout; `exec` makes the node server script's own child.
  const run = await runUntilReady(t, 'script', ['-qfec', `exec ${process.execPath} dist/src/server.js`, '/dev/null'], env,
    (scriptPid) => Number(execFileSync('pgrep', ['-P', String(scriptPid)]).toString().trim().split('\n')[0]))
  t.equal(run.code, 0, 'exit 0 on SIGTERM')
  t.notOk(run.lines.some((line) => line.trimStart().startsWith('{')), 'no JSON line')
  const ready = run.lines.filter((line) => READY.test(line))
  t.equal(ready.length, 1, 'one start line')
  t.match(ready[0], /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: balance-api ready at /, 'a pino-pretty line: time, level, message')
  t.same(READY.exec(ready[0] ?? '')?.slice(1), [
    `http://127.0.0.1:${port}`,
    `http://127.0.0.1:${port}/docs`,
    'advisory, group commit on',
    `embedded PostgreSQL, data in ${dataDir}`,
  ], 'URL, docs URL, strategy, where the embedded data lives')
  // (Not the last line 'closed': it races close-with-grace's process.exit, see test/system/shutdown.test.ts.)
  t.ok(run.lines.some((line) => /INFO: closing: no new connections/.test(line)), 'the close is logged, pretty too')
})
