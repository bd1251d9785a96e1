import { Type } from 'typebox'

export const HealthResponse = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('error')]),
  db: Type.Union([Type.Literal('up'), Type.Literal('down')]),
})

export const healthSchema = {
  summary: 'Service and database health',
  description: '200 while PostgreSQL answers; 503 while it cannot be reached.',
  tags: ['health'],
  response: {
    200: HealthResponse,
    503: HealthResponse,
  },
}
