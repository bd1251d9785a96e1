import type { Sequelize } from 'sequelize'
import { UserNotFoundError } from '../domain/errors.js'
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

  async page (after: string | undefined, limit: number): Promise<FeedPage> {
    const position = after === undefined ? FEED_START : decodeFeedCursor(after)
    const rows = await this.runRead(async () => await feedPage(this.sequelize, position, limit))
    const last = rows.at(-1)
    return { items: rows.map(toEvent), nextCursor: last === undefined ? (after ?? encodeFeedCursor(FEED_START)) : encodeFeedCursor(positionOf(last)) }
  }

  async userPage (userId: number, afterSeq: number, limit: number): Promise<UserFeedPage> {
    const rows = await this.runRead(async () => await userFeedPage(this.sequelize, userId, afterSeq, limit))
    if (rows === null) throw new UserNotFoundError(userId)
    const items = rows.map(toEvent)
    return { items, nextCursor: items.at(-1)?.seq ?? afterSeq }
  }
}
