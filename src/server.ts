import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { loadConfig } from './config.js'
import { limits } from './limits.js'

/** Starts the service: config, app, listen; closes gracefully on SIGTERM/SIGINT (in-flight requests finish). */
async function main (): Promise<void> {
  const config = loadConfig()
  const app = await buildApp(config)
  app.server.maxConnections = limits.maxConnections
  app.server.maxRequestsPerSocket = limits.maxRequestsPerSocket

  closeWithGrace({ delay: limits.shutdownGraceMs }, async ({ signal, err }) => {
    if (err !== undefined) app.log.error({ err }, 'closing after an error')
    else app.log.info({ signal }, 'closing')
    await app.close()
  })

  await app.listen({ port: config.PORT, host: config.HOST, backlog: limits.listenBacklog })
}

main().catch((error: unknown) => {
  // Config errors name the variable; print the message plainly so the operator sees it at once.
  console.error(error instanceof Error ? error.message : error)
  process.exit(1)
})
