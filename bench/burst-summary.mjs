// The one JSON line both burst clients print (bench/burst-client.mjs, bench/client-burst.mjs), from their results:
// each { status, code, ms } for an answer or { error, ms } for none. Plain JavaScript: both run from source.

function percentile (sorted, p) {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]
}

/** { wallMs, statuses: {"200": n}, codes: {"INSUFFICIENT_FUNDS": n}, errors: {"ECONNRESET": n}, latencyMs: {p50, p99, max} } */
export function summarise (results, wallMs) {
  const statuses = {}
  const codes = {}
  const errors = {}
  for (const r of results) {
    if (r.error !== undefined) errors[r.error] = (errors[r.error] ?? 0) + 1
    else {
      statuses[r.status] = (statuses[r.status] ?? 0) + 1
      if (r.code !== undefined) codes[r.code] = (codes[r.code] ?? 0) + 1
    }
  }
  const latencies = results.map((r) => r.ms).sort((a, b) => a - b)
  const latencyMs = { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.at(-1) ?? 0 }
  return { wallMs, statuses, codes, errors, latencyMs }
}
