import type { Migration } from '../types.js'

/**
 * The row-lock strategy's change: SELECT … FOR UPDATE, check, write, journal, in one server-side function so the
 * row lock is held for one round trip only, the same shape as the advisory function (0002) so the two compare
 * lock mechanics, not network trips. The row lock already returns the latest committed balance.
 */
export const rowLockChangeFunction: Migration = {
  name: '0003-row-lock-change-function',
  async up ({ context: sequelize }) {
    await sequelize.query(`
      CREATE FUNCTION balance_change_row_lock(p_user_id BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT)
      RETURNS TABLE (outcome TEXT, balance BIGINT, entry_id BIGINT)
      LANGUAGE plpgsql VOLATILE AS $fn$
      DECLARE
        v_balance BIGINT;
        v_entry   BIGINT;
      BEGIN
        SELECT u.balance INTO v_balance FROM users u WHERE u.id = p_user_id FOR UPDATE;
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
    await sequelize.query('DROP FUNCTION balance_change_row_lock(BIGINT, BIGINT, BIGINT, BIGINT)')
  },
}
