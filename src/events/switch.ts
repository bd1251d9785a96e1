import type { Sequelize } from 'sequelize'
import { boundedQuery } from '../db/pooler.js'
import { EVENT_TRIGGERS, TRIGGERS_TO_SWITCH_SQL } from './db.js'

/**
 * EVENTS=on|off as the state of the journal's event triggers, set at boot: ALTER TABLE … ENABLE/DISABLE TRIGGER is
 * one transactional catalog change that every session sees at once (each pooled connection, each PgBouncer server
 * connection, each instance), and costs nothing per change. A session setting could not do that behind PgBouncer,
 * and a setting read per statement would cost every change. Only a boot that changes the state runs the DDL (it
 * waits briefly for journal inserts in flight); the database keeps the state, so instances on one database must
 * agree on EVENTS (the last one to boot wins, and says so in its log). Returns the triggers it switched.
 */
export async function switchEventTriggers (sequelize: Sequelize, enabled: boolean): Promise<string[]> {
  const rows = await boundedQuery<{ tgname: string }>(sequelize, TRIGGERS_TO_SWITCH_SQL, [[...EVENT_TRIGGERS], enabled])
  if (rows.length === 0) return []
  const verb = enabled ? 'ENABLE' : 'DISABLE'
  // Names from our own constant list, never from input.
  await boundedQuery(sequelize, `ALTER TABLE journal_entries ${rows.map((row) => `${verb} TRIGGER ${row.tgname}`).join(', ')}`, [])
  return rows.map((row) => row.tgname)
}
