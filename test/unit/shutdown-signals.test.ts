import { EventEmitter } from 'node:events'
import t from 'tap'
import { onShutdownSignals, SIGNAL_ECHO_WINDOW_MS, type ShutdownSignal } from '../../src/shutdown-signals.js'

// The window logic alone, on a stand-in for `process` and a clock the test moves; test/system/shutdown.test.ts sends real
// signals to the built server.
function setUp (): { source: EventEmitter, calls: string[], advance: (ms: number) => void } {
  const source = new EventEmitter()
  const calls: string[] = []
  let clock = 1_000_000
  onShutdownSignals({
    close: (signal: ShutdownSignal) => { calls.push(`close ${signal}`) },
    insist: (signal: ShutdownSignal) => { calls.push(`insist ${signal}`) },
  }, source, () => clock)
  return { source, calls, advance: (ms) => { clock += ms } }
}

t.test('the first signal closes; its echo within the window does nothing; a later one insists', async (t) => {
  const { source, calls, advance } = setUp()
  source.emit('SIGINT')
  advance(3)
  source.emit('SIGINT')
  t.same(calls, ['close SIGINT'], 'the echo (npm forwarding the Ctrl-C) is not a second signal')
  advance(SIGNAL_ECHO_WINDOW_MS - 3)
  source.emit('SIGTERM')
  t.same(calls, ['close SIGINT'], 'still the echo at exactly the window')
  advance(1)
  source.emit('SIGINT')
  t.same(calls, ['close SIGINT', 'insist SIGINT'], 'past the window: insist')
})

t.test('either signal starts the close, and the other one counts as a repeat', async (t) => {
  const { source, calls, advance } = setUp()
  source.emit('SIGTERM')
  advance(SIGNAL_ECHO_WINDOW_MS + 1)
  source.emit('SIGINT')
  t.same(calls, ['close SIGTERM', 'insist SIGINT'])
})
