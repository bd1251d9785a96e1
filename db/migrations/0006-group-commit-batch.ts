import type { Migration } from '../types.js'

/**
 * Group commit: balance_change_batch() applies several changes to ONE user in one transaction and one
 * round trip, so they share one WAL flush instead of paying one each (the hot row's per-commit ceiling).
 *
 * Exactly what a one-at-a-time run in the given order would answer:
 * - the user's lock is taken once (advisory: pg_advisory_xact_lock; row: SELECT … FOR UPDATE), the balance read once;
 * - each change is checked in input order against the running balance: a refused one writes nothing and reports the
 *   balance it saw; an applied one gets its own journal entry with its own balance_after;
 * - the balance is written once and the journal in one INSERT; journal ids are taken from the sequence in input order
 *   under the lock, so per user id order is still commit order and balance_after chains (src/db/ledger.ts relies on it).
 *
 * Idempotency keys join the batch (same rules as idempotency_claim in 0004):
 * - every distinct key is claimed first, in key order, before the user lock. Single keyed writes claim one key and
 *   then take user locks; transfers take user locks in id order; so every transaction acquires keys (sorted) before user
 *   locks (sorted): no wait cycle, no deadlock.
 * - per item, in input order: a key first used for a different request → 'reused'; a key whose outcome is already
 *   stored → 'replayed'; a key this batch claimed → the first item with it executes, later items with the same key and
 *   request replay that outcome, and with a different request are 'reused'.
 * - an executed keyed item stores its outcome (refusals included) and tags its journal entry, in this transaction.
 *
 * Returns one row per input item, in input order (`ord` is 1-based): keyless rows carry outcome/balance/entry_id;
 * keyed rows carry `idempotency` and the outcome JSON in `result` (the shape change_keyed_finish stores).
 */
export const groupCommitBatch: Migration = {
  name: '0006-group-commit-batch',
  async up ({ context: sequelize }) {
    await sequelize.query(`
      CREATE FUNCTION balance_change_batch(p_lock TEXT, p_user_id BIGINT, p_amounts BIGINT[], p_keys TEXT[],
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
          SELECT u.balance INTO v_balance FROM users u WHERE u.id = p_user_id;
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
    await sequelize.query('DROP FUNCTION balance_change_batch(TEXT, BIGINT, BIGINT[], TEXT[], TEXT[], BIGINT, BIGINT, INT, INT)')
  },
}
