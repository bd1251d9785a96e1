/**
 * Every explicit limit the HTTP side of the service enforces, in one place: nothing is unbounded.
 * Wired in by src/app.ts (Fastify and Node's http.Server options) and src/server.ts (listen, shutdown).
 * Database limits (pool, its queue and deadlines, the read gate, group-commit lanes) are configuration: see src/config.ts.
 */
export const limits = {
  /** Request bodies are a few small integers; anything larger is not a client of ours (413 FST_ERR_CTP_BODY_TOO_LARGE). */
  bodyLimitBytes: 4 * 1024,
  /** All request headers together (Node's default, stated so it is a decision); larger: 431, the socket is closed. */
  maxHeaderBytes: 16 * 1024,
  /** Headers per request that Node parses; the rest are dropped (Node's default 2000 is far more than any client of ours needs). */
  maxHeadersCount: 100,
  /** Longest path parameter (`:id`); longer is a 404 from the router. */
  maxParamLength: 100,
  /** An incoming `x-request-id` is reused only when it is 1..this many visible ASCII characters; otherwise one is generated. */
  requestIdMaxLength: 128,
  /** Pending connections the kernel may queue before accept(); capped by net.core.somaxconn. The seed burst opens 10,000 at once. */
  listenBacklog: 16384,
  /** Sockets open at once; above it new ones are closed. Sized for the 10k burst plus headroom, under a 20k fd limit. */
  maxConnections: 15000,
  /**
   * Time to receive a request's headers; a client that sends none (or too slowly) is cut off after it. Node's default
   * 60 s, checked every 30 s, let 15,000 idle sockets hold every connection slot for 90 s. A real client sends its
   * headers in one packet: 10 s is far more than a burst of 10,000 sockets needs on a loaded 2-core box.
   */
  headersTimeoutMs: 10_000,
  /**
   * How often Node looks for sockets past headersTimeoutMs or requestTimeoutMs (Node's default 30 s): an idle socket
   * is closed within headersTimeoutMs + this. One pass over the open sockets, in C++, each time.
   */
  connectionsCheckingIntervalMs: 1_000,
  /**
   * A whole request, from first byte to reply (Node answers 408 past it). Longer than the longest the service itself
   * lets a change wait (GROUP_COMMIT_WAIT_TIMEOUT_MS + DB_ACQUIRE_TIMEOUT_MS + the statement timeout), so the
   * service answers first, with what really happened.
   */
  requestTimeoutMs: 120_000,
  /** `Retry-After` (seconds) on a 503 OVERLOADED: past a full queue or a deadline, nothing was applied. */
  overloadRetryAfterSeconds: 1,
  /** Idle keep-alive sockets are closed after this. */
  keepAliveTimeoutMs: 5_000,
  /** Requests served on one keep-alive socket before it is closed; 0 = unlimited. */
  maxRequestsPerSocket: 0,
  /**
   * Bounded wait for in-flight requests on SIGTERM/SIGINT: the listener closes at once, requests already accepted
   * finish, then the pool and the embedded PostgreSQL close. Past this the process exits 1 without waiting further.
   */
  shutdownGraceMs: 10_000,
  /**
   * Longest a plugin may take to start (Fastify's default is 10 s). The database plugin's first start with the
   * embedded PostgreSQL runs initdb (1–2 s on a quiet machine, more than 10 s on a loaded 2-core one; bounded at
   * 60 s), starts PostgreSQL (bounded at 30 s) and opens the pool.
   */
  pluginTimeoutMs: 120_000,
} as const

/**
 * The body limit of POST /api/balance/batch: every item may be as large as a PATCH body (limits.bodyLimitBytes, which
 * the largest metadata is sized to fit), plus one such allowance for the envelope. Only that route gets it.
 */
export function bulkBodyLimitBytes (maxChanges: number): number {
  return (maxChanges + 1) * limits.bodyLimitBytes
}
