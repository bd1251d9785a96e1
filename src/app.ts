import Fastify, { type FastifyInstance, type FastifyServerOptions, type RouteOptions } from 'fastify'
import sensible from '@fastify/sensible'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Config } from './config.js'
import { clientErrorHandler } from './http-client-error-handler.js'
import { limits } from './limits.js'
import { QuietRequestLogController } from './log-controller.js'
import configPlugin from './plugins/config.js'
import requestId, { genReqId } from './plugins/request-id.js'
import securityHeaders from './plugins/security-headers.js'
import validation from './plugins/validation.js'
import jsonBody from './plugins/json-body.js'
import errorHandler, { frameworkErrors } from './plugins/error-handler.js'
import database from './plugins/database.js'
import migrations from './plugins/migrations.js'
import balanceService from './plugins/balance-service.js'
import docs from './plugins/docs.js'
import auth from './plugins/auth.js'
import metrics from './plugins/metrics.js'
import events from './events/plugin.js'
import healthRoutes from './routes/health.js'
import balanceRoutes from './routes/balance.js'
import userRoutes from './routes/users.js'
import transferRoutes from './routes/transfers.js'
import holdRoutes from './routes/holds.js'
import eventRoutes from './routes/events.js'
import { ErrorResponse } from './schemas/common.js'

/**
 * pino: JSON lines on stdout (or `stream`); human-readable (pino-pretty) with LOG_PRETTY=true, or when LOG_PRETTY
 * is unset and stdout is a terminal (a person watching `npm start`; pipes, files and containers get JSON).
 */
function loggerOptions (config: Config, stream: BuildAppOptions['logStream']): FastifyServerOptions['logger'] {
  if (config.LOG_LEVEL === 'silent') return false
  if (stream !== undefined) return { level: config.LOG_LEVEL, stream }
  const pretty = config.LOG_PRETTY ?? process.stdout.isTTY === true
  return {
    level: config.LOG_LEVEL,
    ...(pretty ? { transport: { target: 'pino-pretty', options: { translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true } } } : {}),
  }
}

export interface BuildAppOptions {
  /** Called for every route as it is registered (tests use it to list the routes the docs must show). */
  onRoute?: (route: RouteOptions) => void
  /** Where JSON log lines go instead of stdout. */
  logStream?: { write: (line: string) => void }
}

/**
 * Builds the app; plugins in one visible order: config → request ids, security headers, validation/JSON body/errors →
 * database → migrations → service → docs → auth → metrics → events → routes. Docs and auth come before the routes (and
 * /metrics) so that their onRoute hooks see every route, including routes added later.
 */
export async function buildApp (config: Config, options: BuildAppOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: loggerOptions(config, options.logStream),
    genReqId,
    requestIdHeader: false,
    bodyLimit: limits.bodyLimitBytes,
    pluginTimeout: limits.pluginTimeoutMs,
    routerOptions: { maxParamLength: limits.maxParamLength },
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    maxRequestsPerSocket: limits.maxRequestsPerSocket,
    // Passed to http.createServer: the headers timeout and the interval of Node's check must be set at creation.
    http: { maxHeaderSize: limits.maxHeaderBytes, headersTimeout: limits.headersTimeoutMs, connectionsCheckingInterval: limits.connectionsCheckingIntervalMs },
    forceCloseConnections: 'idle',
    // While closing, a request on an already accepted connection is still served (with `connection: close`)
    // rather than answered 503: its database is open until every connection has ended.
    return503OnClosing: false,
    logController: new QuietRequestLogController(),
    frameworkErrors,
    // Refusals before a request exists (unparsable HTTP, headers too large) get a `code` like every other error.
    clientErrorHandler,
  }).withTypeProvider<TypeBoxTypeProvider>()
  app.server.maxConnections = limits.maxConnections
  app.server.maxHeadersCount = limits.maxHeadersCount
  if (options.onRoute !== undefined) app.addHook('onRoute', options.onRoute)

  // JSON only: a text/plain body is refused with 415 instead of being parsed as a string.
  app.removeContentTypeParser('text/plain')
  await app.register(configPlugin, { config })
  await app.register(requestId)
  await app.register(securityHeaders)
  await app.register(sensible)
  await app.register(validation)
  await app.register(jsonBody)
  await app.register(errorHandler)
  app.addSchema(ErrorResponse)
  await app.register(database)
  await app.register(migrations)
  await app.register(balanceService)
  await app.register(docs)
  await app.register(auth)
  if (config.METRICS_ENABLED) await app.register(metrics)
  await app.register(events)

  await app.register(healthRoutes, { prefix: '/api' })
  await app.register(balanceRoutes, { prefix: '/api' })
  await app.register(userRoutes, { prefix: '/api' })
  await app.register(transferRoutes, { prefix: '/api' })
  await app.register(holdRoutes, { prefix: '/api' })
  await app.register(eventRoutes, { prefix: '/api' })

  await app.ready()
  return app
}
