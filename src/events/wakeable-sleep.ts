/** The pause of a background loop between rounds, cut short by wake() (a stop must not wait out a long interval). */
export class WakeableSleep {
  private wakeUp: (() => void) | undefined

  async sleep (ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms)
      function done (): void { clearTimeout(timer); resolve() }
      this.wakeUp = done
    })
    this.wakeUp = undefined
  }

  wake (): void {
    this.wakeUp?.()
  }
}
