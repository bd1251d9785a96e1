import { createHash, timingSafeEqual } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import type { Config } from '../config.js'
import { errorBody } from './error-handler.js'
import { errorResponse } from '../schemas/common.js'

/** Methods that only read. Everything else (PATCH, POST, PUT, DELETE, OPTIONS, …) needs a read-write token. */
const READ_METHODS = new Set(['GET', 'HEAD'])
const API_PREFIX = '/api'
const DOCS_PREFIX = '/docs'
const METRICS_PATH = '/metrics'
/**
 * Only the liveness probe stays open: an orchestrator restarts a process that stops answering it, and it says
 * nothing but "this process runs". The readiness check (/api/health) says whether the database is up, which is the
 * operator's business: a readiness probe sends a token like any client (the Docker HEALTHCHECK sends the first one).
 */
const OPEN_API_PATHS = new Set(['/api/health/live'])
export const SECURITY_SCHEME = 'bearerAuth'
const BEARER = /^Bearer +(\S+) *$/i
const UNAUTHORIZED_MESSAGE = 'This route needs an "Authorization: Bearer <token>" header with a valid token'
const FORBIDDEN_MESSAGE = 'This token may only read (it is one of API_READ_TOKENS); a write needs one of API_TOKENS'
const WWW_AUTHENTICATE = 'Bearer realm="balance-api"'
const UNAUTHORIZED_RESPONSE = {
  ...errorResponse(
    'UNAUTHORIZED: no `Authorization: Bearer <token>` header, or not one of the configured tokens',
    { statusCode: 401, code: 'UNAUTHORIZED', error: 'Unauthorized', message: UNAUTHORIZED_MESSAGE },
  ),
  headers: { 'WWW-Authenticate': { type: 'string', const: WWW_AUTHENTICATE, description: 'Always sent with a 401' } },
}
const FORBIDDEN_RESPONSE = errorResponse(
  'FORBIDDEN: the token is a read-only one (API_READ_TOKENS) and this route writes',
  { statusCode: 403, code: 'FORBIDDEN', error: 'Forbidden', message: FORBIDDEN_MESSAGE },
)

function digest (token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest()
}

/** A comma-separated token list → their SHA-256 digests; none when unset. */
export function tokenDigests (tokens: string | undefined): Buffer[] {
  return (tokens ?? '').split(',').map((token) => token.trim()).filter((token) => token !== '').map(digest)
}

function pathOf (url: string): string {
  const query = url.indexOf('?')
  return query === -1 ? url : url.slice(0, query)
}

function isApiPath (path: string): boolean {
  return path === API_PREFIX || path.startsWith(`${API_PREFIX}/`)
}

function isDocsPath (path: string): boolean {
  return path === DOCS_PREFIX || path.startsWith(`${DOCS_PREFIX}/`)
}

function methodsOf (route: RouteOptions): string[] {
  return Array.isArray(route.method) ? route.method : [route.method]
}

export interface AuthPolicy {
  /** True when a request to `path` (a route pattern or a raw path) needs a token. */
  needsToken: (path: string) => boolean
}

/** Which paths need a token, from the configuration: every /api route but the liveness probe, /metrics and /docs by switch. */
export function authPolicy (config: Pick<Config, 'METRICS_AUTH' | 'DOCS_AUTH'>): AuthPolicy {
  return {
    needsToken (url) {
      const path = pathOf(url)
      if (isApiPath(path)) return !OPEN_API_PATHS.has(path)
      if (path === METRICS_PATH) return config.METRICS_AUTH === 'token'
      if (isDocsPath(path)) return config.DOCS_AUTH === 'token'
      return false
    },
  }
}

/** Documents the requirement on a route that needs a token: the bearer scheme, 401, and 403 on writes. */
function documentSecurity (route: RouteOptions, readTokensSet: boolean): void {
  const schema = route.schema ?? {}
  const writes = methodsOf(route).some((method) => !READ_METHODS.has(method))
  route.schema = {
    ...schema,
    security: [{ [SECURITY_SCHEME]: [] }],
    response: {
      ...(schema.response as Record<string, unknown> | undefined),
      401: UNAUTHORIZED_RESPONSE,
      ...(writes && readTokensSet ? { 403: FORBIDDEN_RESPONSE } : {}),
    },
  } as typeof schema
}

/**
 * Optional bearer-token auth. With API_TOKENS (read and write) or API_READ_TOKENS (GET/HEAD only) set, every route
 * under /api but the liveness probe needs `Authorization: Bearer <token>` (401 UNAUTHORIZED otherwise, before the
 * body is even parsed), and so do /metrics and /docs unless METRICS_AUTH / DOCS_AUTH say `open`. A read-only token
 * on a write is 403 FORBIDDEN. Tokens are compared as SHA-256 digests (equal length) with timingSafeEqual, against
 * every configured token, so the time does not depend on which token or how much of it matched.
 * Unset: nothing is checked and the OpenAPI document shows no security.
 */
export default fp(async function auth (fastify) {
  const writeDigests = tokenDigests(fastify.config.API_TOKENS)
  const readDigests = tokenDigests(fastify.config.API_READ_TOKENS)
  if (writeDigests.length + readDigests.length === 0) return
  const policy = authPolicy(fastify.config)
  fastify.log.info({ tokens: writeDigests.length, readTokens: readDigests.length }, 'routes under /api (but the liveness probe) need a bearer token')

  // Documents the requirement on every protected route, including those registered by later plugins (/metrics).
  fastify.addHook('onRoute', (route) => {
    if (policy.needsToken(route.url)) documentSecurity(route, readDigests.length > 0)
  })

  /** Which kind of token the request carries, if any. */
  function grant (request: FastifyRequest): 'write' | 'read' | undefined {
    const match = BEARER.exec(request.headers.authorization ?? '')
    if (match === null) return undefined
    const presented = digest(match[1]!)
    let write = false
    let read = false
    for (const known of writeDigests) write = timingSafeEqual(presented, known) || write
    for (const known of readDigests) read = timingSafeEqual(presented, known) || read
    return write ? 'write' : read ? 'read' : undefined
  }

  function refuse (reply: FastifyReply, statusCode: 401 | 403): void {
    if (statusCode === 401) {
      void reply.code(401).header('www-authenticate', WWW_AUTHENTICATE).send(errorBody(401, 'UNAUTHORIZED', UNAUTHORIZED_MESSAGE))
    } else {
      void reply.code(403).send(errorBody(403, 'FORBIDDEN', FORBIDDEN_MESSAGE))
    }
  }

  fastify.addHook('onRequest', (request, reply, done) => {
    // The route pattern when one matched (so `/api/users/:id` and not the raw id), else the path itself.
    if (!policy.needsToken(request.routeOptions.url ?? request.url)) {
      done()
      return
    }
    const granted = grant(request)
    if (granted === undefined) refuse(reply, 401)
    else if (granted === 'read' && !READ_METHODS.has(request.method)) refuse(reply, 403)
    else done()
  })
}, { name: 'auth', dependencies: ['config', 'error-handler'] })
