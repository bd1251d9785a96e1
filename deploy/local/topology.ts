import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, chownSync, closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { freePort } from '../../src/tooling/ports.js'

/**
 * The high-availability topology on loopback, made of the Debian packages:
 *
 *   service instances ──> [PgBouncer, transaction mode] ──> HAProxy ──> the node whose Patroni answers GET /primary
 *                                                                        ├─ node1: Patroni 3.0 + PostgreSQL 15
 *                                                                        └─ node2: Patroni 3.0 + PostgreSQL 15 (synchronous standby)
 *                                                   etcd 3.4 (v2 API) holds the leader key both Patronis race for
 *
 * Everything runs on free loopback ports out of one temporary run folder, each daemon in its own process group
 * (PostgreSQL's postmaster makes its own session: Patroni detaches it), so `stop()` and a crash of this process
 * (an `exit` hook) SIGKILL every group it started. As root, Patroni and PgBouncer run as the `postgres` user
 * (initdb and PgBouncer refuse root); the run folder and data folders are theirs and traversable.
 *
 * Used by `deploy/local/up.ts` (one command for a person), the failover test and `npm run soak -- --ha`.
 */
import { ETCD, HAPROXY, PATRONI, PG_BIN_DIR, PGBOUNCER } from './tools.js'
export { HA_TOOLS } from './tools.js'

/** Bounds on every wait. */
const UP_TIMEOUT_MS = 90_000
const STOP_TIMEOUT_MS = 10_000
const POLL_MS = 250
const TAIL_BYTES = 4000

export type Pooler = 'none' | 'session' | 'transaction'

export interface TopologyOptions {
  /** `synchronous_mode_strict`: no commit without a synchronous standby (durability over availability). */
  strict?: boolean
  /** PgBouncer in front of HAProxy, and its pool mode; 'none' = the service talks to HAProxy directly. */
  pooler?: Pooler
  /** The database the service uses, created on the primary once it is up. */
  database?: string
  /** Patroni's timings (seconds); see docs/ha-topology.md for what each does to failover time. */
  ttl?: number
  loopWait?: number
  retryTimeout?: number
  log?: (line: string) => void
}

export interface NodeState {
  name: string
  pgPort: number
  restPort: number
  dataDir: string
  patroni: ChildProcess | undefined
}

export interface Topology {
  runDir: string
  /** Superuser URL through HAProxy (always the current primary), database `postgres`. */
  adminUrl: string
  /** The URL the service gets: through PgBouncer when there is one, else HAProxy; database `options.database`. */
  serviceUrl: string
  /** The same database straight through HAProxy (checkers, the books check). */
  directUrl: string
  haproxyPort: number
  pgbouncerPort: number | undefined
  etcdPort: number
  nodes: NodeState[]
  /** The node whose Patroni answers 200 to GET /primary, if one does. */
  primary: () => Promise<NodeState | undefined>
  /** Waits until a node is primary and `pg_is_in_recovery()` is false through HAProxy; returns that node. */
  waitForPrimary: (timeoutMs?: number, not?: string) => Promise<NodeState>
  /** Waits until some node answers GET /sync (a synchronous standby is attached). */
  waitForSyncStandby: (timeoutMs?: number) => Promise<NodeState>
  /** SIGKILL of a node: its Patroni's group and its postmaster's group (backends included). */
  killNode: (node: NodeState) => Promise<void>
  /** Starts a killed node's Patroni again (it rejoins as a standby, with pg_rewind when it diverged). */
  startNode: (node: NodeState) => void
  /** Stops everything this topology started (SIGTERM, then SIGKILL), and removes the run folder unless kept. */
  stop: (keepRunDir?: boolean) => Promise<void>
  /** Also SIGKILL this process (a service instance) if this process dies without stop(). */
  adopt: (pid: number | undefined) => void
  /** The last lines of a daemon's log (patroni-node1, etcd, haproxy, pgbouncer), for error messages. */
  tail: (name: string) => string
}

function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** uid/gid to run PostgreSQL-side daemons as: `postgres` when we are root, else ourselves. */
function runAs (): { uid: number, gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim())
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim())
  return { uid, gid }
}

/** Every process group started by any topology of this process: killed if the process exits without stopping them. */
const liveGroups = new Set<number>()
let exitHookInstalled = false
function trackGroup (pid: number): void {
  liveGroups.add(pid)
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('exit', () => {
    for (const group of liveGroups) {
      try { process.kill(-group, 'SIGKILL') } catch { /* gone */ }
    }
  })
}

function killGroup (pid: number, signal: NodeJS.Signals): void {
  try { process.kill(-pid, signal) } catch { /* already gone */ }
}

/** A process's state letter from /proc (R, S, D, Z…), undefined when it is gone. */
function processState (pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]
  } catch { return undefined }
}

/** Alive and not a zombie (an orphan's zombie may never be reaped when PID 1 does not reap). */
function alive (pid: number): boolean {
  const state = processState(pid)
  return state !== undefined && state !== 'Z'
}

function childrenOf (pid: number): number[] {
  const children: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) children.push(Number(entry))
    } catch { /* gone meanwhile */ }
  }
  return children
}

/**
 * SIGKILL of a postmaster AND its children. PostgreSQL puts every child (backends, walsender, checkpointer…) in
 * its own session (setsid), so a signal to the postmaster's group reaches the postmaster alone, and backends killed
 * no other way go on, even commit, until they notice their postmaster is gone. Stopped first, so it forks no more.
 */
function killPostmaster (pid: number): void {
  try { process.kill(pid, 'SIGSTOP') } catch { return }
  for (const child of childrenOf(pid)) {
    try { process.kill(child, 'SIGKILL') } catch { /* gone */ }
  }
  try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
}

async function httpStatus (url: string, timeoutMs = 1000): Promise<number> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) })
    await response.arrayBuffer()
    return response.status
  } catch {
    return 0
  }
}

async function query<T extends pg.QueryResultRow> (url: string, sql: string, timeoutMs = 2000): Promise<T[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs })
  client.on('error', () => {})
  try {
    await client.connect()
    return (await client.query<T>(sql)).rows
  } finally {
    await client.end().catch(() => {})
  }
}

function patroniYaml (node: NodeState, others: NodeState[], etcdPort: number, runDir: string, o: Required<Pick<TopologyOptions, 'strict' | 'ttl' | 'loopWait' | 'retryTimeout'>>): string {
  void others
  return `scope: balance-ha
name: ${node.name}
log:
  level: INFO
restapi:
  listen: 127.0.0.1:${node.restPort}
  connect_address: 127.0.0.1:${node.restPort}
etcd:
  host: 127.0.0.1:${etcdPort}
bootstrap:
  dcs:
    ttl: ${o.ttl}
    loop_wait: ${o.loopWait}
    retry_timeout: ${o.retryTimeout}
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_mode_strict: ${o.strict}
    postgresql:
      use_pg_rewind: true
      remove_data_directory_on_rewind_failure: true
      remove_data_directory_on_diverged_timelines: true
      parameters:
        max_connections: 200
        wal_level: replica
        hot_standby: 'on'
        wal_log_hints: 'on'
        max_wal_senders: 10
        max_replication_slots: 10
        # A killed primary comes back as a standby from the point where the timelines forked. Until it is back, no
        # slot holds that WAL on the new primary: keep enough for minutes of writes (the HA soak writes 0.5–1 MB/s;
        # 128MB once ran out and the node waited forever for a removed segment).
        wal_keep_size: 2GB
  initdb:
  - encoding: UTF8
  - auth: trust
  - username: postgres
postgresql:
  listen: 127.0.0.1:${node.pgPort}
  connect_address: 127.0.0.1:${node.pgPort}
  data_dir: ${node.dataDir}
  bin_dir: ${PG_BIN_DIR}
  pgpass: ${path.join(runDir, `pgpass-${node.name}`)}
  pg_hba:
  - local all all trust
  - host all all 127.0.0.1/32 trust
  - host replication postgres 127.0.0.1/32 trust
  authentication:
    superuser:
      username: postgres
    replication:
      username: postgres
    rewind:
      username: postgres
  parameters:
    unix_socket_directories: '${runDir}'
    shared_buffers: 64MB
    fsync: 'on'
`
}

function haproxyCfg (port: number, nodes: NodeState[]): string {
  return `global
  maxconn 2000
defaults
  mode tcp
  timeout connect 2s
  timeout client 30m
  timeout server 30m
  timeout check 1s
listen primary
  bind 127.0.0.1:${port}
  option httpchk GET /primary
  http-check expect status 200
  default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions
${nodes.map((node) => `  server ${node.name} 127.0.0.1:${node.pgPort} maxconn 500 check port ${node.restPort}`).join('\n')}
`
}

function pgbouncerIni (port: number, haproxyPort: number, runDir: string, mode: Exclude<Pooler, 'none'>): string {
  return `[databases]
* = host=127.0.0.1 port=${haproxyPort}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = trust
auth_file = ${path.join(runDir, 'userlist.txt')}
pool_mode = ${mode}
max_client_conn = 1000
default_pool_size = 20
ignore_startup_parameters = extra_float_digits
server_check_query = select 1
server_check_delay = 1
server_connect_timeout = 2
server_login_retry = 1
query_wait_timeout = 10
logfile = ${path.join(runDir, 'pgbouncer.log')}
pidfile = ${path.join(runDir, 'pgbouncer.pid')}
`
}

export async function startTopology (options: TopologyOptions = {}): Promise<Topology> {
  const log = options.log ?? (() => {})
  const settings = { strict: options.strict ?? false, ttl: options.ttl ?? 10, loopWait: options.loopWait ?? 2, retryTimeout: options.retryTimeout ?? 4 }
  const pooler = options.pooler ?? 'none'
  const database = options.database ?? 'balance'
  const owner = runAs()
  const runDir = mkdtempSync(path.join(os.tmpdir(), 'balance-ha-'))
  chmodSync(runDir, 0o755)
  const own = (file: string): void => { if (owner !== undefined) chownSync(file, owner.uid, owner.gid) }
  own(runDir)

  const groups = new Set<number>()
  const adopted = new Set<number>()
  const writePids = (): void => { writeFileSync(pidsFile, [...[...groups].map((g) => `-${g}`), ...adopted].join('\n') + '\n') }
  const logs = new Map<string, string>()
  // A watchdog outside our process group: if this process dies without stop() (SIGKILL, a test timeout), it kills
  // every group listed in run/pids and every postmaster, then removes the run folder. It ends when the folder goes.
  // (dash's kill takes no `--`: `kill -9 -PGID` is the group.)
  const pidsFile = path.join(runDir, 'pids')
  writeFileSync(pidsFile, '')
  const watchdog = spawn('/bin/sh', ['-c', `while kill -0 ${process.pid} 2>/dev/null && [ -d '${runDir}' ]; do sleep 1; done
[ -d '${runDir}' ] || exit 0
for p in $(cat '${pidsFile}'); do kill -9 "$p" 2>/dev/null; done
for p in $(head -q -n 1 '${runDir}'/node*/postmaster.pid 2>/dev/null); do kill -STOP "$p" 2>/dev/null && pkill -9 -P "$p"; kill -9 "$p" 2>/dev/null; done
rm -rf '${runDir}'`], { detached: true, stdio: 'ignore' })
  watchdog.unref()
  const spawnDaemon = (name: string, command: string, args: string[], asOwner: boolean): ChildProcess => {
    const logFile = path.join(runDir, `${name}.log`)
    logs.set(name, logFile)
    const fd = openSync(logFile, 'a')
    own(logFile)
    const child = spawn(command, args, {
      cwd: runDir,
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: runDir, LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8' },
      ...(asOwner && owner !== undefined ? owner : {}),
    })
    closeSync(fd)
    child.on('error', (error) => { log(`${name}: ${error.message}`) })
    if (child.pid === undefined) throw new Error(`${name} did not start`)
    groups.add(child.pid)
    trackGroup(child.pid)
    writePids()
    child.once('exit', () => { /* the group may live on (postmaster): stop() kills it by id */ })
    return child
  }
  const tail = (name: string): string => {
    const file = logs.get(name)
    if (file === undefined || !existsSync(file)) return ''
    const text = readFileSync(file, 'utf8')
    return text.slice(-TAIL_BYTES)
  }

  const nodes: NodeState[] = []
  let stopped = false
  const postmasterPid = (node: NodeState): number | undefined => {
    try {
      const pid = Number(readFileSync(path.join(node.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0])
      if (!Number.isSafeInteger(pid) || pid <= 0 || !alive(pid)) return undefined
      // A stale file (a killed node) may name a pid now reused by something else: only our postmaster counts.
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(node.dataDir) ? pid : undefined
    } catch { return undefined }
  }

  const stop = async (keepRunDir = false): Promise<void> => {
    if (stopped) return
    stopped = true
    const postmasters = nodes.map(postmasterPid).filter((pid): pid is number => pid !== undefined)
    for (const group of groups) killGroup(group, 'SIGTERM')
    // SIGQUIT: PostgreSQL's immediate shutdown (the postmaster takes its children down with it).
    for (const pid of postmasters) killGroup(pid, 'SIGQUIT')
    const deadline = Date.now() + STOP_TIMEOUT_MS
    while (Date.now() < deadline && [...groups, ...postmasters].some(alive)) await sleep(100)
    for (const pid of postmasters) if (alive(pid)) killPostmaster(pid)
    for (const group of groups) {
      killGroup(group, 'SIGKILL')
      liveGroups.delete(group)
    }
    watchdog.kill('SIGKILL')
    if (!keepRunDir) rmSync(runDir, { recursive: true, force: true })
  }

  try {
    const etcdPort = await freePort()
    const etcdPeerPort = await freePort()
    spawnDaemon('etcd', ETCD, [
      '--name', 'etcd1', '--data-dir', path.join(runDir, 'etcd'),
      '--listen-client-urls', `http://127.0.0.1:${etcdPort}`, '--advertise-client-urls', `http://127.0.0.1:${etcdPort}`,
      '--listen-peer-urls', `http://127.0.0.1:${etcdPeerPort}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${etcdPeerPort}`,
      '--initial-cluster', `etcd1=http://127.0.0.1:${etcdPeerPort}`, '--enable-v2=true',
    ], false)
    const etcdDeadline = Date.now() + UP_TIMEOUT_MS
    while (await httpStatus(`http://127.0.0.1:${etcdPort}/health`) !== 200) {
      if (Date.now() > etcdDeadline) throw new Error(`etcd did not come up:\n${tail('etcd')}`)
      await sleep(POLL_MS)
    }

    for (const name of ['node1', 'node2']) {
      const dataDir = path.join(runDir, name)
      nodes.push({ name, pgPort: await freePort(), restPort: await freePort(), dataDir, patroni: undefined })
    }
    const startNode = (node: NodeState): void => {
      const config = path.join(runDir, `${node.name}.yml`)
      writeFileSync(config, patroniYaml(node, nodes.filter((n) => n !== node), etcdPort, runDir, settings))
      own(config)
      node.patroni = spawnDaemon(`patroni-${node.name}`, PATRONI, [config], true)
    }
    // Both at once: one wins etcd's initialize key and runs initdb, the other waits for it and takes a base backup.
    for (const node of nodes) startNode(node)

    const haproxyPort = await freePort()
    const haproxyConfig = path.join(runDir, 'haproxy.cfg')
    writeFileSync(haproxyConfig, haproxyCfg(haproxyPort, nodes))
    spawnDaemon('haproxy', HAPROXY, ['-f', haproxyConfig, '-db'], false)

    const adminUrl = `postgres://postgres@127.0.0.1:${haproxyPort}/postgres`
    const directUrl = `postgres://postgres@127.0.0.1:${haproxyPort}/${database}`

    const primary = async (): Promise<NodeState | undefined> => {
      for (const node of nodes) {
        if (await httpStatus(`http://127.0.0.1:${node.restPort}/primary`) === 200) return node
      }
      return undefined
    }
    const waitForPrimary = async (timeoutMs = UP_TIMEOUT_MS, not?: string): Promise<NodeState> => {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const node = await primary()
        if (node !== undefined && node.name !== not) {
          // HAProxy starts every server as up and marks it down only after its checks fail: ask PostgreSQL itself.
          const rows = await query<{ recovery: boolean, port: number }>(adminUrl,
            'SELECT pg_is_in_recovery() AS recovery, current_setting(\'port\')::int AS port').catch(() => [])
          if (rows[0]?.recovery === false && rows[0].port === node.pgPort) return node
        }
        if (Date.now() > deadline) throw new Error(`no primary through HAProxy within ${timeoutMs} ms:\n${nodes.map((n) => tail(`patroni-${n.name}`)).join('\n')}`)
        await sleep(POLL_MS)
      }
    }
    const waitForSyncStandby = async (timeoutMs = UP_TIMEOUT_MS): Promise<NodeState> => {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        for (const node of nodes) {
          if (await httpStatus(`http://127.0.0.1:${node.restPort}/sync`) === 200) return node
        }
        if (Date.now() > deadline) throw new Error(`no synchronous standby within ${timeoutMs} ms:\n${nodes.map((n) => tail(`patroni-${n.name}`)).join('\n')}`)
        await sleep(POLL_MS)
      }
    }
    const killNode = async (node: NodeState): Promise<void> => {
      const postmaster = postmasterPid(node)
      const patroni = node.patroni?.pid
      if (patroni !== undefined) killGroup(patroni, 'SIGKILL')
      if (postmaster !== undefined) killPostmaster(postmaster)
      const deadline = Date.now() + STOP_TIMEOUT_MS
      while (Date.now() < deadline && [patroni, postmaster].some((pid) => pid !== undefined && alive(pid))) await sleep(50)
      if (patroni !== undefined) { groups.delete(patroni); liveGroups.delete(patroni); writePids() }
      node.patroni = undefined
    }

    const first = await waitForPrimary()
    log(`ha: ${first.name} is primary`)
    await waitForSyncStandby()
    await query(adminUrl, `CREATE DATABASE "${database}"`)

    let pgbouncerPort: number | undefined
    if (pooler !== 'none') {
      pgbouncerPort = await freePort()
      const userlist = path.join(runDir, 'userlist.txt')
      writeFileSync(userlist, '"postgres" ""\n')
      own(userlist)
      const ini = path.join(runDir, 'pgbouncer.ini')
      writeFileSync(ini, pgbouncerIni(pgbouncerPort, haproxyPort, runDir, pooler))
      own(ini)
      // -d would fork into the background; in the foreground the process group is ours to stop.
      spawnDaemon('pgbouncer', PGBOUNCER, [ini], true)
      logs.set('pgbouncer', path.join(runDir, 'pgbouncer.log'))
      const deadline = Date.now() + UP_TIMEOUT_MS
      for (;;) {
        const ok = await query(`postgres://postgres@127.0.0.1:${pgbouncerPort}/${database}`, 'SELECT 1').then(() => true, () => false)
        if (ok) break
        if (Date.now() > deadline) throw new Error(`PgBouncer did not come up:\n${tail('pgbouncer')}`)
        await sleep(POLL_MS)
      }
    }
    const serviceUrl = `postgres://postgres@127.0.0.1:${pgbouncerPort ?? haproxyPort}/${database}`
    log(`ha: up in ${runDir}: HAProxy ${haproxyPort}${pgbouncerPort === undefined ? '' : `, PgBouncer ${pgbouncerPort} (${pooler})`}, etcd ${etcdPort}, ${nodes.map((n) => `${n.name} pg ${n.pgPort} rest ${n.restPort}`).join(', ')}`)
    const adopt = (pid: number | undefined): void => {
      if (pid === undefined) return
      adopted.add(pid)
      writePids()
    }
    return { adopt, runDir, adminUrl, serviceUrl, directUrl, haproxyPort, pgbouncerPort, etcdPort, nodes, primary, waitForPrimary, waitForSyncStandby, killNode, startNode, stop, tail }
  } catch (error) {
    await stop(process.env.HA_KEEP_RUN_DIR === '1')
    throw error
  }
}
