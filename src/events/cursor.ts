import { InvalidCursorError } from '../domain/errors.js'

/**
 * The opaque `after` cursor of GET /api/events: base64url of "<xid>.<id>", the feed position (xid8, event id) of the
 * last event a page showed. Strict on the way back in (canonical digits, re-encodes to the same text), so anything we
 * did not issue is a 400 INVALID_CURSOR, never a 500. The xid stays a decimal string: xid8 is 64-bit.
 */
export interface FeedPosition {
  /** xid8 as decimal text. */
  xid: string
  id: number
}

/** The position before every event. */
export const FEED_START: FeedPosition = { xid: '0', id: 0 }

const POSITION_TEXT = /^(0|[1-9][0-9]{0,19})\.(0|[1-9][0-9]{0,15})$/
const BASE64URL = /^[A-Za-z0-9_-]+$/
/** base64url of 20 + 1 + 16 characters is 50 characters. */
export const MAX_FEED_CURSOR_LENGTH = 50
const MAX_XID8 = 18446744073709551615n

export function encodeFeedCursor (position: FeedPosition): string {
  return Buffer.from(`${position.xid}.${position.id}`, 'utf8').toString('base64url')
}

export function decodeFeedCursor (cursor: string): FeedPosition {
  if (cursor.length > MAX_FEED_CURSOR_LENGTH || !BASE64URL.test(cursor)) throw new InvalidCursorError('after')
  const match = POSITION_TEXT.exec(Buffer.from(cursor, 'base64url').toString('utf8'))
  if (match === null) throw new InvalidCursorError('after')
  const position = { xid: match[1]!, id: Number(match[2]) }
  if (BigInt(position.xid) > MAX_XID8 || !Number.isSafeInteger(position.id) || encodeFeedCursor(position) !== cursor) {
    throw new InvalidCursorError('after')
  }
  return position
}

/** (a.xid, a.id) < (b.xid, b.id): the feed's order. */
export function positionBefore (a: FeedPosition, b: FeedPosition): boolean {
  const ax = BigInt(a.xid)
  const bx = BigInt(b.xid)
  return ax < bx || (ax === bx && a.id < b.id)
}
