import { OverloadedError } from '../domain/errors.js'
import { limits } from '../limits.js'

/**
 * Admission for work that waits for the database: every queue has a length cap and every waiter a deadline, and past
 * either the caller gets OverloadedError at once (503 OVERLOADED, Retry-After) with nothing applied.
 */

export interface GateLimits {
  /** At most this many run at once. */
  concurrency: number
  /** At most this many wait for a turn (FIFO); more are refused at once. */
  maxWaiting: number
  /** A waiter that has not started after this long is refused; work that started is never cut short. */
  waitTimeoutMs: number
}

interface Turn {
  start: () => void
  timer: NodeJS.Timeout
}

/** A concurrency cap with a bounded FIFO queue and a deadline per waiter. */
export class Gate {
  private running = 0
  private readonly queue: Turn[] = []

  constructor (private readonly name: string, private readonly limits: GateLimits) {}

  async run<T> (work: () => Promise<T>): Promise<T> {
    if (this.running >= this.limits.concurrency) await this.turn()
    else this.running += 1
    try {
      return await work()
    } finally {
      this.release()
    }
  }

  private async turn (): Promise<void> {
    if (this.queue.length >= this.limits.maxWaiting) throw overloaded(`${this.name} queue full`)
    await new Promise<void>((resolve, reject) => {
      const turn: Turn = {
        start: resolve,
        timer: setTimeout(() => {
          // The queue is at most maxWaiting long: a linear search on expiry is bounded.
          this.queue.splice(this.queue.indexOf(turn), 1)
          reject(overloaded(`${this.name} wait deadline passed`))
        }, this.limits.waitTimeoutMs),
      }
      this.queue.push(turn)
    })
  }

  /** Hands the slot straight to the next waiter (running stays the same), or frees it. */
  private release (): void {
    const next = this.queue.shift()
    if (next === undefined) {
      this.running -= 1
      return
    }
    clearTimeout(next.timer)
    next.start()
  }
}

/**
 * Callers that arrive while a call is in flight share its result: a flood of health checks costs one connection at a
 * time and never queues.
 */
export class SingleFlight<T> {
  private flight: Promise<T> | undefined

  constructor (private readonly work: () => Promise<T>) {}

  async run (): Promise<T> {
    if (this.flight === undefined) {
      this.flight = this.work().finally(() => { this.flight = undefined })
    }
    return await this.flight
  }
}

export function overloaded (reason: string): OverloadedError {
  return new OverloadedError(reason, limits.overloadRetryAfterSeconds)
}
