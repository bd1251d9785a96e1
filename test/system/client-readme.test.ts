import { execFile } from 'node:child_process'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import { build, listen } from '../helper.js'

/**
 * The client examples of docs/client.md and of README.md (the checkout), as written: taken from there, saved in the project folder (so
 * `balance-api/client` resolves through package.json "exports" to the built dist/src/client), run with node against
 * a running service. Its output must be the one the page shows (the generated key aside).
 */
const ROOT = process.cwd()
const BUILD_TIMEOUT_MS = 300_000
const RUN_TIMEOUT_MS = 60_000

async function run (command: string, args: string[], env: Record<string, string> = {}, timeout = RUN_TIMEOUT_MS): Promise<string> {
  return await new Promise((resolve, reject) => {
    execFile(command, args, { cwd: ROOT, timeout, env: { ...process.env, ...env } }, (error, stdout, stderr) => {
      if (error === null) resolve(stdout)
      else reject(new Error(`${command} ${args.join(' ')} failed: ${error.message}\n${stdout}\n${stderr}`))
    })
  })
}

/** The first ```js block after `marker` in `file`, and the ```console block after it (its output, run as `script`). */
async function readmeExample (file: string, marker: string, script: string): Promise<{ code: string, output: string[] }> {
  const readme = await readFile(path.join(ROOT, file), 'utf8')
  const at = readme.indexOf(marker)
  if (at < 0) throw new Error(`${file}: no ${marker}`)
  const section = readme.slice(at)
  const code = /```js\n([\s\S]*?)```/.exec(section)?.[1]
  const consoleBlock = new RegExp('```console\\n\\$ node ' + script.replace('.', '\\.') + '\\n([\\s\\S]*?)```').exec(section)?.[1]
  if (code === undefined || consoleBlock === undefined) throw new Error(`${file}: no example (\`\`\`js) with its output (\`\`\`console) found`)
  return { code, output: consoleBlock.trimEnd().split('\n') }
}

t.before(async () => { await run('npm', ['run', 'build'], {}, BUILD_TIMEOUT_MS) })

const EXAMPLES = [
  { page: 'docs/client.md', marker: '<!-- section:client -->', script: 'example.mjs' },
  { page: 'README.md', marker: '<!-- section:checkout -->', script: 'checkout.mjs' },
] as const

for (const { page, marker, script } of EXAMPLES) {
  t.test(`the example of ${page} (${script}) runs as written and prints what the page shows`, async (t) => {
    const { app } = await build(t)
    const base = await listen(app)
    const { code, output } = await readmeExample(page, marker, script)
    const folder = path.join(ROOT, 'test/artifacts')
    await mkdir(folder, { recursive: true })
    const saved = path.join(folder, `readme-${script.replace('.mjs', '')}-${process.pid}.mjs`)
    await writeFile(saved, code)
    t.teardown(async () => { await rm(saved, { force: true }) })

    const printed = (await run(process.execPath, [saved], { BALANCE_API_URL: base })).trimEnd().split('\n')
    const uuid = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g
    t.same(printed.map((line) => line.replace(uuid, '<uuid>')), output.map((line) => line.replace(uuid, '<uuid>')), printed.join('\n'))
  })
}
