/**
 * The money rules, owned here and nowhere else. Strategies pass these bounds into their SQL;
 * the database's CHECK constraints enforce the same bounds as a last line of defence.
 */

/** A balance never goes below this. */
export const MIN_BALANCE = 0
/** A balance never goes above this, so every JSON number we send is exact. */
export const MAX_BALANCE = Number.MAX_SAFE_INTEGER

/** Converts a BIGINT that PostgreSQL returned (pg gives strings) and asserts it is exact in JavaScript. */
export function toSafeInteger (value: string | number | bigint, what: string): number {
  const number = Number(value)
  if (!Number.isSafeInteger(number)) {
    throw new Error(`invariant: ${what} ${String(value)} is not a safe integer`)
  }
  return number
}

/** Asserts the invariant every balance read from the database must hold. */
export function assertBalanceInBounds (balance: number): number {
  if (balance < MIN_BALANCE || balance > MAX_BALANCE) {
    throw new Error(`invariant: balance ${balance} outside [${MIN_BALANCE}, ${MAX_BALANCE}]`)
  }
  return balance
}
