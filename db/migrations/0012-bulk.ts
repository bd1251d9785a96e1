import type { Migration } from '../types.js'

/**
 * Atomic bulk changes: many changes, to any users, all applied in ONE transaction or none (POST /api/balance/batch
 * with `atomic: true`).
 *
 * Lock order is the one every other write takes (0008), so bulk changes mix with transfers, batches and single
 * changes of any strategy without deadlock: the idempotency key first, then (p_lock = 'advisory') the advisory
 * locks in ascending user id, then the row locks in ascending user id (one SELECT … ORDER BY id FOR … : LockRows sits
 * above the sort, so rows are locked in that order). The clock is read once, after every lock, and each user's holds
 * past their expiry are released first, exactly as balance_change_locked() does for one change.
 *
 * Every change is then checked in array order against its user's running figures: the balance after it,
 * balance + Σ amounts so far (NUMERIC, so a thousand large amounts cannot overflow BIGINT before the check), must stay
 * within [p_min + held, p_max]. That is the check a one-at-a-time run in that order makes: every change before the
 * first refused one applies, so the running sum is what each would meet. The first refused item (or one naming a
 * missing user) is returned and nothing is written; otherwise the users' balances are written once each and the journal
 * in one INSERT, entry ids ascending in array order (taken under the locks, so per user id order stays commit order and
 * balance_after chains).
 *
 * Outcome JSON (stored under the key, returned as is):
 *   {operation: 'bulk', outcome: 'applied', results: [{userId, amount, balance, available, entryId}, …]}
 *   {operation: 'bulk', outcome: 'insufficient_funds' | 'balance_limit_exceeded' | 'user_not_found',
 *    index (0-based), userId, amount, balance, available}   (balance: the running balance the item met)
 */
/**
 * Every user of a bulk request locked in the order every write takes (0008): advisory locks ascending when p_lock is
 * 'advisory', then the row locks ascending (an instance of another strategy may write these rows without the advisory
 * locks). Returns the clock read once after every lock, with each user's holds past it already released.
 */
const LOCK_USERS = `
  CREATE FUNCTION bulk_lock_users(p_lock TEXT, p_users BIGINT[])
  RETURNS TIMESTAMPTZ
  LANGUAGE plpgsql VOLATILE AS $fn$
  DECLARE
    v_ids BIGINT[];
    v_id  BIGINT;
    v_now TIMESTAMPTZ;
  BEGIN
    SELECT array_agg(DISTINCT u ORDER BY u) INTO v_ids FROM unnest(p_users) AS u;
    IF p_lock = 'advisory' THEN
      FOREACH v_id IN ARRAY v_ids LOOP
        PERFORM pg_advisory_xact_lock(v_id);
      END LOOP;
      -- The row locks too: an instance of another strategy may write these rows without the advisory locks.
      PERFORM 1 FROM users u WHERE u.id = ANY (v_ids) ORDER BY u.id FOR NO KEY UPDATE;
    ELSIF p_lock = 'row' THEN
      PERFORM 1 FROM users u WHERE u.id = ANY (v_ids) ORDER BY u.id FOR UPDATE;
    ELSE
      RAISE EXCEPTION 'invariant: unknown lock %', p_lock;
    END IF;
    v_now := clock_timestamp();
    PERFORM holds_release_expired(u.id, v_now) FROM users u WHERE u.id = ANY (v_ids) AND u.holds_expire_at <= v_now;
    RETURN v_now;
  END
  $fn$;
`

const BULK = `
  CREATE FUNCTION ledger_bulk(p_lock TEXT, p_users BIGINT[], p_amounts BIGINT[], p_metadata JSONB[], p_min BIGINT, p_max BIGINT,
                              p_key TEXT, p_fingerprint TEXT, p_ttl_seconds INT, p_purge_limit INT)
  RETURNS TABLE (idempotency TEXT, result JSONB)
  LANGUAGE plpgsql VOLATILE AS $fn$
  DECLARE
    n         INT := coalesce(cardinality(p_users), 0);
    v_claim   RECORD;
    v_now     TIMESTAMPTZ;
    v_entries BIGINT[];
    v_result  JSONB;
  BEGIN
    IF n = 0 OR cardinality(p_amounts) <> n OR cardinality(p_metadata) <> n THEN
      RAISE EXCEPTION 'invariant: ledger_bulk got % users, % amounts, % metadata', n, cardinality(p_amounts), cardinality(p_metadata);
    END IF;
    IF p_key IS NOT NULL THEN
      SELECT c.claim_state, c.claim_result INTO v_claim FROM idempotency_claim(p_key, p_fingerprint, p_ttl_seconds, p_purge_limit) c;
      IF v_claim.claim_state <> 'claimed' THEN
        RETURN QUERY SELECT v_claim.claim_state, v_claim.claim_result;
        RETURN;
      END IF;
    END IF;

    v_now := bulk_lock_users(p_lock, p_users);

    -- The first item a one-at-a-time run in array order would refuse, if any: then nothing is written.
    WITH items AS (
      SELECT t.i, t.u, t.a FROM unnest(p_users, p_amounts) WITH ORDINALITY AS t(u, a, i)
    ), run AS (
      SELECT x.i, x.u, x.a, s.balance, s.held,
             s.balance + sum(x.a::NUMERIC) OVER (PARTITION BY x.u ORDER BY x.i) AS after
      FROM items x LEFT JOIN users s ON s.id = x.u
    )
    SELECT jsonb_build_object('operation', 'bulk',
             'outcome', CASE WHEN r.balance IS NULL THEN 'user_not_found'
                             WHEN r.after < p_min + r.held THEN 'insufficient_funds'
                             ELSE 'balance_limit_exceeded' END,
             'index', r.i - 1, 'userId', r.u, 'amount', r.a,
             'balance', (r.after - r.a)::BIGINT, 'available', (r.after - r.a - r.held)::BIGINT)
      INTO v_result
      FROM run r
      WHERE r.balance IS NULL OR r.after < p_min + r.held OR r.after > p_max
      ORDER BY r.i LIMIT 1;

    IF v_result IS NULL THEN
      SELECT array_agg(s.id ORDER BY s.id) INTO v_entries
        FROM (SELECT nextval('journal_entries_id_seq') AS id FROM generate_series(1, n)) s;
      WITH items AS (
        SELECT t.i, t.u, t.a FROM unnest(p_users, p_amounts) WITH ORDINALITY AS t(u, a, i)
      ), run AS (
        SELECT x.i, x.u, x.a, s.held,
               (s.balance + sum(x.a::NUMERIC) OVER (PARTITION BY x.u ORDER BY x.i))::BIGINT AS after
        FROM items x JOIN users s ON s.id = x.u
      ), journal AS (
        INSERT INTO journal_entries (id, user_id, amount, balance_after, kind, idempotency_key, metadata)
          SELECT v_entries[r.i], r.u, r.a, r.after, 'change', p_key, p_metadata[r.i] FROM run r
      ), balances AS (
        UPDATE users u SET balance = f.after, updated_at = now()
          FROM (SELECT DISTINCT ON (r.u) r.u, r.after FROM run r ORDER BY r.u, r.i DESC) f
          WHERE u.id = f.u
      )
      SELECT jsonb_build_object('operation', 'bulk', 'outcome', 'applied', 'results',
               jsonb_agg(jsonb_build_object('userId', r.u, 'amount', r.a, 'balance', r.after,
                                            'available', r.after - r.held, 'entryId', v_entries[r.i]) ORDER BY r.i))
        INTO v_result
        FROM run r;
    END IF;

    IF p_key IS NOT NULL THEN
      PERFORM idempotency_store(p_key, v_result, CASE WHEN v_result->>'outcome' = 'applied' THEN v_entries ELSE '{}'::BIGINT[] END);
    END IF;
    RETURN QUERY SELECT 'executed'::TEXT, v_result;
  END
  $fn$;
`

/**
 * A bulk request's keyless changes, each decided on its own (POST /api/balance/batch without `atomic`), in ONE
 * transaction: the same locks in the same order as ledger_bulk(), the clock once, expired holds released; then each
 * change in array order against its user's running figures, exactly as a one-at-a-time run in that order would decide
 * it, a refused change skipped (different users are independent, so the walk goes user by user, each user's changes in
 * array order: O(n log n)). Balances written once per user, the journal in one INSERT with ids ascending in array
 * order. One row per change, in array order: ord (1-based), outcome, balance (after, or the one it met), entry_id,
 * available.
 */
const BULK_EACH = `
  CREATE FUNCTION ledger_bulk_each(p_lock TEXT, p_users BIGINT[], p_amounts BIGINT[], p_metadata JSONB[], p_min BIGINT, p_max BIGINT)
  RETURNS TABLE (ord INT, outcome TEXT, balance BIGINT, entry_id BIGINT, available BIGINT)
  LANGUAGE plpgsql VOLATILE AS $fn$
  DECLARE
    n         INT := coalesce(cardinality(p_users), 0);
    v_now     TIMESTAMPTZ;
    r         RECORD;
    v_user    BIGINT;
    v_found   BOOLEAN;
    v_balance BIGINT;
    v_held    BIGINT;
    v_dirty   BOOLEAN;
    v_outcome TEXT[]   := array_fill(NULL::TEXT, ARRAY[n]);
    v_after   BIGINT[] := array_fill(NULL::BIGINT, ARRAY[n]);
    v_avail   BIGINT[] := array_fill(NULL::BIGINT, ARRAY[n]);
    v_entry   BIGINT[] := array_fill(NULL::BIGINT, ARRAY[n]);
    v_applied BOOLEAN[] := array_fill(false, ARRAY[n]);
    v_final_u BIGINT[] := '{}';
    v_final_b BIGINT[] := '{}';
    v_count   INT := 0;
    v_entries BIGINT[];
    v_j       INT := 0;
  BEGIN
    IF n = 0 OR cardinality(p_amounts) <> n OR cardinality(p_metadata) <> n THEN
      RAISE EXCEPTION 'invariant: ledger_bulk_each got % users, % amounts, % metadata', n, cardinality(p_amounts), cardinality(p_metadata);
    END IF;
    v_now := bulk_lock_users(p_lock, p_users);

    FOR r IN
      SELECT x.i, x.u, x.a, s.balance AS start, s.held
      FROM unnest(p_users, p_amounts) WITH ORDINALITY AS x(u, a, i) LEFT JOIN users s ON s.id = x.u
      ORDER BY x.u, x.i
    LOOP
      IF v_user IS DISTINCT FROM r.u THEN
        IF v_dirty THEN
          v_final_u := v_final_u || v_user;
          v_final_b := v_final_b || v_balance;
        END IF;
        v_user := r.u; v_found := r.start IS NOT NULL; v_balance := r.start; v_held := r.held; v_dirty := false;
      END IF;
      IF NOT v_found THEN
        v_outcome[r.i] := 'user_not_found';
        CONTINUE;
      ELSIF v_balance + r.a < p_min + v_held THEN
        v_outcome[r.i] := 'insufficient_funds';
      ELSIF v_balance + r.a > p_max THEN
        v_outcome[r.i] := 'balance_limit_exceeded';
      ELSE
        v_balance := v_balance + r.a;
        v_outcome[r.i] := 'applied';
        v_applied[r.i] := true;
        v_count := v_count + 1;
        v_dirty := true;
      END IF;
      v_after[r.i] := v_balance;
      v_avail[r.i] := v_balance - v_held;
    END LOOP;
    IF v_dirty THEN
      v_final_u := v_final_u || v_user;
      v_final_b := v_final_b || v_balance;
    END IF;

    IF v_count > 0 THEN
      UPDATE users u SET balance = f.b, updated_at = now() FROM unnest(v_final_u, v_final_b) AS f(u, b) WHERE u.id = f.u;
      SELECT array_agg(s.id ORDER BY s.id) INTO v_entries
        FROM (SELECT nextval('journal_entries_id_seq') AS id FROM generate_series(1, v_count)) s;
      FOR i IN 1..n LOOP
        IF v_applied[i] THEN
          v_j := v_j + 1;
          v_entry[i] := v_entries[v_j];
        END IF;
      END LOOP;
      INSERT INTO journal_entries (id, user_id, amount, balance_after, kind, metadata)
        SELECT v_entry[x.i], x.u, x.a, v_after[x.i], 'change', p_metadata[x.i]
        FROM unnest(p_users, p_amounts) WITH ORDINALITY AS x(u, a, i) WHERE v_applied[x.i];
    END IF;
    RETURN QUERY
      SELECT x.i::INT, x.outcome, x.after, x.entry, x.avail
      FROM unnest(v_outcome, v_after, v_entry, v_avail) WITH ORDINALITY AS x(outcome, after, entry, avail, i)
      ORDER BY x.i;
  END
  $fn$;
`

export const bulk: Migration = {
  name: '0012-bulk',
  async up ({ context: sequelize }) {
    await sequelize.query(LOCK_USERS)
    await sequelize.query(BULK)
    await sequelize.query(BULK_EACH)
  },
  async down ({ context: sequelize }) {
    await sequelize.query('DROP FUNCTION ledger_bulk_each(TEXT, BIGINT[], BIGINT[], JSONB[], BIGINT, BIGINT)')
    await sequelize.query('DROP FUNCTION ledger_bulk(TEXT, BIGINT[], BIGINT[], JSONB[], BIGINT, BIGINT, TEXT, TEXT, INT, INT)')
    await sequelize.query('DROP FUNCTION bulk_lock_users(TEXT, BIGINT[])')
  },
}
