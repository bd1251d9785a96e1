/**
 * Which shutdown signals start a graceful close, and which one means "stop now".
 *
 * Ctrl-C at a terminal sends SIGINT to the whole foreground process group, and `npm start` forwards the signal it got
 * to the service as well, so under npm one Ctrl-C reaches the service twice within milliseconds. Treating that echo as a
 * person insisting made every Ctrl-C of `npm start` exit 1 with "second SIGINT" and skip the graceful close. A repeat
 * within SIGNAL_ECHO_WINDOW_MS of the first signal is taken as that echo; a later one still exits at once.
 */
export const SHUTDOWN_SIGNALS = ['SIGINT', 'SIGTERM'] as const
export type ShutdownSignal = typeof SHUTDOWN_SIGNALS[number]

/** Far above the echo (same process tree, < 10 ms), far below a person pressing Ctrl-C again on a stuck close. */
export const SIGNAL_ECHO_WINDOW_MS = 1_000

export interface ShutdownSignalHandlers {
  /** The first signal: start the graceful close. */
  close: (signal: ShutdownSignal) => void
  /** A signal past the echo window while closing: exit at once. */
  insist: (signal: ShutdownSignal) => void
}

/** What the handlers listen on: `process`, or a stand-in in the unit test. */
export interface SignalSource {
  on: (event: ShutdownSignal, listener: () => void) => unknown
}

/** Installs the handlers for the life of the process. `now` is injectable so the window can be tested without waiting. */
export function onShutdownSignals (
  handlers: ShutdownSignalHandlers,
  source: SignalSource = process,
  now: () => number = Date.now,
): void {
  let firstAt: number | undefined
  for (const signal of SHUTDOWN_SIGNALS) {
    source.on(signal, () => {
      if (firstAt === undefined) {
        firstAt = now()
        handlers.close(signal)
      } else if (now() - firstAt > SIGNAL_ECHO_WINDOW_MS) {
        handlers.insist(signal)
      }
    })
  }
}
