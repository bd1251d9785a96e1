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
/** Reads of a feed without a cursor, when a prune keeps moving the kept feed's start between them. */
const START_ATTEMPTS = 3

export class EventFeed {
  constructor (
    private readonly sequelize: Sequelize,
    private readonly runRead: <T>(work: () => Promise<T>) => Promise<T>,
  ) {}

  /**
   * A page after `after`. A position before the last pruned event (the explicit start included, once anything was
   * pruned) is refused with CURSOR_EXPIRED (its oldestCursor: where the kept feed is complete), never answered with a
   * page that skips. Without `after` the reader asked for no position: it starts at the oldest event kept.
   */
  async page (after: string | undefined, limit: number): Promise<FeedPage> {
    let position = after === undefined ? FEED_START : decodeFeedCursor(after)
    for (let attempt = 1; ; attempt += 1) {
      const page = await this.runRead(async () => await feedPage(this.sequelize, position, limit))
      if ('expired' in page) {
        // Without a cursor, read again from where the kept feed is complete; a prune in between moves it again, so
        // the retries are bounded and the last answer is the 410 itself.
        if (after === undefined && attempt < START_ATTEMPTS) { position = page.expired; continue }
        throw new CursorExpiredError({ oldestCursor: encodeFeedCursor(page.expired) })
      }
      const last = page.rows.at(-1)
      return { items: page.rows.map(toEvent), nextCursor: encodeFeedCursor(last === undefined ? position : positionOf(last)) }
    }
  }

  /**
   * The user's events after `afterSeq`; CURSOR_EXPIRED when events after it were pruned (oldestSeq: the first kept).
   * Without `afterSeq`: from the user's first event kept.
   */
  async userPage (userId: number, afterSeq: number | undefined, limit: number): Promise<UserFeedPage> {
    let after = afterSeq ?? 0
    for (let attempt = 1; ; attempt += 1) {
      const page = await this.runRead(async () => await userFeedPage(this.sequelize, userId, after, limit))
      if (page === null) throw new UserNotFoundError(userId)
      if ('expired' in page) {
        if (afterSeq === undefined && attempt < START_ATTEMPTS) { after = page.expired; continue }
        throw new CursorExpiredError({ userId, oldestSeq: page.expired + 1 })
      }
      const items = page.rows.map(toEvent)
      return { items, nextCursor: items.at(-1)?.seq ?? after }
    }
  }
}
