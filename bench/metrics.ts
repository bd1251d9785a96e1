/**
 * The service's group-commit metrics, read from GET /metrics (Prometheus text format) before and after a measurement:
 * the histogram `balance_batch_size` and the counter `balance_batches_total`, both labelled by strategy.
 * The difference of two scrapes is that measurement's batch-size distribution.
 */

const METRICS_TIMEOUT_MS = 5_000
/** A scrape larger than this is not the service's (it has a few dozen series). */
const MAX_METRICS_BYTES = 4 * 1024 * 1024

export const BATCH_SIZE_METRIC = 'balance_batch_size'
export const BATCHES_METRIC = 'balance_batches_total'

/** One histogram at one moment: cumulative bucket counts by upper bound (Infinity for +Inf), sum and count. */
export interface HistogramSnapshot {
  buckets: Array<{ le: number, count: number }>
  sum: number
  count: number
}

export interface BatchSnapshot {
  histogram?: HistogramSnapshot
  batchesTotal?: number
}

/** The distribution of one measurement's batches. Quantiles are interpolated within histogram buckets. */
export interface BatchStats {
  batches: number
  /** Changes that went through a batch (the histogram's sum). */
  changes: number
  mean: number
  p50: number
  p90: number
  /** Upper bound of the highest non-empty bucket (capped at the largest batch allowed). */
  max: number
  /** Δ balance_batches_total, which should equal `batches`. */
  batchesTotal?: number
}

function parseLabels (text: string): Record<string, string> {
  const labels: Record<string, string> = {}
  for (const match of text.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[match[1]!] = match[2]!.replace(/\\(.)/g, '$1')
  return labels
}

/** Samples of the series `name` whose labels include `match`: each with its labels and value. */
function samples (text: string, name: string, match: Record<string, string>): Array<{ labels: Record<string, string>, value: number }> {
  const out: Array<{ labels: Record<string, string>, value: number }> = []
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue
    const rest = line.slice(name.length)
    const braces = /^\{([^}]*)\}\s+(\S+)/.exec(rest)
    const bare = /^\s+(\S+)/.exec(rest)
    const labels = braces === null ? {} : parseLabels(braces[1]!)
    const raw = braces?.[2] ?? bare?.[1]
    if (raw === undefined) continue
    if (!Object.entries(match).every(([key, value]) => labels[key] === value)) continue
    const value = raw === '+Inf' ? Infinity : Number(raw)
    if (Number.isFinite(value)) out.push({ labels, value })
  }
  return out
}

export function parseBatchMetrics (text: string, strategy: string): BatchSnapshot {
  const match = { strategy }
  const snapshot: BatchSnapshot = {}
  const buckets = samples(text, `${BATCH_SIZE_METRIC}_bucket`, match)
    .map(({ labels, value }) => ({ le: labels.le === '+Inf' ? Infinity : Number(labels.le), count: value }))
    .filter((bucket) => !Number.isNaN(bucket.le))
    .sort((a, b) => a.le - b.le)
  const sum = samples(text, `${BATCH_SIZE_METRIC}_sum`, match)[0]?.value
  const count = samples(text, `${BATCH_SIZE_METRIC}_count`, match)[0]?.value
  if (buckets.length > 0 && sum !== undefined && count !== undefined) snapshot.histogram = { buckets, sum, count }
  const total = samples(text, BATCHES_METRIC, match)[0]?.value
  if (total !== undefined) snapshot.batchesTotal = total
  return snapshot
}

export async function scrapeBatchMetrics (baseUrl: string, strategy: string): Promise<BatchSnapshot> {
  const response = await fetch(`${baseUrl}/metrics`, { signal: AbortSignal.timeout(METRICS_TIMEOUT_MS) })
  if (response.status !== 200) throw new Error(`GET /metrics answered ${response.status}`)
  const text = await response.text()
  if (text.length > MAX_METRICS_BYTES) throw new Error(`GET /metrics is ${text.length} bytes, more than ${MAX_METRICS_BYTES}`)
  return parseBatchMetrics(text, strategy)
}

/**
 * The q-quantile from cumulative buckets, like Prometheus' histogram_quantile: find the bucket where the rank falls
 * and interpolate linearly inside it; the +Inf bucket answers its lower bound. Batch sizes are whole numbers, so a
 * bucket (a, b] holds a+1 … b (the lowest starts at 0): a histogram of lone changes answers 1, not 0.5.
 */
export function bucketQuantile (buckets: Array<{ le: number, count: number }>, q: number): number {
  const total = buckets.at(-1)?.count ?? 0
  if (total === 0) return NaN
  const rank = q * total
  let lowerBound = 0
  let lowerCount = 0
  for (const bucket of buckets) {
    if (bucket.count >= rank) {
      if (bucket.le === Infinity) return lowerBound
      const inBucket = bucket.count - lowerCount
      const from = Math.min(bucket.le, lowerBound + 1)
      return inBucket === 0 ? bucket.le : from + ((bucket.le - from) * (rank - lowerCount)) / inBucket
    }
    lowerBound = bucket.le
    lowerCount = bucket.count
  }
  return lowerBound
}

/** after − before: the batches of one measurement. Undefined when the service exports no batch histogram. */
export function batchStats (before: BatchSnapshot, after: BatchSnapshot, largestBatch: number): BatchStats | undefined {
  const b = after.histogram
  if (b === undefined) return undefined
  const a = before.histogram
  const buckets = b.buckets.map((bucket) => ({
    le: bucket.le,
    count: bucket.count - (a?.buckets.find((other) => other.le === bucket.le)?.count ?? 0),
  }))
  const batches = b.count - (a?.count ?? 0)
  const changes = b.sum - (a?.sum ?? 0)
  let max = 0
  let previous = 0
  for (const bucket of buckets) {
    if (bucket.count > previous) max = bucket.le
    previous = bucket.count
  }
  const stats: BatchStats = {
    batches,
    changes,
    mean: batches > 0 ? changes / batches : NaN,
    p50: bucketQuantile(buckets, 0.5),
    p90: bucketQuantile(buckets, 0.9),
    max: batches > 0 ? Math.min(max, largestBatch) : NaN,
  }
  if (after.batchesTotal !== undefined) stats.batchesTotal = after.batchesTotal - (before.batchesTotal ?? 0)
  return stats
}
