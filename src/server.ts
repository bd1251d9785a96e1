import path from 'node:path'
import closeWithGrace from 'close-with-grace'
import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import { loadConfig, type Config } from './config.js'
import { limits } from './limits.js'
import { onShutdownSignals, SHUTDOWN_SIGNALS, type ShutdownSignal } from './shutdown-signals.js'

/**
 * Starts the service: config, app, listen. On SIGTERM/SIGINT it closes gracefully: the listener closes at once
 * (new connections are refused), idle keep-alive sockets are closed, requests already accepted finish and are
 * answered with `connection: close`, then the pool and the embedded PostgreSQL close and the process exits 0.
 * Past limits.shutdownGraceMs it exits 1 without waiting further; a second signal exits 1 at once, unless it is the echo
 * of the first (within SIGNAL_ECHO_WINDOW_MS: npm forwards the Ctrl-C the terminal already sent).
 */
const LOG_FLUSH_TIMEOUT_MS = 1_000

/** close-with-grace exits the process as soon as the close resolves: write out the buffered log lines first. */
async function flushLog (log: unknown): Promise<void> {
  const flush = (log as { flush?: (done: () => void) => void }).flush
  if (typeof flush !== 'function') return
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, LOG_FLUSH_TIMEOUT_MS)
    flush.call(log, () => { clearTimeout(timer); resolve() })
  })
}

/** Where the data lives, for the start line: the embedded folder, or DATABASE_URL without its credentials. */
function databaseShown (config: Config): string {
  if (config.DATABASE_URL === undefined) return `embedded PostgreSQL, data in ${path.resolve(config.PGDATA_DIR)}`
  try {
    const url = new URL(config.DATABASE_URL)
    return `PostgreSQL at ${url.host}${url.pathname}`
  } catch {
    return 'PostgreSQL at DATABASE_URL'
  }
}

/** One line that tells a person where the service is, where its docs are, how it changes balances and where the data lives. */
function logStartLine (app: FastifyInstance, config: Config): void {
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : config.PORT
  const anyHost = config.HOST === '0.0.0.0' || config.HOST === '::'
  const host = anyHost ? 'localhost' : config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST
  const url = `http://${host}:${port}`
  const strategy = `${config.BALANCE_STRATEGY}, group commit ${config.GROUP_COMMIT}`
  // Everything in the message (no fields), so that the pretty line a person reads at a terminal says it once.
  app.log.info(`balance-api ready at ${url} (docs: ${url}/docs), strategy ${strategy}, ${databaseShown(config)}`)
}

async function main (): Promise<void> {
  const config = loadConfig()
  const app = await buildApp(config)

  // close-with-grace closes on errors and exits on time-out; the signals are ours (src/shutdown-signals.ts), so that
  // the Ctrl-C that npm forwards a second time is not taken for a person insisting.
  let closing = false
  const closer = closeWithGrace({ delay: limits.shutdownGraceMs, logger: app.log, skip: [...SHUTDOWN_SIGNALS] }, async ({ err }) => {
    closing = true
    if (err !== undefined) app.log.error({ err }, 'closing after an error')
    await app.close()
    app.log.info('closed')
    await flushLog(app.log)
  })
  const exitAtOnce = (signal: ShutdownSignal): void => {
    app.log.error(`second ${signal}, exiting`)
    process.exit(1)
  }
  onShutdownSignals({
    close: (signal) => {
      // Already closing after an error: a signal now means stop, as close-with-grace did before.
      if (closing) { exitAtOnce(signal); return }
      app.log.info({ signal }, 'closing: no new connections, in-flight requests finish')
      void closer.close()
    },
    insist: exitAtOnce,
  })

  await app.listen({ port: config.PORT, host: config.HOST, backlog: limits.listenBacklog })
  logStartLine(app, config)
}

main().catch((error: unknown) => {
  // Config errors name the variable; print the message plainly so the operator sees it at once.
  console.error(error instanceof Error ? error.message : error)
  process.exit(1)
})
