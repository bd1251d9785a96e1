import { loadConfig } from './config.js'
import { VERIFY_ERROR, verifyBooks } from './verify-books.js'

/** `npm run verify`: exit 0 when the books balance, 1 on any violation, 2 when they could not be checked. */
try {
  process.exitCode = await verifyBooks(loadConfig())
} catch (error) {
  // A bad configuration names the variable.
  console.error(`verify: ${error instanceof Error ? error.message : String(error)}`)
  process.exitCode = VERIFY_ERROR
}
