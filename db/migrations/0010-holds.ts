import type { Migration } from '../types.js'
import { rowLockChangeFunction } from './0003-row-lock-change-function.js'
import { atomicRefusalRechecked } from './0007-atomic-refusal-rechecked.js'
import { strategiesMixExactly } from './0008-strategies-mix-exactly.js'

/**
 * Holds: money reserved now and captured (all or part, optionally paid to another user) or voided later, and
 * metadata on every write. `available = balance − Σ active, unexpired holds`; withdrawals, transfers out and new
 * holds are checked against it, deposits are not.
 *
 * What is stored, so that the check stays O(1) under a hot user's lock:
 * - `users.held`: Σ amount of the user's holds whose status is 'active', kept in the same transaction as every hold
 *   change. A CHECK makes `0 ≤ held ≤ balance` a database invariant: available can never be negative.
 * - `users.holds_expire_at`: a lower bound of the earliest `expires_at` among those active holds (NULL: none). It is
 *   lowered when a hold is created and left alone by captures and voids (an early bound is safe; it only triggers a
 *   scan that finds nothing).
 * Expiry without a timer: a write that holds the user's lock reads the database clock once (clock_timestamp(), after
 * the lock, so a transaction that waited for the lock does not decide with a stale instant). If holds_expire_at is
 * at or before it, holds_release_expired() marks every active hold past its expires_at as 'expired' and recomputes
 * held and the bound, before any check. Reads compute the same without writing: a hold past its expires_at reads as
 * 'expired' and is not counted in `held` from that instant, whether or not a write has marked it yet.
 *
 * Journal: `hold_id` on the entries a capture writes (kinds 'capture' for the holder, 'capture-in' for a payee),
 * `metadata` (a flat JSON object of strings, bounded by the service) on every entry a write makes, and `created_at`
 * now defaults to clock_timestamp(): every strategy inserts a user's entries while holding that user's lock, so per
 * user the entry time no longer goes backwards in id order (now() is the transaction's start, which can precede the
 * commit of an entry with a lower id); GET /api/users/:id/balance?at= relies on it.
 *
 * Functions: every write path is rewritten once here with the held check, metadata and the key written in the
 * journal INSERT itself. The previous signatures stay as thin wrappers over the new ones, so an instance still running
 * the previous code keeps honouring holds during a rolling upgrade.
 */

const SCHEMA = `
  ALTER TABLE users
    ADD COLUMN held BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN holds_expire_at TIMESTAMPTZ,
    ADD CONSTRAINT users_held_within_balance CHECK (held >= 0 AND held <= balance);

  CREATE TABLE holds (
    id              BIGSERIAL PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES users(id),
    amount          BIGINT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'active',
    captured        BIGINT NOT NULL DEFAULT 0,
    expires_at      TIMESTAMPTZ NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    settled_at      TIMESTAMPTZ,
    to_user_id      BIGINT REFERENCES users(id),
    metadata        JSONB,
    idempotency_key TEXT,
    CONSTRAINT holds_amount_positive CHECK (amount > 0 AND amount <= 9007199254740991),
    CONSTRAINT holds_status_known CHECK (status IN ('active', 'captured', 'voided', 'expired')),
    CONSTRAINT holds_captured_within_amount CHECK (captured >= 0 AND captured <= amount),
    CONSTRAINT holds_captured_only_when_captured CHECK ((status = 'captured') = (captured > 0)),
    CONSTRAINT holds_settled_when_not_active CHECK ((status = 'active') = (settled_at IS NULL))
  );
  CREATE INDEX holds_user_newest ON holds (user_id, id DESC);
  CREATE INDEX holds_user_active_expiry ON holds (user_id, expires_at) WHERE status = 'active';

  ALTER TABLE journal_entries
    ADD COLUMN hold_id BIGINT REFERENCES holds(id),
    ADD COLUMN metadata JSONB,
    ALTER COLUMN created_at SET DEFAULT clock_timestamp(),
    DROP CONSTRAINT journal_kind_known,
    ADD CONSTRAINT journal_kind_known CHECK (kind IN ('opening', 'change', 'transfer-in', 'transfer-out', 'capture', 'capture-in')),
    ADD CONSTRAINT journal_capture_names_hold CHECK ((kind IN ('capture', 'capture-in')) = (hold_id IS NOT NULL));
`

/** Under the user's lock: settles every active hold past p_now as 'expired', stores and returns the new held and bound. */
const RELEASE_EXPIRED = `
  CREATE FUNCTION holds_release_expired(p_user_id BIGINT, p_now TIMESTAMPTZ)
  RETURNS TABLE (held BIGINT, next_expiry TIMESTAMPTZ)
  LANGUAGE plpgsql VOLATILE AS $fn$
  DECLARE
    v_held BIGINT;
    v_next TIMESTAMPTZ;
  BEGIN
    UPDATE holds SET status = 'expired', settled_at = expires_at
      WHERE user_id = p_user_id AND status = 'active' AND expires_at <= p_now;
    SELECT coalesce(sum(h.amount), 0)::BIGINT, min(h.expires_at) INTO v_held, v_next
      FROM holds h WHERE h.user_id = p_user_id AND h.status = 'active';
    UPDATE users SET held = v_held, holds_expire_at = v_next WHERE id = p_user_id;
    RETURN QUERY SELECT v_held, v_next;
  END
  $fn$;

  -- A hold as every answer and read shows it; p_now decides whether an active hold reads as expired.
  CREATE FUNCTION hold_json(p_hold holds, p_now TIMESTAMPTZ)
  RETURNS JSONB
  LANGUAGE sql STABLE AS $fn$
    SELECT jsonb_build_object(
      'holdId', p_hold.id, 'userId', p_hold.user_id, 'amount', p_hold.amount,
      'status', CASE WHEN p_hold.status = 'active' AND p_hold.expires_at <= p_now THEN 'expired' ELSE p_hold.status END,
      'captured', p_hold.captured,
      'released', CASE WHEN p_hold.status = 'active' AND p_hold.expires_at > p_now THEN 0 ELSE p_hold.amount - p_hold.captured END,
      'expiresAt', p_hold.expires_at, 'createdAt', p_hold.created_at,
      'settledAt', CASE WHEN p_hold.status = 'active' AND p_hold.expires_at <= p_now THEN p_hold.expires_at ELSE p_hold.settled_at END,
      'toUserId', p_hold.to_user_id, 'metadata', p_hold.metadata)
  $fn$;
`

/**
 * One change to one user under its lock ('advisory': pg_advisory_xact_lock then the row FOR NO KEY UPDATE, as 0008;
 * 'row': SELECT … FOR UPDATE). The advisory and row-lock strategies' change, and atomic's locked fallback.
 * A withdrawal that the committed figures cannot cover is refused before the lock (0005), but only while no active
 * hold has reached its expiry (then held is exact and available can only grow by a commit we have not seen yet).
 */
const CHANGE_LOCKED = `
  CREATE FUNCTION balance_change_locked(p_lock TEXT, p_user_id BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT,
                                        p_metadata JSONB, p_key TEXT)
  RETURNS TABLE (outcome TEXT, balance BIGINT, entry_id BIGINT, available BIGINT)
  LANGUAGE plpgsql VOLATILE AS $fn$
  DECLARE
    v_balance BIGINT;
    v_held    BIGINT;
    v_next    TIMESTAMPTZ;
    v_now     TIMESTAMPTZ;
    v_entry   BIGINT;
  BEGIN
    IF p_amount < 0 THEN
      SELECT u.balance, u.held, u.holds_expire_at INTO v_balance, v_held, v_next FROM users u WHERE u.id = p_user_id;
      IF FOUND AND (v_next IS NULL OR v_next > clock_timestamp()) AND v_balance + p_amount < p_min + v_held THEN
        RETURN QUERY SELECT 'insufficient_funds'::TEXT, v_balance, NULL::BIGINT, v_balance - v_held;
        RETURN;
      END IF;
    END IF;
    IF p_lock = 'advisory' THEN
      PERFORM pg_advisory_xact_lock(p_user_id);
      -- The row lock too: an instance of another strategy may write this row without the advisory lock.
      SELECT u.balance, u.held, u.holds_expire_at INTO v_balance, v_held, v_next FROM users u WHERE u.id = p_user_id FOR NO KEY UPDATE;
    ELSIF p_lock = 'row' THEN
      SELECT u.balance, u.held, u.holds_expire_at INTO v_balance, v_held, v_next FROM users u WHERE u.id = p_user_id FOR UPDATE;
    ELSE
      RAISE EXCEPTION 'invariant: unknown lock %', p_lock;
    END IF;
    IF NOT FOUND THEN
      RETURN QUERY SELECT 'user_not_found'::TEXT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT;
      RETURN;
    END IF;
    IF v_next IS NOT NULL THEN
      v_now := clock_timestamp();
      IF v_next <= v_now THEN
        SELECT r.held INTO v_held FROM holds_release_expired(p_user_id, v_now) r;
      END IF;
    END IF;
    IF v_balance + p_amount < p_min + v_held THEN
      RETURN QUERY SELECT 'insufficient_funds'::TEXT, v_balance, NULL::BIGINT, v_balance - v_held;
      RETURN;
    END IF;
    IF v_balance + p_amount > p_max THEN
      RETURN QUERY SELECT 'balance_limit_exceeded'::TEXT, v_balance, NULL::BIGINT, v_balance - v_held;
      RETURN;
    END IF;
    UPDATE users SET balance = v_balance + p_amount, updated_at = now() WHERE id = p_user_id;
    INSERT INTO journal_entries (user_id, amount, balance_after, kind, idempotency_key, metadata)
      VALUES (p_user_id, p_amount, v_balance + p_amount, 'change', p_key, p_metadata)
      RETURNING id INTO v_entry;
    RETURN QUERY SELECT 'applied'::TEXT, v_balance + p_amount, v_entry, v_balance + p_amount - v_held;
  END
  $fn$;
`

/**
 * atomic: one conditional UPDATE whose WHERE is the whole check (available included, from the row it updates).
 * A refusal is re-read lock-free; when the user has a hold past its expiry (its money may be free again) or the
 * balance keeps moving, the change is decided under the row lock instead.
 */
const CHANGE_ATOMIC = `
  CREATE FUNCTION balance_change_atomic(p_user_id BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT,
                                        p_metadata JSONB, p_key TEXT)
  RETURNS TABLE (outcome TEXT, balance BIGINT, entry_id BIGINT, available BIGINT)
  LANGUAGE plpgsql VOLATILE AS $fn$
  DECLARE
    v_balance BIGINT;
    v_held    BIGINT;
    v_next    TIMESTAMPTZ;
    v_entry   BIGINT;
  BEGIN
    FOR attempt IN 1..8 LOOP
      UPDATE users u SET balance = u.balance + p_amount, updated_at = now()
        WHERE u.id = p_user_id AND u.balance + p_amount >= p_min + u.held AND u.balance + p_amount <= p_max
        RETURNING u.balance, u.held INTO v_balance, v_held;
      IF FOUND THEN
        INSERT INTO journal_entries (user_id, amount, balance_after, kind, idempotency_key, metadata)
          VALUES (p_user_id, p_amount, v_balance, 'change', p_key, p_metadata) RETURNING id INTO v_entry;
        RETURN QUERY SELECT 'applied'::TEXT, v_balance, v_entry, v_balance - v_held;
        RETURN;
      END IF;
      -- A new statement, a new snapshot: the latest committed figures.
      SELECT u.balance, u.held, u.holds_expire_at INTO v_balance, v_held, v_next FROM users u WHERE u.id = p_user_id;
      IF NOT FOUND THEN
        RETURN QUERY SELECT 'user_not_found'::TEXT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT;
        RETURN;
      END IF;
      EXIT WHEN v_next IS NOT NULL AND v_next <= clock_timestamp();
      IF v_balance + p_amount < p_min + v_held THEN
        RETURN QUERY SELECT 'insufficient_funds'::TEXT, v_balance, NULL::BIGINT, v_balance - v_held;
        RETURN;
      END IF;
      IF v_balance + p_amount > p_max THEN
        RETURN QUERY SELECT 'balance_limit_exceeded'::TEXT, v_balance, NULL::BIGINT, v_balance - v_held;
        RETURN;
      END IF;
    END LOOP;
    RETURN QUERY SELECT * FROM balance_change_locked('row', p_user_id, p_amount, p_min, p_max, p_metadata, p_key);
  END
  $fn$;
`

/** The keyed change of every strategy: claim, change (the key written in the journal INSERT), store; one round trip. */
const CHANGE_KEYED = `
  CREATE FUNCTION balance_change_keyed(p_strategy TEXT, p_user_id BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT,
                                       p_metadata JSONB, p_key TEXT, p_fingerprint TEXT, p_ttl_seconds INT, p_purge_limit INT)
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
    IF p_strategy = 'atomic' THEN
      SELECT * INTO v_change FROM balance_change_atomic(p_user_id, p_amount, p_min, p_max, p_metadata, p_key);
    ELSIF p_strategy = 'advisory' THEN
      SELECT * INTO v_change FROM balance_change_locked('advisory', p_user_id, p_amount, p_min, p_max, p_metadata, p_key);
    ELSIF p_strategy = 'row-lock' THEN
      SELECT * INTO v_change FROM balance_change_locked('row', p_user_id, p_amount, p_min, p_max, p_metadata, p_key);
    ELSE
      RAISE EXCEPTION 'invariant: unknown strategy %', p_strategy;
    END IF;
    RETURN QUERY SELECT 'executed'::TEXT, idempotency_store(p_key,
      jsonb_build_object('operation', 'change', 'outcome', v_change.outcome, 'userId', p_user_id, 'amount', p_amount,
                         'balance', v_change.balance, 'available', v_change.available, 'entryId', v_change.entry_id),
      CASE WHEN v_change.entry_id IS NULL THEN '{}'::BIGINT[] ELSE ARRAY[v_change.entry_id] END);
  END
  $fn$;
`

/** The previous signatures, kept for instances still running the previous code: the same checks, held included. */
const PREVIOUS_CHANGE_SIGNATURES = `
  CREATE OR REPLACE FUNCTION balance_change_advisory(p_user_id BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT)
  RETURNS TABLE (outcome TEXT, balance BIGINT, entry_id BIGINT)
  LANGUAGE sql VOLATILE AS $fn$
    SELECT c.outcome, c.balance, c.entry_id FROM balance_change_locked('advisory', p_user_id, p_amount, p_min, p_max, NULL, NULL) c
  $fn$;
  CREATE OR REPLACE FUNCTION balance_change_row_lock(p_user_id BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT)
  RETURNS TABLE (outcome TEXT, balance BIGINT, entry_id BIGINT)
  LANGUAGE sql VOLATILE AS $fn$
    SELECT c.outcome, c.balance, c.entry_id FROM balance_change_locked('row', p_user_id, p_amount, p_min, p_max, NULL, NULL) c
  $fn$;
  CREATE OR REPLACE FUNCTION balance_change_atomic(p_user_id BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT)
  RETURNS TABLE (outcome TEXT, balance BIGINT, entry_id BIGINT)
  LANGUAGE sql VOLATILE AS $fn$
    SELECT c.outcome, c.balance, c.entry_id FROM balance_change_atomic(p_user_id, p_amount, p_min, p_max, NULL, NULL) c
  $fn$;
`

/**
 * Transfers of every strategy, held included on the sender's side. atomic tries its two conditional UPDATEs first;
 * any refusal there (or a hold of the sender past its expiry) is decided under the row locks, like row-lock's.
 * Lock order as 0008: keys, advisory locks ascending, row locks ascending.
 */
const TRANSFER = `
  CREATE FUNCTION transfer_refusal(p_from BIGINT, p_to BIGINT, p_from_balance BIGINT, p_from_held BIGINT,
                                   p_to_balance BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT)
  RETURNS JSONB
  LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE
      WHEN p_from_balance IS NULL THEN
        jsonb_build_object('operation', 'transfer', 'outcome', 'user_not_found', 'userId', p_from)
      WHEN p_to_balance IS NULL THEN
        jsonb_build_object('operation', 'transfer', 'outcome', 'user_not_found', 'userId', p_to)
      WHEN p_from_balance - p_amount < p_min + p_from_held THEN
        jsonb_build_object('operation', 'transfer', 'outcome', 'insufficient_funds', 'userId', p_from,
                           'balance', p_from_balance, 'available', p_from_balance - p_from_held)
      WHEN p_to_balance + p_amount > p_max THEN
        jsonb_build_object('operation', 'transfer', 'outcome', 'balance_limit_exceeded', 'userId', p_to, 'balance', p_to_balance)
    END;
  $fn$;

  CREATE FUNCTION transfer_journal(p_from BIGINT, p_to BIGINT, p_amount BIGINT, p_from_after BIGINT, p_to_after BIGINT,
                                   p_key TEXT, p_metadata JSONB)
  RETURNS JSONB
  LANGUAGE plpgsql VOLATILE AS $fn$
  DECLARE
    v_transfer UUID := gen_random_uuid();
    v_out      BIGINT;
    v_in       BIGINT;
  BEGIN
    INSERT INTO journal_entries (user_id, amount, balance_after, kind, transfer_id, idempotency_key, metadata)
      VALUES (p_from, -p_amount, p_from_after, 'transfer-out', v_transfer, p_key, p_metadata) RETURNING id INTO v_out;
    INSERT INTO journal_entries (user_id, amount, balance_after, kind, transfer_id, idempotency_key, metadata)
      VALUES (p_to, p_amount, p_to_after, 'transfer-in', v_transfer, p_key, p_metadata) RETURNING id INTO v_in;
    RETURN jsonb_build_object('operation', 'transfer', 'outcome', 'applied', 'transferId', v_transfer, 'amount', p_amount,
      'fromUserId', p_from, 'fromBalance', p_from_after, 'fromEntryId', v_out,
      'toUserId', p_to, 'toBalance', p_to_after, 'toEntryId', v_in);
  END
  $fn$;

  -- Both users locked (the row locks in ascending id order; 'advisory' takes both advisory locks first).
  CREATE FUNCTION transfer_locked(p_lock TEXT, p_from BIGINT, p_to BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT,
                                  p_key TEXT, p_metadata JSONB)
  RETURNS JSONB
  LANGUAGE plpgsql VOLATILE AS $fn$
  DECLARE
    v_low      users%ROWTYPE;
    v_high     users%ROWTYPE;
    v_from     users%ROWTYPE;
    v_to       users%ROWTYPE;
    v_held     BIGINT;
    v_now      TIMESTAMPTZ;
    v_result   JSONB;
  BEGIN
    IF p_lock = 'advisory' THEN
      PERFORM pg_advisory_xact_lock(LEAST(p_from, p_to));
      PERFORM pg_advisory_xact_lock(GREATEST(p_from, p_to));
      SELECT * INTO v_low FROM users u WHERE u.id = LEAST(p_from, p_to) FOR NO KEY UPDATE;
      SELECT * INTO v_high FROM users u WHERE u.id = GREATEST(p_from, p_to) FOR NO KEY UPDATE;
    ELSIF p_lock = 'row' THEN
      SELECT * INTO v_low FROM users u WHERE u.id = LEAST(p_from, p_to) FOR UPDATE;
      SELECT * INTO v_high FROM users u WHERE u.id = GREATEST(p_from, p_to) FOR UPDATE;
    ELSE
      RAISE EXCEPTION 'invariant: unknown lock %', p_lock;
    END IF;
    IF p_from < p_to THEN v_from := v_low; v_to := v_high; ELSE v_from := v_high; v_to := v_low; END IF;
    v_held := v_from.held;
    IF v_from.holds_expire_at IS NOT NULL THEN
      v_now := clock_timestamp();
      IF v_from.holds_expire_at <= v_now THEN
        SELECT r.held INTO v_held FROM holds_release_expired(p_from, v_now) r;
      END IF;
    END IF;
    v_result := transfer_refusal(p_from, p_to, v_from.balance, v_held, v_to.balance, p_amount, p_min, p_max);
    IF v_result IS NULL THEN
      UPDATE users SET balance = v_from.balance - p_amount, updated_at = now() WHERE id = p_from;
      UPDATE users SET balance = v_to.balance + p_amount, updated_at = now() WHERE id = p_to;
      v_result := transfer_journal(p_from, p_to, p_amount, v_from.balance - p_amount, v_to.balance + p_amount, p_key, p_metadata);
    END IF;
    RETURN v_result;
  END
  $fn$;

  -- atomic's two conditional UPDATEs; NULL when either refused (then nothing of it remains: the block rolled back).
  CREATE FUNCTION transfer_atomic_attempt(p_from BIGINT, p_to BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT,
                                          p_key TEXT, p_metadata JSONB)
  RETURNS JSONB
  LANGUAGE plpgsql VOLATILE AS $fn$
  DECLARE
    v_from_after BIGINT;
    v_to_after   BIGINT;
  BEGIN
    -- Ascending id order, like every lock this transfer could take.
    IF p_from < p_to THEN
      UPDATE users u SET balance = u.balance - p_amount, updated_at = now()
        WHERE u.id = p_from AND u.balance - p_amount >= p_min + u.held RETURNING u.balance INTO v_from_after;
      IF NOT FOUND THEN RETURN NULL; END IF;
      UPDATE users u SET balance = u.balance + p_amount, updated_at = now()
        WHERE u.id = p_to AND u.balance + p_amount <= p_max RETURNING u.balance INTO v_to_after;
      IF NOT FOUND THEN RAISE EXCEPTION USING ERRCODE = 'LT409', MESSAGE = 'transfer refused by its second account'; END IF;
    ELSE
      UPDATE users u SET balance = u.balance + p_amount, updated_at = now()
        WHERE u.id = p_to AND u.balance + p_amount <= p_max RETURNING u.balance INTO v_to_after;
      IF NOT FOUND THEN RETURN NULL; END IF;
      UPDATE users u SET balance = u.balance - p_amount, updated_at = now()
        WHERE u.id = p_from AND u.balance - p_amount >= p_min + u.held RETURNING u.balance INTO v_from_after;
      IF NOT FOUND THEN RAISE EXCEPTION USING ERRCODE = 'LT409', MESSAGE = 'transfer refused by its second account'; END IF;
    END IF;
    RETURN transfer_journal(p_from, p_to, p_amount, v_from_after, v_to_after, p_key, p_metadata);
  EXCEPTION WHEN SQLSTATE 'LT409' THEN
    RETURN NULL;
  END
  $fn$;

  CREATE FUNCTION balance_transfer(p_strategy TEXT, p_from BIGINT, p_to BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT,
                                   p_metadata JSONB, p_key TEXT, p_fingerprint TEXT, p_ttl_seconds INT, p_purge_limit INT)
  RETURNS TABLE (idempotency TEXT, result JSONB)
  LANGUAGE plpgsql VOLATILE AS $fn$
  DECLARE
    v_claim  RECORD;
    v_result JSONB;
  BEGIN
    IF p_key IS NOT NULL THEN
      SELECT c.claim_state, c.claim_result INTO v_claim FROM idempotency_claim(p_key, p_fingerprint, p_ttl_seconds, p_purge_limit) c;
      IF v_claim.claim_state <> 'claimed' THEN
        RETURN QUERY SELECT v_claim.claim_state, v_claim.claim_result;
        RETURN;
      END IF;
    END IF;
    IF p_strategy = 'atomic' THEN
      v_result := transfer_atomic_attempt(p_from, p_to, p_amount, p_min, p_max, p_key, p_metadata);
      IF v_result IS NULL THEN
        v_result := transfer_locked('row', p_from, p_to, p_amount, p_min, p_max, p_key, p_metadata);
      END IF;
    ELSIF p_strategy = 'advisory' THEN
      v_result := transfer_locked('advisory', p_from, p_to, p_amount, p_min, p_max, p_key, p_metadata);
    ELSIF p_strategy = 'row-lock' THEN
      v_result := transfer_locked('row', p_from, p_to, p_amount, p_min, p_max, p_key, p_metadata);
    ELSE
      RAISE EXCEPTION 'invariant: unknown strategy %', p_strategy;
    END IF;
    RETURN QUERY SELECT f.idempotency, f.result FROM transfer_finish(p_key, v_result) f;
  END
  $fn$;

  CREATE OR REPLACE FUNCTION balance_transfer_advisory(p_from BIGINT, p_to BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT,
    p_key TEXT, p_fingerprint TEXT, p_ttl_seconds INT, p_purge_limit INT)
  RETURNS TABLE (idempotency TEXT, result JSONB)
  LANGUAGE sql VOLATILE AS $fn$
    SELECT * FROM balance_transfer('advisory', p_from, p_to, p_amount, p_min, p_max, NULL, p_key, p_fingerprint, p_ttl_seconds, p_purge_limit)
  $fn$;
  CREATE OR REPLACE FUNCTION balance_transfer_row_lock(p_from BIGINT, p_to BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT,
    p_key TEXT, p_fingerprint TEXT, p_ttl_seconds INT, p_purge_limit INT)
  RETURNS TABLE (idempotency TEXT, result JSONB)
  LANGUAGE sql VOLATILE AS $fn$
    SELECT * FROM balance_transfer('row-lock', p_from, p_to, p_amount, p_min, p_max, NULL, p_key, p_fingerprint, p_ttl_seconds, p_purge_limit)
  $fn$;
  CREATE OR REPLACE FUNCTION balance_transfer_atomic(p_from BIGINT, p_to BIGINT, p_amount BIGINT, p_min BIGINT, p_max BIGINT,
    p_key TEXT, p_fingerprint TEXT, p_ttl_seconds INT, p_purge_limit INT)
  RETURNS TABLE (idempotency TEXT, result JSONB)
  LANGUAGE sql VOLATILE AS $fn$
    SELECT * FROM balance_transfer('atomic', p_from, p_to, p_amount, p_min, p_max, NULL, p_key, p_fingerprint, p_ttl_seconds, p_purge_limit)
  $fn$;
`

/**
 * Group commit's batch, now of any of a user's writes that need only that user's lock: changes, new holds, captures
 * (without a payee) and voids, in input order against the running balance and held. Keys as 0006/0009.
 * Per item: p_ops[i] ∈ change | hold | capture | void; p_amounts[i] the change, the hold's amount, or the capture's
 * (NULL: the whole hold); p_holds[i] the hold a capture or void names; p_expires[i] a new hold's lifetime in seconds.
 * A change item answers in the columns (keyless) or as JSON (keyed); every hold item answers as JSON.
 */
const BATCH = `
  CREATE FUNCTION ledger_batch(p_lock TEXT, p_user_id BIGINT, p_ops TEXT[], p_amounts BIGINT[], p_holds BIGINT[],
                               p_expires INT[], p_metadata JSONB[], p_keys TEXT[], p_fingerprints TEXT[],
                               p_min BIGINT, p_max BIGINT, p_ttl_seconds INT, p_purge_limit INT)
  RETURNS TABLE (ord INT, idempotency TEXT, outcome TEXT, balance BIGINT, entry_id BIGINT, available BIGINT, result JSONB)
  LANGUAGE plpgsql VOLATILE AS $fn$
  DECLARE
    n             INT := coalesce(cardinality(p_ops), 0);
    v_key         TEXT;
    v_found       BOOLEAN;
    v_balance     BIGINT;
    v_held        BIGINT;
    v_next        TIMESTAMPTZ;
    v_now         TIMESTAMPTZ;
    v_amount      BIGINT;
    v_hold        holds%ROWTYPE;
    v_dirty       BOOLEAN := false;
    v_special     BOOLEAN := false;
    v_idem        TEXT[]   := array_fill(NULL::TEXT, ARRAY[n]);
    v_outcome     TEXT[]   := array_fill(NULL::TEXT, ARRAY[n]);
    v_after       BIGINT[] := array_fill(NULL::BIGINT, ARRAY[n]);
    v_avail       BIGINT[] := array_fill(NULL::BIGINT, ARRAY[n]);
    v_held_after  BIGINT[] := array_fill(NULL::BIGINT, ARRAY[n]);
    v_delta       BIGINT[] := array_fill(NULL::BIGINT, ARRAY[n]);
    v_entry       BIGINT[] := array_fill(NULL::BIGINT, ARRAY[n]);
    v_answer      JSONB[]  := array_fill(NULL::JSONB, ARRAY[n]);
    v_replay_of   INT[]    := array_fill(NULL::INT, ARRAY[n]);
    v_keyed       BOOLEAN := false;
    v_claimed     BIGINT := 0;
    v_stored_fp   TEXT[];
    v_stored_result JSONB[];
    v_first_of    BIGINT[];
    v_journal     INT[]    := '{}';
    v_ids         BIGINT[];
    -- new holds, inserted together
    v_new_ids      BIGINT[] := '{}';
    v_new_amounts  BIGINT[] := '{}';
    v_new_expiry   TIMESTAMPTZ[] := '{}';
    v_new_metadata JSONB[] := '{}';
    v_new_keys     TEXT[] := '{}';
    -- holds that captures and voids name, as this batch has them
    v_rows         holds[] := '{}';
    v_row_ids      BIGINT[] := '{}';
    v_row_dirty    BOOLEAN[] := '{}';
    v_j            INT;
  BEGIN
    IF n = 0 THEN
      RETURN;
    END IF;
    IF cardinality(p_amounts) <> n OR cardinality(p_holds) <> n OR cardinality(p_expires) <> n
       OR cardinality(p_metadata) <> n OR cardinality(p_keys) <> n OR cardinality(p_fingerprints) <> n THEN
      RAISE EXCEPTION 'invariant: ledger_batch got arrays of different lengths';
    END IF;

    -- 1. Claim every distinct key (with its first item's fingerprint) in one statement, in key order (the order every
    --    batch takes key locks in), before the user lock; then read every key's row in one more (a new snapshot: it
    --    sees the rows of the transactions the claim waited for). A key that could not be claimed is a replay or a reuse.
    IF cardinality(array_remove(p_keys, NULL)) > 0 THEN
      v_keyed := true;
      WITH wanted AS (
        SELECT DISTINCT ON (k.key) k.key, k.fingerprint
        FROM unnest(p_keys, p_fingerprints) WITH ORDINALITY AS k(key, fingerprint, item)
        WHERE k.key IS NOT NULL
        ORDER BY k.key, k.item
      ), claimed AS (
        INSERT INTO idempotency_keys AS k (key, request_fingerprint, expires_at)
          SELECT w.key, w.fingerprint, now() + make_interval(secs => p_ttl_seconds) FROM wanted w ORDER BY w.key
          ON CONFLICT (key) DO UPDATE
            SET request_fingerprint = EXCLUDED.request_fingerprint, result = NULL, entry_ids = '{}',
                created_at = now(), expires_at = EXCLUDED.expires_at
            WHERE k.expires_at <= now()
          RETURNING k.key
      )
      SELECT count(*) INTO v_claimed FROM claimed;
      SELECT array_agg(k.request_fingerprint ORDER BY x.i), array_agg(k.result ORDER BY x.i), array_agg(x.first ORDER BY x.i)
        INTO v_stored_fp, v_stored_result, v_first_of
        FROM (SELECT u.key, u.i, min(u.i) OVER (PARTITION BY u.key) AS first
              FROM unnest(p_keys) WITH ORDINALITY AS u(key, i)) x
        LEFT JOIN idempotency_keys k ON k.key = x.key;
    END IF;

    -- 2. The user's lock, once; the figures, once; the clock, once (after the lock); expired holds released.
    IF p_lock = 'advisory' THEN
      PERFORM pg_advisory_xact_lock(p_user_id);
      SELECT u.balance, u.held, u.holds_expire_at INTO v_balance, v_held, v_next FROM users u WHERE u.id = p_user_id FOR NO KEY UPDATE;
    ELSIF p_lock = 'row' THEN
      SELECT u.balance, u.held, u.holds_expire_at INTO v_balance, v_held, v_next FROM users u WHERE u.id = p_user_id FOR UPDATE;
    ELSE
      RAISE EXCEPTION 'invariant: unknown batch lock %', p_lock;
    END IF;
    v_found := FOUND;
    v_now := clock_timestamp();
    IF v_found AND v_next IS NOT NULL AND v_next <= v_now THEN
      SELECT r.held, r.next_expiry INTO v_held, v_next FROM holds_release_expired(p_user_id, v_now) r;
    END IF;
    -- Every hold a capture or void names, read once (after the release, so it sees what the release marked).
    IF 'capture' = ANY (p_ops) OR 'void' = ANY (p_ops) THEN
      SELECT coalesce(array_agg(h ORDER BY h.id), '{}'), coalesce(array_agg(h.id ORDER BY h.id), '{}')
        INTO v_rows, v_row_ids
        FROM holds h WHERE h.id = ANY (p_holds) AND h.user_id = p_user_id;
      v_row_dirty := array_fill(false, ARRAY[cardinality(v_row_ids)]);
    END IF;

    -- 3. Each item in input order, against the running figures.
    FOR i IN 1..n LOOP
      v_amount := p_amounts[i];
      v_key := p_keys[i];
      IF v_key IS NOT NULL OR p_ops[i] <> 'change' THEN
        v_special := true;
      END IF;
      IF v_key IS NOT NULL THEN
        IF v_stored_fp[i] IS NULL THEN
          RAISE EXCEPTION 'invariant: idempotency key % vanished after its claim', v_key;
        END IF;
        IF v_stored_fp[i] <> p_fingerprints[i] THEN
          v_idem[i] := 'reused';
          CONTINUE;
        END IF;
        IF v_stored_result[i] IS NOT NULL THEN
          -- Stored by a transaction that committed before this batch claimed the key.
          v_idem[i] := 'replayed';
          v_replay_of[i] := 0;
          CONTINUE;
        END IF;
        IF v_first_of[i] < i THEN
          -- The key is this batch's (claimed with its first item's fingerprint, which is this one's): that item executed.
          v_idem[i] := 'replayed';
          v_replay_of[i] := v_first_of[i];
          CONTINUE;
        END IF;
        v_idem[i] := 'executed';
      END IF;

      IF NOT v_found THEN
        v_outcome[i] := 'user_not_found';
      ELSIF p_ops[i] = 'change' THEN
        IF v_amount IS NULL OR v_amount = 0 THEN
          RAISE EXCEPTION 'invariant: change item % has amount %', i, v_amount;
        END IF;
        IF v_balance + v_amount < p_min + v_held THEN
          v_outcome[i] := 'insufficient_funds';
        ELSIF v_balance + v_amount > p_max THEN
          v_outcome[i] := 'balance_limit_exceeded';
        ELSE
          v_balance := v_balance + v_amount;
          v_outcome[i] := 'applied';
          v_delta[i] := v_amount;
          v_journal := v_journal || i;
          v_dirty := true;
        END IF;
      ELSIF p_ops[i] = 'hold' THEN
        IF v_amount IS NULL OR v_amount <= 0 OR p_expires[i] IS NULL OR p_expires[i] < 1 THEN
          RAISE EXCEPTION 'invariant: hold item % has amount % and lifetime %', i, v_amount, p_expires[i];
        END IF;
        IF v_balance - v_held < v_amount THEN
          v_outcome[i] := 'insufficient_funds';
        ELSE
          -- Inserted with the others in one statement (below); its id is taken now, under the lock, in input order.
          v_hold.id := nextval('holds_id_seq');
          v_hold.expires_at := v_now + make_interval(secs => p_expires[i]);
          v_new_ids := v_new_ids || v_hold.id;
          v_new_amounts := v_new_amounts || v_amount;
          v_new_expiry := v_new_expiry || v_hold.expires_at;
          v_new_metadata := v_new_metadata || p_metadata[i];
          v_new_keys := v_new_keys || CASE WHEN v_idem[i] = 'executed' THEN v_key END;
          v_held := v_held + v_amount;
          v_next := LEAST(coalesce(v_next, v_hold.expires_at), v_hold.expires_at);
          v_outcome[i] := 'applied';
          v_answer[i] := jsonb_build_object('hold', jsonb_build_object('holdId', v_hold.id, 'userId', p_user_id,
            'amount', v_amount, 'status', 'active', 'captured', 0, 'released', 0, 'expiresAt', v_hold.expires_at,
            'createdAt', v_now, 'settledAt', NULL, 'toUserId', NULL, 'metadata', p_metadata[i]));
          v_dirty := true;
        END IF;
      ELSIF p_ops[i] = 'capture' OR p_ops[i] = 'void' THEN
        IF cardinality(v_new_ids) > 0 AND p_holds[i] >= v_new_ids[1] THEN
          -- It may name a hold of this batch: insert those first, so the lookup below sees them.
          INSERT INTO holds (id, user_id, amount, expires_at, created_at, metadata, idempotency_key)
            SELECT x.id, p_user_id, x.amount, x.expires_at, v_now, x.metadata, x.key
            FROM unnest(v_new_ids, v_new_amounts, v_new_expiry, v_new_metadata, v_new_keys) AS x(id, amount, expires_at, metadata, key);
          v_new_ids := '{}'; v_new_amounts := '{}'; v_new_expiry := '{}'; v_new_metadata := '{}'; v_new_keys := '{}';
        END IF;
        -- The hold as this batch has it: read with the others before the loop, or now (a hold of this batch, or none).
        v_j := array_position(v_row_ids, p_holds[i]);
        IF v_j IS NULL THEN
          SELECT * INTO v_hold FROM holds h WHERE h.id = p_holds[i] AND h.user_id = p_user_id;
          IF FOUND THEN
            v_rows := v_rows || v_hold;
            v_row_ids := v_row_ids || v_hold.id;
            v_row_dirty := v_row_dirty || false;
            v_j := cardinality(v_row_ids);
          END IF;
        ELSE
          v_hold := v_rows[v_j];
        END IF;
        IF v_j IS NULL THEN
          v_outcome[i] := 'hold_not_found';
        ELSIF v_hold.status = 'expired' OR (v_hold.status = 'active' AND v_hold.expires_at <= v_now) THEN
          v_outcome[i] := 'hold_expired';
          v_answer[i] := jsonb_build_object('hold', hold_json(v_hold, v_now));
        ELSIF v_hold.status <> 'active' THEN
          v_outcome[i] := 'hold_not_active';
          v_answer[i] := jsonb_build_object('hold', hold_json(v_hold, v_now));
        ELSIF p_ops[i] = 'capture' AND coalesce(v_amount, v_hold.amount) > v_hold.amount THEN
          v_outcome[i] := 'capture_exceeds_hold';
          v_answer[i] := jsonb_build_object('hold', hold_json(v_hold, v_now));
        ELSE
          -- Settled in the batch's copy; written back with the others in one UPDATE (step 4).
          IF p_ops[i] = 'capture' THEN
            v_amount := coalesce(v_amount, v_hold.amount);
            v_hold.status := 'captured';
            v_hold.captured := v_amount;
            v_balance := v_balance - v_amount;
            v_delta[i] := -v_amount;
            v_journal := v_journal || i;
          ELSE
            v_hold.status := 'voided';
          END IF;
          v_hold.settled_at := v_now;
          v_rows[v_j] := v_hold;
          v_row_dirty[v_j] := true;
          v_held := v_held - v_hold.amount;
          v_outcome[i] := 'applied';
          v_answer[i] := jsonb_build_object('hold', hold_json(v_hold, v_now));
          v_dirty := true;
        END IF;
      ELSE
        RAISE EXCEPTION 'invariant: unknown batch operation %', p_ops[i];
      END IF;
      IF v_found THEN
        v_after[i] := v_balance;
        v_held_after[i] := v_held;
        v_avail[i] := v_balance - v_held;
      END IF;
    END LOOP;

    -- 4. One INSERT of the new holds, one write of the user's figures, one journal INSERT for every entry (ids
    --    ascending in input order).
    IF cardinality(v_new_ids) > 0 THEN
      INSERT INTO holds (id, user_id, amount, expires_at, created_at, metadata, idempotency_key)
        SELECT x.id, p_user_id, x.amount, x.expires_at, v_now, x.metadata, x.key
        FROM unnest(v_new_ids, v_new_amounts, v_new_expiry, v_new_metadata, v_new_keys) AS x(id, amount, expires_at, metadata, key);
    END IF;
    IF true = ANY (v_row_dirty) THEN
      UPDATE holds h SET status = r.status, captured = r.captured, settled_at = r.settled_at
        FROM unnest(v_rows) WITH ORDINALITY AS r, unnest(v_row_dirty) WITH ORDINALITY AS d(dirty, n)
        WHERE r.ordinality = d.n AND d.dirty AND h.id = r.id;
    END IF;
    IF v_dirty THEN
      UPDATE users SET balance = v_balance, held = v_held, holds_expire_at = v_next, updated_at = now() WHERE id = p_user_id;
    END IF;
    IF cardinality(v_journal) > 0 THEN
      SELECT array_agg(s.id ORDER BY s.id) INTO v_ids
        FROM (SELECT nextval('journal_entries_id_seq') AS id FROM generate_series(1, cardinality(v_journal))) s;
      FOR j IN 1..cardinality(v_journal) LOOP
        v_entry[v_journal[j]] := v_ids[j];
      END LOOP;
      INSERT INTO journal_entries (id, user_id, amount, balance_after, kind, hold_id, metadata, idempotency_key)
        SELECT v_entry[a.item], p_user_id, v_delta[a.item], v_after[a.item],
               CASE WHEN p_ops[a.item] = 'capture' THEN 'capture' ELSE 'change' END,
               CASE WHEN p_ops[a.item] = 'capture' THEN p_holds[a.item] END,
               p_metadata[a.item],
               CASE WHEN v_idem[a.item] = 'executed' THEN p_keys[a.item] END
        FROM unnest(v_journal) AS a(item);
    END IF;

    -- 5. The JSON answer of every hold item and keyed item (a replay in this batch takes its first item's), keys
    --    stored. Skipped for a batch of keyless changes: nothing there answers in JSON.
    IF v_special THEN
      FOR i IN 1..n LOOP
        IF v_idem[i] = 'replayed' THEN
          v_answer[i] := CASE WHEN v_replay_of[i] = 0
            THEN (SELECT k.result FROM idempotency_keys k WHERE k.key = p_keys[i]) ELSE v_answer[v_replay_of[i]] END;
        ELSIF v_idem[i] IS DISTINCT FROM 'reused' AND (p_ops[i] <> 'change' OR v_idem[i] = 'executed') THEN
          IF p_ops[i] = 'change' THEN
            v_answer[i] := jsonb_build_object('operation', 'change', 'outcome', v_outcome[i], 'userId', p_user_id,
              'amount', p_amounts[i], 'balance', v_after[i], 'available', v_avail[i], 'entryId', v_entry[i]);
          ELSE
            v_answer[i] := coalesce(v_answer[i], '{}'::JSONB) || jsonb_build_object('operation', p_ops[i],
              'outcome', v_outcome[i], 'userId', p_user_id, 'holdId', p_holds[i], 'amount', p_amounts[i],
              'balance', v_after[i], 'held', v_held_after[i], 'available', v_avail[i], 'entryId', v_entry[i]);
          END IF;
        END IF;
      END LOOP;
    END IF;
    IF v_keyed THEN
      -- Every executed key's outcome in one statement; then the purge of expired keys, once, after every lock this
      -- transaction takes (0009), bounded and never waiting (SKIP LOCKED).
      UPDATE idempotency_keys k SET result = x.answer, entry_ids = CASE WHEN x.entry IS NULL THEN '{}'::BIGINT[] ELSE ARRAY[x.entry] END
        FROM unnest(p_keys, v_idem, v_answer, v_entry) AS x(key, idem, answer, entry)
        WHERE x.idem = 'executed' AND k.key = x.key;
      IF v_claimed > 0 AND coalesce(p_purge_limit, 0) > 0 THEN
        DELETE FROM idempotency_keys d WHERE d.key IN (
          SELECT e.key FROM idempotency_keys e WHERE e.expires_at <= now()
          ORDER BY e.expires_at LIMIT p_purge_limit FOR UPDATE SKIP LOCKED);
      END IF;
    END IF;

    -- 6. Every item answered in input order, in one statement (one pass over the arrays).
    RETURN QUERY
      SELECT x.i::INT, x.idem,
             CASE WHEN x.idem IS NULL THEN x.outcome END,
             CASE WHEN x.idem IS NULL AND x.op = 'change' THEN x.after END,
             CASE WHEN x.idem IS NULL AND x.op = 'change' THEN x.entry END,
             CASE WHEN x.idem IS NULL AND x.op = 'change' THEN x.avail END,
             CASE WHEN x.idem IS NULL AND x.op = 'change' THEN NULL ELSE x.answer END
      FROM unnest(v_idem, v_outcome, v_after, v_entry, v_avail, v_answer, p_ops)
        WITH ORDINALITY AS x(idem, outcome, after, entry, avail, answer, op, i)
      ORDER BY x.i;
  END
  $fn$;

  -- The previous batch signature (changes only), for instances still running the previous code.
  CREATE OR REPLACE FUNCTION balance_change_batch(p_lock TEXT, p_user_id BIGINT, p_amounts BIGINT[], p_keys TEXT[],
    p_fingerprints TEXT[], p_min BIGINT, p_max BIGINT, p_ttl_seconds INT, p_purge_limit INT)
  RETURNS TABLE (ord INT, idempotency TEXT, outcome TEXT, balance BIGINT, entry_id BIGINT, result JSONB)
  LANGUAGE sql VOLATILE AS $fn$
    SELECT b.ord, b.idempotency, b.outcome, b.balance, b.entry_id, b.result
    FROM ledger_batch(p_lock, p_user_id,
      array_fill('change'::TEXT, ARRAY[coalesce(cardinality(p_amounts), 0)]), p_amounts,
      array_fill(NULL::BIGINT, ARRAY[coalesce(cardinality(p_amounts), 0)]),
      array_fill(NULL::INT, ARRAY[coalesce(cardinality(p_amounts), 0)]),
      array_fill(NULL::JSONB, ARRAY[coalesce(cardinality(p_amounts), 0)]),
      p_keys, p_fingerprints, p_min, p_max, p_ttl_seconds, p_purge_limit) b
  $fn$;
`

/**
 * A capture that pays another user: not batched (two users), both locked in ascending id order like a transfer.
 * The holder's journal entry is kind 'capture', the payee's 'capture-in'; both carry the hold id.
 */
const CAPTURE_TO = `
  CREATE FUNCTION hold_capture_to(p_lock TEXT, p_hold_id BIGINT, p_amount BIGINT, p_to BIGINT, p_min BIGINT, p_max BIGINT,
                                  p_metadata JSONB, p_key TEXT, p_fingerprint TEXT, p_ttl_seconds INT, p_purge_limit INT)
  RETURNS TABLE (idempotency TEXT, result JSONB)
  LANGUAGE plpgsql VOLATILE AS $fn$
  DECLARE
    v_claim   RECORD;
    v_owner   BIGINT;
    v_low     users%ROWTYPE;
    v_high    users%ROWTYPE;
    v_from    users%ROWTYPE;
    v_to      users%ROWTYPE;
    v_held    BIGINT;
    v_now     TIMESTAMPTZ;
    v_hold    holds%ROWTYPE;
    v_amount  BIGINT;
    v_outcome TEXT;
    v_out     BIGINT;
    v_in      BIGINT;
    v_result  JSONB;
  BEGIN
    IF p_key IS NOT NULL THEN
      SELECT c.claim_state, c.claim_result INTO v_claim FROM idempotency_claim(p_key, p_fingerprint, p_ttl_seconds, p_purge_limit) c;
      IF v_claim.claim_state <> 'claimed' THEN
        RETURN QUERY SELECT v_claim.claim_state, v_claim.claim_result;
        RETURN;
      END IF;
    END IF;
    -- A hold's owner never changes: read it without a lock, then lock both users.
    SELECT h.user_id INTO v_owner FROM holds h WHERE h.id = p_hold_id;
    IF NOT FOUND THEN
      v_result := jsonb_build_object('operation', 'capture', 'outcome', 'hold_not_found', 'holdId', p_hold_id);
    ELSIF v_owner = p_to THEN
      RAISE EXCEPTION 'invariant: a capture to its own holder reached the database';
    ELSE
      IF p_lock = 'advisory' THEN
        PERFORM pg_advisory_xact_lock(LEAST(v_owner, p_to));
        PERFORM pg_advisory_xact_lock(GREATEST(v_owner, p_to));
        SELECT * INTO v_low FROM users u WHERE u.id = LEAST(v_owner, p_to) FOR NO KEY UPDATE;
        SELECT * INTO v_high FROM users u WHERE u.id = GREATEST(v_owner, p_to) FOR NO KEY UPDATE;
      ELSE
        SELECT * INTO v_low FROM users u WHERE u.id = LEAST(v_owner, p_to) FOR UPDATE;
        SELECT * INTO v_high FROM users u WHERE u.id = GREATEST(v_owner, p_to) FOR UPDATE;
      END IF;
      IF v_owner < p_to THEN v_from := v_low; v_to := v_high; ELSE v_from := v_high; v_to := v_low; END IF;
      v_now := clock_timestamp();
      v_held := v_from.held;
      IF v_from.holds_expire_at IS NOT NULL AND v_from.holds_expire_at <= v_now THEN
        SELECT r.held INTO v_held FROM holds_release_expired(v_owner, v_now) r;
      END IF;
      SELECT * INTO v_hold FROM holds h WHERE h.id = p_hold_id;
      v_amount := coalesce(p_amount, v_hold.amount);
      IF v_hold.status = 'expired' OR (v_hold.status = 'active' AND v_hold.expires_at <= v_now) THEN
        v_outcome := 'hold_expired';
      ELSIF v_hold.status <> 'active' THEN
        v_outcome := 'hold_not_active';
      ELSIF v_amount > v_hold.amount THEN
        v_outcome := 'capture_exceeds_hold';
      ELSIF v_to.id IS NULL THEN
        v_outcome := 'user_not_found';
      ELSIF v_to.balance + v_amount > p_max THEN
        v_outcome := 'balance_limit_exceeded';
      ELSE
        v_outcome := 'applied';
        UPDATE holds SET status = 'captured', captured = v_amount, settled_at = v_now, to_user_id = p_to
          WHERE id = p_hold_id RETURNING * INTO v_hold;
        v_held := v_held - v_hold.amount;
        UPDATE users SET balance = v_from.balance - v_amount, held = v_held, updated_at = now() WHERE id = v_owner;
        UPDATE users SET balance = v_to.balance + v_amount, updated_at = now() WHERE id = p_to;
        INSERT INTO journal_entries (user_id, amount, balance_after, kind, hold_id, idempotency_key, metadata)
          VALUES (v_owner, -v_amount, v_from.balance - v_amount, 'capture', p_hold_id, p_key, p_metadata) RETURNING id INTO v_out;
        INSERT INTO journal_entries (user_id, amount, balance_after, kind, hold_id, idempotency_key, metadata)
          VALUES (p_to, v_amount, v_to.balance + v_amount, 'capture-in', p_hold_id, p_key, p_metadata) RETURNING id INTO v_in;
        v_from.balance := v_from.balance - v_amount;
        v_to.balance := v_to.balance + v_amount;
      END IF;
      v_result := jsonb_build_object('operation', 'capture', 'outcome', v_outcome, 'holdId', p_hold_id,
        'hold', hold_json(v_hold, v_now), 'userId', v_owner, 'amount', p_amount,
        'balance', v_from.balance, 'held', v_held, 'available', v_from.balance - v_held, 'entryId', v_out,
        'toUserId', p_to, 'toBalance', v_to.balance, 'toEntryId', v_in);
    END IF;
    IF p_key IS NOT NULL THEN
      PERFORM idempotency_store(p_key, v_result,
        CASE WHEN v_out IS NULL THEN '{}'::BIGINT[] ELSE ARRAY[v_out, v_in] END);
    END IF;
    RETURN QUERY SELECT 'executed'::TEXT, v_result;
  END
  $fn$;
`

/** The bodies the row-lock and atomic transfers had before (0004, as 0008 left them), for down(). */
const PREVIOUS_TRANSFERS = `
CREATE OR REPLACE FUNCTION public.balance_transfer_row_lock(p_from bigint, p_to bigint, p_amount bigint, p_min bigint, p_max bigint, p_key text, p_fingerprint text, p_ttl_seconds integer, p_purge_limit integer)
 RETURNS TABLE(idempotency text, result jsonb)
 LANGUAGE plpgsql
AS $function$
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
      $function$;

CREATE OR REPLACE FUNCTION public.balance_transfer_atomic(p_from bigint, p_to bigint, p_amount bigint, p_min bigint, p_max bigint, p_key text, p_fingerprint text, p_ttl_seconds integer, p_purge_limit integer)
 RETURNS TABLE(idempotency text, result jsonb)
 LANGUAGE plpgsql
AS $function$
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
      $function$;

`

const DROP_NEW_FUNCTIONS = `
  DROP FUNCTION hold_capture_to(TEXT, BIGINT, BIGINT, BIGINT, BIGINT, BIGINT, JSONB, TEXT, TEXT, INT, INT);
  DROP FUNCTION ledger_batch(TEXT, BIGINT, TEXT[], BIGINT[], BIGINT[], INT[], JSONB[], TEXT[], TEXT[], BIGINT, BIGINT, INT, INT);
  DROP FUNCTION balance_transfer(TEXT, BIGINT, BIGINT, BIGINT, BIGINT, BIGINT, JSONB, TEXT, TEXT, INT, INT);
  DROP FUNCTION transfer_atomic_attempt(BIGINT, BIGINT, BIGINT, BIGINT, BIGINT, TEXT, JSONB);
  DROP FUNCTION transfer_locked(TEXT, BIGINT, BIGINT, BIGINT, BIGINT, BIGINT, TEXT, JSONB);
  DROP FUNCTION transfer_journal(BIGINT, BIGINT, BIGINT, BIGINT, BIGINT, TEXT, JSONB);
  DROP FUNCTION transfer_refusal(BIGINT, BIGINT, BIGINT, BIGINT, BIGINT, BIGINT, BIGINT, BIGINT);
  DROP FUNCTION balance_change_keyed(TEXT, BIGINT, BIGINT, BIGINT, BIGINT, JSONB, TEXT, TEXT, INT, INT);
  DROP FUNCTION balance_change_atomic(BIGINT, BIGINT, BIGINT, BIGINT, JSONB, TEXT);
  DROP FUNCTION balance_change_locked(TEXT, BIGINT, BIGINT, BIGINT, BIGINT, JSONB, TEXT);
  DROP FUNCTION hold_json(holds, TIMESTAMPTZ);
  DROP FUNCTION holds_release_expired(BIGINT, TIMESTAMPTZ);
`

const DROP_SCHEMA = `
  ALTER TABLE journal_entries
    DROP CONSTRAINT journal_capture_names_hold,
    DROP CONSTRAINT journal_kind_known,
    ADD CONSTRAINT journal_kind_known CHECK (kind IN ('opening', 'change', 'transfer-in', 'transfer-out')),
    ALTER COLUMN created_at SET DEFAULT now(),
    DROP COLUMN hold_id,
    DROP COLUMN metadata;
  DROP TABLE holds;
  ALTER TABLE users DROP CONSTRAINT users_held_within_balance, DROP COLUMN held, DROP COLUMN holds_expire_at;
`

export const holds: Migration = {
  name: '0010-holds',
  async up ({ context: sequelize }) {
    for (const sql of [SCHEMA, RELEASE_EXPIRED, CHANGE_LOCKED, CHANGE_ATOMIC, CHANGE_KEYED, PREVIOUS_CHANGE_SIGNATURES, TRANSFER, BATCH, CAPTURE_TO]) {
      await sequelize.query(sql)
    }
  },
  async down ({ context: sequelize }) {
    // The previous signatures back to their previous bodies first, so nothing calls a function about to go.
    await strategiesMixExactly.up({ context: sequelize, name: strategiesMixExactly.name })
    await atomicRefusalRechecked.up({ context: sequelize, name: atomicRefusalRechecked.name })
    await sequelize.query('DROP FUNCTION balance_change_row_lock(BIGINT, BIGINT, BIGINT, BIGINT)')
    await rowLockChangeFunction.up({ context: sequelize, name: rowLockChangeFunction.name })
    await sequelize.query(PREVIOUS_TRANSFERS)
    await sequelize.query(DROP_NEW_FUNCTIONS)
    await sequelize.query(DROP_SCHEMA)
  },
}
