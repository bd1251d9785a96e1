import { DataTypes, Model, type Sequelize, type InferAttributes, type InferCreationAttributes, type CreationOptional } from 'sequelize'

/** Sequelize models for reads and ordinary writes. Tables are created by db/migrations, never by sync(). */
export class User extends Model<InferAttributes<User>, InferCreationAttributes<User>> {
  declare id: CreationOptional<string>
  declare balance: string
  declare createdAt: CreationOptional<Date>
  declare updatedAt: CreationOptional<Date>
}

export class JournalEntry extends Model<InferAttributes<JournalEntry>, InferCreationAttributes<JournalEntry>> {
  declare id: CreationOptional<string>
  declare userId: string
  declare amount: string
  declare balanceAfter: string
  declare kind: 'opening' | 'change' | 'transfer-in' | 'transfer-out'
  declare transferId: string | null
  declare idempotencyKey: string | null
  declare createdAt: CreationOptional<Date>
}

export function defineModels (sequelize: Sequelize): { User: typeof User, JournalEntry: typeof JournalEntry } {
  User.init({
    id: { type: DataTypes.BIGINT, primaryKey: true, autoIncrement: true },
    balance: { type: DataTypes.BIGINT, allowNull: false },
    createdAt: DataTypes.DATE,
    updatedAt: DataTypes.DATE,
  }, { sequelize, tableName: 'users', underscored: true })

  JournalEntry.init({
    id: { type: DataTypes.BIGINT, primaryKey: true, autoIncrement: true },
    userId: { type: DataTypes.BIGINT, allowNull: false },
    amount: { type: DataTypes.BIGINT, allowNull: false },
    balanceAfter: { type: DataTypes.BIGINT, allowNull: false },
    kind: { type: DataTypes.TEXT, allowNull: false },
    transferId: { type: DataTypes.UUID, allowNull: true },
    idempotencyKey: { type: DataTypes.TEXT, allowNull: true },
    createdAt: DataTypes.DATE,
  }, { sequelize, tableName: 'journal_entries', underscored: true, updatedAt: false })

  return { User, JournalEntry }
}
