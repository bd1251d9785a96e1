import type { Migration } from '../types.js'

/**
 * The ledger: idempotency keys, user creation, transfers, and a keyed variant of every strategy's change.
 *
 * Why functions again: each write, keyed or not, stays ONE round trip from the service (claim the key, lock, check,
 * write, journal, store the outcome, commit), so no network trip is ever made while a user lock is held.
 * The keyless PATCH keeps calling the shipped 0002/0003 functions (and atomic's CTE) unchanged.
 *
 * Idempotency (the same key and body replay the first answer; a different body is a 422; concurrent duplicates execute once):
 * - idempotency_claim() INSERTs the key row first thing in the transaction. A concurrent request with the same key
 *   blocks on the primary key's unique index until the first transaction ends; after a commit it finds the stored
 *   outcome and replays it (or reports reuse when the fingerprint differs); after a rollback its INSERT succeeds and
 *   it executes. The key row, the balance change and the journal entries commit together, so no crash can leave a key
 *   without its change or a change without its key.
 * - Claims always come before any user lock, and a transaction claims one key at most, so key waits and user-lock
 *   waits can never form a cycle.
 * - The stored `result` is the domain outcome (what happened, with its journal entry ids), not an HTTP response: the
 *   database knows no HTTP. The service renders the same answer from it every time.
 * - Expired rows count as absent (a claim takes them over) and are purged opportunistically: each successful claim
 *   deletes at most p_purge_limit expired rows, SKIP LOCKED so a purge never waits. No background job.
 *
 * Outcome JSON (`result`): {"operation": "change" | "transfer" | "create-user", "outcome": "applied" |
 * "insufficient_funds" | "balance_limit_exceeded" | "user_not_found", ...the values the answer needs}.
 */
const STRATEGY_CHANGE_FUNCTIONS = ['balance_change_advisory', 'balance_change_row_lock', 'balance_change_atomic'] as const

/** One thin keyed wrapper per strategy: claim, run the strategy's own change function, tag its entry, store. */
function keyedChangeFunction (inner: typeof STRATEGY_CHANGE_FUNCTIONS[number]): string {
  return `
    CREATE FUNCTION ${inner}_keyed(p_user_id BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT,
                                   p_key TEXT, p_fingerprint TEXT, p_ttl_seconds INT, p_purge_limit INT)
    RETURNS TABLE (idempotency TEXT, result JSONB)
    LANGUAGE plpgsql VOLATILE AS $fn$
    DECLARE
      v_claim  RECORD;
      v_change RECORD;
    BEGIN
      SELECT c.claim_state, c.claim_result INTO v_claim FROM idempotency_claim(p_key, p_fingerprint, p_ttl_seconds, p_purge_limit) c;
      IF v_claim.claim_state <> 'claimed' THEN
        RETURN QUERY SELECT v_claim.claim_state, v_claim.claim_result;
        RETURN;
      END IF;
      SELECT c.outcome, c.balance, c.entry_id INTO v_change FROM ${inner}(p_user_id, p_amount, p_min, p_max) c;
      RETURN QUERY SELECT 'executed'::TEXT,
        change_keyed_finish(p_key, p_user_id, p_amount, v_change.outcome, v_change.balance, v_change.entry_id);
    END
    $fn$;`
}

export const ledger: Migration = {
  name: '0004-ledger',
  async up ({ context: sequelize }) {
    await sequelize.query(`
      CREATE TABLE idempotency_keys (
        key                  TEXT PRIMARY KEY
                             CONSTRAINT idempotency_key_printable CHECK (key ~ '^[\\x20-\\x7E]{1,255}$'),
        -- sha256 of the operation and its validated request: same key + different request = reuse (422).
        request_fingerprint  TEXT NOT NULL,
        -- The domain outcome; NULL only inside the claiming transaction, never after it commits.
        result               JSONB,
        -- The journal entries the outcome wrote (empty for refusals), so the books checker can follow them.
        entry_ids            BIGINT[] NOT NULL DEFAULT '{}',
        created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
        expires_at           TIMESTAMPTZ NOT NULL
      );
      -- The purge's "oldest expired first", bounded by LIMIT, without a scan of the whole table.
      CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

      CREATE FUNCTION idempotency_claim(p_key TEXT, p_fingerprint TEXT, p_ttl_seconds INT, p_purge_limit INT)
      RETURNS TABLE (claim_state TEXT, claim_result JSONB)
      LANGUAGE plpgsql VOLATILE AS $fn$
      DECLARE
        v_claimed     TEXT;
        v_fingerprint TEXT;
        v_result      JSONB;
      BEGIN
        -- A second pass only if the row we conflicted with vanished before we could read it (expired and purged).
        FOR attempt IN 1..2 LOOP
          INSERT INTO idempotency_keys AS k (key, request_fingerprint, expires_at)
            VALUES (p_key, p_fingerprint, now() + make_interval(secs => p_ttl_seconds))
            ON CONFLICT (key) DO UPDATE
              SET request_fingerprint = EXCLUDED.request_fingerprint, result = NULL, entry_ids = '{}',
                  created_at = now(), expires_at = EXCLUDED.expires_at
              WHERE k.expires_at <= now()
            RETURNING k.key INTO v_claimed;
          IF v_claimed IS NOT NULL THEN
            IF p_purge_limit > 0 THEN
              DELETE FROM idempotency_keys d WHERE d.key IN (
                SELECT e.key FROM idempotency_keys e WHERE e.expires_at <= now()
                ORDER BY e.expires_at LIMIT p_purge_limit FOR UPDATE SKIP LOCKED);
            END IF;
            RETURN QUERY SELECT 'claimed'::TEXT, NULL::JSONB;
            RETURN;
          END IF;
          -- A new statement, a new snapshot: it sees the row the transaction we waited for committed.
          SELECT k.request_fingerprint, k.result INTO v_fingerprint, v_result FROM idempotency_keys k WHERE k.key = p_key;
          IF FOUND THEN
            IF v_fingerprint = p_fingerprint THEN
              RETURN QUERY SELECT 'replayed'::TEXT, v_result;
            ELSE
              RETURN QUERY SELECT 'reused'::TEXT, NULL::JSONB;
            END IF;
            RETURN;
          END IF;
        END LOOP;
        RAISE EXCEPTION 'idempotency key could not be claimed nor read';
      END
      $fn$;

      CREATE FUNCTION idempotency_store(p_key TEXT, p_result JSONB, p_entry_ids BIGINT[])
      RETURNS JSONB
      LANGUAGE sql VOLATILE AS $fn$
        UPDATE idempotency_keys SET result = p_result, entry_ids = p_entry_ids WHERE key = p_key;
        SELECT p_result;
      $fn$;

      -- The atomic strategy's change as a function, for its keyed path only (its keyless path stays one CTE):
      -- the conditional UPDATE takes the row lock; a refusal is explained by a lock-free read afterwards.
      CREATE FUNCTION balance_change_atomic(p_user_id BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT)
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
            -- A negative amount can only hit the lower bound, a positive one only the upper bound.
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

      -- Tags the change's journal entry with its key and stores the outcome with the key.
      CREATE FUNCTION change_keyed_finish(p_key TEXT, p_user_id BIGINT, p_amount BIGINT,
                                          p_outcome TEXT, p_balance BIGINT, p_entry_id BIGINT)
      RETURNS JSONB
      LANGUAGE plpgsql VOLATILE AS $fn$
      BEGIN
        IF p_entry_id IS NOT NULL THEN
          UPDATE journal_entries SET idempotency_key = p_key WHERE id = p_entry_id;
        END IF;
        RETURN idempotency_store(p_key,
          jsonb_build_object('operation', 'change', 'outcome', p_outcome, 'userId', p_user_id, 'amount', p_amount,
                             'balance', p_balance, 'entryId', p_entry_id),
          CASE WHEN p_entry_id IS NULL THEN '{}'::BIGINT[] ELSE ARRAY[p_entry_id] END);
      END
      $fn$;

      ${STRATEGY_CHANGE_FUNCTIONS.map(keyedChangeFunction).join('\n')}

      -- The refusal of a transfer, given both balances (NULL: no such user), or NULL when it may go ahead.
      -- Order of blame: the sender's existence, the receiver's, the sender's funds, the receiver's limit.
      CREATE FUNCTION transfer_refusal(p_from BIGINT, p_to BIGINT, p_from_balance BIGINT, p_to_balance BIGINT,
                                       p_amount BIGINT, p_min BIGINT, p_max BIGINT)
      RETURNS JSONB
      LANGUAGE sql IMMUTABLE AS $fn$
        SELECT CASE
          WHEN p_from_balance IS NULL THEN
            jsonb_build_object('operation', 'transfer', 'outcome', 'user_not_found', 'userId', p_from)
          WHEN p_to_balance IS NULL THEN
            jsonb_build_object('operation', 'transfer', 'outcome', 'user_not_found', 'userId', p_to)
          WHEN p_from_balance - p_amount < p_min THEN
            jsonb_build_object('operation', 'transfer', 'outcome', 'insufficient_funds', 'userId', p_from, 'balance', p_from_balance)
          WHEN p_to_balance + p_amount > p_max THEN
            jsonb_build_object('operation', 'transfer', 'outcome', 'balance_limit_exceeded', 'userId', p_to, 'balance', p_to_balance)
        END;
      $fn$;

      -- Both journal legs of an applied transfer (balances already updated by the caller, under its locks).
      CREATE FUNCTION transfer_journal(p_from BIGINT, p_to BIGINT, p_amount BIGINT,
                                       p_from_after BIGINT, p_to_after BIGINT, p_key TEXT)
      RETURNS JSONB
      LANGUAGE plpgsql VOLATILE AS $fn$
      DECLARE
        v_transfer UUID := gen_random_uuid();
        v_out      BIGINT;
        v_in       BIGINT;
      BEGIN
        INSERT INTO journal_entries (user_id, amount, balance_after, kind, transfer_id, idempotency_key)
          VALUES (p_from, -p_amount, p_from_after, 'transfer-out', v_transfer, p_key) RETURNING id INTO v_out;
        INSERT INTO journal_entries (user_id, amount, balance_after, kind, transfer_id, idempotency_key)
          VALUES (p_to, p_amount, p_to_after, 'transfer-in', v_transfer, p_key) RETURNING id INTO v_in;
        RETURN jsonb_build_object('operation', 'transfer', 'outcome', 'applied', 'transferId', v_transfer, 'amount', p_amount,
          'fromUserId', p_from, 'fromBalance', p_from_after, 'fromEntryId', v_out,
          'toUserId', p_to, 'toBalance', p_to_after, 'toEntryId', v_in);
      END
      $fn$;

      -- Stores a transfer's outcome with its key (when there is one) and passes it through.
      CREATE FUNCTION transfer_finish(p_key TEXT, p_result JSONB)
      RETURNS TABLE (idempotency TEXT, result JSONB)
      LANGUAGE plpgsql VOLATILE AS $fn$
      BEGIN
        IF p_key IS NOT NULL THEN
          PERFORM idempotency_store(p_key, p_result, CASE WHEN p_result->>'outcome' = 'applied'
            THEN ARRAY[(p_result->>'fromEntryId')::BIGINT, (p_result->>'toEntryId')::BIGINT] ELSE '{}'::BIGINT[] END);
        END IF;
        RETURN QUERY SELECT 'executed'::TEXT, p_result;
      END
      $fn$;

      -- advisory: both users' advisory locks in ascending id order. Two opposite transfers want the same first lock,
      -- so neither can hold one lock while waiting for the other's: no deadlock. Then read, check, write, journal.
      CREATE FUNCTION balance_transfer_advisory(p_from BIGINT, p_to BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT,
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

      -- row-lock: SELECT … FOR UPDATE on both rows, one statement each, in ascending id order (deadlock-free, as above).
      CREATE FUNCTION balance_transfer_row_lock(p_from BIGINT, p_to BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT,
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
        SELECT u.balance INTO v_low FROM users u WHERE u.id = LEAST(p_from, p_to) FOR UPDATE;
        SELECT u.balance INTO v_high FROM users u WHERE u.id = GREATEST(p_from, p_to) FOR UPDATE;
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

      -- atomic: two conditional UPDATEs (no read before write), in ascending id order so opposite transfers cannot
      -- deadlock (sender-then-receiver order would: A→B locks A then B while B→A locks B then A).
      -- When the second refuses, the first must be undone: the block is a savepoint and RAISE rolls back to it.
      -- A plain RAISE out of the function would also roll back the idempotency key and lose the refusal the contract
      -- keeps. The price is one subtransaction per transfer; no lock is held longer for it.
      CREATE FUNCTION balance_transfer_atomic(p_from BIGINT, p_to BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT,
                                              p_key TEXT, p_fingerprint TEXT, p_ttl_seconds INT, p_purge_limit INT)
      RETURNS TABLE (idempotency TEXT, result JSONB)
      LANGUAGE plpgsql VOLATILE AS $fn$
      DECLARE
        v_claim      RECORD;
        v_low        BIGINT := LEAST(p_from, p_to);
        v_high       BIGINT := GREATEST(p_from, p_to);
        v_low_delta  BIGINT := CASE WHEN p_from < p_to THEN -p_amount ELSE p_amount END;
        v_low_after  BIGINT;
        v_high_after BIGINT;
        v_refused    BIGINT;
        v_from       BIGINT;
        v_to         BIGINT;
        v_result     JSONB;
      BEGIN
        IF p_key IS NOT NULL THEN
          SELECT c.claim_state, c.claim_result INTO v_claim FROM idempotency_claim(p_key, p_fingerprint, p_ttl_seconds, p_purge_limit) c;
          IF v_claim.claim_state <> 'claimed' THEN
            RETURN QUERY SELECT v_claim.claim_state, v_claim.claim_result;
            RETURN;
          END IF;
        END IF;
        BEGIN
          UPDATE users u SET balance = u.balance + v_low_delta, updated_at = now()
            WHERE u.id = v_low AND u.balance + v_low_delta BETWEEN p_min AND p_max
            RETURNING u.balance INTO v_low_after;
          IF NOT FOUND THEN
            v_refused := v_low;
          ELSE
            UPDATE users u SET balance = u.balance - v_low_delta, updated_at = now()
              WHERE u.id = v_high AND u.balance - v_low_delta BETWEEN p_min AND p_max
              RETURNING u.balance INTO v_high_after;
            IF NOT FOUND THEN
              RAISE EXCEPTION USING ERRCODE = 'LT409', MESSAGE = 'transfer refused by its second account';
            END IF;
          END IF;
        EXCEPTION WHEN SQLSTATE 'LT409' THEN
          v_refused := v_high;
        END;
        IF v_refused IS NULL THEN
          IF p_from < p_to THEN v_from := v_low_after; v_to := v_high_after; ELSE v_from := v_high_after; v_to := v_low_after; END IF;
          v_result := transfer_journal(p_from, p_to, p_amount, v_from, v_to, p_key);
        ELSE
          -- Why it was refused: a lock-free read of the latest committed balances.
          SELECT u.balance INTO v_from FROM users u WHERE u.id = p_from;
          SELECT u.balance INTO v_to FROM users u WHERE u.id = p_to;
          v_result := transfer_refusal(p_from, p_to, v_from, v_to, p_amount, p_min, p_max);
          IF v_result IS NULL THEN
            -- The balances moved between the refusal and the read: blame the account that refused, with its balance now.
            v_result := CASE WHEN v_refused = p_from
              THEN jsonb_build_object('operation', 'transfer', 'outcome', 'insufficient_funds', 'userId', p_from, 'balance', v_from)
              ELSE jsonb_build_object('operation', 'transfer', 'outcome', 'balance_limit_exceeded', 'userId', p_to, 'balance', v_to)
            END;
          END IF;
        END IF;
        RETURN QUERY SELECT f.idempotency, f.result FROM transfer_finish(p_key, v_result) f;
      END
      $fn$;

      -- A new user; an initial balance > 0 is its opening journal entry, in the same transaction.
      CREATE FUNCTION user_create(p_balance BIGINT, p_key TEXT, p_fingerprint TEXT, p_ttl_seconds INT, p_purge_limit INT)
      RETURNS TABLE (idempotency TEXT, result JSONB)
      LANGUAGE plpgsql VOLATILE AS $fn$
      DECLARE
        v_claim  RECORD;
        v_user   users%ROWTYPE;
        v_entry  BIGINT;
        v_result JSONB;
      BEGIN
        IF p_key IS NOT NULL THEN
          SELECT c.claim_state, c.claim_result INTO v_claim FROM idempotency_claim(p_key, p_fingerprint, p_ttl_seconds, p_purge_limit) c;
          IF v_claim.claim_state <> 'claimed' THEN
            RETURN QUERY SELECT v_claim.claim_state, v_claim.claim_result;
            RETURN;
          END IF;
        END IF;
        INSERT INTO users (balance) VALUES (p_balance) RETURNING * INTO v_user;
        IF p_balance > 0 THEN
          INSERT INTO journal_entries (user_id, amount, balance_after, kind, idempotency_key)
            VALUES (v_user.id, p_balance, p_balance, 'opening', p_key) RETURNING id INTO v_entry;
        END IF;
        v_result := jsonb_build_object('operation', 'create-user', 'outcome', 'applied', 'id', v_user.id,
          'balance', v_user.balance, 'createdAt', v_user.created_at, 'updatedAt', v_user.updated_at, 'entryId', v_entry);
        IF p_key IS NOT NULL THEN
          PERFORM idempotency_store(p_key, v_result, CASE WHEN v_entry IS NULL THEN '{}'::BIGINT[] ELSE ARRAY[v_entry] END);
        END IF;
        RETURN QUERY SELECT 'executed'::TEXT, v_result;
      END
      $fn$;
    `)
  },
  async down ({ context: sequelize }) {
    await sequelize.query(`
      DROP FUNCTION user_create(BIGINT, TEXT, TEXT, INT, INT);
      DROP FUNCTION balance_transfer_atomic(BIGINT, BIGINT, BIGINT, BIGINT, BIGINT, TEXT, TEXT, INT, INT);
      DROP FUNCTION balance_transfer_row_lock(BIGINT, BIGINT, BIGINT, BIGINT, BIGINT, TEXT, TEXT, INT, INT);
      DROP FUNCTION balance_transfer_advisory(BIGINT, BIGINT, BIGINT, BIGINT, BIGINT, TEXT, TEXT, INT, INT);
      DROP FUNCTION transfer_finish(TEXT, JSONB);
      DROP FUNCTION transfer_journal(BIGINT, BIGINT, BIGINT, BIGINT, BIGINT, TEXT);
      DROP FUNCTION transfer_refusal(BIGINT, BIGINT, BIGINT, BIGINT, BIGINT, BIGINT, BIGINT);
      ${STRATEGY_CHANGE_FUNCTIONS.map((name) => `DROP FUNCTION ${name}_keyed(BIGINT, BIGINT, BIGINT, BIGINT, TEXT, TEXT, INT, INT);`).join('\n')}
      DROP FUNCTION change_keyed_finish(TEXT, BIGINT, BIGINT, TEXT, BIGINT, BIGINT);
      DROP FUNCTION balance_change_atomic(BIGINT, BIGINT, BIGINT, BIGINT);
      DROP FUNCTION idempotency_store(TEXT, JSONB, BIGINT[]);
      DROP FUNCTION idempotency_claim(TEXT, TEXT, INT, INT);
      DROP TABLE idempotency_keys;
    `)
  },
}
