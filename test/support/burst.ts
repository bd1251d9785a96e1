import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export interface BurstResult {
  wallMs: number
  statuses: Record<string, number>
  codes: Record<string, number>
  errors: Record<string, number>
  latencyMs: { p50: number, p99: number, max: number }
}

const CLIENT = fileURLToPath(new URL('./burst-client.mjs', import.meta.url))

/** Runs burst-client.mjs in a child process: `count` simultaneous requests, one fresh socket each. */
export async function burst (url: string, count: number, body: unknown, method = 'PATCH'): Promise<BurstResult> {
  return await new Promise((resolve, reject) => {
    execFile(process.execPath, [CLIENT, url, String(count), JSON.stringify(body), method], { maxBuffer: 1024 * 1024, timeout: 300_000 }, (error, stdout, stderr) => {
      if (error !== null) { reject(new Error(`burst client failed: ${error.message} ${stderr}`)); return }
      resolve(JSON.parse(stdout) as BurstResult)
    })
  })
}
