import type { Sequelize } from 'sequelize'
import { CursorExpiredError, UserNotFoundError } from '../domain/errors.js'
import { FEED_START, decodeFeedCursor, encodeFeedCursor } from './cursor.js'
import { feedPage, userFeedPage } from './db.js'
import { positionOf, toEvent, type BalanceEvent } from './event.js'

export interface FeedPage {
  items: BalanceEvent[]
  /** Pass as `after` for the next page; the same cursor again when nothing new was there. */
  nextCursor: string
}

export interface UserFeedPage {
  items: BalanceEvent[]
  /** The last seq shown (pass as `after`); `after` again when nothing new was there. */
  nextCursor: number
}

/** The HTTP feed's reads; `runRead` is the service's read gate (bounded, errors mapped to 503). */
export class EventFeed {
  constructor (
    private readonly sequelize: Sequelize,
    private readonly runRead: <T>(work: () => Promise<T>) => Promise<T>,
  ) {}

  /**
   * A page after `after` (absent: from the start). A position before the last pruned event, the start included once
   * anything was pruned, is refused with CURSOR_EXPIRED (its oldestCursor: where the kept feed is complete), never
   * answered with a page that skips.
   */
  async page (after: string | undefined, limit: number): Promise<FeedPage> {
    const position = after === undefined ? FEED_START : decodeFeedCursor(after)
    const page = await this.runRead(async () => await feedPage(this.sequelize, position, limit))
    if ('expired' in page) throw new CursorExpiredError({ oldestCursor: encodeFeedCursor(page.expired) })
    const last = page.rows.at(-1)
    return { items: page.rows.map(toEvent), nextCursor: last === undefined ? (after ?? encodeFeedCursor(FEED_START)) : encodeFeedCursor(positionOf(last)) }
  }

  /** The user's events after `afterSeq`; CURSOR_EXPIRED when events after it were pruned (oldestSeq: the first kept). */
  async userPage (userId: number, afterSeq: number, limit: number): Promise<UserFeedPage> {
    const page = await this.runRead(async () => await userFeedPage(this.sequelize, userId, afterSeq, limit))
    if (page === null) throw new UserNotFoundError(userId)
    if ('expired' in page) throw new CursorExpiredError({ userId, oldestSeq: page.expired + 1 })
    const items = page.rows.map(toEvent)
    return { items, nextCursor: items.at(-1)?.seq ?? afterSeq }
  }
}
