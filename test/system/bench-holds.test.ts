import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { promisify } from 'node:util'
import { parseHoldsOptions, runHoldsBench } from '../../bench/holds.js'

// The services and the floor it starts run the production build.
t.before(async () => { await promisify(execFile)('npm', ['run', 'build'], { timeout: 300_000 }) })

// npm run bench:holds end to end, small: one repetition, a 200-request burst, 1-second loads, into a temporary file.
// Numbers are not asserted (the box is shared); every figure's presence and every invariant check are.
t.test('npm run bench:holds, small, end to end', async (t) => {
  const folder = await mkdtemp(path.join(os.tmpdir(), 'balance-bench-holds-'))
  t.teardown(async () => { await rm(folder, { recursive: true, force: true }) })
  const out = path.join(folder, 'holds.json')
  const report = await runHoldsBench(parseHoldsOptions(['--reps', '1', '--burst', '200', '--seconds', '1', '--out', out]), () => {})
  t.same(report.failures, [], 'every burst split exactly in half, no load answered anything but 2xx')
  for (const gc of ['on', 'off']) {
    for (const name of [`hold burst ms, group commit ${gc}`, `change burst ms, group commit ${gc}`, `hot row changes/s, group commit ${gc}`, `hot row hold → capture pairs/s, group commit ${gc}`]) {
      t.ok((report.medians[name] ?? 0) > 0, `${name} measured`)
    }
    t.ok(Number.isFinite(report.ratios[`hold burst ÷ floor hold burst, group commit ${gc}`]), `the hold burst ratio, group commit ${gc}`)
  }
  t.same(JSON.parse(await readFile(out, 'utf8')).medians, report.medians, 'the JSON written is the report')
  t.throws(() => parseHoldsOptions(['--burst', '3']), /even/, 'an odd burst is refused')
})
