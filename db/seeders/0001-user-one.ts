import type { Migration } from '../types.js'

/** The seed's user: id 1 with 10000, written as an opening journal entry so Σ journal = balance from the start. */
export const userOne: Migration = {
  name: '0001-user-one',
  async up ({ context: sequelize }) {
    await sequelize.query(`
      INSERT INTO users (id, balance) VALUES (1, 10000);
      INSERT INTO journal_entries (user_id, amount, balance_after, kind) VALUES (1, 10000, 10000, 'opening');
      -- Later users take ids after the one this seeder chose.
      SELECT setval(pg_get_serial_sequence('users', 'id'), GREATEST((SELECT max(id) FROM users), 1));
    `)
  },
  async down ({ context: sequelize }) {
    await sequelize.query('DELETE FROM journal_entries WHERE user_id = 1; DELETE FROM users WHERE id = 1;')
  },
}
