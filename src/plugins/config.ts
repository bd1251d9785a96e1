import fp from 'fastify-plugin'
import fastifyEnv from '@fastify/env'
import { EnvSchema, type Config } from '../config.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

/**
 * Decorates `fastify.config` through @fastify/env from an already loaded Config (see loadConfig); `env: false` so
 * nothing from process.env leaks past what loadConfig decided (a test's admin DATABASE_URL, say).
 */
export default fp(async function config (fastify, opts: { config: Config }) {
  // env: false: the Config is complete; process.env must not fill in what it left unset (e.g. an empty DATABASE_URL).
  await fastify.register(fastifyEnv, { schema: EnvSchema, data: opts.config, dotenv: false, env: false })
}, { name: 'config' })
