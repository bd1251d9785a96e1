/**
 * A free loopback port for a process a tool or test starts. The service's embedded PostgreSQL picks its port the same
 * way, so the one implementation stays with it and tooling takes it from here.
 */
export { freePort } from '../db/embedded-postgres.js'
