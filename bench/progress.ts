/** Terminal progress for a planned list of steps: which step, how far, and an estimate of the time left. */
export class Progress {
  private readonly started = Date.now()
  private estimatedDone = 0
  private index = 0

  constructor (private readonly estimates: number[], private readonly log: (line: string) => void) {}

  get total (): number { return this.estimates.length }

  /** Announces the next step; the time left is the remaining estimates scaled by how the estimates have held so far. */
  step (label: string): void {
    const elapsedS = (Date.now() - this.started) / 1000
    const remaining = this.estimates.slice(this.index).reduce((a, b) => a + b, 0)
    const pace = this.estimatedDone > 0 ? elapsedS / this.estimatedDone : 1
    const width = String(this.total).length
    this.log(`[${String(this.index + 1).padStart(width)}/${this.total}] ${label}  · elapsed ${formatSeconds(elapsedS)}, ~${formatSeconds(remaining * pace)} left`)
    this.estimatedDone += this.estimates[this.index] ?? 0
    this.index += 1
  }
}

export function formatSeconds (seconds: number): string {
  const s = Math.max(0, Math.round(seconds))
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`
}
