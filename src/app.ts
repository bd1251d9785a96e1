import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import sensible from '@fastify/sensible'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Config } from './config.js'
import { clientErrorHandler } from './client-error.js'
import { limits } from './limits.js'
import { QuietRequestLogController } from './log-controller.js'
import configPlugin from './plugins/config.js'
import validation from './plugins/validation.js'
import errorHandler from './plugins/error-handler.js'
import database from './plugins/database.js'
import migrations from './plugins/migrations.js'
import balanceService from './plugins/balance-service.js'
import healthRoutes from './routes/health.js'
import balanceRoutes from './routes/balance.js'
import userRoutes from './routes/users.js'
import transferRoutes from './routes/transfers.js'
import { ErrorResponse } from './schemas/common.js'

function loggerOptions (config: Config): FastifyServerOptions['logger'] {
  if (config.LOG_LEVEL === 'silent') return false
  return {
    level: config.LOG_LEVEL,
    ...(config.LOG_PRETTY ? { transport: { target: 'pino-pretty', options: { translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } } } : {}),
  }
}

/** Builds the app; plugins in one visible order: config → validation/errors → database → migrations → service → routes. */
export async function buildApp (config: Config): Promise<FastifyInstance> {
  const app = Fastify({
    logger: loggerOptions(config),
    bodyLimit: limits.bodyLimitBytes,
    routerOptions: { maxParamLength: 100 },
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    http: { maxHeaderSize: limits.maxHeaderBytes },
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    logController: new QuietRequestLogController(),
    // Refusals before a request exists (unparsable HTTP, headers too large) get a `code` like every other error.
    clientErrorHandler,
  }).withTypeProvider<TypeBoxTypeProvider>()

  // JSON only: a text/plain body is refused with 415 instead of being parsed as a string.
  app.removeContentTypeParser('text/plain')
  await app.register(configPlugin, { config })
  await app.register(sensible)
  await app.register(validation)
  await app.register(errorHandler)
  app.addSchema(ErrorResponse)
  await app.register(database)
  await app.register(migrations)
  await app.register(balanceService)

  await app.register(healthRoutes, { prefix: '/api' })
  await app.register(balanceRoutes, { prefix: '/api' })
  await app.register(userRoutes, { prefix: '/api' })
  await app.register(transferRoutes, { prefix: '/api' })

  await app.ready()
  return app
}
