import { randomUUID } from 'node:crypto'
import type { paths } from './openapi.js'
import { BalanceNetworkError, apiError, type AttemptSummary, type ErrorBody } from './errors.js'

/*
 * A typed client for balance-api on Node's own fetch (undici). It makes exactly-once the default:
 * - every write carries an Idempotency-Key (the caller's, or a fresh UUID returned with the result);
 * - a 503 (or a gateway's 502/504), a connection error or a timeout is retried with the same key, with exponential
 *   backoff and full jitter, bounded by a number of attempts and a total time; an answer below 500 is never retried;
 * - a request that cannot connect moves on to the next base URL, with the same key;
 * - errors are typed by the answer's `code` (see errors.ts) and carry the key, so an outcome left unknown when the
 *   bounds ran out can be asked for again later.
 * It imports nothing of the server: the types come from the service's OpenAPI document (openapi.ts, generated).
 */

type Json<T> = T extends { content: { 'application/json': infer Body } } ? Body : never

export type ChangeBalanceInput = Json<paths['/api/balance']['patch']['requestBody']>
export type ChangeBalanceResult = Json<paths['/api/balance']['patch']['responses'][200]>
export type ChangeBalancesInput = Json<paths['/api/balance/batch']['post']['requestBody']>
export type ChangeBalancesResult = Json<paths['/api/balance/batch']['post']['responses'][200]>
export type TransferInput = Json<paths['/api/transfers']['post']['requestBody']>
export type TransferResult = Json<paths['/api/transfers']['post']['responses'][201]>
export type CreateUserInput = Json<NonNullable<paths['/api/users']['post']['requestBody']>>
export type User = Json<paths['/api/users/{id}']['get']['responses'][200]>
export type HistoryPage = Json<paths['/api/users/{id}/transactions']['get']['responses'][200]>
export type JournalEntry = HistoryPage['items'][number]
export type HistoryQuery = NonNullable<paths['/api/users/{id}/transactions']['get']['parameters']['query']>
export type CreateHoldInput = Json<paths['/api/holds']['post']['requestBody']>
export type HoldResult = Json<paths['/api/holds']['post']['responses'][201]>
export type CaptureHoldInput = Json<NonNullable<paths['/api/holds/{holdId}/capture']['post']['requestBody']>>
export type Hold = Json<paths['/api/holds/{holdId}']['get']['responses'][200]>
export type HoldsPage = Json<paths['/api/users/{id}/holds']['get']['responses'][200]>
export type HoldsQuery = NonNullable<paths['/api/users/{id}/holds']['get']['parameters']['query']>
export type BalanceAt = Json<paths['/api/users/{id}/balance']['get']['responses'][200]>
export type EventsPage = Json<paths['/api/events']['get']['responses'][200]>
export type BalanceEvent = EventsPage['items'][number]
export type UserEventsPage = Json<paths['/api/users/{id}/events']['get']['responses'][200]>
export type Health = Json<paths['/api/health']['get']['responses'][200]> | Json<paths['/api/health']['get']['responses'][503]>
export type Liveness = Json<paths['/api/health/live']['get']['responses'][200]>

export interface RetryOptions {
  /** Requests sent at most, the first included (default 5). 1 = never retry. */
  maxAttempts?: number
  /** No attempt starts, and no backoff sleeps, past this many milliseconds after the first attempt (default 30000). */
  maxElapsedMs?: number
  /** The first backoff's ceiling; it doubles after each backoff (default 100). */
  baseDelayMs?: number
  /** The largest backoff ceiling (default 2000). Each sleep is uniform in [0, ceiling] ("full jitter"). */
  maxDelayMs?: number
}

/** One request sent, as the client saw it: for logs and metrics (and tests that count retries). */
export interface AttemptInfo {
  method: string
  path: string
  url: string
  attempt: number
  idempotencyKey: string | undefined
  requestId: string | undefined
  /** The answer's status, or undefined when there was none. */
  status: number | undefined
  /** The answer's `code`, or the network failure (`ECONNREFUSED`, `TIMEOUT`, …). */
  code: string | undefined
  ms: number
  /** True when the client will send again (after a backoff, or at once to the next base URL). */
  retrying: boolean
}

export interface BalanceClientOptions {
  /**
   * The service, or several instances of it, in order of preference: a request that cannot connect moves on to the
   * next one (same key), and new requests skip that one for `failbackAfterMs`.
   */
  baseUrl: string | readonly string[]
  /** How long a base URL that refused a connection is skipped by new requests before it is tried first again (default 5000). */
  failbackAfterMs?: number
  /** A bearer token (one of the service's API_TOKENS); sent with every request when set. */
  token?: string
  /** Per-attempt timeout in milliseconds (default 10000); a timeout is retried like a lost connection. */
  timeoutMs?: number
  retry?: RetryOptions
  onAttempt?: (attempt: AttemptInfo) => void
}

export interface RequestOptions {
  /** Sent as x-request-id on every attempt (the service logs and echoes it). */
  requestId?: string
  /** This request's per-attempt timeout, instead of the client's. */
  timeoutMs?: number
  /** Ends the request (and its retries) early: the error then says `stoppedBy: 'aborted'`. */
  signal?: AbortSignal
  retry?: RetryOptions
}

export interface WriteOptions extends RequestOptions {
  /** 1–255 printable ASCII characters. Default: a fresh crypto.randomUUID(), returned in the result. */
  idempotencyKey?: string
}

/** A write's result: the answer's body and how it was obtained. */
export interface WriteResult<T> {
  data: T
  /** The key the write was sent with: keep it to ask again (the service replays the same answer). */
  idempotencyKey: string
  /** True when the service replayed a stored answer for this key (`Idempotent-Replayed: true`): nothing changed now. */
  replayed: boolean
  status: number
  attempts: number
  /** The x-request-id the service answered with. */
  requestId: string | undefined
}

/** A bulk write's result: atomic requests are keyed as a whole, other requests change by change. */
export interface BulkWriteResult extends Omit<WriteResult<ChangeBalancesResult>, 'idempotencyKey'> {
  /** With `atomic: true`: the request's Idempotency-Key. Otherwise undefined (see `changeKeys`). */
  idempotencyKey: string | undefined
  /** Without `atomic`: each change's idempotencyKey, in order (the caller's, or a fresh UUID). */
  changeKeys: string[] | undefined
}

export interface HistoryOptions extends RequestOptions, HistoryQuery {}
export interface HoldsOptions extends RequestOptions, HoldsQuery {}

export const DEFAULT_TIMEOUT_MS = 10_000
export const DEFAULT_FAILBACK_AFTER_MS = 5_000
export const DEFAULT_RETRY: Required<RetryOptions> = { maxAttempts: 5, maxElapsedMs: 30_000, baseDelayMs: 100, maxDelayMs: 2_000 }
/** Answers that mean "not now" rather than an outcome: retried (with the same key for writes). */
const RETRY_STATUSES = new Set([502, 503, 504])
/** Failures before anything reached the server: the next base URL is tried at once. */
const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'UND_ERR_CONNECT_TIMEOUT'])
const KEY_PATTERN = /^[\x20-\x7E]{1,255}$/

interface Call {
  method: 'GET' | 'PATCH' | 'POST'
  path: string
  body?: unknown
  idempotencyKey: string | undefined
  /** A health probe reports the present: its 503 is the answer, not retried. */
  probe: boolean
  options: RequestOptions
}

interface Answer {
  status: number
  body: unknown
  replayed: boolean
  requestId: string | undefined
  attempts: number
}

type Attempt =
  | { kind: 'answer', status: number, body: unknown, headers: Headers }
  | { kind: 'failure', reason: string, error: unknown }

function positive (value: number, name: string, min: number): number {
  if (!Number.isFinite(value) || value < min) throw new RangeError(`${name} must be a number ≥ ${min}`)
  return value
}

function retryPolicy (...layers: Array<RetryOptions | undefined>): Required<RetryOptions> {
  const merged = Object.assign({}, DEFAULT_RETRY, ...layers.map((layer) => layer ?? {})) as Required<RetryOptions>
  positive(merged.maxAttempts, 'retry.maxAttempts', 1)
  positive(merged.maxElapsedMs, 'retry.maxElapsedMs', 0)
  positive(merged.baseDelayMs, 'retry.baseDelayMs', 0)
  positive(merged.maxDelayMs, 'retry.maxDelayMs', 0)
  return merged
}

/** Full jitter (AWS Architecture Blog, "Exponential Backoff and Jitter"): uniform in [0, min(max, base · 2^n)]. */
export function backoffDelay (policy: Required<RetryOptions>, backoffs: number): number {
  return Math.random() * Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** backoffs)
}

/** What a fetch failure was: the system/undici error code, or TIMEOUT / ABORTED. */
function failureReason (error: unknown, callerSignal: AbortSignal | undefined): string {
  if (callerSignal?.aborted === true) return 'ABORTED'
  if (error instanceof Error && error.name === 'TimeoutError') return 'TIMEOUT'
  const cause = (error as { cause?: { code?: unknown, name?: unknown } } | undefined)?.cause
  if (typeof cause?.code === 'string') return cause.code
  if (cause?.name === 'TimeoutError') return 'TIMEOUT'
  return error instanceof Error ? error.message : String(error)
}

async function sleep (ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (ms <= 0) return
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms)
    function done (): void {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })
}

function parse (text: string): unknown {
  if (text === '') return undefined
  try {
    return JSON.parse(text) as unknown
  } catch {
    return { message: text.slice(0, 500) }
  }
}

export class BalanceClient {
  private readonly baseUrls: string[]
  private readonly token: string | undefined
  private readonly timeoutMs: number
  private readonly retry: Required<RetryOptions>
  private readonly onAttempt: ((attempt: AttemptInfo) => void) | undefined
  private readonly failbackAfterMs: number
  /** Per base URL: until when new requests skip it (it refused a connection); 0 = usable. */
  private readonly downUntil: number[]

  constructor (options: BalanceClientOptions) {
    const urls = typeof options.baseUrl === 'string' ? [options.baseUrl] : [...options.baseUrl]
    if (urls.length === 0) throw new RangeError('baseUrl: at least one URL')
    this.baseUrls = urls.map((url) => {
      const parsed = new URL(url)
      if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new RangeError(`baseUrl ${url}: http or https only`)
      return parsed.toString().replace(/\/+$/, '')
    })
    this.token = options.token
    this.timeoutMs = positive(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, 'timeoutMs', 1)
    this.failbackAfterMs = positive(options.failbackAfterMs ?? DEFAULT_FAILBACK_AFTER_MS, 'failbackAfterMs', 0)
    this.downUntil = this.baseUrls.map(() => 0)
    this.retry = retryPolicy(options.retry)
    this.onAttempt = options.onAttempt
  }

  /** PATCH /api/balance: adds `amount` (negative takes money out) to the user's balance. */
  async changeBalance (input: ChangeBalanceInput, options: WriteOptions = {}): Promise<WriteResult<ChangeBalanceResult>> {
    return await this.write<ChangeBalanceResult>('PATCH', '/api/balance', input, options)
  }

  /**
   * POST /api/balance/batch: many changes in one request. Without `atomic`, each change is answered on its own
   * (`data.results[i].status`) and carries its own idempotencyKey (the caller's, or a fresh UUID), so a retry of the
   * request replays what already ran; with `atomic: true`, all apply or none (BULK_REFUSED), keyed by
   * `options.idempotencyKey` like any write. A change answered 503 inside a 200 is not retried: send it again with its key.
   */
  async changeBalances (input: ChangeBalancesInput, options: WriteOptions = {}): Promise<BulkWriteResult> {
    if (input.atomic === true) {
      const result = await this.write<ChangeBalancesResult>('POST', '/api/balance/batch', input, options)
      return { ...result, changeKeys: undefined }
    }
    if (options.idempotencyKey !== undefined) throw new RangeError('idempotencyKey: only for atomic: true (give each change its own idempotencyKey)')
    const changes = input.changes.map((change) => ({ ...change, idempotencyKey: change.idempotencyKey ?? randomUUID() }))
    for (const { idempotencyKey } of changes) if (!KEY_PATTERN.test(idempotencyKey)) throw new RangeError('changes[].idempotencyKey: 1–255 printable ASCII characters')
    const answer = await this.send({ method: 'POST', path: '/api/balance/batch', body: { ...input, changes }, idempotencyKey: undefined, probe: false, options })
    return { data: answer.body as ChangeBalancesResult, idempotencyKey: undefined, changeKeys: changes.map((change) => change.idempotencyKey), replayed: false, status: answer.status, attempts: answer.attempts, requestId: answer.requestId }
  }

  /** POST /api/transfers: moves `amount` (> 0) from one user to another; both legs commit together or not at all. */
  async transfer (input: TransferInput, options: WriteOptions = {}): Promise<WriteResult<TransferResult>> {
    return await this.write<TransferResult>('POST', '/api/transfers', input, options)
  }

  /** POST /api/users: a new user with an opening balance (default 0). */
  async createUser (input: CreateUserInput = {}, options: WriteOptions = {}): Promise<WriteResult<User>> {
    return await this.write<User>('POST', '/api/users', input, options)
  }

  /**
   * POST /api/holds: reserves `amount` of the user's available money until captured, voided or expired
   * (`expiresInSeconds`, default the service's). Keyed and retried like every write.
   */
  async createHold (input: CreateHoldInput, options: WriteOptions = {}): Promise<WriteResult<HoldResult>> {
    return await this.write<HoldResult>('POST', '/api/holds', input, options)
  }

  /**
   * POST /api/holds/:holdId/capture: takes `amount` (default the whole hold) from the holder and releases the rest;
   * with `toUserId` that user receives it in the same transaction.
   */
  async captureHold (holdId: number, input: CaptureHoldInput = {}, options: WriteOptions = {}): Promise<WriteResult<HoldResult>> {
    return await this.write<HoldResult>('POST', `/api/holds/${encodeURIComponent(holdId)}/capture`, input, options)
  }

  /** POST /api/holds/:holdId/void: releases the whole hold. */
  async voidHold (holdId: number, options: WriteOptions = {}): Promise<WriteResult<HoldResult>> {
    return await this.write<HoldResult>('POST', `/api/holds/${encodeURIComponent(holdId)}/void`, undefined, options)
  }

  /** GET /api/holds/:holdId: the hold as of now (an active hold past expiresAt reads as expired). */
  async getHold (holdId: number, options: RequestOptions = {}): Promise<Hold> {
    return (await this.send({ method: 'GET', path: `/api/holds/${encodeURIComponent(holdId)}`, idempotencyKey: undefined, probe: false, options })).body as Hold
  }

  /** GET /api/users/:id/holds: one page, newest first, optionally of one `status`. */
  async holdsPage (id: number, options: HoldsOptions = {}): Promise<HoldsPage> {
    const { limit, before, status, ...requestOptions } = options
    return await this.page<HoldsPage>(`/api/users/${encodeURIComponent(id)}/holds`, { status, limit, before }, requestOptions)
  }

  /** The user's holds, page after page (newest first), following `nextCursor`; lazy like history(). */
  async * holds (id: number, options: HoldsOptions = {}): AsyncGenerator<HoldsPage, void, undefined> {
    let before = options.before
    for (;;) {
      const page = await this.holdsPage(id, { ...options, ...(before === undefined ? {} : { before }) })
      yield page
      if (page.nextCursor === null) return
      before = page.nextCursor
    }
  }

  /** GET /api/users/:id/balance?at=: the balance as of an instant, and the journal entry that set it. */
  async balanceAt (id: number, at: Date, options: RequestOptions = {}): Promise<BalanceAt> {
    const path = `/api/users/${encodeURIComponent(id)}/balance?at=${encodeURIComponent(at.toISOString())}`
    return (await this.send({ method: 'GET', path, idempotencyKey: undefined, probe: false, options })).body as BalanceAt
  }

  /** GET /api/users/:id. */
  async getUser (id: number, options: RequestOptions = {}): Promise<User> {
    return (await this.send({ method: 'GET', path: `/api/users/${encodeURIComponent(id)}`, idempotencyKey: undefined, probe: false, options })).body as User
  }

  /** GET /api/users/:id/transactions: one page, newest first. */
  async historyPage (id: number, options: HistoryOptions = {}): Promise<HistoryPage> {
    const { limit, before, ...requestOptions } = options
    return await this.page<HistoryPage>(`/api/users/${encodeURIComponent(id)}/transactions`, { limit, before }, requestOptions)
  }

  /**
   * The user's journal, page after page (newest first), following `nextCursor` until it is null. Lazy: a page is
   * fetched when the loop asks for it, so `break` stops the reading.
   */
  async * history (id: number, options: HistoryOptions = {}): AsyncGenerator<HistoryPage, void, undefined> {
    let before = options.before
    for (;;) {
      const page = await this.historyPage(id, { ...options, ...(before === undefined ? {} : { before }) })
      yield page
      if (page.nextCursor === null) return
      before = page.nextCursor
    }
  }

  /**
   * GET /api/events: one page of the global feed after `after` (a previous page's nextCursor; absent: from the
   * oldest event kept). An empty page returns the same cursor: poll again later. A cursor from before what the
   * service's retention pruned throws CursorExpiredError (`oldestCursor`: where the kept feed is complete; read on
   * from it).
   */
  async events (options: RequestOptions & { after?: string, limit?: number } = {}): Promise<EventsPage> {
    const { after, limit, ...requestOptions } = options
    return (await this.send({ method: 'GET', path: `/api/events${searchOf({ after, limit })}`, idempotencyKey: undefined, probe: false, options: requestOptions })).body as EventsPage
  }

  /**
   * GET /api/users/:id/events: the user's events with seq > `after` (absent: from the first seq kept), in seq order;
   * CursorExpiredError (`oldestSeq`) when some of them were pruned.
   */
  async userEvents (id: number, options: RequestOptions & { after?: number, limit?: number } = {}): Promise<UserEventsPage> {
    const { after, limit, ...requestOptions } = options
    const path = `/api/users/${encodeURIComponent(id)}/events${searchOf({ after, limit })}`
    return (await this.send({ method: 'GET', path, idempotencyKey: undefined, probe: false, options: requestOptions })).body as UserEventsPage
  }

  /** GET /api/health: `{status:'ok', db:'up'}`, or `{status:'error', db:'down'}` (a 503 is this answer, not an error). */
  async health (options: RequestOptions = {}): Promise<Health> {
    return (await this.send({ method: 'GET', path: '/api/health', idempotencyKey: undefined, probe: true, options })).body as Health
  }

  /** GET /api/health/live: the process answers (never touches the database). */
  async live (options: RequestOptions = {}): Promise<Liveness> {
    return (await this.send({ method: 'GET', path: '/api/health/live', idempotencyKey: undefined, probe: false, options })).body as Liveness
  }

  /** One GET of a keyset-paged list, with the query parameters that are set. */
  private async page<T> (path: string, params: Record<string, string | number | undefined>, options: RequestOptions): Promise<T> {
    const query = new URLSearchParams()
    for (const [name, value] of Object.entries(params)) if (value !== undefined) query.set(name, String(value))
    const search = query.size > 0 ? `?${query.toString()}` : ''
    return (await this.send({ method: 'GET', path: `${path}${search}`, idempotencyKey: undefined, probe: false, options })).body as T
  }

  private async write<T> (method: 'PATCH' | 'POST', path: string, body: unknown, options: WriteOptions): Promise<WriteResult<T>> {
    const idempotencyKey = options.idempotencyKey ?? randomUUID()
    if (!KEY_PATTERN.test(idempotencyKey)) throw new RangeError('idempotencyKey: 1–255 printable ASCII characters')
    const answer = await this.send({ method, path, body, idempotencyKey, probe: false, options })
    return { data: answer.body as T, idempotencyKey, replayed: answer.replayed, status: answer.status, attempts: answer.attempts, requestId: answer.requestId }
  }

  /** One logical request: attempts until a final answer, or until the retry bounds run out. */
  private async send (call: Call): Promise<Answer> {
    const policy = retryPolicy(this.retry, call.options.retry)
    const timeoutMs = positive(call.options.timeoutMs ?? this.timeoutMs, 'timeoutMs', 1)
    const signal = call.options.signal
    const started = performance.now()
    const deadline = started + policy.maxElapsedMs
    let index = this.startIndex()
    let backoffs = 0
    /** Base URLs that failed to connect since the last backoff: while some are untried, the next goes at once. */
    const unreachable = new Set<number>()
    for (let attempt = 1; ; attempt += 1) {
      const url = this.baseUrls[index]!
      const sentAt = performance.now()
      const result = await this.attempt(url, call, Math.max(1, Math.ceil(Math.min(timeoutMs, deadline - sentAt))), signal)
      const now = performance.now()
      const summary = (stoppedBy: AttemptSummary['stoppedBy']): AttemptSummary => ({
        attempts: attempt, elapsedMs: now - started, idempotencyKey: call.idempotencyKey, requestId: call.options.requestId, stoppedBy,
      })

      let delay: number
      if (result.kind === 'answer') {
        const probed = call.probe && result.status === 503
        if (!RETRY_STATUSES.has(result.status) || probed) {
          this.report(call, url, attempt, result.status, result.body, now - sentAt, false)
          const replayed = result.headers.get('idempotent-replayed') === 'true'
          const requestId = result.headers.get('x-request-id') ?? undefined
          if ((result.status >= 200 && result.status < 300) || probed) return { status: result.status, body: result.body, replayed, requestId, attempts: attempt }
          throw apiError(result.status, (result.body ?? {}) as ErrorBody, replayed, summary('answer'))
        }
        delay = backoffDelay(policy, backoffs)
      } else {
        if (result.reason === 'ABORTED') {
          this.report(call, url, attempt, undefined, result.reason, now - sentAt, false)
          throw new BalanceNetworkError(result.reason, url, summary('aborted'), result.error)
        }
        // Another instance may answer: the next attempt goes to the next base URL; one that refused the connection
        // is skipped by new requests for a while.
        if (CONNECT_FAILURES.has(result.reason)) {
          unreachable.add(index)
          this.downUntil[index] = now + this.failbackAfterMs
        }
        index = (index + 1) % this.baseUrls.length
        delay = CONNECT_FAILURES.has(result.reason) && !unreachable.has(index) ? 0 : backoffDelay(policy, backoffs)
      }

      const stoppedBy = attempt >= policy.maxAttempts ? 'attempts' : now + delay >= deadline ? 'time' : signal?.aborted === true ? 'aborted' : undefined
      this.report(call, url, attempt, result.kind === 'answer' ? result.status : undefined, result.kind === 'answer' ? result.body : result.reason, now - sentAt, stoppedBy === undefined)
      if (stoppedBy !== undefined) {
        if (result.kind === 'answer') throw apiError(result.status, (result.body ?? {}) as ErrorBody, false, summary(stoppedBy), result.headers.get('retry-after'))
        throw new BalanceNetworkError(result.reason, url, summary(stoppedBy), result.error)
      }
      if (delay > 0) {
        backoffs += 1
        unreachable.clear()
        await sleep(delay, signal)
      }
    }
  }

  /** The first base URL, in the given order, not skipped after a refused connection; else the one skipped longest ago. */
  private startIndex (): number {
    const now = performance.now()
    let earliest = 0
    for (let index = 0; index < this.downUntil.length; index += 1) {
      if (this.downUntil[index]! <= now) return index
      if (this.downUntil[index]! < this.downUntil[earliest]!) earliest = index
    }
    return earliest
  }

  /** One HTTP exchange, body read in full; any failure to get a whole answer is a `failure`. */
  private async attempt (url: string, call: Call, timeoutMs: number, callerSignal: AbortSignal | undefined): Promise<Attempt> {
    const headers: Record<string, string> = { accept: 'application/json' }
    if (call.body !== undefined) headers['content-type'] = 'application/json'
    if (call.idempotencyKey !== undefined) headers['idempotency-key'] = call.idempotencyKey
    if (call.options.requestId !== undefined) headers['x-request-id'] = call.options.requestId
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`
    const timeout = AbortSignal.timeout(timeoutMs)
    const signal = callerSignal === undefined ? timeout : AbortSignal.any([callerSignal, timeout])
    try {
      const response = await fetch(url + call.path, {
        method: call.method,
        headers,
        ...(call.body === undefined ? {} : { body: JSON.stringify(call.body) }),
        signal,
      })
      const text = await response.text()
      return { kind: 'answer', status: response.status, body: parse(text), headers: response.headers }
    } catch (error) {
      return { kind: 'failure', reason: failureReason(error, callerSignal), error }
    }
  }

  private report (call: Call, url: string, attempt: number, status: number | undefined, detail: unknown, ms: number, retrying: boolean): void {
    if (this.onAttempt === undefined) return
    const code = typeof detail === 'string' ? detail : typeof (detail as { code?: unknown } | undefined)?.code === 'string' ? (detail as { code: string }).code : undefined
    this.onAttempt({ method: call.method, path: call.path, url, attempt, idempotencyKey: call.idempotencyKey, requestId: call.options.requestId, status, code, ms, retrying })
  }
}

/** `?a=1&b=2` of the defined values, or '' when none is. */
function searchOf (values: Record<string, string | number | undefined>): string {
  const query = new URLSearchParams()
  for (const [name, value] of Object.entries(values)) if (value !== undefined) query.set(name, String(value))
  return query.size > 0 ? `?${query.toString()}` : ''
}

/**
 * Every path of the service's OpenAPI document and the client method that calls it. When a route is added to the
 * service and the types are regenerated, this stops compiling until the client covers it (or says why not).
 */
export const ROUTE_METHODS = {
  '/api/balance': 'changeBalance',
  '/api/balance/batch': 'changeBalances',
  '/api/transfers': 'transfer',
  '/api/users': 'createUser',
  '/api/users/{id}': 'getUser',
  '/api/users/{id}/transactions': 'history',
  '/api/users/{id}/holds': 'holds',
  '/api/users/{id}/balance': 'balanceAt',
  '/api/holds': 'createHold',
  '/api/holds/{holdId}': 'getHold',
  '/api/holds/{holdId}/capture': 'captureHold',
  '/api/holds/{holdId}/void': 'voidHold',
  '/api/events': 'events',
  '/api/users/{id}/events': 'userEvents',
  '/api/health': 'health',
  '/api/health/live': 'live',
  // Prometheus text for scrapers, not JSON for code.
  '/metrics': null,
} as const satisfies { [Path in keyof paths]: keyof BalanceClient | null }
