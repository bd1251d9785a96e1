import type { Migration } from '../types.js'

/**
 * atomic: a refusal reports a balance that really refuses the change.
 *
 * Found by the group-commit model check (test/group-commit.test.ts): atomic's conditional UPDATE refuses, then a
 * lock-free read says why; a deposit that commits between the two makes the read show a balance that COVERS the
 * refused change (seen: "user 2 has 83, the change is -48"). The refusal was right when the UPDATE ran, but the
 * answer named a balance at which it would have been wrong: no one-at-a-time run gives that answer.
 *
 * balance_change_atomic() now tries again when the read disagrees with the refusal: each refusal it returns is
 * linearised at its own read, where the balance cannot cover the change. The loop is bounded; past it the change is
 * decided under the row lock (SELECT … FOR UPDATE), which cannot disagree. The keyless hot path keeps its single
 * conditional CTE (src/strategies/atomic.ts) and calls this function only when that CTE refused.
 */
const ATTEMPTS_BEFORE_LOCK = 8

export const atomicRefusalRechecked: Migration = {
  name: '0007-atomic-refusal-rechecked',
  async up ({ context: sequelize }) {
    await sequelize.query(`
      CREATE OR REPLACE FUNCTION balance_change_atomic(p_user_id BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT)
      RETURNS TABLE (outcome TEXT, balance BIGINT, entry_id BIGINT)
      LANGUAGE plpgsql VOLATILE AS $fn$
      DECLARE
        v_balance BIGINT;
        v_entry   BIGINT;
        v_locked  BOOLEAN := false;
      BEGIN
        FOR attempt IN 1..${ATTEMPTS_BEFORE_LOCK + 1} LOOP
          IF attempt > ${ATTEMPTS_BEFORE_LOCK} THEN
            -- The balance keeps moving between refusal and read: decide under the row lock.
            SELECT u.balance INTO v_balance FROM users u WHERE u.id = p_user_id FOR UPDATE;
            v_locked := true;
          ELSE
            UPDATE users u SET balance = u.balance + p_amount, updated_at = now()
              WHERE u.id = p_user_id AND u.balance + p_amount BETWEEN p_min AND p_max
              RETURNING u.balance INTO v_balance;
            IF FOUND THEN
              INSERT INTO journal_entries (user_id, amount, balance_after, kind)
                VALUES (p_user_id, p_amount, v_balance, 'change') RETURNING id INTO v_entry;
              RETURN QUERY SELECT 'applied'::TEXT, v_balance, v_entry;
              RETURN;
            END IF;
            -- A new statement, a new snapshot: the latest committed balance.
            SELECT u.balance INTO v_balance FROM users u WHERE u.id = p_user_id;
          END IF;
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
          IF v_locked THEN
            UPDATE users SET balance = v_balance + p_amount, updated_at = now() WHERE id = p_user_id;
            INSERT INTO journal_entries (user_id, amount, balance_after, kind)
              VALUES (p_user_id, p_amount, v_balance + p_amount, 'change') RETURNING id INTO v_entry;
            RETURN QUERY SELECT 'applied'::TEXT, v_balance + p_amount, v_entry;
            RETURN;
          END IF;
        END LOOP;
      END
      $fn$;
    `)
  },
  async down ({ context: sequelize }) {
    // Back to 0004's body (the refusal explained by one read).
    await sequelize.query(`
      CREATE OR REPLACE FUNCTION balance_change_atomic(p_user_id BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT)
      RETURNS TABLE (outcome TEXT, balance BIGINT, entry_id BIGINT)
      LANGUAGE plpgsql VOLATILE AS $fn$
      DECLARE
        v_balance BIGINT;
        v_entry   BIGINT;
      BEGIN
        UPDATE users u SET balance = u.balance + p_amount, updated_at = now()
          WHERE u.id = p_user_id AND u.balance + p_amount BETWEEN p_min AND p_max
          RETURNING u.balance INTO v_balance;
        IF NOT FOUND THEN
          SELECT u.balance INTO v_balance FROM users u WHERE u.id = p_user_id;
          IF NOT FOUND THEN
            RETURN QUERY SELECT 'user_not_found'::TEXT, NULL::BIGINT, NULL::BIGINT;
          ELSE
            RETURN QUERY SELECT CASE WHEN p_amount < 0 THEN 'insufficient_funds' ELSE 'balance_limit_exceeded' END,
              v_balance, NULL::BIGINT;
          END IF;
          RETURN;
        END IF;
        INSERT INTO journal_entries (user_id, amount, balance_after, kind)
          VALUES (p_user_id, p_amount, v_balance, 'change')
          RETURNING id INTO v_entry;
        RETURN QUERY SELECT 'applied'::TEXT, v_balance, v_entry;
      END
      $fn$;
    `)
  },
}
