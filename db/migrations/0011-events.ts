import type { Migration } from '../types.js'

/**
 * Events: every committed journal entry becomes an event row in the same transaction, written by the database itself
 * (a statement-level trigger on journal_entries), so every strategy, keyed or not, single or group-commit batch,
 * writes its events without one line of its SQL changing, and nothing is written for what rolled back.
 *
 * The table `events` is the log the HTTP feed reads and the publisher moves to NATS JetStream (src/events/).
 * Columns, and why:
 * - id: the journal entry's id (one event per entry; events of later kinds that have no entry take an id from the
 *   same sequence, so ids never collide). The event id of the published message, and JetStream's Nats-Msg-Id.
 * - user_id, seq: per user a gap-free sequence from 1, in journal (id) order. The next seq is the user's last one + 1,
 *   read from the unique (user_id, seq) index. That read is exact because every journal INSERT runs while its user is
 *   locked (advisory + row lock, row lock, or atomic's UPDATE's row lock) and that lock is held to commit: the
 *   previous entry's transaction has committed, and the trigger's statement (a new snapshot under READ COMMITTED)
 *   sees its event. Should a future writer ever skip the lock, the unique index turns the race into an error, never a
 *   duplicate seq.
 * - xid: the position of the event in the global feed: max(pg_current_xact_id(), the user's previous event's xid).
 *   The feed serves only events with xid below pg_snapshot_xmin(pg_current_snapshot()) in (xid, id) order: every
 *   transaction still running, or not started, has an xid at or above that watermark, so any event that becomes
 *   visible later sorts after every event served. The max() keeps a user's events in seq order in the feed too (a
 *   transaction may take its xid before it waits for the user's lock, so its own xid can be older than the one of the
 *   transaction it waited for), and it never breaks the argument: the stored value is still ≥ the writer's own xid.
 * - the rest copies the entry: type (= the journal kind), amount, balance_after, transfer_id, idempotency_key, created_at.
 *
 * Existing data at migration time: one `baseline` event per user whose balance is not 0 (seq 1, amount = balance),
 * not a back-fill of every old entry, so a consumer that rebuilds balances from events alone is exact for every user,
 * old or new, and the migration stays one pass over users. The journal is locked (SHARE ROW EXCLUSIVE) first: a change
 * in flight either committed before the baseline reads its balance, or writes its entry after this commits, with its
 * event counted on top of the baseline.
 *
 * The keyed single change tags its entry with the key in a second statement (change_keyed_finish): a row trigger on
 * that UPDATE copies the key to the event (same transaction, before anyone can read it).
 *
 * EVENTS=off disables the two triggers at boot (ALTER TABLE … DISABLE TRIGGER, src/events/switch.ts): a catalog
 * state of the database, transactional, the same for every instance and every pooled or PgBouncer connection, and
 * free on the hot path (no setting read per statement).
 */
/**
 * The events of the holds `changed` selects (hold columns + type, key, at): per user seq on from the user's last
 * event, ids from the journal's sequence taken in seq order, so a user's ids rise with its seq as for entries.
 */
function holdEvents (changed: string): string {
  return `
          WITH changed AS (${changed}),
          last AS (
            SELECT u.user_id, p.seq, p.xid, p.balance_after
            FROM (SELECT DISTINCT user_id FROM changed) u
            LEFT JOIN LATERAL (
              SELECT e.seq, e.xid, e.balance_after FROM events e WHERE e.user_id = u.user_id ORDER BY e.seq DESC LIMIT 1
            ) p ON true
          ),
          numbered AS (
            SELECT c.*, l.xid AS last_xid, coalesce(l.balance_after, 0) AS balance,
                   coalesce(l.seq, 0) + row_number() OVER (PARTITION BY c.user_id ORDER BY c.id) AS seq
            FROM changed c JOIN last l ON l.user_id = c.user_id
            ORDER BY c.user_id, seq
          )
          INSERT INTO events (id, xid, user_id, seq, type, entry_id, amount, balance_after, hold_id, metadata, hold, idempotency_key, created_at)
          SELECT nextval('journal_entries_id_seq'), greatest(pg_current_xact_id(), x.last_xid), x.user_id, x.seq, x.type, NULL, 0,
                 x.balance, x.id, x.metadata,
                 jsonb_build_object('amount', x.amount, 'captured', x.captured, 'status', x.status, 'expiresAt', x.expires_at, 'toUserId', x.to_user_id),
                 x.key, x.at
          FROM numbered x;`
}

export const eventsMigration: Migration = {
  name: '0011-events',
  async up ({ context: sequelize }) {
    await sequelize.query(`
      LOCK TABLE journal_entries, holds IN SHARE ROW EXCLUSIVE MODE;

      CREATE TABLE events (
        id              BIGINT      PRIMARY KEY,
        xid             xid8        NOT NULL,
        user_id         BIGINT      NOT NULL,
        seq             BIGINT      NOT NULL,
        type            TEXT        NOT NULL,
        entry_id        BIGINT,
        amount          BIGINT      NOT NULL,
        balance_after   BIGINT      NOT NULL,
        transfer_id     UUID,
        hold_id         BIGINT,
        idempotency_key TEXT,
        metadata        JSONB,
        hold            JSONB,
        created_at      TIMESTAMPTZ NOT NULL,
        CONSTRAINT events_seq_positive CHECK (seq >= 1),
        CONSTRAINT events_user_seq UNIQUE (user_id, seq)
      );
      -- The global feed's order and the publisher's.
      CREATE INDEX events_feed ON events (xid, id);

      -- The publisher's lease and position: one row. holder/expires_at elect one publisher at a time (a lease, not a
      -- session lock: it holds behind PgBouncer in transaction mode); (cursor_xid, cursor_id) is the feed position up to
      -- which everything is in the stream, moved only by the lease holder, in the transaction that checks the lease.
      CREATE TABLE events_publisher (
        id          INT         PRIMARY KEY CHECK (id = 1),
        holder      TEXT,
        expires_at  TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
        cursor_xid  xid8        NOT NULL DEFAULT '0',
        cursor_id   BIGINT      NOT NULL DEFAULT 0,
        published   BIGINT      NOT NULL DEFAULT 0,
        updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
      );
      INSERT INTO events_publisher (id) VALUES (1);

      CREATE FUNCTION events_from_journal() RETURNS trigger
      LANGUAGE plpgsql AS $fn$
      DECLARE
        v_user  BIGINT;
        v_last  BIGINT;
        v_rows  BIGINT;
        v_seq   BIGINT;
        v_xid   xid8;
      BEGIN
        SELECT min(n.user_id), max(n.user_id), count(*) INTO v_user, v_last, v_rows FROM new_entries n;
        IF v_rows = 0 THEN
          RETURN NULL;
        END IF;
        IF v_user <> v_last THEN
          -- Several users in one statement (no writer does that today): one pass, one index probe per user.
          INSERT INTO events (id, xid, user_id, seq, type, entry_id, amount, balance_after, transfer_id, hold_id, metadata, idempotency_key, created_at)
          SELECT n.id, greatest(pg_current_xact_id(), last.xid), n.user_id,
                 coalesce(last.seq, 0) + row_number() OVER (PARTITION BY n.user_id ORDER BY n.id),
                 n.kind, n.id, n.amount, n.balance_after, n.transfer_id, n.hold_id, n.metadata, n.idempotency_key, n.created_at
          FROM new_entries n
          JOIN (
            SELECT u.user_id, p.seq, p.xid
            FROM (SELECT DISTINCT user_id FROM new_entries) u
            LEFT JOIN LATERAL (
              SELECT e.seq, e.xid FROM events e WHERE e.user_id = u.user_id ORDER BY e.seq DESC LIMIT 1
            ) p ON true
          ) last ON last.user_id = n.user_id;
          RETURN NULL;
        END IF;
        -- One user (every writer: a change, a transfer leg, an opening, a group-commit batch): three simple
        -- statements, measured cheaper than the general one (about 26 µs against 50 µs per change, one core).
        SELECT e.seq, e.xid INTO v_seq, v_xid FROM events e WHERE e.user_id = v_user ORDER BY e.seq DESC LIMIT 1;
        v_seq := coalesce(v_seq, 0);
        v_xid := greatest(pg_current_xact_id(), v_xid);
        IF v_rows = 1 THEN
          INSERT INTO events (id, xid, user_id, seq, type, entry_id, amount, balance_after, transfer_id, hold_id, metadata, idempotency_key, created_at)
          SELECT n.id, v_xid, n.user_id, v_seq + 1, n.kind, n.id, n.amount, n.balance_after, n.transfer_id, n.hold_id, n.metadata, n.idempotency_key, n.created_at
          FROM new_entries n;
        ELSE
          INSERT INTO events (id, xid, user_id, seq, type, entry_id, amount, balance_after, transfer_id, hold_id, metadata, idempotency_key, created_at)
          SELECT n.id, v_xid, n.user_id, v_seq + row_number() OVER (ORDER BY n.id), n.kind, n.id, n.amount, n.balance_after,
                 n.transfer_id, n.hold_id, n.metadata, n.idempotency_key, n.created_at
          FROM new_entries n;
        END IF;
        RETURN NULL;
      END
      $fn$;

      CREATE TRIGGER journal_events AFTER INSERT ON journal_entries
        REFERENCING NEW TABLE AS new_entries
        FOR EACH STATEMENT EXECUTE FUNCTION events_from_journal();

      CREATE FUNCTION events_journal_key() RETURNS trigger
      LANGUAGE plpgsql AS $fn$
      BEGIN
        UPDATE events SET idempotency_key = NEW.idempotency_key WHERE id = NEW.id;
        RETURN NULL;
      END
      $fn$;

      CREATE TRIGGER journal_events_key AFTER UPDATE OF idempotency_key ON journal_entries
        FOR EACH ROW WHEN (NEW.idempotency_key IS DISTINCT FROM OLD.idempotency_key)
        EXECUTE FUNCTION events_journal_key();

      CREATE FUNCTION events_from_holds() RETURNS trigger
      LANGUAGE plpgsql AS $fn$
      BEGIN
        -- A new hold, or a hold whose status changed (captured, voided, expired): an event of the holder, with amount
        -- 0 (the balance moves with the capture's own journal event) and the balance after the user's previous event.
        -- (plpgsql plans a statement when it first runs it: the INSERT branch never names old_holds.)
        IF TG_OP = 'INSERT' THEN
          ${holdEvents(`SELECT h.*, 'hold-created' AS type, h.idempotency_key AS key, h.created_at AS at FROM new_holds h`)}
        ELSE
          ${holdEvents(`SELECT h.*, 'hold-' || h.status AS type, NULL::TEXT AS key, coalesce(h.settled_at, clock_timestamp()) AS at
            FROM new_holds h JOIN old_holds o ON o.id = h.id WHERE o.status IS DISTINCT FROM h.status`)}
        END IF;
        RETURN NULL;
      END
      $fn$;

      CREATE TRIGGER holds_events_insert AFTER INSERT ON holds
        REFERENCING NEW TABLE AS new_holds
        FOR EACH STATEMENT EXECUTE FUNCTION events_from_holds();
      CREATE TRIGGER holds_events_update AFTER UPDATE ON holds
        REFERENCING OLD TABLE AS old_holds NEW TABLE AS new_holds
        FOR EACH STATEMENT EXECUTE FUNCTION events_from_holds();

      INSERT INTO events (id, xid, user_id, seq, type, entry_id, amount, balance_after, created_at)
      SELECT nextval('journal_entries_id_seq'), pg_current_xact_id(), u.id, 1, 'baseline', NULL, u.balance, u.balance, now()
      FROM users u WHERE u.balance <> 0 ORDER BY u.id;
    `)
  },
  async down ({ context: sequelize }) {
    await sequelize.query(`
      DROP TRIGGER holds_events_update ON holds;
      DROP TRIGGER holds_events_insert ON holds;
      DROP FUNCTION events_from_holds();
      DROP TRIGGER journal_events_key ON journal_entries;
      DROP TRIGGER journal_events ON journal_entries;
      DROP FUNCTION events_journal_key();
      DROP FUNCTION events_from_journal();
      DROP TABLE events_publisher;
      DROP TABLE events;
    `)
  },
}
