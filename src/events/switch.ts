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
  const names = Object.values(EVENT_TRIGGERS).flat()
  const rows = await boundedQuery<{ table: keyof typeof EVENT_TRIGGERS, tgname: string }>(sequelize, TRIGGERS_TO_SWITCH_SQL, [names, enabled])
  const verb = enabled ? 'ENABLE' : 'DISABLE'
  for (const table of Object.keys(EVENT_TRIGGERS) as Array<keyof typeof EVENT_TRIGGERS>) {
    const triggers = rows.filter((row) => row.table === table).map((row) => `${verb} TRIGGER ${row.tgname}`)
    // Names from our own constant lists (the catalog only confirms them), never from input.
    if (triggers.length > 0) await boundedQuery(sequelize, `ALTER TABLE ${table} ${triggers.join(', ')}`, [])
  }
  return rows.map((row) => `${row.table}.${row.tgname}`)
}
