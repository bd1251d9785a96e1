import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { RouteOptions } from 'fastify'
import { SECURITY_SCHEME } from './auth.js'
import { bodyErrors, pathErrors, transportErrors, unreadableRequest } from '../schemas/common.js'

export const DOCS_PREFIX = '/docs'

/**
 * The OpenAPI 3 document, generated from the TypeBox schemas of every route registered after this plugin
 * (register it before the routes), at /docs/json, with Swagger UI at /docs. Shared schemas (addSchema with a $id,
 * such as ErrorResponse) become components named by their $id.
 */
/**
 * Adds the answers a route gives before its own code runs, so that the document lists every status the service
 * sends: the HTTP layer's 400/408/431 on every route, 413/415 where a body is taken, 414 where a path has a parameter.
 * A response the route already describes (its own 400) is kept.
 */
export function documentFrameworkAnswers (route: RouteOptions): void {
  const schema = route.schema
  if (schema === undefined || schema.hide === true) return
  const response = (schema.response ?? {}) as Record<string, unknown>
  schema.response = {
    400: unreadableRequest,
    ...transportErrors,
    ...(schema.body === undefined ? {} : bodyErrors),
    ...(route.url.includes(':') ? pathErrors : {}),
    ...response,
  }
}

export default fp(async function docs (fastify) {
  // The bearer scheme is shown (and applied to the routes that need it by the auth plugin) only when tokens are set.
  const tokensSet = fastify.config.API_TOKENS !== undefined || fastify.config.API_READ_TOKENS !== undefined
  const securitySchemes: Record<string, { type: 'http', scheme: string, description: string }> = tokensSet
    ? {
        [SECURITY_SCHEME]: {
          type: 'http',
          scheme: 'bearer',
          description: 'One of API_TOKENS (read and write) or API_READ_TOKENS (GET only); needed on every route under /api ' +
            'but the liveness probe, and on /metrics and /docs unless METRICS_AUTH / DOCS_AUTH are `open`',
        },
      }
    : {}
  fastify.addHook('onRoute', documentFrameworkAnswers)
  await fastify.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'balance-api',
        version: '1.0.0',
        description: 'User balances in PostgreSQL, changed exactly under heavy concurrency. ' +
          'Amounts and balances are integers in the smallest unit (cents, points). ' +
          'Errors have the shape `{statusCode, code, error, message}`; clients branch on `code`.',
      },
      tags: [
        { name: 'balance', description: 'Changing balances' },
        { name: 'users', description: 'Users and their balances' },
        { name: 'health', description: 'Liveness and readiness' },
        { name: 'operations', description: 'Metrics for monitoring' },
      ],
      components: { securitySchemes },
    },
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) => typeof json.$id === 'string' ? json.$id : `def-${i}`,
    },
  })
  await fastify.register(swaggerUi, {
    routePrefix: DOCS_PREFIX,
    uiConfig: { docExpansion: 'list', deepLinking: true, tryItOutEnabled: false, validatorUrl: null },
  })
}, { name: 'docs', dependencies: ['config'] })
