import path from 'node:path'
import { projectRoot } from '../src/tooling/project-root.js'

/** The bench's own scripts, run as child processes (plain .mjs: tsc does not compile them, they run from source). */
export const floorScript = path.join(projectRoot, 'bench', 'floor-server.mjs')
export const burstClientScript = path.join(projectRoot, 'bench', 'burst-client.mjs')
export const clientBurstScript = path.join(projectRoot, 'bench', 'client-burst.mjs')
