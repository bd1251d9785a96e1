import type { Migration } from '../types.js'
import { advisoryRefusalWithoutLock } from './0005-advisory-refusal-without-lock.js'
import { groupCommitBatch } from './0006-group-commit-batch.js'

/**
 * Every strategy's writes exclude every other strategy's, so instances with different BALANCE_STRATEGY on one
 * database (a rolling change of the setting) stay exact.
 *
 * Before: the advisory functions took pg_advisory_xact_lock, read the balance WITHOUT a row lock and wrote an absolute
 * balance. row-lock (SELECT … FOR UPDATE) and atomic (a conditional relative UPDATE) never take the advisory lock, so
 * a row-lock or atomic change could commit between an advisory read and its write, and the advisory write then erased
 * it (the journal kept both entries, the balance only one).
 *
 * Now each advisory read that a write depends on also takes the row lock (FOR NO KEY UPDATE: the lock its own UPDATE
 * takes a moment later anyway, so nothing else waits longer; it does not block the journal's foreign-key checks).
 * The read is then the latest committed balance and nobody can change it before this transaction ends, whatever the
 * other instance's strategy. The advisory lock is still taken first, before the read-check-write.
 * Lock order stays acyclic across strategies: idempotency keys (sorted) before advisory locks (ascending ids) before
 * row locks (ascending ids) — the advisory transfer now reads its two rows in ascending id order, as row-lock's does.
 * The lock-free pre-refusal of a withdrawal (0005) is unchanged: a refusal writes nothing.
 */
export const strategiesMixExactly: Migration = {
  name: '0008-strategies-mix-exactly',
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
      -- The row lock too: an instance of another strategy may write this row without the advisory lock.
      SELECT u.balance INTO v_balance FROM users u WHERE u.id = p_user_id FOR NO KEY UPDATE;
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
    await sequelize.query(`
    CREATE OR REPLACE FUNCTION balance_transfer_advisory(p_from BIGINT, p_to BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT,
                                              p_key TEXT, p_fingerprint TEXT, p_ttl_seconds INT, p_purge_limit INT)
    RETURNS TABLE (idempotency TEXT, result JSONB)
    LANGUAGE plpgsql VOLATILE AS $fn$
    DECLARE
      v_claim  RECORD;
      v_low    BIGINT;
      v_high   BIGINT;
      v_from   BIGINT;
      v_to     BIGINT;
      v_result JSONB;
    BEGIN
      IF p_key IS NOT NULL THEN
        SELECT c.claim_state, c.claim_result INTO v_claim FROM idempotency_claim(p_key, p_fingerprint, p_ttl_seconds, p_purge_limit) c;
        IF v_claim.claim_state <> 'claimed' THEN
          RETURN QUERY SELECT v_claim.claim_state, v_claim.claim_result;
          RETURN;
        END IF;
      END IF;
      PERFORM pg_advisory_xact_lock(LEAST(p_from, p_to));
      PERFORM pg_advisory_xact_lock(GREATEST(p_from, p_to));
      -- The row locks too, in ascending id order like every other strategy's transfer: an instance of another
      -- strategy may write these rows without the advisory locks.
      SELECT u.balance INTO v_low FROM users u WHERE u.id = LEAST(p_from, p_to) FOR NO KEY UPDATE;
      SELECT u.balance INTO v_high FROM users u WHERE u.id = GREATEST(p_from, p_to) FOR NO KEY UPDATE;
      IF p_from < p_to THEN v_from := v_low; v_to := v_high; ELSE v_from := v_high; v_to := v_low; END IF;
      v_result := transfer_refusal(p_from, p_to, v_from, v_to, p_amount, p_min, p_max);
      IF v_result IS NULL THEN
        UPDATE users SET balance = v_from - p_amount, updated_at = now() WHERE id = p_from;
        UPDATE users SET balance = v_to + p_amount, updated_at = now() WHERE id = p_to;
        v_result := transfer_journal(p_from, p_to, p_amount, v_from - p_amount, v_to + p_amount, p_key);
      END IF;
      RETURN QUERY SELECT f.idempotency, f.result FROM transfer_finish(p_key, v_result) f;
    END
    $fn$;
    `)
    await sequelize.query(`
    CREATE OR REPLACE FUNCTION balance_change_batch(p_lock TEXT, p_user_id BIGINT, p_amounts BIGINT[], p_keys TEXT[],
                                         p_fingerprints TEXT[], p_min BIGINT, p_max BIGINT,
                                         p_ttl_seconds INT, p_purge_limit INT)
    RETURNS TABLE (ord INT, idempotency TEXT, outcome TEXT, balance BIGINT, entry_id BIGINT, result JSONB)
    LANGUAGE plpgsql VOLATILE AS $fn$
    DECLARE
      n             INT := coalesce(cardinality(p_amounts), 0);
      v_key         TEXT;
      v_fingerprint TEXT;
      v_stored      TEXT;
      v_result      JSONB;
      v_found       BOOLEAN;
      v_balance     BIGINT;
      v_amount      BIGINT;
      v_first       INT;
      -- per item
      v_idem        TEXT[]   := array_fill(NULL::TEXT, ARRAY[n]);
      v_outcome     TEXT[]   := array_fill(NULL::TEXT, ARRAY[n]);
      v_after       BIGINT[] := array_fill(NULL::BIGINT, ARRAY[n]);
      v_entry       BIGINT[] := array_fill(NULL::BIGINT, ARRAY[n]);
      v_replay_of   INT[]    := array_fill(NULL::INT, ARRAY[n]);
      -- keys this batch executed, and the item that executed each
      v_exec_keys   TEXT[]   := '{}';
      v_exec_items  INT[]    := '{}';
      -- applied items, in input order
      v_app_items   INT[]    := '{}';
      v_ids         BIGINT[];
    BEGIN
      IF n = 0 THEN
        RETURN;
      END IF;
      IF coalesce(cardinality(p_keys), 0) <> n OR coalesce(cardinality(p_fingerprints), 0) <> n THEN
        RAISE EXCEPTION 'invariant: balance_change_batch got % amounts, % keys, % fingerprints',
          n, cardinality(p_keys), cardinality(p_fingerprints);
      END IF;

      -- 1. Claim every distinct key (with its first item's fingerprint), in key order, before the user lock.
      FOR v_key, v_fingerprint IN
        SELECT DISTINCT ON (k.key) k.key, k.fingerprint
        FROM unnest(p_keys, p_fingerprints) WITH ORDINALITY AS k(key, fingerprint, item)
        WHERE k.key IS NOT NULL
        ORDER BY k.key, k.item
      LOOP
        PERFORM idempotency_claim(v_key, v_fingerprint, p_ttl_seconds, p_purge_limit);
      END LOOP;

      -- 2. The user's lock, once; the balance, once.
      IF p_lock = 'advisory' THEN
        PERFORM pg_advisory_xact_lock(p_user_id);
        -- The row lock too: an instance of another strategy may write this row without the advisory lock.
        SELECT u.balance INTO v_balance FROM users u WHERE u.id = p_user_id FOR NO KEY UPDATE;
      ELSIF p_lock = 'row' THEN
        SELECT u.balance INTO v_balance FROM users u WHERE u.id = p_user_id FOR UPDATE;
      ELSE
        RAISE EXCEPTION 'invariant: unknown batch lock %', p_lock;
      END IF;
      v_found := FOUND;

      -- 3. Each item in input order, against the running balance.
      FOR i IN 1..n LOOP
        v_amount := p_amounts[i];
        v_key := p_keys[i];
        IF v_amount IS NULL OR v_amount = 0 THEN
          RAISE EXCEPTION 'invariant: batch item % has amount %', i, v_amount;
        END IF;
        IF v_key IS NOT NULL THEN
          SELECT k.request_fingerprint, k.result INTO v_stored, v_result FROM idempotency_keys k WHERE k.key = v_key;
          IF NOT FOUND THEN
            RAISE EXCEPTION 'invariant: idempotency key % vanished after its claim', v_key;
          END IF;
          IF v_stored <> p_fingerprints[i] THEN
            v_idem[i] := 'reused';
            CONTINUE;
          END IF;
          IF v_result IS NOT NULL THEN
            -- Stored by a transaction that committed before this batch claimed the key.
            v_idem[i] := 'replayed';
            v_replay_of[i] := 0;
            CONTINUE;
          END IF;
          v_first := array_position(v_exec_keys, v_key);
          IF v_first IS NOT NULL THEN
            v_idem[i] := 'replayed';
            v_replay_of[i] := v_exec_items[v_first];
            CONTINUE;
          END IF;
          v_idem[i] := 'executed';
          v_exec_keys := v_exec_keys || v_key;
          v_exec_items := v_exec_items || i;
        END IF;
        IF NOT v_found THEN
          v_outcome[i] := 'user_not_found';
        ELSIF v_balance + v_amount < p_min THEN
          v_outcome[i] := 'insufficient_funds';
          v_after[i] := v_balance;
        ELSIF v_balance + v_amount > p_max THEN
          v_outcome[i] := 'balance_limit_exceeded';
          v_after[i] := v_balance;
        ELSE
          v_balance := v_balance + v_amount;
          v_outcome[i] := 'applied';
          v_after[i] := v_balance;
          v_app_items := v_app_items || i;
        END IF;
      END LOOP;

      -- 4. One balance write and one journal INSERT for everything applied; ids ascending in input order.
      IF cardinality(v_app_items) > 0 THEN
        UPDATE users SET balance = v_balance, updated_at = now() WHERE id = p_user_id;
        SELECT array_agg(s.id ORDER BY s.id) INTO v_ids
          FROM (SELECT nextval('journal_entries_id_seq') AS id FROM generate_series(1, cardinality(v_app_items))) s;
        FOR j IN 1..cardinality(v_app_items) LOOP
          v_entry[v_app_items[j]] := v_ids[j];
        END LOOP;
        INSERT INTO journal_entries (id, user_id, amount, balance_after, kind, idempotency_key)
          SELECT v_entry[a.item], p_user_id, p_amounts[a.item], v_after[a.item], 'change',
                 CASE WHEN v_idem[a.item] = 'executed' THEN p_keys[a.item] END
          FROM unnest(v_app_items) AS a(item);
      END IF;

      -- 5. Store each executed key's outcome; then answer every item in input order.
      FOR i IN 1..n LOOP
        IF v_idem[i] = 'executed' THEN
          PERFORM idempotency_store(p_keys[i],
            jsonb_build_object('operation', 'change', 'outcome', v_outcome[i], 'userId', p_user_id, 'amount', p_amounts[i],
                               'balance', v_after[i], 'entryId', v_entry[i]),
            CASE WHEN v_entry[i] IS NULL THEN '{}'::BIGINT[] ELSE ARRAY[v_entry[i]] END);
        END IF;
      END LOOP;
      FOR i IN 1..n LOOP
        IF v_idem[i] IS NULL THEN
          RETURN QUERY SELECT i, NULL::TEXT, v_outcome[i], v_after[i], v_entry[i], NULL::JSONB;
        ELSIF v_idem[i] = 'reused' THEN
          RETURN QUERY SELECT i, 'reused'::TEXT, NULL::TEXT, NULL::BIGINT, NULL::BIGINT, NULL::JSONB;
        ELSIF v_idem[i] = 'replayed' AND v_replay_of[i] = 0 THEN
          RETURN QUERY SELECT i, 'replayed'::TEXT, NULL::TEXT, NULL::BIGINT, NULL::BIGINT,
            (SELECT k.result FROM idempotency_keys k WHERE k.key = p_keys[i]);
        ELSE
          -- executed here, or a replay of the item in this batch that executed the same key
          v_first := CASE WHEN v_idem[i] = 'executed' THEN i ELSE v_replay_of[i] END;
          RETURN QUERY SELECT i, v_idem[i], NULL::TEXT, NULL::BIGINT, NULL::BIGINT,
            jsonb_build_object('operation', 'change', 'outcome', v_outcome[v_first], 'userId', p_user_id,
                               'amount', p_amounts[v_first], 'balance', v_after[v_first], 'entryId', v_entry[v_first]);
        END IF;
      END LOOP;
    END
    $fn$;
    `)
  },
  async down ({ context: sequelize }) {
    // Back to the bodies of 0005 (balance_change_advisory), 0006 (balance_change_batch) and 0004 (the transfer).
    await advisoryRefusalWithoutLock.up({ context: sequelize, name: advisoryRefusalWithoutLock.name })
    await sequelize.query('DROP FUNCTION balance_change_batch(TEXT, BIGINT, BIGINT[], TEXT[], TEXT[], BIGINT, BIGINT, INT, INT)')
    await groupCommitBatch.up({ context: sequelize, name: groupCommitBatch.name })
    await sequelize.query(`
    CREATE OR REPLACE FUNCTION balance_transfer_advisory(p_from BIGINT, p_to BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT,
                                              p_key TEXT, p_fingerprint TEXT, p_ttl_seconds INT, p_purge_limit INT)
    RETURNS TABLE (idempotency TEXT, result JSONB)
    LANGUAGE plpgsql VOLATILE AS $fn$
    DECLARE
      v_claim  RECORD;
      v_from   BIGINT;
      v_to     BIGINT;
      v_result JSONB;
    BEGIN
      IF p_key IS NOT NULL THEN
        SELECT c.claim_state, c.claim_result INTO v_claim FROM idempotency_claim(p_key, p_fingerprint, p_ttl_seconds, p_purge_limit) c;
        IF v_claim.claim_state <> 'claimed' THEN
          RETURN QUERY SELECT v_claim.claim_state, v_claim.claim_result;
          RETURN;
        END IF;
      END IF;
      PERFORM pg_advisory_xact_lock(LEAST(p_from, p_to));
      PERFORM pg_advisory_xact_lock(GREATEST(p_from, p_to));
      SELECT u.balance INTO v_from FROM users u WHERE u.id = p_from;
      SELECT u.balance INTO v_to FROM users u WHERE u.id = p_to;
      v_result := transfer_refusal(p_from, p_to, v_from, v_to, p_amount, p_min, p_max);
      IF v_result IS NULL THEN
        UPDATE users SET balance = v_from - p_amount, updated_at = now() WHERE id = p_from;
        UPDATE users SET balance = v_to + p_amount, updated_at = now() WHERE id = p_to;
        v_result := transfer_journal(p_from, p_to, p_amount, v_from - p_amount, v_to + p_amount, p_key);
      END IF;
      RETURN QUERY SELECT f.idempotency, f.result FROM transfer_finish(p_key, v_result) f;
    END
    $fn$;
    `)
  },
}
