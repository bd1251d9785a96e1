import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { writeReliabilityReport } from '../../reliability/reliability-report.js'

// docs/reliability.md's section and reliability/REPORT.md are written by the generator from the committed JSON. A hand
// edit to either (or a generator that lags a hand edit) is silently reverted by the next `--report`, as once happened
// to the soak paragraph: regenerate from the committed JSON in a scratch folder and compare byte for byte.
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const INPUTS = ['docs/reliability.md', 'reliability/soak-last.json', 'reliability/soak-ha-last.json', 'reliability/fuzz-last.json']

t.test('docs/reliability.md and reliability/REPORT.md are exactly what reliability/reliability-report.ts writes from the committed runs', async (t) => {
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'balance-reliability-report-'))
  t.teardown(async () => { await rm(scratch, { recursive: true, force: true }) })
  await mkdir(path.join(scratch, 'reliability'))
  await mkdir(path.join(scratch, 'docs'))
  for (const file of INPUTS) await copyFile(path.join(ROOT, file), path.join(scratch, file))

  await writeReliabilityReport(scratch)

  for (const file of ['docs/reliability.md', 'reliability/REPORT.md']) {
    const committed = await readFile(path.join(ROOT, file), 'utf8')
    const regenerated = await readFile(path.join(scratch, file), 'utf8')
    t.equal(regenerated, committed, `${file}: regenerating changes nothing (edit bench/reliability-report.ts, not the file)`)
  }
})
