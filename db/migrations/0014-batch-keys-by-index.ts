import type { Migration } from '../types.js'

/**
 * ledger_batch() (0010) reads back every key of a keyed batch after claiming them. It did that as a LEFT JOIN of the
 * batch's keys with idempotency_keys, and the planner chose its join from the table's statistics. On a table that
 * grows faster than autovacuum analyzes it (a new deployment under keyed load: tens of thousands of keys a minute),
 * the statistics say the table is small, and the cached plan was a hash join over a sequential scan of the whole key
 * table, once per batch, until the next ANALYZE. The keyed hot row (100 connections, a fresh key each) swung between
 * 2,801 and 8,392 req/s over four 5-second runs.
 *
 * Now each key is one primary-key probe (a scalar subquery per column), whatever the statistics say: the same four
 * runs, alternated with the old form on a database of its own, served 7,066–8,567 req/s.
 *
 * Only that statement of the function changes, so the migration edits the function as the database has it (the
 * text 0010 created; it refuses to run on any other) instead of repeating its 300 lines; down() edits it back.
 */
const JOINED_READ = `SELECT array_agg(k.request_fingerprint ORDER BY x.i), array_agg(k.result ORDER BY x.i), array_agg(x.first ORDER BY x.i)
        INTO v_stored_fp, v_stored_result, v_first_of
        FROM (SELECT u.key, u.i, min(u.i) OVER (PARTITION BY u.key) AS first
              FROM unnest(p_keys) WITH ORDINALITY AS u(key, i)) x
        LEFT JOIN idempotency_keys k ON k.key = x.key;`

const PROBED_READ = `SELECT array_agg((SELECT k.request_fingerprint FROM idempotency_keys k WHERE k.key = x.key) ORDER BY x.i),
               array_agg((SELECT k.result FROM idempotency_keys k WHERE k.key = x.key) ORDER BY x.i),
               array_agg(x.first ORDER BY x.i)
        INTO v_stored_fp, v_stored_result, v_first_of
        FROM (SELECT u.key, u.i, min(u.i) OVER (PARTITION BY u.key) AS first
              FROM unnest(p_keys) WITH ORDINALITY AS u(key, i)) x;`

/** Replaces `from` with `to` in ledger_batch's definition, once; fails when the definition does not hold `from`. */
function rewriteBatch (from: string, to: string): string {
  const quote = (text: string): string => `$read$${text}$read$`
  return `
    DO $do$
    DECLARE
      v_definition TEXT := pg_get_functiondef('ledger_batch(text, bigint, text[], bigint[], bigint[], integer[], jsonb[], text[], text[], bigint, bigint, integer, integer)'::regprocedure);
    BEGIN
      IF position(${quote(from)} IN v_definition) = 0 THEN
        RAISE EXCEPTION 'ledger_batch() does not hold the statement this migration replaces';
      END IF;
      EXECUTE replace(v_definition, ${quote(from)}, ${quote(to)});
    END
    $do$`
}

export const batchKeysByIndex: Migration = {
  name: '0014-batch-keys-by-index',
  async up ({ context: sequelize }) {
    await sequelize.query(rewriteBatch(JOINED_READ, PROBED_READ))
  },
  async down ({ context: sequelize }) {
    await sequelize.query(rewriteBatch(PROBED_READ, JOINED_READ))
  },
}
