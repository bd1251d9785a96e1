import { QueryTypes, type Sequelize } from 'sequelize'

/**
 * Behind PgBouncer in transaction mode (DB_POOLER=pgbouncer-transaction) the service cannot give its timeouts to
 * PostgreSQL as startup parameters: PgBouncer 1.18 refuses them (`unsupported startup parameter`), and with
 * `ignore_startup_parameters` it drops them. Two mechanisms replace them:
 * - the hot path sets them LOCAL in the same round trip as every change (src/db/hot-query.ts), whatever server
 *   connection PgBouncer picks;
 * - everything else (keyed changes, transfers, reads, the books check) runs under the role's defaults in this
 *   database, `ALTER ROLE CURRENT_USER IN DATABASE … SET …`, written here at boot. PostgreSQL applies them when a
 *   backend starts, so every server connection PgBouncer opens from then on has them. The server connection this
 *   boot runs on gets them by a session SET in the same transaction. Server connections PgBouncer opened before the
 *   first boot (or before a timeout change) keep what they had until PgBouncer replaces them (server_lifetime,
 *   `RECONNECT` on its admin console); pg's client-side query_timeout still bounds those (→ 503).
 * Instances that disagree on DB_STATEMENT_TIMEOUT_MS: the last one to boot wins for new server connections.
 */
export const POOLED_TIMEOUTS = ['statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout'] as const

/** Another constant key of the two-int advisory space (migrations use [0x62616c, 1]): boots write the defaults one at a time. */
const ROLE_DEFAULTS_LOCK = [0x62616c, 2] as const

export interface RoleDefaultsResult {
  /** false: they were already set to these values. */
  changed: boolean
  role: string
  database: string
}

function quoteIdent (name: string): string {
  return `"${name.replace(/"/g, '""')}"`
}

export async function applyRoleTimeouts (sequelize: Sequelize, timeoutMs: number): Promise<RoleDefaultsResult> {
  const ms = String(Math.trunc(timeoutMs))
  return await sequelize.transaction(async (transaction) => {
    await sequelize.query('SELECT pg_advisory_xact_lock(:a, :b)', { replacements: { a: ROLE_DEFAULTS_LOCK[0], b: ROLE_DEFAULTS_LOCK[1] }, transaction })
    const [current] = await sequelize.query<{ role: string, database: string, settings: string[] | null }>(
      `SELECT current_user AS role, current_database() AS database,
              (SELECT setconfig FROM pg_db_role_setting
                WHERE setrole = (SELECT oid FROM pg_roles WHERE rolname = current_user)
                  AND setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())) AS settings`,
      { type: QueryTypes.SELECT, transaction })
    const { role, database } = current!
    const have = new Set(current!.settings ?? [])
    const missing = POOLED_TIMEOUTS.filter((name) => !have.has(`${name}=${ms}`))
    for (const name of missing) {
      await sequelize.query(`ALTER ROLE CURRENT_USER IN DATABASE ${quoteIdent(database)} SET ${name} = ${ms}`, { transaction })
    }
    // This server connection started before the defaults may have existed: give it them for the rest of its life.
    await sequelize.query(POOLED_TIMEOUTS.map((name) => `SET ${name} = ${ms}`).join('; '), { transaction })
    return { changed: missing.length > 0, role, database }
  })
}
