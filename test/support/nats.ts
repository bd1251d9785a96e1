import type { Test } from 'tap'
import { startNatsServer, type NatsServer } from '../../src/tooling/nats-server.js'

export { NATS_SERVER, type NatsServer } from '../../src/tooling/nats-server.js'

/** A nats-server with JetStream of the test's own (src/tooling/nats-server.ts), stopped and removed at the test's end. */
export async function startNats (t: Test): Promise<NatsServer> {
  const nats = await startNatsServer()
  t.teardown(nats.dispose)
  return nats
}
