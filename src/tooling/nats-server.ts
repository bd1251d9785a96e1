import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { freePort } from './ports.js'
import type { SystemTool } from './system-tool.js'

/**
 * A nats-server with JetStream of its own, on a free loopback port with its own store folder: the event tests
 * (test/support/nats.ts) and the soak's --events (reliability/soak.ts) start it the same way. It can be stopped and
 * started again on the same port and store; dispose() stops it and removes the store. Should this process exit
 * without dispose(), an exit hook SIGKILLs it.
 */
export const NATS_SERVER: SystemTool = { path: '/usr/sbin/nats-server', aptPackage: 'nats-server' }

const READY_TIMEOUT_MS = 15_000
const STOP_TIMEOUT_MS = 5_000
const OUTPUT_LINES = 50

export interface NatsServer {
  url: string
  port: number
  stop: () => Promise<void>
  /** Starts it again on the same port and store (after stop). */
  start: () => Promise<void>
  /** Stops it and removes its store. */
  dispose: () => Promise<void>
}

async function listening (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' })
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => { resolve(false) })
  })
}

export async function startNatsServer (): Promise<NatsServer> {
  const port = await freePort()
  const store = await mkdtemp(path.join(os.tmpdir(), 'balance-nats-'))
  let child: ChildProcess | undefined
  const output: string[] = []

  const start = async (): Promise<void> => {
    const proc = spawn(NATS_SERVER.path, ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', store], { stdio: ['ignore', 'pipe', 'pipe'] })
    const keep = (chunk: Buffer): void => { output.push(chunk.toString()); if (output.length > OUTPUT_LINES) output.shift() }
    proc.stdout?.on('data', keep)
    proc.stderr?.on('data', keep)
    child = proc
    const deadline = Date.now() + READY_TIMEOUT_MS
    while (!await listening(port)) {
      if (proc.exitCode !== null) throw new Error(`nats-server exited with ${proc.exitCode}:\n${output.join('')}`)
      if (Date.now() > deadline) throw new Error(`nats-server did not listen on ${port} within ${READY_TIMEOUT_MS} ms`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  const stop = async (): Promise<void> => {
    const proc = child
    child = undefined
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return
    const exited = new Promise((resolve) => proc.once('exit', resolve))
    proc.kill('SIGTERM')
    const timer = setTimeout(() => { proc.kill('SIGKILL') }, STOP_TIMEOUT_MS)
    await exited
    clearTimeout(timer)
  }
  const killOnExit = (): void => { child?.kill('SIGKILL') }
  process.once('exit', killOnExit)
  const dispose = async (): Promise<void> => {
    await stop()
    process.removeListener('exit', killOnExit)
    await rm(store, { recursive: true, force: true })
  }
  try {
    await start()
  } catch (error) {
    await dispose()
    throw error
  }
  return { url: `nats://127.0.0.1:${port}`, port, stop, start, dispose }
}
