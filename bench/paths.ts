import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/** The project folder, found from this file whether it runs as bench/*.ts (tests) or dist/bench/*.js (npm run bench). */
function findRoot (): string {
  let dir = path.dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const manifest = path.join(dir, 'package.json')
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'balance-api') return dir
    const parent = path.dirname(dir)
    if (parent === dir) throw new Error('bench: cannot find the balance-api project folder')
    dir = parent
  }
}

export const projectRoot = findRoot()
export const serverScript = path.join(projectRoot, 'dist', 'src', 'server.js')
export const floorScript = path.join(projectRoot, 'bench', 'floor-server.mjs')
export const burstClientScript = path.join(projectRoot, 'test', 'support', 'burst-client.mjs')
