/**
 * balance-api/client: a typed client for balance-api that makes exactly-once the default (an Idempotency-Key on
 * every write, retries with the same key, typed errors). Standalone: Node ≥ 20's fetch, no server code.
 */
export {
  BalanceClient,
  DEFAULT_FAILBACK_AFTER_MS,
  DEFAULT_RETRY,
  DEFAULT_TIMEOUT_MS,
  ROUTE_METHODS,
  backoffDelay,
  type AttemptInfo,
  type BalanceClientOptions,
  type ChangeBalanceInput,
  type ChangeBalanceResult,
  type CreateUserInput,
  type Health,
  type HistoryOptions,
  type HistoryPage,
  type HistoryQuery,
  type JournalEntry,
  type Liveness,
  type RequestOptions,
  type RetryOptions,
  type TransferInput,
  type TransferResult,
  type User,
  type WriteOptions,
  type WriteResult,
} from './client.js'
export {
  BalanceApiError,
  BalanceClientError,
  BalanceLimitExceededError,
  BalanceNetworkError,
  DatabaseUnavailableError,
  ForbiddenError,
  IdempotencyKeyReusedError,
  InsufficientFundsError,
  OverloadedError,
  UnauthorizedError,
  UserNotFoundError,
  ValidationError,
  type AttemptSummary,
  type ErrorBody,
} from './errors.js'
export type { components, paths } from './openapi.js'
