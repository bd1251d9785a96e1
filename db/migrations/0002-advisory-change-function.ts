import type { Migration } from '../types.js'

/**
 * The advisory strategy's change as one server-side function, so the whole locked window
 * (lock → read → check → write → journal) is one round trip from the service. On one hot row the lock is held
 * until COMMIT, so every network round trip made while holding it would cost throughput (see bench/REPORT.md).
 *
 * Each statement inside a plpgsql function takes a fresh snapshot under READ COMMITTED, so the SELECT after
 * pg_advisory_xact_lock sees the balance the previous lock holder committed.
 * Outcomes: 'applied' | 'insufficient_funds' | 'balance_limit_exceeded' | 'user_not_found'.
 */
export const advisoryChangeFunction: Migration = {
  name: '0002-advisory-change-function',
  async up ({ context: sequelize }) {
    await sequelize.query(`
      CREATE FUNCTION balance_change_advisory(p_user_id BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT)
      RETURNS TABLE (outcome TEXT, balance BIGINT, entry_id BIGINT)
      LANGUAGE plpgsql VOLATILE AS $fn$
      DECLARE
        v_balance BIGINT;
        v_entry   BIGINT;
      BEGIN
        PERFORM pg_advisory_xact_lock(p_user_id);
        SELECT u.balance INTO v_balance FROM users u WHERE u.id = p_user_id;
        IF NOT FOUND THEN
          RETURN QUERY SELECT 'user_not_found'::TEXT, NULL::BIGINT, NULL::BIGINT;
          RETURN;
        END IF;
        IF v_balance + p_amount < p_min THEN
          RETURN QUERY SELECT 'insufficient_funds'::TEXT, v_balance, NULL::BIGINT;
          RETURN;
        END IF;
        IF v_balance + p_amount > p_max THEN
          RETURN QUERY SELECT 'balance_limit_exceeded'::TEXT, v_balance, NULL::BIGINT;
          RETURN;
        END IF;
        UPDATE users SET balance = v_balance + p_amount, updated_at = now() WHERE id = p_user_id;
        INSERT INTO journal_entries (user_id, amount, balance_after, kind)
          VALUES (p_user_id, p_amount, v_balance + p_amount, 'change')
          RETURNING id INTO v_entry;
        RETURN QUERY SELECT 'applied'::TEXT, v_balance + p_amount, v_entry;
      END
      $fn$;
    `)
  },
  async down ({ context: sequelize }) {
    await sequelize.query('DROP FUNCTION balance_change_advisory(BIGINT, BIGINT, BIGINT, BIGINT)')
  },
}
