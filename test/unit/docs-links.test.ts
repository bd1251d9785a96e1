import { existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { EnvSchema } from '../../src/config.js'

// README is the newcomer's page: short, every deep dive reachable, every link alive, every setting listed.
const ROOT = process.cwd()
const README_MAX_BYTES = 25_000
const pages = ['README.md', ...readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)]

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
function anchorsOf (markdown: string): Set<string> {
  const anchors = new Set<string>()
  let fenced = false
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced
    const heading = fenced ? null : /^#{1,6} (.+)$/.exec(line)
    if (heading === null) continue
    anchors.add(heading[1]!.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-'))
  }
  return anchors
}

function linksOf (markdown: string): string[] {
  const withoutCode = markdown.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '')
  return [...withoutCode.matchAll(/\]\(([^)\s]+)\)/g)].map((match) => match[1]!).filter((link) => !/^[a-z]+:/.test(link))
}

t.test(`README.md is under ${README_MAX_BYTES} bytes`, async (t) => {
  const size = readFileSync(path.join(ROOT, 'README.md')).length
  t.ok(size < README_MAX_BYTES, `${size} bytes`)
})

t.test('every relative link and #anchor in README.md and docs/ resolves', async (t) => {
  for (const page of pages) {
    const text = readFileSync(path.join(ROOT, page), 'utf8')
    for (const link of linksOf(text)) {
      const [file, anchor] = link.split('#') as [string, string | undefined]
      const target = file === '' ? page : path.normalize(path.join(path.dirname(page), file))
      t.ok(existsSync(path.join(ROOT, target)), `${page}: ${link} → ${target} exists`)
      if (anchor !== undefined && target.endsWith('.md') && existsSync(path.join(ROOT, target))) {
        t.ok(anchorsOf(readFileSync(path.join(ROOT, target), 'utf8')).has(anchor), `${page}: ${link} → #${anchor} is a heading of ${target}`)
      }
    }
  }
})

t.test('README links every page of docs/', async (t) => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  for (const page of pages.filter((p) => p !== 'README.md')) t.ok(readme.includes(`](${page})`), `README links ${page}`)
})

t.test("README's configuration table lists every variable of the config schema", async (t) => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  for (const name of Object.keys(EnvSchema.properties)) t.ok(readme.includes(`| \`${name}\` |`), name)
})
