import fp from 'fastify-plugin'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import { SECURITY_SCHEME } from './auth.js'

export const DOCS_PREFIX = '/docs'

/**
 * The OpenAPI 3 document, generated from the TypeBox schemas of every route registered after this plugin
 * (register it before the routes), at /docs/json, with Swagger UI at /docs. Shared schemas (addSchema with a $id,
 * such as ErrorResponse) become components named by their $id.
 */
export default fp(async function docs (fastify) {
  // The bearer scheme is shown (and applied to write routes by the auth plugin) only when API_TOKENS is set.
  const securitySchemes: Record<string, { type: 'http', scheme: string, description: string }> = fastify.config.API_TOKENS === undefined
    ? {}
    : {
        [SECURITY_SCHEME]: {
          type: 'http',
          scheme: 'bearer',
          description: 'One of the tokens in API_TOKENS; needed for PATCH/POST/PUT/DELETE under /api',
        },
      }
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
