import { createHash, timingSafeEqual } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyRequest, RouteOptions } from 'fastify'
import { errorBody } from './error-handler.js'
import { errorResponse } from '../schemas/common.js'

/** Methods that change something. Keyed on the method, so every write route added later is covered. */
const WRITE_METHODS = new Set(['PATCH', 'POST', 'PUT', 'DELETE'])
const API_PREFIX = '/api'
export const SECURITY_SCHEME = 'bearerAuth'
const BEARER = /^Bearer +(\S+) *$/i
const UNAUTHORIZED_MESSAGE = 'Writes need an "Authorization: Bearer <token>" header with a valid token'
const UNAUTHORIZED_RESPONSE = errorResponse(
  'UNAUTHORIZED: no `Authorization: Bearer <token>` header, or not one of the tokens in API_TOKENS',
  { statusCode: 401, code: 'UNAUTHORIZED', error: 'Unauthorized', message: UNAUTHORIZED_MESSAGE },
)

function digest (token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest()
}

/** API_TOKENS (comma-separated) → their SHA-256 digests; none when unset. */
export function tokenDigests (apiTokens: string | undefined): Buffer[] {
  return (apiTokens ?? '').split(',').map((token) => token.trim()).filter((token) => token !== '').map(digest)
}

function isApiPath (path: string): boolean {
  return path === API_PREFIX || path.startsWith(`${API_PREFIX}/`) || path.startsWith(`${API_PREFIX}?`)
}

function methodsOf (route: RouteOptions): string[] {
  return Array.isArray(route.method) ? route.method : [route.method]
}

/** A route that needs a token: a write method under /api. */
export function isProtectedRoute (method: string, url: string): boolean {
  return WRITE_METHODS.has(method) && isApiPath(url)
}

/**
 * Optional bearer-token auth on writes. With API_TOKENS set, PATCH/POST/PUT/DELETE under /api need
 * `Authorization: Bearer <token>` (401 UNAUTHORIZED otherwise, before the body is even parsed); reads, health,
 * docs and metrics stay open. Tokens are compared as SHA-256 digests (equal length) with timingSafeEqual,
 * against every configured token, so the time does not depend on which token or how much of it matched.
 * Unset: nothing is checked and the OpenAPI document shows no security.
 */
export default fp(async function auth (fastify) {
  const digests = tokenDigests(fastify.config.API_TOKENS)
  if (digests.length === 0) return
  fastify.log.info({ tokens: digests.length }, 'writes under /api need a bearer token (API_TOKENS)')

  // Documents the requirement on every protected route, including those registered by later plugins.
  fastify.addHook('onRoute', (route) => {
    if (!methodsOf(route).some((method) => isProtectedRoute(method, route.url))) return
    const schema = route.schema ?? {}
    route.schema = {
      ...schema,
      security: [{ [SECURITY_SCHEME]: [] }],
      response: { ...(schema.response as Record<string, unknown> | undefined), 401: UNAUTHORIZED_RESPONSE },
    } as typeof schema
  })

  function authorized (request: FastifyRequest): boolean {
    const match = BEARER.exec(request.headers.authorization ?? '')
    if (match === null) return false
    const presented = digest(match[1]!)
    let ok = false
    for (const known of digests) ok = timingSafeEqual(presented, known) || ok
    return ok
  }

  fastify.addHook('onRequest', (request, reply, done) => {
    if (!isProtectedRoute(request.method, request.routeOptions.url ?? request.url) || authorized(request)) {
      done()
      return
    }
    void reply.code(401).header('www-authenticate', 'Bearer realm="balance-api"')
      .send(errorBody(401, 'UNAUTHORIZED', UNAUTHORIZED_MESSAGE))
  })
}, { name: 'auth', dependencies: ['config', 'error-handler'] })
