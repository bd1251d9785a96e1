/**
 * Every explicit limit the HTTP side of the service enforces, in one place (TIGER_STYLE: nothing unbounded).
 * Database limits (pool, timeouts) are configuration: see src/config.ts.
 */
export const limits = {
  /** Request bodies are a few small integers; anything larger is not a client of ours. */
  bodyLimitBytes: 4 * 1024,
  /** Node's default; stated so it is a decision. */
  maxHeaderBytes: 16 * 1024,
  /** Pending connections the kernel may queue before accept(); capped by net.core.somaxconn. The seed burst opens 10,000 at once. */
  listenBacklog: 16384,
  /** Sockets open at once; above it new ones are closed. Sized for the 10k burst plus headroom, under a 20k fd limit. */
  maxConnections: 15000,
  /** A whole request, from first byte to reply. Longer than the slowest burst queue (a 10k burst takes seconds). */
  requestTimeoutMs: 120_000,
  /** Idle keep-alive sockets are closed after this. */
  keepAliveTimeoutMs: 5_000,
  /** Requests served on one keep-alive socket before it is closed (spreads load across instances). */
  maxRequestsPerSocket: 0,
  /** Bounded wait for in-flight requests on shutdown. */
  shutdownGraceMs: 10_000,
} as const
