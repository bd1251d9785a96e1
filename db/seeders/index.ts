import type { Migration } from '../types.js'
import { userOne } from './0001-user-one.js'

/** Every seeder, in the order it runs; each runs once per database (recorded in "SequelizeData"). */
export const seeders: Migration[] = [
  userOne,
]
