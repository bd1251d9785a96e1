import type { Migration } from '../types.js'

/**
 * Users and their journal. The CHECK constraints repeat the money bounds of src/domain/money.ts in the database
 * itself, so no code path (or hand-written SQL) can store a negative or inexact balance.
 */
export const createUsersAndJournal: Migration = {
  name: '0001-create-users-and-journal',
  async up ({ context: sequelize }) {
    await sequelize.query(`
      CREATE TABLE users (
        id          BIGSERIAL PRIMARY KEY,
        balance     BIGINT NOT NULL DEFAULT 0
                    CONSTRAINT users_balance_non_negative CHECK (balance >= 0)
                    CONSTRAINT users_balance_max CHECK (balance <= 9007199254740991),
        created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
      );

      CREATE TABLE journal_entries (
        id               BIGSERIAL PRIMARY KEY,
        user_id          BIGINT NOT NULL REFERENCES users (id),
        amount           BIGINT NOT NULL CONSTRAINT journal_amount_non_zero CHECK (amount <> 0),
        balance_after    BIGINT NOT NULL
                         CONSTRAINT journal_balance_after_in_bounds CHECK (balance_after BETWEEN 0 AND 9007199254740991),
        kind             TEXT NOT NULL
                         CONSTRAINT journal_kind_known CHECK (kind IN ('opening', 'change', 'transfer-in', 'transfer-out')),
        transfer_id      UUID,
        idempotency_key  TEXT,
        created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
      );

      -- A user's history, newest first, and keyset pagination on (user_id, id).
      CREATE INDEX journal_entries_user_newest ON journal_entries (user_id, id DESC);
    `)
  },
  async down ({ context: sequelize }) {
    await sequelize.query('DROP TABLE journal_entries; DROP TABLE users;')
  },
}
