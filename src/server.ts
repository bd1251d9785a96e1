import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { loadConfig } from './config.js'
import { limits } from './limits.js'

/**
 * Starts the service: config, app, listen. On SIGTERM/SIGINT it closes gracefully: the listener closes at once
 * (new connections are refused), idle keep-alive sockets are closed, requests already accepted finish and are
 * answered with `connection: close`, then the pool and the embedded PostgreSQL close and the process exits 0.
 * Past limits.shutdownGraceMs it exits 1 without waiting further; a second signal exits 1 at once.
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

async function main (): Promise<void> {
  const config = loadConfig()
  const app = await buildApp(config)

  closeWithGrace({ delay: limits.shutdownGraceMs, logger: app.log }, async ({ signal, err }) => {
    if (err !== undefined) app.log.error({ err }, 'closing after an error')
    else app.log.info({ signal }, 'closing: no new connections, in-flight requests finish')
    await app.close()
    app.log.info('closed')
    await flushLog(app.log)
  })

  await app.listen({ port: config.PORT, host: config.HOST, backlog: limits.listenBacklog })
}

main().catch((error: unknown) => {
  // Config errors name the variable; print the message plainly so the operator sees it at once.
  console.error(error instanceof Error ? error.message : error)
  process.exit(1)
})
