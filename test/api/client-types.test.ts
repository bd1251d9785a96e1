import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import { CLIENT_TYPES_PATH, generateClientTypes, readCommittedClientTypes } from '../../src/tooling/generate-client-types.js'

/**
 * The client's types are the service's OpenAPI document: src/client/openapi.ts must be exactly what
 * `npm run client:types` makes from the document the service serves now. A route or schema changed without
 * regenerating fails here; a route regenerated without a client method fails the typecheck (ROUTE_METHODS).
 */
const root = process.cwd()

t.test(`${CLIENT_TYPES_PATH} is the fresh generation from /docs/json`, async (t) => {
  const fresh = await generateClientTypes()
  const committed = await readCommittedClientTypes(root)
  if (fresh === committed) {
    t.pass('up to date')
    return
  }
  const freshLines = fresh.split('\n')
  const committedLines = committed.split('\n')
  const first = freshLines.findIndex((line, index) => line !== committedLines[index])
  t.fail(`${CLIENT_TYPES_PATH} differs from the service's OpenAPI document (first at line ${first + 1}: ` +
    `committed ${JSON.stringify(committedLines[first])}, fresh ${JSON.stringify(freshLines[first])}); run \`npm run client:types\` and commit it`)
})

t.test('the client imports nothing of the server: only its own folder and node: builtins', async (t) => {
  const folder = path.join(root, 'src/client')
  for (const file of (await readdir(folder)).filter((name) => name.endsWith('.ts'))) {
    const text = await readFile(path.join(folder, file), 'utf8')
    const specifiers = [...text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'/gm)].map((match) => match[1]!)
    const foreign = specifiers.filter((specifier) => !specifier.startsWith('node:') && !/^\.\/[a-z-]+\.js$/.test(specifier))
    t.same(foreign, [], `${file}: ${specifiers.join(', ') || 'no imports'}`)
  }
})
