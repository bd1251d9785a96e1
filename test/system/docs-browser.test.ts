import { mkdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { chromium, type Browser } from 'playwright-core'
import { build, books, listen } from '../helper.js'
import { haveSystemTools } from '../support/system-tool.js'

// The Debian package `chromium` (apt-get install -y chromium); playwright-core never downloads a browser.
const CHROMIUM = '/usr/bin/chromium'
const ARTIFACTS = fileURLToPath(new URL('../artifacts/', import.meta.url))
const STEP_TIMEOUT_MS = 20_000

t.test('Swagger UI at /docs: "Try it out" on PATCH /api/balance changes the balance (headless Chromium)', async (t) => {
  // Skipped with the install hint where Chromium is missing; a failure under REQUIRE_SYSTEM_TOOLS=1 (CI).
  if (!haveSystemTools(t, [{ path: CHROMIUM, aptPackage: 'chromium' }])) return
  await mkdir(ARTIFACTS, { recursive: true })
  const { app } = await build(t)
  const base = await listen(app)

  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: STEP_TIMEOUT_MS,
  })
  t.teardown(async () => { await browser.close() })
  const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } })
  page.setDefaultTimeout(STEP_TIMEOUT_MS)
  // A CSP that blocks Swagger UI shows up as console errors ("Refused to load/execute/apply ...").
  const problems: string[] = []
  page.on('console', (message) => { if (message.type() === 'error') problems.push(message.text()) })
  page.on('pageerror', (error) => { problems.push(error.message) })

  const response = await page.goto(`${base}/docs`)
  t.equal(response?.status(), 200, '/docs answers 200')
  t.match(response?.headers()['content-security-policy'], /script-src 'self'/, 'served under the CSP')

  const operation = page.locator('#operations-balance-patch_api_balance')
  await operation.locator('.opblock-summary').first().waitFor()
  t.match(await operation.locator('.opblock-summary-path').first().textContent(), '/api/balance', 'PATCH /api/balance is listed')
  await operation.locator('.opblock-summary').first().click()
  await operation.locator('button.try-out__btn').click()
  await operation.locator('textarea.body-param__text').fill('{"userId":1,"amount":-2}')
  await operation.locator('button.execute').click()

  const live = operation.locator('.live-responses-table .response').first()
  await live.locator('.response-col_status').filter({ hasText: '200' }).waitFor()
  const shown = await live.locator('.response-col_description pre').first().textContent() ?? ''
  await operation.scrollIntoViewIfNeeded()
  await page.screenshot({ path: `${ARTIFACTS}docs-try-it-out.png`, fullPage: true })
  await operation.screenshot({ path: `${ARTIFACTS}docs-try-it-out-operation.png` })

  t.match(JSON.parse(shown), { userId: 1, balance: 9998, amount: -2 }, 'the UI shows the 200 body with the new balance 9998')
  t.same(await books(app, 1), { balance: 9998, journalSum: 9998, entries: 2 }, 'the change reached the database once')
  t.same(problems, [], 'no console errors (no CSP violation)')
})
