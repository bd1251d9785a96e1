import { existsSync } from 'node:fs'
import type { Test } from 'tap'

/**
 * Tests that need a Debian package (chromium, pgbouncer, patroni, etcd-server, haproxy) run where it is installed.
 * On a newcomer's machine without it the test is skipped with a visible reason and the install hint, so `npm test`
 * passes there; CI sets REQUIRE_SYSTEM_TOOLS=1 (.ci/run installs the packages), where a missing one fails instead.
 */
export interface SystemTool {
  /** Absolute path of the executable the test runs. */
  path: string
  /** The Debian package that ships it. */
  aptPackage: string
}

export const requireSystemTools = process.env.REQUIRE_SYSTEM_TOOLS === '1'

/** The tools that are missing, as one reason line; undefined when all are there. */
export function missingTools (tools: SystemTool[]): string | undefined {
  const missing = tools.filter((tool) => !existsSync(tool.path))
  if (missing.length === 0) return undefined
  return `${missing.map((tool) => tool.path).join(', ')} missing: apt-get install -y ${[...new Set(missing.map((tool) => tool.aptPackage))].join(' ')}`
}

/**
 * True when the tools are there. Otherwise: under REQUIRE_SYSTEM_TOOLS=1 the test fails with the reason;
 * elsewhere it is skipped with it. Call first in a test: `if (!haveSystemTools(t, [...])) return`.
 */
export function haveSystemTools (t: Test, tools: SystemTool[]): boolean {
  const reason = missingTools(tools)
  if (reason === undefined) return true
  if (requireSystemTools) t.fail(`${reason} (REQUIRE_SYSTEM_TOOLS=1)`)
  else t.plan(0, `skipped: ${reason}`)
  return false
}
