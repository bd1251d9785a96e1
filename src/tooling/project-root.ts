import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * The project folder, found by walking up from this file to the package.json named balance-api, so it is the same
 * whether the code runs from source (src/tooling/*.ts under tap) or compiled (dist/src/tooling/*.js).
 */
function findRoot (): string {
  let dir = path.dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const manifest = path.join(dir, 'package.json')
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'balance-api') return dir
    const parent = path.dirname(dir)
    if (parent === dir) throw new Error('cannot find the balance-api project folder above src/tooling')
    dir = parent
  }
}

export const projectRoot = findRoot()
/** The built service, as `npm start` runs it (npm run build writes it). */
export const serverScript = path.join(projectRoot, 'dist', 'src', 'server.js')

