import type { Migration } from '../types.js'

/**
 * The purge of expired idempotency keys moves from the claim (the first thing a keyed transaction does) to the store
 * of the outcome (the last thing it does), so it can no longer take part in a deadlock.
 *
 * Before: idempotency_claim() deleted up to p_purge_limit expired rows right after claiming its key. Those rows stay
 * locked until commit, and any of them may be a key another transaction is about to claim again (an expired key is
 * free to be reused). A batch claims several keys in sorted order, so a purge after its first claim could lock a key
 * that a second batch then waited for, while the second batch already held a key the first one still had to claim:
 * a cycle, 40P01 (test/api/idempotency-purge.test.ts reproduces it).
 *
 * Now the claim only records the limit for this transaction (a LOCAL setting), and idempotency_store() purges once,
 * after the transaction has taken every lock it needs: keys, user locks, rows. A transaction that waits for nothing
 * after it takes its purge locks cannot be part of a wait cycle; the purge itself never waits (SKIP LOCKED) and is
 * bounded by the limit (oldest expired first, via idempotency_keys_expiry). Every keyed write that executes stores its
 * outcome, so every executed keyed write still purges at most p_purge_limit rows; replays and reuses purge nothing.
 */
const PURGE_LIMIT_SETTING = 'balance_api.idempotency_purge_limit'

export const idempotencyPurgeLast: Migration = {
  name: '0009-idempotency-purge-last',
  async up ({ context: sequelize }) {
    await sequelize.query(`
      CREATE OR REPLACE FUNCTION idempotency_claim(p_key TEXT, p_fingerprint TEXT, p_ttl_seconds INT, p_purge_limit INT)
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
            -- The purge waits for idempotency_store(), the transaction's last step.
            PERFORM set_config('${PURGE_LIMIT_SETTING}', greatest(coalesce(p_purge_limit, 0), 0)::TEXT, true);
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

      CREATE OR REPLACE FUNCTION idempotency_store(p_key TEXT, p_result JSONB, p_entry_ids BIGINT[])
      RETURNS JSONB
      LANGUAGE plpgsql VOLATILE AS $fn$
      DECLARE
        v_limit INT := coalesce(nullif(current_setting('${PURGE_LIMIT_SETTING}', true), '')::INT, 0);
      BEGIN
        UPDATE idempotency_keys SET result = p_result, entry_ids = p_entry_ids WHERE key = p_key;
        IF v_limit > 0 THEN
          -- Once per transaction (a batch stores many outcomes), after every lock it waits for.
          PERFORM set_config('${PURGE_LIMIT_SETTING}', '0', true);
          DELETE FROM idempotency_keys d WHERE d.key IN (
            SELECT e.key FROM idempotency_keys e WHERE e.expires_at <= now()
            ORDER BY e.expires_at LIMIT v_limit FOR UPDATE SKIP LOCKED);
        END IF;
        RETURN p_result;
      END
      $fn$;
    `)
  },
  async down ({ context: sequelize }) {
    // Back to 0004's bodies: the purge inside the claim.
    await sequelize.query(`
      CREATE OR REPLACE FUNCTION idempotency_claim(p_key TEXT, p_fingerprint TEXT, p_ttl_seconds INT, p_purge_limit INT)
      RETURNS TABLE (claim_state TEXT, claim_result JSONB)
      LANGUAGE plpgsql VOLATILE AS $fn$
      DECLARE
        v_claimed     TEXT;
        v_fingerprint TEXT;
        v_result      JSONB;
      BEGIN
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

      DROP FUNCTION idempotency_store(TEXT, JSONB, BIGINT[]);
      CREATE FUNCTION idempotency_store(p_key TEXT, p_result JSONB, p_entry_ids BIGINT[])
      RETURNS JSONB
      LANGUAGE sql VOLATILE AS $fn$
        UPDATE idempotency_keys SET result = p_result, entry_ids = p_entry_ids WHERE key = p_key;
        SELECT p_result;
      $fn$;
    `)
  },
}
