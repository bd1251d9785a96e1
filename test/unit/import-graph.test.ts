import { existsSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'

/**
 * Folders with one job each, arrows one way. Every import of every .ts/.mjs file under the folders below is read
 * (static, type-only, re-exports and dynamic import()), resolved to a file, and checked:
 * - a folder imports only the folders its row allows (and itself);
 * - no two folders import each other;
 * - no file of the service (src/ outside src/tooling/) imports the dev tooling: npm start never loads it;
 * - no file-level cycle anywhere.
 */
const ROOT = process.cwd()
const FOLDERS = ['src', 'db', 'test', 'bench', 'deploy', 'reliability'] as const
type Folder = typeof FOLDERS[number]

/** Which other folders a folder may import. test may import anything; nothing but test imports test/ or bench/. */
const ALLOWED: Record<Folder, Folder[]> = {
  test: ['src', 'db', 'bench', 'deploy', 'reliability'],
  bench: ['src', 'db'],
  reliability: ['src', 'db', 'deploy'],
  deploy: ['src', 'db'],
  src: ['db'],
  db: [],
}
const TOOLING = 'src/tooling/'
/** Bounds the walk: a folder deeper than this is not ours (and a symlink loop cannot hang the test). */
const MAX_DEPTH = 8

async function sourceFiles (dir: string, depth = 0): Promise<string[]> {
  if (depth > MAX_DEPTH || !existsSync(dir)) return []
  const files: string[] = []
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory() && entry.name !== 'node_modules' && !entry.name.startsWith('.')) files.push(...await sourceFiles(full, depth + 1))
    else if (entry.isFile() && /\.(ts|mjs)$/.test(entry.name) && !entry.name.endsWith('.d.ts')) files.push(full)
  }
  return files
}

/** Every module specifier in the text: `import … from`, `export … from`, `import '…'`, `import('…')`. */
function specifiers (text: string): string[] {
  const found: string[] = []
  const patterns = [
    /^\s*(?:import|export)\s[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/gm,
    /^\s*import\s*['"]([^'"]+)['"]/gm,
    /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g,
  ]
  for (const pattern of patterns) for (const match of text.matchAll(pattern)) found.push(match[1]!)
  return found
}

/** The project file a relative specifier names (a .js import of a .ts source; dist/… is the source it was built from). */
function resolve (fromFile: string, specifier: string): string | undefined {
  let target = path.relative(ROOT, path.resolve(path.dirname(fromFile), specifier))
  if (target.startsWith(`dist${path.sep}`)) target = target.slice('dist/'.length)
  const candidates = [target, target.replace(/\.js$/, '.ts'), target.replace(/\.mjs$/, '.mts')]
  return candidates.find((candidate) => existsSync(path.join(ROOT, candidate)) && /\.(ts|mjs)$/.test(candidate))
}

interface Graph { edges: Map<string, string[]>, unresolved: string[] }

async function importGraph (): Promise<Graph> {
  const edges = new Map<string, string[]>()
  const unresolved: string[] = []
  for (const folder of FOLDERS) {
    for (const file of await sourceFiles(path.join(ROOT, folder))) {
      const from = path.relative(ROOT, file)
      const targets: string[] = []
      for (const specifier of specifiers(await readFile(file, 'utf8')).filter((s) => s.startsWith('.'))) {
        const target = resolve(file, specifier)
        if (target === undefined) unresolved.push(`${from} → ${specifier}`)
        else targets.push(target)
      }
      edges.set(from, targets)
    }
  }
  return { edges, unresolved }
}

const folderOf = (file: string): string => file.split('/')[0]!

/** Every cycle's files, found by a depth-first walk (each reported once, from its first file in path order). */
function cycles (edges: Map<string, string[]>): string[][] {
  const found: string[][] = []
  const state = new Map<string, 'open' | 'done'>()
  const stack: string[] = []
  const visit = (file: string): void => {
    state.set(file, 'open')
    stack.push(file)
    for (const next of edges.get(file) ?? []) {
      if (state.get(next) === 'open') found.push([...stack.slice(stack.indexOf(next)), next])
      else if (state.get(next) === undefined) visit(next)
    }
    stack.pop()
    state.set(file, 'done')
  }
  for (const file of [...edges.keys()].sort()) if (state.get(file) === undefined) visit(file)
  return found
}

const graph = await importGraph()
const allEdges = [...graph.edges].flatMap(([from, targets]) => targets.map((to) => ({ from, to })))

t.test('the graph is read: every relative import resolves to a project file', async (t) => {
  t.ok(graph.edges.size > 100, `${graph.edges.size} files read`)
  t.ok(graph.edges.get('src/app.ts')?.includes('src/config.ts'), 'src/app.ts imports src/config.ts')
  t.same(graph.unresolved, [], 'no import names a file that is not there')
  // Split so that this file's own text holds no dynamic import of ./c.js.
  const sample = "import type { A } from './a.js'\nexport { b } from '../b.js'\nimport './d.js'\nconst c = await import" + "('./c.js')\n"
  t.same(specifiers(sample), ['./a.js', '../b.js', './d.js', './c.js'], 'type-only, re-export, side-effect and dynamic imports count')
})

t.test('each folder imports only what its row allows', async (t) => {
  const wrong = allEdges.filter(({ from, to }) => {
    const source = folderOf(from) as Folder
    const target = folderOf(to) as Folder
    return source !== target && !ALLOWED[source].includes(target)
  }).map(({ from, to }) => `${from} → ${to}`)
  t.same(wrong, [], 'no upward arrow')
})

t.test('no two folders import each other', async (t) => {
  const pairs = new Set(allEdges.map(({ from, to }) => `${folderOf(from)} → ${folderOf(to)}`))
  const both = [...pairs].filter((pair) => {
    const [a, b] = pair.split(' → ')
    return a !== b && pairs.has(`${b} → ${a}`)
  })
  t.same(both, [])
})

t.test('the service never imports the dev tooling (src/tooling is for tests, bench, reliability and deploy)', async (t) => {
  const wrong = allEdges.filter(({ from, to }) => from.startsWith('src/') && !from.startsWith(TOOLING) && to.startsWith(TOOLING))
  t.same(wrong.map(({ from, to }) => `${from} → ${to}`), [])
})

t.test('no file-level import cycle', async (t) => {
  t.same(cycles(graph.edges).map((cycle) => cycle.join(' → ')), [])
})
