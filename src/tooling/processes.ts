import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { promisify } from 'node:util'
import { freePort } from './ports.js'
import { projectRoot } from './project-root.js'

const READY_TIMEOUT_MS = 60_000
const STOP_TIMEOUT_MS = 15_000
const TAIL_LINES = 40

/** A server the bench started as a child process (the built service or the floor), listening on 127.0.0.1. */
export interface ChildServer {
  label: string
  pid: number
  url: string
  /** Last lines it wrote, for error messages. */
  tail: () => string
  stop: () => Promise<void>
}

export async function startChildServer (label: string, script: string, env: Record<string, string>): Promise<ChildServer> {
  const port = await freePort()
  const child: ChildProcess = spawn(process.execPath, [script], {
    cwd: projectRoot,
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1', LOG_PRETTY: 'false' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const lines: string[] = []
  const keep = (chunk: Buffer): void => {
    for (const line of chunk.toString().split('\n').filter(Boolean)) {
      lines.push(line)
      if (lines.length > TAIL_LINES) lines.shift()
    }
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  const url = `http://127.0.0.1:${port}`
  const tail = (): string => lines.join('\n')
  // If the bench itself dies (an uncaught error), its servers must not outlive it holding ports and connections.
  const killOnExit = (): void => { child.kill('SIGKILL') }
  process.once('exit', killOnExit)
  const exited = new Promise<void>((resolve) => { child.once('exit', () => { process.removeListener('exit', killOnExit); resolve() }) })

  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGTERM')
    const timer = setTimeout(() => { child.kill('SIGKILL') }, STOP_TIMEOUT_MS)
    await exited
    clearTimeout(timer)
  }

  const deadline = Date.now() + READY_TIMEOUT_MS
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${label} exited with ${child.exitCode} before it was ready:\n${tail()}`)
    try {
      const response = await fetch(`${url}/api/health`)
      if (response.status === 200) break
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      await stop()
      throw new Error(`${label} was not ready within ${READY_TIMEOUT_MS} ms:\n${tail()}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  if (child.pid === undefined) throw new Error(`${label}: no pid`)
  return { label, pid: child.pid, url, tail, stop }
}

let clockTicks: number | undefined
async function ticksPerSecond (): Promise<number> {
  if (clockTicks === undefined) {
    try {
      const { stdout } = await promisify(execFile)('getconf', ['CLK_TCK'])
      clockTicks = Number(stdout.trim()) || 100
    } catch {
      clockTicks = 100
    }
  }
  return clockTicks
}

/** RSS now and its high-water mark (kB), from /proc/<pid>/status. */
async function memory (pid: number): Promise<{ rssKb: number, hwmKb: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0)
  return { rssKb: field('VmRSS'), hwmKb: field('VmHWM') }
}

/** User + system CPU time of a process in ms, from /proc/<pid>/stat (fields 14 and 15, after the command name). */
async function cpuMs (pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const ticks = Number(fields[11]) + Number(fields[12])
  return (ticks * 1000) / await ticksPerSecond()
}

export interface ProcessUsage {
  /** Peak resident memory during the measurement, MB (max of VmHWM after a reset and 50 ms VmRSS samples). */
  peakRssMb: number
  /** CPU time (user + system) the process spent during the measurement, ms. */
  cpuMs: number
}

/**
 * Watches a process while a measurement runs. The kernel's high-water mark is reset first (clear_refs 5) so VmHWM is
 * the peak of this measurement; where that is not allowed, the 50 ms samples of VmRSS stand in.
 */
export async function watchProcess (pid: number): Promise<{ stop: () => Promise<ProcessUsage> }> {
  let hwmReset = true
  try {
    await writeFile(`/proc/${pid}/clear_refs`, '5')
  } catch {
    hwmReset = false
  }
  const cpuStart = await cpuMs(pid)
  let peakKb = (await memory(pid)).rssKb
  const timer = setInterval(() => {
    memory(pid).then(({ rssKb }) => { peakKb = Math.max(peakKb, rssKb) }, () => {})
  }, 50)
  return {
    stop: async () => {
      clearInterval(timer)
      const { rssKb, hwmKb } = await memory(pid)
      peakKb = Math.max(peakKb, rssKb, hwmReset ? hwmKb : 0)
      return { peakRssMb: peakKb / 1024, cpuMs: await cpuMs(pid) - cpuStart }
    },
  }
}
