import { InvalidCursorError } from './errors.js'

/**
 * The opaque `before` cursor of GET /api/users/:id/transactions: base64url of the last journal entry id a page
 * showed. Opaque so clients pass it back rather than build it; strict on the way back in, so only cursors we issued
 * (canonical encoding of a positive safe integer) are accepted, and anything else is a 400, never a 500.
 */
const ID_TEXT = /^[1-9][0-9]{0,15}$/
const BASE64URL = /^[A-Za-z0-9_-]+$/
/** base64url of 16 digits is 22 characters; longer text cannot be one of our cursors. */
export const MAX_CURSOR_LENGTH = 22

export function encodeCursor (entryId: number): string {
  return Buffer.from(String(entryId), 'utf8').toString('base64url')
}

export function decodeCursor (cursor: string): number {
  if (cursor.length > MAX_CURSOR_LENGTH || !BASE64URL.test(cursor)) throw new InvalidCursorError()
  const text = Buffer.from(cursor, 'base64url').toString('utf8')
  const id = Number(text)
  if (!ID_TEXT.test(text) || !Number.isSafeInteger(id) || encodeCursor(id) !== cursor) throw new InvalidCursorError()
  return id
}
