import type { Migration } from '../types.js'
import { advisoryChangeFunction } from './0002-advisory-change-function.js'

/**
 * balance_change_advisory() refuses a withdrawal that the committed balance cannot cover BEFORE taking the user's
 * advisory lock, so refusals stop queueing behind the lock holder (in the seed burst, the 5,000 refusals after the
 * balance reaches 0 no longer run one at a time).
 *
 * Why this is exact: a refusal writes nothing, and the pre-check reads the balance committed when its statement
 * started, which is a state the user really had between the request's arrival and its answer, so the refusal is
 * linearised at that read. Everything that writes still happens under the lock, re-reading and re-checking there:
 * a pre-check that passes proves nothing and changes nothing. Deposits and the upper bound are never pre-checked.
 */
export const advisoryRefusalWithoutLock: Migration = {
  name: '0005-advisory-refusal-without-lock',
  async up ({ context: sequelize }) {
    await sequelize.query(`
      CREATE OR REPLACE FUNCTION balance_change_advisory(p_user_id BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT)
      RETURNS TABLE (outcome TEXT, balance BIGINT, entry_id BIGINT)
      LANGUAGE plpgsql VOLATILE AS $fn$
      DECLARE
        v_balance BIGINT;
        v_entry   BIGINT;
      BEGIN
        IF p_amount < 0 THEN
          -- Lock-free refusal on the committed balance; found or not, the locked path below decides everything else.
          SELECT u.balance INTO v_balance FROM users u WHERE u.id = p_user_id;
          IF FOUND AND v_balance + p_amount < p_min THEN
            RETURN QUERY SELECT 'insufficient_funds'::TEXT, v_balance, NULL::BIGINT;
            RETURN;
          END IF;
        END IF;
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
    // Back to the shipped 0002 body: drop this one and let 0002 create its own again.
    await sequelize.query('DROP FUNCTION balance_change_advisory(BIGINT, BIGINT, BIGINT, BIGINT)')
    await advisoryChangeFunction.up({ context: sequelize, name: advisoryChangeFunction.name })
  },
}
