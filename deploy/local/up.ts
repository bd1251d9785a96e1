import { rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from '../../src/tooling/ports.js'
import { Instance } from '../../src/tooling/instance.js'
import { projectRoot } from '../../src/tooling/project-root.js'
import { startTopology, type Pooler } from './topology.js'

/**
 * One command for the HA topology on this machine (deploy/local/up.sh): etcd, two Patroni nodes (PostgreSQL 15,
 * synchronous standby), HAProxy on the primary, PgBouncer (optional), N instances of the built service.
 * Runs in the foreground until Ctrl-C / SIGTERM (deploy/local/down.sh sends it), then stops everything it started.
 *
 *   deploy/local/up.sh [--instances N] [--pooler transaction|session|none] [--strict]   (default: 2 instances, PgBouncer in transaction mode)
 */
export interface UpOptions { instances: number, pooler: Pooler, strict: boolean }

export function parseUpArgs (argv: string[]): UpOptions {
  const options: UpOptions = { instances: 2, pooler: 'transaction', strict: false }
  for (let index = 0; index < argv.length; index += 1) {
    const arg = argv[index]
    if (arg === '--strict') { options.strict = true; continue }
    const value = argv[index + 1]
    index += 1
    if (arg === '--instances' && value !== undefined && /^[0-8]$/.test(value)) options.instances = Number(value)
    else if (arg === '--pooler' && (value === 'none' || value === 'session' || value === 'transaction')) options.pooler = value
    else throw new Error(`usage: up.sh [--instances 0..8] [--pooler none|session|transaction] [--strict] (bad: ${arg ?? ''} ${value ?? ''})`)
  }
  return options
}

async function main (): Promise<void> {
  const options = parseUpArgs(process.argv.slice(2))
  const root = projectRoot
  const stateFile = path.join(root, '.ha-up.json')
  const log = (line: string): void => { console.error(`[${new Date().toISOString()}] ${line}`) }
  const started = Date.now()
  const topology = await startTopology({ pooler: options.pooler, strict: options.strict, log })
  const instances: Instance[] = []
  let stopping = false
  const shutdown = async (): Promise<void> => {
    if (stopping) return
    stopping = true
    log('ha: stopping')
    await Promise.all(instances.map(async (instance) => { await instance.stop() }))
    await topology.stop()
    rmSync(stateFile, { force: true })
    log('ha: stopped')
  }
  const onSignal = (): void => { void shutdown().finally(() => { process.exit(0) }) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    for (let index = 0; index < options.instances; index += 1) {
      const instance = new Instance({
        label: `instance-${index + 1}`,
        port: await freePort(),
        command: [process.execPath, 'dist/src/server.js'],
        cwd: root,
        env: { PATH: process.env.PATH ?? '', DATABASE_URL: topology.serviceUrl, LOG_LEVEL: 'warn', DB_CONNECT_TIMEOUT_MS: '2000', DB_ACQUIRE_TIMEOUT_MS: '5000', DB_STATEMENT_TIMEOUT_MS: '5000', DB_POOLER: options.pooler === 'none' ? 'none' : 'pgbouncer-transaction' },
      })
      instances.push(instance)
      await instance.start()
    }
  } catch (error) {
    await shutdown()
    throw error
  }
  const state = {
    pid: process.pid,
    runDir: topology.runDir,
    serviceDatabaseUrl: topology.serviceUrl,
    primaryUrl: topology.directUrl,
    instances: instances.map((instance) => instance.url),
    nodes: topology.nodes.map((node) => ({ name: node.name, pgPort: node.pgPort, patroniRest: `http://127.0.0.1:${node.restPort}` })),
    etcd: `http://127.0.0.1:${topology.etcdPort}`,
  }
  writeFileSync(stateFile, JSON.stringify(state, null, 2) + '\n')
  log(`ha: up in ${((Date.now() - started) / 1000).toFixed(1)} s; state in ${stateFile}; Ctrl-C or deploy/local/down.sh stops it`)
  process.stdout.write(JSON.stringify(state, null, 2) + '\n')
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  main().catch((error: unknown) => {
    console.error(error)
    process.exitCode = 1
  })
}
