import { Type } from 'typebox'
import { commonErrors } from './common.js'

export const HealthResponse = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('error')], { description: '`ok` while the database answers' }),
  db: Type.Union([Type.Literal('up'), Type.Literal('down')], { description: 'Whether PostgreSQL answered a trivial query' }),
}, { examples: [{ status: 'ok', db: 'up' }] })

export const LivenessResponse = Type.Object({
  status: Type.Literal('ok'),
}, { examples: [{ status: 'ok' }] })

export const healthSchema = {
  summary: 'Service and database health (readiness)',
  description: '200 while PostgreSQL answers; 503 `{status:"error", db:"down"}` while it cannot be reached.',
  tags: ['health'],
  response: {
    200: { ...HealthResponse, description: 'The service and its database are up' },
    503: { ...HealthResponse, description: 'PostgreSQL cannot be reached', examples: [{ status: 'error', db: 'down' }] },
    500: commonErrors[500],
  },
}

export const livenessSchema = {
  summary: 'Process liveness',
  description: 'The process alone: answers 200 without touching the database, for an orchestrator\'s liveness probe ' +
    '(restarting the service does not help while the database is down; use /api/health for readiness).',
  tags: ['health'],
  response: {
    200: { ...LivenessResponse, description: 'The process is up and serving HTTP' },
    500: commonErrors[500],
  },
}
