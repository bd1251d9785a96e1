import type { Sequelize } from 'sequelize'
import type { RunnableMigration } from 'umzug'

/** A migration or seeder: Umzug runs it with the Sequelize instance as its context. */
export type Migration = RunnableMigration<Sequelize> & {
  up: NonNullable<RunnableMigration<Sequelize>['up']>
}
