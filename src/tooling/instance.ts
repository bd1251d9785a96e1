import { spawn, type ChildProcess } from 'node:child_process'
import http from 'node:http'

/**
 * Service instances for the soak: child processes of the built server (or any command given), each on its own
 * loopback port, all on one database. An instance can be killed with SIGKILL (a crash) and started again on the
 * same port; an exit the soak did not cause after the instance was ready is counted, because a crash is a violation.
 *
 * Starting is supervised as an orchestrator would: a boot that fails (the service exits non-zero, e.g. because the
 * fault injector terminated its migration connection) is counted and tried again, at most BOOT_ATTEMPTS times.
 */
const READY_TIMEOUT_MS = 90_000
const BOOT_ATTEMPTS = 5
const STOP_TIMEOUT_MS = 15_000
const TAIL_LINES = 40

export interface InstanceOptions {
  label: string
  port: number
  command: string[]
  env: Record<string, string>
  cwd: string
}

export class Instance {
  readonly url: string
  /** Exits the soak did not ask for, after the instance was ready. */
  unexpectedExits = 0
  /** Boots that failed and were tried again. */
  bootFailures = 0
  private child: ChildProcess | undefined
  private expectingExit = false
  private ready = false
  private readonly lines: string[] = []

  constructor (private readonly options: InstanceOptions) {
    this.url = `http://127.0.0.1:${options.port}`
  }

  get label (): string { return this.options.label }
  get pid (): number | undefined { return this.child?.pid }
  get running (): boolean { return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null }
  tail (): string { return this.lines.join('\n') }

  async start (): Promise<void> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        await this.boot()
        return
      } catch (error) {
        this.bootFailures += 1
        if (attempt >= BOOT_ATTEMPTS) throw error
        await new Promise((resolve) => setTimeout(resolve, 500 * attempt))
      }
    }
  }

  private async boot (): Promise<void> {
    const [command, ...args] = this.options.command
    if (command === undefined) throw new Error('no server command')
    this.expectingExit = false
    this.ready = false
    const child = spawn(command, args, {
      cwd: this.options.cwd,
      env: { ...this.options.env, PORT: String(this.options.port), HOST: '127.0.0.1', LOG_PRETTY: 'false' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.child = child
    const keep = (chunk: Buffer): void => {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        this.lines.push(line.slice(0, 2000))
        if (this.lines.length > TAIL_LINES) this.lines.shift()
      }
    }
    child.stdout?.on('data', keep)
    child.stderr?.on('data', keep)
    child.once('exit', (code, signal) => {
      if (!this.expectingExit && this.ready) {
        this.unexpectedExits += 1
        this.lines.push(`[soak] ${this.label} exited unexpectedly: code ${code} signal ${signal}`)
      }
    })
    const deadline = Date.now() + READY_TIMEOUT_MS
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${this.label} exited before it was ready:\n${this.tail()}`)
      if (await healthy(this.url)) {
        this.ready = true
        return
      }
      if (Date.now() > deadline) {
        await this.kill()
        throw new Error(`${this.label} was not ready within ${READY_TIMEOUT_MS} ms:\n${this.tail()}`)
      }
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
  }

  /** SIGKILL: a crash, no graceful close. */
  async kill (): Promise<void> {
    await this.stopWith('SIGKILL')
  }

  /** SIGTERM: the graceful close. */
  async stop (): Promise<void> {
    await this.stopWith('SIGTERM')
  }

  private async stopWith (signal: NodeJS.Signals): Promise<void> {
    const child = this.child
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
    this.expectingExit = true
    const exited = new Promise<void>((resolve) => { child.once('exit', () => { resolve() }) })
    child.kill(signal)
    const timer = setTimeout(() => { child.kill('SIGKILL') }, STOP_TIMEOUT_MS)
    await exited
    clearTimeout(timer)
  }
}

async function healthy (url: string): Promise<boolean> {
  return await new Promise((resolve) => {
    const request = http.get(`${url}/api/health`, { timeout: 2000, agent: false }, (response) => {
      response.resume()
      response.on('end', () => { resolve(response.statusCode === 200) })
    })
    request.on('timeout', () => { request.destroy() })
    request.on('error', () => { resolve(false) })
  })
}
