import t from 'tap'
import type { RouteOptions } from 'fastify'
import SwaggerParser from '@apidevtools/swagger-parser'
import type { OpenAPIV3_1 } from 'openapi-types'
import { buildApp } from '../../src/app.js'
import { createThrowawayDatabase } from '../../src/tooling/throwaway-database.js'
import { testConfig } from '../helper.js'

const TOKEN = 'docs-test-token-0123456789'
const OPEN_PROBES = new Set(['/api/health/live'])

interface Route { method: string, url: string, schema: Record<string, unknown> | undefined }

/** OpenAPI writes `:id` as `{id}`. */
function openapiPath (url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')
}

for (const auth of [false, true]) {
  t.test(`/docs/json is valid OpenAPI 3 and documents every route (API_TOKENS ${auth ? 'set' : 'unset'})`, async (t) => {
    const db = await createThrowawayDatabase('docs')
    t.teardown(db.drop)
    // The route list comes from the app itself, so routes added later (the ledger's) are checked too.
    const routes: Route[] = []
    const app = await buildApp(testConfig(db.url, 'advisory', auth ? { API_TOKENS: TOKEN } : {}), {
      onRoute: (route: RouteOptions) => {
        for (const method of [route.method].flat()) routes.push({ method, url: route.url, schema: route.schema as Record<string, unknown> | undefined })
      },
    })
    t.teardown(async () => { await app.close() })

    const res = await app.inject({ url: '/docs/json', headers: auth ? { authorization: `Bearer ${TOKEN}` } : {} })
    t.equal(res.statusCode, 200)
    const document = res.json() as OpenAPIV3_1.Document
    t.equal(document.openapi, '3.1.0')
    // Throws with the list of problems when the document is not valid OpenAPI.
    await t.resolves(SwaggerParser.validate(structuredClone(document) as never), 'swagger-parser validates the document')

    const documented = routes.filter((route) => route.method !== 'HEAD' && route.schema?.hide !== true)
    t.ok(documented.some((route) => route.url === '/api/balance'), 'PATCH /api/balance is among the routes')
    t.ok(documented.some((route) => route.url === '/metrics'), 'GET /metrics is among the routes')
    t.notOk(documented.some((route) => route.url.startsWith('/docs')), 'the docs routes hide themselves')

    for (const route of documented) {
      const name = `${route.method} ${route.url}`
      const operation = document.paths?.[openapiPath(route.url)]?.[route.method.toLowerCase() as 'get']
      if (operation === undefined) { t.fail(`${name} is missing from the document`); continue }
      t.ok(operation.summary, `${name} has a summary`)
      const responses = operation.responses ?? {}
      const statuses = Object.keys(responses)
      t.ok(statuses.some((status) => /^2\d\d$/.test(status)), `${name} documents a success`)
      t.ok(statuses.includes('500'), `${name} documents 500`)
      for (const status of ['400', '408', '431']) t.ok(statuses.includes(status), `${name} documents ${status} (the HTTP layer's refusals)`)
      if (route.schema?.body !== undefined) t.ok(statuses.includes('413') && statuses.includes('415'), `${name} takes a body, so documents 413 and 415`)
      if (route.url.includes(':')) t.ok(statuses.includes('414'), `${name} has a path parameter, so documents 414`)
      for (const status of statuses) {
        t.ok((responses[status] as OpenAPIV3_1.ResponseObject).description !== 'Default Response', `${name} ${status} has a description`)
      }
      if (route.schema?.body !== undefined || route.schema?.params !== undefined || route.schema?.querystring !== undefined) {
        t.ok(statuses.includes('400'), `${name} takes input, so documents 400`)
      }
      // With tokens set: every /api route but the liveness probe, and /metrics (METRICS_AUTH defaults to token).
      const guarded = (route.url.startsWith('/api/') && !OPEN_PROBES.has(route.url)) || route.url === '/metrics'
      if (guarded && auth) {
        t.ok(statuses.includes('401'), `${name} documents 401`)
        t.same(operation.security, [{ bearerAuth: [] }], `${name} needs the bearer scheme`)
      } else {
        t.notOk(statuses.includes('401'), `${name} documents no 401`)
        t.equal(operation.security, undefined, `${name} needs no token`)
      }
    }

    t.same(Object.keys(document.components?.securitySchemes ?? {}), auth ? ['bearerAuth'] : [], 'the bearer scheme exactly when API_TOKENS is set')
    t.match(document.components?.schemas?.ErrorResponse, { type: 'object', required: ['statusCode', 'code', 'error', 'message'] })
    const balance = document.paths?.['/api/balance']?.patch
    t.match(balance?.requestBody, { content: { 'application/json': { example: { userId: 1, amount: -2 } } } }, 'the body has an example')
    t.match(balance?.responses?.['409'], { content: { 'application/json': { example: { code: 'INSUFFICIENT_FUNDS' } } } })
    t.match(balance?.responses?.['503'], { content: { 'application/json': { example: { code: 'DB_UNAVAILABLE' } } } })
    t.match(balance?.responses?.['503'], { headers: { 'Retry-After': { schema: { type: 'integer' } } } }, 'Retry-After (OVERLOADED) is documented')
  })
}

t.test('/docs serves Swagger UI with security headers', async (t) => {
  const db = await createThrowawayDatabase('docs-ui')
  t.teardown(db.drop)
  const app = await buildApp(testConfig(db.url))
  t.teardown(async () => { await app.close() })
  const page = await app.inject('/docs')
  const html = page.statusCode === 302 ? await app.inject(String(page.headers.location)) : page
  t.equal(html.statusCode, 200)
  t.match(html.headers['content-type'], /text\/html/)
  t.match(html.body, /swagger-ui/)
  t.match(html.headers['content-security-policy'], /default-src 'self'/)
  t.notMatch(html.headers['content-security-policy'], /upgrade-insecure-requests/)
  t.equal(html.headers['x-content-type-options'], 'nosniff')
})
