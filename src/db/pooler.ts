import { QueryTypes, type Sequelize } from 'sequelize'
import { hotQuery, isPooled } from './hot-query.js'

/**
 * Behind PgBouncer in transaction mode (DB_POOLER=pgbouncer-transaction) the service cannot give its timeouts to
 * PostgreSQL as startup parameters: PgBouncer 1.18 refuses them (`unsupported startup parameter`), and with
 * `ignore_startup_parameters` it drops them. Nor does it change the role's defaults (`ALTER ROLE … SET`): those reach
 * every other session of the role in that database too (a psql of the same user gets its statements cancelled), and
 * only server connections opened after the change.
 *
 * Instead every statement carries its own timeouts, set LOCAL in the same round trip, on whichever server
 * connection PgBouncer picks: the hot path through hotQuery, everything else through boundedQuery below, and a
 * multi-statement transaction (the books check, the migration lock) with SET LOCAL as its first statement. LOCAL
 * settings end with their transaction, so nothing is left on a server connection for the next client.
 */

/**
 * One statement outside the hot path (keyed changes, transfers, user creation, reads, health): directly connected,
 * sequelize.query() with bind parameters (the connection's startup parameters bound it); behind the pooler, hotQuery's
 * pooler form: one simple-protocol string that sets the three timeouts LOCAL and then runs the statement, one round
 * trip, one implicit transaction. The same rule as hotQuery for `text`: `$n` only as a parameter.
 */
export async function boundedQuery<T extends object> (sequelize: Sequelize, text: string, values: unknown[]): Promise<T[]> {
  if (isPooled(sequelize)) return await hotQuery<T>(sequelize, { name: '', text }, values)
  return await sequelize.query<T>(text, { bind: values, type: QueryTypes.SELECT, raw: true })
}
